#include "control-plane/identity/join_tokens.h"

#include <openssl/base64.h>
#include <openssl/mem.h>
#include <openssl/rand.h>

#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/tls/digest.h"
#include "control-plane/identity/json_fields.h"

namespace meshlet::controlplane::identity {
namespace {

constexpr absl::string_view kTokenPrefix = "mjt1";
constexpr size_t kIdBytes = 8;
constexpr size_t kSecretBytes = 32;
constexpr absl::string_view kRefusalPayload = "type.meshlet.dev/join-token-refusal";

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  RAND_bytes(reinterpret_cast<uint8_t*>(out.data()), n);
  return out;
}

ResourceKey KeyFor(absl::string_view id) {
  return ResourceKey{.kind = kJoinTokenKind, .namespace_ = "", .name = absl::StrCat("jt-", id)};
}

ResourceKey RevocationKeyFor(absl::string_view id) {
  return ResourceKey{
      .kind = kJoinTokenRevocationKind, .namespace_ = "", .name = absl::StrCat("jtr-", id)};
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

bool IsLowerHex(absl::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// What is stored for one token; never the secret itself.
struct TokenRecord {
  WorkloadIdentity identity;
  std::string secret_sha256;
  absl::Time expires_at;
  bool single_use = false;
};

std::string EncodeRecord(const TokenRecord& record, absl::Time created_at) {
  // Names and hex are validated, so no JSON escaping is needed.
  return absl::StrCat("{\"namespace\":\"", record.identity.namespace_, "\",\"serviceAccount\":\"",
                      record.identity.service_account, "\",\"secretSha256\":\"",
                      record.secret_sha256, "\",\"expiresAt\":\"",
                      absl::FormatTime(absl::RFC3339_sec, record.expires_at, absl::UTCTimeZone()),
                      "\",\"createdAt\":\"",
                      absl::FormatTime(absl::RFC3339_sec, created_at, absl::UTCTimeZone()),
                      "\",\"singleUse\":", record.single_use ? "true" : "false", "}");
}

absl::StatusOr<TokenRecord> DecodeRecord(absl::string_view body) {
  ASSIGN_OR_RETURN(JsonObject json, JsonObject::Parse(body));
  TokenRecord record;
  ASSIGN_OR_RETURN(record.identity.namespace_, json.String("namespace"));
  ASSIGN_OR_RETURN(record.identity.service_account, json.String("serviceAccount"));
  ASSIGN_OR_RETURN(record.secret_sha256, json.String("secretSha256"));
  ASSIGN_OR_RETURN(std::string expires, json.String("expiresAt"));
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, expires, &record.expires_at, &error)) {
    return absl::DataLossError(absl::StrCat("expiresAt: ", error));
  }
  ASSIGN_OR_RETURN(record.single_use, json.Bool("singleUse"));
  return record;
}

}  // namespace

JoinTokens::JoinTokens(Store& store, const Clock& clock, StatsRegistry& stats,
                       JoinTokenLimits limits)
    : store_(store), clock_(clock), limits_(limits), stats_(stats) {
  auto created = stats_.shared_shard().RegisterCounter("meshlet_ca_join_tokens_created_total",
                                                       "Join tokens created.");
  CHECK(created.ok()) << created.status();
  created_ = *created;
  auto revoked = stats_.shared_shard().RegisterCounter("meshlet_ca_join_tokens_revoked_total",
                                                       "Join tokens revoked.");
  CHECK(revoked.ok()) << revoked.status();
  revocations_ = *revoked;
}

absl::Status JoinTokens::Refuse(absl::string_view reason, absl::string_view message) {
  auto counter = stats_.shared_shard().RegisterCounter(
      "meshlet_ca_join_token_refusals_total",
      "Join tokens refused, by reason (malformed, unknown, expired, used, wrong_identity).",
      {{"reason", std::string(reason)}});
  if (counter.ok()) counter->Inc();
  LOG(WARN) << "join token refused: " << message;
  absl::Status status = absl::PermissionDeniedError(absl::StrCat("join token refused: ", message));
  status.SetPayload(kRefusalPayload, absl::Cord(reason));
  return status;
}

std::string JoinTokens::RefusalReason(const absl::Status& status) {
  absl::optional<absl::Cord> reason = status.GetPayload(kRefusalPayload);
  return reason.has_value() ? std::string(*reason) : "";
}

absl::StatusOr<CreatedJoinToken> JoinTokens::Create(const JoinTokenSpec& spec) {
  RETURN_IF_ERROR(ValidateWorkloadIdentity({spec.namespace_, spec.service_account}));
  if (spec.ttl <= absl::ZeroDuration() || spec.ttl > limits_.max_ttl) {
    return absl::InvalidArgumentError(
        absl::StrCat("ttl: must be > 0 and at most ", absl::FormatDuration(limits_.max_ttl)));
  }
  const std::string id = absl::BytesToHexString(RandomBytes(kIdBytes));
  const std::string secret_bytes = RandomBytes(kSecretBytes);
  std::string secret;
  absl::WebSafeBase64Escape(secret_bytes, &secret);  // unpadded base64url

  const absl::Time now = clock_.WallNow();
  TokenRecord record{.identity = {spec.namespace_, spec.service_account},
                     .secret_sha256 = tls::Sha256Hex(secret),
                     // Whole seconds: the stored form has second precision.
                     .expires_at = absl::FromUnixSeconds(absl::ToUnixSeconds(now + spec.ttl)),
                     .single_use = spec.single_use};
  RETURN_IF_ERROR(store_.Put(KeyFor(id), EncodeRecord(record, now), kMustNotExist).status());
  created_.Inc();
  LOG(INFO) << "join token " << id << " created for " << ToString(record.identity)
            << (spec.single_use ? ", single use" : "") << ", expires "
            << absl::FormatTime(record.expires_at);
  return CreatedJoinToken{.token = absl::StrCat(kTokenPrefix, ".", id, ".", secret),
                          .id = id,
                          .expires_at = record.expires_at,
                          .single_use = spec.single_use};
}

absl::StatusOr<WorkloadIdentity> JoinTokens::Redeem(absl::string_view token,
                                                    const WorkloadIdentity* requested) {
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  if (parts.size() != 3 || parts[0] != kTokenPrefix || parts[1].size() != 2 * kIdBytes ||
      !IsLowerHex(parts[1]) || parts[2].empty()) {
    return Refuse("malformed", "not a meshlet join token");
  }
  const absl::string_view id = parts[1];
  absl::StatusOr<StoredResource> stored = store_.Get(KeyFor(id));
  if (absl::IsNotFound(stored.status())) {
    return Refuse("unknown", absl::StrCat("token ", id, " does not exist (revoked or used)"));
  }
  RETURN_IF_ERROR(stored.status());
  absl::StatusOr<TokenRecord> record = DecodeRecord(stored->body);
  if (!record.ok()) {
    LOG(ERROR) << "join token " << id << ": stored record unreadable: " << record.status();
    return absl::InternalError(absl::StrCat("join token ", id, ": stored record unreadable"));
  }
  // Constant-time comparison: the hash is not secret, but timing must not guide a guesser.
  const std::string presented = tls::Sha256Hex(parts[2]);
  if (presented.size() != record->secret_sha256.size() ||
      CRYPTO_memcmp(presented.data(), record->secret_sha256.data(), presented.size()) != 0) {
    return Refuse("unknown", absl::StrCat("token ", id, ": wrong secret"));
  }
  if (clock_.WallNow() >= record->expires_at) {
    return Refuse("expired",
                  absl::StrCat("token ", id, " expired at ", absl::FormatTime(record->expires_at)));
  }
  if (requested != nullptr && !(*requested == record->identity)) {
    return Refuse("wrong_identity",
                  absl::StrCat("token ", id, " proves ", ToString(record->identity),
                               ", not the requested ", ToString(*requested)));
  }
  if (record->single_use) {
    absl::StatusOr<int64_t> deleted = store_.Delete(stored->key, stored->revision);
    if (absl::IsNotFound(deleted.status()) || absl::IsFailedPrecondition(deleted.status())) {
      return Refuse("used", absl::StrCat("single-use token ", id, " was already used"));
    }
    RETURN_IF_ERROR(deleted.status());
  }
  LOG(INFO) << "join token " << id << " redeemed for " << ToString(record->identity);
  return record->identity;
}

absl::Status JoinTokens::RevokedError(absl::string_view id) {
  absl::Status status = absl::PermissionDeniedError(absl::StrCat(
      "join token ", id,
      ", which this certificate descends from, was revoked: present a new credential"));
  status.SetPayload(kRefusalPayload, absl::Cord("revoked"));
  return status;
}

std::string JoinTokens::IdOf(absl::string_view token) {
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  if (parts.size() != 3 || parts[0] != kTokenPrefix || parts[1].size() != 2 * kIdBytes ||
      !IsLowerHex(parts[1])) {
    return "";
  }
  return std::string(parts[1]);
}

absl::Status JoinTokens::Revoke(absl::string_view id) {
  if (id.size() != 2 * kIdBytes || !IsLowerHex(id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", id, "\" is not a join token id (16 lowercase hex digits)"));
  }
  const absl::Time now = clock_.WallNow();
  // The revocation first: once it is stored, no certificate of the token renews, whatever
  // happens to the token's record.
  RETURN_IF_ERROR(store_
                      .Put(RevocationKeyFor(id),
                           absl::StrCat("{\"revokedAt\":\"", Rfc3339(now), "\",\"keepUntil\":\"",
                                        Rfc3339(now + limits_.revocation_retention), "\"}"),
                           kAnyRevision)
                      .status());
  revocations_.Inc();
  absl::Status deleted = store_.Delete(KeyFor(id), kAnyRevision).status();
  LOG(INFO) << "join token " << id << " revoked"
            << (absl::IsNotFound(deleted) ? " (no token record left; its certificates, if any, "
                                            "will not renew)"
                                          : "");
  if (absl::IsNotFound(deleted)) {
    return absl::NotFoundError(
        absl::StrCat("no join token ", id,
                     " (its revocation is recorded: certificates it bought, if any, "
                     "will not renew)"));
  }
  return deleted;
}

absl::StatusOr<bool> JoinTokens::IsRevoked(absl::string_view id) {
  absl::StatusOr<StoredResource> stored = store_.Get(RevocationKeyFor(id));
  if (absl::IsNotFound(stored.status())) return false;
  RETURN_IF_ERROR(stored.status());
  return true;
}

absl::StatusOr<size_t> JoinTokens::PurgeExpired() {
  ASSIGN_OR_RETURN(std::vector<StoredResource> all, store_.List(kJoinTokenKind, ""));
  const absl::Time now = clock_.WallNow();
  size_t purged = 0;
  for (const StoredResource& stored : all) {
    absl::StatusOr<TokenRecord> record = DecodeRecord(stored.body);
    if (!record.ok() || now < record->expires_at) continue;
    // A concurrent redemption or revocation may win; either way the record is gone.
    if (store_.Delete(stored.key, stored.revision).ok()) ++purged;
  }
  ASSIGN_OR_RETURN(std::vector<StoredResource> revocations,
                   store_.List(kJoinTokenRevocationKind, ""));
  for (const StoredResource& stored : revocations) {
    absl::StatusOr<JsonObject> json = JsonObject::Parse(stored.body);
    if (!json.ok()) continue;
    absl::StatusOr<std::string> keep = json->String("keepUntil");
    absl::Time keep_until;
    std::string error;
    if (!keep.ok() || !absl::ParseTime(absl::RFC3339_full, *keep, &keep_until, &error) ||
        now < keep_until) {
      continue;
    }
    if (store_.Delete(stored.key, stored.revision).ok()) ++purged;
  }
  return purged;
}

}  // namespace meshlet::controlplane::identity

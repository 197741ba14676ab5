#include "control-plane/access/operator_tokens.h"

#include <openssl/mem.h>
#include <openssl/rand.h>

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/config/field_path.h"
#include "common/tls/digest.h"
#include "control-plane/identity/json_fields.h"

namespace meshlet::controlplane::access {
namespace {

constexpr absl::string_view kTokenPrefix = "mot1";
constexpr size_t kSecretBytes = 32;

bool SameSecret(absl::string_view a, absl::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// The shape of the bootstrap token (control-plane/api: 32 random bytes, hex).
bool LooksLikeBootstrapToken(absl::string_view bearer) {
  return bearer.size() == 64 && bearer.find_first_not_of("0123456789abcdef") == bearer.npos;
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

absl::StatusOr<absl::Time> ParseTime(absl::string_view field, const std::string& text) {
  absl::Time t;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, text, &t, &error)) {
    return absl::DataLossError(absl::StrCat(field, ": ", error));
  }
  return t;
}

ResourceKey KeyFor(absl::string_view name) {
  return ResourceKey{.kind = kOperatorTokenKind, .namespace_ = "", .name = std::string(name)};
}

std::string EncodeRecord(const OperatorTokenInfo& info, absl::string_view secret_sha256) {
  std::string out = absl::StrCat(R"({"role":)", JsonQuote(RoleName(info.role)),
                                 R"(,"secretSha256":)", JsonQuote(secret_sha256),
                                 R"(,"createdAt":)", JsonQuote(Rfc3339(info.created_at)),
                                 R"(,"createdBy":)", JsonQuote(info.created_by));
  if (info.expires_at.has_value()) {
    absl::StrAppend(&out, R"(,"expiresAt":)", JsonQuote(Rfc3339(*info.expires_at)));
  }
  out += "}";
  return out;
}

absl::StatusOr<std::pair<OperatorTokenInfo, std::string>> DecodeRecord(absl::string_view name,
                                                                       absl::string_view body) {
  ASSIGN_OR_RETURN(identity::JsonObject json, identity::JsonObject::Parse(body));
  OperatorTokenInfo info{.name = std::string(name)};
  ASSIGN_OR_RETURN(std::string role, json.String("role"));
  std::optional<Role> parsed = ParseRole(role);
  if (!parsed.has_value()) return absl::DataLossError(absl::StrCat("role \"", role, "\""));
  info.role = *parsed;
  ASSIGN_OR_RETURN(std::string secret, json.String("secretSha256"));
  ASSIGN_OR_RETURN(std::string created_at, json.String("createdAt"));
  ASSIGN_OR_RETURN(info.created_at, ParseTime("createdAt", created_at));
  info.created_by = json.String("createdBy").value_or("");
  if (json.Has("expiresAt")) {
    ASSIGN_OR_RETURN(std::string expires, json.String("expiresAt"));
    ASSIGN_OR_RETURN(info.expires_at, ParseTime("expiresAt", expires));
  }
  return std::make_pair(std::move(info), std::move(secret));
}

}  // namespace

absl::StatusOr<OperatorTokenInfo> ParseOperatorTokenRecord(absl::string_view name,
                                                           absl::string_view body) {
  ASSIGN_OR_RETURN(auto decoded, DecodeRecord(name, body));
  return std::move(decoded.first);
}

OperatorTokens::OperatorTokens(Store& store, const Clock& clock, std::string bootstrap_token,
                               StatsRegistry* stats)
    : store_(store),
      clock_(clock),
      bootstrap_token_(std::move(bootstrap_token)),
      records_(std::make_shared<const Records>()) {
  if (stats != nullptr) {
    auto counter = [stats](absl::string_view name, absl::string_view help) {
      absl::StatusOr<Counter> c = stats->shared_shard().RegisterCounter(name, help);
      CHECK_OK(c);
      return *c;
    };
    created_ = counter("meshlet_cp_api_operator_tokens_created_total",
                       "Operator tokens created through the API.");
    revoked_ = counter("meshlet_cp_api_operator_tokens_revoked_total",
                       "Operator tokens revoked through the API.");
  }
}

OperatorTokens::~OperatorTokens() { watch_.reset(); }

absl::StatusOr<std::unique_ptr<OperatorTokens>> OperatorTokens::Open(Store& store,
                                                                     const Clock& clock,
                                                                     std::string bootstrap_token,
                                                                     StatsRegistry* stats) {
  CHECK(!bootstrap_token.empty()) << "operator tokens need the bootstrap token";
  std::unique_ptr<OperatorTokens> tokens(
      new OperatorTokens(store, clock, std::move(bootstrap_token), stats));
  OperatorTokens* raw = tokens.get();
  // Watch first: a change between the list and the watch is not lost (Apply keeps the newest).
  tokens->watch_ = store.Watch([raw](const WatchEvent& event) {
    if (event.resource.key.kind != kOperatorTokenKind) return;
    raw->Apply(event.resource, event.type == WatchEvent::Type::kDelete);
  });
  absl::StatusOr<std::vector<StoredResource>> all = store.List(kOperatorTokenKind, "");
  if (!all.ok()) return Annotate(all.status(), "reading the operator tokens");
  for (const StoredResource& stored : *all) raw->Apply(stored, /*deleted=*/false);
  std::lock_guard<std::mutex> lock(raw->apply_mu_);
  // From now on every change arrives in order, through the watch.
  raw->deleted_.clear();
  raw->loading_ = false;
  return tokens;
}

void OperatorTokens::Apply(const StoredResource& stored, bool deleted) {
  std::lock_guard<std::mutex> lock(apply_mu_);
  const std::string& name = stored.key.name;
  std::shared_ptr<const Records> current = records_.load(std::memory_order_acquire);
  auto it = current->find(name);
  if (it != current->end() && it->second.revision > stored.revision) return;  // older news
  auto next = std::make_shared<Records>(*current);
  if (deleted) {
    next->erase(name);
    if (loading_) {
      int64_t& at = deleted_[name];
      at = std::max(at, stored.revision);
    }
  } else {
    if (auto d = deleted_.find(name); d != deleted_.end() && d->second > stored.revision) return;
    absl::StatusOr<std::pair<OperatorTokenInfo, std::string>> decoded =
        DecodeRecord(name, stored.body);
    if (!decoded.ok()) {
      LOG(ERROR) << "operator token \"" << name
                 << "\": stored record unreadable, ignored: " << decoded.status().message();
      next->erase(name);
    } else {
      (*next)[name] = Record{.info = std::move(decoded->first),
                             .secret_sha256 = std::move(decoded->second),
                             .revision = stored.revision};
    }
  }
  records_.store(std::move(next), std::memory_order_release);
}

absl::StatusOr<Principal> OperatorTokens::Authenticate(absl::string_view bearer) const {
  if (SameSecret(bearer, bootstrap_token_)) {
    return Principal{.name = kBootstrapName, .credential = kBootstrapName, .role = Role::kAdmin};
  }
  if (LooksLikeBootstrapToken(bearer)) return absl::UnauthenticatedError("wrong bearer token");
  if (!absl::StartsWith(bearer, absl::StrCat(kTokenPrefix, "."))) {
    return absl::NotFoundError("not an API token");
  }
  std::vector<absl::string_view> parts = absl::StrSplit(bearer, '.');
  if (parts.size() != 3 || !config::IsDnsLabel(parts[1]) || parts[2].empty()) {
    return absl::UnauthenticatedError("malformed operator token (mot1.NAME.SECRET)");
  }
  std::shared_ptr<const Records> records = records_.load(std::memory_order_acquire);
  auto it = records->find(parts[1]);
  if (it == records->end()) {
    return absl::UnauthenticatedError(
        absl::StrCat("operator token \"", parts[1], "\" does not exist (revoked?)"));
  }
  const Record& record = it->second;
  if (!SameSecret(tls::Sha256Hex(parts[2]), record.secret_sha256)) {
    return absl::UnauthenticatedError(
        absl::StrCat("operator token \"", parts[1], "\": wrong secret"));
  }
  if (record.info.expires_at.has_value() && clock_.WallNow() >= *record.info.expires_at) {
    return absl::UnauthenticatedError(absl::StrCat("operator token \"", parts[1], "\" expired at ",
                                                   Rfc3339(*record.info.expires_at)));
  }
  return Principal{
      .name = record.info.name, .credential = "operator-token", .role = record.info.role};
}

absl::StatusOr<CreatedOperatorToken> OperatorTokens::Create(const OperatorTokenSpec& spec) {
  if (!config::IsDnsLabel(spec.name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("name: \"", spec.name,
                     "\" is not a DNS label (lowercase letters, digits and '-', at most 63)"));
  }
  if (spec.name == kBootstrapName) {
    return absl::InvalidArgumentError(
        absl::StrCat("name: \"", kBootstrapName, "\" is the bootstrap token's"));
  }
  if (spec.ttl < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("ttl: must not be negative (0: never expires)");
  }
  std::string raw(kSecretBytes, '\0');
  CHECK(RAND_bytes(reinterpret_cast<uint8_t*>(raw.data()), raw.size()) == 1);
  std::string secret;
  absl::WebSafeBase64Escape(raw, &secret);  // unpadded base64url: no '.'
  // Whole seconds: the stored form has second precision.
  const absl::Time now = absl::FromUnixSeconds(absl::ToUnixSeconds(clock_.WallNow()));
  OperatorTokenInfo info{
      .name = spec.name, .role = spec.role, .created_at = now, .created_by = spec.created_by};
  if (spec.ttl > absl::ZeroDuration()) {
    info.expires_at = absl::FromUnixSeconds(absl::ToUnixSeconds(now + spec.ttl));
  }
  absl::StatusOr<int64_t> revision =
      store_.Put(KeyFor(spec.name), EncodeRecord(info, tls::Sha256Hex(secret)), kMustNotExist);
  if (absl::IsAlreadyExists(revision.status()) || absl::IsFailedPrecondition(revision.status())) {
    return absl::AlreadyExistsError(
        absl::StrCat("name: an operator token \"", spec.name, "\" exists already"));
  }
  if (!revision.ok()) return revision.status();
  // Valid here at once, whenever the store's watch delivers it (etcd: a moment later).
  Apply({.key = KeyFor(spec.name),
         .body = EncodeRecord(info, tls::Sha256Hex(secret)),
         .revision = *revision},
        /*deleted=*/false);
  created_.Inc();
  LOG(INFO) << "API: operator token \"" << spec.name << "\" (" << RoleName(spec.role)
            << ") created by " << spec.created_by;
  return CreatedOperatorToken{.token = absl::StrCat(kTokenPrefix, ".", spec.name, ".", secret),
                              .info = std::move(info)};
}

std::vector<OperatorTokenInfo> OperatorTokens::List() const {
  std::shared_ptr<const Records> records = records_.load(std::memory_order_acquire);
  std::vector<OperatorTokenInfo> out;
  out.reserve(records->size());
  for (const auto& [name, record] : *records) out.push_back(record.info);
  return out;
}

absl::Status OperatorTokens::Revoke(absl::string_view name) {
  if (!config::IsDnsLabel(name)) {
    return absl::NotFoundError(absl::StrCat("no operator token \"", name, "\""));
  }
  absl::StatusOr<int64_t> deleted = store_.Delete(KeyFor(name), kAnyRevision);
  if (absl::IsNotFound(deleted.status())) {
    return absl::NotFoundError(absl::StrCat("no operator token \"", name, "\""));
  }
  if (!deleted.ok()) return deleted.status();
  // Refused here from now on, whenever the store's watch delivers it.
  Apply({.key = KeyFor(name), .revision = *deleted}, /*deleted=*/true);
  revoked_.Inc();
  LOG(INFO) << "API: operator token \"" << name << "\" revoked";
  return absl::OkStatus();
}

}  // namespace meshlet::controlplane::access

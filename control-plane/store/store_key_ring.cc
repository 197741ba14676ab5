#include "control-plane/store/store_key_ring.h"

#include <openssl/mem.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/file.h"
#include "common/base/logging.h"
#include "common/stats/must_stat.h"
#include "common/tls/digest.h"

namespace meshlet::controlplane {
namespace {

// Bigger than any key file (a key line is 45 bytes); what FromFile reads too.
constexpr size_t kMaxKeyFileBytes = 64 * 1024;

}  // namespace

absl::StatusOr<std::unique_ptr<StoreKeyRing>> StoreKeyRing::Open(std::string path,
                                                                 StatsRegistry* stats) {
  absl::StatusOr<std::string> text = ReadFile(path, kMaxKeyFileBytes);
  if (!text.ok()) return text.status();
  absl::StatusOr<StoreKeys> keys = StoreKeys::Parse(*text, path);
  std::string digest = tls::Sha256(*text);
  OPENSSL_cleanse(text->data(), text->size());
  if (!keys.ok()) return keys.status();
  return std::unique_ptr<StoreKeyRing>(
      new StoreKeyRing(std::move(path), stats, std::make_shared<const StoreKeys>(*std::move(keys)),
                       std::move(digest)));
}

StoreKeyRing::StoreKeyRing(std::string path, StatsRegistry* stats,
                           std::shared_ptr<const StoreKeys> keys, std::string digest)
    : path_(std::move(path)), stats_(stats), keys_(std::move(keys)), digest_(std::move(digest)) {
  if (stats_ == nullptr) return;
  StatsShard& shard = stats_->shared_shard();
  constexpr char kReloads[] = "meshlet_cp_store_key_reloads_total";
  constexpr char kReloadsHelp[] =
      "Changes of --store-encryption-key-file: taken (ok), or refused because the new file "
      "could not be read or parsed (failed; the keys in use stay).";
  reloads_ok_ = MustStat(shard.RegisterCounter(kReloads, kReloadsHelp, {{"result", "ok"}}));
  reloads_failed_ = MustStat(shard.RegisterCounter(kReloads, kReloadsHelp, {{"result", "failed"}}));
  resealed_ =
      MustStat(shard.RegisterCounter("meshlet_cp_store_resealed_records_total",
                                     "ControlPlaneSecret records this replica sealed again with "
                                     "the first key of its key file."));
  check_errors_ = MustStat(shard.RegisterCounter("meshlet_cp_store_key_check_errors_total",
                                                 "Checks of which key seals the ControlPlaneSecret "
                                                 "records that failed (store errors, a record that "
                                                 "does not authenticate)."));
  key_count_ = MustStat(shard.RegisterGauge(
      "meshlet_cp_store_keys", "Keys of --store-encryption-key-file in use (the first seals).", {},
      GaugeMerge::kGlobal));
  key_count_.Set(static_cast<int64_t>(keys_->size()));
}

std::shared_ptr<const StoreKeys> StoreKeyRing::keys() const {
  MutexLock lock(&mu_);
  return keys_;
}

bool StoreKeyRing::Reload() {
  absl::StatusOr<std::string> text = ReadFile(path_, kMaxKeyFileBytes);
  absl::StatusOr<StoreKeys> parsed = absl::UnknownError("unread");
  std::string digest;
  if (text.ok()) {
    digest = tls::Sha256(*text);
    if (digest == digest_) {
      OPENSSL_cleanse(text->data(), text->size());
      last_error_.clear();
      return false;
    }
    parsed = StoreKeys::Parse(*text, path_);
    OPENSSL_cleanse(text->data(), text->size());
  } else {
    parsed = text.status();
  }
  // A file that parses but lacks a key still sealing a record (the older keys dropped before
  // every record was sealed again) would leave no replica able to start: refused, and read
  // again at the next check, since the records may be sealed again meanwhile.
  bool lacks_a_sealing_key = false;
  if (parsed.ok()) {
    std::vector<std::string> still_sealing;
    for (const auto& [record, key_id] : sealed_) {
      if (!key_id.empty() && !parsed->HasKey(key_id)) {
        still_sealing.push_back(absl::StrCat(record, " (key ", key_id, ")"));
      }
    }
    if (!still_sealing.empty()) {
      lacks_a_sealing_key = true;
      parsed = absl::FailedPreconditionError(absl::StrCat(
          path_, " lacks the key that still seals ", absl::StrJoin(still_sealing, ", "),
          "; keep the older keys after the first one until every record is sealed with it "
          "(meshctl install --secrets --rotate-store-key --finish says when)"));
    }
  }
  if (!parsed.ok()) {
    // Unreadable: logged once per error; unparsable: once per content.
    const std::string error(parsed.status().message());
    if (!digest.empty() && !lacks_a_sealing_key) digest_ = digest;
    if (error == last_error_) return false;
    last_error_ = error;
    reloads_failed_.Inc();
    std::vector<std::string> ids = keys()->key_ids();
    LOG(ERROR) << "--store-encryption-key-file changed but is refused: " << error
               << "; the keys in use stay (" << absl::StrJoin(ids, ", ") << ")";
    return false;
  }
  last_error_.clear();
  digest_ = std::move(digest);
  auto keys = std::make_shared<const StoreKeys>(*std::move(parsed));
  const std::vector<std::string> before = this->keys()->key_ids();
  LOG(INFO) << "--store-encryption-key-file changed: keys " << absl::StrJoin(keys->key_ids(), ", ")
            << " (the first seals), were " << absl::StrJoin(before, ", ");
  key_count_.Set(static_cast<int64_t>(keys->size()));
  {
    MutexLock lock(&mu_);
    keys_ = std::move(keys);
  }
  reloads_ok_.Inc();
  return true;
}

absl::StatusOr<std::vector<SealedRecord>> StoreKeyRing::ResealAndCount(Store& store) {
  const std::shared_ptr<const StoreKeys> keys = this->keys();
  int resealed = 0;
  absl::StatusOr<std::vector<SealedRecord>> records = ResealSharedValues(store, *keys, &resealed);
  resealed_.Inc(resealed);
  if (!records.ok()) {
    check_errors_.Inc();
    return records;
  }
  std::map<std::string, std::string> now;
  for (const SealedRecord& r : *records) {
    const std::string record = absl::StrCat(kSharedValueKind, "/", r.name);
    now[record] = r.key_id;
    if (!r.key_id.empty() && !keys->HasKey(r.key_id)) {
      LOG_EVERY_N_SEC(ERROR, 60) << record << " in the store is sealed with key " << r.key_id
                                 << ", which --store-encryption-key-file no longer holds: put "
                                    "that key back after the first one, or no replica can "
                                    "start";
    }
  }
  if (stats_ != nullptr) {
    auto set = [this](const std::string& record, const std::string& key_id, int64_t value) {
      absl::StatusOr<Gauge> gauge = stats_->shared_shard().RegisterGauge(
          "meshlet_cp_store_sealed_records",
          "1 for the key (key_id; \"\" unencrypted) that seals each ControlPlaneSecret record "
          "(record) at the last check, 0 for the keys that sealed it before.",
          {{"record", record}, {"key_id", key_id}}, GaugeMerge::kGlobal);
      if (gauge.ok()) gauge->Set(value);
    };
    for (const auto& [record, key_id] : sealed_) {
      auto it = now.find(record);
      if (it == now.end() || it->second != key_id) set(record, key_id, 0);
    }
    for (const auto& [record, key_id] : now) set(record, key_id, 1);
  }
  sealed_ = std::move(now);
  return records;
}

}  // namespace meshlet::controlplane

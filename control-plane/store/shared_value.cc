#include "control-plane/store/shared_value.h"

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"

namespace meshlet::controlplane {
namespace {

// Writes a record that raced another replica's write: reads again (bounded, each round means
// another replica changed the record meanwhile).
constexpr int kRounds = 5;

// The key id sealing `body`; "" for a plaintext value.
std::string SealingKey(absl::string_view body) {
  return StoreKeys::IsSealed(body) ? StoreKeys::KeyIdOf(body) : "";
}

// LoadOrCreateSharedValue, adding to `*resealed` (when given) the records it sealed again.
absl::StatusOr<std::string> LoadOrReseal(Store& store, const StoreKeys& keys,
                                         absl::string_view name,
                                         const std::function<absl::StatusOr<std::string>()>& create,
                                         int* resealed) {
  const ResourceKey key{kSharedValueKind, "", std::string(name)};
  const std::string record = absl::StrCat(kSharedValueKind, "/", name);
  auto failed = [&](const absl::Status& status) {
    return absl::Status(status.code(), absl::StrCat(record, " in the store: ", status.message()));
  };
  for (int round = 0; round < kRounds; ++round) {
    absl::StatusOr<StoredResource> stored = store.Get(key);
    if (stored.ok()) {
      std::string value;
      std::string rewrite_why;
      if (StoreKeys::IsSealed(stored->body)) {
        absl::StatusOr<std::string> opened = keys.Open(name, stored->body);
        if (!opened.ok()) {
          return failed(
              absl::Status(opened.status().code(),
                           absl::StrCat(opened.status().message(),
                                        absl::IsFailedPrecondition(opened.status())
                                            ? "; give it the key file the other replicas use "
                                              "(--store-encryption-key-file)"
                                            : "")));
        }
        value = *std::move(opened);
        const std::string key_id = StoreKeys::KeyIdOf(stored->body);
        if (key_id != keys.current_key_id()) {
          rewrite_why = absl::StrCat("was encrypted with the older key ", key_id);
        }
      } else {
        value = std::move(stored->body);
        rewrite_why = "was stored unencrypted (by an older version)";
      }
      if (rewrite_why.empty()) return value;
      absl::StatusOr<std::string> sealed = keys.Seal(name, value);
      if (!sealed.ok()) return failed(sealed.status());
      absl::StatusOr<int64_t> put = store.Put(key, *sealed, stored->revision);
      if (put.ok()) {
        if (resealed != nullptr) ++*resealed;
        LOG(WARN) << record << " in the store " << rewrite_why << "; encrypted it with key "
                  << keys.current_key_id();
        return value;
      }
      if (!absl::IsFailedPrecondition(put.status()) && !absl::IsNotFound(put.status())) {
        return failed(put.status());
      }
      continue;  // another replica re-wrote it first: read what it wrote
    }
    if (!absl::IsNotFound(stored.status())) return failed(stored.status());
    absl::StatusOr<std::string> value = create();
    if (!value.ok()) return value.status();
    absl::StatusOr<std::string> sealed = keys.Seal(name, *value);
    if (!sealed.ok()) return failed(sealed.status());
    absl::StatusOr<int64_t> put = store.Put(key, *sealed, kMustNotExist);
    if (put.ok()) return value;
    if (!absl::IsAlreadyExists(put.status())) return failed(put.status());
    // Another replica created it first: use that one.
  }
  return failed(absl::AbortedError(
      absl::StrCat("changed by other replicas ", kRounds, " times while this one read it")));
}

}  // namespace

absl::StatusOr<std::string> LoadOrCreateSharedValue(
    Store& store, const StoreKeys& keys, absl::string_view name,
    const std::function<absl::StatusOr<std::string>()>& create) {
  return LoadOrReseal(store, keys, name, create, nullptr);
}

absl::StatusOr<std::vector<SealedRecord>> ResealSharedValues(Store& store, const StoreKeys& keys,
                                                             int* resealed) {
  absl::StatusOr<std::vector<StoredResource>> records = store.List(kSharedValueKind, "");
  if (!records.ok()) {
    return absl::Status(records.status().code(),
                        absl::StrCat("listing the ", kSharedValueKind,
                                     " records in the store: ", records.status().message()));
  }
  std::vector<SealedRecord> out;
  for (const StoredResource& stored : *records) {
    const std::string& name = stored.key.name;
    const std::string key_id = SealingKey(stored.body);
    if (key_id == keys.current_key_id() || (!key_id.empty() && !keys.HasKey(key_id))) {
      out.push_back({name, key_id});
      continue;
    }
    absl::StatusOr<std::string> value = LoadOrReseal(
        store, keys, name,
        [] { return absl::StatusOr<std::string>(absl::NotFoundError("deleted meanwhile")); },
        resealed);
    if (absl::IsNotFound(value.status())) continue;  // deleted meanwhile: nothing to seal
    if (absl::IsFailedPrecondition(value.status())) {
      // Re-sealed meanwhile by a replica with a key this one does not have yet.
      absl::StatusOr<StoredResource> now = store.Get(stored.key);
      if (now.ok()) out.push_back({name, SealingKey(now->body)});
      continue;
    }
    if (!value.ok()) return value.status();
    out.push_back({name, keys.current_key_id()});
  }
  return out;
}

}  // namespace meshlet::controlplane

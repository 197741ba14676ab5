#include "control-plane/store/shared_value.h"

#include "absl/strings/str_cat.h"

namespace meshlet::controlplane {

absl::StatusOr<std::string> LoadOrCreateSharedValue(
    Store& store, absl::string_view name,
    const std::function<absl::StatusOr<std::string>()>& create) {
  const ResourceKey key{kSharedValueKind, "", std::string(name)};
  auto failed = [&](const absl::Status& status) {
    return absl::Status(status.code(),
                        absl::StrCat("shared ", name, " in the store: ", status.message()));
  };
  absl::StatusOr<StoredResource> stored = store.Get(key);
  if (stored.ok()) return std::move(stored->body);
  if (!absl::IsNotFound(stored.status())) return failed(stored.status());
  absl::StatusOr<std::string> value = create();
  if (!value.ok()) return value.status();
  absl::StatusOr<int64_t> put = store.Put(key, *value, kMustNotExist);
  if (put.ok()) return value;
  if (!absl::IsAlreadyExists(put.status())) return failed(put.status());
  // Another replica created it first: use that one.
  stored = store.Get(key);
  if (!stored.ok()) return failed(stored.status());
  return std::move(stored->body);
}

}  // namespace meshlet::controlplane

#pragma once

// Values every control-plane replica of one mesh must hold the same (the API token, a generated
// CA root), kept in the store as records of kind "ControlPlaneSecret" (not a kind the API serves,
// so never listed or returned by it). The first replica to start creates each; the others read
// what it wrote.
//
// The records are encrypted with the replicas' store keys (store_keys.h), which live outside the
// store: etcd and its backups hold only envelopes. A record found in plaintext (written before
// the store was encrypted) is encrypted in place when read, and one sealed with an older key of
// the key file is sealed again with the current one; both are logged. A record sealed with a key
// this replica lacks, or that does not authenticate, is an error naming the record and the key.
// After the key file changed, ResealSharedValues does the same for every record at once.

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "control-plane/store/store.h"
#include "control-plane/store/store_keys.h"

namespace meshlet::controlplane {

inline constexpr char kSharedValueKind[] = "ControlPlaneSecret";

// The value stored as `name`, or, when there is none yet, `create()`'s, stored create-only: of
// replicas starting together exactly one value wins and every one of them returns it. Store and
// decryption errors come back with the record's name ("ControlPlaneSecret/NAME in the store: ").
// Blocks on the store.
absl::StatusOr<std::string> LoadOrCreateSharedValue(
    Store& store, const StoreKeys& keys, absl::string_view name,
    const std::function<absl::StatusOr<std::string>()>& create);

// A ControlPlaneSecret record and the key that seals it.
struct SealedRecord {
  std::string name;    // "api-token"
  std::string key_id;  // StoreKeys::KeyIdOf; "" when stored unencrypted
  bool operator==(const SealedRecord& other) const {
    return name == other.name && key_id == other.key_id;
  }
};

// Seals again with `keys`' first key every ControlPlaneSecret record sealed with another of
// `keys` (or stored unencrypted), as LoadOrCreateSharedValue does for one record: each write is
// conditional on the revision read, so of replicas doing this together one write lands per record
// and the others read what it wrote. A record sealed with a key `keys` lacks is left as it is.
// Returns every record with the key that seals it afterwards, ordered by name, and adds to
// `*resealed` (when given) the records this call wrote. Store errors and a record that does not
// authenticate end the call (the error names the record). Blocks on the store.
absl::StatusOr<std::vector<SealedRecord>> ResealSharedValues(Store& store, const StoreKeys& keys,
                                                             int* resealed = nullptr);

}  // namespace meshlet::controlplane

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

#include <functional>
#include <string>

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

}  // namespace meshlet::controlplane

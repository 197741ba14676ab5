#pragma once

// Values every control-plane replica of one mesh must hold the same (the API token, a generated
// CA root), kept in the store as records of kind "ControlPlaneSecret" (not a kind the API serves,
// so never listed or returned by it). The first replica to start creates each; the others read
// what it wrote.
//
// Such a record is as safe as the store: with etcd, protect etcd with TLS, client certificates and
// authentication, and its backups like the secret they hold.

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "control-plane/store/store.h"

namespace meshlet::controlplane {

inline constexpr char kSharedValueKind[] = "ControlPlaneSecret";

// The value stored as `name`, or, when there is none yet, `create()`'s, stored create-only: of
// replicas starting together exactly one value wins and every one of them returns it. Store errors
// come back with the name.
absl::StatusOr<std::string> LoadOrCreateSharedValue(
    Store& store, absl::string_view name,
    const std::function<absl::StatusOr<std::string>()>& create);

}  // namespace meshlet::controlplane

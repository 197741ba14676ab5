#pragma once

// What the two halves of EtcdStore share (etcd_store.cc: connecting, resources and their watch;
// etcd_store_leases.cc: the lease and the leased keys): etcd's gRPC method names and the layout
// of the keys. Internal to the etcd store.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/str_format.h"

namespace meshlet::controlplane::etcd_internal {

inline constexpr char kRange[] = "/etcdserverpb.KV/Range";
inline constexpr char kTxn[] = "/etcdserverpb.KV/Txn";
inline constexpr char kWatch[] = "/etcdserverpb.Watch/Watch";
inline constexpr char kAuthenticate[] = "/etcdserverpb.Auth/Authenticate";
inline constexpr char kLeaseGrant[] = "/etcdserverpb.Lease/LeaseGrant";
inline constexpr char kLeaseRevoke[] = "/etcdserverpb.Lease/LeaseRevoke";
inline constexpr char kLeaseKeepAlive[] = "/etcdserverpb.Lease/LeaseKeepAlive";
// Leased keys: <prefix>_leased/<lease id as 16 hex digits>/<name>. Not a resource key ('_' is no
// kind's first letter).
inline constexpr char kLeasedSpace[] = "_leased/";
// Leased keys written per transaction (etcd's --max-txn-ops defaults to 128).
inline constexpr size_t kLeasedBatch = 64;

// A lease id as it stands in leased keys and logs: 16 hex digits.
inline std::string LeaseOwner(int64_t lease) {
  return absl::StrFormat("%016x", static_cast<uint64_t>(lease));
}

}  // namespace meshlet::controlplane::etcd_internal

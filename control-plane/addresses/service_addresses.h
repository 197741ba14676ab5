#pragma once

// ServiceAddresses: the virtual addresses of Services that declare none (spec.addresses empty),
// allocated from MeshConfig's serviceAddressRange (IPv4, default 240.240.0.0/16) and
// serviceAddressRangeV6 (IPv6, none by default), one per range, and kept in the Service's own
// status.addresses. So an allocation is stored with its Service, in the same atomic write, lives
// as long as it (restarts included: it is in the store) and is released when it is deleted
// (docs/adr/0037-service-addresses-in-the-store.md).
//
// Stable: an address, once given, stays with its Service while the Service exists and declares
// no addresses of its own, across updates and range changes. Not reused early: each range has a
// cursor, the offset of the next address never handed out, kept in the store as the record
// AddressAllocation/-/services (not a policy kind: the API neither lists nor serves it).
// Allocation takes the next free address past the cursor, so an address a deleted Service gave
// back is handed out again only once every address of the range has been handed out once
// (clients holding a stale DNS answer are not sent to another service before that); from then
// on the lowest free address. The cursor is written before the Service (a reservation): a crash
// in between leaves an address unused, never two Services with one address.
//
// A full range is not an error: the Service is stored without an address from it, with a
// warning (and meshlet_cp_service_addresses_exhausted_total), and gets one at its next write,
// after the next MeshConfig write, or at the next start (AssignMissing).
//
// Several control-plane replicas on one store (etcd): every allocation writes the cursor record
// with compare-and-swap before its Service, reserving the addresses it took in the record until
// the Service is written (Settle). Two replicas allocating at once: one write fails, and that
// replica reads the record again, which now holds the other's reservation, and allocates anew (up
// to kAllocationAttempts times), so two Services never get one address.
//
// Threading: not thread-safe. The API calls it on its loop thread, which also serialises the
// writes of the Services it assigns to.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/net/ip_prefix.h"
#include "common/stats/stats.h"
#include "control-plane/policy/kinds.h"
#include "control-plane/store/store.h"
#include "xds/policy.pb.h"

namespace meshlet::controlplane::addresses {

using policy::kDefaultServiceAddressRange;  // serviceAddressRange when unset
// The store record holding the ranges' cursors.
inline constexpr char kAllocationKind[] = "AddressAllocation";
inline constexpr char kAllocationName[] = "services";
// Reservations the cursor record keeps at most (one left behind by a crash lapses after that
// many later ones), and how often an allocation that raced another replica's is tried again.
inline constexpr size_t kReservedAddresses = 256;
inline constexpr int kAllocationAttempts = 8;

class ServiceAddresses {
 public:
  // `store` is not owned and must outlive this. `stats` may be null.
  ServiceAddresses(Store& store, StatsRegistry* stats);

  // Sets `service`'s status.addresses before it is written: none when it declares
  // spec.addresses (what it had is released); else what `previous` (its stored version, null
  // when new) was given, plus an address from each configured range it has none of. The stored
  // Services' addresses (listed from the store when an address is needed; only the Services
  // written since the last listing are parsed again) and the reserved ones are in use. `dry_run`:
  // the answer is what the write would store, but no cursor moves. A full range adds a warning; a
  // store failure is the error.
  absl::Status Assign(meshlet::policy::Service& service, const meshlet::policy::Service* previous,
                      bool dry_run, std::vector<std::string>& warnings);
  // After the write of the Service the last Assign gave addresses, whether it succeeded or not:
  // lifts their reservation. Nothing when that Assign reserved none. A failure is logged (the
  // reservation lapses after kReservedAddresses later ones).
  void Settle();

  struct Backfill {
    size_t assigned = 0;  // Services written back with new addresses
    std::vector<std::string> warnings;
  };
  // Gives every stored Service that declares no addresses one from each configured range it has
  // none of (Services stored before allocation existed, or while a range was full, or before an
  // IPv6 range was configured), writing each back.
  absl::StatusOr<Backfill> AssignMissing();

  // Stored Services parsed for their addresses so far (each once per revision), for tests.
  uint64_t services_parsed() const { return services_parsed_; }

 private:
  // The addresses (spec and status) of a stored Service at a revision.
  struct StoredAddresses {
    int64_t revision = 0;
    std::vector<net::IpAddress> addresses;  // none when it does not parse
  };
  // Lists the stored Services and brings stored_addresses_ up to date with them, parsing those
  // whose revision changed.
  absl::Status RefreshStoredAddresses();

  Store& store_;
  Counter allocated_;
  Counter exhausted_;
  std::vector<std::string> reserved_;  // by the last Assign, until Settle
  // By "<namespace>/<name>", as of the last listing.
  absl::flat_hash_map<std::string, StoredAddresses> stored_addresses_;
  uint64_t services_parsed_ = 0;
};

}  // namespace meshlet::controlplane::addresses

#pragma once

// SharedRegistrations: the registry of several control-plane replicas, shared through the store's
// leased keys (control-plane/store/leased_keys.h; etcd). Every replica publishes the workloads
// whose sidecars are connected to it (and those waiting out their grace period after their stream
// closed) under keys "workload/<id>" that live as long as the replica's lease, and feeds what the
// other replicas publish into its Registry as peers (Registry::ApplyPeerChanges). So every replica
// pushes every endpoint, whichever replica its sidecar talks to; when a replica dies its keys
// vanish with its lease, and the others keep those workloads for the grace period, by which
// time their sidecars have reconnected to a live replica and are published again by it.
//
// Publishing follows the registry: after each change (coalesced to one pass per loop turn), the
// local workloads whose registration, readiness or connection state changed are written.
// Heartbeats are not published.
//
// Threading: construct, use and destroy on the thread of `loop`, which must be the thread that
// changes the registry's local workloads (the control plane's loop). The store's watch callbacks
// are handed to `loop`. `registry` must be built with track_local_changes and outlive this.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/event/loop.h"
#include "control-plane/registry/registry.h"
#include "control-plane/store/leased_keys.h"

namespace meshlet::controlplane::registry {

// The leased key name of a workload's registration.
std::string RegistrationKey(absl::string_view workload_id);
// A workload's registration as published, and back (InvalidArgument for bytes that are not one).
std::string EncodeRegistration(const Workload& workload);
absl::StatusOr<Workload> DecodeRegistration(absl::string_view bytes);

class SharedRegistrations {
 public:
  SharedRegistrations(event::Loop& loop, Registry& registry, LeasedKeys& keys);
  ~SharedRegistrations();
  SharedRegistrations(const SharedRegistrations&) = delete;
  SharedRegistrations& operator=(const SharedRegistrations&) = delete;

  // Registrations written (set or deleted), other replicas' changes applied, and published values
  // from other replicas that did not decode (skipped, logged).
  uint64_t published() const { return published_; }
  uint64_t applied() const { return applied_; }
  uint64_t undecodable() const { return *undecodable_; }

 private:
  void SchedulePublish();
  void Publish();

  event::Loop& loop_;
  Registry& registry_;
  LeasedKeys& keys_;
  // Checked by tasks posted to the loop: false once this is destroyed.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  bool publish_scheduled_ = false;
  uint64_t published_ = 0;
  uint64_t applied_ = 0;
  // Counted on the store's thread.
  std::shared_ptr<std::atomic<uint64_t>> undecodable_ = std::make_shared<std::atomic<uint64_t>>(0);
  std::unique_ptr<Registry::WatchHandle> registry_watch_;
  std::unique_ptr<LeasedKeys::WatchHandle> keys_watch_;
};

}  // namespace meshlet::controlplane::registry

#pragma once

// ConfigEvents: the moments the mesh's configuration changed, drawn as markers on the dashboard's
// charts and returned in the `events` of GET /api/v1/stat/history (ADR 0095, "Amended: policy
// markers"). Two sources:
//
//   - policy: a stored policy object written or deleted (kind, namespace/name, verb, store
//     revision), as the store's watch reports it. Every replica on a shared store (etcd) watches
//     the same changes, so every replica holds the same policy events (same revisions; times
//     differ by the watch's delay). `who` (principal and role) comes from the API write this
//     replica took (the audit record, access/audit_log.h): only the replica that took the write
//     knows it; the others show the event without it (and say so: "whoKnown":false).
//   - push: the discovery server took a new policy version (the store revision) to push to the
//     sidecars connected then (their number), debounced like every push.
//
// A policy event concerns the services its spec names (target, service, host(s), parentRefs' and
// backendRefs' names; a Service object itself), as "name.namespace" the way /api/v1/stat names
// services; an object naming none (MeshConfig, a namespace-wide policy) concerns every service.
//
// Bounded: at most `max_events` kept (the oldest go first, counted), none older than `retention`,
// at most `max_services` names per event, at most `max_pending_writes` writes awaiting their store
// event. Memory: ~200 bytes per event, ~200 KB at the default 1 000.
//
// Threading: the control plane's loop thread only (the store watch's callback posts to it).

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/stats/stats.h"

namespace meshlet::controlplane::telemetry {

struct ConfigEventsLimits {
  size_t max_events = 1000;
  Duration retention = std::chrono::hours(1);
  size_t max_services = 16;
  size_t max_pending_writes = 64;
  // An API write and the store event it made are matched (for `who`) within this.
  Duration match_within = std::chrono::seconds(10);
};

struct ConfigEvent {
  enum class Type { kPolicy, kPush };
  Type type = Type::kPolicy;
  absl::Time time;
  int64_t revision = 0;  // the store revision written (policy) or pushed (push)
  // kPolicy:
  std::string kind;  // the store kind: "HTTPRoute", "GatewayHTTPRoute"
  std::string namespace_, name;
  std::string verb;                   // created, updated, deleted
  std::vector<std::string> services;  // "name.namespace"; empty: every service
  std::string who, role;              // empty unless this replica took the write
  // kPush:
  size_t proxies = 0;
};

// The services a stored policy object's JSON `body` names (see the file comment), at most
// `max` of them, sorted; a Service object names itself. Unparsable bodies name none.
std::vector<std::string> ServicesNamedBy(absl::string_view kind, absl::string_view namespace_,
                                         absl::string_view name, absl::string_view body,
                                         size_t max);

class ConfigEvents {
 public:
  // `clock` must outlive this; `stats` may be null (not owned).
  ConfigEvents(const Clock& clock, ConfigEventsLimits limits, StatsRegistry* stats);
  ~ConfigEvents();
  ConfigEvents(const ConfigEvents&) = delete;
  ConfigEvents& operator=(const ConfigEvents&) = delete;

  // A policy object changed in the store (its watch): `created` when revision is its first.
  void AddPolicyChange(std::string kind, std::string namespace_, std::string name, bool deleted,
                       bool created, int64_t revision, std::vector<std::string> services);
  // An API write this replica answered with 2xx: `resource` is the path's plural ("httproutes");
  // `who` and `role` the caller. Attached to the matching policy event (before or after it).
  void AddWrite(absl::string_view resource, absl::string_view namespace_, absl::string_view name,
                absl::string_view who, absl::string_view role);
  // The discovery server took policy revision `revision` to push to `proxies` sidecars.
  void AddPush(int64_t revision, size_t proxies);

  // The events in [from, to) concerning any of `services` (empty: all), oldest first, as a JSON
  // array.
  std::string EventsJson(absl::Time from, absl::Time to,
                         const std::vector<std::string>& services) const;

  const std::deque<ConfigEvent>& events() const { return events_; }

 private:
  struct PendingWrite {
    std::string resource, namespace_, name, who, role;  // resource: the path's plural
    absl::Time time;
  };
  void Push(ConfigEvent event);
  void Trim(absl::Time now);

  const Clock& clock_;
  const ConfigEventsLimits limits_;
  std::deque<ConfigEvent> events_;
  std::deque<PendingWrite> pending_writes_;
  Counter recorded_, dropped_, unmatched_writes_;
};

}  // namespace meshlet::controlplane::telemetry

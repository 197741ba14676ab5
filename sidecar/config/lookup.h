#pragma once

// What a lookup of an unknown destination (ADR 0086: a captured connection's original address or
// a request's host, as a key of xds/protocol.h) ended with. The main thread's discovery
// (OnDemandDiscovery) answers the keys the workers asked for after it posted the snapshot that
// carries the answer, and each worker wakes the connections and requests waiting for those keys
// (listener/on_demand_waiters.h). Plain values; any thread.

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace meshlet::sidecar::config {

enum class LookupOutcome {
  kFound,         // the snapshot posted before the answer serves the key
  kNotFound,      // the control plane knows nothing this node may reach by that key
  kRefused,       // the answer could not be applied (NACKed), or the control plane refused the key
  kTimeout,       // no answer within the listener's on_demand.timeout
  kDisconnected,  // no control-plane stream to ask on
  kOverflow,      // the worker's table of waiting connections and requests is full
  kLimit,         // the sidecar's table of keys is full
};

// "found", "not_found", "refused", "timeout", "disconnected", "overflow", "limit": the value of
// the result label in stats.
absl::string_view LookupOutcomeName(LookupOutcome outcome);

// What a key names: a captured connection's original destination ("addr:...") or a request's
// host ("host:..."); the value of the kind label in stats ("address", "host").
enum class LookupKind { kAddress, kHost };
inline constexpr size_t kLookupKindCount = 2;
LookupKind LookupKindOf(absl::string_view key);
absl::string_view LookupKindName(LookupKind kind);

struct LookupAnswer {
  std::string key;
  LookupOutcome outcome = LookupOutcome::kNotFound;
};

}  // namespace meshlet::sidecar::config

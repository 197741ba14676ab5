#pragma once

// CaptureStats: what a capture listener (ListenerConfig::use_original_destination) did with each
// connection, by the DestinationMatcher's decision (destination_matcher.h):
//
//   meshlet_downstream_cx_original_destination_total{listener, result}
//     result = "not_redirected" (served by the listener's own fields), "matched" (a destination
//     served it), "passthrough" (sent on to where it was going), "refused"
//
// One set of handles per listener and worker, registered on the worker's StatsShard and used on
// its thread only; it must not outlive the shard. Default handles count nothing.
//
// CaptureSeen(): whether any capture listener of this process has recorded a redirected
// connection (any decision but kListener) since the process started: the packet filter's rules
// are in effect. Process-wide and monotonic; any thread.

#include <array>
#include <string>

#include "common/stats/stats.h"
#include "sidecar/listener/destination_matcher.h"

namespace meshlet::sidecar::listener {

struct CaptureStats {
  // Indexed by CaptureDecision::Action.
  std::array<Counter, 4> connections;

  // Registers the listener's series on `shard` (failures leave discarding handles and are logged).
  static CaptureStats Create(StatsShard& shard, const std::string& listener_name);
  // Counts one connection with `action`.
  void Record(CaptureDecision::Action action) const {
    connections[static_cast<size_t>(action)].Inc();
    if (action != CaptureDecision::Action::kListener) NoteRedirected();
  }

 private:
  static void NoteRedirected();
};

bool CaptureSeen();

}  // namespace meshlet::sidecar::listener

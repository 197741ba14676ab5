#pragma once

// FaultFilter: the route's fault injection (RouteEntry::fault, and the x-meshlet-fault-* request
// headers when the route sets fault_header_triggered), the first route-level filter of the chain
// (stream/filter.h). An optional fixed delay (flag DI), then an optional abort with an HTTP
// status (gRPC requests: a trailers-only reply with the configured gRPC status; flag FI, body
// "fault injected"). A delayed request meets the abort and then the rest of the chain when its
// delay ends, as if it had just arrived; the route timeout, armed before the route-level filters,
// keeps running meanwhile (docs/resilience.md).
//
// Header-triggered faults (only on routes that enable them; otherwise the headers are ignored):
//   x-meshlet-fault-delay-ms: N      delay N ms (0..kMaxHeaderFaultDelay)
//   x-meshlet-fault-abort: S         abort with HTTP status S (200..599)
//   x-meshlet-fault-abort-grpc: C    abort gRPC requests with status C (1..16)
// They apply to every request carrying them (no percentage) and take precedence over the route's
// configured fault of the same kind. Malformed values are ignored.
//
// Ownership: a member of the stream. The delay timer is inline (no allocation); OnStreamEnd()
// cancels it. Randomness and the loop are the worker's.

#include <optional>

#include "common/base/random.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/header_map.h"
#include "sidecar/resilience/fault.h"
#include "sidecar/route/route_config.h"
#include "sidecar/stream/filter.h"

namespace meshlet::sidecar::filters {

inline constexpr absl::string_view kFaultDelayHeader = "x-meshlet-fault-delay-ms";
inline constexpr absl::string_view kFaultAbortHeader = "x-meshlet-fault-abort";
inline constexpr absl::string_view kFaultAbortGrpcHeader = "x-meshlet-fault-abort-grpc";
// Longest delay a request header may ask for.
inline constexpr Duration kMaxHeaderFaultDelay = std::chrono::seconds(60);

// The fault for one request: the route's configured fault (percentages drawn from `random`: the
// delay's, then the abort's) overridden by the x-meshlet-fault-* headers when `header_triggered`.
resilience::FaultDecision DecideRequestFault(const std::optional<resilience::FaultConfig>& fault,
                                             bool header_triggered, const http::HeaderMap& headers,
                                             bool grpc, Random& random);

class FaultFilter final : public stream::Filter {
 public:
  FaultFilter(stream::FilterCallbacks& callbacks, event::Loop& loop, Random& random)
      : callbacks_(callbacks), route_(callbacks.route()), loop_(loop), random_(random) {}

  stream::FilterStatus DecodeHeaders(http::HeaderMap& headers, bool) override {
    const route::RouteEntry* route = route_.entry;
    if (route == nullptr ||
        (!route->extras->fault.has_value() && !route->extras->fault_header_triggered)) {
      return stream::FilterStatus::kContinue;
    }
    return Decide(*route, headers);
  }
  void OnStreamEnd() override {
    if (timer_.has_value()) timer_->Disable();
  }

  bool delaying() const { return timer_.has_value() && timer_->enabled(); }

 private:
  stream::FilterStatus Decide(const route::RouteEntry& route, const http::HeaderMap& headers);
  void OnDelayEnd();
  // kStopIteration when the decision aborts the request (answered).
  stream::FilterStatus MaybeAbort();

  stream::FilterCallbacks& callbacks_;
  const stream::Route& route_;  // the stream's, which outlives the filter
  event::Loop& loop_;
  Random& random_;
  resilience::FaultDecision decision_;
  std::optional<event::Timer> timer_;  // made only for a delayed request
};

}  // namespace meshlet::sidecar::filters

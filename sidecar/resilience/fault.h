#pragma once

// Fault injection (FaultInjection on a route): per request, decide whether to delay it and
// whether to abort it with a chosen HTTP or gRPC status, each with its own percentage.
//
// Percentages have a resolution of 1e-4 % (parts per million) and are exact: a request is
// selected when Random::Uniform(1'000'000) < round(percentage * 10'000). Draw order is fixed —
// one draw for the delay (if configured), then one for the abort (if configured) — so tests can
// script FakeRandom with PushDouble(): a draw of f selects when f < percentage / 100.
// A request may be both delayed and aborted: the delay happens first, then the abort.
//
// Pure function; no ownership, no state, nothing allocates. Header-triggered faults
// (FaultInjection.header_triggered) are the fault filter's job, not this function's.

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "common/base/clock.h"
#include "common/base/random.h"

namespace meshlet::sidecar::resilience {

struct FaultConfig {
  struct Delay {
    Duration fixed_delay = Duration::zero();  // FaultInjection.Delay.fixed_delay
    double percentage = 0;                    // 0..100
  };
  struct Abort {
    uint32_t http_status = 0;  // 200..599; used for HTTP requests, and for gRPC when grpc_status
                               // is 0
    uint32_t grpc_status = 0;  // 1..16; 0 = unset
    double percentage = 0;     // 0..100
  };
  std::optional<Delay> delay;
  std::optional<Abort> abort;
};

// Field-path errors ("abort.http_status: ...") for the config layer's NACK.
absl::Status ValidateFaultConfig(const FaultConfig& config);

struct FaultDecision {
  Duration delay = Duration::zero();  // zero: no delay
  bool abort = false;
  uint32_t http_status = 0;  // when abort
  uint32_t grpc_status = 0;  // when abort and the request is gRPC; 0: answer with http_status
  bool delayed() const { return delay > Duration::zero(); }
};

FaultDecision DecideFault(const FaultConfig& config, bool is_grpc, Random& random);

}  // namespace meshlet::sidecar::resilience

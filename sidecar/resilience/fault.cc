#include "sidecar/resilience/fault.h"

#include <cmath>

namespace meshlet::sidecar::resilience {
namespace {

constexpr uint64_t kPartsPerMillion = 1000 * 1000;

bool ValidPercentage(double p) { return p >= 0.0 && p <= 100.0; }

bool Selected(double percentage, Random& random) {
  const uint64_t threshold = static_cast<uint64_t>(std::llround(percentage * 10000.0));
  return random.Uniform(kPartsPerMillion) < threshold;
}

}  // namespace

absl::Status ValidateFaultConfig(const FaultConfig& config) {
  if (config.delay.has_value()) {
    if (!ValidPercentage(config.delay->percentage)) {
      return absl::InvalidArgumentError("delay.percentage: must be in [0, 100]");
    }
    if (config.delay->fixed_delay < Duration::zero()) {
      return absl::InvalidArgumentError("delay.fixed_delay: must not be negative");
    }
  }
  if (config.abort.has_value()) {
    if (!ValidPercentage(config.abort->percentage)) {
      return absl::InvalidArgumentError("abort.percentage: must be in [0, 100]");
    }
    if (config.abort->grpc_status > 16) {
      return absl::InvalidArgumentError("abort.grpc_status: must be a gRPC code in [1, 16]");
    }
    const uint32_t http = config.abort->http_status;
    if (http != 0 && (http < 200 || http > 599)) {
      return absl::InvalidArgumentError("abort.http_status: must be in [200, 599]");
    }
    if (http == 0 && config.abort->grpc_status == 0) {
      return absl::InvalidArgumentError("abort: needs http_status or grpc_status");
    }
  }
  return absl::OkStatus();
}

FaultDecision DecideFault(const FaultConfig& config, bool is_grpc, Random& random) {
  FaultDecision decision;
  if (config.delay.has_value() && Selected(config.delay->percentage, random)) {
    decision.delay = config.delay->fixed_delay;
  }
  if (config.abort.has_value() && Selected(config.abort->percentage, random)) {
    decision.abort = true;
    const FaultConfig::Abort& abort = *config.abort;
    if (is_grpc && abort.grpc_status != 0) {
      // gRPC clients read grpc-status; the HTTP status of a gRPC response is always 200.
      decision.http_status = 200;
      decision.grpc_status = abort.grpc_status;
    } else {
      // An HTTP request given only a gRPC status gets 503: it is the nearest generic failure.
      decision.http_status = abort.http_status != 0 ? abort.http_status : 503;
    }
  }
  return decision;
}

}  // namespace meshlet::sidecar::resilience

#include "sidecar/filters/request_gate.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace meshlet::sidecar::filters {
namespace {

using http::grpc::StatusCode;

std::optional<uint32_t> HeaderNumber(const http::HeaderMap& headers, absl::string_view name) {
  std::optional<absl::string_view> value = headers.Get(name);
  uint32_t number = 0;
  if (!value.has_value() || !absl::SimpleAtoi(*value, &number)) return std::nullopt;
  return number;
}

}  // namespace

resilience::FaultDecision DecideRequestFault(const std::optional<resilience::FaultConfig>& fault,
                                             bool header_triggered, const http::HeaderMap& headers,
                                             bool grpc, Random& random) {
  resilience::FaultDecision decision;
  if (fault.has_value()) decision = resilience::DecideFault(*fault, grpc, random);
  if (!header_triggered) return decision;
  if (std::optional<uint32_t> ms = HeaderNumber(headers, kFaultDelayHeader);
      ms.has_value() && std::chrono::milliseconds(*ms) <= kMaxHeaderFaultDelay) {
    decision.delay = std::chrono::milliseconds(*ms);
  }
  std::optional<uint32_t> http_status = HeaderNumber(headers, kFaultAbortHeader);
  if (http_status.has_value() && (*http_status < 200 || *http_status > 599)) {
    http_status.reset();
  }
  std::optional<uint32_t> grpc_status = HeaderNumber(headers, kFaultAbortGrpcHeader);
  if (grpc_status.has_value() && (*grpc_status < 1 || *grpc_status > 16)) grpc_status.reset();
  if (grpc && grpc_status.has_value()) {
    decision.abort = true;
    decision.grpc_status = *grpc_status;
    if (!http_status.has_value() && decision.http_status == 0) decision.http_status = 503;
  }
  if (http_status.has_value()) {
    decision.abort = true;
    decision.http_status = *http_status;
    // An HTTP status asked for by header wins over a configured gRPC status.
    if (!(grpc && grpc_status.has_value())) decision.grpc_status = 0;
  }
  return decision;
}

std::optional<GateReply> RateLimitReply(resilience::LocalRateLimiter* limiter,
                                        absl::string_view principal, MonotonicTime now) {
  if (limiter == nullptr) return std::nullopt;
  const resilience::SharedTokenBucket::Result result = limiter->TryTake(principal, now);
  if (result.admitted) return std::nullopt;
  return GateReply{
      .flag = router::ResponseFlag::kRateLimited,
      .http_status = 429,
      .grpc_status = StatusCode::kResourceExhausted,
      .message = "local rate limit exceeded",
      .retry_after = result.retry_after,
  };
}

bool BuildGateReply(const GateReply& reply, bool grpc, http::HeaderMap& headers,
                    net::Buffer& body) {
  const bool grpc_reply = grpc && reply.grpc_status != StatusCode::kOk;
  if (grpc_reply) {
    headers = http::grpc::LocalReplyHeaders(reply.grpc_status, reply.message);
  } else {
    body.Append(reply.message);
    body.Append("\n");
    headers.Add(":status", absl::StrCat(reply.http_status));
    headers.Add("content-type", "text/plain");
    headers.Add("content-length", absl::StrCat(body.length()));
  }
  if (reply.retry_after.has_value()) {
    // Whole seconds, rounded up, at least 1; "never" (a zero-rate bucket) caps at an hour.
    const Duration wait = std::min<Duration>(*reply.retry_after, std::chrono::hours(1));
    const int64_t seconds = std::max<int64_t>(1, (wait.count() + 999'999'999) / 1'000'000'000);
    headers.Add("retry-after", absl::StrCat(seconds));
  }
  if (reply.overloaded) headers.Add("x-meshlet-overloaded", "true");
  return !grpc_reply;
}

std::optional<GateReply> RequestGate::AfterDelay(const Request& request,
                                                 const resilience::FaultDecision& fault,
                                                 MonotonicTime now) {
  if (fault.abort) {
    return GateReply{
        .flag = router::ResponseFlag::kFaultInjected,
        .http_status = fault.http_status,
        .grpc_status =
            fault.grpc_status == 0 ? StatusCode::kOk : static_cast<StatusCode>(fault.grpc_status),
        .message = "fault injected",
    };
  }
  // The connection manager sets x-meshlet-peer-identity from the mTLS peer alone (a client's own
  // copy is removed), so it names the caller for a per-principal limit.
  if (std::optional<GateReply> limited =
          RateLimitReply(request.route.rate_limiter.get(),
                         request.headers.Get("x-meshlet-peer-identity").value_or(""), now)) {
    return limited;
  }
  if (request.cluster.BreakerRejects()) {
    request.stats.rq_breaker_open.Inc();
    return GateReply{
        .flag = router::ResponseFlag::kBreakerOpen,
        .http_status = 503,
        .grpc_status = StatusCode::kUnavailable,
        .message = "upstream circuit breaker open",
        .overloaded = true,
    };
  }
  return std::nullopt;
}

void RequestGate::OnDelayEnd() {
  if (delayed_ == nullptr) return;
  Delayed& d = *delayed_;
  const std::optional<GateReply> reply = AfterDelay(d.request, d.fault, d.clock->Now());
  if (!reply.has_value()) {
    d.proceed();
    return;
  }
  if (!d.finish()) return;
  Send(*reply, d.request.grpc, *d.info, d.encode_headers, d.encode_data);
}

}  // namespace meshlet::sidecar::filters

#include "sidecar/filters/fault_filter.h"

#include <cstdint>

#include "absl/strings/numbers.h"

namespace meshlet::sidecar::filters {
namespace {

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

stream::FilterStatus FaultFilter::Decide(const route::RouteEntry& route,
                                         const http::HeaderMap& headers) {
  decision_ = DecideRequestFault(route.extras->fault, route.extras->fault_header_triggered, headers,
                                 callbacks_.grpc(), random_);
  if (decision_.delayed()) {
    callbacks_.stream_info().SetFlag(stream::ResponseFlag::kDelayInjected);
    timer_.emplace(loop_, [this] { OnDelayEnd(); });
    timer_->Enable(decision_.delay);
    return stream::FilterStatus::kStopIteration;
  }
  return MaybeAbort();
}

stream::FilterStatus FaultFilter::MaybeAbort() {
  if (!decision_.abort) return stream::FilterStatus::kContinue;
  callbacks_.stream_info().SetFlag(stream::ResponseFlag::kFaultInjected);
  callbacks_.SendLocalReply({
      .http_status = static_cast<int>(decision_.http_status),
      // No gRPC status: gRPC requests get the HTTP status too.
      .grpc_status = decision_.grpc_status == 0
                         ? http::grpc::StatusCode::kOk
                         : static_cast<http::grpc::StatusCode>(decision_.grpc_status),
      .message = "fault injected",
  });
  return stream::FilterStatus::kStopIteration;
}

void FaultFilter::OnDelayEnd() {
  if (MaybeAbort() == stream::FilterStatus::kContinue) callbacks_.ContinueDecoding();
}

}  // namespace meshlet::sidecar::filters

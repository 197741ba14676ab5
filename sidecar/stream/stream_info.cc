#include "sidecar/stream/stream_info.h"

namespace meshlet::sidecar::stream {

absl::string_view ResponseFlagShortName(ResponseFlag flag) {
  switch (flag) {
    case ResponseFlag::kNoRoute:
      return "NR";
    case ResponseFlag::kNoClusterFound:
      return "NC";
    case ResponseFlag::kNoHealthyUpstream:
      return "UH";
    case ResponseFlag::kUpstreamConnectFailure:
      return "UF";
    case ResponseFlag::kUpstreamOverflow:
      return "UO";
    case ResponseFlag::kUpstreamRequestTimeout:
      return "UT";
    case ResponseFlag::kUpstreamReset:
      return "UR";
    case ResponseFlag::kDownstreamClosed:
      return "DC";
    case ResponseFlag::kLocalReset:
      return "LR";
    case ResponseFlag::kStreamIdleTimeout:
      return "SI";
    case ResponseFlag::kUpstreamPerTryTimeout:
      return "UPT";
    case ResponseFlag::kRetryLimitExceeded:
      return "URX";
    case ResponseFlag::kFaultInjected:
      return "FI";
    case ResponseFlag::kDelayInjected:
      return "DI";
    case ResponseFlag::kRateLimited:
      return "RL";
    case ResponseFlag::kBreakerOpen:
      return "BO";
    case ResponseFlag::kUnauthorized:
      return "AZ";
    case ResponseFlag::kNotInRegistry:
      return "NM";
    case ResponseFlag::kOverloaded:
      return "OL";
    case ResponseFlag::kUnauthenticated:
      return "UA";
  }
  return "??";
}

void AppendResponseFlags(std::string* out, uint32_t flags) {
  if (flags == 0) {
    out->push_back('-');
    return;
  }
  bool first = true;
  for (size_t i = 0; i < kResponseFlagCount; ++i) {
    if ((flags & (1u << i)) == 0) continue;
    if (!first) out->push_back(',');
    first = false;
    const absl::string_view name = ResponseFlagShortName(ResponseFlagAt(i));
    out->append(name.data(), name.size());
  }
}

void FillServerSpan(const StreamInfo& info, tracing::Span& span) {
  span.status_code = info.response_code;
  span.bytes_in = info.bytes_received;
  span.bytes_out = info.bytes_sent;
  span.route = info.route_name;
  span.cluster = info.cluster_name;
  if (info.upstream_host.has_value() && span.endpoint.empty()) {
    tracing::SetText(span.endpoint, info.upstream_host->ToString());  // a CONNECT tunnel's
  }
  if (info.response_flags != 0) AppendResponseFlags(&span.response_flags, info.response_flags);
  span.error_reason = info.local_reply_reason;
  span.upstream_locality = info.upstream_locality;
  const DecisionRecord& d = info.decision;
  span.policy_route = d.policy_route;
  span.gateway_listener = d.gateway_listener;
  span.route_rule = d.route_rule;
  span.route_match = d.route_match;
  span.subset = d.subset;
  span.policy_traffic = d.policy_traffic;
  span.authz = AuthzResultName(d.authz);
  span.policy_authz = d.policy_authz;
  span.timeout_request_ms = d.timeout_request_ms;
  span.timeout_per_try_ms = d.timeout_per_try_ms;
  if (d.timeout_request_ms >= 0) span.timeout_origin = d.timeout_from_caller ? "caller" : "route";
  span.policy_timeout = d.policy_timeout;
  span.policy_per_try = d.policy_per_try;
  span.policy_destination = d.policy_destination;
  span.policy_rate_limit = d.policy_rate_limit;
  if (d.shed != ShedReason::kNone) {
    span.shed_reason = ShedReasonName(d.shed);
    span.shed_limit = static_cast<int64_t>(d.shed_limit);
    if (d.shed == ShedReason::kActiveRequests) {
      span.shed_worker_limit = static_cast<int64_t>(d.shed_worker_limit);
    }
  }
  if (!d.discovery.empty()) {
    span.discovery = d.discovery;
    span.discovery_wait_us = static_cast<int64_t>(d.discovery_wait_us);
  }
  AppendAttempts(d, &span.attempts);
  if (info.response_code >= 500 || info.response_code == 0) {
    span.error = true;
    span.status_message = span.response_flags.empty()
                              ? (info.response_code == 0 ? "no response" : "server error")
                              : span.response_flags;
  }
}

}  // namespace meshlet::sidecar::stream

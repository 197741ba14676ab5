#include "sidecar/stream/tap.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/json.h"

namespace meshlet::sidecar::stream {
namespace {

// Header values an event never carries, even when the tap asks for headers: credentials.
bool Redacted(absl::string_view name) {
  return absl::EqualsIgnoreCase(name, "authorization") ||
         absl::EqualsIgnoreCase(name, "proxy-authorization") ||
         absl::EqualsIgnoreCase(name, "cookie") || absl::EqualsIgnoreCase(name, "set-cookie");
}

void AppendHeaders(const http::HeaderMap& headers, std::string* out) {
  out->push_back('[');
  bool first = true;
  for (const http::HeaderView header : headers) {
    if (!first) out->push_back(',');
    first = false;
    out->push_back('[');
    AppendJsonString(out, header.name);
    out->push_back(',');
    AppendJsonString(out, Redacted(header.name) ? absl::string_view("(redacted)") : header.value);
    out->push_back(']');
  }
  out->push_back(']');
}

absl::string_view Header(const http::HeaderMap* headers, absl::string_view name) {
  if (headers == nullptr) return {};
  return headers->Get(name).value_or("");
}

absl::string_view Authority(const http::HeaderMap* headers) {
  absl::string_view authority = Header(headers, ":authority");
  return authority.empty() ? Header(headers, "host") : authority;
}

}  // namespace

TapSession::TapSession(TapSpec spec)
    : spec_(std::move(spec)),
      bucket_(
          resilience::TokenBucketConfig{.requests_per_second = std::max<uint32_t>(spec_.rate, 1),
                                        .burst = std::max<uint32_t>(spec_.rate, 1)}) {}

bool TapSession::Admit(MonotonicTime now) {
  if (bucket_.TryTake(now).admitted) return true;
  rate_drops_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

bool TapMatches(const TapSpec& spec, const TapRequestView& request) {
  if (spec.direction == TapDirection::kInbound && !request.inbound) return false;
  if (spec.direction == TapDirection::kOutbound && request.inbound) return false;
  if (!spec.method.empty() && Header(request.request_headers, ":method") != spec.method) {
    return false;
  }
  if (!spec.authority.empty() &&
      !absl::EqualsIgnoreCase(Authority(request.request_headers), spec.authority)) {
    return false;
  }
  if (!spec.path_prefix.empty() &&
      !absl::StartsWith(Header(request.request_headers, ":path"), spec.path_prefix)) {
    return false;
  }
  return true;
}

void AppendTapEvent(const TapSpec& spec, const TapRequestView& request, std::string* out) {
  const StreamInfo& info = *request.info;
  out->append("{\"time\":");
  AppendJsonString(out,
                   absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", request.wall, absl::UTCTimeZone()));
  out->append(",\"direction\":");
  out->append(request.inbound ? "\"inbound\"" : "\"outbound\"");
  out->append(",\"method\":");
  AppendJsonString(out, Header(request.request_headers, ":method"));
  out->append(",\"authority\":");
  AppendJsonString(out, Authority(request.request_headers));
  out->append(",\"path\":");
  AppendJsonString(out, Header(request.request_headers, ":path"));
  absl::StrAppend(out, ",\"status\":", info.response_code);
  if (info.grpc_failure) out->append(",\"grpcFailure\":true");
  if (request.reset) out->append(",\"reset\":true");
  if (info.response_flags != 0) {
    out->append(",\"flags\":\"");
    AppendResponseFlags(out, info.response_flags);
    out->push_back('"');
  }
  if (!request.error.empty()) {
    out->append(",\"error\":");
    AppendJsonString(out, request.error);
  }
  absl::StrAppend(out, ",\"latencyMs\":", static_cast<double>(request.duration_us) / 1000.0);
  out->append(",\"caller\":");
  AppendJsonString(out,
                   request.inbound ? request.peer_identity : absl::string_view(spec.own_identity));
  const DecisionRecord& decision = info.decision;
  if (!decision.policy_route.empty()) {
    out->append(",\"route\":");
    AppendJsonString(out, decision.policy_route);
    if (decision.route_rule >= 0) absl::StrAppend(out, ",\"rule\":", decision.route_rule);
  }
  if (!decision.gateway_listener.empty()) {
    out->append(",\"gatewayListener\":");
    AppendJsonString(out, decision.gateway_listener);
  }
  if (!info.route_name.empty()) {
    out->append(",\"routeName\":");
    AppendJsonString(out, info.route_name);
  }
  if (!info.cluster_name.empty()) {
    out->append(",\"cluster\":");
    AppendJsonString(out, info.cluster_name);
  }
  if (info.upstream_host.has_value()) {
    out->append(",\"upstream\":");
    AppendJsonString(out, info.upstream_host->ToString());
  }
  if (!request.request_id.empty()) {
    out->append(",\"requestId\":");
    AppendJsonString(out, request.request_id);
  }
  if (info.trace.trace_id.valid()) {
    absl::StrAppend(out, ",\"traceId\":\"", absl::Hex(info.trace.trace_id.high, absl::kZeroPad16),
                    absl::Hex(info.trace.trace_id.low, absl::kZeroPad16), "\"");
  }
  if (spec.headers) {
    if (request.request_headers != nullptr) {
      out->append(",\"requestHeaders\":");
      AppendHeaders(*request.request_headers, out);
    }
    if (request.response_headers != nullptr) {
      out->append(",\"responseHeaders\":");
      AppendHeaders(*request.response_headers, out);
    }
  }
  out->append("}\n");
}

void WorkerTap::Add(std::shared_ptr<TapSession> session) {
  wants_headers_ = wants_headers_ || session->spec().headers;
  sessions_.push_back(TapBatch{.session = std::move(session)});
}

TapBatch WorkerTap::Remove(absl::string_view id) {
  TapBatch removed;
  auto it = std::find_if(sessions_.begin(), sessions_.end(),
                         [&](const TapBatch& b) { return b.session->spec().id == id; });
  if (it == sessions_.end()) return removed;
  removed = std::move(*it);
  sessions_.erase(it);
  wants_headers_ = std::any_of(sessions_.begin(), sessions_.end(),
                               [](const TapBatch& b) { return b.session->spec().headers; });
  return removed;
}

void WorkerTap::Record(const TapRequestView& request, MonotonicTime now) {
  std::string event;
  for (TapBatch& batch : sessions_) {
    TapSession& session = *batch.session;
    const TapSpec& spec = session.spec();
    if (now >= spec.end || !TapMatches(spec, request) || !session.Admit(now)) continue;
    event.clear();
    AppendTapEvent(spec, request, &event);
    if (batch.events_json.size() + event.size() > spec.max_batch_bytes) {
      ++batch.dropped_cap;
      continue;
    }
    batch.events_json.append(event);
    ++batch.events;
  }
}

std::vector<TapBatch> WorkerTap::TakeBatches() {
  std::vector<TapBatch> taken;
  for (TapBatch& batch : sessions_) {
    if (batch.events == 0 && batch.dropped_cap == 0) continue;
    taken.push_back(TapBatch{.session = batch.session,
                             .events_json = std::move(batch.events_json),
                             .events = batch.events,
                             .dropped_cap = batch.dropped_cap});
    batch.events_json.clear();
    batch.events = 0;
    batch.dropped_cap = 0;
  }
  return taken;
}

}  // namespace meshlet::sidecar::stream

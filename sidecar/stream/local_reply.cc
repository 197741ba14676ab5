#include "sidecar/stream/local_reply.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "sidecar/stream/stream_info.h"

namespace meshlet::sidecar::stream {

bool BuildLocalReply(const LocalReply& reply, bool grpc, http::HeaderMap& headers,
                     net::Buffer& body) {
  const bool grpc_reply = grpc && reply.grpc_status != http::grpc::StatusCode::kOk;
  if (grpc_reply) {
    headers = reply.detail.empty()
                  ? http::grpc::LocalReplyHeaders(reply.grpc_status, reply.message)
                  : http::grpc::LocalReplyHeaders(reply.grpc_status,
                                                  absl::StrCat(reply.message, ": ", reply.detail));
  } else {
    body.Append(reply.message);
    if (!reply.detail.empty()) {
      body.Append(": ");
      body.Append(reply.detail);
    }
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
  if (reply.invalid_bearer_token) {
    headers.AddTrusted("www-authenticate", "Bearer error=\"invalid_token\"");
  }
  return !grpc_reply;
}

std::string ErrorAttribution(absl::string_view node, uint32_t response_flags,
                             absl::string_view reason) {
  std::string out;
  out.reserve(node.size() + reason.size() + 24);
  const absl::string_view name = node.empty() ? absl::string_view("-") : node;
  out.append(name.data(), name.size());
  out.append("; flag=");
  AppendResponseFlags(&out, response_flags);
  out.append("; reason=");
  for (char c : reason) out.push_back(c == '\r' || c == '\n' || c == '\0' ? ' ' : c);
  return out;
}

}  // namespace meshlet::sidecar::stream

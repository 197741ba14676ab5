#include "sidecar/filters/authorization_filter.h"

#include "sidecar/route/route_config.h"

namespace meshlet::sidecar::filters {
namespace {

// The host the request names: :authority, or an HTTP/1 request's Host.
absl::string_view Authority(const http::HeaderMap& headers) {
  if (std::optional<absl::string_view> authority = headers.Get(":authority")) return *authority;
  return headers.Get("host").value_or("");
}

}  // namespace

stream::FilterStatus AuthorizationFilter::Decide(const http::HeaderMap& headers) {
  const route::VirtualHostConfig* vhost = callbacks_.route().virtual_host;
  const AuthorizationDecision decision = policy_.authorizer->Decide({
      .peer_identity = policy_.peer_identity,
      .port = vhost != nullptr && vhost->destination_port != 0 ? vhost->destination_port
                                                               : policy_.destination_port,
      .method = headers.Get(":method").value_or(""),
      .path = headers.Get(":path").value_or(""),
      .host = policy_.authorizer->reads_hosts() ? Authority(headers) : absl::string_view(),
      .jwt_issuer = callbacks_.stream_info().jwt_issuer,
      .jwt_payload = callbacks_.stream_info().jwt_payload,
  });
  stream::DecisionRecord& record = callbacks_.stream_info().decision;
  if (decision.decided_by != nullptr) record.policy_authz = *decision.decided_by;
  record.authz = !decision.allowed                ? stream::AuthzResult::kDeny
                 : decision.decided_by != nullptr ? stream::AuthzResult::kAllow
                                                  : stream::AuthzResult::kNone;
  if (decision.allowed) {
    policy_.rbac_allowed.Inc();
    return stream::FilterStatus::kContinue;
  }
  policy_.rbac_denied.Inc();
  callbacks_.stream_info().SetFlag(stream::ResponseFlag::kUnauthorized);
  callbacks_.SendLocalReply({.http_status = 403,
                             .grpc_status = http::grpc::StatusCode::kPermissionDenied,
                             .message = "RBAC: access denied"});
  return stream::FilterStatus::kStopIteration;
}

}  // namespace meshlet::sidecar::filters

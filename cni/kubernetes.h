#pragma once

// The pod's annotations from the Kubernetes API server, for meshlet-cni: one GET of
// /api/v1/namespaces/NS/pods/NAME over HTTPS (the server verified against the CA file and by
// its name or address), with the bearer token from the token file, which the node agent keeps
// fresh. Blocking, with the settings' timeout; runs its own event loop on the calling thread
// (common/http FetchBlocking). The process must ignore SIGPIPE.

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cni/plugin.h"
#include "common/http/client.h"
#include "common/net/address.h"
#include "common/net/transport.h"

namespace meshlet::cni {

// What one call to the API server needs, from the settings and their files (read again at each
// call, so that a rotated token follows): the server's addresses, the Host header, the
// Authorization header and TLS verified against the CA file and by the server's name or address.
// InvalidArgument for unreadable files or a bad server; Unavailable when the name does not
// resolve. Blocking (the files, the name).
struct ApiEndpoint {
  std::vector<net::Address> addresses;
  std::string authority;
  std::string authorization;  // "Bearer TOKEN"
  net::TransportFactory transport_factory;
  absl::Duration timeout;

  // A request to it (accept JSON, the bearer token, `user_agent`) and the options of its fetch
  // (the settings' timeout, TLS, answers up to `max_response_bytes`).
  http::ClientRequest Request(absl::string_view method, std::string path,
                              absl::string_view user_agent) const;
  http::ClientOptions Options(size_t max_response_bytes) const;
};
absl::StatusOr<ApiEndpoint> PrepareApiCall(const KubernetesSettings& settings);

// The Pod's metadata.annotations (none: empty). Unavailable or DeadlineExceeded when the server
// could not be reached in time (worth retrying); NotFound for a pod it does not know;
// PermissionDenied for 401 and 403 (the token or its RBAC); Unauthenticated when the server's
// certificate does not verify (CA, name); InvalidArgument for unreadable
// settings files or an answer that is not a Pod.
absl::StatusOr<std::map<std::string, std::string>> FetchPodAnnotations(
    const KubernetesSettings& settings, const PodRef& pod);

// Whether the DaemonSet NAMESPACE/NAME is being removed: true when the API server does not know it
// (404) or it carries metadata.deletionTimestamp; false while it exists (a rolling update, a
// restart of its pod). An error when that cannot be told (the server unreachable, 403: RBAC
// get on daemonsets). Blocking like FetchPodAnnotations.
absl::StatusOr<bool> DaemonSetBeingRemoved(const KubernetesSettings& settings,
                                           absl::string_view daemonset_namespace,
                                           absl::string_view name);

// The annotations of a Pod object (JSON), for FetchPodAnnotations and its tests.
absl::StatusOr<std::map<std::string, std::string>> PodAnnotationsFromJson(absl::string_view pod);

}  // namespace meshlet::cni

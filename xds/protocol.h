#pragma once

// The aggregated discovery stream as both ends speak it (docs/xds.md): the two gRPC methods, the
// resource types in push order with their type URLs and labels, the debug and readiness types,
// and helpers that let one piece of code handle both variants of the stream — state of the world
// (DiscoveryRequest/DiscoveryResponse, every resource of a type each time) and incremental
// (DeltaDiscoveryRequest/DeltaDiscoveryResponse, only changes). The sidecar's client
// (sidecar/config/xds_client.h) and the control plane's server (control-plane/xds/ads_server.h)
// both use it, so the names on the wire are written once. Constants and pure functions; any
// thread.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>

#include "absl/strings/string_view.h"
#include "xds/discovery.pb.h"

namespace meshlet::xds {

inline constexpr char kStreamMethod[] =
    "/meshlet.xds.AggregatedDiscoveryService/StreamAggregatedResources";
inline constexpr char kDeltaMethod[] =
    "/meshlet.xds.AggregatedDiscoveryService/DeltaAggregatedResources";

// The debug type the control plane asks a sidecar for its SidecarConfigDump with, and the type of
// the sidecar's answer.
inline constexpr char kConfigDumpTypeUrl[] = "type.googleapis.com/meshlet.xds.SidecarConfigDump";
// The type of the live tap's messages: TapCommand from the control plane, TapEvents from the
// sidecar.
inline constexpr char kTapTypeUrl[] = "type.googleapis.com/meshlet.xds.TapCommand";
// The largest discovery response a sidecar with capability large-xds-messages receives
// (xds/capabilities.h); others receive gRPC's default 4 MiB. A 5 000-Service whole-mesh route
// table is about 5.5 MiB.
inline constexpr size_t kLargeXdsMessageBytes = 64 * 1024 * 1024;

// The Secret the control plane sends the mesh's trust bundle in (with a CA rotation's renewal
// round and the federated bundles): what sidecars verify mesh peers against.
inline constexpr char kMeshTrustBundleSecret[] = "mesh-trust-bundle";

// The type of a request that only reports the sidecar's readiness (WorkloadReadiness).
inline constexpr char kReadinessTypeUrl[] = "type.googleapis.com/meshlet.xds.WorkloadReadiness";

// The resource types in push order: each names only types before it (a listener names route
// configurations and clusters, a ServiceRoute names the route configuration it joins and
// clusters, a route configuration names clusters, a load assignment names its cluster, a cluster
// names a secret). Listeners stay last, so a sidecar that applied listeners holds a complete
// configuration. The client subscribes in this order; the server pushes in it.
inline constexpr size_t kResourceTypeCount = 6;
inline constexpr std::array<const char*, kResourceTypeCount> kResourceTypeUrls = {
    "type.googleapis.com/meshlet.xds.Secret",
    "type.googleapis.com/meshlet.xds.Cluster",
    "type.googleapis.com/meshlet.xds.ClusterLoadAssignment",
    "type.googleapis.com/meshlet.xds.RouteConfiguration",
    "type.googleapis.com/meshlet.xds.ServiceRoute",
    "type.googleapis.com/meshlet.xds.Listener",
};
// Metric labels and status keys, by the same position.
inline constexpr std::array<const char*, kResourceTypeCount> kResourceTypeLabels = {
    "secrets", "clusters", "endpoints", "routes", "service_routes", "listeners"};
// Whether a resource of another type may name resources of this type (a cluster its load
// assignment, by the cluster's own name), by the same position:
// listeners and ServiceRoutes are named by nothing, so a make-before-break push sends them exact
// at once instead of keeping what the sidecar holds until the types naming it went out.
inline constexpr std::array<bool, kResourceTypeCount> kResourceTypeNamedByOthers = {
    true, true, true, true, false, false};

// The position of `type_url` in kResourceTypeUrls; nullopt for any other type.
std::optional<size_t> ResourceTypeIndex(absl::string_view type_url);

// Lookup keys (ADR 0086): names a delta subscription to the ServiceRoute type may carry besides
// resource names, answered by the ServiceRoute that serves them (Resource.aliases). A key names
// an original destination, "addr:10.96.0.5:80" ("addr:[fd00::5]:80"), or a request's host,
// "host:reviews.shop:9080". Resource names never start with either prefix. Both ends build keys
// with the functions below only, so the same destination is always the same key.
inline constexpr absl::string_view kLookupAddressPrefix = "addr:";
inline constexpr absl::string_view kLookupHostPrefix = "host:";
// The longest key, prefix included.
inline constexpr size_t kMaxLookupKeyBytes = 300;

// A gateway proxy (`sidecar --gateway NAMESPACE/NAME`) names itself in traces (service.name) and
// golden metrics (the source) as this prefix and "<name>.<namespace>" of its Gateway:
// "gateway:bookinfo.default". No Service is named so (':' is not allowed in one), and explain
// names such a hop as the Gateway's.
inline constexpr absl::string_view kGatewayServicePrefix = "gateway:";
// The node label a gateway proxy carries: "<namespace>/<name>" of the Gateway it serves.
inline constexpr absl::string_view kGatewayNodeLabel = "meshlet.io/gateway";
// A gateway proxy's service, "gateway:<name>", and namespace, from its kGatewayNodeLabel's value;
// false (nothing set) when `label` is not "<namespace>/<name>".
bool GatewayProxyService(absl::string_view label, std::string* service, std::string* namespace_);

// Whether `name` is a lookup key (has one of the prefixes), not a resource name.
bool IsLookupKey(absl::string_view name);
// The key of an original destination: the address in its canonical text (IPv6 in brackets,
// lower-case and shortest form; an IPv4-mapped IPv6 address as its IPv4 address) and the port.
// nullopt when `ip` is not an IP address literal (brackets allowed around IPv6) or `port` is not
// 1..65535.
std::optional<std::string> LookupKeyForAddress(absl::string_view ip, uint32_t port);
// The key of a request's host (:authority or Host): lower-cased, one trailing dot of the name
// removed, a port kept as sent ("Reviews.Shop.:9080" gives "host:reviews.shop:9080"). nullopt
// when the host is empty, holds a character no host name, address literal or port has, or the key
// would be longer than kMaxLookupKeyBytes.
std::optional<std::string> LookupKeyForHost(absl::string_view host);

// Whether `Message` belongs to the incremental variant.
template <typename Message>
inline constexpr bool kIsDelta = std::is_same_v<Message, DeltaDiscoveryRequest> ||
                                 std::is_same_v<Message, DeltaDiscoveryResponse>;

// Calls `f(request)` with an empty request of the stream's variant and returns what it returns;
// `f` takes either type (a generic lambda).
template <typename F>
decltype(auto) WithRequest(bool delta, F&& f) {
  if (delta) {
    DeltaDiscoveryRequest request;
    return f(request);
  }
  DiscoveryRequest request;
  return f(request);
}

// The same for a response.
template <typename F>
decltype(auto) WithResponse(bool delta, F&& f) {
  if (delta) {
    DeltaDiscoveryResponse response;
    return f(response);
  }
  DiscoveryResponse response;
  return f(response);
}

}  // namespace meshlet::xds

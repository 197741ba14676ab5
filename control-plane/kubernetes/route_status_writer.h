#pragma once

// RouteStatusWriter: writes the status the control plane computed for each Gateway API route
// (policy::RouteStatusUpdate, control-plane/policy/route_status.h), and for meshlet's
// GatewayClasses and Gateways (GatewayObjectStatus), back to the object in the Kubernetes API
// server, for `kubectl get httproute -o yaml` and the Gateway API's conformance checks.
//
// For each route whose computed status differs from what was last written, the writer reads the
// route (GET), and builds its status.parents: every entry whose controllerName is another
// controller's is kept as it is; this control plane's entries (controllerName
// options.controller_name, or options.gateway_controller_name for parentRefs naming meshlet's
// Gateways; each computed entry names its own) become the computed ones, each condition keeping the
// lastTransitionTime it already has when its status did not change (else the time of the
// write), with observedGeneration from the update. When that equals what the route already
// shows nothing is written; otherwise one JSON merge patch of the status subresource
// (PATCH .../namespaces/NS/httproutes|grpcroutes/NAME/status?fieldManager=meshlet-control-plane)
// carrying status.parents whole and
// metadata.resourceVersion, so a concurrent change by another controller makes it fail (409) and
// the route is read again. A route that is gone (404) is dropped; other failures are tried again
// after a backoff (retry_base doubling to retry_cap).
//
// A GatewayClass's or Gateway's status is this control plane's alone (its class names meshlet's
// controller): it is read, compared in the same canonical form (conditions keeping their
// lastTransitionTime while their status holds, listeners' by listener name) and, when it
// differs, patched the same way with status.conditions, status.addresses and status.listeners
// whole.
//
// Only the elected replica writes (SetActive, from leader_election.h); an inactive writer keeps
// the latest computed status of each route and writes all of them when it becomes active.
//
// A BackendTLSPolicy's status (kind "BackendTLSPolicy") is written as a route's, its entries
// being status.ancestors with an ancestorRef instead of status.parents with a parentRef.
//
// Needs RBAC get on httproutes, grpcroutes, gateways, gatewayclasses and backendtlspolicies and
// patch on their status subresource.
//
// Stats: meshlet_cp_route_status_writes_total{result} (written, unchanged, conflict, not_found,
// failed), Gateways and GatewayClasses included.
//
// Threading: the loop thread.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/stats/stats.h"
#include "control-plane/kubernetes/api_client.h"
#include "control-plane/policy/route_status.h"
#include "xds/gateway.pb.h"

namespace meshlet::controlplane::kubernetes {

inline constexpr char kControllerName[] = "meshlet.io/mesh-controller";
inline constexpr char kGatewayControllerName[] = "meshlet.io/gateway-controller";

struct RouteStatusWriterOptions {
  std::string controller_name = kControllerName;  // for computed entries that name none
  std::string gateway_controller_name = kGatewayControllerName;
  Duration retry_base = std::chrono::milliseconds(500);
  Duration retry_cap = std::chrono::seconds(30);
};

// The status of one of meshlet's GatewayClasses (kind "GatewayClass", no namespace) or Gateways
// (kind "Gateway"), with the generation it was computed for.
struct GatewayObjectStatus {
  std::string kind;
  std::string namespace_;
  std::string name;
  int64_t generation = 0;
  meshlet::gateway::GatewayClassStatus gateway_class;  // kind GatewayClass
  meshlet::gateway::GatewayStatus gateway;             // kind Gateway
};

class RouteStatusWriter {
 public:
  RouteStatusWriter(event::Loop& loop, KubernetesApi& api, StatsRegistry& stats, const Clock& clock,
                    RouteStatusWriterOptions options = {});
  ~RouteStatusWriter();
  RouteStatusWriter(const RouteStatusWriter&) = delete;
  RouteStatusWriter& operator=(const RouteStatusWriter&) = delete;

  // The computed status of every route (routes not named are no longer computed: nothing more
  // is written for them; what they show stays).
  void Update(std::vector<policy::RouteStatusUpdate> updates);
  // The status of a route the API refused (`refused`: Accepted False, from the Kubernetes
  // mirror): it wins over the computed status of the route (computed for its last valid version,
  // if any) until cleared (`refused` false; only kind, namespace and name are read then).
  void SetRefused(policy::RouteStatusUpdate update, bool refused);
  // The computed status of every GatewayClass and Gateway of meshlet's (as Update, for them).
  void UpdateGateways(std::vector<GatewayObjectStatus> updates);
  // Writing on (this replica leads) or off.
  void SetActive(bool active);
  // Active and nothing left to write.
  bool idle() const;

 private:
  struct Route;
  // routes_ from computed_ and refused_.
  void Rebuild();
  void Schedule();
  void Next();
  void OnRead(const std::string& key, ApiResult result);
  // OnRead's body for a route, or a GatewayClass or Gateway; empty: what the object shows is
  // what was computed.
  std::string RoutePatch(const Route& route, const YAML::Node& object, const std::string& now);
  std::string GatewayPatch(const Route& route, const YAML::Node& object, const std::string& now);
  void OnPatched(const std::string& key, ApiResult result);
  void Done(const std::string& key, absl::string_view result, bool written);
  void Failed(const std::string& key, absl::string_view result, absl::string_view why);
  void Count(absl::string_view result);

  event::Loop& loop_;
  KubernetesApi& api_;
  StatsRegistry& stats_;
  const Clock& clock_;
  const RouteStatusWriterOptions options_;
  bool active_ = false;
  std::map<std::string, policy::RouteStatusUpdate> computed_;  // by "Kind/namespace/name"
  std::map<std::string, policy::RouteStatusUpdate> refused_;
  std::map<std::string, GatewayObjectStatus> gateways_;   // by "Kind/namespace/name"
  std::map<std::string, std::unique_ptr<Route>> routes_;  // what is to be shown
  std::string in_flight_;                                 // the route being written
  // What the route in flight is being written with (its desired fingerprint when read): what it
  // shows once written, though the route's desired status may have changed meanwhile.
  std::string in_flight_fingerprint_;
  int failures_ = 0;
  event::Timer timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::map<std::string, Counter, std::less<>> writes_;
};

}  // namespace meshlet::controlplane::kubernetes

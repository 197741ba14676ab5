#pragma once

// Discovery modes and lookup keys (ADR 0086).
//
// A node's discovery mode says what it is pushed and what it may look up: WholeMesh (every
// Service pushed), Declared (its own Service and those its label meshlet.io/dependencies lists;
// nothing else) and OnDemand (the declared ones pushed, any other discovered on first use by a
// lookup key). MeshConfig.spec.discovery.mode chooses it mesh-wide (scopeToDependencies: true is
// the older spelling of Declared), the node label meshlet.io/discovery for one workload.
//
// A lookup key (xds/protocol.h) names what a sidecar met and does not know: `addr:<ip>:<port>` a
// captured connection's original destination, `host:<host>` a request's authority. The mesh
// index resolves it to the Service port whose ServiceRoute answers it for that node
// (MeshTranslator::Resolve): the owner of the host name (exact with port, exact without, then
// HTTPRoute wildcards, longest suffix first: as the sidecar matches a virtual host), or of the
// address and port.
//
// Plain values and pure functions; any thread.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"
#include "control-plane/registry/registry.h"
#include "xds/policy.pb.h"

namespace meshlet::controlplane::translate {

// The node label that overrides MeshConfig's discovery mode for one workload.
inline constexpr absl::string_view kDiscoveryLabel = "meshlet.io/discovery";

enum class DiscoveryMode { kWholeMesh, kDeclared, kOnDemand };

// As MeshConfig writes it: "WholeMesh", "Declared", "OnDemand".
absl::string_view DiscoveryModeName(DiscoveryMode mode);
// The mode a value of the label names ("whole-mesh", "declared", "on-demand"); nullopt for any
// other text.
std::optional<DiscoveryMode> DiscoveryModeOfLabel(absl::string_view value);

// The mode configured for `node`: its label meshlet.io/discovery when it names a mode (a label
// naming none is ignored), else MeshConfig's discovery.mode, else Declared when
// scopeToDependencies is set, else OnDemand (the default).
DiscoveryMode ConfiguredMode(const registry::Workload& node,
                             const ::meshlet::policy::MeshConfigSpec& mesh);
// The mode `node` gets: ConfiguredMode, except that a node that cannot look Services up
// (`looks_up`: its sidecar reads lookups, over a delta stream) and is configured OnDemand gets
// what it would get without asking for it: MeshConfig's mode when its label asked (Declared in a
// Declared mesh), else WholeMesh (a 0.1.0 sidecar, or one on a state-of-the-world stream, keeps
// the whole mesh it always had). Declared stays Declared.
DiscoveryMode EffectiveMode(const registry::Workload& node,
                            const ::meshlet::policy::MeshConfigSpec& mesh, bool looks_up);

enum class LookupReason {
  kFound,
  kMalformed,   // not a lookup key, or not one a sidecar could send (xds::LookupKeyFor*)
  kUnknown,     // no Service port answers it for this node
  kNotVisible,  // one does, but the node may not discover its Service (answered as kUnknown)
};
absl::string_view LookupReasonName(LookupReason reason);

// What a lookup key resolves to for one node.
struct LookupResult {
  LookupReason reason = LookupReason::kUnknown;
  // Set when found (kNotVisible too, for the server's counters and logs only).
  std::pair<std::string, std::string> service;  // (namespace, name)
  uint32_t port = 0;
  std::string service_route;  // "<svc>.<ns>:<port>": the ServiceRoute that answers the key

  bool found() const { return reason == LookupReason::kFound; }
};

}  // namespace meshlet::controlplane::translate

#pragma once

// Capabilities: the configuration features a sidecar reads, by name — one per feature that
// changed the wire, those every supported release reads included — the contract that lets a
// control plane and sidecars of different releases work together (docs/upgrades.md, ADR 0071).
//
// A sidecar lists the capabilities it reads in Node.capabilities, and a node that lists some
// lacks every one it does not list. The control plane gives each node what it can read: a field
// or enum value that needs a capability the node lacks is left out, or sent in the older form
// (control-plane/translate/capability_gates.h). A node that lists none — a release from before
// capabilities were reported — is taken to read what its release read: the capabilities whose
// `since` is not later than the release in its sidecar_version. A node that lists none and whose
// sidecar_version names no meshlet release (empty, or another text) is taken to read what the
// oldest supported release read: nothing newer is known to be safe for it (the control plane
// logs and counts such nodes).
//
// Adding a field or enum value to a resource an older sidecar cannot read: add a capability here
// (since: the release being built), gate it in the control plane, and the skew tests check that
// the previous release still gets configuration it reads
// (tests/contract/capability_contract_test.cc).
//
// Constants and pure functions; any thread.

#include <array>
#include <bitset>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "xds/node.pb.h"

namespace meshlet::xds {

enum class Capability {
  // Cluster.protocol UPSTREAM_MESH_HTTP2 (HTTP/2 between sidecars).
  kMeshHttp2,
  // Endpoint.plaintext (a member without a sidecar in a cluster reached over mTLS).
  kEndpointPlaintext,
  // VirtualHost.destinations (captured connections routed by the Service address they were for).
  kVirtualHostDestinations,
  // Cluster.overload (endpoints answering 429 / RESOURCE_EXHAUSTED get less traffic).
  kOverload,
  // PolicySource fields for decision records: Route.source, Cluster.traffic_policy,
  // Cluster.subset, AuthorizationPolicy.source, RouteAction.timeout_source and
  // per_try_timeout_source, RateLimit.source, Listener.unmatched_destination_source.
  kPolicySource,
  // HttpOptions.stream_reset_min_lifetime (which client resets count as rapid reset).
  kStreamResetLifetime,
  // HttpOptions.flood_drain_timeout (requests in flight finish after a flood's GOAWAY).
  kFloodDrain,
  // Discovery responses up to kLargeXdsMessageBytes (xds/protocol.h), not only the 4 MiB of gRPC's
  // default: a whole-mesh route table of more than about 3 850 Services.
  kLargeXdsMessages,
  // The ServiceRoute resource type (a Service port's virtual host and capture destination,
  // joining the route configuration it names): the control plane may split a route table into
  // them. Not a field gate: a node without it gets the table inline.
  kServiceRoutes,
  // Listener.on_demand, lookup keys on the ServiceRoute subscription and Resource.aliases
  // (ADR 0086): destinations discovered on first use. Announced only on a delta stream.
  kOnDemand,
  // Listener.jwt (RequestAuthentication: JWT verification before authorization).
  kJwt,
  // Secret.renewal (a CA rotation's renewal round: renew early from the new signer).
  kCaRotation,
  // Secret.federated_bundles and Secret.trust_domain_aliases (SPIFFE federation, ADR 0101).
  kFederation,
  // DownstreamTls mode TLS and server_certificates (a gateway proxy's HTTPS listeners, ADR 0099).
  kGateway,
  // Endpoint.locality and Cluster.locality_lb (locality-aware balancing, ADR 0104).
  kLocality,
  // UpstreamTls.subject_alt_names (a BackendTLSPolicy's subjectAltNames).
  kBackendTls,
  // Route.cors (the Gateway API CORS filter: preflights answered by the proxy).
  kCors,
  // ListenerDestination.server_names (TLS routed by its ClientHello's server name without
  // terminating it: the east-west gateway, ADR 0106).
  kServerNames,
  // Destinations outside the mesh: Cluster type DNS and Cluster.dns (endpoints the sidecar
  // resolves itself and follows by TTL), ListenerDestination.passthrough and http_hosts.
  kExternalServices,
};
inline constexpr size_t kCapabilityCount = 19;

// The capability a resource type added since the oldest supported release needs (a node without
// it is never sent the type); nullopt for the types every supported release reads.
std::optional<Capability> CapabilityOfType(absl::string_view type_url);

// A release as X.Y.Z with an optional pre-release suffix ("0.2.0-dev"), which orders before the
// release itself.
struct Release {
  int major = 0;
  int minor = 0;
  int patch = 0;
  bool prerelease = false;

  // "1.2.3" or "1.2.3-anything"; nullopt for other text.
  static std::optional<Release> Parse(absl::string_view text);
  friend bool operator<(const Release& a, const Release& b);
  friend bool operator==(const Release& a, const Release& b);
};

struct CapabilityInfo {
  Capability capability;
  absl::string_view name;   // in Node.capabilities
  absl::string_view since;  // the first release that reads it
};

// Every capability, in enum order.
const std::array<CapabilityInfo, kCapabilityCount>& Capabilities();
const CapabilityInfo& Info(Capability capability);
// The capability of that name; nullopt for a name this release does not know.
std::optional<Capability> CapabilityNamed(absl::string_view name);

// A set of capabilities.
class CapabilitySet {
 public:
  CapabilitySet() = default;
  static CapabilitySet All();
  // Those a sidecar of `release` read before releases reported their capabilities.
  static CapabilitySet OfRelease(const Release& release);

  bool Has(Capability c) const { return bits_.test(static_cast<size_t>(c)); }
  void Add(Capability c) { bits_.set(static_cast<size_t>(c)); }
  void Remove(Capability c) { bits_.reset(static_cast<size_t>(c)); }
  bool all() const { return bits_.all(); }
  // The capabilities in `this` that `other` lacks.
  CapabilitySet Minus(const CapabilitySet& other) const;
  // Names in enum order.
  std::vector<std::string> Names() const;
  // A short stable text that tells sets apart (a cache key).
  std::string Key() const { return bits_.to_string(); }
  friend bool operator==(const CapabilitySet& a, const CapabilitySet& b) {
    return a.bits_ == b.bits_;
  }

 private:
  std::bitset<kCapabilityCount> bits_;
};

// The oldest sidecar release this control plane supports (one release back: docs/upgrades.md),
// whose capabilities a node that says nothing about itself gets.
inline constexpr absl::string_view kOldestSupportedRelease = "0.1.0";

// The prefix of Node.sidecar_version before the release: "meshlet-sidecar 0.2.0".
inline constexpr absl::string_view kSidecarVersionPrefix = "meshlet-sidecar ";
// The release a sidecar_version names; nullopt when it names none.
std::optional<Release> SidecarRelease(absl::string_view sidecar_version);

// What `node` reads (the rules at the top of this file).
CapabilitySet CapabilitiesOf(const Node& node);
// `node` lists no capabilities and its sidecar_version names no release: CapabilitiesOf assumes
// the oldest supported release's.
bool CapabilitiesAssumed(const Node& node);

}  // namespace meshlet::xds

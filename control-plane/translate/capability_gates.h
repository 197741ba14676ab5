#pragma once

// Capability gates: what a node's configuration becomes when the node lacks a capability
// (xds/capabilities.h; docs/upgrades.md, ADR 0071). Translation builds every node's resources in
// the newest form; the last step (translator.cc) applies the gates of the capabilities the node
// lacks, so an older sidecar gets configuration it reads in full:
//
//   mesh-http2                 Cluster.protocol UPSTREAM_MESH_HTTP2 -> UPSTREAM_HTTP1 (HTTP/1.1
//                              between the sidecars)
//   endpoint-plaintext         an Endpoint with plaintext set is left out (a sidecar that cannot
//                              read it would try TLS to a member without a sidecar, and fail);
//                              the cluster's members with sidecars stay, over mTLS
//   virtual-host-destinations  VirtualHost.destinations left out (captured connections are routed
//                              by their requests' Host, as before)
//   overload                   Cluster.overload left out (the sidecar does not act on 429 /
//                              RESOURCE_EXHAUSTED)
//   policy-source              Route.source, Cluster.traffic_policy, Cluster.subset,
//                              AuthorizationPolicy.source, RouteAction.timeout_source and
//                              per_try_timeout_source, RateLimit.source and
//                              Listener.unmatched_destination_source left out (decision records
//                              name less)
//   flood-drain                HttpOptions.flood_drain_timeout and max_flood_drains left out
//                              (the sidecar ends a flooding connection at once, its requests in
//                              flight too)
//   stream-reset-lifetime      HttpOptions.stream_reset_min_lifetime left out (the sidecar counts
//                              every client reset before the response ends as rapid reset)
//   on-demand                  Listener.on_demand left out (an unknown destination is handled at
//                              once, as unmatched_destination or the "*" host say)
//   jwt                        a listener with Listener.jwt left out (fails closed); an
//                              AuthorizationRule on the token rewritten to decide as a current
//                              sidecar does without tokens (RewriteEndUserRules in the .cc):
//                              ALLOW on principals or claims left out; DENY on them matching
//                              connections only (kNoRequestMethod); not_request_principals
//                              cleared (ALLOW: paths "*", so no connection matches)
//   ca-rotation                Secret.renewal left out (the sidecar renews at its own time)
//   federation                 Secret.federated_bundles and trust_domain_aliases left out (the
//                              sidecar trusts the mesh roots only: foreign ids are refused)
//   backend-tls                UpstreamTls.subject_alt_names left out (the sidecar checks the
//                              upstream's certificate against the SNI name: fails closed)
//   cors                       Route.cors left out (the proxy forwards preflights and adds no
//                              Access-Control-* headers: browsers refuse the calls)
//   server-names               ListenerDestination with server_names left out (the proxy
//                              routes no TLS by name: fails closed)
//
// The gates are data (Gates()), applied by a walk over the resources through protobuf reflection
// that descends only into the message types that can hold a gated field. Pure; any thread.

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "control-plane/translate/resources.h"
#include "xds/capabilities.h"

namespace meshlet::controlplane::translate {

struct CapabilityGate {
  enum class Fallback {
    kClear,        // the field is cleared
    kDropElement,  // the element of the repeated field holding the message is removed when the
                   // field is set
    kEnumValue,    // the value `from` becomes `to`
  };
  xds::Capability capability;
  absl::string_view field;  // full name: "meshlet.xds.Cluster.overload"
  Fallback fallback = Fallback::kClear;
  int from = 0;
  int to = 0;
};

// The method a DENY rule rewritten for a sidecar without capability jwt matches instead of its
// token fields: no request carries it, and a connection ignores methods towards denial.
inline constexpr absl::string_view kNoRequestMethod = "MESHLET-NO-REQUEST-METHOD";

// Every gate. Each field named exists in xds/resources.proto (checked by capability_gates_test).
const std::vector<CapabilityGate>& Gates();

// Applies to `resources` the gates of every capability `node_reads` lacks. Resources of a node
// that reads everything are left alone (and the call costs nothing).
void ApplyCapabilityGates(const xds::CapabilitySet& node_reads, NodeResources& resources);

}  // namespace meshlet::controlplane::translate

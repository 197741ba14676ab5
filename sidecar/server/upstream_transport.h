#pragma once

// The transports a worker's clusters (and the main thread's health checks) connect upstream with:
// plaintext, or TLS from the cluster's context in TlsContexts, per endpoint. Stateless; the
// factories it returns run on the loop thread of the connection they make.

#include "sidecar/cluster/cluster_config.h"
#include "sidecar/server/tls_contexts.h"

namespace meshlet::sidecar::server {

// The transports for connections to `cluster`'s endpoints: null for plaintext clusters. For a TLS
// cluster, per endpoint: plaintext (null) for an endpoint marked `plaintext`, else TLS from the
// cluster's context (SNI, ALPN) with the cluster's expected_peer_ids checked by each connection
// (the context is shared by clusters of equal material, TlsContexts), narrowed to exactly the
// endpoint's `identity` when it has one. Connections fail at once, never falling back to plaintext,
// when `contexts` has no context for the cluster or the endpoint's identity is not among its
// expected_peer_ids.
cluster::EndpointTransportFactory UpstreamTransportFactory(const TlsContexts* contexts,
                                                           const cluster::ClusterConfig& cluster);

}  // namespace meshlet::sidecar::server

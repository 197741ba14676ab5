#pragma once

// The names by which xDS resources of one kind refer to resources of another (configuration.md):
// a listener names a route configuration, clusters (tcp_cluster, also per destination) and
// secrets (tls); a route configuration names clusters (cluster, weighted_clusters); a
// ServiceRoute names the route configuration it joins and clusters (its virtual host's and
// destination's); a cluster names secrets (tls) and, when EDS, the load assignment of its own
// name. Names are collected
// whether or not the field that holds them is in use, so a collection may hold more than a
// configuration needs, never less.
//
// The xDS client uses it to keep what the running configuration still names when the control
// plane removes it (docs/xds.md, "What the sidecar accepts"). Pure functions.

#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "sidecar/config/translate.h"
#include "xds/resources.pb.h"

namespace meshlet::sidecar::config {

struct References {
  absl::flat_hash_set<std::string> routes;    // RouteConfiguration names
  absl::flat_hash_set<std::string> clusters;  // Cluster names
  absl::flat_hash_set<std::string> secrets;   // Secret names
};

// Adds the names `resource` refers to.
void AddReferences(const xds::Listener& listener, References& out);
void AddReferences(const xds::RouteConfiguration& routes, References& out);
void AddReferences(const xds::ServiceRoute& service_route, References& out);
void AddReferences(const xds::Cluster& cluster, References& out);

// The same for a held resource, reading what it keeps (HeldFacts) when it is held as its bytes.
void AddReferences(const HeldMessage<xds::ServiceRoute>& held, References& out);
void AddReferences(const HeldMessage<xds::Cluster>& held, References& out);
template <typename Message>
void AddReferences(const HeldMessage<Message>& held, References& out) {
  AddReferences(held.message(), out);
}

// A load assignment checked on its own, as BuildSnapshot checks one that fills a cluster: OK, or
// InvalidArgument with one line per error ('cluster_load_assignment "x": endpoints[0].address:
// ...'). For an assignment kept while no cluster takes it.
absl::Status CheckLoadAssignment(const xds::ClusterLoadAssignment& assignment);

}  // namespace meshlet::sidecar::config

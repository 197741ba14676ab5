#include "sidecar/config/references.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "sidecar/config/translate_internal.h"

namespace meshlet::sidecar::config {
namespace {

void AddName(const std::string& name, absl::flat_hash_set<std::string>& out) {
  if (!name.empty()) out.insert(name);
}

void AddReferences(const xds::ListenerDestination& destination, References& out) {
  AddName(destination.route_config_name(), out.routes);
  AddName(destination.tcp_cluster(), out.clusters);
}

void AddReferences(const xds::VirtualHost& host, References& out) {
  for (const xds::Route& route : host.routes()) {
    if (!route.has_route()) continue;
    AddName(route.route().cluster(), out.clusters);
    for (const auto& weighted : route.route().weighted_clusters().clusters()) {
      AddName(weighted.name(), out.clusters);
    }
    for (const xds::RequestMirrorPolicy& mirror : route.route().request_mirror_policies()) {
      AddName(mirror.cluster(), out.clusters);
    }
  }
}

}  // namespace

void AddReferences(const xds::Listener& listener, References& out) {
  AddName(listener.route_config_name(), out.routes);
  AddName(listener.tcp_cluster(), out.clusters);
  for (const xds::ListenerDestination& destination : listener.destinations()) {
    AddReferences(destination, out);
  }
  AddName(listener.tls().secret_name(), out.secrets);
  AddName(listener.tls().trust_bundle_secret(), out.secrets);
  for (const xds::ServerCertificate& certificate : listener.tls().server_certificates()) {
    AddName(certificate.secret_name(), out.secrets);
  }
}

void AddReferences(const xds::RouteConfiguration& routes, References& out) {
  for (const xds::VirtualHost& host : routes.virtual_hosts()) AddReferences(host, out);
}

void AddReferences(const xds::ServiceRoute& service_route, References& out) {
  AddName(service_route.route_config_name(), out.routes);
  AddReferences(service_route.virtual_host(), out);
  AddReferences(service_route.destination(), out);
}

void AddReferences(const xds::Cluster& cluster, References& out) {
  AddName(cluster.tls().secret_name(), out.secrets);
  AddName(cluster.tls().trust_bundle_secret(), out.secrets);
}

void AddReferences(const HeldMessage<xds::ServiceRoute>& held, References& out) {
  AddName(held.facts().route_config_name, out.routes);
  for (const std::string& name : held.facts().clusters) out.clusters.insert(name);
}

void AddReferences(const HeldMessage<xds::Cluster>& held, References& out) {
  for (const std::string& name : held.facts().secrets) out.secrets.insert(name);
}

namespace {

// Each name collected, once, in order (they are few: a list is smaller than a set).
std::vector<std::string> Names(const absl::flat_hash_set<std::string>& names) {
  std::vector<std::string> out(names.begin(), names.end());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

HeldFacts<xds::Cluster>::HeldFacts(const xds::Cluster& cluster)
    : eds(cluster.type() == xds::Cluster::EDS || cluster.type() == xds::Cluster::DNS),
      dns(cluster.type() == xds::Cluster::DNS),
      tls(cluster.has_tls()) {
  References names;
  AddReferences(cluster, names);
  secrets = Names(names.secrets);
}

HeldFacts<xds::ServiceRoute>::HeldFacts(const xds::ServiceRoute& service_route)
    : route_config_name(service_route.route_config_name()) {
  References names;
  AddReferences(service_route, names);
  clusters = Names(names.clusters);
}

absl::Status CheckLoadAssignment(const xds::ClusterLoadAssignment& assignment) {
  using translate_internal::Errors;
  Errors errors;
  Errors::Scope scope(errors, absl::StrCat("cluster_load_assignment ",
                                           translate_internal::Quote(assignment.cluster_name())));
  if (const std::string& name = assignment.cluster_name(); !translate_internal::ValidName(name)) {
    scope.Add("cluster_name",
              name.empty() ? "must not be empty" : "must not contain spaces or control characters");
  }
  translate_internal::TranslateEndpoints(scope, "", assignment);
  return errors.ToStatus();
}

}  // namespace meshlet::sidecar::config

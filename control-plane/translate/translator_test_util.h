#pragma once

// The translator's test fixtures: a mesh of two Services (reviews with a TrafficPolicy and an
// HTTPRoute, frontend), four registered workloads and the node frontend-0 (TranslatorTest); the
// same with Service addresses and a database with an opaque port, for traffic capture
// (CaptureTest); and Kubernetes Services with their EndpointSlices on top
// (KubernetesServicesTest). Helpers find resources by name in a translation.

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "control-plane/policy/codec.h"
#include "control-plane/translate/translator.h"
#include "xds/capabilities.h"

namespace meshlet::controlplane::translate {

namespace pb = ::meshlet::policy;

// Options that outlive what reads them.
inline const TranslateOptions kDefaultOptions;

template <typename T>
T Parse(const std::string& yaml) {
  absl::StatusOr<policy::ParsedResource> parsed = policy::ParseResource(yaml);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  T out = static_cast<T&>(*parsed->message);
  if (out.metadata().namespace_().empty()) out.mutable_metadata()->set_namespace_("default");
  return out;
}

inline registry::Workload MakeWorkload(std::string id, std::string service, std::string address,
                                       std::map<std::string, std::string> labels = {}) {
  registry::Workload w;
  w.id = std::move(id);
  w.service = std::move(service);
  w.namespace_ = "default";
  w.addresses = {std::move(address)};
  w.ports = {9080};
  w.labels = std::move(labels);
  w.service_account = w.service;
  return w;
}

// A mesh for scale tests and benchmarks: `services` Services (svc-N, port 8080) with a
// TrafficPolicy and a two-way HTTPRoute each, `per_service` workloads per service.
inline void BuildScaleMesh(int services, int per_service, policy::PolicySnapshot& policy,
                           registry::RegistrySnapshot& registry) {
  for (int s = 0; s < services; ++s) {
    const std::string name = absl::StrCat("svc-", s);
    meshlet::policy::Service service;
    service.mutable_metadata()->set_name(name);
    service.mutable_metadata()->set_namespace_("default");
    service.mutable_spec()->add_ports()->set_port(8080);
    policy.services.push_back(service);
    meshlet::policy::TrafficPolicy tp;
    tp.mutable_metadata()->set_name(name);
    tp.mutable_metadata()->set_namespace_("default");
    tp.mutable_spec()->set_target(name);
    tp.mutable_spec()->mutable_retries()->mutable_attempts()->set_value(2);
    policy.traffic_policies.push_back(tp);
    meshlet::policy::HTTPRoute route;
    route.mutable_metadata()->set_name(name);
    route.mutable_metadata()->set_namespace_("default");
    route.mutable_spec()->set_target(name);
    auto* rule = route.mutable_spec()->add_rules();
    for (const char* version : {"v1", "v2"}) {
      auto* backend = rule->add_backends();
      backend->set_service(name);
      backend->set_weight(50);
      (*backend->mutable_subset())["version"] = version;
    }
    policy.http_routes.push_back(route);
    for (int w = 0; w < per_service; ++w) {
      registry::Workload workload;
      workload.id = absl::StrCat(name, "-", w);
      workload.service = name;
      workload.namespace_ = "default";
      workload.addresses = {absl::StrCat("10.", s / 250, ".", s % 250, ".", w + 1)};
      workload.ports = {8080};
      workload.labels = {{"version", w % 2 == 0 ? "v1" : "v2"}};
      registry.workloads.push_back(workload);
    }
  }
  std::sort(registry.workloads.begin(), registry.workloads.end(),
            [](const registry::Workload& a, const registry::Workload& b) { return a.id < b.id; });
}

class TranslatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    policy_.services.push_back(Parse<pb::Service>(R"(
kind: Service
metadata: {name: reviews}
spec:
  ports: [{name: http, port: 9080}]
)"));
    policy_.services.push_back(Parse<pb::Service>(R"(
kind: Service
metadata: {name: frontend}
spec:
  ports: [{name: http, port: 8080, targetPort: 8081}]
)"));
    policy_.traffic_policies.push_back(Parse<pb::TrafficPolicy>(R"(
kind: TrafficPolicy
metadata: {name: reviews}
spec:
  target: reviews
  loadBalancer: ROUND_ROBIN
  timeouts: {connect: 250ms, request: 2s, perTry: 500ms}
  retries: {attempts: 3, retryOn: [connect-failure, reset], budgetPercent: 25}
  circuitBreaker: {maxRequests: 100}
  outlierDetection: {consecutive5xx: 7}
  overload: {enabled: true, ejectionTime: 0s, maxEjectionTime: 30s, maxEjectionPercent: 20, penalty: 4, penaltyTime: 3s}
  rateLimit: {requestsPerSecond: 50, burst: 100, perSourceIdentity: true}
  connectionPool: {idleTimeout: 20s, maxRequestsPerConnection: 1, maxConnectionDuration: 1m}
)"));
    policy_.http_routes.push_back(Parse<pb::HTTPRoute>(R"(
kind: HTTPRoute
metadata: {name: reviews}
spec:
  target: reviews
  hostnames: [reviews.example.com]
  rules:
  - name: canary
    matches:
    - headers: [{name: X-Canary, value: always}]
    backends: [{service: reviews, subset: {version: v2}}]
  - name: split
    matches:
    - path: {type: PathPrefix, value: /api}
    - path: {type: Exact, value: /health}
      method: GET
    backends:
    - {service: reviews, subset: {version: v1}, weight: 90}
    - {service: reviews, subset: {version: v2}, weight: 10}
    timeout: 3s
    requestHeaders: {set: {x-b: "2", x-a: "1"}, remove: [x-debug]}
    fault: {abort: {httpStatus: 503, percent: 5}}
  - name: ghost
    matches: [{path: {value: /ghost}}]
    backends: [{service: nonexistent}]
)"));
    registry_.workloads = {
        MakeWorkload("frontend-0", "frontend", "10.0.0.1"),
        MakeWorkload("reviews-v1-0", "reviews", "10.0.1.1", {{"version", "v1"}}),
        MakeWorkload("reviews-v1-1", "reviews", "10.0.1.2", {{"version", "v1"}}),
        MakeWorkload("reviews-v2-0", "reviews", "10.0.2.1", {{"version", "v2"}}),
    };
    registry_.workloads[0].ports = {8081};
    node_.set_id("frontend-0");
    // As a sidecar of this tree says: it reads every capability.
    for (const std::string& name : xds::CapabilitySet::All().Names()) node_.add_capabilities(name);
  }

 public:
  // The deterministic serialization of `m`: what the discovery server versions (docs/xds.md).
  static std::string Content(const google::protobuf::Message& m) {
    std::string bytes;
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    m.SerializeToCodedStream(&coded);
    coded.Trim();
    return bytes;
  }
  // One type's resources, in their order, '|' after each.
  template <typename T>
  static std::string Content(const std::vector<T>& list) {
    std::string out;
    for (const T& m : list) absl::StrAppend(&out, Content(m), "|");
    return out;
  }
  static std::string Bytes(const NodeResources& r) {
    return absl::StrCat(Content(r.listeners), Content(r.routes), Content(r.clusters),
                        Content(r.endpoints), Content(r.service_routes));
  }

  template <typename T>
  static const T* Named(const std::vector<T>& list, absl::string_view name) {
    for (const T& item : list) {
      if (item.name() == name) return &item;
    }
    return nullptr;
  }
  static const xds::ClusterLoadAssignment* Assignment(const NodeResources& r,
                                                      absl::string_view name) {
    for (const auto& a : r.endpoints) {
      if (a.cluster_name() == name) return &a;
    }
    return nullptr;
  }
  // A virtual host of a route configuration, inline or joining it in a ServiceRoute.
  static const xds::VirtualHost* Host(const NodeResources& r, absl::string_view route_config,
                                      absl::string_view vhost) {
    const xds::RouteConfiguration* rc = Named(r.routes, route_config);
    if (rc == nullptr) return nullptr;
    for (const auto& vh : rc->virtual_hosts()) {
      if (vh.name() == vhost) return &vh;
    }
    for (const xds::ServiceRoute& sr : r.service_routes) {
      if (sr.route_config_name() == route_config && sr.has_virtual_host() &&
          sr.virtual_host().name() == vhost) {
        return &sr.virtual_host();
      }
    }
    return nullptr;
  }
  // The virtual hosts of a route configuration as the sidecar joins them: its own, then those of
  // the ServiceRoutes joining it, by ServiceRoute name.
  static std::vector<const xds::VirtualHost*> JoinedHosts(const NodeResources& r,
                                                          absl::string_view route_config) {
    std::vector<const xds::VirtualHost*> out;
    const xds::RouteConfiguration* rc = Named(r.routes, route_config);
    if (rc == nullptr) return out;
    for (const auto& vh : rc->virtual_hosts()) out.push_back(&vh);
    for (const xds::ServiceRoute& sr : r.service_routes) {
      if (sr.route_config_name() == route_config && sr.has_virtual_host()) {
        out.push_back(&sr.virtual_host());
      }
    }
    return out;
  }
  // The destinations of a listener as the sidecar joins them: its own, then those of the
  // ServiceRoutes joining its route configuration, by ServiceRoute name.
  static std::vector<xds::ListenerDestination> JoinedDestinations(const NodeResources& r,
                                                                  const xds::Listener& listener) {
    std::vector<xds::ListenerDestination> out(listener.destinations().begin(),
                                              listener.destinations().end());
    if (!listener.use_original_destination()) return out;
    for (const xds::ServiceRoute& sr : r.service_routes) {
      if (sr.route_config_name() == listener.route_config_name() && sr.has_destination()) {
        out.push_back(sr.destination());
      }
    }
    return out;
  }

 protected:
  policy::PolicySnapshot policy_;
  registry::RegistrySnapshot registry_;
  xds::Node node_;
};

// Traffic capture (label meshlet.io/capture: iptables): listeners that route by original
// destination. The fixture's Services get addresses, and a database with an opaque port joins.
class CaptureTest : public TranslatorTest {
 protected:
  void SetUp() override {
    TranslatorTest::SetUp();
    policy_.services[0].mutable_status()->add_addresses("240.240.0.1");  // reviews, allocated
    policy_.services[0].mutable_status()->add_addresses("fd00:240::1");
    policy_.services[1].mutable_status()->add_addresses("240.240.0.2");  // frontend
    policy_.services.push_back(Parse<pb::Service>(R"(
kind: Service
metadata: {name: db}
spec:
  addresses: [10.96.0.20, "fd00::20"]
  ports:
  - {name: mysql, port: 3306, targetPort: 3307, protocol: TCP}
  - {name: admin, port: 8080}
)"));
    // (Ids in order: the registry snapshot is sorted by id.)
    registry::Workload db = MakeWorkload("store-db-0", "db", "10.0.4.1");
    db.ports = {3307, 8080};
    registry_.workloads.push_back(db);
  }

  static void Capture(registry::Workload& w) {
    w.labels[registry::kCaptureLabel] = registry::kCaptureIptables;
    w.capture = true;
  }

  std::vector<std::string> DestinationSummary(const xds::Listener& listener) {
    return Summary(std::vector<xds::ListenerDestination>(listener.destinations().begin(),
                                                         listener.destinations().end()));
  }
  // The destinations a listener of `r` serves, its own and those ServiceRoutes join to it.
  std::vector<std::string> DestinationSummary(const NodeResources& r, absl::string_view listener) {
    const xds::Listener* l = Named(r.listeners, listener);
    EXPECT_NE(l, nullptr) << listener;
    return l == nullptr ? std::vector<std::string>{} : Summary(JoinedDestinations(r, *l));
  }
  static std::vector<std::string> Summary(const std::vector<xds::ListenerDestination>& list) {
    std::vector<std::string> out;
    for (const xds::ListenerDestination& d : list) {
      out.push_back(absl::StrCat(d.name(), " [", absl::StrJoin(d.addresses(), ","), "]:", d.port(),
                                 " ", xds::ListenerProtocol_Name(d.protocol()), " ",
                                 d.route_config_name(), d.tcp_cluster(), " ",
                                 d.destination_port()));
    }
    return out;
  }
};

// Kubernetes discovery (RegistrySnapshot::kubernetes): ordinary Services are destinations, their
// ClusterIPs route captured connections, and their EndpointSlices' ready addresses are the
// members — a pod whose sidecar is connected by its registration, any other in plaintext.
class KubernetesServicesTest : public CaptureTest {
 protected:
  void SetUp() override {
    CaptureTest::SetUp();
    auto services = std::make_shared<registry::KubernetesServices>();
    registry::KubernetesService ratings;
    ratings.namespace_ = "shop";
    ratings.name = "ratings";
    ratings.cluster_ips = {"10.96.0.30"};
    ratings.ports = {{.name = "http", .port = 80, .protocol = "HTTP", .target_port = 9080},
                     {.name = "redis", .port = 6379, .protocol = "TCP", .target_port = 6379}};
    ratings.endpoints = {
        {.address = "10.1.0.5",
         .pod = "ratings-a",
         .service_account = "ratings",
         .labels = {{"app", "ratings"}, {"version", "v1"}}},
        {.address = "10.1.0.6",
         .pod = "ratings-b",
         .service_account = "ratings",
         .labels = {{"app", "ratings"}, {"version", "v2"}}},
    };
    services->services.push_back(
        std::make_shared<const registry::KubernetesService>(std::move(ratings)));
    // A Kubernetes Service of the same name as a Service resource: the resource's ports win.
    registry::KubernetesService reviews;
    reviews.namespace_ = "default";
    reviews.name = "reviews";
    reviews.cluster_ips = {"10.96.0.9"};
    reviews.ports = {{.name = "", .port = 9080, .protocol = "TCP", .target_port = 9080}};
    reviews.endpoints = {{.address = "10.0.1.1", .pod = "reviews-v1-0"},
                         {.address = "10.0.1.7", .pod = "reviews-plain"}};
    services->services.push_back(
        std::make_shared<const registry::KubernetesService>(std::move(reviews)));
    kubernetes_ = services;
    registry_.kubernetes = services;
    // ratings-b's sidecar is connected (a captured pod with a workload certificate).
    registry::Workload b = MakeWorkload("ratings-b.shop", "ratings", "10.1.0.6");
    b.namespace_ = "shop";
    b.ports = {9080, 6379};
    b.workload_certificate = true;
    Capture(b);
    registry_.workloads.push_back(b);
    std::sort(registry_.workloads.begin(), registry_.workloads.end(),
              [](const auto& x, const auto& y) { return x.id < y.id; });
    for (registry::Workload& w : registry_.workloads) {
      if (w.id == "frontend-0") {
        w.workload_certificate = true;
        Capture(w);
      }
    }
  }
  static bool Has(const std::vector<std::string>& list, absl::string_view item) {
    return std::find(list.begin(), list.end(), item) != list.end();
  }
  // Service `i` of kubernetes_ (0 ratings, 1 reviews), replaced by a copy the test may change.
  registry::KubernetesService& MutableService(size_t i) {
    auto copy = std::make_shared<registry::KubernetesService>(*kubernetes_->services[i]);
    kubernetes_->services[i] = copy;
    return *copy;
  }
  std::shared_ptr<registry::KubernetesServices> kubernetes_;
};

}  // namespace meshlet::controlplane::translate

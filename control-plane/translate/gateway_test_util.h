#pragma once

// Fixtures for Gateway API routes (gateway_routes_test, route_status_test): a mesh of Services in
// namespace "default" (echo with ports 80 and 9090 and an address, echo-v1, echo-v2), one in
// namespace "other" (remote), callers in "default" (frontend-0) and "consumer" (client-0); routes
// and ReferenceGrants parsed from YAML the way `kubectl get -o yaml` prints them.

#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/config/yaml_proto.h"
#include "control-plane/translate/translator.h"
#include "control-plane/translate/translator_test_util.h"
#include "xds/gateway.pb.h"

namespace meshlet::controlplane::translate {

namespace gw = ::meshlet::gateway;

template <typename T>
T ParseGateway(const std::string& yaml) {
  T out;
  absl::Status status = config::YamlToProto(yaml, out);
  EXPECT_TRUE(status.ok()) << status;
  if (out.metadata().namespace_().empty()) out.mutable_metadata()->set_namespace_("default");
  return out;
}

// TranslatorTest's helpers and inputs, with this mesh instead of its own.
class GatewayTest : public TranslatorTest {
 protected:
  void SetUp() override {
    for (const char* yaml : {
             R"(
kind: Service
metadata: {name: echo}
spec:
  addresses: [10.96.0.10]
  ports: [{name: http, port: 80, targetPort: 8080}, {name: admin, port: 9090}]
)",
             R"(
kind: Service
metadata: {name: echo-v1}
spec: {ports: [{name: http, port: 80, targetPort: 8080}]}
)",
             R"(
kind: Service
metadata: {name: echo-v2}
spec: {ports: [{name: http, port: 80, targetPort: 8080}]}
)",
             R"(
kind: Service
metadata: {name: remote, namespace: other}
spec: {ports: [{name: http, port: 80, targetPort: 8080}]}
)"}) {
      policy_.services.push_back(Parse<pb::Service>(yaml));
    }
    registry::Workload client = MakeWorkload("client-0", "client", "10.0.9.1");
    client.namespace_ = "consumer";
    registry::Workload remote = MakeWorkload("remote-0", "remote", "10.0.8.1");
    remote.namespace_ = "other";
    registry_.workloads = {client,
                           MakeWorkload("echo-0", "echo", "10.0.1.1"),
                           MakeWorkload("echo-v1-0", "echo-v1", "10.0.2.1"),
                           MakeWorkload("echo-v2-0", "echo-v2", "10.0.3.1"),
                           MakeWorkload("frontend-0", "frontend", "10.0.0.1"),
                           remote};
  }

  void AddHttp(const std::string& yaml) {
    policy_.gateway_http_routes.push_back(ParseGateway<gw::HTTPRoute>(yaml));
  }
  void AddGrpc(const std::string& yaml) {
    policy_.grpc_routes.push_back(ParseGateway<gw::GRPCRoute>(yaml));
  }
  // meshlet's GatewayClass "meshlet" and the Gateway `yaml` (of that class).
  void AddMeshletGateway(const std::string& yaml) {
    gw::GatewayClass c;
    c.mutable_metadata()->set_name("meshlet");
    c.mutable_spec()->set_controller_name("meshlet.io/gateway-controller");
    policy_.gateway_classes.push_back(c);
    policy_.gateways.push_back(ParseGateway<gw::Gateway>(yaml));
  }
  void AddGrant(const std::string& yaml) {
    policy_.reference_grants.push_back(ParseGateway<gw::ReferenceGrant>(yaml));
  }

  // The node's translation, kept until the test ends (what Host() returns points into it).
  const NodeResources& For(const std::string& node_id) {
    xds::Node node;
    node.set_id(node_id);
    for (const std::string& name : xds::CapabilitySet::All().Names()) node.add_capabilities(name);
    return translations_.emplace_back(Translate(policy_, registry_, node));
  }
  // The virtual host "<svc>.<ns>:<port>" of the node's route configuration "outbound" (inline or
  // in its ServiceRoute).
  using TranslatorTest::Host;
  static const xds::VirtualHost* Host(const NodeResources& r, absl::string_view name) {
    return TranslatorTest::Host(r, "outbound", name);
  }
  static std::vector<std::string> RouteNames(const xds::VirtualHost* vh) {
    std::vector<std::string> out;
    if (vh == nullptr) return {"<no virtual host>"};
    for (const xds::Route& r : vh->routes()) out.push_back(r.name());
    return out;
  }
  static const xds::Route* RouteNamed(const xds::VirtualHost* vh, absl::string_view name) {
    if (vh == nullptr) return nullptr;
    for (const xds::Route& r : vh->routes()) {
      if (r.name() == name) return &r;
    }
    return nullptr;
  }
  static bool HasWarning(const NodeResources& r, absl::string_view text) {
    for (const std::string& w : r.warnings) {
      if (absl::StrContains(w, text)) return true;
    }
    return false;
  }

  std::deque<NodeResources> translations_;
};

}  // namespace meshlet::controlplane::translate

// GatewayManifests: the objects that run a Gateway's proxy, as a user's cluster receives them.

#include "control-plane/inject/gateway_deployment.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "control-plane/inject/inject_test_util.h"
#include "control-plane/inject/node.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::inject {
namespace {

GatewayDeploymentSpec Edge() {
  GatewayDeploymentSpec gateway;
  gateway.namespace_ = "shop";
  gateway.name = "edge";
  gateway.class_name = "meshlet";
  gateway.ports = {443, 80, 443};
  return gateway;
}

bool Has(const std::vector<std::string>& list, const std::string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

TEST(GatewayManifestsTest, ServiceAccountDeploymentAndServiceNamedAfterGatewayAndClass) {
  absl::StatusOr<std::vector<YAML::Node>> objects = GatewayManifests(Edge(), TestOptions());
  ASSERT_TRUE(objects.ok()) << objects.status();
  ASSERT_EQ(objects->size(), 3u);
  const std::vector<std::string> kinds = {"ServiceAccount", "Deployment", "Service"};
  for (size_t i = 0; i < 3; ++i) {
    const YAML::Node& o = (*objects)[i];
    EXPECT_EQ(o["kind"].Scalar(), kinds[i]);
    EXPECT_EQ(o["metadata"]["name"].Scalar(), "edge-meshlet");
    EXPECT_EQ(o["metadata"]["namespace"].Scalar(), "shop");
    EXPECT_EQ(o["metadata"]["labels"][kManagedByLabel].Scalar(), "meshlet");
    EXPECT_EQ(o["metadata"]["labels"][kGatewayNameLabel].Scalar(), "edge");
  }
  const YAML::Node deployment = (*objects)[1];
  EXPECT_EQ(deployment["apiVersion"].Scalar(), "apps/v1");
  EXPECT_EQ(deployment["spec"]["selector"]["matchLabels"][kGatewayNameLabel].Scalar(), "edge");
  EXPECT_FALSE(deployment["spec"]["replicas"].IsDefined()) << "left to the user or an autoscaler";
  const YAML::Node pod = deployment["spec"]["template"];
  EXPECT_EQ(pod["metadata"]["labels"][kGatewayNameLabel].Scalar(), "edge");
  EXPECT_EQ(pod["metadata"]["labels"][kInjectKey].Scalar(), "false");
  EXPECT_EQ(pod["spec"]["serviceAccountName"].Scalar(), "edge-meshlet");

  const YAML::Node service = (*objects)[2];
  EXPECT_EQ(service["spec"]["type"].Scalar(), "LoadBalancer");
  EXPECT_EQ(service["spec"]["selector"][kGatewayNameLabel].Scalar(), "edge");
  ASSERT_EQ(service["spec"]["ports"].size(), 2u) << "one per distinct listener port";
  EXPECT_EQ(service["spec"]["ports"][0]["port"].as<int>(), 80);
  EXPECT_EQ(service["spec"]["ports"][0]["targetPort"].as<int>(), 80);
  EXPECT_EQ(service["spec"]["ports"][1]["port"].as<int>(), 443);
}

TEST(GatewayManifestsTest, ProxyServesTheGatewayWithoutServiceCaptureOrPrivileges) {
  absl::StatusOr<std::vector<YAML::Node>> objects = GatewayManifests(Edge(), TestOptions());
  ASSERT_TRUE(objects.ok()) << objects.status();
  const YAML::Node spec = (*objects)[1]["spec"]["template"]["spec"];
  EXPECT_FALSE(spec["initContainers"].IsDefined()) << "no meshlet-init: nothing is captured";
  ASSERT_EQ(spec["containers"].size(), 1u);
  const YAML::Node proxy = spec["containers"][0];
  EXPECT_EQ(proxy["name"].Scalar(), kProxyContainerName);
  EXPECT_EQ(proxy["image"].Scalar(), "meshlet-proxy:0.1.0");
  const std::vector<std::string> args = Strings(proxy["args"]);
  EXPECT_TRUE(Has(args, "--gateway=shop/edge"));
  EXPECT_TRUE(Has(args, "--node-service-account=$(SERVICE_ACCOUNT)"));
  EXPECT_TRUE(Has(args, "--kubernetes-token-file=/var/run/meshlet/token/token"));
  for (const std::string& arg : args) {
    EXPECT_FALSE(absl::StartsWith(arg, "--node-service=")) << arg;
    EXPECT_FALSE(absl::StartsWith(arg, "--node-port=")) << arg;
    EXPECT_FALSE(absl::StartsWith(arg, "--capture-check")) << arg;
    EXPECT_FALSE(absl::StrContains(arg, "meshlet.io/capture")) << arg;
  }
  std::vector<int> ports;
  for (const YAML::Node& p : proxy["ports"]) {
    if (p["containerPort"].as<int>() < 15000) ports.push_back(p["containerPort"].as<int>());
  }
  EXPECT_EQ(ports, (std::vector<int>{80, 443}));
  // Pod Security restricted: non-root, no escalation, ALL dropped, RuntimeDefault seccomp.
  const YAML::Node security = proxy["securityContext"];
  EXPECT_TRUE(security["runAsNonRoot"].as<bool>());
  EXPECT_FALSE(security["allowPrivilegeEscalation"].as<bool>());
  EXPECT_EQ(Strings(security["capabilities"]["drop"]), std::vector<std::string>{"ALL"});
  EXPECT_FALSE(security["capabilities"]["add"].IsDefined());
  EXPECT_EQ(security["seccompProfile"]["type"].Scalar(), "RuntimeDefault");
  // Port 80 for UID 1337: the namespaced, safe sysctl instead of NET_BIND_SERVICE.
  ASSERT_EQ(spec["securityContext"]["sysctls"].size(), 1u);
  EXPECT_EQ(spec["securityContext"]["sysctls"][0]["name"].Scalar(),
            "net.ipv4.ip_unprivileged_port_start");
  EXPECT_EQ(spec["securityContext"]["sysctls"][0]["value"].Scalar(), "0");
  // Every mount has its volume.
  std::vector<std::string> volumes = Names(spec["volumes"]);
  for (const YAML::Node& mount : proxy["volumeMounts"]) {
    EXPECT_TRUE(Has(volumes, mount["name"].Scalar())) << mount["name"].Scalar();
  }
}

TEST(GatewayManifestsTest, HighPortsNeedNoSysctlAndJoinTokensComeFromTheAccountsSecret) {
  GatewayDeploymentSpec gateway = Edge();
  gateway.ports = {8443};
  Options options = TestOptions();
  options.identity = Identity::kJoinToken;
  options.revision = "canary";
  options.control_plane_address = "meshlet-control-plane-canary.meshlet-system.svc:15012";
  absl::StatusOr<std::vector<YAML::Node>> objects = GatewayManifests(gateway, options);
  ASSERT_TRUE(objects.ok()) << objects.status();
  const YAML::Node pod = (*objects)[1]["spec"]["template"];
  EXPECT_FALSE(pod["spec"]["securityContext"]["sysctls"].IsDefined());
  EXPECT_EQ(pod["metadata"]["labels"]["meshlet.io/rev"].Scalar(), "canary");
  const std::vector<std::string> args = Strings(pod["spec"]["containers"][0]["args"]);
  EXPECT_TRUE(Has(args, "--join-token-file=/var/run/meshlet/join-token/token"));
  EXPECT_TRUE(Has(args, "--node-label=meshlet.io/rev=canary"));
  bool secret = false;
  for (const YAML::Node& v : pod["spec"]["volumes"]) {
    if (!v["secret"].IsDefined()) continue;
    secret |= v["secret"]["secretName"].Scalar() == "meshlet-join-token-edge-meshlet";
  }
  EXPECT_TRUE(secret);
}

TEST(GatewayManifestsTest, ForPodmanTheProxyPublishesNoPortAndFindsItsPod) {
  Options options = TestOptions();
  options.podman = true;
  options.identity = Identity::kJoinToken;
  absl::StatusOr<std::vector<YAML::Node>> objects = GatewayManifests(Edge(), options);
  ASSERT_TRUE(objects.ok()) << objects.status();
  const YAML::Node proxy = (*objects)[1]["spec"]["template"]["spec"]["containers"][0];
  EXPECT_FALSE(proxy["ports"].IsDefined()) << "podman would publish them on the host";
  const std::vector<std::string> args = Strings(proxy["args"]);
  EXPECT_TRUE(Has(args, "--node-id=auto"));
  EXPECT_TRUE(Has(args, "--node-address=auto"));
  EXPECT_TRUE(Has(args, "--node-service-account=edge-meshlet"));
  EXPECT_TRUE(Has(args, "--gateway=shop/edge"));
}

TEST(GatewayManifestsTest, ServiceTypeFromTheGatewaysAnnotation) {
  GatewayDeploymentSpec gateway = Edge();
  gateway.annotations[kServiceTypeAnnotation] = "ClusterIP";
  absl::StatusOr<std::vector<YAML::Node>> objects = GatewayManifests(gateway, TestOptions());
  ASSERT_TRUE(objects.ok()) << objects.status();
  EXPECT_EQ((*objects)[2]["spec"]["type"].Scalar(), "ClusterIP");

  gateway.annotations[kServiceTypeAnnotation] = "ExternalName";
  objects = GatewayManifests(gateway, TestOptions());
  ASSERT_FALSE(objects.ok());
  EXPECT_EQ(objects.status().message(),
            "Gateway shop/edge: metadata.annotations[gateway.meshlet.io/service-type]: "
            "\"ExternalName\" is not ClusterIP, NodePort or LoadBalancer");
}

TEST(GatewayManifestsTest, RefusesWhatCannotBeDeployed) {
  GatewayDeploymentSpec gateway = Edge();
  gateway.ports.clear();
  absl::StatusOr<std::vector<YAML::Node>> objects = GatewayManifests(gateway, TestOptions());
  ASSERT_FALSE(objects.ok());
  EXPECT_EQ(objects.status().message(), "Gateway shop/edge: spec.listeners: no port to serve");

  gateway = Edge();
  gateway.name = std::string(60, 'g');
  objects = GatewayManifests(gateway, TestOptions());
  ASSERT_FALSE(objects.ok());
  EXPECT_TRUE(absl::StrContains(objects.status().message(), "longer than 63 characters"))
      << objects.status();
}

TEST(GatewayManifestsTest, InfrastructureLabelsAndAnnotationsOnEveryObjectMeshletsLabelsWin) {
  GatewayDeploymentSpec gateway = Edge();
  gateway.infrastructure_labels = {{"team", "shop"}, {"app", "storefront"}};
  gateway.infrastructure_annotations = {{"example.com/cost-center", "42"}};
  absl::StatusOr<std::vector<YAML::Node>> objects = GatewayManifests(gateway, TestOptions());
  ASSERT_TRUE(objects.ok()) << objects.status();
  std::vector<YAML::Node> metadatas;
  for (const YAML::Node& o : *objects) metadatas.push_back(o["metadata"]);
  metadatas.push_back((*objects)[1]["spec"]["template"]["metadata"]);
  for (const YAML::Node& m : metadatas) {
    EXPECT_EQ(m["labels"]["team"].Scalar(), "shop");
    EXPECT_EQ(m["labels"]["app"].Scalar(), "storefront");
    EXPECT_EQ(m["labels"][kGatewayNameLabel].Scalar(), "edge");
    EXPECT_EQ(m["labels"][kManagedByLabel].Scalar(), "meshlet");
    EXPECT_EQ(m["annotations"]["example.com/cost-center"].Scalar(), "42");
  }
  for (const YAML::Node& o : *objects) {
    EXPECT_EQ(o["metadata"]["annotations"][kInfrastructureLabelsAnnotation].Scalar(), "app,team");
    EXPECT_EQ(o["metadata"]["annotations"][kInfrastructureAnnotationsAnnotation].Scalar(),
              "example.com/cost-center");
  }
  EXPECT_EQ((*objects)[1]["spec"]["template"]["metadata"]["labels"][kInjectKey].Scalar(), "false");
  EXPECT_EQ((*objects)[1]["spec"]["selector"]["matchLabels"].size(), 1u);
  EXPECT_FALSE((*objects)[2]["spec"]["externalIPs"].IsDefined());

  // Without infrastructure: no list annotations.
  objects = GatewayManifests(Edge(), TestOptions());
  ASSERT_TRUE(objects.ok());
  EXPECT_FALSE((*objects)[0]["metadata"]["annotations"].IsDefined());
}

TEST(GatewayManifestsTest, ReservedInfrastructureKeysAreRefused) {
  for (const char* key :
       {"gateway.networking.k8s.io/gateway-name", "app.kubernetes.io/managed-by", "meshlet.io/rev",
        "sidecar.meshlet.io/inject", "gateway.meshlet.io/spec-hash"}) {
    GatewayDeploymentSpec gateway = Edge();
    gateway.infrastructure_labels[key] = "x";
    absl::StatusOr<std::vector<YAML::Node>> objects = GatewayManifests(gateway, TestOptions());
    ASSERT_FALSE(objects.ok()) << key;
    EXPECT_TRUE(absl::StrContains(objects.status().message(),
                                  absl::StrCat("spec.infrastructure.labels[", key, "]")))
        << objects.status();
    gateway = Edge();
    gateway.infrastructure_annotations[key] = "x";
    objects = GatewayManifests(gateway, TestOptions());
    ASSERT_FALSE(objects.ok()) << key;
    EXPECT_TRUE(absl::StrContains(objects.status().message(), "spec.infrastructure.annotations["))
        << objects.status();
  }
  for (const char* key :
       {"app.kubernetes.io/name", "notmeshlet.io/x", "example.com/meshlet.io", "team"}) {
    EXPECT_TRUE(CheckInfrastructureKey("labels", key).ok()) << key;
  }
}

TEST(GatewayManifestsTest, StaticAddressesAreTheServicesExternalIps) {
  GatewayDeploymentSpec gateway = Edge();
  gateway.addresses = {"203.0.113.9", "2001:db8::9"};
  absl::StatusOr<std::vector<YAML::Node>> objects = GatewayManifests(gateway, TestOptions());
  ASSERT_TRUE(objects.ok()) << objects.status();
  const YAML::Node ips = (*objects)[2]["spec"]["externalIPs"];
  ASSERT_EQ(ips.size(), 2u);
  EXPECT_EQ(ips[0].Scalar(), "203.0.113.9");
  EXPECT_EQ(ips[1].Scalar(), "2001:db8::9");
}

}  // namespace
}  // namespace meshlet::controlplane::inject

// The injected containers and volumes (containers.cc): native and classic sidecars, the join-token
// identity, the trace collector, and what the podman form carries.

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "control-plane/inject/inject.h"
#include "control-plane/inject/inject_test_util.h"
#include "control-plane/inject/node.h"
#include "control-plane/inject/pod_checks.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::inject {
namespace {

TEST(InjectTest, NativeSidecarDeploymentGetsInitAndProxyBeforeTheAppsInitContainers) {
  const YAML::Node out = Injected(kDeployment);
  const YAML::Node pod = out["spec"]["template"];
  EXPECT_EQ(Names(pod["spec"]["initContainers"]),
            (std::vector<std::string>{"meshlet-init", "meshlet-proxy", "migrate"}));
  EXPECT_EQ(Names(pod["spec"]["containers"]), (std::vector<std::string>{"reviews", "metrics"}));
  EXPECT_EQ(Names(pod["spec"]["volumes"]),
            (std::vector<std::string>{"cache", "meshlet-trust", "meshlet-token", "meshlet-data"}));

  const YAML::Node proxy = pod["spec"]["initContainers"][1];
  EXPECT_EQ(proxy["image"].Scalar(), "meshlet-proxy:0.1.0");
  EXPECT_EQ(proxy["restartPolicy"].Scalar(), "Always");
  EXPECT_EQ(proxy["startupProbe"]["httpGet"]["port"].Scalar(), "15020");
  EXPECT_EQ(proxy["startupProbe"]["httpGet"]["path"].Scalar(), "/ready");
  EXPECT_EQ(proxy["readinessProbe"]["httpGet"]["path"].Scalar(), "/ready");
  EXPECT_EQ(Strings(proxy["command"]), (std::vector<std::string>{"/usr/local/bin/sidecar"}));
  EXPECT_EQ(Strings(proxy["args"]),
            (std::vector<std::string>{
                "--xds=$(MESHLET_CONTROL_PLANE)",
                "--xds-ca=/var/run/meshlet/trust/ca.pem",
                "--xds-server-identity=spiffe://cluster.local/ns/meshlet-system/sa/"
                "meshlet-control-plane",
                "--xds-cache-dir=/var/lib/meshlet",
                "--trust-domain=cluster.local",
                "--node-id=$(POD_NAME).$(POD_NAMESPACE)",
                "--node-namespace=$(POD_NAMESPACE)",
                "--node-service=reviews",
                "--node-service-account=$(SERVICE_ACCOUNT)",
                "--node-address=$(POD_IP)",
                // Its node, and the node's region and zone from the pod's topology labels.
                "--node-locality=$(NODE_REGION)/$(NODE_ZONE)/$(NODE_NAME)",
                // TCP container ports of every app container, once each; not the UDP one.
                "--node-port=9080",
                "--node-port=9100",
                "--node-label=app=reviews",
                "--node-label=version=v1",
                // The control plane gives it capture listeners.
                "--node-label=meshlet.io/capture=iptables",
                "--kubernetes-token-file=/var/run/meshlet/token/token",
                "--admin-address=127.0.0.1:15000",
                "--prometheus-address=0.0.0.0:15020",
                // Spans to the control plane's collector, over the authenticated discovery port.
                "--trace-collector=control-plane",
                // Not ready until a dial to the pod's own address is redirected inbound.
                "--capture-check=$(POD_IP):15008",
            }));
  // Downward-API environment and the control plane's address.
  std::vector<std::string> env;
  for (const YAML::Node& e : proxy["env"]) {
    env.push_back(absl::StrCat(
        e["name"].Scalar(), "=",
        e["value"] ? e["value"].Scalar() : e["valueFrom"]["fieldRef"]["fieldPath"].Scalar()));
  }
  EXPECT_EQ(env,
            (std::vector<std::string>{
                "POD_NAME=metadata.name", "POD_NAMESPACE=metadata.namespace", "POD_IP=status.podIP",
                "SERVICE_ACCOUNT=spec.serviceAccountName", "NODE_NAME=spec.nodeName",
                "NODE_REGION=metadata.labels['topology.kubernetes.io/region']",
                "NODE_ZONE=metadata.labels['topology.kubernetes.io/zone']",
                "MESHLET_CONTROL_PLANE=meshlet-control-plane.meshlet-system.svc:15012"}));
  EXPECT_EQ(proxy["securityContext"]["runAsUser"].Scalar(), "1337");
  EXPECT_EQ(proxy["securityContext"]["runAsGroup"].Scalar(), "1337");
  EXPECT_EQ(proxy["securityContext"]["runAsNonRoot"].Scalar(), "true");
  EXPECT_EQ(proxy["resources"]["requests"]["cpu"].Scalar(), "100m");
  EXPECT_EQ(proxy["resources"]["requests"]["memory"].Scalar(), "64Mi");
  EXPECT_FALSE(proxy["resources"]["limits"]);

  const YAML::Node init = pod["spec"]["initContainers"][0];
  EXPECT_EQ(Strings(init["args"]),
            (std::vector<std::string>{"init", "--proxy-uid=1337", "--outbound-port=15001",
                                      "--inbound-port=15006"}));
  EXPECT_EQ(init["securityContext"]["runAsUser"].Scalar(), "0");
  EXPECT_EQ(init["securityContext"]["runAsNonRoot"].Scalar(), "false");
  EXPECT_EQ(Strings(init["securityContext"]["capabilities"]["add"]),
            (std::vector<std::string>{"NET_ADMIN", "NET_RAW"}));
  EXPECT_FALSE(init["restartPolicy"]);
  EXPECT_FALSE(init["startupProbe"]);

  // The projected token for the audience the control plane reviews.
  const YAML::Node token = pod["spec"]["volumes"][2]["projected"]["sources"][0];
  EXPECT_EQ(token["serviceAccountToken"]["audience"].Scalar(), "meshlet");
  EXPECT_EQ(token["serviceAccountToken"]["path"].Scalar(), "token");
  EXPECT_EQ(pod["spec"]["volumes"][1]["configMap"]["name"].Scalar(), "meshlet-trust");

  // The app is as it was; the pod records what was added.
  EXPECT_TRUE(Equal(pod["spec"]["containers"][0],
                    YAML::Load(kDeployment)["spec"]["template"]["spec"]["containers"][0]));
  EXPECT_EQ(pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"].Scalar(),
            "reviews");
  EXPECT_EQ(pod["metadata"]["annotations"]["sidecar.meshlet.io/status"].Scalar(),
            R"({"version":"0.1.0","mode":"native","initContainers":["meshlet-init",)"
            R"("meshlet-proxy"],"containers":[],"volumes":["meshlet-trust","meshlet-token",)"
            R"("meshlet-data"]})");
  // Everything outside the template is untouched.
  EXPECT_EQ(out["spec"]["replicas"].Scalar(), "2");
  EXPECT_EQ(ToYaml(out["metadata"]), ToYaml(YAML::Load(kDeployment)["metadata"]));
}

TEST(InjectTest, ClassicSidecarIsTheFirstContainer) {
  for (bool by_annotation : {true, false}) {
    Options options = TestOptions();
    std::string yaml = kDeployment;
    if (by_annotation) {
      yaml = absl::StrReplaceAll(yaml, {{"      labels:\n",
                                         "      annotations:\n        sidecar.meshlet.io/mode: "
                                         "classic\n      labels:\n"}});
    } else {
      options.mode = SidecarMode::kClassic;
    }
    const YAML::Node spec = Injected(yaml, options)["spec"]["template"]["spec"];
    EXPECT_EQ(Names(spec["initContainers"]), (std::vector<std::string>{"meshlet-init", "migrate"}));
    EXPECT_EQ(Names(spec["containers"]),
              (std::vector<std::string>{"meshlet-proxy", "reviews", "metrics"}));
    const YAML::Node proxy = spec["containers"][0];
    EXPECT_FALSE(proxy["restartPolicy"]);
    EXPECT_FALSE(proxy["startupProbe"]);  // it would not hold the app back
    EXPECT_TRUE(proxy["readinessProbe"]);
  }
  // The annotation overrides the option the other way too.
  Options classic = TestOptions();
  classic.mode = SidecarMode::kClassic;
  const YAML::Node spec =
      Injected(absl::StrReplaceAll(kDeployment, {{"      labels:\n",
                                                  "      annotations:\n        "
                                                  "sidecar.meshlet.io/mode: native\n"
                                                  "      labels:\n"}}),
               classic)["spec"]["template"]["spec"];
  EXPECT_EQ(Names(spec["initContainers"]),
            (std::vector<std::string>{"meshlet-init", "meshlet-proxy", "migrate"}));
}

TEST(InjectTest, JoinTokenIdentityByOptionMountsTheServiceAccountsSecret) {
  Options options = TestOptions();
  options.identity = Identity::kJoinToken;
  const YAML::Node pod = Injected(kDeployment, options)["spec"]["template"];
  const YAML::Node volumes = pod["spec"]["volumes"];
  EXPECT_EQ(Names(volumes), (std::vector<std::string>{"cache", "meshlet-trust",
                                                      "meshlet-join-token", "meshlet-data"}));
  EXPECT_EQ(volumes[2]["secret"]["secretName"].Scalar(), "meshlet-join-token-reviews");
  const std::vector<std::string> args = Strings(pod["spec"]["initContainers"][1]["args"]);
  EXPECT_NE(
      std::find(args.begin(), args.end(), "--join-token-file=/var/run/meshlet/join-token/token"),
      args.end());
  // No serviceAccountName: the namespace's default account's Secret.
  const std::string no_account =
      absl::StrReplaceAll(kDeployment, {{"      serviceAccountName: reviews\n", ""}});
  absl::StatusOr<Result> result = InjectText(no_account, options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(
      result->document["spec"]["template"]["spec"]["volumes"][2]["secret"]["secretName"].Scalar(),
      "meshlet-join-token-default");
  // The annotation names another Secret, or goes back to the service-account token.
  const std::string named = absl::StrReplaceAll(
      kDeployment, {{"      labels:\n",
                     "      annotations:\n        sidecar.meshlet.io/joinTokenSecret: mine\n"
                     "      labels:\n"}});
  result = InjectText(named, options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(
      result->document["spec"]["template"]["spec"]["volumes"][2]["secret"]["secretName"].Scalar(),
      "mine");
  const std::string kubernetes = absl::StrReplaceAll(
      kDeployment, {{"      labels:\n",
                     "      annotations:\n        sidecar.meshlet.io/identity: kubernetes-token\n"
                     "      labels:\n"}});
  result = InjectText(kubernetes, options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(Text(result->document["spec"]["template"]["spec"]["volumes"][2]["name"]),
            "meshlet-token");
}

TEST(InjectTest, TraceCollectorIsTheControlPlaneUnlessTheOptionSaysOtherwise) {
  auto collector_args = [](const Options& options) {
    std::vector<std::string> found;
    for (const std::string& arg : Strings(Injected(
             kDeployment, options)["spec"]["template"]["spec"]["initContainers"][1]["args"])) {
      if (absl::StartsWith(arg, "--trace-")) found.push_back(arg);
    }
    return found;
  };
  Options options = TestOptions();
  options.control_plane_address = "10.0.0.7:15012";
  // The proxy's xDS server, wherever it is: the spans go over its channel.
  EXPECT_EQ(collector_args(options), std::vector<std::string>{"--trace-collector=control-plane"});
  options.trace_collector = "control-plane";
  EXPECT_TRUE(ValidateOptions(options).ok());
  EXPECT_EQ(collector_args(options), std::vector<std::string>{"--trace-collector=control-plane"});
  options.trace_collector = "otel.observability:4318";
  EXPECT_EQ(collector_args(options),
            std::vector<std::string>{"--trace-collector=otel.observability:4318"});
  options.trace_collector = "off";
  EXPECT_EQ(collector_args(options), std::vector<std::string>{});
  options.trace_collector = "otel";
  EXPECT_FALSE(ValidateOptions(options).ok());
}

TEST(InjectTest, PodmanOutputCarriesWhatPodmanLacks) {
  // podman 4.3 has no downward API but metadata.name, expands no $(VAR), crashes on a secret
  // volume without `optional`, mounts Secrets' data base64-encoded, publishes every
  // containerPort on the host and reruns init containers under restartPolicy Always.
  constexpr char kPod[] = R"(apiVersion: v1
kind: Pod
metadata:
  name: reviews-1
  namespace: shop
  labels: {app: reviews}
spec:
  serviceAccountName: reviews
  containers:
  - name: reviews
    image: reviews:1
    ports: [{containerPort: 9080}]
    readinessProbe: {httpGet: {path: "/ready?v=$x", port: 9080}}
)";
  Options podman = TestOptions();
  podman.podman = true;
  podman.mode = SidecarMode::kClassic;
  podman.identity = Identity::kJoinToken;
  podman.control_plane_address = "198.18.0.10:15012";
  absl::StatusOr<Result> result = InjectText(kPod, podman);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->pods[0].warnings.empty()) << absl::StrJoin(result->pods[0].warnings, "\n");
  const YAML::Node pod = result->document;
  const YAML::Node proxy = pod["spec"]["containers"][0];
  ASSERT_EQ(proxy["name"].Scalar(), "meshlet-proxy");
  const std::string text = ToYaml(pod);
  EXPECT_EQ(text.find("$("), std::string::npos) << text;
  EXPECT_EQ(text.find("secret"), std::string::npos) << text;
  for (const char* arg :
       {"--xds=198.18.0.10:15012", "--node-id=auto", "--node-namespace=shop",
        "--node-service=reviews", "--node-service-account=reviews", "--node-address=auto",
        "--capture-check=auto:15008", "--trace-collector=control-plane",
        "--app-probe=/app-health/reviews/readyz=9080/ready?v=$x"}) {
    const std::vector<std::string> args = ProxyArgs(pod);
    EXPECT_NE(std::find(args.begin(), args.end(), arg), args.end()) << arg << "\n" << text;
  }
  std::vector<std::string> env;
  for (const YAML::Node& e : proxy["env"]) {
    env.push_back(absl::StrCat(
        e["name"].Scalar(), "=",
        e["value"] ? e["value"].Scalar()
                   : absl::StrCat("fieldRef ", e["valueFrom"]["fieldRef"]["fieldPath"].Scalar())));
  }
  EXPECT_EQ(env, (std::vector<std::string>{"POD_NAME=fieldRef metadata.name", "POD_NAMESPACE=shop",
                                           "SERVICE_ACCOUNT=reviews",
                                           "MESHLET_CONTROL_PLANE=198.18.0.10:15012"}));
  EXPECT_FALSE(proxy["ports"]);
  // The join token from a ConfigMap (meshctl token create -o configmap), `optional` written.
  const YAML::Node volumes = pod["spec"]["volumes"];
  EXPECT_EQ(ToCompactJson(volumes[0]),
            R"({"name":"meshlet-trust","configMap":{"name":"meshlet-trust","items":[{"key":)"
            R"("ca.pem","path":"ca.pem"}],"optional":false}})");
  EXPECT_EQ(ToCompactJson(volumes[1]),
            R"({"name":"meshlet-join-token","configMap":{"name":"meshlet-join-token-reviews",)"
            R"("items":[{"key":"token","path":"token"}],"optional":false}})");
  EXPECT_EQ(pod["spec"]["restartPolicy"].Scalar(), "OnFailure");
  const std::string status = pod["metadata"]["annotations"]["sidecar.meshlet.io/status"].Scalar();
  EXPECT_EQ(status, R"({"version":"0.1.0","mode":"classic","podman":true,"rp":1})");
  EXPECT_LE(status.size(), 63u);
  EXPECT_TRUE(CheckPod(pod["metadata"], pod["spec"], "", {}).empty());
  // No topology labels: no locality (the proxy knows none); with them, written out.
  for (const std::string& arg : ProxyArgs(pod)) {
    EXPECT_FALSE(absl::StartsWith(arg, "--node-locality")) << arg;
  }
  std::string zoned = kPod;
  absl::StrReplaceAll({{"labels: {app: reviews}",
                        "labels: {app: reviews, topology.kubernetes.io/region: eu, "
                        "topology.kubernetes.io/zone: eu-a}"}},
                      &zoned);
  absl::StatusOr<Result> with_zone = InjectText(zoned, podman);
  ASSERT_TRUE(with_zone.ok()) << with_zone.status();
  const std::vector<std::string> zoned_args = ProxyArgs(with_zone->document);
  EXPECT_NE(std::find(zoned_args.begin(), zoned_args.end(), "--node-locality=eu/eu-a"),
            zoned_args.end())
      << absl::StrJoin(zoned_args, " ");

  // Injected again for podman: the same bytes; without --podman: as if never injected for it,
  // restartPolicy back to the default.
  absl::StatusOr<Result> again = Inject(YAML::Load(text), podman);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->changed) << ToYaml(again->document);
  Options kubernetes = podman;
  kubernetes.podman = false;
  EXPECT_EQ(ToYaml(Injected(text, kubernetes)), ToYaml(Injected(kPod, kubernetes)));
  EXPECT_FALSE(Injected(text, kubernetes)["spec"]["restartPolicy"]);

  // A pod's own OnFailure or Never stays, and is not taken back out.
  const std::string never = absl::StrReplaceAll(kPod, {{"  serviceAccountName: reviews\n",
                                                        "  serviceAccountName: reviews\n"
                                                        "  restartPolicy: Never\n"}});
  const YAML::Node kept = Injected(never, podman);
  EXPECT_EQ(kept["spec"]["restartPolicy"].Scalar(), "Never");
  EXPECT_EQ(kept["metadata"]["annotations"]["sidecar.meshlet.io/status"].Scalar(),
            R"({"version":"0.1.0","mode":"classic","podman":true})");
  EXPECT_EQ(Injected(ToYaml(kept), kubernetes)["spec"]["restartPolicy"].Scalar(), "Never");

  // A template's namespace is its workload's; without one, "default".
  const YAML::Node deployment = Injected(
      "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n"
      "  template:\n    spec: {containers: [{name: web, image: web:1}]}\n",
      podman);
  EXPECT_EQ(ProxyFlag(deployment["spec"]["template"], "--node-namespace="),
            std::vector<std::string>{"shop"});
  EXPECT_EQ(ProxyFlag(deployment["spec"]["template"], "--node-service-account="),
            std::vector<std::string>{"default"});
  const YAML::Node bare = Injected(
      "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: web, "
      "image: web:1}]}\n",
      podman);
  EXPECT_EQ(ProxyFlag(bare, "--node-namespace="), std::vector<std::string>{"default"});
}

}  // namespace
}  // namespace meshlet::controlplane::inject

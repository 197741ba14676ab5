#include "control-plane/inject/inject.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "control-plane/inject/node.h"
#include "control-plane/inject/pod_checks.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::inject {
namespace {

constexpr char kDeployment[] = R"(apiVersion: apps/v1
kind: Deployment
metadata:
  name: reviews-v1
  namespace: shop
spec:
  replicas: 2
  selector:
    matchLabels: {app: reviews, version: v1}
  template:
    metadata:
      labels:
        app: reviews
        version: v1
    spec:
      serviceAccountName: reviews
      initContainers:
      - name: migrate
        image: reviews:1
      containers:
      - name: reviews
        image: reviews:1
        env:
        - name: PORT
          value: "9080"
        ports:
        - containerPort: 9080
        - containerPort: 9080
          name: again
        - containerPort: 5353
          protocol: UDP
      - name: metrics
        image: exporter:1
        ports:
        - containerPort: 9100
          protocol: TCP
      volumes:
      - name: cache
        emptyDir: {}
)";

Options TestOptions() {
  Options options;
  options.proxy_image = "meshlet-proxy:0.1.0";
  options.version = "0.1.0";
  return options;
}

// The strings of a list node.
std::vector<std::string> Strings(const YAML::Node& list) {
  std::vector<std::string> out;
  for (const YAML::Node& n : list) out.push_back(n.Scalar());
  return out;
}

std::vector<std::string> Names(const YAML::Node& list) {
  std::vector<std::string> out;
  for (const YAML::Node& n : list) out.push_back(Text(Field(n, "name")));
  return out;
}

absl::StatusOr<Result> InjectText(const std::string& yaml, const Options& options = TestOptions(),
                                  const config::YamlParseOptions& source = {}) {
  return Inject(YAML::Load(yaml), options, source);
}

// Injects `yaml`, which must succeed and change it.
YAML::Node Injected(const std::string& yaml, const Options& options = TestOptions()) {
  absl::StatusOr<Result> result = InjectText(yaml, options);
  EXPECT_TRUE(result.ok()) << result.status();
  if (!result.ok()) return YAML::Node();
  EXPECT_TRUE(result->changed);
  return result->document;
}

std::string ErrorOf(const std::string& yaml, const config::YamlParseOptions& source = {}) {
  absl::StatusOr<Result> result = InjectText(yaml, TestOptions(), source);
  EXPECT_FALSE(result.ok());
  return result.ok() ? "" : std::string(result.status().message());
}

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
                // Spans to the control plane's collector.
                "--trace-collector=meshlet-control-plane.meshlet-system.svc:4318",
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
  EXPECT_EQ(env, (std::vector<std::string>{
                     "POD_NAME=metadata.name", "POD_NAMESPACE=metadata.namespace",
                     "POD_IP=status.podIP", "SERVICE_ACCOUNT=spec.serviceAccountName",
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

TEST(InjectTest, EveryWorkloadKindHasItsPodFound) {
  constexpr char kPodSpec[] =
      "spec:\n  containers:\n  - name: app\n    image: app:1\n    ports:\n"
      "    - containerPort: 8080\n";
  auto indent = [](const std::string& text, int n) {
    std::string pad(n, ' ');
    return pad + absl::StrReplaceAll(text, {{"\n", "\n" + pad}});
  };
  struct Case {
    std::string kind, api_version, wrapped, field;
  };
  const std::string tmpl = absl::StrCat("metadata:\n  labels: {app: web}\n", kPodSpec);
  for (const Case& c : std::vector<Case>{
           {"Pod", "v1", absl::StrCat("metadata:\n  name: web\n", kPodSpec), ""},
           {"Deployment", "apps/v1",
            absl::StrCat("metadata: {name: web}\nspec:\n  template:\n", indent(tmpl, 4)),
            "spec.template"},
           {"StatefulSet", "apps/v1",
            absl::StrCat("metadata: {name: web}\nspec:\n  template:\n", indent(tmpl, 4)),
            "spec.template"},
           {"DaemonSet", "apps/v1",
            absl::StrCat("metadata: {name: web}\nspec:\n  template:\n", indent(tmpl, 4)),
            "spec.template"},
           {"ReplicaSet", "apps/v1",
            absl::StrCat("metadata: {name: web}\nspec:\n  template:\n", indent(tmpl, 4)),
            "spec.template"},
           {"ReplicationController", "v1",
            absl::StrCat("metadata: {name: web}\nspec:\n  template:\n", indent(tmpl, 4)),
            "spec.template"},
           {"Job", "batch/v1",
            absl::StrCat("metadata: {name: web}\nspec:\n  template:\n", indent(tmpl, 4)),
            "spec.template"},
           {"CronJob", "batch/v1",
            absl::StrCat("metadata: {name: web}\nspec:\n  schedule: \"*/5 * * * *\"\n"
                         "  jobTemplate:\n    spec:\n      template:\n",
                         indent(tmpl, 8)),
            "spec.jobTemplate.spec.template"},
       }) {
    const std::string yaml =
        absl::StrCat("apiVersion: ", c.api_version, "\nkind: ", c.kind, "\n", c.wrapped);
    absl::StatusOr<Result> result = InjectText(yaml);
    ASSERT_TRUE(result.ok()) << c.kind << ": " << result.status() << "\n" << yaml;
    ASSERT_EQ(result->pods.size(), 1u) << c.kind;
    EXPECT_EQ(result->pods[0].field, c.field) << c.kind;
    EXPECT_EQ(result->pods[0].object, absl::StrCat(c.kind, " \"web\"")) << c.kind;
    EXPECT_EQ(result->pods[0].outcome, Outcome::kInjected) << c.kind;
    YAML::Node pod = result->document;
    for (absl::string_view step : absl::StrSplit(c.field, '.', absl::SkipEmpty())) {
      pod.reset(pod[std::string(step)]);
    }
    EXPECT_EQ(Names(pod["spec"]["initContainers"]),
              (std::vector<std::string>{"meshlet-init", "meshlet-proxy"}))
        << c.kind;
    EXPECT_NE(ToYaml(pod["spec"]["initContainers"][1]).find("--node-port=8080"), std::string::npos)
        << c.kind;
    EXPECT_NE(ToYaml(pod["spec"]["initContainers"][1]).find("--node-service=web"),
              std::string::npos)
        << c.kind;
  }
}

TEST(InjectTest, OtherKindsPassThroughUnchanged) {
  for (const char* yaml : {
           "apiVersion: v1\nkind: Service\nmetadata: {name: reviews}\nspec:\n  ports: [{port: "
           "9080}]\n",
           "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: \"1\"}\n",
           // A kind named like a workload in another API group is not one.
           "apiVersion: example.com/v1\nkind: Deployment\nmetadata: {name: d}\nspec: 5\n",
           "apiVersion: v1\nkind: List\nitems: []\n",
       }) {
    const YAML::Node doc = YAML::Load(yaml);
    absl::StatusOr<Result> result = Inject(doc, TestOptions());
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_FALSE(result->changed) << yaml;
    EXPECT_TRUE(result->pods.empty()) << yaml;
    EXPECT_TRUE(result->document.is(doc)) << yaml;
  }
}

TEST(InjectTest, InjectingAnInjectedDocumentChangesNothing) {
  for (SidecarMode mode : {SidecarMode::kNative, SidecarMode::kClassic}) {
    Options options = TestOptions();
    options.mode = mode;
    const YAML::Node once = Injected(kDeployment, options);
    // Through text, as a user would pipe it: the same tree, unchanged.
    const YAML::Node reread = YAML::Load(ToYaml(once));
    absl::StatusOr<Result> twice = Inject(reread, options);
    ASSERT_TRUE(twice.ok()) << twice.status();
    EXPECT_FALSE(twice->changed);
    EXPECT_TRUE(twice->document.is(reread));
    ASSERT_EQ(twice->pods.size(), 1u);
    EXPECT_EQ(twice->pods[0].outcome, Outcome::kUnchanged);
    // And through JSON.
    absl::StatusOr<Result> from_json = Inject(YAML::Load(ToJson(once)), options);
    ASSERT_TRUE(from_json.ok()) << from_json.status();
    EXPECT_FALSE(from_json->changed);
  }
}

TEST(InjectTest, ReinjectingWithOtherOptionsReplacesWhatTheFirstAdded) {
  const YAML::Node native = Injected(kDeployment);
  Options classic = TestOptions();
  classic.mode = SidecarMode::kClassic;
  classic.proxy_image = "registry.example/meshlet-proxy:0.2.0";
  const YAML::Node switched = Injected(ToYaml(native), classic);
  const YAML::Node spec = switched["spec"]["template"]["spec"];
  EXPECT_EQ(Names(spec["initContainers"]), (std::vector<std::string>{"meshlet-init", "migrate"}));
  EXPECT_EQ(Names(spec["containers"]),
            (std::vector<std::string>{"meshlet-proxy", "reviews", "metrics"}));
  EXPECT_EQ(Names(spec["volumes"]),
            (std::vector<std::string>{"cache", "meshlet-trust", "meshlet-token", "meshlet-data"}));
  EXPECT_EQ(spec["containers"][0]["image"].Scalar(), "registry.example/meshlet-proxy:0.2.0");
  // Back to the first options: exactly the first output.
  EXPECT_EQ(ToYaml(Injected(ToYaml(switched))), ToYaml(native));
}

TEST(InjectTest, OptedOutAndHostNetworkPodsAreLeftAlone) {
  struct Case {
    std::string yaml;
    Outcome outcome;
    std::string reason;
  };
  const std::string pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n";
  const std::string spec = "spec:\n  containers: [{name: app, image: app:1}]\n";
  for (const Case& c : std::vector<Case>{
           {pod + "  annotations: {sidecar.meshlet.io/inject: \"false\"}\n" + spec,
            Outcome::kOptedOut, "annotation sidecar.meshlet.io/inject is \"false\""},
           {pod + "  labels: {sidecar.meshlet.io/inject: \"false\"}\n" + spec, Outcome::kOptedOut,
            "label sidecar.meshlet.io/inject is \"false\""},
           // The label decides over the annotation.
           {pod +
                "  labels: {sidecar.meshlet.io/inject: \"false\"}\n"
                "  annotations: {sidecar.meshlet.io/inject: \"true\"}\n" +
                spec,
            Outcome::kOptedOut, "label sidecar.meshlet.io/inject is \"false\""},
           // Read as Kubernetes reads YAML: `yes` is true.
           {pod + spec + "  hostNetwork: yes\n", Outcome::kSkipped,
            "spec.hostNetwork is true: the pod shares the node's network, whose traffic a "
            "sidecar must not capture"},
       }) {
    const YAML::Node doc = YAML::Load(c.yaml);
    absl::StatusOr<Result> result = Inject(doc, TestOptions());
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_FALSE(result->changed) << c.yaml;
    EXPECT_TRUE(result->document.is(doc));
    ASSERT_EQ(result->pods.size(), 1u);
    EXPECT_EQ(result->pods[0].outcome, c.outcome) << c.yaml;
    EXPECT_EQ(result->pods[0].reason, c.reason) << c.yaml;
  }
  // "true" injects; anything but a quoted "true" or "false" is an error.
  EXPECT_TRUE(
      Injected(pod + "  annotations: {sidecar.meshlet.io/inject: \"true\"}\n" + spec)["spec"]);
  EXPECT_EQ(ErrorOf(pod + "  annotations: {sidecar.meshlet.io/inject: false}\n" + spec),
            "5:44: Pod \"p\": metadata.annotations['sidecar.meshlet.io/inject']: must be the "
            "string \"true\" or \"false\" (quoted)");
}

TEST(InjectTest, AnnotationsSetResourcesIdentityCaptureAndProxyFlags) {
  const std::string yaml = R"(apiVersion: v1
kind: Pod
metadata:
  name: ratings-0
  labels: {app.kubernetes.io/name: ratings, app: ignored}
  annotations:
    sidecar.meshlet.io/proxyCPU: 250m
    sidecar.meshlet.io/proxyMemory: 100Mi
    sidecar.meshlet.io/proxyCPULimit: "1"
    sidecar.meshlet.io/proxyMemoryLimit: 1Gi
    sidecar.meshlet.io/identity: join-token
    sidecar.meshlet.io/joinTokenSecret: ratings-join-token
    sidecar.meshlet.io/proxyImage: registry.example/meshlet-proxy:dev
    sidecar.meshlet.io/drainTime: 10s
    sidecar.meshlet.io/logLevel: debug
    traffic.meshlet.io/excludeInboundPorts: "9901, 9902"
    traffic.meshlet.io/includeInboundPorts: "*"
    traffic.meshlet.io/excludeOutboundPorts: "5432"
    traffic.meshlet.io/excludeOutboundIPRanges: 169.254.169.254/32,fd00::/8
    traffic.meshlet.io/includeOutboundIPRanges: 10.0.0.0/8
spec:
  containers:
  - name: ratings
    image: ratings:1
)";
  const YAML::Node out = Injected(yaml);
  const YAML::Node init = out["spec"]["initContainers"][0];
  const YAML::Node proxy = out["spec"]["initContainers"][1];
  for (const YAML::Node& c : {init, proxy}) {
    EXPECT_EQ(c["image"].Scalar(), "registry.example/meshlet-proxy:dev");
    EXPECT_EQ(c["resources"]["requests"]["cpu"].Scalar(), "250m");
    EXPECT_EQ(c["resources"]["requests"]["memory"].Scalar(), "100Mi");
    EXPECT_EQ(c["resources"]["limits"]["cpu"].Scalar(), "1");
    EXPECT_EQ(TypeOf(c["resources"]["limits"]["cpu"]), ScalarType::kString);
    EXPECT_EQ(c["resources"]["limits"]["memory"].Scalar(), "1Gi");
  }
  EXPECT_EQ(Strings(init["args"]),
            (std::vector<std::string>{"init", "--proxy-uid=1337", "--outbound-port=15001",
                                      "--inbound-port=15006", "--exclude-inbound-ports=9901,9902",
                                      "--include-inbound-ports=*", "--exclude-outbound-ports=5432",
                                      "--exclude-outbound-cidrs=169.254.169.254/32,fd00::/8",
                                      "--include-outbound-cidrs=10.0.0.0/8"}));
  const std::vector<std::string> args = Strings(proxy["args"]);
  for (const char* want :
       {"--node-service=ratings", "--node-label=app.kubernetes.io/name=ratings",
        "--node-label=app=ignored", "--join-token-file=/var/run/meshlet/join-token/token",
        "--drain-time=10s", "--log-level=debug"}) {
    EXPECT_NE(std::find(args.begin(), args.end(), want), args.end()) << want;
  }
  EXPECT_EQ(absl::StrJoin(args, " ").find("kubernetes-token-file"), std::string::npos);
  EXPECT_NE(std::find(args.begin(), args.end(), "--capture-check=$(POD_IP):15008"), args.end());
  EXPECT_EQ(args.size(), 20u);  // no --node-port: the app declares none
  const YAML::Node volumes = out["spec"]["volumes"];
  EXPECT_EQ(Names(volumes),
            (std::vector<std::string>{"meshlet-trust", "meshlet-join-token", "meshlet-data"}));
  EXPECT_EQ(volumes[1]["secret"]["secretName"].Scalar(), "ratings-join-token");
  EXPECT_EQ(proxy["volumeMounts"][1]["name"].Scalar(), "meshlet-join-token");
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

TEST(InjectTest, TraceCollectorFollowsTheControlPlaneOrTheOption) {
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
  EXPECT_EQ(collector_args(options), std::vector<std::string>{"--trace-collector=10.0.0.7:4318"});
  options.control_plane_address = "[fd00::7]:15012";
  EXPECT_EQ(collector_args(options), std::vector<std::string>{"--trace-collector=[fd00::7]:4318"});
  options.trace_collector = "otel.observability:4318";
  EXPECT_EQ(collector_args(options),
            std::vector<std::string>{"--trace-collector=otel.observability:4318"});
  options.trace_collector = "off";
  EXPECT_EQ(collector_args(options), std::vector<std::string>{});
  options.trace_collector = "otel";
  EXPECT_FALSE(ValidateOptions(options).ok());
}

// The proxy's arguments of the pod `yaml` (a Pod, native mode) injects into.
std::vector<std::string> ProxyArgs(const std::string& yaml) {
  return Strings(Injected(yaml)["spec"]["initContainers"][1]["args"]);
}

TEST(InjectTest, CaptureCheckPortFollowsTheAnnotationAndTheInboundCapture) {
  const std::string pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n";
  const std::string spec =
      "spec:\n  containers:\n  - name: app\n    image: app:1\n    ports: [{containerPort: "
      "9080}]\n";
  auto check_args = [](const std::vector<std::string>& args) {
    std::vector<std::string> out;
    for (const std::string& a : args) {
      if (absl::StartsWith(a, "--capture-check")) out.push_back(a);
    }
    return out;
  };
  using Args = std::vector<std::string>;
  // Another port by annotation; the default when inbound capture covers it.
  EXPECT_EQ(
      check_args(ProxyArgs(pod + "    sidecar.meshlet.io/captureCheckPort: \"9080\"\n" + spec)),
      Args{"--capture-check=$(POD_IP):9080"});
  EXPECT_EQ(check_args(ProxyArgs(pod + "    traffic.meshlet.io/includeInboundPorts: 9080,15008\n" +
                                 "    traffic.meshlet.io/excludeInboundPorts: \"9090\"\n" + spec)),
            Args{"--capture-check=$(POD_IP):15008"});
  EXPECT_EQ(check_args(ProxyArgs(pod + "    traffic.meshlet.io/includeInboundPorts: \"9080\"\n" +
                                 "    sidecar.meshlet.io/captureCheckPort: \"9080\"\n" + spec)),
            Args{"--capture-check=$(POD_IP):9080"});
  // "off": no check.
  EXPECT_EQ(
      check_args(ProxyArgs(pod + "    sidecar.meshlet.io/captureCheckPort: \"off\"\n" + spec)),
      Args{});

  // A port the rules would not redirect is an error naming the annotation at fault.
  struct Case {
    std::string annotations, error;
  };
  for (const Case& c : std::vector<Case>{
           {"    sidecar.meshlet.io/captureCheckPort: \"no\"\n",
            "6:42: Pod \"p\": metadata.annotations['sidecar.meshlet.io/captureCheckPort']: must be "
            "a port (1-65535) that inbound capture redirects, or \"off\""},
           {"    sidecar.meshlet.io/captureCheckPort: \"70000\"\n",
            "metadata.annotations['sidecar.meshlet.io/captureCheckPort']: must be a port"},
           {"    sidecar.meshlet.io/captureCheckPort: \"15020\"\n",
            "metadata.annotations['sidecar.meshlet.io/captureCheckPort']: 15020 is the sidecar's "
            "(it uses 15000, 15001, 15006, 15020, 15021), never captured inbound; the sidecar "
            "dials it to see that capture is in effect; set sidecar.meshlet.io/captureCheckPort "
            "to a port inbound capture redirects, or \"off\""},
           {"    traffic.meshlet.io/excludeInboundPorts: \"9090,15008\"\n",
            "6:45: Pod \"p\": metadata.annotations['traffic.meshlet.io/excludeInboundPorts']: "
            "excludes port 15008 (the default of sidecar.meshlet.io/captureCheckPort) from "
            "capture; the sidecar dials it to see that capture is in effect; set "
            "sidecar.meshlet.io/captureCheckPort to a port inbound capture redirects, or \"off\""},
           {"    traffic.meshlet.io/excludeInboundPorts: \"9080\"\n"
            "    sidecar.meshlet.io/captureCheckPort: \"9080\"\n",
            "metadata.annotations['traffic.meshlet.io/excludeInboundPorts']: excludes port 9080 "
            "from capture"},
           {"    traffic.meshlet.io/includeInboundPorts: \"9080\"\n",
            "metadata.annotations['traffic.meshlet.io/includeInboundPorts']: does not list port "
            "15008 (the default of sidecar.meshlet.io/captureCheckPort), so it is not captured"},
       }) {
    const std::string error = ErrorOf(pod + c.annotations + spec);
    EXPECT_NE(error.find(c.error), std::string::npos) << "got: " << error << "\nwant: " << c.error;
  }
}

TEST(InjectTest, PodmanOptionAddsTheInitContainerTypeAnnotationAndTakesItBackOut) {
  constexpr char kKey[] = "io.podman.annotations.init.container.type";
  Options podman = TestOptions();
  podman.podman = true;
  const YAML::Node plain = Injected(kDeployment);
  EXPECT_FALSE(plain["spec"]["template"]["metadata"]["annotations"][kKey]);

  const YAML::Node out = Injected(kDeployment, podman);
  const YAML::Node annotations = out["spec"]["template"]["metadata"]["annotations"];
  EXPECT_EQ(annotations[kKey].Scalar(), "always");
  // The short status: podman 4.3 refuses annotation values over 63 characters.
  EXPECT_EQ(annotations["sidecar.meshlet.io/status"].Scalar(),
            R"({"version":"0.1.0","mode":"native","podman":true,"rp":1})");
  for (auto it = annotations.begin(); it != annotations.end(); ++it) {
    EXPECT_LE(it->second.Scalar().size(), 63u) << it->first.Scalar();
  }
  // Injected again with --podman: the same bytes; without: as if never given.
  const std::string text = ToYaml(out);
  absl::StatusOr<Result> again = Inject(YAML::Load(text), podman);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->changed);
  EXPECT_EQ(ToYaml(again->document), text);
  EXPECT_EQ(ToYaml(Injected(text)), ToYaml(plain));
  // The short status names what was added as well for a classic, join-token pod: injected again
  // without --podman it comes out as if injected so the first time.
  Options classic = TestOptions();
  classic.mode = SidecarMode::kClassic;
  classic.identity = Identity::kJoinToken;
  Options classic_podman = classic;
  classic_podman.podman = true;
  const std::string podman_text = ToYaml(Injected(kDeployment, classic_podman));
  EXPECT_EQ(ToYaml(Injected(podman_text, classic)), ToYaml(Injected(kDeployment, classic)));
  absl::StatusOr<Result> same = Inject(YAML::Load(podman_text), classic_podman);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_FALSE(same->changed);

  // The pod's own value is left alone (and kept when injected without --podman), with a warning
  // when it is not "always".
  const std::string own = absl::StrReplaceAll(
      kDeployment, {{"      labels:\n", absl::StrCat("      annotations:\n        ", kKey,
                                                     ": once\n      labels:\n")}});
  absl::StatusOr<Result> kept = InjectText(own, podman);
  ASSERT_TRUE(kept.ok()) << kept.status();
  const YAML::Node kept_pod = kept->document["spec"]["template"];
  EXPECT_EQ(kept_pod["metadata"]["annotations"][kKey].Scalar(), "once");
  EXPECT_EQ(kept_pod["metadata"]["annotations"]["sidecar.meshlet.io/status"].Scalar(),
            R"({"version":"0.1.0","mode":"native","rp":1})");
  ASSERT_EQ(kept->pods.size(), 1u);
  EXPECT_EQ(kept->pods[0].warnings,
            (std::vector<std::string>{
                "the pod's annotation io.podman.annotations.init.container.type is \"once\", not "
                "\"always\": podman with runc may fail removing the finished meshlet-init",
                "podman has no native sidecars: it would run the proxy as an init container that "
                "never finishes, and never start the app; inject with --mode classic",
                "podman mounts no service-account tokens, so the proxy would get no certificate; "
                "inject with --identity join-token"}));
  // Without --podman the pod's own annotation stays; only the status takes its long form.
  absl::StatusOr<Result> without = InjectText(ToYaml(kept->document));
  ASSERT_TRUE(without.ok()) << without.status();
  EXPECT_EQ(without->document["spec"]["template"]["metadata"]["annotations"][kKey].Scalar(),
            "once");
  EXPECT_EQ(ToYaml(without->document), ToYaml(Injected(own)));
}

// The proxy's arguments of an injected pod (native or classic).
std::vector<std::string> ProxyArgs(const YAML::Node& pod) {
  for (const char* list : {"initContainers", "containers"}) {
    for (const YAML::Node& c : pod["spec"][list]) {
      if (c["name"].Scalar() == "meshlet-proxy") return Strings(c["args"]);
    }
  }
  return {};
}

// The values of the proxy's `flag` (e.g. "--node-service=") in an injected pod.
std::vector<std::string> ProxyFlag(const YAML::Node& pod, absl::string_view flag) {
  std::vector<std::string> values;
  for (const std::string& arg : ProxyArgs(pod)) {
    if (absl::StartsWith(arg, flag)) values.push_back(arg.substr(flag.size()));
  }
  return values;
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
        "--capture-check=auto:15008", "--trace-collector=198.18.0.10:4318",
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

TEST(InjectTest, BadInputIsAnErrorNamingTheDocumentFieldAndPosition) {
  config::YamlParseOptions source;
  source.source_name = "shop.yaml";
  source.line_offset = 10;  // the document starts on line 11 of the file
  struct Case {
    std::string from, to, error;
  };
  for (const Case& c : std::vector<Case>{
           {"        - containerPort: 9100", "        - containerPort: http",
            "shop.yaml:45:26: Deployment \"reviews-v1\": "
            "spec.template.spec.containers[1].ports[0].containerPort: must be an integer from 1 "
            "to 65535"},
           {"        - containerPort: 9100", "        - containerPort: 15020",
            "shop.yaml:45:26: Deployment \"reviews-v1\": "
            "spec.template.spec.containers[1].ports[0].containerPort: 15020 is the sidecar's (it "
            "uses 15000, 15001, 15006, 15020, 15021)"},
           {"          protocol: UDP", "          protocol: QUIC",
            "shop.yaml:41:21: Deployment \"reviews-v1\": "
            "spec.template.spec.containers[0].ports[2].protocol: must be TCP, UDP or SCTP"},
           {"      - name: metrics", "      - name: meshlet-proxy",
            "shop.yaml:42:15: Deployment \"reviews-v1\": spec.template.spec.containers[1].name: "
            "\"meshlet-proxy\" is the name of a container injection adds; rename it"},
           {"      - name: cache", "      - name: meshlet-data",
            "shop.yaml:48:15: Deployment \"reviews-v1\": spec.template.spec.volumes[0].name: "
            "\"meshlet-data\" is the name of a volume injection adds; rename it"},
           {"      containers:\n", "      containers: {}\n      x:\n",
            "shop.yaml:30:19: Deployment \"reviews-v1\": spec.template.spec.containers: must be "
            "a non-empty list"},
           {"  template:\n", "  template: []\n  x:\n",
            "shop.yaml:20:13: Deployment \"reviews-v1\": spec.template: must be a map"},
           {"      labels:\n",
            "      annotations:\n        sidecar.meshlet.io/mod: classic\n"
            "      labels:\n",
            "shop.yaml:23:9: Deployment \"reviews-v1\": "
            "spec.template.metadata.annotations['sidecar.meshlet.io/mod']: unknown annotation; "
            "known: sidecar.meshlet.io/inject, sidecar.meshlet.io/status, "},
           {"      labels:\n",
            "      annotations:\n        sidecar.meshlet.io/mode: sidecar\n"
            "      labels:\n",
            "shop.yaml:23:34: Deployment \"reviews-v1\": "
            "spec.template.metadata.annotations['sidecar.meshlet.io/mode']: must be native or "
            "classic"},
           {"      labels:\n",
            "      annotations:\n        sidecar.meshlet.io/proxyMemory: 64MB\n      labels:\n",
            "shop.yaml:23:41: Deployment \"reviews-v1\": "
            "spec.template.metadata.annotations['sidecar.meshlet.io/proxyMemory']: \"64MB\" is "
            "not a quantity"},
           {"      labels:\n",
            "      annotations:\n        sidecar.meshlet.io/proxyCPULimit: 50m\n      labels:\n",
            "spec.template.metadata.annotations['sidecar.meshlet.io/proxyCPULimit']: \"50m\" is "
            "below the request \"100m\"; a limit must be at least the request"},
           {"      labels:\n",
            "      annotations:\n        sidecar.meshlet.io/drainTime: soon\n      labels:\n",
            "['sidecar.meshlet.io/drainTime']: must be a duration such as 30s or 1m30s"},
           {"      labels:\n",
            "      annotations:\n        sidecar.meshlet.io/identity: jwt\n      labels:\n",
            "['sidecar.meshlet.io/identity']: must be kubernetes-token (the default) or "
            "join-token"},
           {"      labels:\n",
            "      annotations:\n        sidecar.meshlet.io/joinTokenSecret: s\n      labels:\n",
            "['sidecar.meshlet.io/joinTokenSecret']: only used with sidecar.meshlet.io/identity: "
            "join-token"},
           {"      labels:\n",
            "      annotations:\n        traffic.meshlet.io/excludeInboundPorts: 80;81\n"
            "      labels:\n",
            "['traffic.meshlet.io/excludeInboundPorts']: \"80;81\" is not a port (1-65535); the "
            "list is comma-separated"},
           {"      labels:\n",
            "      annotations:\n        traffic.meshlet.io/excludeOutboundIPRanges: 10.0.0.1\n"
            "      labels:\n",
            "['traffic.meshlet.io/excludeOutboundIPRanges']: \"10.0.0.1\" is not a CIDR "
            "(10.0.0.0/8, fd00::/8); the list is comma-separated"},
           {"      labels:\n",
            "      annotations:\n        sidecar.meshlet.io/status: injected\n      labels:\n",
            "['sidecar.meshlet.io/status']: not a status written by meshctl inject"},
           {"      labels:\n",
            "      annotations:\n        sidecar.meshlet.io/drainTime: 10\n      labels:\n",
            "['sidecar.meshlet.io/drainTime']: must be a string (annotation values are strings: "
            "quote it)"},
           {"apiVersion: apps/v1\n", "", "Deployment \"reviews-v1\": apiVersion: required"},
       }) {
    const std::string yaml = absl::StrReplaceAll(kDeployment, {{c.from, c.to}});
    ASSERT_NE(yaml, kDeployment) << c.from;
    const std::string error = ErrorOf(yaml, source);
    EXPECT_NE(error.find(c.error), std::string::npos) << "got: " << error << "\nwant: " << c.error;
  }
  EXPECT_EQ(ErrorOf("- a list\n", source),
            "shop.yaml:11:1: (document): not a Kubernetes object "
            "(a map with apiVersion and kind)");
  EXPECT_EQ(ErrorOf("apiVersion: v1\nkind: ConfigMap\ndata:\n  k: \"a\xff\"\n", source),
            "shop.yaml:14:6: data.k: not valid UTF-8");
  EXPECT_EQ(ErrorOf("apiVersion: v1\nmetadata: {}\n", source), "shop.yaml:11:1: kind: required");
  EXPECT_EQ(ErrorOf("apiVersion: v1\nkind: Pod\nmetadata: {}\nspec: {}\n", source),
            "shop.yaml:13:11: Pod \"\": metadata.name: required");
  EXPECT_EQ(ErrorOf("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n", source),
            "shop.yaml:11:1: Pod \"p\": spec: required");
}

TEST(InjectTest, TemplateWithoutMetadataGetsItBeforeSpec) {
  const YAML::Node out = Injected(
      "apiVersion: batch/v1\nkind: Job\nmetadata: {name: once}\nspec:\n  template:\n    spec:\n"
      "      restartPolicy: Never\n      containers: [{name: job, image: job:1}]\n");
  const YAML::Node tmpl = out["spec"]["template"];
  ASSERT_TRUE(tmpl.IsMap());
  EXPECT_EQ(tmpl.begin()->first.Scalar(), "metadata");
  EXPECT_TRUE(tmpl["metadata"]["annotations"]["sidecar.meshlet.io/status"]);
  // The workload's name names the service when no app label does.
  EXPECT_NE(ToYaml(tmpl).find("--node-service=once"), std::string::npos);
}

TEST(InjectTest, ListItemsAreInjectedEach) {
  const std::string list = absl::StrCat(
      "apiVersion: v1\nkind: List\nitems:\n"
      "- apiVersion: v1\n  kind: Service\n  metadata: {name: reviews}\n"
      "- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: skip\n"
      "    annotations: {sidecar.meshlet.io/inject: \"false\"}\n"
      "  spec: {containers: [{name: a, image: a}]}\n"
      "- apiVersion: v1\n  kind: Pod\n  metadata: {name: web}\n"
      "  spec: {containers: [{name: a, image: a}]}\n");
  absl::StatusOr<Result> result = InjectText(list);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->pods.size(), 2u);
  EXPECT_EQ(result->pods[0].field, "items[1]");
  EXPECT_EQ(result->pods[0].outcome, Outcome::kOptedOut);
  EXPECT_EQ(result->pods[1].field, "items[2]");
  EXPECT_EQ(result->pods[1].outcome, Outcome::kInjected);
  const YAML::Node items = result->document["items"];
  EXPECT_TRUE(Equal(items[0], YAML::Load(list)["items"][0]));
  EXPECT_TRUE(Equal(items[1], YAML::Load(list)["items"][1]));
  EXPECT_EQ(Names(items[2]["spec"]["initContainers"]),
            (std::vector<std::string>{"meshlet-init", "meshlet-proxy"}));
  EXPECT_NE(
      ErrorOf("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n"
              "  metadata: {name: web}\n  spec: {containers: [{name: a, image: a, ports: "
              "[{containerPort: 0}]}]}\n")
          .find("7:67: Pod \"web\": items[0].spec.containers[0].ports[0].containerPort: must be "
                "an integer from 1 to 65535"),
      std::string::npos);
}

TEST(InjectWorkloadTest, ACronJobsPodIsNamedAfterTheCronJob) {
  // A pod as the Job of a CronJob's run creates it: the service is the CronJob's, as meshctl
  // inject of the CronJob itself names it, not the run's (a new name every run).
  constexpr char kRunPod[] = R"(apiVersion: v1
kind: Pod
metadata:
  generateName: nightly-report-29403540-
  namespace: shop
  labels:
    batch.kubernetes.io/job-name: nightly-report-29403540
    job-name: nightly-report-29403540
  ownerReferences:
  - apiVersion: batch/v1
    kind: Job
    name: nightly-report-29403540
    uid: 0b6bd2e0-2f3c-4b5e-9a51-0f4a3f8e5b71
    controller: true
    blockOwnerDeletion: true
spec:
  restartPolicy: Never
  containers:
  - name: report
    image: report:1
)";
  const YAML::Node pod = Injected(kRunPod);
  EXPECT_EQ(ProxyFlag(pod, "--node-service="), std::vector<std::string>{"nightly-report"});
  const YAML::Node cronjob = Injected(R"(apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly-report, namespace: shop}
spec:
  schedule: "0 1 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: report, image: report:1}]
)");
  EXPECT_EQ(ProxyFlag(cronjob["spec"]["jobTemplate"]["spec"]["template"], "--node-service="),
            std::vector<std::string>{"nightly-report"});
  // A Deployment's pod without app labels: the Deployment's name, not the ReplicaSet's.
  const YAML::Node orders = Injected(R"(apiVersion: v1
kind: Pod
metadata:
  generateName: orders-5c8d7f9b6-
  labels: {pod-template-hash: 5c8d7f9b6}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: orders-5c8d7f9b6, uid: u, controller: true}]
spec: {containers: [{name: orders, image: orders:1}]}
)");
  EXPECT_EQ(ProxyFlag(orders, "--node-service="), std::vector<std::string>{"orders"});
}

TEST(InjectWorkloadTest, TheVersionReachesTheNodeLabelVersion) {
  constexpr char kPod[] =
      "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-0\n  labels: {%s}\n"
      "spec: {containers: [{name: web, image: web:1}]}\n";
  auto versions = [&](const std::string& labels, std::vector<std::string>* warnings = nullptr) {
    absl::StatusOr<Result> result =
        InjectText(absl::StrReplaceAll(kPod, {{"%s", labels}}), TestOptions());
    EXPECT_TRUE(result.ok()) << result.status();
    if (!result.ok()) return std::vector<std::string>{};
    if (warnings != nullptr) *warnings = result->pods[0].warnings;
    std::vector<std::string> out;
    for (const std::string& label : ProxyFlag(result->document, "--node-label=")) {
      if (absl::StartsWith(label, "version=")) out.push_back(label.substr(8));
    }
    return out;
  };
  // The recommended label alone: added as the node label the control plane reads.
  EXPECT_EQ(versions("app: web, app.kubernetes.io/version: 1.4.2"),
            std::vector<std::string>{"1.4.2"});
  EXPECT_EQ(versions("app: web, version: v1"), std::vector<std::string>{"v1"});
  EXPECT_EQ(versions("app: web"), std::vector<std::string>{});
  // Both, differing: the recommended label wins, with a warning.
  std::vector<std::string> warnings;
  EXPECT_EQ(versions("app: web, version: v1, app.kubernetes.io/version: 1.4.2", &warnings),
            std::vector<std::string>{"1.4.2"});
  EXPECT_EQ(warnings,
            std::vector<std::string>{
                "the labels app.kubernetes.io/version \"1.4.2\" and version \"v1\" differ: the "
                "proxy registers version=1.4.2, which HTTPRoute subsets select on"});
  EXPECT_EQ(versions("app: web, version: v1, app.kubernetes.io/version: v1", &warnings),
            std::vector<std::string>{"v1"});
  EXPECT_TRUE(warnings.empty());
}

TEST(InjectWorkloadTest, MalformedOwnerReferencesAreErrorsNamingTheField) {
  struct Case {
    std::string references, error;
  };
  for (const Case& c : std::vector<Case>{
           {"5", "4:20: Pod \"p\": metadata.ownerReferences: must be a list"},
           {"[5]", "4:21: Pod \"p\": metadata.ownerReferences[0]: must be a map"},
           {"[{name: j}]", "4:21: Pod \"p\": metadata.ownerReferences[0].kind: required"},
           {"[{kind: Job, name: ''}]",
            "4:39: Pod \"p\": metadata.ownerReferences[0].name: must be a non-empty string"},
           {"[{kind: Job, name: j, controller: 'yes'}]",
            "4:54: Pod \"p\": metadata.ownerReferences[0].controller: must be true or false"},
       }) {
    EXPECT_EQ(ErrorOf(absl::StrCat(
                  "apiVersion: v1\nkind: Pod\nmetadata:\n  ownerReferences: ", c.references,
                  "\n  name: p\nspec: {containers: [{name: a, image: a}]}\n")),
              c.error)
        << c.references;
  }
  // A workload's own references, in a List.
  EXPECT_EQ(ErrorOf("apiVersion: v1\nkind: List\nitems:\n- apiVersion: batch/v1\n  kind: Job\n"
                    "  metadata: {name: j, ownerReferences: [{kind: CronJob}]}\n"
                    "  spec: {template: {spec: {containers: [{name: a, image: a}]}}}\n"),
            "6:41: Job \"j\": items[0].metadata.ownerReferences[0].name: required");
}

TEST(InjectTest, AdmissionReviewJsonPodInjectsAndWritesBackAsJson) {
  // What the webhook will do: the Pod of an AdmissionReview, as JSON.
  const std::string json = R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-5d9",
    "namespace":"shop","labels":{"app":"web","tier":"1"},"annotations":{"team":"x"}},
    "spec":{"containers":[{"name":"web","image":"web:1","ports":[{"containerPort":8080}]}]}})";
  absl::StatusOr<Result> result = InjectText(json);
  ASSERT_TRUE(result.ok()) << result.status();
  const std::string out = ToJson(result->document);
  EXPECT_NE(out.find("\"runAsUser\": 1337"), std::string::npos) << out;
  EXPECT_NE(out.find("\"readOnly\": true"), std::string::npos) << out;
  EXPECT_NE(out.find("\"--node-label=tier=1\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"tier\": \"1\""), std::string::npos) << out;  // still a string
  EXPECT_NE(out.find("\"sidecar.meshlet.io/status\": \"{\\\"version\\\":\\\"0.1.0\\\""),
            std::string::npos)
      << out;
  // Errors point into the JSON text too.
  EXPECT_EQ(ErrorOf(R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},
"spec":{"containers":[{"name":"a","image":"a","ports":[{"containerPort":"80"}]}]}})"),
            "2:73: Pod \"p\": spec.containers[0].ports[0].containerPort: must be an integer from "
            "1 to 65535");
}

TEST(InjectTest, WarningsForWhatWorksDifferentlyThanExpected) {
  Options classic = TestOptions();
  classic.mode = SidecarMode::kClassic;
  absl::StatusOr<Result> job = InjectText(
      "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  template:\n    metadata:\n"
      "      annotations: {sidecar.meshlet.io/drainTime: 45s}\n    spec:\n"
      "      securityContext: {runAsUser: 1337}\n"
      "      containers: [{name: a, image: a, securityContext: {runAsUser: 1337}}]\n",
      classic);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->pods[0].warnings,
            (std::vector<std::string>{
                "container \"a\" runs as UID 1337, the proxy's: its traffic bypasses the sidecar",
                "the pod runs as UID 1337, the proxy's: its containers' traffic bypasses the "
                "sidecar unless they set another runAsUser",
                "a classic sidecar keeps running after the job's containers finish, so the pod "
                "never completes; native mode (the default) stops it with them",
                "sidecar.meshlet.io/drainTime 45s is longer than the pod's "
                "terminationGracePeriodSeconds (30): the kubelet kills the proxy first"}));
  absl::StatusOr<Result> quiet = InjectText(kDeployment);
  ASSERT_TRUE(quiet.ok());
  EXPECT_TRUE(quiet->pods[0].warnings.empty());
}

TEST(InjectTest, EveryInjectedPodPassesTheApiChecks) {
  // Inject runs CheckPod itself and fails on a problem; check the output again independently
  // for every combination of mode and identity.
  for (const char* annotations :
       {"{}", "{sidecar.meshlet.io/mode: classic}",
        "{sidecar.meshlet.io/identity: join-token, sidecar.meshlet.io/joinTokenSecret: t}",
        "{sidecar.meshlet.io/mode: classic, sidecar.meshlet.io/identity: join-token, "
        "sidecar.meshlet.io/joinTokenSecret: t, sidecar.meshlet.io/proxyMemoryLimit: 1Gi}"}) {
    const YAML::Node out = Injected(absl::StrReplaceAll(
        kDeployment, {{"      labels:\n",
                       absl::StrCat("      annotations: ", annotations, "\n      labels:\n")}}));
    const YAML::Node pod = out["spec"]["template"];
    const std::vector<PodProblem> problems =
        CheckPod(pod["metadata"], pod["spec"], "",
                 {"meshlet-init", "meshlet-proxy", "meshlet-trust", "meshlet-token",
                  "meshlet-join-token", "meshlet-data"});
    EXPECT_TRUE(problems.empty()) << annotations << ": " << problems[0].field << ": "
                                  << problems[0].message;
  }
}

TEST(InjectTest, OptionsAreValidated) {
  EXPECT_TRUE(ValidateOptions(TestOptions()).ok());
  Options o = TestOptions();
  o.control_plane_address = "cp.example";
  EXPECT_EQ(ValidateOptions(o).message(), "control plane \"cp.example\": must be HOST:PORT");
  o = TestOptions();
  o.trust_domain = "Example.COM";
  EXPECT_NE(ValidateOptions(o).message().find("trust domain \"Example.COM\""), std::string::npos);
  o = TestOptions();
  o.proxy_image = "";
  EXPECT_FALSE(ValidateOptions(o).ok());
  EXPECT_EQ(ParseSidecarMode("classic").value(), SidecarMode::kClassic);
  EXPECT_FALSE(ParseSidecarMode("Native").ok());
}

}  // namespace
}  // namespace meshlet::controlplane::inject

namespace meshlet::controlplane::inject {
namespace {

constexpr char kProbedPod[] = R"(apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    image: web:1
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {httpGet: {path: "/ready?cost=$5", port: 8080}, periodSeconds: 3}
    livenessProbe: {httpGet: {port: http}}
    startupProbe: {tcpSocket: {port: 8080}}
  - name: side
    image: side:1
    livenessProbe: {httpGet: {path: /h, port: 9090, httpHeaders: [{name: X, value: y}]}}
)";

TEST(InjectProbesTest, HttpProbesGoThroughTheProxyAndComeBackOnReinjection) {
  absl::StatusOr<Result> result = InjectText(kProbedPod);
  ASSERT_TRUE(result.ok()) << result.status();
  const YAML::Node pod = result->document;
  const YAML::Node web = pod["spec"]["containers"][0];
  EXPECT_EQ(web["readinessProbe"]["httpGet"]["port"].Scalar(), "15020");
  EXPECT_EQ(web["readinessProbe"]["httpGet"]["path"].Scalar(), "/app-health/web/readyz");
  EXPECT_EQ(web["readinessProbe"]["periodSeconds"].Scalar(), "3");
  EXPECT_EQ(web["livenessProbe"]["httpGet"]["path"].Scalar(), "/app-health/web/livez");
  EXPECT_EQ(web["startupProbe"]["tcpSocket"]["port"].Scalar(), "8080");  // not HTTP: as it was
  // A probe with headers stays, with a warning.
  EXPECT_EQ(pod["spec"]["containers"][1]["livenessProbe"]["httpGet"]["port"].Scalar(), "9090");
  ASSERT_EQ(result->pods.size(), 1u);
  bool warned = false;
  for (const std::string& w : result->pods[0].warnings) {
    warned = warned || w.find("container \"side\" livenessProbe") != std::string::npos;
  }
  EXPECT_TRUE(warned);
  const std::vector<std::string> args = ProxyArgs(pod);
  EXPECT_NE(
      std::find(args.begin(), args.end(), "--app-probe=/app-health/web/readyz=8080/ready?cost=$$5"),
      args.end());
  EXPECT_NE(std::find(args.begin(), args.end(), "--app-probe=/app-health/web/livez=8080/"),
            args.end());

  // Injecting the injected pod changes nothing: the probes are recognised and kept.
  absl::StatusOr<Result> again = Inject(YAML::Clone(pod), TestOptions());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->changed);
  EXPECT_EQ(ToYaml(again->document), ToYaml(pod));

  // Opting out of the rewrite afterwards puts them back as the app wrote them.
  YAML::Node opted = YAML::Clone(pod);
  opted["metadata"]["annotations"][kRewriteProbesAnnotation] = StringNode("false");
  absl::StatusOr<Result> restored = Inject(opted, TestOptions());
  ASSERT_TRUE(restored.ok()) << restored.status();
  const YAML::Node back = restored->document["spec"]["containers"][0];
  EXPECT_EQ(back["readinessProbe"]["httpGet"]["port"].Scalar(), "8080");
  EXPECT_EQ(back["readinessProbe"]["httpGet"]["path"].Scalar(), "/ready?cost=$5");
  for (const std::string& a : ProxyArgs(restored->document)) {
    EXPECT_EQ(a.find("--app-probe"), std::string::npos) << a;
  }
}

TEST(InjectProbesTest, AProbeOnAnUnknownPortNameIsAnError) {
  EXPECT_NE(ErrorOf("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
                    "  - name: a\n    image: a\n    readinessProbe: {httpGet: {port: web}}\n")
                .find("spec.containers[0].readinessProbe.httpGet.port: must be a port number or "
                      "the name of one of the container's ports"),
            std::string::npos);
  EXPECT_NE(ErrorOf("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n"
                    "    sidecar.meshlet.io/rewriteAppProbes: \"maybe\"\nspec:\n  containers:\n"
                    "  - {name: a, image: a}\n")
                .find("sidecar.meshlet.io/rewriteAppProbes']: must be \"true\" or \"false\""),
            std::string::npos);
}

}  // namespace
}  // namespace meshlet::controlplane::inject

// Injection of whole documents (inject.cc): which kinds hold pods, Lists, pass-through,
// idempotence, errors naming document, field and position, JSON admission requests, the API
// checks of every injected pod, and the options' own checks.

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

TEST(InjectTest, CniModeAddsNoContainerWithCapabilitiesAndMarksThePod) {
  Options cni = TestOptions();
  cni.cni = true;
  const YAML::Node injected = Injected(kDeployment, cni);
  const YAML::Node spec = injected["spec"]["template"]["spec"];
  // The native proxy and the app's own init container; no meshlet-init.
  EXPECT_EQ(Names(spec["initContainers"]), (std::vector<std::string>{"meshlet-proxy", "migrate"}));
  const YAML::Node security = spec["initContainers"][0]["securityContext"];
  EXPECT_EQ(security["seccompProfile"]["type"].Scalar(), "RuntimeDefault");
  EXPECT_EQ(security["runAsNonRoot"].Scalar(), "true");
  EXPECT_EQ(security["allowPrivilegeEscalation"].Scalar(), "false");
  EXPECT_EQ(security["readOnlyRootFilesystem"].Scalar(), "true");
  EXPECT_FALSE(security["capabilities"]["add"]);
  // The proxy still checks that its traffic is captured: a pod whose sandbox was set up without
  // meshlet-cni in the chain stays not ready (and the node agent's repair finds it by that).
  bool capture_check = false;
  for (const YAML::Node& arg : spec["initContainers"][0]["args"]) {
    if (arg.Scalar() == "--capture-check=$(POD_IP):15008") capture_check = true;
  }
  EXPECT_TRUE(capture_check);
  const std::string status =
      injected["spec"]["template"]["metadata"]["annotations"]["sidecar.meshlet.io/status"].Scalar();
  EXPECT_NE(status.find("\"capture\":\"cni\",\"initContainers\":[\"meshlet-proxy\"]"),
            std::string::npos)
      << status;
  // Injected again in CNI mode: unchanged; in the default mode: meshlet-init comes back and the
  // mark goes.
  absl::StatusOr<Result> twice = Inject(YAML::Load(ToYaml(injected)), cni);
  ASSERT_TRUE(twice.ok()) << twice.status();
  EXPECT_EQ(twice->pods[0].outcome, Outcome::kUnchanged);
  EXPECT_EQ(ToYaml(Injected(ToYaml(injected))), ToYaml(Injected(kDeployment)));
  // For podman too (its CNI backend, with the plugin's defaultNamespace): no meshlet-init.
  cni.podman = true;
  cni.mode = SidecarMode::kClassic;
  EXPECT_TRUE(ValidateOptions(cni).ok()) << ValidateOptions(cni);
  const YAML::Node for_podman = Injected(kDeployment, cni)["spec"]["template"]["spec"];
  EXPECT_EQ(Names(for_podman["initContainers"]), (std::vector<std::string>{"migrate"}));
  EXPECT_EQ(Names(for_podman["containers"]),
            (std::vector<std::string>{"meshlet-proxy", "reviews", "metrics"}));
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

// The pod annotations (annotations.cc): resources, identity, capture lists and proxy flags, the
// capture check port, and the podman init-container-type annotation taken back out.

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
  EXPECT_EQ(args.size(), 21u);  // no --node-port: the app declares none
  const YAML::Node volumes = out["spec"]["volumes"];
  EXPECT_EQ(Names(volumes),
            (std::vector<std::string>{"meshlet-trust", "meshlet-join-token", "meshlet-data"}));
  EXPECT_EQ(volumes[1]["secret"]["secretName"].Scalar(), "ratings-join-token");
  EXPECT_EQ(proxy["volumeMounts"][1]["name"].Scalar(), "meshlet-join-token");
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
  // In CNI mode, the short status carries the plugin's mark, within 63 characters, and
  // re-injection knows what it added.
  Options cni_podman = classic_podman;
  cni_podman.cni = true;
  const std::string cni_text = ToYaml(Injected(kDeployment, cni_podman));
  const std::string cni_status =
      YAML::Load(
          cni_text)["spec"]["template"]["metadata"]["annotations"]["sidecar.meshlet.io/status"]
          .Scalar();
  EXPECT_EQ(cni_status, R"({"version":"0.1.0","mode":"classic","rp":1,"capture":"cni"})");
  EXPECT_LE(cni_status.size(), 63u);
  absl::StatusOr<Result> cni_again = Inject(YAML::Load(cni_text), cni_podman);
  ASSERT_TRUE(cni_again.ok()) << cni_again.status();
  EXPECT_FALSE(cni_again->changed) << ToYaml(cni_again->document);
  Options cni_only = classic;
  cni_only.cni = true;
  EXPECT_EQ(ToYaml(Injected(cni_text, cni_only)), ToYaml(Injected(kDeployment, cni_only)));
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

}  // namespace
}  // namespace meshlet::controlplane::inject

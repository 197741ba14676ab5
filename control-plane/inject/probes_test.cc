// The app's HTTP probes through the proxy (probes.cc), restored on re-injection.

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

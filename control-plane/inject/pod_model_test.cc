// The pod model (pod_model.cc): opted-out and host-network pods, the workload's service and
// version, owner references, and the warnings about what works differently than expected.

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

}  // namespace
}  // namespace meshlet::controlplane::inject

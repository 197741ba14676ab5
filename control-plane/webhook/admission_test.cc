#include "control-plane/webhook/admission.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "control-plane/inject/node.h"
#include "control-plane/inject/revision.h"

namespace meshlet::controlplane::webhook {
namespace {

using inject::Field;
using inject::Text;
using Verdict = ReviewResult::Verdict;

constexpr char kPod[] =
    R"({"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"web-5d9-","namespace":"shop",)"
    R"("labels":{"app":"web"}},"spec":{"serviceAccountName":"web","containers":[{"name":"web",)"
    R"("image":"web:1","ports":[{"containerPort":8080}]}]}})";

ReviewOptions TestOptions() {
  ReviewOptions options;
  options.inject.proxy_image = "meshlet-proxy:0.1.0";
  options.inject.version = "0.1.0";
  return options;
}

// The options of revision `revision`'s webhook, as its control plane sets them.
ReviewOptions RevisionWebhookOptions(const std::string& revision) {
  ReviewOptions options = TestOptions();
  options.inject.revision = revision;
  options.inject.control_plane_address =
      inject::ControlPlaneDiscoveryAddress(revision, "meshlet-system");
  options.inject.control_plane_service_account = inject::ControlPlaneName(revision);
  options.inject.own_revision_only = true;
  return options;
}

std::string ReviewJson(const std::string& object, const std::string& ns = "shop",
                       const std::string& operation = "CREATE", const std::string& extra = "") {
  return absl::StrCat(
      R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{)",
      R"("uid":"705ab4f5-6393-11e8-b7cc-42010a800002","kind":{"group":"","version":"v1",)",
      R"("kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},)",
      R"("namespace":")", ns, R"(","operation":")", operation, R"(","userInfo":{"username":"x"},)",
      R"("object":)", object, extra, "}}");
}

// The response object of an answer.
YAML::Node ResponseOf(const ReviewResult& result) {
  const YAML::Node review = YAML::Load(result.body);
  EXPECT_EQ(Text(Field(review, "apiVersion")), "admission.k8s.io/v1");
  EXPECT_EQ(Text(Field(review, "kind")), "AdmissionReview");
  return Field(review, "response");
}

// The one warning of an answer that allows the object unchanged ("" and a test failure when
// the answer is anything else).
std::string WarningOfUnchanged(const ReviewResult& result) {
  EXPECT_EQ(result.verdict, Verdict::kUntouched) << result.reason;
  const YAML::Node response = ResponseOf(result);
  EXPECT_EQ(Text(Field(response, "allowed")), "true");
  EXPECT_FALSE(Field(response, "patch").IsDefined()) << result.body;
  const YAML::Node warnings = Field(response, "warnings");
  if (!warnings.IsSequence() || warnings.size() != 1) {
    ADD_FAILURE() << "not one warning: " << result.body;
    return "";
  }
  // Kubernetes shows warnings of up to 256 characters whole.
  EXPECT_LE(Text(warnings[0]).size(), 256u);
  return Text(warnings[0]);
}

TEST(AdmissionTest, APodIsInjectedWithAJsonPatch) {
  const ReviewResult result = Review(ReviewJson(kPod), TestOptions());
  ASSERT_EQ(result.verdict, Verdict::kInjected) << result.reason;
  EXPECT_EQ(result.reason, "Pod \"shop/web-5d9-*\" injected");
  const YAML::Node response = ResponseOf(result);
  EXPECT_EQ(Text(Field(response, "uid")), "705ab4f5-6393-11e8-b7cc-42010a800002");
  EXPECT_EQ(Text(Field(response, "allowed")), "true");
  EXPECT_EQ(Text(Field(response, "patchType")), "JSONPatch");
  std::string patch;
  ASSERT_TRUE(absl::Base64Unescape(Text(Field(response, "patch")), &patch));
  const YAML::Node ops = YAML::Load(patch);
  ASSERT_TRUE(ops.IsSequence());
  std::string paths;
  for (const YAML::Node& op : ops)
    absl::StrAppend(&paths, Text(op["op"]), " ", Text(op["path"]), ";");
  // The init containers and volumes are new; the app's container list gains the sidecar's
  // neighbours only in classic mode, so here it is untouched; the status annotation is added.
  EXPECT_NE(paths.find("add /spec/initContainers;"), std::string::npos) << paths;
  EXPECT_NE(paths.find("add /spec/volumes;"), std::string::npos) << paths;
  EXPECT_NE(paths.find("add /metadata/annotations;"), std::string::npos) << paths;
  EXPECT_EQ(paths.find("/spec/containers"), std::string::npos) << paths;
}

TEST(AdmissionTest, ClassicModeAndAnInjectedPodAreLeftAlone) {
  ReviewOptions options = TestOptions();
  options.inject.mode = inject::SidecarMode::kClassic;
  const ReviewResult first = Review(ReviewJson(kPod), options);
  ASSERT_EQ(first.verdict, Verdict::kInjected) << first.reason;
  std::string patch;
  ASSERT_TRUE(absl::Base64Unescape(Text(Field(ResponseOf(first), "patch")), &patch));
  EXPECT_NE(patch.find("\"path\":\"/spec/containers\""), std::string::npos) << patch;

  // The pod as injection left it: a second review changes nothing.
  absl::StatusOr<inject::Result> injected = inject::Inject(YAML::Load(kPod), options.inject);
  ASSERT_TRUE(injected.ok()) << injected.status();
  const ReviewResult second =
      Review(ReviewJson(inject::ToCompactJson(injected->document)), options);
  EXPECT_EQ(second.verdict, Verdict::kUntouched) << second.reason;
  const YAML::Node response = ResponseOf(second);
  EXPECT_EQ(Text(Field(response, "allowed")), "true");
  EXPECT_FALSE(Field(response, "patch").IsDefined());
}

TEST(AdmissionTest, ATemplateOfAWorkloadIsInjected) {
  const std::string job =
      R"({"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"nightly"},"spec":{)"
      R"("schedule":"0 1 * * *","jobTemplate":{"spec":{"template":{"spec":{)"
      R"("restartPolicy":"Never","containers":[{"name":"job","image":"job:1"}]}}}}}})";
  const ReviewResult result = Review(ReviewJson(job), TestOptions());
  ASSERT_EQ(result.verdict, Verdict::kInjected) << result.reason;
  std::string patch;
  ASSERT_TRUE(absl::Base64Unescape(Text(Field(ResponseOf(result), "patch")), &patch));
  EXPECT_NE(patch.find("/spec/jobTemplate/spec/template/spec/initContainers"), std::string::npos)
      << patch;
}

// A controller object (the template's metadata written in as `%s`) and its pod template's path.
struct Controller {
  std::string kind;
  std::string yaml;
  std::vector<std::string> template_path;
};

// The pod `controller` (a Deployment, StatefulSet, DaemonSet, Job or CronJob) would create from
// its template, as the API server hands it to the webhook: the template's metadata and spec with
// the name, labels and owner reference its controller gives it (a Deployment's through a
// ReplicaSet, a CronJob's through a Job of one run).
YAML::Node PodOf(const YAML::Node& object, const std::vector<std::string>& template_path) {
  const std::string kind = object["kind"].Scalar();
  const std::string name = object["metadata"]["name"].Scalar();
  YAML::Node tmpl = object;
  for (const std::string& step : template_path) tmpl.reset(tmpl[step]);
  YAML::Node pod = YAML::Load("{apiVersion: v1, kind: Pod}");
  YAML::Node metadata = tmpl["metadata"] ? YAML::Clone(tmpl["metadata"]) : YAML::Load("{}");
  YAML::Node labels = metadata["labels"] ? metadata["labels"] : YAML::Node(YAML::NodeType::Map);
  std::string owner_kind = kind, owner_name = name;
  if (kind == "Deployment") {
    owner_kind = "ReplicaSet";
    owner_name = name + "-5c8d7f9b6";
    labels["pod-template-hash"] = "5c8d7f9b6";
    metadata["generateName"] = owner_name + "-";
  } else if (kind == "StatefulSet") {
    metadata["name"] = name + "-0";
    labels["controller-revision-hash"] = name + "-7d4f8c6b9";
    labels["statefulset.kubernetes.io/pod-name"] = name + "-0";
  } else if (kind == "DaemonSet") {
    labels["controller-revision-hash"] = "6f7d9c8b5";
    labels["pod-template-generation"] = inject::StringNode("1");
    metadata["generateName"] = name + "-";
  } else if (kind == "CronJob") {
    owner_kind = "Job";
    owner_name = name + "-29403540";  // the run scheduled at minute 29403540 since 1970
    metadata["generateName"] = owner_name + "-";
  }
  if (owner_kind == "Job") {
    labels["batch.kubernetes.io/job-name"] = owner_name;
    labels["job-name"] = owner_name;
    labels["controller-uid"] = "0b6bd2e0-2f3c-4b5e-9a51-0f4a3f8e5b71";
    metadata["generateName"] = owner_name + "-";
  }
  metadata["namespace"] = "shop";
  metadata["labels"] = labels;
  YAML::Node owner = YAML::Load(
      "{apiVersion: apps/v1, uid: 0b6bd2e0-2f3c-4b5e-9a51-0f4a3f8e5b72, controller: true, "
      "blockOwnerDeletion: true}");
  if (owner_kind == "Job") owner["apiVersion"] = "batch/v1";
  owner["kind"] = owner_kind;
  owner["name"] = owner_name;
  metadata["ownerReferences"].push_back(owner);
  pod["metadata"] = metadata;
  pod["spec"] = YAML::Clone(tmpl["spec"]);
  return pod;
}

// Every string in `node` that starts with `prefix`, without it.
void Collect(const YAML::Node& node, const std::string& prefix, std::vector<std::string>& out) {
  if (node.IsScalar()) {
    if (absl::StartsWith(node.Scalar(), prefix)) out.push_back(node.Scalar().substr(prefix.size()));
  } else if (node.IsMap()) {
    for (auto it = node.begin(); it != node.end(); ++it) Collect(it->second, prefix, out);
  } else if (node.IsSequence()) {
    for (const YAML::Node& n : node) Collect(n, prefix, out);
  }
}

// The proxy's service and version in `node` (an injected object, or a patch).
std::string ServiceAndVersion(const YAML::Node& node) {
  std::vector<std::string> service, version;
  Collect(node, "--node-service=", service);
  Collect(node, "--node-label=version=", version);
  return absl::StrCat(absl::StrJoin(service, ","), " ", absl::StrJoin(version, ","));
}

TEST(AdmissionTest, AControllersPodsGetTheNameMeshctlInjectGivesTheController) {
  constexpr char kSpec[] = "spec: {containers: [{name: app, image: app:1}]}";
  constexpr char kJobSpec[] =
      "spec: {restartPolicy: Never, containers: [{name: app, image: app:1}]}";
  auto workload = [&](const std::string& kind, const std::string& api_version,
                      const std::string& name, const std::string& metadata) {
    const std::string tmpl = absl::StrCat(
        "{metadata: ", metadata, ", ", kind == "Job" || kind == "CronJob" ? kJobSpec : kSpec, "}");
    std::string spec = absl::StrCat("{template: ", tmpl, "}");
    std::vector<std::string> path = {"spec", "template"};
    if (kind == "CronJob") {
      spec = absl::StrCat("{schedule: '0 1 * * *', jobTemplate: {spec: {template: ", tmpl, "}}}");
      path = {"spec", "jobTemplate", "spec", "template"};
    } else if (kind == "StatefulSet") {
      spec = absl::StrCat("{serviceName: ", name, ", template: ", tmpl, "}");
    }
    return Controller{
        kind,
        absl::StrCat("{apiVersion: ", api_version, ", kind: ", kind, ", metadata: {name: ", name,
                     ", namespace: shop}, spec: ", spec, "}"),
        path};
  };
  struct Case {
    Controller controller;
    std::string expected;  // "service version"
  };
  const std::vector<Case> cases = {
      // No app labels: the controller's name, however its pods are named.
      {workload("Deployment", "apps/v1", "orders", "{labels: {tier: backend}}"), "orders "},
      {workload("CronJob", "batch/v1", "nightly-report", "{}"), "nightly-report "},
      {workload("StatefulSet", "apps/v1", "db", "{labels: {tier: data}}"), "db "},
      {workload("DaemonSet", "apps/v1", "node-agent", "{}"), "node-agent "},
      {workload("Job", "batch/v1", "migrate", "{}"), "migrate "},
      // Labels name it, and give its version, the same way on both paths.
      {workload("Deployment", "apps/v1", "orders-v2",
                "{labels: {app.kubernetes.io/name: orders, app.kubernetes.io/version: 2.1.0}}"),
       "orders 2.1.0"},
      {workload("CronJob", "batch/v1", "nightly-report", "{labels: {app: reports, version: v3}}"),
       "reports v3"},
  };
  const ReviewOptions options = TestOptions();
  for (const Case& c : cases) {
    SCOPED_TRACE(c.controller.yaml);
    // meshctl inject's path: the controller object.
    absl::StatusOr<inject::Result> injected =
        inject::Inject(YAML::Load(c.controller.yaml), options.inject);
    ASSERT_TRUE(injected.ok()) << injected.status();
    EXPECT_EQ(ServiceAndVersion(injected->document), c.expected);
    // The webhook's path: the pod that controller creates, in an AdmissionReview.
    const YAML::Node pod = PodOf(YAML::Load(c.controller.yaml), c.controller.template_path);
    const ReviewResult result = Review(ReviewJson(inject::ToCompactJson(pod)), options);
    ASSERT_EQ(result.verdict, Verdict::kInjected) << result.reason;
    std::string patch;
    ASSERT_TRUE(absl::Base64Unescape(Text(Field(ResponseOf(result), "patch")), &patch));
    EXPECT_EQ(ServiceAndVersion(YAML::Load(patch)), c.expected) << inject::ToJson(pod);
  }
  // A bare pod, named by itself on both paths (by generateName when it has no name).
  for (const std::string pod :
       {R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"solo","namespace":"shop"},)"
        R"("spec":{"containers":[{"name":"app","image":"app:1"}]}})",
        R"({"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"solo-","namespace":)"
        R"("shop"},"spec":{"containers":[{"name":"app","image":"app:1"}]}})"}) {
    absl::StatusOr<inject::Result> injected = inject::Inject(YAML::Load(pod), options.inject);
    ASSERT_TRUE(injected.ok()) << injected.status();
    EXPECT_EQ(ServiceAndVersion(injected->document), "solo ");
    const ReviewResult result = Review(ReviewJson(pod), options);
    ASSERT_EQ(result.verdict, Verdict::kInjected) << result.reason;
    std::string patch;
    ASSERT_TRUE(absl::Base64Unescape(Text(Field(ResponseOf(result), "patch")), &patch));
    EXPECT_EQ(ServiceAndVersion(YAML::Load(patch)), "solo ");
  }
}

TEST(AdmissionTest, WhatIsNeverTouched) {
  const ReviewOptions options = TestOptions();
  for (const std::string ns : {"kube-system", "meshlet-system"}) {
    const ReviewResult result = Review(ReviewJson(kPod, ns), options);
    EXPECT_EQ(result.verdict, Verdict::kUntouched);
    EXPECT_EQ(result.reason, "namespace " + ns + " is never injected");
    EXPECT_FALSE(Field(ResponseOf(result), "patch").IsDefined());
  }
  const ReviewResult update = Review(ReviewJson(kPod, "shop", "UPDATE"), options);
  EXPECT_EQ(update.verdict, Verdict::kUntouched);
  EXPECT_EQ(update.reason, "operation UPDATE: only CREATE is injected");

  std::string opted_out = kPod;
  opted_out.replace(opted_out.find("\"labels\":{"), 10,
                    "\"annotations\":{\"sidecar.meshlet.io/inject\":\"false\"},\"labels\":{");
  const ReviewResult out = Review(ReviewJson(opted_out), options);
  EXPECT_EQ(out.verdict, Verdict::kUntouched) << out.reason;
  EXPECT_EQ(Text(Field(ResponseOf(out), "allowed")), "true");

  const ReviewResult service = Review(
      ReviewJson(R"({"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{}})"),
      options);
  EXPECT_EQ(service.verdict, Verdict::kUntouched);
  EXPECT_EQ(service.reason, "Service \"shop/s\": not a kind injection applies to");
}

// A pod of another revision that reached this webhook (a configuration's selector let it
// through) is allowed unchanged, and the answer says why: kubectl prints the warning to whoever
// created the pod, not only the control plane's log.
TEST(AdmissionTest, AnotherRevisionsPodIsAllowedUnchangedWithTheReasonAsAWarning) {
  const ReviewOptions options = RevisionWebhookOptions("canary");
  std::string other = kPod;
  other.replace(other.find("\"labels\":{"), 10, "\"labels\":{\"meshlet.io/rev\":\"0-2-0\",");
  EXPECT_EQ(WarningOfUnchanged(Review(ReviewJson(other), options)),
            "meshlet: not injected: the pod's label meshlet.io/rev names revision 0-2-0, not "
            "this control plane's (canary); that revision's webhook injects it (check the "
            "webhook configurations' selectors)");
  // Its own pod: injected, no warning.
  std::string own = kPod;
  own.replace(own.find("\"labels\":{"), 10, "\"labels\":{\"meshlet.io/rev\":\"canary\",");
  const ReviewResult injected = Review(ReviewJson(own), options);
  EXPECT_EQ(injected.verdict, Verdict::kInjected) << injected.reason;
  EXPECT_FALSE(Field(ResponseOf(injected), "warnings").IsDefined()) << injected.body;
}

// Two webhook configurations select a pod (ADR 0082): revision 0-2-0's webhook ran first; revision
// canary's leaves its sidecar and says why. A pod carrying a container of injection's name
// without injection's status (not ours to replace) is refused, never given a second one.
TEST(AdmissionTest, APodAnotherRevisionInjectedIsNotInjectedAgain) {
  const ReviewOptions first = RevisionWebhookOptions("0-2-0");
  absl::StatusOr<inject::Result> injected = inject::Inject(YAML::Load(kPod), first.inject);
  ASSERT_TRUE(injected.ok()) << injected.status();
  const std::string pod = inject::ToCompactJson(injected->document);
  const ReviewOptions second = RevisionWebhookOptions("canary");
  EXPECT_EQ(WarningOfUnchanged(Review(ReviewJson(pod), second)),
            "meshlet: not injected again: revision 0-2-0's webhook injected it already (its "
            "sidecar.meshlet.io/revision); two webhook configurations select the pod (check "
            "their selectors)");
  // The same revision's webhook again: nothing to change.
  const ReviewResult same = Review(ReviewJson(pod), first);
  EXPECT_EQ(same.verdict, Verdict::kUntouched) << same.reason;
  EXPECT_FALSE(Field(ResponseOf(same), "patch").IsDefined()) << same.body;

  std::string hand_made = kPod;
  hand_made.replace(hand_made.find("\"containers\":["), 14,
                    "\"containers\":[{\"name\":\"meshlet-proxy\",\"image\":\"p:1\"},");
  const ReviewResult refused = Review(ReviewJson(hand_made), second);
  EXPECT_EQ(refused.verdict, Verdict::kRefused) << refused.reason;
  EXPECT_NE(refused.reason.find("\"meshlet-proxy\" is the name of a container injection adds"),
            std::string::npos)
      << refused.reason;
}

TEST(AdmissionTest, ADryRunGetsTheSameAnswer) {
  const ReviewResult normal = Review(ReviewJson(kPod), TestOptions());
  const ReviewResult dry =
      Review(ReviewJson(kPod, "shop", "CREATE", R"(,"dryRun":true)"), TestOptions());
  EXPECT_EQ(dry.verdict, Verdict::kInjected);
  EXPECT_EQ(dry.body, normal.body);
}

TEST(AdmissionTest, AnObjectInjectionRefusesIsRefusedWithItsMessage) {
  std::string bad = kPod;
  bad.replace(bad.find("\"labels\":{"), 10,
              "\"annotations\":{\"sidecar.meshlet.io/mode\":\"sometimes\"},\"labels\":{");
  const ReviewResult result = Review(ReviewJson(bad), TestOptions());
  ASSERT_EQ(result.verdict, Verdict::kRefused);
  const YAML::Node response = ResponseOf(result);
  EXPECT_EQ(Text(Field(response, "allowed")), "false");
  EXPECT_EQ(Text(Field(Field(response, "status"), "code")), "400");
  const std::string message = Text(Field(Field(response, "status"), "message"));
  EXPECT_NE(message.find("meshlet sidecar injection: AdmissionReview "
                         "705ab4f5-6393-11e8-b7cc-42010a800002"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("sidecar.meshlet.io/mode"), std::string::npos) << message;
}

TEST(AdmissionTest, MalformedReviewsAreRefusedSayingWhatIsWrong) {
  struct Case {
    std::string body;
    std::string message;
    std::string uid;
  };
  std::string deep;
  for (int i = 0; i < 200; ++i) deep += "[";
  const Case cases[] = {
      {"", "the request body is not a JSON object", ""},
      {"{\"apiVersion\": ", "the request body is not JSON", ""},
      {"[1, 2]", "the request body is not a JSON object", ""},
      {deep, "nests deeper than 64 levels", ""},
      {R"({"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u"}})",
       "expected apiVersion admission.k8s.io/v1 and kind AdmissionReview, got apiVersion "
       "\"admission.k8s.io/v1beta1\"",
       "u"},
      {R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"})", "request: missing", ""},
      {R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}})",
       "request.uid: missing", ""},
      {R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u",)"
       R"("operation":"CREATE","namespace":"shop"}})",
       "request.object: missing", "u"},
  };
  for (const Case& c : cases) {
    const ReviewResult result = Review(c.body, TestOptions());
    EXPECT_EQ(result.verdict, Verdict::kMalformed) << c.body;
    const YAML::Node response = ResponseOf(result);
    EXPECT_EQ(Text(Field(response, "allowed")), "false") << c.body;
    EXPECT_EQ(Text(Field(response, "uid")), c.uid) << c.body;
    const std::string message = Text(Field(Field(response, "status"), "message"));
    EXPECT_NE(message.find(c.message), std::string::npos) << c.body << ": " << message;
  }
}

}  // namespace
}  // namespace meshlet::controlplane::webhook

// Revisions in injection (revision.h, pod_model.cc's ReadRevision): the names a revision may
// have, which revision a pod gets (its own label, else its namespace's, else the injection's),
// what the sidecar of each revision is pointed at, and the webhook's refusal of other revisions'
// pods.

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "control-plane/inject/inject.h"
#include "control-plane/inject/inject_test_util.h"
#include "control-plane/inject/revision.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::inject {
namespace {

constexpr char kPod[] = R"(apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  serviceAccountName: web
  containers:
  - name: app
    image: app:1
)";

std::string PodWithRevisionLabel(const std::string& revision) {
  return absl::StrCat(R"(apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  labels: {app: web, meshlet.io/rev: ")",
                      revision, R"("}
spec:
  containers:
  - name: app
    image: app:1
)");
}

Options RevisionOptions(const std::string& revision) {
  Options o = TestOptions();
  o.revision = revision;
  o.control_plane_address = ControlPlaneDiscoveryAddress(revision, "meshlet-system");
  o.control_plane_service_account = ControlPlaneName(revision);
  return o;
}

TEST(RevisionTest, NamesAreDnsLabelsShortEnoughForTheServiceName) {
  EXPECT_EQ(*ParseRevision("canary"), "canary");
  EXPECT_EQ(*ParseRevision("0-2-0"), "0-2-0");
  EXPECT_EQ(*ParseRevision("default"), "");
  EXPECT_EQ(*ParseRevision(""), "");
  const std::string longest(kMaxRevisionLength, 'a');
  ASSERT_TRUE(ParseRevision(longest).ok());
  EXPECT_EQ(ControlPlaneName(longest).size(), 63u);
  for (const char* bad : {"Canary", "-x", "x-", "0.2.0", "a_b"}) {
    absl::StatusOr<std::string> parsed = ParseRevision(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_NE(parsed.status().message().find("is not a revision name"), std::string::npos);
  }
  EXPECT_FALSE(ParseRevision(longest + "a").ok());
  EXPECT_NE(CheckRevisionLabel("default").message().find("remove it"), std::string::npos);
  EXPECT_FALSE(CheckRevisionLabel("").ok());
  EXPECT_TRUE(CheckRevisionLabel("canary").ok());
}

TEST(RevisionTest, ObjectNamesCarryTheRevision) {
  EXPECT_EQ(ControlPlaneName(""), "meshlet-control-plane");
  EXPECT_EQ(ControlPlaneName("canary"), "meshlet-control-plane-canary");
  EXPECT_EQ(ControlPlaneDiscoveryAddress("canary", "mesh"),
            "meshlet-control-plane-canary.mesh.svc:15012");
  EXPECT_EQ(InjectorConfigurationName(""), "meshlet-sidecar-injector");
  EXPECT_EQ(InjectorConfigurationName("0-2-0"), "meshlet-sidecar-injector-0-2-0");
  EXPECT_EQ(RevisionDisplayName(""), "default");
  EXPECT_EQ(RevisionDisplayName("canary"), "canary");
}

TEST(RevisionTest, UnnamedRevisionGivesTheDefaultControlPlaneAndNoLabel) {
  YAML::Node pod = Injected(kPod);
  EXPECT_EQ(ProxyFlag(pod, "--xds-server-identity="),
            std::vector<std::string>{
                "spiffe://cluster.local/ns/meshlet-system/sa/meshlet-control-plane"});
  for (const std::string& label : ProxyFlag(pod, "--node-label=")) {
    EXPECT_NE(label.rfind("meshlet.io/rev=", 0), 0u) << label;
  }
  EXPECT_EQ(pod["metadata"]["annotations"][kRevisionAnnotation].Scalar(), "default");
  EXPECT_EQ(pod["metadata"]["annotations"][kServiceAccountAnnotation].Scalar(), "web");
}

TEST(RevisionTest, InjectionRevisionPointsTheSidecarAtItsControlPlane) {
  Options o = RevisionOptions("canary");
  o.podman = true;  // the address is then written out in --xds
  YAML::Node pod = Injected(kPod, o);
  EXPECT_EQ(ProxyFlag(pod, "--xds="),
            std::vector<std::string>{"meshlet-control-plane-canary.meshlet-system.svc:15012"});
  EXPECT_EQ(ProxyFlag(pod, "--xds-server-identity="),
            std::vector<std::string>{
                "spiffe://cluster.local/ns/meshlet-system/sa/meshlet-control-plane-canary"});
  std::vector<std::string> labels = ProxyFlag(pod, "--node-label=");
  EXPECT_NE(std::find(labels.begin(), labels.end(), "meshlet.io/rev=canary"), labels.end());
  EXPECT_EQ(pod["metadata"]["annotations"][kRevisionAnnotation].Scalar(), "canary");
  // The pod itself gets no label: a label is the user's choice, which would pin the pod.
  EXPECT_FALSE(pod["metadata"]["labels"]["meshlet.io/rev"]);
}

TEST(RevisionTest, PodLabelWinsOverNamespaceWhichWinsOverTheInjection) {
  Options o = RevisionOptions("0-2-0");
  o.podman = true;
  // The namespace's label.
  o.namespace_revisions["shop"] = "canary";
  YAML::Node pod = Injected(kPod, o);
  EXPECT_EQ(ProxyFlag(pod, "--xds="),
            std::vector<std::string>{"meshlet-control-plane-canary.meshlet-system.svc:15012"});
  EXPECT_EQ(pod["metadata"]["annotations"][kRevisionAnnotation].Scalar(), "canary");
  // A namespace without the label, listed: the unnamed revision.
  o.namespace_revisions["shop"] = "";
  pod = Injected(kPod, o);
  EXPECT_EQ(ProxyFlag(pod, "--xds="),
            std::vector<std::string>{"meshlet-control-plane.meshlet-system.svc:15012"});
  // The pod's label wins over the namespace's.
  o.namespace_revisions["shop"] = "canary";
  pod = Injected(PodWithRevisionLabel("0-2-0"), o);
  EXPECT_EQ(ProxyFlag(pod, "--xds="),
            std::vector<std::string>{"meshlet-control-plane-0-2-0.meshlet-system.svc:15012"});
  std::vector<std::string> labels = ProxyFlag(pod, "--node-label=");
  EXPECT_EQ(std::count(labels.begin(), labels.end(), "meshlet.io/rev=0-2-0"), 1);
  EXPECT_EQ(pod["metadata"]["annotations"][kRevisionAnnotation].Scalar(), "0-2-0");
}

TEST(RevisionTest, ReinjectionForAnotherRevisionMovesThePod) {
  Options first = RevisionOptions("0-2-0");
  first.podman = true;
  YAML::Node pod = Injected(kPod, first);
  Options second = RevisionOptions("canary");
  second.podman = true;
  absl::StatusOr<Result> again = Inject(pod, second);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_TRUE(again->changed);
  EXPECT_EQ(ProxyFlag(again->document, "--xds="),
            std::vector<std::string>{"meshlet-control-plane-canary.meshlet-system.svc:15012"});
  std::vector<std::string> labels = ProxyFlag(again->document, "--node-label=");
  EXPECT_EQ(std::count(labels.begin(), labels.end(), "meshlet.io/rev=canary"), 1);
  EXPECT_EQ(std::count(labels.begin(), labels.end(), "meshlet.io/rev=0-2-0"), 0);
  // And once more with the same options: unchanged.
  absl::StatusOr<Result> same = Inject(again->document, second);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_FALSE(same->changed);
}

TEST(RevisionTest, WebhookLeavesOtherRevisionsPodsAlone) {
  Options o = RevisionOptions("canary");
  o.own_revision_only = true;
  absl::StatusOr<Result> other = InjectText(PodWithRevisionLabel("0-2-0"), o);
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_FALSE(other->changed);
  ASSERT_EQ(other->pods.size(), 1u);
  EXPECT_EQ(other->pods[0].outcome, Outcome::kSkipped);
  EXPECT_EQ(other->pods[0].reason,
            "the pod's label meshlet.io/rev names revision 0-2-0, not this control plane's "
            "(canary)");
  absl::StatusOr<Result> own = InjectText(PodWithRevisionLabel("canary"), o);
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_TRUE(own->changed);
  EXPECT_EQ(own->pods[0].outcome, Outcome::kInjected);
  // The unnamed revision's webhook leaves a labelled pod alone too.
  Options unnamed = TestOptions();
  unnamed.own_revision_only = true;
  absl::StatusOr<Result> labelled = InjectText(PodWithRevisionLabel("canary"), unnamed);
  ASSERT_TRUE(labelled.ok()) << labelled.status();
  EXPECT_EQ(labelled->pods[0].outcome, Outcome::kSkipped);
  EXPECT_TRUE(InjectText(kPod, unnamed)->changed);
}

// Two webhook configurations selecting one pod (ADR 0082): the API server calls both, one after
// the other, the second seeing what the first made. The second revision's webhook leaves the
// pod as the first injected it, saying so; injecting again would replace that sidecar, so that
// the last webhook called would win, unseen.
TEST(RevisionTest, TheWebhookLeavesAPodAnotherRevisionInjectedAlready) {
  Options first = RevisionOptions("0-2-0");
  first.own_revision_only = true;
  const YAML::Node pod = Injected(kPod, first);
  Options second = RevisionOptions("canary");
  second.own_revision_only = true;
  absl::StatusOr<Result> again = Inject(pod, second);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->changed);
  ASSERT_EQ(again->pods.size(), 1u);
  EXPECT_EQ(again->pods[0].outcome, Outcome::kSkipped);
  EXPECT_EQ(again->pods[0].reason,
            "revision 0-2-0's webhook injected it already (its sidecar.meshlet.io/revision)");
  ASSERT_EQ(again->pods[0].warnings.size(), 1u);
  EXPECT_EQ(again->pods[0].warnings[0],
            "not injected again: revision 0-2-0's webhook injected it already (its "
            "sidecar.meshlet.io/revision); two webhook configurations select the pod (check "
            "their selectors)");
  // The unnamed revision's webhook second, and first.
  Options unnamed = RevisionOptions("");
  unnamed.own_revision_only = true;
  absl::StatusOr<Result> by_unnamed = Inject(pod, unnamed);
  ASSERT_TRUE(by_unnamed.ok()) << by_unnamed.status();
  EXPECT_EQ(by_unnamed->pods[0].outcome, Outcome::kSkipped);
  absl::StatusOr<Result> after_unnamed = Inject(Injected(kPod, unnamed), first);
  ASSERT_TRUE(after_unnamed.ok()) << after_unnamed.status();
  EXPECT_EQ(after_unnamed->pods[0].reason,
            "revision default's webhook injected it already (its sidecar.meshlet.io/revision)");
  // The same revision twice (its own configuration and a tag's): the second changes nothing.
  Options tagged = first;
  tagged.tags = {{"prod", "0-2-0"}};
  absl::StatusOr<Result> same = Inject(pod, tagged);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_FALSE(same->changed);
  EXPECT_EQ(same->pods[0].outcome, Outcome::kUnchanged);
  // meshctl inject, told another revision, moves the pod: one sidecar, the new revision's.
  absl::StatusOr<Result> moved = Inject(pod, RevisionOptions("canary"));
  ASSERT_TRUE(moved.ok()) << moved.status();
  ASSERT_TRUE(moved->changed);
  const YAML::Node out = moved->document;
  EXPECT_EQ(out["metadata"]["annotations"][kRevisionAnnotation].Scalar(), "canary");
  EXPECT_EQ(Names(out["spec"]["initContainers"]),
            (std::vector<std::string>{kInitContainerName, kProxyContainerName}));
  EXPECT_EQ(Names(out["spec"]["containers"]), std::vector<std::string>{"app"});
}

// Tags (ADR 0076): a label naming a tag stands for the tag's revision; the tag "default" moves
// the pods no label puts on a revision; the webhook, given its configuration's tag, takes the
// tag's pods as its own and still leaves others' alone.
TEST(RevisionTest, ATagStandsForTheRevisionItPointsAt) {
  Options o = RevisionOptions("");
  o.podman = true;  // the discovery address as a value, not from the environment
  o.tags = {{"prod", "canary"}};
  YAML::Node pod = Injected(PodWithRevisionLabel("prod"), o);
  EXPECT_EQ(ProxyFlag(pod, "--xds="),
            std::vector<std::string>{"meshlet-control-plane-canary.meshlet-system.svc:15012"});
  EXPECT_EQ(pod["metadata"]["annotations"][kRevisionAnnotation].Scalar(), "canary");
  // The namespace's label may name the tag too.
  o.namespace_revisions["shop"] = "prod";
  pod = Injected(kPod, o);
  EXPECT_EQ(pod["metadata"]["annotations"][kRevisionAnnotation].Scalar(), "canary");
  // "default": pods of a namespace without the label go where the tag points.
  o.namespace_revisions["shop"] = "";
  o.tags["default"] = "0-2-0";
  pod = Injected(kPod, o);
  EXPECT_EQ(ProxyFlag(pod, "--xds="),
            std::vector<std::string>{"meshlet-control-plane-0-2-0.meshlet-system.svc:15012"});

  // The webhook of revision canary on /inject/tag/prod.
  Options webhook = RevisionOptions("canary");
  webhook.own_revision_only = true;
  webhook.tags = {{"prod", "canary"}};
  absl::StatusOr<Result> tagged = InjectText(PodWithRevisionLabel("prod"), webhook);
  ASSERT_TRUE(tagged.ok()) << tagged.status();
  EXPECT_EQ(tagged->pods[0].outcome, Outcome::kInjected);
  absl::StatusOr<Result> other = InjectText(PodWithRevisionLabel("stable"), webhook);
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->pods[0].outcome, Outcome::kSkipped);
  // Without the tag (its own path) the tag's pod is another's.
  webhook.tags.clear();
  absl::StatusOr<Result> untagged = InjectText(PodWithRevisionLabel("prod"), webhook);
  ASSERT_TRUE(untagged.ok()) << untagged.status();
  EXPECT_EQ(untagged->pods[0].outcome, Outcome::kSkipped);

  // Bad tags are option errors.
  Options bad = RevisionOptions("");
  bad.tags = {{"Prod", "canary"}};
  EXPECT_NE(ValidateOptions(bad).message().find("\"Prod\" is not a tag name"), std::string::npos)
      << ValidateOptions(bad);
  bad.tags = {{"prod", "default"}};
  EXPECT_NE(ValidateOptions(bad).message().find("tag prod: revision"), std::string::npos)
      << ValidateOptions(bad);
  EXPECT_EQ(TagConfigurationName("prod"), "meshlet-revision-tag-prod");
}

TEST(RevisionTest, BadLabelsAndOptionsAreErrorsNamingThem) {
  EXPECT_NE(ErrorOf(PodWithRevisionLabel("default"))
                .find("metadata.labels['meshlet.io/rev']: \"default\" names no revision"),
            std::string::npos)
      << ErrorOf(PodWithRevisionLabel("default"));
  EXPECT_NE(ErrorOf(PodWithRevisionLabel("Canary")).find("is not a revision name"),
            std::string::npos);
  Options o = TestOptions();
  o.revision = "default";
  EXPECT_NE(ValidateOptions(o).message().find("revision"), std::string::npos);
  o.revision = "x_y";
  EXPECT_FALSE(ValidateOptions(o).ok());
  o = TestOptions();
  o.namespace_revisions["shop"] = "Bad";
  EXPECT_NE(ValidateOptions(o).message().find("namespace shop's label meshlet.io/rev"),
            std::string::npos);
}

}  // namespace
}  // namespace meshlet::controlplane::inject

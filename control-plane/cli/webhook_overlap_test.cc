// Overlapping injection webhooks (webhook_overlap.h, ADR 0082): label selectors read and
// compared as sets, the webhooks of meshlet's configurations, and which pairs of them would be
// sent the same pods. The install's own configurations (every revision, every tag) never overlap;
// a revision named like a tag, an active unnamed revision beside the tag default, or a
// configuration selecting more than the install's do.

#include "control-plane/cli/webhook_overlap.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "control-plane/cli/commands.h"
#include "control-plane/cli/output.h"
#include "control-plane/cli/tag.h"
#include "control-plane/install/install.h"

namespace meshlet::controlplane::cli {
namespace {

using ::testing::HasSubstr;

LabelSelector Selector(const std::string& yaml) {
  absl::StatusOr<LabelSelector> s = LabelSelector::Read(YAML::Load(yaml), "s");
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : LabelSelector();
}

std::string Both(const std::string& a, const std::string& b) {
  std::optional<LabelSelector> both = LabelSelector::Both(Selector(a), Selector(b));
  return both.has_value() ? both->ToString() : "(nothing)";
}

TEST(LabelSelectorTest, MatchesAsTheApiServerDoes) {
  const LabelSelector s = Selector(R"(
matchLabels: {app: web}
matchExpressions:
- {key: tier, operator: In, values: [front, back]}
- {key: env, operator: NotIn, values: [test]}
- {key: team, operator: Exists}
- {key: legacy, operator: DoesNotExist})");
  EXPECT_TRUE(s.Matches({{"app", "web"}, {"tier", "front"}, {"team", "a"}}));
  EXPECT_TRUE(s.Matches({{"app", "web"}, {"tier", "back"}, {"team", "a"}, {"env", "prod"}}));
  EXPECT_FALSE(s.Matches({{"app", "api"}, {"tier", "front"}, {"team", "a"}}));
  EXPECT_FALSE(s.Matches({{"app", "web"}, {"tier", "middle"}, {"team", "a"}}));
  EXPECT_FALSE(s.Matches({{"app", "web"}, {"tier", "front"}, {"team", "a"}, {"env", "test"}}));
  EXPECT_FALSE(s.Matches({{"app", "web"}, {"tier", "front"}}));
  EXPECT_FALSE(s.Matches({{"app", "web"}, {"tier", "front"}, {"team", "a"}, {"legacy", "1"}}));
  EXPECT_EQ(s.ToString(), "app=web,env notin (test),!legacy,team,tier in (back,front)");
  // Absent or empty: everything.
  EXPECT_TRUE(Selector("").Matches({{"a", "b"}}));
  EXPECT_TRUE(Selector("{}").Matches({}));
  EXPECT_EQ(Selector("{}").ToString(), "everything");
  EXPECT_EQ(LabelSelector::Parse("a=b,!c,d").ToString(), "a=b,!c,d");

  auto error = [](const std::string& yaml) {
    return std::string(
        LabelSelector::Read(YAML::Load(yaml), "webhooks[0].objectSelector").status().message());
  };
  EXPECT_EQ(error("{matchExpressions: [{key: a, operator: Has}]}"),
            "webhooks[0].objectSelector.matchExpressions[0]: operator \"Has\" is not In, NotIn, "
            "Exists or DoesNotExist");
  EXPECT_EQ(error("{matchExpressions: [{key: a, operator: In}]}"),
            "webhooks[0].objectSelector.matchExpressions[0]: In needs values");
  EXPECT_EQ(error("{matchExpressions: [{key: a, operator: Exists, values: [x]}]}"),
            "webhooks[0].objectSelector.matchExpressions[0]: Exists takes no values");
  EXPECT_EQ(error("{matchLabels: [a]}"), "webhooks[0].objectSelector.matchLabels: not a map");
  EXPECT_EQ(error("[1]"), "webhooks[0].objectSelector: not a label selector (a map)");
}

TEST(LabelSelectorTest, BothSelectWhatSatisfiesEach) {
  const std::string prod =
      "{matchExpressions: [{key: meshlet.io/rev, operator: In, values: "
      "[prod]}]}";
  const std::string canary = "{matchLabels: {meshlet.io/rev: canary}}";
  const std::string unlabelled =
      "{matchExpressions: [{key: meshlet.io/rev, operator: "
      "DoesNotExist}]}";
  EXPECT_EQ(Both(prod, canary), "(nothing)");
  EXPECT_EQ(Both(prod, unlabelled), "(nothing)");
  EXPECT_EQ(Both(prod, prod), "meshlet.io/rev=prod");
  EXPECT_EQ(Both(prod, "{}"), "meshlet.io/rev=prod");
  EXPECT_EQ(Both(prod,
                 "{matchExpressions: [{key: meshlet.io/rev, operator: NotIn, values: "
                 "[prod]}]}"),
            "(nothing)");
  EXPECT_EQ(Both("{matchExpressions: [{key: a, operator: In, values: [x, y, z]}]}",
                 "{matchExpressions: [{key: a, operator: NotIn, values: [y]}]}"),
            "a in (x,z)");
  EXPECT_EQ(Both("{matchExpressions: [{key: a, operator: Exists}]}",
                 "{matchExpressions: [{key: a, operator: NotIn, values: [y]}]}"),
            "a,a notin (y)");
  EXPECT_EQ(Both(unlabelled, "{matchExpressions: [{key: meshlet.io/rev, operator: Exists}]}"),
            "(nothing)");
  EXPECT_EQ(Both(unlabelled,
                 "{matchExpressions: [{key: sidecar.meshlet.io/inject, operator: "
                 "NotIn, values: [\"false\"]}]}"),
            "!meshlet.io/rev,sidecar.meshlet.io/inject notin (false)");
}

// The webhook configuration the install renders for `revision` ("" the unnamed one), with the
// caBundle its control plane writes.
YAML::Node Installed(const std::string& revision) {
  install::InstallOptions options;
  options.revision = revision;
  absl::StatusOr<std::vector<YAML::Node>> objects = install::Render(options, kMeshctlVersion);
  EXPECT_TRUE(objects.ok()) << objects.status();
  for (const YAML::Node& o : objects.ok() ? *objects : std::vector<YAML::Node>{}) {
    if (Scalar(At(o, {"kind"})) != "MutatingWebhookConfiguration") continue;
    YAML::Node configuration = YAML::Clone(o);
    for (YAML::Node hook : configuration["webhooks"]) hook["clientConfig"]["caBundle"] = "Q0E=";
    return configuration;
  }
  ADD_FAILURE() << "no webhook configuration rendered";
  return YAML::Node();
}

YAML::Node Tag(const std::string& tag, const std::string& revision) {
  absl::StatusOr<YAML::Node> configuration =
      TagConfiguration(tag, revision, Installed(revision), "meshlet-system");
  EXPECT_TRUE(configuration.ok()) << configuration.status();
  return configuration.ok() ? *configuration : YAML::Node();
}

std::vector<InjectionWebhook> Webhooks(const std::vector<YAML::Node>& configurations) {
  std::vector<InjectionWebhook> out;
  for (const YAML::Node& c : configurations) {
    absl::StatusOr<std::vector<InjectionWebhook>> hooks = InjectionWebhooks(c);
    EXPECT_TRUE(hooks.ok()) << hooks.status();
    if (hooks.ok()) out.insert(out.end(), hooks->begin(), hooks->end());
  }
  return out;
}

// "first/webhook ~ second/webhook" of each overlap.
std::vector<std::string> Pairs(const std::vector<WebhookOverlap>& overlaps) {
  std::vector<std::string> out;
  for (const WebhookOverlap& o : overlaps) {
    out.push_back(o.first.configuration + "/" + o.first.name + " ~ " + o.second.configuration +
                  "/" + o.second.name);
  }
  return out;
}

TEST(WebhookOverlapTest, TheInstallsRevisionsAndTagsNeverOverlap) {
  const std::vector<YAML::Node> installed = {Installed(""), Installed("canary"), Installed("0-2-0"),
                                             Tag("prod", "canary"), Tag("stable", "0-2-0")};
  for (const YAML::Node& c : installed) {
    EXPECT_EQ(Webhooks({c}).size(), 2u) << Scalar(At(c, {"metadata", "name"}));
  }
  const std::vector<InjectionWebhook> all = Webhooks(installed);
  EXPECT_THAT(Pairs(Overlaps(all, all)), ::testing::IsEmpty());
  // The tag default beside the unnamed revision's configuration deactivated, as tag set leaves
  // it.
  YAML::Node unnamed = Installed("");
  const YAML::Node deactivated = DeactivationPatch(unnamed, true);
  unnamed["webhooks"] = deactivated["webhooks"];
  EXPECT_THAT(Webhooks({unnamed}), ::testing::IsEmpty());
  EXPECT_THAT(Pairs(Overlaps(Webhooks({Tag("default", "canary")}), Webhooks({unnamed}))),
              ::testing::IsEmpty());
}

TEST(WebhookOverlapTest, WhatWouldSendAPodToTwoWebhooks) {
  // A revision named like a tag: both select namespaces labelled meshlet.io/rev=prod and pods so
  // labelled.
  const std::vector<WebhookOverlap> same_name =
      Overlaps(Webhooks({Tag("prod", "canary")}), Webhooks({Installed("prod"), Installed("")}));
  EXPECT_THAT(
      Pairs(same_name),
      ::testing::ElementsAre("meshlet-revision-tag-prod/namespace.tag-prod.sidecar.meshlet.io ~ "
                             "meshlet-sidecar-injector-prod/namespace.prod.sidecar.meshlet.io",
                             "meshlet-revision-tag-prod/object.tag-prod.sidecar.meshlet.io ~ "
                             "meshlet-sidecar-injector-prod/object.prod.sidecar.meshlet.io"));
  ASSERT_EQ(same_name.size(), 2u);
  EXPECT_EQ(same_name[0].namespaces.ToString(),
            "kubernetes.io/metadata.name notin (kube-system,meshlet-system),meshlet.io/rev=prod");
  EXPECT_EQ(same_name[0].pods.ToString(),
            "!meshlet.io/rev,sidecar.meshlet.io/inject notin (false)");
  // The tag default while the unnamed revision's own configuration is still active.
  EXPECT_THAT(Pairs(Overlaps(Webhooks({Tag("default", "canary")}), Webhooks({Installed("")}))),
              ::testing::ElementsAre(
                  "meshlet-revision-tag-default/namespace.tag-default.sidecar.meshlet.io ~ "
                  "meshlet-sidecar-injector/namespace.sidecar.meshlet.io",
                  "meshlet-revision-tag-default/object.tag-default.sidecar.meshlet.io ~ "
                  "meshlet-sidecar-injector/object.sidecar.meshlet.io"));
  // A configuration edited to select every namespace labelled for injection, whatever its
  // revision, beside a tag; restricted to the pods without their own label (what a namespace's
  // label decides), the object webhook's overlap goes.
  YAML::Node broad = Installed("");
  broad["webhooks"][0]["namespaceSelector"] =
      YAML::Load("{matchLabels: {meshlet.io/inject: enabled}}");
  const std::vector<WebhookOverlap> broad_overlaps =
      Overlaps(Webhooks({Tag("prod", "canary")}), Webhooks({broad}),
               LabelSelector::Parse("!meshlet.io/rev"));
  EXPECT_THAT(
      Pairs(broad_overlaps),
      ::testing::ElementsAre("meshlet-revision-tag-prod/namespace.tag-prod.sidecar.meshlet.io ~ "
                             "meshlet-sidecar-injector/namespace.sidecar.meshlet.io"));
  const std::vector<NamespaceLabels> namespaces = {
      {"shop", {{"meshlet.io/rev", "prod"}, {"meshlet.io/inject", "enabled"}}},
      {"pay", {{"meshlet.io/rev", "prod"}}},
      {"meshlet-system",
       {{"meshlet.io/rev", "prod"},
        {"meshlet.io/inject", "enabled"},
        {"kubernetes.io/metadata.name", "meshlet-system"}}}};
  EXPECT_EQ(DescribeOverlaps(broad_overlaps, namespaces),
            "  MutatingWebhookConfiguration meshlet-revision-tag-prod (webhook "
            "namespace.tag-prod.sidecar.meshlet.io) and meshlet-sidecar-injector (webhook "
            "namespace.sidecar.meshlet.io) both select pods (!meshlet.io/rev,"
            "sidecar.meshlet.io/inject notin (false)) in namespaces (kubernetes.io/metadata.name "
            "notin (kube-system,meshlet-system),meshlet.io/inject=enabled,meshlet.io/rev=prod): "
            "now shop\n");
}

TEST(WebhookOverlapTest, OnlyMeshletsWebhooksThatArePodsAtCreation) {
  // Another mesh's injector, however broad: not meshlet's to judge.
  EXPECT_THAT(Webhooks({YAML::Load(R"(
metadata: {name: istio-sidecar-injector}
webhooks:
- name: rev.namespace.sidecar-injector.istio.io
  rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}])")}),
              ::testing::IsEmpty());
  // Meshlet's by its label or its webhooks' names; a webhook without rules for pods at CREATE
  // is sent none.
  const std::vector<InjectionWebhook> hooks = Webhooks({YAML::Load(R"(
metadata: {name: mine, labels: {app.kubernetes.io/part-of: meshlet}}
webhooks:
- name: all
  rules: [{apiGroups: ["*"], apiVersions: ["*"], operations: ["*"], resources: ["*"]}]
- name: updates
  rules: [{apiGroups: [""], apiVersions: [v1], operations: [UPDATE], resources: [pods]}]
- name: services
  rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [services]}]
- name: none)")});
  ASSERT_EQ(hooks.size(), 1u);
  EXPECT_EQ(hooks[0].name, "all");
  EXPECT_EQ(Webhooks({YAML::Load(R"(
metadata: {name: copy}
webhooks:
- name: namespace.copy.sidecar.meshlet.io
  rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}])")})
                .size(),
            1u);
  absl::StatusOr<std::vector<InjectionWebhook>> bad = InjectionWebhooks(YAML::Load(R"(
metadata: {name: bad, labels: {app.kubernetes.io/part-of: meshlet}}
webhooks:
- name: x
  rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}]
  objectSelector: {matchExpressions: [{key: a, operator: Near}]})"));
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("MutatingWebhookConfiguration bad: webhooks[0].objectSelector."
                        "matchExpressions[0]: operator \"Near\""));
}

}  // namespace
}  // namespace meshlet::controlplane::cli

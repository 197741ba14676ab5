#include "cni/repair.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"

namespace meshlet::cni {
namespace {

constexpr char kCniStatus[] =
    R"({\"version\":\"0.2.0\",\"capture\":\"cni\",\"initContainers\":[\"meshlet-proxy\"]})";
constexpr char kInitStatus[] = R"({\"version\":\"0.2.0\",\"initContainers\":[\"meshlet-init\"]})";

// A Pod on the node as the API server lists it: started at 14:00:00, its native proxy `ready`.
std::string PodJson(
    absl::string_view name, absl::string_view status_annotation, bool ready,
    absl::string_view extra_metadata = "",
    absl::string_view owner = R"([{"kind":"ReplicaSet","name":"rs","controller":true}])") {
  return absl::StrCat(R"({"metadata":{"namespace":"shop","name":")", name, R"(","uid":"u-)", name,
                      R"(","annotations":{"sidecar.meshlet.io/status":")", status_annotation,
                      R"("},"ownerReferences":)", owner, extra_metadata,
                      R"(},"spec":{"nodeName":"n1"},"status":{"phase":"Running",)",
                      R"("startTime":"2026-11-27T14:00:00Z","initContainerStatuses":[)",
                      R"({"name":"meshlet-proxy","ready":)", ready ? "true" : "false", "}]}}");
}

NodePod Parse(const std::string& json) {
  absl::StatusOr<NodePodList> list = NodePodListFromJson(absl::StrCat(
      R"({"kind":"PodList","metadata":{"resourceVersion":"7"},)", R"("items":[)", json, "]}"));
  EXPECT_TRUE(list.ok()) << list.status();
  if (!list.ok() || list->pods.size() != 1) return NodePod{};
  EXPECT_EQ(list->resource_version, "7");
  return list->pods[0];
}

absl::Time At(absl::string_view rfc3339) {
  absl::Time t;
  std::string error;
  EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, rfc3339, &t, &error)) << error;
  return t;
}

const absl::Time kAfterGrace = At("2026-11-27T14:01:00Z");

TEST(RepairTest, ReadsWhatTheDecisionNeedsOfAPod) {
  const NodePod pod = Parse(PodJson("a", kCniStatus, false));
  EXPECT_EQ(pod.pod_namespace, "shop");
  EXPECT_EQ(pod.name, "a");
  EXPECT_EQ(pod.uid, "u-a");
  EXPECT_EQ(pod.controller_kind, "ReplicaSet");
  EXPECT_EQ(pod.phase, "Running");
  EXPECT_EQ(pod.start_time, At("2026-11-27T14:00:00Z"));
  EXPECT_TRUE(pod.proxy_found);
  EXPECT_FALSE(pod.proxy_ready);
  EXPECT_FALSE(pod.labelled);
  EXPECT_FALSE(pod.deleting);
  EXPECT_EQ(pod.annotations.at("sidecar.meshlet.io/status"),
            absl::StrReplaceAll(kCniStatus, {{"\\", ""}}));
  EXPECT_FALSE(NodePodListFromJson(R"({"kind":"Pod"})").ok());
  EXPECT_FALSE(NodePodListFromJson(R"({"kind":"PodList","items":[{"metadata":{}}]})").ok());
}

TEST(RepairTest, FlagsOnlyAnUncapturedCniPodPastTheGrace) {
  CaptureRecord captured;
  captured.AddLogLine(
      "2026-11-27T14:00:01.250Z meshlet-cni ADD pod=shop/captured container=0123456789ab "
      "outcome=captured detail=\"\"");
  // A line for the same name before this pod started (an older pod of a StatefulSet): not it.
  captured.AddLogLine(
      "2026-11-27T13:00:00.000Z meshlet-cni ADD pod=shop/renamed container=0123456789ab "
      "outcome=captured detail=\"\"");
  captured.AddLogLine(
      "2026-11-27T14:00:01.000Z meshlet-cni ADD pod=shop/skipped container=0123456789ab "
      "outcome=skipped detail=\"\"");
  captured.AddLogLine("    iptables -t nat -A ... pod=shop/indented outcome=captured");
  const RepairSettings settings;  // evict, 30 s
  struct Case {
    std::string name;
    std::string pod;
    absl::Time now;
    Verdict want;
  };
  for (const Case& c : std::vector<Case>{
           {"uncaptured, not ready, past the grace", PodJson("x", kCniStatus, false), kAfterGrace,
            Verdict::kEvict},
           {"the same within the grace", PodJson("x", kCniStatus, false),
            At("2026-11-27T14:00:20Z"), Verdict::kWait},
           {"captured", PodJson("captured", kCniStatus, false), kAfterGrace, Verdict::kLeave},
           {"captured only before it started", PodJson("renamed", kCniStatus, false), kAfterGrace,
            Verdict::kEvict},
           {"skipped is no capture", PodJson("skipped", kCniStatus, false), kAfterGrace,
            Verdict::kEvict},
           {"ready", PodJson("x", kCniStatus, true), kAfterGrace, Verdict::kLeave},
           {"injected with meshlet-init", PodJson("x", kInitStatus, false), kAfterGrace,
            Verdict::kLeave},
           {"not injected",
            absl::StrReplaceAll(PodJson("x", kCniStatus, false),
                                {{"sidecar.meshlet.io/status", "other"}}),
            kAfterGrace, Verdict::kLeave},
           {"being deleted",
            PodJson("x", kCniStatus, false, R"(,"deletionTimestamp":"2026-11-27T14:00:30Z")"),
            kAfterGrace, Verdict::kLeave},
           {"hostNetwork",
            absl::StrReplaceAll(PodJson("x", kCniStatus, false),
                                {{R"("nodeName":"n1")", R"("hostNetwork":true)"}}),
            kAfterGrace, Verdict::kLeave},
           {"excluded namespace",
            absl::StrReplaceAll(PodJson("x", kCniStatus, false), {{"\"shop\"", "\"kube-system\""}}),
            kAfterGrace, Verdict::kLeave},
           {"finished (a Job's pod)",
            absl::StrReplaceAll(PodJson("x", kCniStatus, false), {{"Running", "Succeeded"}}),
            kAfterGrace, Verdict::kLeave},
           {"a Job's running pod",
            PodJson("x", kCniStatus, false, "", R"([{"kind":"Job","name":"j","controller":true}])"),
            kAfterGrace, Verdict::kEvict},
           {"a bare pod", PodJson("x", kCniStatus, false, "", "[]"), kAfterGrace, Verdict::kReport},
       }) {
    const RepairDecision decision = DecideRepair(Parse(c.pod), captured, settings, c.now);
    EXPECT_EQ(VerdictName(decision.verdict), VerdictName(c.want))
        << c.name << ": " << decision.reason;
  }
}

TEST(RepairTest, TheModeSaysWhatToDoWithAFlaggedPod) {
  const CaptureRecord none;
  RepairSettings settings;
  const NodePod pod = Parse(PodJson("x", kCniStatus, false));
  settings.mode = RepairMode::kLabel;
  EXPECT_EQ(DecideRepair(pod, none, settings, kAfterGrace).verdict, Verdict::kLabel);
  const NodePod labelled =
      Parse(PodJson("x", kCniStatus, false, R"(,"labels":{"cni.meshlet.io/uncaptured":"true"})"));
  EXPECT_TRUE(labelled.labelled);
  EXPECT_EQ(DecideRepair(labelled, none, settings, kAfterGrace).verdict, Verdict::kReport);
  settings.mode = RepairMode::kOff;
  EXPECT_EQ(DecideRepair(pod, none, settings, kAfterGrace).verdict, Verdict::kReport);
  for (absl::string_view mode : {"evict", "label", "off"}) {
    absl::StatusOr<RepairMode> parsed = ParseRepairMode(mode);
    ASSERT_TRUE(parsed.ok()) << mode;
    EXPECT_EQ(RepairModeName(*parsed), mode);
  }
  EXPECT_EQ(ParseRepairMode("delete").status().message(),
            "repair mode \"delete\": must be evict, label or off");
}

TEST(RepairTest, EvictionAnswers) {
  EXPECT_EQ(ClassifyEviction(201), EvictionResult::kEvicted);
  EXPECT_EQ(ClassifyEviction(200), EvictionResult::kEvicted);
  EXPECT_EQ(ClassifyEviction(429), EvictionResult::kRetryLater);
  EXPECT_EQ(ClassifyEviction(404), EvictionResult::kGone);
  EXPECT_EQ(ClassifyEviction(403), EvictionResult::kFailed);
  EXPECT_EQ(ClassifyEviction(500), EvictionResult::kFailed);
  NodePod pod;
  pod.pod_namespace = "shop";
  pod.name = "x";
  pod.uid = "u-x";
  EXPECT_EQ(EvictionBody(pod),
            R"({"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"x","namespace":)"
            R"("shop"},"deleteOptions":{"preconditions":{"uid":"u-x"}}})");
  EXPECT_EQ(LabelPatchBody("why \"so\""),
            R"({"metadata":{"labels":{"cni.meshlet.io/uncaptured":"true"},"annotations":{)"
            R"("cni.meshlet.io/uncaptured":"why \"so\""}}})");
}

TEST(RepairTest, TheCaptureRecordKeepsOnlyTheNodesPods) {
  CaptureRecord captured;
  captured.AddLogLine(
      "2026-11-27T14:00:01.000Z meshlet-cni ADD pod=shop/a container=c "
      "outcome=captured detail=\"\"");
  captured.AddLogLine(
      "2026-11-27T14:00:02.000Z meshlet-cni CHECK pod=shop/b container=c "
      "outcome=checked detail=\"\"");
  captured.AddLogLine(
      "2026-11-27T14:00:03.000Z meshlet-cni ADD pod=- container=c "
      "outcome=captured detail=\"\"");
  EXPECT_EQ(captured.size(), 2u);
  EXPECT_EQ(captured.LastCaptured("shop", "b"), At("2026-11-27T14:00:02Z"));
  captured.Retain({"shop/b"});
  EXPECT_EQ(captured.size(), 1u);
  EXPECT_FALSE(captured.LastCaptured("shop", "a").has_value());
}

}  // namespace
}  // namespace meshlet::cni

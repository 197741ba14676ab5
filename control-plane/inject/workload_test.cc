#include "control-plane/inject/workload.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace meshlet::controlplane::inject {
namespace {

// WorkloadOf on an object's metadata and its pod's labels, both as YAML flow maps.
Workload Of(const std::string& kind, const std::string& metadata, const std::string& labels) {
  return WorkloadOf(kind, YAML::Load(metadata), YAML::Load(labels));
}

TEST(WorkloadTest, NameLabelsComeFirst) {
  constexpr char kOwned[] =
      "{generateName: orders-5c8d7f9b6-, ownerReferences: [{apiVersion: apps/v1, kind: "
      "ReplicaSet, name: orders-5c8d7f9b6, controller: true}]}";
  EXPECT_EQ(Of("Pod", kOwned, "{app.kubernetes.io/name: shop, app: web}").service, "shop");
  EXPECT_EQ(Of("Pod", kOwned, "{app: web, pod-template-hash: 5c8d7f9b6}").service, "web");
  EXPECT_EQ(Of("Deployment", "{name: orders}", "{app: web}").service, "web");
  // An empty label does not name it.
  EXPECT_EQ(Of("Pod", "{name: solo}", "{app.kubernetes.io/name: '', app: ''}").service, "solo");
}

TEST(WorkloadTest, APodIsNamedAfterItsControllerResolvedToTheTop) {
  struct Case {
    std::string metadata, labels, service;
  };
  for (const Case& c : std::vector<Case>{
           // A Deployment's ReplicaSet: <deployment>-<pod-template-hash>.
           {"{generateName: orders-5c8d7f9b6-, ownerReferences: [{kind: ReplicaSet, name: "
            "orders-5c8d7f9b6, controller: true}]}",
            "{pod-template-hash: 5c8d7f9b6}", "orders"},
           // A ReplicaSet whose suffix is not the pod's hash is a ReplicaSet of its own.
           {"{generateName: cache-abc-, ownerReferences: [{kind: ReplicaSet, name: cache-abc, "
            "controller: true}]}",
            "{pod-template-hash: 5c8d7f9b6}", "cache-abc"},
           {"{generateName: cache-abc-, ownerReferences: [{kind: ReplicaSet, name: cache-abc, "
            "controller: true}]}",
            "{}", "cache-abc"},
           // A CronJob's Job: <cronjob>-<minutes since 1970>.
           {"{generateName: nightly-report-29403540-, ownerReferences: [{apiVersion: batch/v1, "
            "kind: Job, name: nightly-report-29403540, controller: true}]}",
            "{job-name: nightly-report-29403540}", "nightly-report"},
           // A Job named by hand keeps its name.
           {"{generateName: migrate-2-, ownerReferences: [{kind: Job, name: migrate-2, "
            "controller: true}]}",
            "{}", "migrate-2"},
           {"{generateName: backup-0123456789-, ownerReferences: [{kind: Job, name: "
            "backup-0123456789, controller: true}]}",
            "{}", "backup-0123456789"},
           {"{generateName: x-, ownerReferences: [{kind: Job, name: '29403540', controller: "
            "true}]}",
            "{}", "29403540"},
           {"{name: db-0, ownerReferences: [{kind: StatefulSet, name: db, controller: true}]}",
            "{controller-revision-hash: db-7d4f8}", "db"},
           {"{generateName: x-, ownerReferences: [{kind: DaemonSet, name: x, controller: true}]}",
            "{}", "x"},
           // Any other controller names itself.
           {"{generateName: vm-abc-, ownerReferences: [{kind: VirtualMachineInstance, name: vm, "
            "controller: true}]}",
            "{}", "vm"},
           // The controller among several owners; without `controller`, the first workload kind.
           {"{generateName: a-, ownerReferences: [{kind: ConfigMap, name: c}, {kind: "
            "StatefulSet, name: s, controller: true}]}",
            "{}", "s"},
           {"{generateName: a-, ownerReferences: [{kind: ConfigMap, name: c}, {kind: Job, name: "
            "nightly-report-29403540}]}",
            "{}", "nightly-report"},
           // No controller: the pod's name, or its generateName without the final '-'.
           {"{name: solo, ownerReferences: [{kind: ConfigMap, name: c}]}", "{}", "solo"},
           {"{generateName: web-5d9-}", "{}", "web-5d9"},
           {"{}", "{}", ""},
       }) {
    EXPECT_EQ(Of("Pod", c.metadata, c.labels).service, c.service) << c.metadata;
  }
}

TEST(WorkloadTest, ATemplateIsNamedAfterItsWorkloadAsItsPodsAre) {
  struct Case {
    std::string kind, metadata, labels, service;
  };
  for (const Case& c : std::vector<Case>{
           {"Deployment", "{name: orders}", "{}", "orders"},
           {"StatefulSet", "{name: db}", "{}", "db"},
           {"DaemonSet", "{name: x}", "{}", "x"},
           // The CronJob's own name, not its job template's.
           {"CronJob", "{name: nightly-report}", "{}", "nightly-report"},
           {"Job", "{name: once}", "{}", "once"},
           {"Job", "{generateName: once-}", "{}", "once"},
           // A CronJob's run, by its owner reference or (without one) by its name.
           {"Job",
            "{name: nightly-report-29403540, ownerReferences: [{kind: CronJob, name: "
            "nightly-report, controller: true}]}",
            "{}", "nightly-report"},
           {"Job", "{name: nightly-report-29403540}", "{}", "nightly-report"},
           // A Job some other controller runs is not a CronJob's, whatever its name.
           {"Job",
            "{name: build-29403540, ownerReferences: [{kind: Workflow, name: build, controller: "
            "true}]}",
            "{}", "build-29403540"},
           // A Deployment's ReplicaSet, by its owner reference or by its pod-template-hash.
           {"ReplicaSet",
            "{name: orders-5c8d7f9b6, ownerReferences: [{kind: Deployment, name: orders, "
            "controller: true}]}",
            "{pod-template-hash: 5c8d7f9b6}", "orders"},
           {"ReplicaSet", "{name: orders-5c8d7f9b6}", "{pod-template-hash: 5c8d7f9b6}", "orders"},
           {"ReplicaSet", "{name: cache}", "{}", "cache"},
       }) {
    EXPECT_EQ(Of(c.kind, c.metadata, c.labels).service, c.service) << c.kind << " " << c.metadata;
  }
}

TEST(WorkloadTest, VersionFromTheRecommendedLabelThenVersion) {
  EXPECT_EQ(Of("Pod", "{name: p}", "{app.kubernetes.io/version: 1.4.2, version: v1}").version,
            "1.4.2");
  EXPECT_EQ(Of("Pod", "{name: p}", "{version: v1}").version, "v1");
  EXPECT_EQ(Of("Pod", "{name: p}", "{app: web}").version, "");
  EXPECT_EQ(Of("Pod", "{name: p}", "{app.kubernetes.io/version: '', version: v2}").version, "v2");
}

TEST(WorkloadTest, MalformedInputIsSkipped) {
  // Callers report these as errors; the rule itself reads around them.
  EXPECT_EQ(Of("Pod", "{name: p, ownerReferences: 5}", "{app: [a]}").service, "p");
  EXPECT_EQ(Of("Pod", "{name: p, ownerReferences: [5, {kind: Job}, {name: n}]}", "[]").service,
            "p");
  EXPECT_EQ(Of("Pod", "~", "~").service, "");
}

}  // namespace
}  // namespace meshlet::controlplane::inject

// meshctl upgrade's reading of a namespace (upgrade.h): the namespace's revision from its labels,
// which Deployments a move restarts or leaves alone (pinned, opted out), and when a restart is
// done; the patches it sends.

#include "control-plane/cli/upgrade.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::cli {
namespace {

std::string Deployment(const std::string& name, int replicas, const std::string& template_labels,
                       const std::string& status, int generation = 2) {
  return absl::StrCat(
      R"({"metadata":{"name":")", name, R"(","generation":)", generation,
      R"(},"spec":{"replicas":)", replicas, R"(,"selector":{"matchLabels":{"app":")", name,
      R"("}},"template":{"metadata":{"labels":{"app":")", name, "\"", template_labels,
      R"(},"annotations":{"kubectl.kubernetes.io/restartedAt":"t1"}}}},"status":)", status, "}");
}

std::string Pod(const std::string& app, const std::string& revision, bool ready,
                bool terminating = false) {
  return absl::StrCat(R"({"metadata":{"name":"p","labels":{"app":")", app, R"("},)",
                      terminating ? R"("deletionTimestamp":"2026-01-01T00:00:00Z",)" : "",
                      R"("annotations":{"sidecar.meshlet.io/revision":")", revision,
                      R"("}},"status":{"phase":"Running","conditions":[{"type":"Ready","status":")",
                      ready ? "True" : "False", R"("}]}})");
}

constexpr char kRolledOut[] =
    R"({"observedGeneration":2,"replicas":2,"updatedReplicas":2,"availableReplicas":2})";

TEST(UpgradeTest, ReadsTheNamespacesRevisionFromItsLabels) {
  const std::string none = R"({"items":[]})";
  auto revision = [&](const std::string& labels) {
    absl::StatusOr<NamespaceState> s = ReadNamespace(
        absl::StrCat(R"({"metadata":{"name":"shop","labels":{)", labels, "}}}"), {none}, none);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? s->revision : "(error)";
  };
  EXPECT_EQ(revision(R"("meshlet.io/rev":"canary")"), "canary");
  EXPECT_EQ(revision(R"("meshlet.io/inject":"enabled")"), "default");
  // The revision label wins over the plain one, as the webhooks' selectors have it.
  EXPECT_EQ(revision(R"("meshlet.io/inject":"enabled","meshlet.io/rev":"0-2-0")"), "0-2-0");
  EXPECT_EQ(revision(""), "");
  EXPECT_FALSE(ReadNamespace("[1]", {none}, none).ok());
}

TEST(UpgradeTest, DeploymentsMovedLeftAloneOrDone) {
  const std::string deployments = absl::StrCat(
      R"({"items":[)", Deployment("web", 2, "", kRolledOut), ",",
      Deployment("pinned", 1, R"(,"meshlet.io/rev":"0-2-0")", kRolledOut), ",",
      Deployment("optout", 1, R"(,"sidecar.meshlet.io/inject":"false")", kRolledOut), "]}");
  // web: one pod on each revision (mid-rollout), one terminating.
  const std::string pods =
      absl::StrCat(R"({"items":[)", Pod("web", "0-2-0", true), ",", Pod("web", "canary", true), ",",
                   Pod("web", "0-2-0", true, true), ",", Pod("pinned", "0-2-0", true), "]}");
  absl::StatusOr<NamespaceState> s = ReadNamespace(
      R"({"metadata":{"name":"shop","labels":{"meshlet.io/rev":"0-2-0"}}})", {deployments}, pods);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->workloads.size(), 3u);
  const WorkloadState& optout = s->workloads[0];
  const WorkloadState& pinned = s->workloads[1];
  const WorkloadState& web = s->workloads[2];
  EXPECT_EQ(optout.skip_reason, "its pods opt out of injection");
  absl::StatusOr<NamespaceState> host = ReadNamespace(
      R"({"metadata":{"name":"shop"}})",
      {R"({"items":[{"metadata":{"name":"agent"},"spec":{"template":{"spec":{"hostNetwork":true}}}}]})"},
      R"({"items":[]})");
  ASSERT_TRUE(host.ok()) << host.status();
  EXPECT_EQ(host->workloads.at(0).skip_reason,
            "its pods are on the host's network, which is never injected");
  EXPECT_EQ(pinned.skip_reason,
            "its pods are labelled meshlet.io/rev=0-2-0, which wins over the namespace's");
  EXPECT_EQ(pinned.PodsText(), "1 on 0-2-0");
  EXPECT_EQ(web.skip_reason, "");
  EXPECT_EQ(web.restarted_at, "t1");
  EXPECT_EQ(web.PodsText(), "1 on 0-2-0, 1 on canary");
  EXPECT_EQ(web.terminating, 1);
  EXPECT_FALSE(web.Done("canary"));
  EXPECT_EQ(web.Waiting("canary"),
            "1 pod(s) still on 0-2-0, 1 pod(s) terminating, 1/2 ready on canary");
}

// StatefulSets and DaemonSets: their own status fields say when the rollout is done; the report
// names the kind.
TEST(UpgradeTest, StatefulSetsAndDaemonSetsToo) {
  const std::string pods =
      absl::StrCat(R"({"items":[)", Pod("db", "canary", true), ",", Pod("db", "canary", true), ",",
                   Pod("agent", "canary", true), "]}");
  auto read = [&](const std::string& statefulset_status, const std::string& daemonset_status) {
    absl::StatusOr<NamespaceState> s = ReadNamespace(
        R"({"metadata":{"name":"shop"}})",
        {R"({"items":[]})",
         absl::StrCat(R"({"items":[)", Deployment("db", 2, "", statefulset_status), "]}"),
         absl::StrCat(R"({"items":[)", Deployment("agent", 1, "", daemonset_status), "]}")},
        pods);
    EXPECT_TRUE(s.ok()) << s.status();
    return *s;
  };
  NamespaceState done =
      read(R"({"observedGeneration":2,"replicas":2,"updatedReplicas":2,"readyReplicas":2,)"
           R"("currentRevision":"db-2","updateRevision":"db-2"})",
           R"({"observedGeneration":2,"desiredNumberScheduled":1,"updatedNumberScheduled":1,)"
           R"("numberAvailable":1})");
  ASSERT_EQ(done.workloads.size(), 2u);
  EXPECT_EQ(done.workloads[0].Display(), "statefulset/db");
  EXPECT_EQ(done.workloads[1].Display(), "daemonset/agent");
  EXPECT_TRUE(done.workloads[0].Done("canary"));
  EXPECT_TRUE(done.workloads[1].Done("canary"));
  NamespaceState rolling =
      read(R"({"observedGeneration":2,"replicas":2,"updatedReplicas":2,"readyReplicas":2,)"
           R"("currentRevision":"db-1","updateRevision":"db-2"})",
           R"({"observedGeneration":2,"desiredNumberScheduled":1,"updatedNumberScheduled":0,)"
           R"("numberAvailable":1})");
  EXPECT_FALSE(rolling.workloads[0].Done("canary"));
  EXPECT_EQ(rolling.workloads[0].Waiting("canary"), "the StatefulSet's rollout");
  EXPECT_FALSE(rolling.workloads[1].Done("canary"));
}

TEST(UpgradeTest, DoneOnlyWithEveryPodOnTheRevisionReadyAndTheRolloutComplete) {
  auto state = [](const std::string& status, const std::string& pods) {
    absl::StatusOr<NamespaceState> s =
        ReadNamespace(R"({"metadata":{"name":"shop"}})",
                      {absl::StrCat(R"({"items":[)", Deployment("web", 2, "", status), "]}")},
                      absl::StrCat(R"({"items":[)", pods, "]}"));
    EXPECT_TRUE(s.ok()) << s.status();
    return s->workloads.at(0);
  };
  const std::string both_ready =
      absl::StrCat(Pod("web", "canary", true), ",", Pod("web", "canary", true));
  EXPECT_TRUE(state(kRolledOut, both_ready).Done("canary"));
  // Not for another target.
  EXPECT_FALSE(state(kRolledOut, both_ready).Done(""));
  // One not ready yet.
  EXPECT_FALSE(
      state(kRolledOut, absl::StrCat(Pod("web", "canary", true), ",", Pod("web", "canary", false)))
          .Done("canary"));
  // The controller has not seen the new template (observedGeneration behind).
  EXPECT_FALSE(state(R"({"observedGeneration":1,"replicas":2,"updatedReplicas":2,)"
                     R"("availableReplicas":2})",
                     both_ready)
                   .Done("canary"));
  WorkloadState surge =
      state(R"({"observedGeneration":2,"replicas":3,"updatedReplicas":2,"availableReplicas":3})",
            absl::StrCat(both_ready, ",", Pod("web", "0-2-0", true)));
  EXPECT_FALSE(surge.Done("canary"));
  EXPECT_EQ(surge.Waiting("canary"), "the Deployment's rollout, 1 pod(s) still on 0-2-0");
  // Pods of another Deployment (the selector) do not count.
  EXPECT_TRUE(
      state(kRolledOut, absl::StrCat(both_ready, ",", Pod("other", "0-2-0", true))).Done("canary"));
  // The unnamed revision is "default" on pods.
  EXPECT_TRUE(
      state(kRolledOut, absl::StrCat(Pod("web", "default", true), ",", Pod("web", "default", true)))
          .Done(""));
}

// kind writes a kubeconfig like this one (client certificate, CA inline); others name files or
// carry tokens.
constexpr char kKubeconfig[] = R"(apiVersion: v1
kind: Config
current-context: kind-mesh
contexts:
- name: kind-mesh
  context: {cluster: kind-mesh, user: kind-mesh}
- name: other
  context: {cluster: files, user: token-user}
- name: plugin
  context: {cluster: files, user: exec-user}
- name: nothing
  context: {cluster: files, user: bare}
clusters:
- name: kind-mesh
  cluster: {server: "https://127.0.0.1:6443", certificate-authority-data: Q0EgUEVN}
- name: files
  cluster: {server: "https://10.0.0.1:443", certificate-authority: certs/ca.crt}
- name: plain
  cluster: {server: "http://10.0.0.1:8080"}
users:
- name: kind-mesh
  user: {client-certificate-data: Q0VSVA==, client-key-data: S0VZ}
- name: token-user
  user: {token: abc, client-certificate: /etc/c.pem, client-key: k.pem}
- name: exec-user
  user: {exec: {command: aws}}
- name: bare
  user: {}
)";

TEST(UpgradeTest, KubeconfigCredentialsOfAContext) {
  absl::StatusOr<KubeconfigCredentials> c = ReadKubeconfig(kKubeconfig, "", "/home/me/.kube");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server, "https://127.0.0.1:6443");
  EXPECT_EQ(c->ca_pem, "CA PEM");
  EXPECT_EQ(c->cert_pem, "CERT");
  EXPECT_EQ(c->key_pem, "KEY");
  c = ReadKubeconfig(kKubeconfig, "other", "/home/me/.kube");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->ca_file, "/home/me/.kube/certs/ca.crt");  // relative to the kubeconfig
  EXPECT_EQ(c->token, "abc");
  EXPECT_EQ(c->cert_file, "/etc/c.pem");
  EXPECT_EQ(c->key_file, "/home/me/.kube/k.pem");
  EXPECT_NE(ReadKubeconfig(kKubeconfig, "plugin", "")
                .status()
                .message()
                .find("user exec-user: exec: apiVersion \"\" is not "
                      "client.authentication.k8s.io/v1 or client.authentication.k8s.io/v1beta1"),
            std::string::npos);
  EXPECT_NE(ReadKubeconfig(kKubeconfig, "nothing", "")
                .status()
                .message()
                .find("user bare: no credentials"),
            std::string::npos);
  EXPECT_NE(ReadKubeconfig(kKubeconfig, "gone", "").status().message().find("no context gone"),
            std::string::npos);
  EXPECT_FALSE(ReadKubeconfig("[1]", "", "").ok());
  EXPECT_FALSE(ReadKubeconfig("{", "", "").ok());
}

// Whatever the API server's JSON leaves out or shapes oddly, reading never throws.
TEST(UpgradeTest, OddShapesAreReadWithoutThrowing) {
  for (const char* deployments :
       {R"({"items":{"a":1}})", R"({"items":[1,{"metadata":[]},{"spec":{"template":7}}]})",
        R"({"items":[{"spec":{"selector":{"matchLabels":{"app":"x"}}}}]})", "{}"}) {
    absl::StatusOr<NamespaceState> s =
        ReadNamespace(R"({"metadata":5})", {deployments, deployments},
                      R"({"items":[1,{"metadata":{"labels":{"app":"x"},"annotations":3}},)"
                      R"({"metadata":{"labels":{"app":"x"}},"status":{"conditions":"no"}}]})");
    EXPECT_TRUE(s.ok()) << deployments << ": " << s.status();
  }
  EXPECT_TRUE(ReadKubeconfig(R"({"contexts":{"a":1},"current-context":"a"})", "", "")
                  .status()
                  .message()
                  .find("no context a") != std::string::npos);
}

// --check-proxies: each moved pod's proxy connected to the revision's control plane, reporting
// that revision, with every type it subscribed to ACKED.
TEST(UpgradeTest, ProxiesConnectedToTheRevision) {
  const std::string proxies = R"({"items":[
    {"id":"web-1.shop","revision":"canary","types":{"a":{"state":"ACKED"},"b":{"state":"ACKED"}}},
    {"id":"web-2.shop","revision":"canary","types":{"a":{"state":"ACKED"},"b":{"state":"PENDING"}}},
    {"id":"web-3.shop","revision":"0-2-0","types":{"a":{"state":"ACKED"}}},
    {"id":"web-4.other","revision":"canary","types":{"a":{"state":"ACKED"}}},
    {"id":"web-5.shop","revision":"canary",
     "types":{"a":{"state":"ACKED"},"service_routes":{"state":"UNSUBSCRIBED"}}},
    {"id":"web-6.shop","revision":"canary","types":{"a":{"state":"UNSUBSCRIBED"}}}]})";
  EXPECT_EQ(ProxiesNotConnected(proxies, {"web-1"}, "shop", "canary"), "");
  EXPECT_EQ(ProxiesNotConnected(proxies, {"web-1", "web-2", "web-3", "web-4"}, "shop", "canary"),
            "proxy web-2.shop has not ACKed its configuration, proxy web-3.shop reports revision "
            "0-2-0, proxy web-4.shop not connected");
  EXPECT_EQ(ProxiesNotConnected(proxies, {"web-3"}, "shop", "0-2-0"), "");
  // A sidecar of an older release does not subscribe to the types added since: those do not
  // count; one that subscribed to nothing has ACKed nothing.
  EXPECT_EQ(ProxiesNotConnected(proxies, {"web-5"}, "shop", "canary"), "");
  EXPECT_EQ(ProxiesNotConnected(proxies, {"web-6"}, "shop", "canary"),
            "proxy web-6.shop has not ACKed its configuration");
  EXPECT_EQ(ProxiesNotConnected(R"({"items":[{"id":"a.x"}]})", {"a"}, "x", ""),
            "proxy a.x reports revision none");
  EXPECT_NE(ProxiesNotConnected("[", {"a"}, "x", ""), "");
}

TEST(UpgradeTest, Patches) {
  EXPECT_EQ(NamespaceRevisionPatch("canary"),
            R"({"metadata":{"labels":{"meshlet.io/rev":"canary"}}})");
  EXPECT_EQ(NamespaceRevisionPatch(""),
            R"({"metadata":{"labels":{"meshlet.io/rev":null,"meshlet.io/inject":"enabled"}}})");
  EXPECT_EQ(
      RestartPatch("2026-01-01T00:00:00Z"),
      R"({"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-01-01T00:00:00Z"}}}}})");
}

}  // namespace
}  // namespace meshlet::controlplane::cli

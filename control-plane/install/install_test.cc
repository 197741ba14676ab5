#include "control-plane/install/install.h"

#include <algorithm>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "control-plane/inject/node.h"

namespace meshlet::controlplane::install {
namespace {

using inject::Field;
using inject::Text;

std::vector<YAML::Node> Defaults() {
  absl::StatusOr<std::vector<YAML::Node>> objects = Render(InstallOptions(), "0.1.0");
  EXPECT_TRUE(objects.ok()) << objects.status();
  return objects.ok() ? *objects : std::vector<YAML::Node>{};
}

TEST(InstallTest, DefaultsRenderTheInstallAndPassTheirOwnCheck) {
  const std::vector<YAML::Node> objects = Defaults();
  ASSERT_EQ(objects.size(), 16u);  // with the leader-election and CA Secret Roles and RoleBindings
  EXPECT_EQ(Text(objects[0]["kind"]), "Namespace");
  for (const YAML::Node& o : objects) {
    EXPECT_EQ(Text(o["metadata"]["labels"]["app.kubernetes.io/part-of"]), "meshlet");
    if (Text(o["kind"]) == "Deployment") {
      EXPECT_EQ(Text(o["spec"]["template"]["spec"]["containers"][0]["image"]),
                "meshlet-control-plane:0.1.0");
      EXPECT_EQ(
          Text(o["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]),
          "meshlet-control-plane-data");
    }
  }
  EXPECT_TRUE(CheckInstall(objects).empty());
}

// --set cni=true: the node agent's DaemonSet (k8s/cni) before the control plane, which injects
// for the plugin; the install's checks pass; uninstalling a revision keeps the shared agent.
TEST(InstallTest, CniModeRendersTheNodeAgentAndInjectsForIt) {
  InstallOptions options;
  ASSERT_TRUE(SetOption(options, "cni=true").ok());
  ASSERT_TRUE(SetOption(options, "namespace=mesh").ok());
  EXPECT_FALSE(SetOption(options, "cni=yes").ok());
  absl::StatusOr<std::vector<YAML::Node>> objects = Render(options, "0.1.0");
  ASSERT_TRUE(objects.ok()) << objects.status();
  ASSERT_EQ(objects->size(), Defaults().size() + 4);
  int daemonset = -1, deployment = -1;
  for (size_t i = 0; i < objects->size(); ++i) {
    const YAML::Node& o = (*objects)[i];
    const std::string kind = Text(o["kind"]);
    if (kind == "DaemonSet") daemonset = static_cast<int>(i);
    if (kind == "Deployment") deployment = static_cast<int>(i);
    if (kind != "ClusterRole" && kind != "ClusterRoleBinding" && kind != "Namespace" &&
        kind != "MutatingWebhookConfiguration") {
      EXPECT_EQ(Text(o["metadata"]["namespace"]), "mesh") << kind;
    }
    if (Text(o["metadata"]["name"]) == "meshlet-cni" && kind == "ClusterRoleBinding") {
      EXPECT_EQ(Text(o["subjects"][0]["namespace"]), "mesh");
    }
  }
  ASSERT_GE(daemonset, 0);
  ASSERT_GT(deployment, daemonset);
  const YAML::Node agent = (*objects)[daemonset];
  EXPECT_EQ(Text(agent["spec"]["template"]["spec"]["containers"][0]["image"]), "meshlet-cni:0.1.0");
  EXPECT_EQ(Text(agent["spec"]["selector"]["matchLabels"]["app.kubernetes.io/part-of"]), "meshlet");
  std::vector<std::string> args;
  for (const YAML::Node& arg :
       (*objects)[deployment]["spec"]["template"]["spec"]["containers"][0]["args"]) {
    args.push_back(arg.Scalar());
  }
  EXPECT_NE(std::find(args.begin(), args.end(), "--inject-capture=cni"), args.end());
  EXPECT_TRUE(CheckInstall(*objects).empty()) << absl::StrJoin(CheckInstall(*objects), "\n");
  for (const YAML::Node& o : UninstallOrder(*objects, false, /*revision=*/true)) {
    EXPECT_NE(Text(o["kind"]), "DaemonSet");
  }
  // The repair mode: the agent's flag and the least RBAC for it.
  auto agent_and_role = [&](absl::string_view mode) {
    InstallOptions with = options;
    EXPECT_TRUE(SetOption(with, absl::StrCat("cniRepair=", mode)).ok());
    absl::StatusOr<std::vector<YAML::Node>> rendered = Render(with, "0.1.0");
    EXPECT_TRUE(rendered.ok());
    std::string flag, rules;
    for (const YAML::Node& o : rendered.ok() ? *rendered : std::vector<YAML::Node>{}) {
      if (Text(o["kind"]) == "DaemonSet") {
        for (const YAML::Node& arg : o["spec"]["template"]["spec"]["containers"][0]["args"]) {
          if (absl::StartsWith(arg.Scalar(), "--repair-mode=")) flag = arg.Scalar();
        }
      }
      if (Text(o["kind"]) == "ClusterRole" && Text(o["metadata"]["name"]) == "meshlet-cni") {
        for (const YAML::Node& rule : o["rules"]) {
          std::vector<std::string> verbs;
          for (const YAML::Node& verb : rule["verbs"]) verbs.push_back(verb.Scalar());
          absl::StrAppend(&rules, rule["resources"][0].Scalar(), ":", absl::StrJoin(verbs, ","),
                          " ");
        }
      }
    }
    return absl::StrCat(flag, " ", rules);
  };
  EXPECT_EQ(agent_and_role("evict"),
            "--repair-mode=evict pods:get,list pods/eviction:create daemonsets:get ");
  EXPECT_EQ(agent_and_role("label"), "--repair-mode=label pods:get,list,patch daemonsets:get ");
  EXPECT_EQ(agent_and_role("off"), "--repair-mode=off pods:get,list daemonsets:get ");
  EXPECT_FALSE(SetOption(options, "cniRepair=delete").ok());
  // Without it: no agent, and the control plane injects meshlet-init as before.
  for (const YAML::Node& o : Defaults()) EXPECT_NE(Text(o["kind"]), "DaemonSet");
  ASSERT_TRUE(SetOption(options, "cniImage=registry.example/meshlet-cni:9").ok());
  objects = Render(options, "0.1.0");
  ASSERT_TRUE(objects.ok());
  for (const YAML::Node& o : *objects) {
    if (Text(o["kind"]) == "DaemonSet") {
      EXPECT_EQ(Text(o["spec"]["template"]["spec"]["containers"][0]["image"]),
                "registry.example/meshlet-cni:9");
    }
  }
}

// A revision beside the unnamed install: its own names everywhere they are its own, the mesh's
// namespace and operator roles shared, its webhook selecting the namespaces and pods labelled
// for it, the CA from the shared Secret; and it passes the install's own checks.
// --set gateway=true: the GatewayClass meshlet (k8s/gateway) after the control plane, cluster-
// scoped, of meshlet's controller; a revision's uninstall keeps it (the mesh's, shared). The
// control plane's read of Secrets comes with it, bound to the install's (or revision's) account.
TEST(InstallTest, GatewayRendersTheGatewayClassAfterTheControlPlane) {
  InstallOptions options;
  EXPECT_FALSE(SetOption(options, "gateway=yes").ok());
  ASSERT_TRUE(SetOption(options, "gateway=true").ok());
  ASSERT_TRUE(SetOption(options, "namespace=mesh").ok());
  absl::StatusOr<std::vector<YAML::Node>> objects = Render(options, "0.1.0");
  ASSERT_TRUE(objects.ok()) << objects.status();
  ASSERT_EQ(objects->size(), Defaults().size() + 3);
  const YAML::Node role = (*objects)[objects->size() - 3];
  const YAML::Node binding = (*objects)[objects->size() - 2];
  EXPECT_EQ(Text(role["kind"]), "ClusterRole");
  EXPECT_EQ(Text(role["rules"][0]["resources"][0]), "secrets");
  EXPECT_EQ(role["rules"][0]["verbs"].size(), 3u);
  EXPECT_EQ(Text(binding["kind"]), "ClusterRoleBinding");
  EXPECT_EQ(Text(binding["roleRef"]["name"]), Text(role["metadata"]["name"]));
  EXPECT_EQ(Text(binding["subjects"][0]["name"]), "meshlet-control-plane");
  EXPECT_EQ(Text(binding["subjects"][0]["namespace"]), "mesh");
  const YAML::Node gateway_class = objects->back();
  EXPECT_EQ(Text(gateway_class["apiVersion"]), "gateway.networking.k8s.io/v1");
  EXPECT_EQ(Text(gateway_class["kind"]), "GatewayClass");
  EXPECT_EQ(Text(gateway_class["metadata"]["name"]), "meshlet");
  EXPECT_FALSE(gateway_class["metadata"]["namespace"].IsDefined());
  EXPECT_EQ(Text(gateway_class["metadata"]["labels"]["app.kubernetes.io/part-of"]), "meshlet");
  EXPECT_EQ(Text(gateway_class["spec"]["controllerName"]), "meshlet.io/gateway-controller");
  EXPECT_TRUE(CheckInstall(*objects).empty());
  // Uninstalling removes it first, or keeps it for a revision.
  EXPECT_EQ(Text(UninstallOrder(*objects, false).front()["kind"]), "GatewayClass");
  for (const YAML::Node& o : UninstallOrder(*objects, false, /*revision=*/true)) {
    EXPECT_NE(Text(o["kind"]), "GatewayClass");
  }
  // Not rendered by default.
  for (const YAML::Node& o : Defaults()) {
    EXPECT_NE(Text(o["kind"]), "GatewayClass");
    EXPECT_NE(Text(o["metadata"]["name"]), "meshlet-control-plane-gateway");
  }
  // A revision's: its own role, binding and account.
  ASSERT_TRUE(SetOption(options, "revision=canary").ok());
  objects = Render(options, "0.1.0");
  ASSERT_TRUE(objects.ok()) << objects.status();
  const YAML::Node canary_binding = (*objects)[objects->size() - 2];
  EXPECT_EQ(Text(canary_binding["metadata"]["name"]), "meshlet-control-plane-canary-gateway");
  EXPECT_EQ(Text(canary_binding["roleRef"]["name"]), "meshlet-control-plane-canary-gateway");
  EXPECT_EQ(Text(canary_binding["subjects"][0]["name"]), "meshlet-control-plane-canary");
}

TEST(InstallTest, ARevisionHasItsOwnNamesAndWebhookAndSharesTheCa) {
  InstallOptions options;
  ASSERT_TRUE(SetOption(options, "revision=canary").ok());
  ASSERT_TRUE(SetOption(options, "caSecret=meshlet-ca").ok());
  absl::StatusOr<std::vector<YAML::Node>> objects = Render(options, "0.1.0");
  ASSERT_TRUE(objects.ok()) << objects.status();
  std::vector<std::string> names;
  for (const YAML::Node& o : *objects) {
    names.push_back(absl::StrCat(Text(o["kind"]), "/", Text(o["metadata"]["name"])));
  }
  for (const char* want :
       {"Namespace/meshlet-system", "ServiceAccount/meshlet-control-plane-canary",
        "Deployment/meshlet-control-plane-canary", "Service/meshlet-control-plane-canary",
        "ClusterRole/meshlet-viewer", "PersistentVolumeClaim/meshlet-control-plane-canary-data",
        "Role/meshlet-control-plane-canary-leader-election", "Role/meshlet-control-plane-canary-ca",
        "RoleBinding/meshlet-control-plane-canary-ca",
        "MutatingWebhookConfiguration/meshlet-sidecar-injector-canary"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  }
  for (const YAML::Node& o : *objects) {
    const std::string kind = Text(o["kind"]);
    if (kind == "Service") {
      EXPECT_EQ(Text(o["spec"]["selector"]["app"]), "meshlet-control-plane-canary");
    }
    if (kind == "Deployment") {
      const YAML::Node spec = o["spec"]["template"]["spec"];
      EXPECT_EQ(Text(spec["serviceAccountName"]), "meshlet-control-plane-canary");
      std::vector<std::string> args;
      for (const YAML::Node& a : spec["containers"][0]["args"]) args.push_back(a.Scalar());
      for (const char* want : {"--revision=canary", "--ca-cert=/etc/meshlet/ca/tls.crt",
                               "--ca-key=/etc/meshlet/ca/tls.key"}) {
        EXPECT_NE(std::find(args.begin(), args.end(), want), args.end()) << want;
      }
    }
    if (kind == "MutatingWebhookConfiguration") {
      const YAML::Node hooks = o["webhooks"];
      ASSERT_EQ(hooks.size(), 2u);
      EXPECT_EQ(Text(hooks[0]["clientConfig"]["service"]["name"]), "meshlet-control-plane-canary");
      EXPECT_EQ(Text(hooks[0]["namespaceSelector"]["matchExpressions"][0]["key"]),
                "meshlet.io/rev");
      EXPECT_EQ(Text(hooks[0]["namespaceSelector"]["matchExpressions"][0]["values"][0]), "canary");
      EXPECT_EQ(Text(hooks[0]["objectSelector"]["matchExpressions"][0]["operator"]),
                "DoesNotExist");
      EXPECT_EQ(Text(hooks[1]["objectSelector"]["matchExpressions"][0]["values"][0]), "canary");
      EXPECT_NE(Text(hooks[0]["name"]), Text(hooks[1]["name"]));
    }
  }
  EXPECT_TRUE(CheckInstall(*objects).empty()) << absl::StrJoin(CheckInstall(*objects), "\n");
  // Uninstalling the revision keeps what the mesh's other revisions share.
  for (const YAML::Node& o : UninstallOrder(*objects, false, true)) {
    EXPECT_NE(Text(o["kind"]), "Namespace");
    EXPECT_NE(Text(o["metadata"]["name"]), "meshlet-viewer");
  }
  // The unnamed install's webhooks leave labelled namespaces and pods to their revision.
  for (const YAML::Node& o : Defaults()) {
    if (Text(o["kind"]) != "MutatingWebhookConfiguration") continue;
    for (const YAML::Node& hook : o["webhooks"]) {
      int excluded = 0;
      for (const char* selector : {"namespaceSelector", "objectSelector"}) {
        for (const YAML::Node& e : hook[selector]["matchExpressions"]) {
          excluded += Text(e["key"]) == "meshlet.io/rev" && Text(e["operator"]) == "DoesNotExist";
        }
      }
      EXPECT_EQ(excluded, 2) << Text(hook["name"]);
    }
  }
  InstallOptions bad;
  EXPECT_NE(SetOption(bad, "revision=Canary").message().find("is not a revision name"),
            std::string::npos);
}

TEST(InstallTest, SetOptionRefusesWithTheReason) {
  InstallOptions options;
  EXPECT_TRUE(SetOption(options, "namespace=mesh").ok());
  EXPECT_EQ(options.namespace_, "mesh");
  EXPECT_TRUE(SetOption(options, "image=a/b:c=d").ok());  // only the first '=' splits
  EXPECT_EQ(options.image, "a/b:c=d");
  EXPECT_FALSE(SetOption(options, "replicas=0").ok());
  EXPECT_NE(SetOption(options, "etcd=etcd://etcd:2379").message().find("https://HOST:PORT"),
            std::string::npos);
  EXPECT_NE(SetOption(options, "etcd=https://etcd:2379,etcd-1").message().find("etcd-1"),
            std::string::npos);
  EXPECT_NE(SetOption(options, "etcd.insecurePlaintext=yes").message().find("true or false"),
            std::string::npos);
  EXPECT_NE(SetOption(options, "colour=blue").message().find("known: namespace, image"),
            std::string::npos);
  EXPECT_FALSE(SetOption(options, "=x").ok());
  EXPECT_FALSE(SetOption(options, "storeSize=-1Gi").ok());
  EXPECT_FALSE(SetOption(options, "trustDomain=Example.org").ok());
  EXPECT_FALSE(SetOption(options, "clusterName=West_1").ok());
  // A cluster name turns multicluster on: the control plane's flag.
  ASSERT_TRUE(SetOption(options, "clusterName=west").ok());
  options.namespace_ = "meshlet-system";
  absl::StatusOr<std::vector<YAML::Node>> rendered = Render(options, "0.1.0");
  ASSERT_TRUE(rendered.ok()) << rendered.status();
  bool flag = false;
  for (const YAML::Node& o : *rendered) {
    if (Text(o["kind"]) != "Deployment") continue;
    for (const YAML::Node& arg : o["spec"]["template"]["spec"]["containers"][0]["args"]) {
      flag |= arg.Scalar() == "--cluster-name=west";
    }
  }
  EXPECT_TRUE(flag);
}

TEST(InstallTest, SeveralReplicasShareAnEtcdStore) {
  InstallOptions options;
  ASSERT_TRUE(SetOption(options, "replicas=3").ok());
  // Without etcd, more than one replica is refused, saying why.
  absl::StatusOr<std::vector<YAML::Node>> refused = Render(options, "0.1.0");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("--set etcd=https://HOST:PORT"), std::string::npos);

  // An https:// etcd needs its client Secret; an http:// one the explicit insecure setting.
  ASSERT_TRUE(SetOption(options, "etcd=https://etcd-0.etcd:2379,etcd-1.etcd:2379").ok());
  refused = Render(options, "0.1.0");
  EXPECT_NE(refused.status().message().find("needs --set etcd.tlsSecret=NAME"), std::string::npos)
      << refused.status();
  InstallOptions plaintext = options;
  ASSERT_TRUE(SetOption(plaintext, "etcd=http://etcd-0.etcd:2379").ok());
  refused = Render(plaintext, "0.1.0");
  EXPECT_NE(refused.status().message().find("a plaintext etcd is refused"), std::string::npos)
      << refused.status();
  ASSERT_TRUE(SetOption(plaintext, "etcd.insecurePlaintext=true").ok());
  absl::StatusOr<std::vector<YAML::Node>> insecure = Render(plaintext, "0.1.0");
  ASSERT_TRUE(insecure.ok()) << insecure.status();
  for (const YAML::Node& o : *insecure) {
    if (Text(o["kind"]) != "Deployment") continue;
    std::vector<std::string> args;
    for (const YAML::Node& a : o["spec"]["template"]["spec"]["containers"][0]["args"]) {
      args.push_back(a.Scalar());
    }
    EXPECT_NE(std::find(args.begin(), args.end(), "--etcd-insecure-plaintext"), args.end());
  }

  // TLS to etcd from a Secret: mounted read-only, the three flags pointing into it.
  ASSERT_TRUE(SetOption(options, "etcd.tlsSecret=etcd-client").ok());
  absl::StatusOr<std::vector<YAML::Node>> objects = Render(options, "0.1.0");
  ASSERT_TRUE(objects.ok()) << objects.status();
  bool deployment = false;
  for (const YAML::Node& o : *objects) {
    EXPECT_NE(Text(o["kind"]), "PersistentVolumeClaim");  // the state is in etcd
    EXPECT_NE(Text(o["kind"]), "CronJob");                // nothing to renew
    if (Text(o["kind"]) == "Role" && Text(o["metadata"]["name"]) == "meshlet-install") {
      // The Job makes the store key alone: it reads that Secret only, updates none.
      std::vector<std::string> verbs, names;
      for (const YAML::Node& rule : o["rules"]) {
        for (const YAML::Node& v : rule["verbs"]) verbs.push_back(v.Scalar());
        for (const YAML::Node& n : rule["resourceNames"]) names.push_back(n.Scalar());
      }
      EXPECT_EQ(verbs, (std::vector<std::string>{"create", "get"}));
      EXPECT_EQ(names, (std::vector<std::string>{"meshlet-store-key"}));
    }
    if (Text(o["kind"]) != "Deployment") continue;
    deployment = true;
    EXPECT_EQ(o["spec"]["replicas"].as<int>(), 3);
    EXPECT_EQ(Text(o["spec"]["strategy"]["type"]), "RollingUpdate");
    EXPECT_EQ(o["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"].as<int>(), 0);
    const YAML::Node container = o["spec"]["template"]["spec"]["containers"][0];
    std::vector<std::string> args;
    for (const YAML::Node& a : container["args"]) args.push_back(a.Scalar());
    EXPECT_NE(
        std::find(args.begin(), args.end(), "--store=https://etcd-0.etcd:2379,etcd-1.etcd:2379"),
        args.end());
    EXPECT_NE(std::find(args.begin(), args.end(), "--replica-name=$(POD_NAME)"), args.end());
    EXPECT_NE(std::find(args.begin(), args.end(), "--replica-address=$(POD_IP)"), args.end());
    bool pod_name = false, pod_ip = false;
    for (const YAML::Node& env : container["env"]) {
      pod_name = pod_name || (Text(env["name"]) == "POD_NAME" &&
                              Text(env["valueFrom"]["fieldRef"]["fieldPath"]) == "metadata.name");
      pod_ip = pod_ip || (Text(env["name"]) == "POD_IP" &&
                          Text(env["valueFrom"]["fieldRef"]["fieldPath"]) == "status.podIP");
    }
    EXPECT_TRUE(pod_name);
    EXPECT_TRUE(pod_ip);
    EXPECT_TRUE(o["spec"]["template"]["spec"]["volumes"][0]["emptyDir"].IsDefined());
  }
  EXPECT_TRUE(deployment);
  EXPECT_TRUE(CheckInstall(*objects).empty());
  // The store key and the TLS Secret mounted read-only, the flags pointing into them; the Job
  // that makes the store key rendered before the Deployment.
  bool job = false;
  for (const YAML::Node& o : *objects) {
    if (Text(o["kind"]) == "Job") {
      job = true;
      std::vector<std::string> args;
      for (const YAML::Node& a : o["spec"]["template"]["spec"]["containers"][0]["args"]) {
        args.push_back(a.Scalar());
      }
      EXPECT_EQ(args, (std::vector<std::string>{
                          "install", "--secrets", "--create", "--set=namespace=meshlet-system",
                          "--set=etcd=https://etcd-0.etcd:2379,etcd-1.etcd:2379"}));
      EXPECT_EQ(Text(o["spec"]["template"]["spec"]["containers"][0]["image"]),
                "meshlet-control-plane:0.1.0");
    }
    if (Text(o["kind"]) != "Deployment") continue;
    EXPECT_TRUE(job) << "the Job comes before the Deployment";
    const YAML::Node pod = o["spec"]["template"]["spec"];
    ASSERT_EQ(pod["volumes"].size(), 3u);
    EXPECT_EQ(Text(pod["volumes"][1]["secret"]["secretName"]), "meshlet-store-key");
    EXPECT_EQ(Text(pod["volumes"][2]["secret"]["secretName"]), "etcd-client");
    const YAML::Node container = pod["containers"][0];
    EXPECT_EQ(Text(container["volumeMounts"][1]["mountPath"]), "/etc/meshlet/store-key");
    EXPECT_EQ(Text(container["volumeMounts"][2]["mountPath"]), "/etc/meshlet/etcd");
    EXPECT_EQ(Text(container["volumeMounts"][2]["readOnly"]), "true");
    std::vector<std::string> args;
    for (const YAML::Node& a : container["args"]) args.push_back(a.Scalar());
    for (const char* flag :
         {"--etcd-cacert=/etc/meshlet/etcd/ca.crt", "--etcd-cert=/etc/meshlet/etcd/tls.crt",
          "--etcd-key=/etc/meshlet/etcd/tls.key",
          "--store-encryption-key-file=/etc/meshlet/store-key/store-key"}) {
      EXPECT_NE(std::find(args.begin(), args.end(), flag), args.end()) << flag;
    }
    EXPECT_EQ(std::find(args.begin(), args.end(), "--etcd-insecure-plaintext"), args.end());
  }
  EXPECT_TRUE(job);
  EXPECT_TRUE(CheckInstall(*objects).empty());
  InstallOptions no_etcd;
  ASSERT_TRUE(SetOption(no_etcd, "etcd.tlsSecret=etcd-client").ok());
  EXPECT_NE(Render(no_etcd, "0.1.0").status().message().find("need --set etcd="),
            std::string::npos);
  EXPECT_FALSE(SetOption(no_etcd, "etcd.tlsSecret=Not_A_Name").ok());

  // The check: an etcd store without the flags the control plane needs with it.
  for (const auto& [drop, expected] : std::vector<std::pair<std::string, std::string>>{
           {"--store-encryption-key-file", "without --store-encryption-key-file"},
           {"--etcd-cacert", "an https:// --store without --etcd-cacert"}}) {
    std::vector<YAML::Node> edited;
    for (const YAML::Node& o : *objects) edited.push_back(YAML::Clone(o));
    for (YAML::Node o : edited) {
      if (Text(o["kind"]) != "Deployment") continue;
      YAML::Node kept(YAML::NodeType::Sequence);
      for (const YAML::Node& a : o["spec"]["template"]["spec"]["containers"][0]["args"]) {
        if (a.Scalar().rfind(drop, 0) != 0) kept.push_back(a);
      }
      o["spec"]["template"]["spec"]["containers"][0]["args"] = kept;
    }
    std::vector<std::string> found = CheckInstall(edited);
    ASSERT_EQ(found.size(), 1u) << drop;
    EXPECT_NE(found[0].find(expected), std::string::npos) << found[0];
  }
  for (YAML::Node o : *insecure) {
    if (Text(o["kind"]) != "Deployment") continue;
    YAML::Node kept(YAML::NodeType::Sequence);
    for (const YAML::Node& a : o["spec"]["template"]["spec"]["containers"][0]["args"]) {
      if (a.Scalar() != "--etcd-insecure-plaintext") kept.push_back(a);
    }
    o["spec"]["template"]["spec"]["containers"][0]["args"] = kept;
  }
  std::vector<std::string> plaintext_problems = CheckInstall(*insecure);
  ASSERT_EQ(plaintext_problems.size(), 1u);
  EXPECT_NE(plaintext_problems[0].find("without --etcd-insecure-plaintext"), std::string::npos);

  // The check: replicas over 1 with the file store is a problem; with etcd it is not.
  std::vector<YAML::Node> file_store = Defaults();
  for (YAML::Node o : file_store) {
    if (Text(o["kind"]) == "Deployment") o["spec"]["replicas"] = 2;
  }
  std::vector<std::string> problems = CheckInstall(file_store);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("spec.replicas: must be 1 unless the store is etcd"),
            std::string::npos);
}

TEST(InstallTest, ABundledEtcdIsRenderedBeforeTheReplicasThatUseIt) {
  InstallOptions options;
  for (const char* set : {"namespace=mesh", "replicas=3", "etcd=bundled",
                          "etcd.image=registry.example/etcd:3.5", "etcd.storageSize=4Gi"}) {
    ASSERT_TRUE(SetOption(options, set).ok()) << set;
  }
  absl::StatusOr<std::vector<YAML::Node>> objects = Render(options, "0.1.0");
  ASSERT_TRUE(objects.ok()) << objects.status();
  std::vector<std::string> kinds;
  for (const YAML::Node& o : *objects) {
    const std::string kind = Text(o["kind"]);
    if (Text(o["metadata"]["name"]) == "meshlet-etcd") {
      kinds.push_back(kind);
      EXPECT_EQ(Text(o["metadata"]["namespace"]), "mesh");
      EXPECT_EQ(Text(o["metadata"]["labels"]["app.kubernetes.io/part-of"]), "meshlet");
    }
    if (kind == "StatefulSet") {
      EXPECT_EQ(o["spec"]["replicas"].as<int>(), 3);
      EXPECT_EQ(Text(o["spec"]["template"]["spec"]["containers"][0]["image"]),
                "registry.example/etcd:3.5");
      EXPECT_EQ(
          Text(o["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]),
          "4Gi");
      // The selector still matches the pods after the common label.
      for (auto it = o["spec"]["selector"]["matchLabels"].begin();
           it != o["spec"]["selector"]["matchLabels"].end(); ++it) {
        EXPECT_EQ(Text(o["spec"]["template"]["metadata"]["labels"][it->first.Scalar()]),
                  Text(it->second));
      }
    }
    if (kind == "Job" || kind == "CronJob") {
      // The install Job, and the CronJob that renews the certificates with the same command.
      kinds.push_back(kind);
      const YAML::Node job = kind == "Job" ? o : o["spec"]["jobTemplate"];
      const YAML::Node pod = job["spec"]["template"]["spec"];
      EXPECT_EQ(Text(pod["serviceAccountName"]), "meshlet-install");
      EXPECT_EQ(Text(pod["containers"][0]["image"]), "meshlet-control-plane:0.1.0");
      std::vector<std::string> args;
      for (const YAML::Node& a : pod["containers"][0]["args"]) args.push_back(a.Scalar());
      EXPECT_EQ(args, (std::vector<std::string>{
                          "install", "--secrets", "--create", "--set=namespace=mesh",
                          "--set=etcd=bundled", "--set=etcd.certificateDays=365",
                          "--set=etcd.caDays=3650", "--set=etcd.renewBeforeDays=30"}));
    }
    if (kind == "Role" && Text(o["metadata"]["name"]) == "meshlet-install") {
      // Update on the two certificates' Secrets alone; the CA's read, never updated.
      std::vector<std::string> updated;
      for (const YAML::Node& rule : o["rules"]) {
        for (const YAML::Node& verb : rule["verbs"]) {
          if (verb.Scalar() != "update") continue;
          for (const YAML::Node& name : rule["resourceNames"]) updated.push_back(name.Scalar());
          EXPECT_EQ(rule["resources"].size(), 1u);
          EXPECT_EQ(Text(rule["resources"][0]), "secrets");
        }
      }
      EXPECT_EQ(updated, (std::vector<std::string>{"meshlet-etcd-member", "meshlet-etcd-client"}));
    }
    if (kind == "RoleBinding") {
      EXPECT_EQ(Text(o["subjects"][0]["namespace"]), "mesh");
    }
    if (kind == "StatefulSet") {
      const YAML::Node pod = o["spec"]["template"]["spec"];
      EXPECT_EQ(Text(pod["volumes"][0]["secret"]["secretName"]), "meshlet-etcd-member");
      std::vector<std::string> args;
      for (const YAML::Node& a : pod["containers"][0]["args"]) args.push_back(a.Scalar());
      for (const char* flag : {"--client-cert-auth", "--peer-client-cert-auth",
                               "--listen-client-urls=https://0.0.0.0:2379",
                               "--listen-peer-urls=https://0.0.0.0:2380"}) {
        EXPECT_NE(std::find(args.begin(), args.end(), flag), args.end()) << flag;
      }
    }
    if (kind == "Deployment") {
      // Everything of the store exists before the replicas start, the Job that makes its
      // Secrets first.
      EXPECT_EQ(kinds,
                (std::vector<std::string>{"Job", "Service", "StatefulSet", "PodDisruptionBudget",
                                          "NetworkPolicy", "CronJob"}));
      const YAML::Node pod = o["spec"]["template"]["spec"];
      std::vector<std::string> args;
      for (const YAML::Node& a : pod["containers"][0]["args"]) args.push_back(a.Scalar());
      for (const char* flag :
           {"--store=https://meshlet-etcd-0.meshlet-etcd.mesh.svc:2379,"
            "meshlet-etcd-1.meshlet-etcd.mesh.svc:2379,meshlet-etcd-2.meshlet-etcd.mesh.svc:2379",
            "--etcd-cacert=/etc/meshlet/etcd/ca.crt", "--etcd-cert=/etc/meshlet/etcd/tls.crt",
            "--etcd-key=/etc/meshlet/etcd/tls.key",
            "--store-encryption-key-file=/etc/meshlet/store-key/store-key"}) {
        EXPECT_NE(std::find(args.begin(), args.end(), flag), args.end()) << flag;
      }
      EXPECT_EQ(std::find(args.begin(), args.end(), "--etcd-insecure-plaintext"), args.end());
      EXPECT_EQ(Text(pod["volumes"][2]["secret"]["secretName"]), "meshlet-etcd-client");
    }
    EXPECT_NE(kind, "PersistentVolumeClaim");  // the control plane's state is in etcd
  }
  EXPECT_EQ(kinds.size(), 6u);
  EXPECT_TRUE(CheckInstall(*objects).empty());

  // A client Secret is for an etcd of one's own; the etcd.* settings only for the bundled one.
  ASSERT_TRUE(SetOption(options, "etcd.tlsSecret=etcd-client").ok());
  absl::StatusOr<std::vector<YAML::Node>> refused = Render(options, "0.1.0");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("for an etcd of your own"), std::string::npos);
  EXPECT_FALSE(SetOption(options, "etcd.certificateDays=0").ok());
  InstallOptions other;
  ASSERT_TRUE(SetOption(other, "etcd.storageSize=2Gi").ok());
  refused = Render(other, "0.1.0");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("only with --set etcd=bundled"), std::string::npos);
}

TEST(InstallTest, UninstallStartsWithTheWebhookAndKeepsDataWhenAsked) {
  const std::vector<YAML::Node> objects = Defaults();
  const std::vector<YAML::Node> all = UninstallOrder(objects, false);
  ASSERT_EQ(all.size(), objects.size());
  EXPECT_EQ(Text(all.front()["kind"]), "MutatingWebhookConfiguration");
  EXPECT_EQ(Text(all.back()["kind"]), "Namespace");
  const std::vector<YAML::Node> kept = UninstallOrder(objects, true);
  EXPECT_EQ(kept.size(), objects.size() - 2);
  for (const YAML::Node& o : kept) {
    EXPECT_NE(Text(o["kind"]), "Namespace");
    EXPECT_NE(Text(o["kind"]), "PersistentVolumeClaim");
  }
}

TEST(InstallTest, CheckNeverThrowsOnOddShapes) {
  for (const char* odd : {
           "{kind: Deployment, metadata: {name: meshlet-control-plane}, spec: [1, 2]}",
           "{kind: Deployment, metadata: {name: meshlet-control-plane}, spec: {template: {spec: "
           "{containers: {a: b}}}}}",
           "{kind: Deployment, metadata: [x], spec: {template: {spec: {containers: [7]}}}}",
           "{kind: MutatingWebhookConfiguration, webhooks: {a: 1}}",
           "{kind: MutatingWebhookConfiguration, webhooks: [[1], {clientConfig: [2]}]}",
           "{kind: ClusterRoleBinding, subjects: 3}",
           "{kind: Service, spec: {ports: {x: 1}, selector: [1]}}",
       }) {
    std::vector<YAML::Node> objects = Defaults();
    objects.push_back(YAML::Load(odd));
    std::vector<std::string> problems = CheckInstall(objects);  // returns, whatever it says
    SUCCEED() << odd << ": " << problems.size();
    std::vector<YAML::Node> alone = {YAML::Load(odd)};
    EXPECT_FALSE(CheckInstall(alone).empty()) << odd;
  }
}

}  // namespace
}  // namespace meshlet::controlplane::install

#include "control-plane/install/install.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

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
  ASSERT_EQ(objects.size(), 9u);
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

TEST(InstallTest, SetOptionRefusesWithTheReason) {
  InstallOptions options;
  EXPECT_TRUE(SetOption(options, "namespace=mesh").ok());
  EXPECT_EQ(options.namespace_, "mesh");
  EXPECT_TRUE(SetOption(options, "image=a/b:c=d").ok());  // only the first '=' splits
  EXPECT_EQ(options.image, "a/b:c=d");
  EXPECT_EQ(SetOption(options, "replicas=2")
                .message()
                .find("replicas=\"2\": the control plane "
                      "keeps its policies in a file store"),
            0u);
  EXPECT_NE(SetOption(options, "colour=blue").message().find("known: namespace, image"),
            std::string::npos);
  EXPECT_FALSE(SetOption(options, "=x").ok());
  EXPECT_FALSE(SetOption(options, "storeSize=-1Gi").ok());
  EXPECT_FALSE(SetOption(options, "trustDomain=Example.org").ok());
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

// meshctl tag's objects (tag.h): the tag's webhook configuration is the install's selection
// for a revision named like the tag, pointed at the revision's webhook on the tag's path; the
// deactivation of the unnamed revision's configuration comes and goes whole.

#include "control-plane/cli/tag.h"

#include <string>

#include "control-plane/inject/node.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::cli {
namespace {

// What the revision canary's control plane keeps in its configuration.
YAML::Node CanaryConfiguration() {
  return YAML::Load(R"(
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: meshlet-sidecar-injector-canary}
webhooks:
- name: namespace.canary.sidecar.meshlet.io
  failurePolicy: Ignore
  timeoutSeconds: 5
  clientConfig:
    caBundle: Q0E=
    service: {name: meshlet-control-plane-canary, namespace: mesh, path: /inject, port: 443}
)");
}

std::string Expressions(const YAML::Node& selector) {
  std::string out;
  for (const YAML::Node& e : selector["matchExpressions"]) {
    out += e["key"].Scalar() + " " + e["operator"].Scalar();
    for (const YAML::Node& v : e["values"]) out += " " + v.Scalar();
    out += "; ";
  }
  return out;
}

TEST(TagTest, TheTagsConfigurationSelectsItsPodsForTheRevisionsWebhook) {
  absl::StatusOr<YAML::Node> tag =
      TagConfiguration("prod", "canary", CanaryConfiguration(), "mesh");
  ASSERT_TRUE(tag.ok()) << tag.status();
  EXPECT_EQ((*tag)["metadata"]["name"].Scalar(), "meshlet-revision-tag-prod");
  EXPECT_EQ((*tag)["metadata"]["labels"]["meshlet.io/tag"].Scalar(), "prod");
  EXPECT_EQ((*tag)["metadata"]["labels"]["meshlet.io/rev"].Scalar(), "canary");
  const YAML::Node hooks = (*tag)["webhooks"];
  ASSERT_EQ(hooks.size(), 2u);
  EXPECT_EQ(hooks[0]["name"].Scalar(), "namespace.tag-prod.sidecar.meshlet.io");
  EXPECT_EQ(hooks[1]["name"].Scalar(), "object.tag-prod.sidecar.meshlet.io");
  for (const YAML::Node& hook : hooks) {
    EXPECT_EQ(hook["clientConfig"]["service"]["name"].Scalar(), "meshlet-control-plane-canary");
    EXPECT_EQ(hook["clientConfig"]["service"]["namespace"].Scalar(), "mesh");
    EXPECT_EQ(hook["clientConfig"]["service"]["path"].Scalar(), "/inject/tag/prod");
    EXPECT_EQ(hook["clientConfig"]["caBundle"].Scalar(), "Q0E=");
    EXPECT_EQ(hook["failurePolicy"].Scalar(), "Ignore");
    EXPECT_EQ(hook["timeoutSeconds"].Scalar(), "5");
  }
  // Namespaces labelled for the tag (their pods without a label of their own), and pods so
  // labelled anywhere; never the control planes' namespace.
  EXPECT_EQ(Expressions(hooks[0]["namespaceSelector"]),
            "meshlet.io/rev In prod; kubernetes.io/metadata.name NotIn kube-system mesh; ");
  EXPECT_EQ(Expressions(hooks[0]["objectSelector"]),
            "meshlet.io/rev DoesNotExist; sidecar.meshlet.io/inject NotIn false; ");
  EXPECT_EQ(Expressions(hooks[1]["objectSelector"]),
            "meshlet.io/rev In prod; sidecar.meshlet.io/inject NotIn false; ");

  // The tag default: the unnamed revision's selection.
  absl::StatusOr<YAML::Node> unnamed =
      TagConfiguration("default", "canary", CanaryConfiguration(), "mesh");
  ASSERT_TRUE(unnamed.ok()) << unnamed.status();
  EXPECT_EQ(Expressions((*unnamed)["webhooks"][0]["namespaceSelector"]),
            "meshlet.io/inject In enabled; meshlet.io/rev DoesNotExist; "
            "kubernetes.io/metadata.name NotIn kube-system mesh; ");
  EXPECT_EQ((*unnamed)["webhooks"][0]["clientConfig"]["service"]["path"].Scalar(),
            "/inject/tag/default");
  EXPECT_EQ(TagNamespaceSelector("default"), "meshlet.io/inject=enabled,!meshlet.io/rev");
  EXPECT_EQ(TagNamespaceSelector("prod"), "meshlet.io/rev=prod");
}

TEST(TagTest, ARevisionWithoutACaBundleOrWebhooksIsRefused) {
  YAML::Node fresh = CanaryConfiguration();
  fresh["webhooks"][0]["clientConfig"].remove("caBundle");
  EXPECT_NE(TagConfiguration("prod", "canary", fresh, "mesh")
                .status()
                .message()
                .find("meshlet-sidecar-injector-canary has no caBundle yet"),
            std::string::npos);
  YAML::Node none = CanaryConfiguration();
  none.remove("webhooks");
  EXPECT_NE(
      TagConfiguration("prod", "canary", none, "mesh").status().message().find("has no webhooks"),
      std::string::npos);
}

TEST(TagTest, DeactivationAddsAndRemovesOneExpressionKeepingTheRest) {
  const YAML::Node unnamed = YAML::Load(R"(
webhooks:
- name: namespace.sidecar.meshlet.io
  namespaceSelector:
    matchExpressions:
    - {key: meshlet.io/inject, operator: In, values: [enabled]}
- name: object.sidecar.meshlet.io
  namespaceSelector:
    matchExpressions:
    - {key: meshlet.io/inject, operator: DoesNotExist}
)");
  const YAML::Node off = DeactivationPatch(unnamed, true);
  ASSERT_EQ(off["webhooks"].size(), 2u);
  EXPECT_EQ(off["webhooks"][0]["name"].Scalar(), "namespace.sidecar.meshlet.io");
  EXPECT_EQ(Expressions(off["webhooks"][0]["namespaceSelector"]),
            "meshlet.io/inject In enabled; meshlet.io/deactivated In never-match; ");
  EXPECT_EQ(Expressions(off["webhooks"][1]["namespaceSelector"]),
            "meshlet.io/inject DoesNotExist; meshlet.io/deactivated In never-match; ");
  // Twice is once; back on is the original.
  EXPECT_EQ(inject::ToJson(DeactivationPatch(off, true)), inject::ToJson(off));
  const YAML::Node on = DeactivationPatch(off, false);
  EXPECT_EQ(Expressions(on["webhooks"][0]["namespaceSelector"]), "meshlet.io/inject In enabled; ");
  EXPECT_EQ(Expressions(on["webhooks"][1]["namespaceSelector"]),
            "meshlet.io/inject DoesNotExist; ");
}

}  // namespace
}  // namespace meshlet::controlplane::cli

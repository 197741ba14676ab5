#pragma once

// Which of meshlet's injection webhooks would be sent the same pod (docs/upgrades.md,
// "Overlapping webhook configurations"; ADR 0082). The API server calls every mutating webhook
// whose rules cover the request, whose namespaceSelector matches the labels of the pod's
// namespace and whose objectSelector matches the pod's labels, one after the other; two
// injection webhooks selecting one pod both run, and without meshlet's own check the last one
// called would decide the pod's revision, unseen. meshctl tag set and meshctl upgrade read the
// configurations from the API server and refuse to make such an overlap (or to move a namespace
// into one) unless told --force.
//
// Selectors are compared as sets of label sets: two webhooks overlap when some namespace labels
// satisfy both namespaceSelectors and some pod labels satisfy both objectSelectors, whether or
// not such a namespace or pod exists yet (the next one labelled so would be injected twice).
// matchConditions (CEL) are not evaluated: a webhook narrowed by them counts as selecting more.
//
// Functions of the API server's JSON (read as YAML::Node), and two that read it; no state.

#include <yaml-cpp/yaml.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "control-plane/cli/kubernetes_client.h"

namespace meshlet::controlplane::cli {

// A Kubernetes label selector (matchLabels; matchExpressions with In, NotIn, Exists and
// DoesNotExist), kept as what it requires of each label key. Absent or empty, it selects every
// set of labels.
class LabelSelector {
 public:
  LabelSelector() = default;
  // InvalidArgument naming `field` ("webhooks[0].namespaceSelector") and what is wrong: an
  // operator that is none of the four, In or NotIn without values, Exists or DoesNotExist with
  // some, a key or value that is not a string.
  static absl::StatusOr<LabelSelector> Read(const YAML::Node& selector, absl::string_view field);
  // "key=value,key,!key" (kubectl's equality-based terms), for tests and the callers' own
  // restrictions.
  static LabelSelector Parse(absl::string_view terms);

  bool Matches(const std::map<std::string, std::string>& labels) const;
  // What both select; nullopt when no set of labels satisfies both.
  static std::optional<LabelSelector> Both(const LabelSelector& a, const LabelSelector& b);
  // kubectl's syntax, keys in order: "!meshlet.io/rev,meshlet.io/inject=enabled,
  // kubernetes.io/metadata.name notin (kube-system,meshlet-system)"; "everything" when it
  // requires nothing.
  std::string ToString() const;

 private:
  struct Key {
    bool present = false;                     // Exists (and In)
    bool absent = false;                      // DoesNotExist
    std::optional<std::set<std::string>> in;  // In: one of these
    std::set<std::string> not_in;             // NotIn: none of these (or absent)
  };
  // Requires the key, with one of `values` (and of those it required already).
  static void OneOf(Key& key, const std::set<std::string>& values);
  // False when no value (or absence) satisfies `key`.
  static bool Satisfiable(const Key& key);
  std::map<std::string, Key> keys_;
};

// A webhook of a meshlet MutatingWebhookConfiguration that is sent pods at their creation.
struct InjectionWebhook {
  std::string configuration;  // the configuration's metadata.name
  std::string name;           // the webhook's
  LabelSelector namespaces;   // its namespaceSelector
  LabelSelector pods;         // its objectSelector
};

// The webhooks of `configuration` that are sent pods at CREATE (their rules name the core API
// group, pods and CREATE, or "*"), when the configuration is meshlet's: labelled
// app.kubernetes.io/part-of=meshlet, or with a webhook named *.sidecar.meshlet.io. None for
// another's configuration. A webhook whose namespaceSelector requires meshlet.io/deactivated
// (`meshctl tag set default` turns the unnamed revision's off so) selects nothing and is left
// out. InvalidArgument naming the configuration and webhook for a selector Read refuses.
absl::StatusOr<std::vector<InjectionWebhook>> InjectionWebhooks(const YAML::Node& configuration);

// Two webhooks of different configurations that would both be sent the same pods.
struct WebhookOverlap {
  InjectionWebhook first, second;
  LabelSelector namespaces;  // the namespaces both select
  LabelSelector pods;        // the pods both select in them
};

// Each webhook of `ours` against each of `theirs` of another configuration, restricted to pods
// `pods_only` selects (everything when empty).
std::vector<WebhookOverlap> Overlaps(const std::vector<InjectionWebhook>& ours,
                                     const std::vector<InjectionWebhook>& theirs,
                                     const LabelSelector& pods_only = {});

// Each pair of `hooks` of different configurations once, restricted to pods `pods_only` selects.
std::vector<WebhookOverlap> OverlapsAmong(const std::vector<InjectionWebhook>& hooks,
                                          const LabelSelector& pods_only = {});

// A namespace's name and labels, with kubernetes.io/metadata.name, which the API server gives
// every namespace, added when the JSON lacks it.
struct NamespaceLabels {
  std::string name;
  std::map<std::string, std::string> labels;
};
// The items of a NamespaceList. InvalidArgument when it is not one.
absl::StatusOr<std::vector<NamespaceLabels>> ReadNamespaces(const YAML::Node& list);

// One line per overlap: "MutatingWebhookConfiguration A (webhook a) and B (webhook b) both
// select pods (...) in namespaces (...): now shop, pay" (or "none yet"), the namespaces those in
// `namespaces` that match.
std::string DescribeOverlaps(const std::vector<WebhookOverlap>& overlaps,
                             const std::vector<NamespaceLabels>& namespaces);

// From the API server: the injection webhooks of every MutatingWebhookConfiguration, and every
// namespace. Errors name the request (Unavailable when the API server did not answer).
absl::StatusOr<std::vector<InjectionWebhook>> ClusterInjectionWebhooks(
    const KubernetesClient& client);
absl::StatusOr<std::vector<NamespaceLabels>> ClusterNamespaces(const KubernetesClient& client);

}  // namespace meshlet::controlplane::cli

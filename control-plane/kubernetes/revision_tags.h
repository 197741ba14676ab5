#pragma once

// RevisionTags: which revision tags (ADR 0076; inject/revision.h) point at which control-plane
// revision, as the cluster says: every `interval` it lists the MutatingWebhookConfigurations
// labelled meshlet.io/tag (each a tag, its label meshlet.io/rev naming the revision, "default"
// for the unnamed one) and keeps the map. The control plane uses it for
//   - the default revision (DefaultRevision): the revision the tag "default" points at, else
//     the unnamed one; it is the one that writes route status (server/kubernetes_policy.h);
//   - the namespaces whose pods its webhook injects through a tag (TagsOf), which get the
//     trust-bundle ConfigMap (trust_bundle_configmaps.h).
// Until the first list succeeds the map is empty (known() false); a failed list keeps the last
// one, logged once until the outcome changes. `on_change` runs after a list that changed it.
//
// Needs RBAC list on mutatingwebhookconfigurations (k8s/base/rbac.yaml).
// Stats: meshlet_cp_revision_tag_lists_total{result}: ok, failed.
//
// Threading: the loop thread; `on_change` is called on it, never from inside Start().

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/stats/stats.h"
#include "control-plane/kubernetes/api_client.h"

namespace meshlet::controlplane::kubernetes {

struct RevisionTagsOptions {
  Duration interval = std::chrono::seconds(10);
};

class RevisionTags {
 public:
  RevisionTags(event::Loop& loop, KubernetesApi& api, StatsRegistry& stats,
               RevisionTagsOptions options = {});
  ~RevisionTags();
  RevisionTags(const RevisionTags&) = delete;
  RevisionTags& operator=(const RevisionTags&) = delete;

  void Start();
  // Called after each list that changed the map (several may be set).
  void OnChange(std::function<void()> on_change);

  bool known() const { return known_; }
  // Tag -> revision ("" the unnamed one).
  const std::map<std::string, std::string>& tags() const { return tags_; }
  // The revision the tag "default" names, else the unnamed one ("").
  std::string DefaultRevision() const;
  // The tags that point at `revision`, by name.
  std::vector<std::string> TagsOf(const std::string& revision) const;

 private:
  void List();
  void OnList(ApiResult result);

  event::Loop& loop_;
  KubernetesApi& api_;
  const RevisionTagsOptions options_;
  event::Timer timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::vector<std::function<void()>> on_change_;
  std::map<std::string, std::string> tags_;
  bool known_ = false;
  std::string last_failure_;
  Counter ok_;
  Counter failed_;
};

}  // namespace meshlet::controlplane::kubernetes

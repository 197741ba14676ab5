#pragma once

// The API's multicluster paths (ADR 0106; mounted by control-plane/api under /api/v1, which
// checks the role each needs first):
//
//   GET    /api/v1/multicluster/exports          [peer] this cluster's ClusterExports: what the
//                                                 clusters linked to it read
//   GET    /api/v1/multicluster/links            [viewer] LinkList: each link's state
//   POST   /api/v1/multicluster/links            [admin] {"cluster", "server", "caPem",
//                                                 "serverIdentity", "token", "tokenName"}: links
//                                                 (or links again) that cluster; 201 with the
//                                                 link, without its token
//   DELETE /api/v1/multicluster/links/{cluster}  [admin] unlinks; 200 with the link removed
//                                                 (its tokenName, to revoke it there), 404
//
// Errors use the API's Status object (422 with details.causes[].field for a bad field).
//
// Threading: the writes call the store (the API runs them on its store worker); the reads run on
// the loop thread, as the LinkManager and `exports` need.

#include <functional>
#include <memory>
#include <string>

#include "common/base/clock.h"
#include "common/http/server.h"
#include "control-plane/access/roles.h"
#include "control-plane/multicluster/link_manager.h"
#include "control-plane/policy/snapshot.h"
#include "control-plane/registry/registry.h"
#include "control-plane/store/store.h"
#include "control-plane/store/store_keys.h"

namespace meshlet::controlplane::multicluster {

// This cluster's ClusterExports as JSON, computed again only when the policy snapshot or the
// registry changed since the last answer. Loop thread.
class ExportsSource {
 public:
  ExportsSource(registry::Registry& registry, std::string cluster, std::string trust_domain)
      : registry_(registry), cluster_(std::move(cluster)), trust_domain_(std::move(trust_domain)) {}
  void SetPolicy(std::shared_ptr<const policy::PolicySnapshot> policy) {
    policy_ = std::move(policy);
  }
  std::string Json();

 private:
  registry::Registry& registry_;
  const std::string cluster_;
  const std::string trust_domain_;
  std::shared_ptr<const policy::PolicySnapshot> policy_;
  // What the cached answer was computed from.
  const policy::PolicySnapshot* answered_policy_ = nullptr;
  uint64_t answered_version_ = 0;
  std::string answer_;
};

class MulticlusterApi {
 public:
  // Not owned; they outlive the API. `keys` gives the store keys in use (null: none).
  MulticlusterApi(Store& store, std::function<std::shared_ptr<const StoreKeys>()> keys,
                  LinkManager& links, ExportsSource& exports, const Clock& clock);

  http::ServerResponse Handle(const http::ServerRequest& request, const access::Principal& caller);

 private:
  http::ServerResponse Link(const http::ServerRequest& request, const access::Principal& caller);
  http::ServerResponse Unlink(absl::string_view cluster);

  Store& store_;
  std::function<std::shared_ptr<const StoreKeys>()> keys_;
  LinkManager& links_;
  ExportsSource& exports_;
  const Clock& clock_;
};

}  // namespace meshlet::controlplane::multicluster

// Server's side of DNS clusters (config::DnsClusters, server.h): which configuration's DNS
// clusters are followed, and the rebuild when an answer changes their addresses. Main thread.

#include "common/base/logging.h"
#include "sidecar/server/server.h"

namespace meshlet::sidecar::server {

void Server::FollowDnsClusters(const config::ResourceSet& resources, bool any) {
  if (any) {
    dns_resources_ = resources;
  } else {
    dns_resources_.reset();
  }
  if (any || dns_clusters_->size() > 0) dns_clusters_->Follow(resources.clusters);
}

void Server::OnDnsAnswers() {
  if (!dns_resources_.has_value() || shut_down_) return;
  // A copy: ApplyResources replaces dns_resources_ with what it applied.
  const config::ResourceSet resources = *dns_resources_;
  if (absl::Status status = ApplyResources(resources); !status.ok()) {
    LOG(ERROR) << "DNS clusters' new endpoints refused, keeping " << snapshot_->version << ": "
               << status.message();
  }
}

}  // namespace meshlet::sidecar::server

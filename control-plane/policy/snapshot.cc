#include "control-plane/policy/snapshot.h"

#include <google/protobuf/descriptor.h>
#include "common/base/logging.h"

#include "control-plane/policy/codec.h"

namespace meshlet::controlplane::policy {

namespace pb = ::meshlet::policy;

const meshlet::policy::Service* PolicySnapshot::FindService(absl::string_view namespace_,
                                                            absl::string_view name) const {
  for (const meshlet::policy::Service& service : services) {
    if (service.metadata().namespace_() == namespace_ && service.metadata().name() == name) {
      return &service;
    }
  }
  return nullptr;
}

namespace {
template <typename T>
void Append(const StoredResource& stored, std::vector<T>& out) {
  absl::StatusOr<ParsedResource> parsed = ParseStoredResource(stored.key.kind, stored.body);
  if (!parsed.ok()) {
    LOG_EVERY_N_SEC(WARN, 10) << "skipping stored " << stored.key.ToString() << ": "
                              << parsed.status().message();
    return;
  }
  out.push_back(std::move(static_cast<T&>(*parsed->message)));
}
}  // namespace

absl::StatusOr<PolicySnapshot> LoadPolicySnapshot(const Store& store) {
  PolicySnapshot snapshot;
  // The revision must name exactly what was listed (TranslationCache keys on it): retry when a
  // write lands between reading the revision and listing.
  absl::StatusOr<std::vector<StoredResource>> all;
  for (int attempt = 0;; ++attempt) {
    snapshot.revision = store.Revision();
    all = store.List("", "");
    if (!all.ok()) return all.status();
    if (store.Revision() == snapshot.revision) break;
    if (attempt == 100) {
      return absl::UnavailableError("the policy store kept changing while it was being read");
    }
  }
  // List is ordered by key (kind, namespace, name), so each list comes out sorted.
  for (const StoredResource& stored : *all) {
    const KindInfo* info = FindStoredKind(stored.key.kind);
    if (info == nullptr) continue;  // not a policy kind (tokens, address allocations)
    const google::protobuf::Descriptor* d = info->descriptor;
    if (d == pb::Service::descriptor()) {
      Append(stored, snapshot.services);
    } else if (d == pb::TrafficPolicy::descriptor()) {
      Append(stored, snapshot.traffic_policies);
    } else if (d == pb::HTTPRoute::descriptor()) {
      Append(stored, snapshot.http_routes);
    } else if (d == pb::AuthorizationPolicy::descriptor()) {
      Append(stored, snapshot.authorization_policies);
    } else if (d == pb::MeshConfig::descriptor()) {
      std::vector<pb::MeshConfig> one;
      Append(stored, one);
      if (!one.empty() && stored.key.name == kMeshConfigName) snapshot.mesh_config = one.front();
    } else if (d == meshlet::gateway::HTTPRoute::descriptor()) {
      Append(stored, snapshot.gateway_http_routes);
    } else if (d == meshlet::gateway::GRPCRoute::descriptor()) {
      Append(stored, snapshot.grpc_routes);
    } else if (d == meshlet::gateway::ReferenceGrant::descriptor()) {
      Append(stored, snapshot.reference_grants);
    }
  }
  return snapshot;
}

}  // namespace meshlet::controlplane::policy

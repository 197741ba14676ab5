#include "control-plane/policy/snapshot.h"

#include <google/protobuf/descriptor.h>

#include <algorithm>
#include <memory>
#include <utility>

#include "common/base/logging.h"

#include "control-plane/policy/codec.h"
#include "control-plane/policy/kinds.h"

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

// Puts (`resource` non-null) or removes the resource of `key` in the list of its kind.
template <typename T>
void Update(ResourceList<T>& list, const ResourceKey& key,
            const std::shared_ptr<google::protobuf::Message>& resource) {
  if (resource != nullptr) {
    list.Upsert(std::static_pointer_cast<T>(resource));
  } else {
    list.Erase(key.namespace_, key.name);
  }
}

void Update(const KindInfo& info, const ResourceKey& key,
            const std::shared_ptr<google::protobuf::Message>& resource, PolicySnapshot& snapshot) {
  const google::protobuf::Descriptor* d = info.descriptor;
  if (d == pb::Service::descriptor()) {
    Update(snapshot.services, key, resource);
  } else if (d == pb::TrafficPolicy::descriptor()) {
    Update(snapshot.traffic_policies, key, resource);
  } else if (d == pb::HTTPRoute::descriptor()) {
    Update(snapshot.http_routes, key, resource);
  } else if (d == pb::AuthorizationPolicy::descriptor()) {
    Update(snapshot.authorization_policies, key, resource);
  } else if (d == pb::RequestAuthentication::descriptor()) {
    Update(snapshot.request_authentications, key, resource);
  } else if (d == pb::ExternalService::descriptor()) {
    Update(snapshot.external_services, key, resource);
  } else if (d == pb::MeshConfig::descriptor()) {
    if (key.name != kMeshConfigName) return;
    if (resource != nullptr) {
      snapshot.mesh_config = static_cast<const pb::MeshConfig&>(*resource);
    } else {
      snapshot.mesh_config.reset();
    }
  } else if (d == meshlet::gateway::HTTPRoute::descriptor()) {
    Update(snapshot.gateway_http_routes, key, resource);
  } else if (d == meshlet::gateway::GRPCRoute::descriptor()) {
    Update(snapshot.grpc_routes, key, resource);
  } else if (d == meshlet::gateway::ReferenceGrant::descriptor()) {
    Update(snapshot.reference_grants, key, resource);
  } else if (d == meshlet::gateway::GatewayClass::descriptor()) {
    Update(snapshot.gateway_classes, key, resource);
  } else if (d == meshlet::gateway::Gateway::descriptor()) {
    Update(snapshot.gateways, key, resource);
  } else if (d == meshlet::gateway::BackendTLSPolicy::descriptor()) {
    Update(snapshot.backend_tls_policies, key, resource);
  }
}

// `stored` parsed; null (with a rate-limited warning) when it does not parse. A body without a
// namespace gets its key's (where it is stored), which is what the lists are ordered and changes
// are found by.
std::shared_ptr<google::protobuf::Message> Parse(const StoredResource& stored) {
  absl::StatusOr<ParsedResource> parsed = ParseStoredResource(stored.key.kind, stored.body);
  if (!parsed.ok()) {
    LOG_EVERY_N_SEC(WARN, 10) << "skipping stored " << stored.key.ToString() << ": "
                              << parsed.status().message();
    return nullptr;
  }
  meshlet::policy::ObjectMeta* meta = MutableMetadata(*parsed->message);
  if (meta->namespace_().empty()) meta->set_namespace_(stored.key.namespace_);
  return std::shared_ptr<google::protobuf::Message>(std::move(parsed->message));
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
  // List is ordered by key (kind, namespace, name), so each insertion is at the end of its list.
  for (const StoredResource& stored : *all) {
    const KindInfo* info = FindStoredKind(stored.key.kind);
    if (info == nullptr) continue;  // not a policy kind (tokens, address allocations)
    std::shared_ptr<google::protobuf::Message> resource = Parse(stored);
    if (resource != nullptr) Update(*info, stored.key, resource, snapshot);
  }
  return snapshot;
}

std::optional<PolicyChange> PreparePolicyChange(const WatchEvent& event) {
  if (FindStoredKind(event.resource.key.kind) == nullptr) return std::nullopt;
  PolicyChange change{
      .type = event.type, .key = event.resource.key, .revision = event.resource.revision};
  if (event.type == WatchEvent::Type::kPut) change.resource = Parse(event.resource);
  return change;
}

void ApplyPolicyChange(const PolicyChange& change, PolicySnapshot& snapshot) {
  const KindInfo* info = FindStoredKind(change.key.kind);
  if (info != nullptr) Update(*info, change.key, change.resource, snapshot);
  snapshot.revision = std::max(snapshot.revision, change.revision);
}

}  // namespace meshlet::controlplane::policy

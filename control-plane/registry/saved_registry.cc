#include "control-plane/registry/saved_registry.h"

#include "common/config/yaml_proto.h"
#include "control-plane/registry/saved_registry.pb.h"

namespace meshlet::controlplane::registry {

xds::Node NodeFromWorkload(const Workload& workload) {
  xds::Node node;
  node.set_id(workload.id);
  node.set_service(workload.service);
  node.set_namespace_(workload.namespace_);
  node.set_service_account(workload.service_account);
  node.mutable_labels()->insert(workload.labels.begin(), workload.labels.end());
  for (const std::string& address : workload.addresses) node.add_addresses(address);
  for (uint32_t port : workload.ports) node.add_ports(port);
  node.set_sidecar_version(workload.sidecar_version);
  if (workload.locality.ByteSizeLong() > 0) *node.mutable_locality() = workload.locality;
  return node;
}

std::string SerializeRegistry(const RegistrySnapshot& snapshot, absl::Time stopping_since) {
  SavedRegistry saved;
  for (const Workload& workload : snapshot.workloads) {
    SavedRegistry::Workload* out = saved.add_workloads();
    *out->mutable_node() = NodeFromWorkload(workload);
    out->set_not_ready(!workload.ready);
    if (!workload.connected && workload.disconnected_at > absl::UnixEpoch() &&
        workload.disconnected_at < stopping_since) {
      out->set_disconnected_at_unix_ms(absl::ToUnixMillis(workload.disconnected_at));
    }
  }
  // Deterministic (labels in key order): the control plane compares these bytes to skip writes.
  return config::DeterministicBytes(saved);
}

absl::StatusOr<std::vector<Workload>> ParseSavedRegistry(absl::string_view bytes) {
  SavedRegistry saved;
  if (!saved.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::InvalidArgumentError("not a saved registry");
  }
  std::vector<Workload> out;
  out.reserve(static_cast<size_t>(saved.workloads_size()));
  for (const SavedRegistry::Workload& in : saved.workloads()) {
    Workload workload = WorkloadFromNode(in.node());
    workload.ready = !in.not_ready();
    if (in.disconnected_at_unix_ms() > 0) {
      workload.connected = false;
      workload.disconnected_at = absl::FromUnixMillis(in.disconnected_at_unix_ms());
    }
    out.push_back(std::move(workload));
  }
  return out;
}

}  // namespace meshlet::controlplane::registry

#include "sidecar/config/snapshot.h"

namespace meshlet::sidecar::config {

const ListenerConfig* Snapshot::FindListener(absl::string_view name) const {
  for (const ListenerConfig& listener : listeners) {
    if (listener.name == name) return &listener;
  }
  return nullptr;
}

const route::RouteTable* Snapshot::FindRouteTable(absl::string_view name) const {
  auto it = route_tables.find(name);
  return it == route_tables.end() ? nullptr : it->second.get();
}

const cluster::ClusterConfig* Snapshot::FindCluster(absl::string_view name) const {
  auto it = clusters.find(name);
  return it == clusters.end() ? nullptr : it->second.get();
}

const SecretConfig* Snapshot::FindSecret(absl::string_view name) const {
  auto it = secrets.find(name);
  return it == secrets.end() ? nullptr : &it->second;
}

const std::string& Snapshot::ConfigDumpJson() const {
  if (!config_dump_json.empty() || !render_config_dump) return config_dump_json;
  RenderedDump::State& state = *rendered_.state;
  absl::call_once(state.once, [this, &state] { state.text = render_config_dump(); });
  return state.text;
}

}  // namespace meshlet::sidecar::config

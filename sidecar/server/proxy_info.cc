#include "sidecar/server/proxy_info.h"

#include <string>

#include "common/base/version.h"
#include "common/stats/or_discard.h"

namespace meshlet::sidecar::server {

void RegisterProxyInfo(StatsShard& shard, absl::string_view node_id, absl::string_view service,
                       absl::string_view service_namespace) {
  constexpr absl::string_view kName = "meshlet_proxy_info";
  OrDiscard(shard.RegisterGauge(kName,
                                "This proxy: its node id, service, the service's namespace and "
                                "the sidecar's release; always 1.",
                                {{"node", std::string(node_id)},
                                 {"service", std::string(service)},
                                 {"service_namespace", std::string(service_namespace)},
                                 {"version", kMeshletVersion}},
                                GaugeMerge::kGlobal),
            kName)
      .Set(1);
}

}  // namespace meshlet::sidecar::server

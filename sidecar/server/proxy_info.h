#pragma once

// meshlet_proxy_info: one series naming this proxy, value 1, registered once at start-up:
//
//   meshlet_proxy_info{node="frontend-7c9d.default", service="frontend",
//                      service_namespace="default", version="0.2.0-dev"} 1
//
// so a query can tell which service a sidecar's series come from by joining on the target
// (`* on (instance) group_left (service, service_namespace) meshlet_proxy_info`) without scrape
// relabelling. The labels are not `namespace` and `workload`: scrape configurations set those on
// the target, and Prometheus would rename the proxy's own to `exported_namespace`.
// Empty node fields give empty label values (a static bootstrap without a node).

#include "absl/strings/string_view.h"
#include "common/stats/stats.h"

namespace meshlet::sidecar::server {

// Registers the series in `shard`'s registry and sets it to 1. A label value the registry
// refuses (not UTF-8) is logged and leaves the series out; nothing else fails. Call on any
// thread, once; registering it again with the same node changes nothing.
// The values are the bootstrap node's (xds/node.proto) id, service and namespace.
void RegisterProxyInfo(StatsShard& shard, absl::string_view node_id, absl::string_view service,
                       absl::string_view service_namespace);

}  // namespace meshlet::sidecar::server

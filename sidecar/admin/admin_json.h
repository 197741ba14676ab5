#pragma once

// The JSON documents of the admin pages that describe the running sidecar: /clusters,
// /listeners and /certs. The server gathers the inputs (each worker reports its own clusters and
// listeners, in the types below) and these functions render them; they keep no state.
//
// Threading: called on the main thread, like the admin handler; the workers' reports are copies.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/net/address.h"
#include "sidecar/cluster/cluster_manager.h"
#include "sidecar/cluster/health_checker.h"
#include "sidecar/cluster/host.h"
#include "sidecar/config/snapshot.h"
#include "sidecar/identity/certificate_manager.h"

namespace meshlet::sidecar::admin {

// One endpoint of one cluster as a worker sees it.
struct HostStatus {
  std::string address;
  uint32_t weight = 1;
  uint32_t health_flags = 0;  // Host::HealthFlag bits
  uint32_t active_requests = 0;
  bool tls = false;      // connections use the cluster's TLS (not a plaintext endpoint)
  std::string identity;  // with tls: the SPIFFE id the endpoint must present; empty: the cluster's
  cluster::HostStats stats;
};
struct ClusterStatus {
  std::string name;
  std::vector<HostStatus> hosts;
  // The worker built the cluster (a request on it used the cluster); false: configured only, the
  // hosts are the configured endpoints and nothing is counted.
  bool built = false;
};

// What a worker reports of a cluster it never built: `config`'s endpoints (first of each address)
// with the control plane's health flags and the failed active health checks of `health`.
ClusterStatus UnbuiltClusterStatus(const cluster::ClusterConfig& config,
                                   const cluster::SharedHostHealth& health);

// A listener as a worker runs it.
struct ListenerStatus {
  std::string name;
  net::Address address;  // as bound (the real port when the configuration said 0)
  bool accepting = false;
};

// /clusters: the workers' reports merged per cluster and endpoint (flags or-ed, counts summed),
// with the number of workers that built the cluster ("workers_built"), each cluster's breaker
// capacity from `limits` and its health check from `health_checks` (null: none). A worker that did
// not answer is nullopt: counted in "workers", not in "workers_answered".
std::string ClustersJson(const std::vector<std::optional<std::vector<ClusterStatus>>>& workers,
                         cluster::SharedClusterLimits& limits,
                         const cluster::HealthCheckManager* health_checks);

// /listeners: the snapshot's listeners (null: none yet) with the addresses the workers bound and
// whether any of them still accepts.
std::string ListenersJson(bool draining, const config::Snapshot* snapshot,
                          const std::vector<std::vector<ListenerStatus>>& workers);

// /certs: the workload certificate `manager` holds (null or none yet: `{"workload_certificate":
// null}`), its rotation state, `apply_error` (the last failure to apply a new one), and the
// listeners and clusters of `snapshot` that present it with their context generation, which
// `generation(kind, name)` ("listener" or "cluster") returns (0: no context).
std::string CertsJson(
    const identity::CertificateManager* manager, absl::string_view apply_error,
    const config::Snapshot* snapshot,
    const std::function<uint64_t(absl::string_view kind, const std::string& name)>& generation);

}  // namespace meshlet::sidecar::admin

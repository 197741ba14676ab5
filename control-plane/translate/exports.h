#pragma once

// What this cluster shares with the clusters linked to it (multicluster, ADR 0106): the Services
// labelled meshlet.io/export: "true", each with its ports, the SPIFFE ids and number of its ready
// members that answer mesh mTLS, and where its east-west gateways listen (Gateway listeners of
// protocol meshlet.io/east-west). A linked control plane reads it (control-plane/multicluster)
// and gives its sidecars the gateway as one endpoint of the Service of the same namespace and
// name. Pure function of its inputs; any thread.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "control-plane/policy/snapshot.h"
#include "control-plane/registry/registry.h"

namespace meshlet::controlplane::translate {

struct ExportedGateway {
  std::string gateway;  // "namespace/name" of the Gateway
  std::string address;  // an IP: a value of its spec.addresses, else a ready proxy's address
  uint32_t port = 0;    // the east-west listener's port
  std::string region;   // where its proxies run (the first that says), for the linked callers
  std::string zone;
};

struct ExportedService {
  std::string namespace_;
  std::string name;
  std::vector<uint32_t> ports;
  std::vector<std::string> identities;  // spiffe://<trust domain>/ns/<ns>/sa/<sa>, sorted
  uint32_t members = 0;  // ready members here that answer mesh mTLS (not linked clusters')
};

struct MeshExports {
  std::vector<ExportedGateway> gateways;  // by gateway, address, port
  std::vector<ExportedService> services;  // by namespace, name
};

MeshExports ComputeExports(const policy::PolicySnapshot& policy,
                           const registry::RegistrySnapshot& registry,
                           absl::string_view trust_domain);

}  // namespace meshlet::controlplane::translate

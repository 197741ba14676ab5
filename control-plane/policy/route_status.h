#pragma once

// The status the control plane decides for one Gateway API route (HTTPRoute or GRPCRoute of
// xds/gateway.proto): its conditions per parentRef, for the generation it was computed from.
// Computed from a PolicySnapshot and the mesh's Services; written back to the Kubernetes API
// server (by the elected replica only) and shown by `meshctl check`. A plain value.

#include <cstdint>
#include <string>

#include "xds/gateway.pb.h"

namespace meshlet::controlplane::policy {

struct RouteStatusUpdate {
  std::string kind;  // "HTTPRoute" or "GRPCRoute"
  std::string namespace_;
  std::string name;
  int64_t generation = 0;  // metadata.generation the conditions' observedGeneration names
  meshlet::gateway::RouteStatus status;
};

}  // namespace meshlet::controlplane::policy

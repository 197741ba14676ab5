#pragma once

// meshlet's own kinds (group meshlet.io, kinds.h) as Kubernetes CustomResourceDefinitions, with
// structural OpenAPI v3 schemas generated from the kinds' proto descriptors (xds/policy.proto):
// field names in their JSON spelling, durations as strings, wrappers as their scalar, maps as
// additionalProperties, 64-bit integers as int-or-string (how protobuf's JSON writes them), and a
// `status` subresource for kinds that have a status. `crdgen` writes it to k8s/crds/crds.yaml;
// crds_test checks that the committed file is what it writes. Pure function.

#include <string>

namespace meshlet::controlplane::policy {

// Every meshlet.io kind's CRD as YAML documents separated by "---", in AllKinds() order.
std::string MeshletCrdsYaml();

}  // namespace meshlet::controlplane::policy

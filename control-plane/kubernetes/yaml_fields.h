#pragma once

// Reads from a Kubernetes object parsed with yaml-cpp (JSON is YAML) that never throw and never
// add keys: a missing key, or a value of another shape, reads as empty. (yaml-cpp's operator[]
// on a const map returns, for a missing key, a node that throws on every use but IsDefined();
// these never hand one out.)

#include <yaml-cpp/yaml.h>

#include <string>

namespace meshlet::controlplane::kubernetes {

// map[key], or an undefined node (safe to ask anything) when `map` is not a map or has no key.
inline YAML::Node NodeAt(const YAML::Node& map, const char* key) {
  if (!map.IsDefined() || !map.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  const YAML::Node value = map[key];
  return value.IsDefined() ? value : YAML::Node(YAML::NodeType::Undefined);
}

// The text of map[key] when it is a scalar, else "".
inline std::string ScalarAt(const YAML::Node& map, const char* key) {
  const YAML::Node value = NodeAt(map, key);
  return value.IsScalar() ? value.Scalar() : "";
}

}  // namespace meshlet::controlplane::kubernetes

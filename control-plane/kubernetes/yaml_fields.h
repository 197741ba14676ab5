#pragma once

// Reads from a Kubernetes object parsed with yaml-cpp (JSON is YAML) that never throw and never
// add keys: a missing key, or a value of another shape, reads as empty.

#include <yaml-cpp/yaml.h>

#include <string>

namespace meshlet::controlplane::kubernetes {

// The text of map[key] when it is a scalar, else "".
inline std::string ScalarAt(const YAML::Node& map, const char* key) {
  if (!map.IsMap()) return "";
  const YAML::Node value = map[key];
  return value.IsDefined() && value.IsScalar() ? value.Scalar() : "";
}

// map[key], or an undefined node when `map` is not a map.
inline YAML::Node NodeAt(const YAML::Node& map, const char* key) {
  if (!map.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  return map[key];
}

}  // namespace meshlet::controlplane::kubernetes

#pragma once

// Reads from a Kubernetes object parsed with yaml-cpp (JSON is YAML) that never throw and never
// add keys: a missing key, or a value of another shape, reads as empty. (yaml-cpp's operator[]
// on a const map returns, for a missing key, a node that throws on every use but IsDefined();
// these never hand one out.)

#include <yaml-cpp/yaml.h>

#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/base/json.h"

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

// The string entries of `map` (labels, annotations); other entries, or a node that is not a map,
// read as none.
inline std::map<std::string, std::string> StringMap(const YAML::Node& map) {
  std::map<std::string, std::string> out;
  if (!map.IsDefined() || !map.IsMap()) return out;
  for (const auto& entry : map) {
    if (entry.first.IsScalar() && entry.second.IsScalar()) {
      out.emplace(entry.first.Scalar(), entry.second.Scalar());
    }
  }
  return out;
}

// A Secret's base64-decoded data[key] (`data` its "data" map), or nullopt when absent or empty;
// an error when it is not base64.
inline absl::StatusOr<std::optional<std::string>> SecretData(const YAML::Node& data,
                                                             const char* key) {
  const std::string encoded = ScalarAt(data, key);
  if (encoded.empty()) return std::nullopt;
  std::string decoded;
  if (!absl::Base64Unescape(encoded, &decoded)) {
    return absl::InvalidArgumentError(absl::StrCat("data.", key, " is not base64"));
  }
  return decoded;
}

// Appends `node` as JSON. For objects read from JSON: a plain (unquoted) scalar is a number, true,
// false or null, and a quoted one (tag "!") a string.
inline void AppendNodeJson(const YAML::Node& node, std::string* out) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      out->push_back('{');
      bool first = true;
      for (const auto& entry : node) {
        if (!first) out->push_back(',');
        first = false;
        AppendJsonString(out, entry.first.Scalar());
        out->push_back(':');
        AppendNodeJson(entry.second, out);
      }
      out->push_back('}');
      return;
    }
    case YAML::NodeType::Sequence: {
      out->push_back('[');
      for (size_t i = 0; i < node.size(); ++i) {
        if (i > 0) out->push_back(',');
        AppendNodeJson(node[i], out);
      }
      out->push_back(']');
      return;
    }
    case YAML::NodeType::Scalar:
      if (node.Tag() == "!") {
        AppendJsonString(out, node.Scalar());
      } else {
        out->append(node.Scalar());
      }
      return;
    default:
      out->append("null");
  }
}

}  // namespace meshlet::controlplane::kubernetes

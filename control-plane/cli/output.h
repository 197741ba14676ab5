#pragma once

// meshctl's output: JSON (as the API returns it) to YAML that reads back with the same
// values, a line diff, and plain-text tables.

#include <initializer_list>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace YAML {
class Node;
}

namespace meshlet::controlplane::cli {

// Block-style YAML with the JSON's key order. Strings that YAML would read as another type
// ("true", "12", "") are quoted.
absl::StatusOr<std::string> JsonToYaml(absl::string_view json);
// The same for an already parsed node (yaml-cpp reads JSON).
std::string NodeToYaml(const YAML::Node& node);

// A unified diff of two texts by lines ("--- a", "+++ b", " same", "-old", "+new"), with
// `context` unchanged lines around changes. Empty when the texts are equal.
std::string UnifiedDiff(absl::string_view old_text, absl::string_view new_text,
                        absl::string_view old_name, absl::string_view new_name, int context = 3);

// Columns padded to the widest cell, separated by three spaces, like kubectl.
std::string FormatTable(const std::vector<std::vector<std::string>>& rows);

// A scalar node's text; "" for a missing, null or non-scalar node.
std::string Scalar(const YAML::Node& node);
// node[k1][k2]... without throwing and without adding keys: an undefined node when a step is
// missing or not a map (the API server's JSON may leave any field out).
YAML::Node At(YAML::Node node, std::initializer_list<absl::string_view> path);

// "5s", "3m", "2h", "4d" since `rfc3339` (empty or unparsable: "<unknown>").
std::string Age(absl::string_view rfc3339, absl::Time now);

// The release a sidecar reported in its node's sidecar_version ("meshlet-sidecar 0.2.0" gives
// "0.2.0"; another text is shown whole, none as "<unknown>").
std::string SidecarRelease(absl::string_view sidecar_version);

}  // namespace meshlet::controlplane::cli

#pragma once

// The document model injection works on: yaml-cpp's YAML::Node, into which both a YAML manifest
// and the JSON of an admission request parse (JSON is YAML; a JSON string is a quoted scalar).
//
// yaml-cpp keeps a scalar's text but not its type, and Kubernetes cares (an annotation must be a
// string, runAsUser a number). This file decides the type the way Kubernetes' YAML reader does
// (YAML 1.1, as kubectl reads manifests): a quoted scalar is a string; a plain one is null, a
// boolean, an integer or a float when its text reads as one (`~`, `yes`, `On`, `0x1F`, `1e3`),
// else a string. Nodes made here carry their type in their tag ("!" marks a string), so writing
// a document back out as YAML (ToYaml) or JSON (ToJson) keeps every value's type: a string that
// would read as something else is quoted in YAML, and in JSON each value gets its JSON type.
//
// Plain functions over values; no state.

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace meshlet::controlplane::inject {

enum class ScalarType { kNull, kBool, kInt, kFloat, kString };

// The type of a plain (unquoted) scalar with this text.
ScalarType PlainScalarType(absl::string_view text);
// The type of a null or scalar node (kString for maps, sequences and undefined nodes, which
// have no scalar type; callers check IsMap/IsSequence first).
ScalarType TypeOf(const YAML::Node& node);
inline bool IsString(const YAML::Node& node) {
  return node.IsDefined() && node.IsScalar() && TypeOf(node) == ScalarType::kString;
}

// `map[key]` when `map` is a map holding `key`, else an undefined node (false in a condition).
// Unlike yaml-cpp's operator[], which throws on a scalar or a missing parent and adds the key to
// a non-const map, it never throws and never changes anything; lookups chain safely.
YAML::Node Field(const YAML::Node& map, absl::string_view key);
// A scalar's text; "" for anything else (also for undefined nodes).
std::string Text(const YAML::Node& node);

// A boolean scalar that reads as true (`true`, `True`, `yes`, `on`, ...).
bool IsTrue(const YAML::Node& node);

// A plain integer's value (decimal, 0x hex, 0o or leading-0 octal, 0b binary, '_' separators,
// as YAML 1.1 reads them); false when the text is not one or does not fit.
bool PlainInt(absl::string_view text, int64_t* value);

// Scalars that keep their type through ToYaml and ToJson.
YAML::Node StringNode(absl::string_view text);
YAML::Node IntNode(int64_t value);
YAML::Node BoolNode(bool value);
// An empty map, an empty sequence, and a sequence of strings (StringNode each).
YAML::Node MapNode();
YAML::Node ListNode();
YAML::Node StringListNode(const std::vector<std::string>& items);

// The same tree: maps with the same keys (by their text) in the same order, sequences of the
// same length; strings with the same text; null nodes and null scalars alike; other scalars
// (numbers of either kind, booleans) when ToCompactJson writes them the same (0x10 and 16, 1.
// and 1, yes and true; not 1.0 and 1).
bool Equal(const YAML::Node& a, const YAML::Node& b);

// Whether a map key, written as JSON, is longer than the 1024 characters YAML allows an implicit
// key (YAML 1.2, 7.4.2): such JSON is valid, but yaml-cpp, which reads meshctl's JSON input and
// admission requests, refuses it. Kubernetes keys are far shorter (a 253-character prefix, a
// 63-character name).
bool HasKeyTooLongForYaml(const YAML::Node& node);

// One YAML document in block style (2-space indent), ending with a newline.
std::string ToYaml(const YAML::Node& node);
// JSON indented by 2 spaces, as kubectl prints objects, ending with a newline. Keys keep their
// order; integers written in another base become decimal; a float JSON cannot hold (.inf, .nan)
// is written as a string.
std::string ToJson(const YAML::Node& node);
// The same JSON without white space or a final newline.
std::string ToCompactJson(const YAML::Node& node);

}  // namespace meshlet::controlplane::inject

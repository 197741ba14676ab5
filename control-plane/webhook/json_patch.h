#pragma once

// JsonPatch: the RFC 6902 JSON Patch that turns one Kubernetes object into another, both as the
// document model of control-plane/inject/node.h (JSON and YAML parse into it). The admission
// webhook answers with it: the API server applies it to the object it sent.
//
// Maps are compared key by key: a key only `after` has is an "add", one only `before` has a
// "remove", one whose values differ is compared further (maps within maps) or "replace"d. A
// sequence that `after` extends (`before` is a prefix of it) gets an "add" of each new item at
// "PATH/-"; any other change to a sequence replaces it whole, which keeps the patch correct
// without aligning items (a container inserted first would otherwise shift every index). Values
// are compact JSON with their Kubernetes types (node.h's ToCompactJson). Paths are JSON
// Pointers (RFC 6901: "~" is written "~0" and "/" "~1", as in an annotation key).
//
// Equal objects give "[]". Plain functions; no state.

#include <yaml-cpp/yaml.h>

#include <string>

namespace meshlet::controlplane::webhook {

// `before` and `after` are maps (objects).
std::string JsonPatch(const YAML::Node& before, const YAML::Node& after);

// "~0" for "~" and "~1" for "/": one reference token of a JSON Pointer.
std::string EscapePointerToken(const std::string& key);

}  // namespace meshlet::controlplane::webhook

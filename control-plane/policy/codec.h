#pragma once

// Reading and writing policy documents. A document is YAML or JSON (JSON is YAML) with
// `apiVersion`, `kind`, `metadata` and `spec`; field names are accepted in their JSON spelling
// (`retryOn`) or proto spelling (`retry_on`). Resources are written, and stored, as JSON with the
// JSON spellings, the way `kubectl get -o json` shows objects.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/config/yaml_proto.h"
#include "control-plane/policy/kinds.h"

namespace meshlet::controlplane::policy {

struct ParsedResource {
  const KindInfo* info = nullptr;
  std::unique_ptr<google::protobuf::Message> message;
};

// Parses one document. The kind comes from the document's `apiVersion` and `kind`
// (FindDocumentKind); `expected_kind`, if not null, must be that kind (and is used when the
// document names none). Errors are InvalidArgument, "<source>:<line>:<col>: <field path>:
// <reason>"; an unknown or mismatched kind points at the `kind` value, an apiVersion the kind
// does not take at the `apiVersion` value, a missing kind at the document's first line.
absl::StatusOr<ParsedResource> ParseResource(absl::string_view text,
                                             const config::YamlParseOptions& options = {},
                                             const KindInfo* expected_kind = nullptr);

// Parses a resource as stored (JSON written by ToJson) under the store kind `kind`
// (KindInfo::store_kind, the ResourceKey's kind).
absl::StatusOr<ParsedResource> ParseStoredResource(absl::string_view kind, absl::string_view json);

// Deterministic JSON (JSON field names, fields at their defaults left out, map keys sorted).
std::string ToJson(const google::protobuf::Message& resource, bool pretty = false);

// Splits a parse error message "<source>:<line>:<col>: <path>: <reason>" into the field path and
// the rest; `path` is empty when the message does not have that shape.
struct ErrorLocation {
  std::string position;  // "file.yaml:3:7" or "3:7"
  std::string path;      // "spec.retries.attempts"
  std::string reason;
};
ErrorLocation SplitParseError(absl::string_view message);

}  // namespace meshlet::controlplane::policy

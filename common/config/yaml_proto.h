#pragma once

// Reads YAML (and JSON, which is YAML) into protobuf messages by walking the message descriptor,
// so that every error names where it happened: the file, line and column, and the field path.
//
//   config.yaml:12:7: static_resources.listeners[0].adress: unknown field; known fields: name,
//   address, direction, ...
//
// Field names match either the proto name (`route_config_name`) or its JSON name
// (`routeConfigName`). Durations take units ("250ms", "1.5s", "2m"), enums take their names,
// google.protobuf wrapper types take plain scalars. Used by the sidecar's static configuration and
// by meshctl / the control-plane API for policy documents.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace YAML {
class Emitter;
}

namespace google::protobuf {
class Message;
}

namespace meshlet::config {

struct YamlParseOptions {
  // Shown at the start of each error, e.g. a file name. Empty: errors start with "line:col".
  std::string source_name;
  // Unknown fields are errors unless set (then they are skipped).
  bool ignore_unknown_fields = false;
  // Added to reported line numbers: the line in the original file where this text starts, minus 1.
  int line_offset = 0;
};

// Parses a single YAML document into `message` (merged into what it holds). An empty document
// leaves it unchanged.
absl::Status YamlToProto(absl::string_view yaml, google::protobuf::Message& message,
                         const YamlParseOptions& options = {});

// The error the functions here return for a problem at `line`:`column` (1-based, in the text that
// was parsed; options.line_offset is added), as InvalidArgument "<source>:<line>:<col>: <path>:
// <reason>". For callers that check a field themselves and should point at it the same way. A
// `line` of 0 leaves the position out.
absl::Status ErrorAt(const YamlParseOptions& options, int line, int column, absl::string_view path,
                     absl::string_view reason);

// A multi-document YAML stream ("---" separated), each document kept as its original text so a
// caller can look at `kind` before choosing the message type, and errors still point at the right
// line of the file (pass `first_line - 1` as YamlParseOptions::line_offset). Documents holding
// nothing but comments are dropped.
struct YamlDocument {
  int index = 0;             // 0-based position among the non-empty documents
  int first_line = 1;        // 1-based line in the stream where the document's text starts
  std::string yaml;          // the document's text
  std::string kind;          // top-level `kind` if present (policies), else empty
  int kind_line = 0;         // where the `kind` value is: 1-based line in the stream, 0 if no kind
  int kind_column = 0;       // and 1-based column
  std::string api_version;   // top-level `apiVersion` if present, else empty
  int api_version_line = 0;  // where its value is, as for `kind`
  int api_version_column = 0;
};
absl::StatusOr<std::vector<YamlDocument>> SplitYamlDocuments(absl::string_view yaml,
                                                             absl::string_view source_name = "");

// Writes `message` as YAML (proto field names, enums by name, durations like "1.500s"). Fields at
// their default value are left out.
std::string ProtoToYaml(const google::protobuf::Message& message);

// Writes `value` as a string scalar that reads back as the same text: double-quoted, with
// escapes, when it holds a control character (yaml-cpp writes some, a carriage return say, as
// plain scalars that read back without them); otherwise as yaml-cpp chooses.
void EmitYamlString(YAML::Emitter& out, const std::string& value);

// Parses a duration with units ("250ms", "1.5s", "2m", "1h30m"); negative values are refused.
absl::StatusOr<absl::Duration> ParseDurationText(absl::string_view text);

// Binary serialization with map entries in key order, so that equal messages give equal bytes
// (plain serialization writes map entries in hash order, which varies between runs).
std::string DeterministicBytes(const google::protobuf::Message& message);

}  // namespace meshlet::config

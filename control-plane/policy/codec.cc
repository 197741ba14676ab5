#include "control-plane/policy/codec.h"

#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/type_resolver_util.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/config/yaml_proto.h"

namespace meshlet::controlplane::policy {

absl::StatusOr<ParsedResource> ParseResource(absl::string_view text,
                                             const config::YamlParseOptions& options,
                                             const KindInfo* expected_kind) {
  ASSIGN_OR_RETURN(std::vector<config::YamlDocument> documents,
                   config::SplitYamlDocuments(text, options.source_name));
  if (documents.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected exactly one document, got ", documents.size(),
        documents.empty() ? "" : " (send one resource per request; meshctl splits files)"));
  }
  const config::YamlDocument& document = documents.front();
  if (document.kind.empty() && expected_kind == nullptr) {
    return config::ErrorAt(options, document.first_line, 1, "kind",
                           absl::StrCat("required; one of ", KnownKindNames()));
  }
  const KindInfo* info = expected_kind;
  if (!document.kind.empty()) {
    // Documents must spell the kind exactly; aliases are for the command line and URLs only.
    absl::StatusOr<const KindInfo*> found = FindDocumentKind(
        document.api_version.empty() && expected_kind != nullptr ? expected_kind->ApiVersion()
                                                                 : document.api_version,
        document.kind);
    if (!found.ok()) {
      const bool unknown_kind = !FindDocumentKind("", document.kind).ok();
      if (unknown_kind || document.api_version_line == 0) {
        return config::ErrorAt(options, document.kind_line, document.kind_column, "kind",
                               found.status().message());
      }
      return config::ErrorAt(options, document.api_version_line, document.api_version_column,
                             "apiVersion", found.status().message());
    }
    info = *found;
    if (expected_kind != nullptr && info != expected_kind) {
      return config::ErrorAt(
          options, document.kind_line, document.kind_column, "kind",
          absl::StrCat("\"", document.kind, "\" (", info->ApiVersion(),
                       ") does not match the request's kind \"", expected_kind->kind, "\" (",
                       expected_kind->ApiVersion(), ")"));
    }
  } else if (!document.api_version.empty() && !info->AcceptsApiVersion(document.api_version)) {
    return config::ErrorAt(options, document.api_version_line, document.api_version_column,
                           "apiVersion",
                           absl::StrCat("\"", document.api_version, "\" is not an apiVersion of ",
                                        info->kind, "; use ", info->AcceptedApiVersions()));
  }
  ParsedResource parsed;
  parsed.info = info;
  parsed.message = info->New();
  config::YamlParseOptions document_options = options;
  document_options.line_offset = options.line_offset + document.first_line - 1;
  RETURN_IF_ERROR(config::YamlToProto(document.yaml, *parsed.message, document_options));
  return parsed;
}

absl::StatusOr<ParsedResource> ParseStoredResource(absl::string_view kind, absl::string_view json) {
  const KindInfo* info = FindStoredKind(kind);
  if (info == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown kind ", kind));
  ParsedResource parsed;
  parsed.info = info;
  parsed.message = info->New();
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;  // written by a newer version: keep what we know
  auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), parsed.message.get(), options);
  if (!status.ok()) {
    return absl::DataLossError(
        absl::StrCat(kind, ": stored JSON does not parse: ", std::string(status.message())));
  }
  return parsed;
}

std::string ToJson(const google::protobuf::Message& resource, bool pretty) {
  // MessageToJsonString writes map entries in hash order; going through a deterministic binary
  // serialization makes equal resources give byte-identical JSON (map keys sorted).
  static google::protobuf::util::TypeResolver* resolver =
      google::protobuf::util::NewTypeResolverForDescriptorPool(
          "type.googleapis.com", google::protobuf::DescriptorPool::generated_pool());
  const std::string binary = config::DeterministicBytes(resource);
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = pretty;
  auto status = google::protobuf::util::BinaryToJsonString(
      resolver, absl::StrCat("type.googleapis.com/", resource.GetDescriptor()->full_name()), binary,
      &out, options);
  CHECK(status.ok()) << "JSON of " << resource.GetDescriptor()->full_name() << ": "
                     << status.ToString();
  return out;
}

ErrorLocation SplitParseError(absl::string_view message) {
  ErrorLocation out;
  absl::string_view rest = message;
  if (size_t sep = rest.find(": "); sep != absl::string_view::npos) {
    absl::string_view head = rest.substr(0, sep);
    std::vector<absl::string_view> pieces = absl::StrSplit(head, ':');
    int line = 0, column = 0;
    if (pieces.size() >= 2 && absl::SimpleAtoi(pieces[pieces.size() - 2], &line) &&
        absl::SimpleAtoi(pieces.back(), &column)) {
      out.position = std::string(head);
      rest.remove_prefix(sep + 2);
    }
  }
  size_t sep = rest.find(": ");
  if (sep != absl::string_view::npos && rest.substr(0, sep).find(' ') == absl::string_view::npos) {
    out.path = std::string(rest.substr(0, sep));
    out.reason = std::string(rest.substr(sep + 2));
  } else {
    out.reason = std::string(rest);
  }
  if (out.path == "(document)") out.path.clear();
  return out;
}

}  // namespace meshlet::controlplane::policy

// policycheck: parses and validates policy documents offline, as meshctl apply does before it
// sends anything (codec.h, validate.h), for tests that hold meshlet's reading of a file against
// another's (tests/k8s:gateway_schema_test).
//
//   policycheck FILE...   (YAML, several documents each)
//
// Prints "ok   Kind name" or "FAIL Kind name" and one indented line per problem for each
// document; exits 1 when any fails, 2 when a file cannot be read or split.

#include <iostream>

#include "absl/strings/str_cat.h"
#include "common/base/file.h"
#include "common/config/yaml_proto.h"
#include "control-plane/policy/codec.h"
#include "control-plane/policy/validate.h"

int main(int argc, char** argv) {
  namespace config = meshlet::config;
  namespace policy = meshlet::controlplane::policy;
  if (argc < 2) {
    std::cerr << "usage: policycheck FILE...\n";
    return 2;
  }
  int exit_code = 0;
  for (int i = 1; i < argc; ++i) {
    absl::StatusOr<std::string> text = meshlet::ReadFile(argv[i]);
    if (!text.ok()) {
      std::cerr << "policycheck: " << argv[i] << ": " << text.status().message() << "\n";
      return 2;
    }
    absl::StatusOr<std::vector<config::YamlDocument>> documents =
        config::SplitYamlDocuments(*text, argv[i]);
    if (!documents.ok()) {
      std::cerr << "policycheck: " << documents.status().message() << "\n";
      return 2;
    }
    for (const config::YamlDocument& document : *documents) {
      config::YamlParseOptions options;
      options.source_name = argv[i];
      options.line_offset = document.first_line - 1;
      absl::StatusOr<policy::ParsedResource> parsed = policy::ParseResource(document.yaml, options);
      const std::string label = absl::StrCat(document.kind.empty() ? "?" : document.kind, " (",
                                             argv[i], " document ", document.index + 1, ")");
      if (!parsed.ok()) {
        std::cout << "FAIL " << label << "\n     " << parsed.status().message() << "\n";
        exit_code = 1;
        continue;
      }
      policy::ValidationResult result = policy::Validate(*parsed->message, nullptr);
      if (!result.ok()) {
        std::cout << "FAIL " << label << "\n";
        for (const policy::FieldError& e : result.errors) {
          std::cout << "     " << e.field << ": " << e.message << "\n";
        }
        exit_code = 1;
        continue;
      }
      std::cout << "ok   " << label << "\n";
    }
  }
  return exit_code;
}

#include "control-plane/cli/documents.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <optional>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/file.h"
#include "common/config/yaml_proto.h"
#include "control-plane/policy/codec.h"
#include "control-plane/policy/validate.h"

namespace meshlet::controlplane::cli {
namespace {

// The files named by `paths`: directories expanded to their policy files in name order.
std::optional<Failure> CollectFiles(const std::vector<std::string>& paths,
                                    std::vector<std::string>& out) {
  for (const std::string& f : paths) {
    struct stat st;
    if (f == "-") {
      out.push_back(f);
    } else if (::stat(f.c_str(), &st) != 0) {
      return Failure{kExitFailed, absl::StrCat(f, ": no such file or directory")};
    } else if (S_ISDIR(st.st_mode)) {
      std::vector<std::string> names;
      if (DIR* dir = ::opendir(f.c_str())) {
        while (dirent* e = ::readdir(dir)) {
          std::string name = e->d_name;
          if (absl::EndsWith(name, ".yaml") || absl::EndsWith(name, ".yml") ||
              absl::EndsWith(name, ".json")) {
            names.push_back(absl::StrCat(f, absl::EndsWith(f, "/") ? "" : "/", name));
          }
        }
        ::closedir(dir);
      }
      std::sort(names.begin(), names.end());
      out.insert(out.end(), names.begin(), names.end());
    } else {
      out.push_back(f);
    }
  }
  return std::nullopt;
}

}  // namespace

bool ReadYamlFiles(Session& session, const std::vector<std::string>& paths,
                   std::vector<SourceFile>& out) {
  std::vector<std::string> files;
  if (std::optional<Failure> f = CollectFiles(paths, files)) {
    session.Fail(*f);
    return false;
  }
  bool ok = true;
  for (const std::string& file : files) {
    SourceFile source;
    source.name = file == "-" ? kStdinName : file;
    std::optional<std::string> text;
    if (file == "-") {
      std::stringstream s;
      s << session.io().in.rdbuf();
      text = s.str();
    } else if (absl::StatusOr<std::string> content = ReadFile(file); content.ok()) {
      text = *std::move(content);
    } else {
      session.io().err << "error: " << file << ": cannot read\n";
      ok = false;
      continue;
    }
    absl::StatusOr<std::vector<config::YamlDocument>> split =
        config::SplitYamlDocuments(*text, source.name);
    if (!split.ok()) {
      session.io().err << "error: " << split.status().message() << "\n";
      ok = false;
      continue;
    }
    source.documents = std::move(*split);
    out.push_back(std::move(source));
  }
  return ok;
}

std::string Document::Label() const { return absl::StrCat(info->QualifiedName(), "/", name); }

bool LoadDocuments(Session& session, const std::vector<std::string>& paths,
                   const NamespaceOption& namespace_flag, std::vector<Document>& documents) {
  std::ostream& err = session.io().err;
  const std::string namespace_ = session.Namespace(namespace_flag);
  std::vector<SourceFile> files;
  bool ok = ReadYamlFiles(session, paths, files);
  for (const SourceFile& file : files) {
    const std::string& source_name = file.name;
    for (const config::YamlDocument& yaml : file.documents) {
      Document doc;
      doc.file = source_name;
      doc.index = yaml.index;
      doc.source = absl::StrCat(source_name, " (document ", yaml.index + 1, ")");
      config::YamlParseOptions options;
      options.source_name = source_name;
      options.line_offset = yaml.first_line - 1;
      absl::StatusOr<policy::ParsedResource> parsed = policy::ParseResource(yaml.yaml, options);
      if (!parsed.ok()) {
        std::string message(parsed.status().message());
        // Errors without a position ("kind: ...") get the document's.
        if (!absl::StartsWith(message, source_name)) {
          message = absl::StrCat(source_name, ":", yaml.first_line, ": ", message);
        }
        err << "error: " << message << " (document " << yaml.index + 1 << ")\n";
        ok = false;
        continue;
      }
      doc.info = parsed->info;
      doc.message = std::move(parsed->message);
      meshlet::policy::ObjectMeta* meta = policy::MutableMetadata(*doc.message);
      if (doc.info->namespaced && meta->namespace_().empty()) {
        meta->set_namespace_(namespace_);
      } else if (doc.info->namespaced && namespace_flag.set && meta->namespace_() != namespace_) {
        err << "error: " << doc.source << ": metadata.namespace \"" << meta->namespace_()
            << "\" differs from -n " << namespace_ << "\n";
        ok = false;
        continue;
      }
      doc.namespace_ = meta->namespace_();
      doc.name = meta->name();
      // Where the object came from, for meshctl explain; a document from stdin keeps what it says.
      if (source_name != kStdinName)
        (*meta->mutable_annotations())[kAppliedFromAnnotation] = source_name;
      policy::ValidationResult validation = policy::Validate(*doc.message, nullptr);
      if (!validation.ok()) {
        err << "error: " << doc.source << ": " << doc.info->kind << " \"" << doc.name
            << "\" is invalid:\n";
        for (const policy::FieldError& e : validation.errors) {
          err << "  " << (e.field.empty() ? "" : e.field + ": ") << e.message << "\n";
        }
        ok = false;
        continue;
      }
      documents.push_back(std::move(doc));
    }
  }
  if (ok && documents.empty()) {
    err << "error: no resources found in " << absl::StrJoin(paths, ", ") << "\n";
    return false;
  }
  return ok;
}

}  // namespace meshlet::controlplane::cli

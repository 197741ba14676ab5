#pragma once

// The policy documents of the files given to apply, delete and diff (-f FILE|DIR|-): every
// document of every file parsed and validated, every problem printed with file, line and field
// path, before anything is sent. Also how -f names files, which inject shares.

#include <google/protobuf/message.h>

#include <memory>
#include <string>
#include <vector>

#include "common/config/yaml_proto.h"
#include "control-plane/cli/command.h"
#include "control-plane/policy/kinds.h"

namespace meshlet::controlplane::cli {

// The annotation apply (and diff, comparing what apply would store) sets on every document from a
// file: the file's path as -f named it (a directory's files as "DIR/NAME"). Documents from stdin
// keep whatever value they carry. meshctl explain shows it beside the objects a trace names.
inline constexpr char kAppliedFromAnnotation[] = "meshlet.io/applied-from";
// How -f - is named in messages.
inline constexpr char kStdinName[] = "<stdin>";

struct Document {
  std::string source;  // "file.yaml (document 2)"
  std::string file;
  int index = 0;
  const policy::KindInfo* info = nullptr;
  std::unique_ptr<google::protobuf::Message> message;
  std::string namespace_;
  std::string name;

  // "service.meshlet.io/reviews", "httproute.gateway.networking.k8s.io/reviews"
  std::string Label() const;
};

// One file named by -f, split into its YAML documents (common/config/yaml_proto.h).
struct SourceFile {
  std::string name;  // as errors name it: the path, or kStdinName for "-"
  std::vector<config::YamlDocument> documents;
};

// The files named by -f (FILE, DIR or "-" for stdin; a directory means its *.yaml, *.yml and
// *.json files in name order), read and split. Prints each problem (a path that does not exist,
// an unreadable file, invalid YAML) on stderr and returns false if there was any; the files that
// could be read are in `out` either way.
bool ReadYamlFiles(Session& session, const std::vector<std::string>& paths,
                   std::vector<SourceFile>& out);

// Loads `files` (a directory means its *.yaml, *.yml and *.json files in name order; "-" is
// stdin) into `documents`. A document of a namespaced kind without a namespace gets `namespace_`;
// one naming another namespace than an explicit -n is refused. Prints every problem on stderr and
// returns false if there was any, or if there is no document at all.
bool LoadDocuments(Session& session, const std::vector<std::string>& files,
                   const NamespaceOption& namespace_flag, std::vector<Document>& documents);

}  // namespace meshlet::controlplane::cli

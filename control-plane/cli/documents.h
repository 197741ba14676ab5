#pragma once

// The policy documents of the files given to apply, delete and diff (-f FILE|DIR|-): every
// document of every file parsed and validated, every problem printed with file, line and field
// path, before anything is sent. Also how -f names files, which inject shares.

#include <google/protobuf/message.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "control-plane/cli/command.h"
#include "control-plane/policy/kinds.h"

namespace meshlet::controlplane::cli {

struct Document {
  std::string source;  // "file.yaml (document 2)"
  std::string file;
  int index = 0;
  const policy::KindInfo* info = nullptr;
  std::unique_ptr<google::protobuf::Message> message;
  std::string namespace_;
  std::string name;

  // "service.meshlet.io/reviews"
  std::string Label() const;
};

// The files named by -f (FILE, DIR or "-" for stdin): a directory means its *.yaml, *.yml and
// *.json files in name order. A path that does not exist is a failure.
std::optional<Failure> CollectFiles(const std::vector<std::string>& paths,
                                    std::vector<std::string>& out);

// The text of one of those files ("-": all of stdin), or nullopt when it cannot be read.
std::optional<std::string> ReadSource(Session& session, const std::string& file);

// Loads `files` (a directory means its *.yaml, *.yml and *.json files in name order; "-" is
// stdin) into `documents`. A document of a namespaced kind without a namespace gets `namespace_`;
// one naming another namespace than an explicit -n is refused. Prints every problem on stderr and
// returns false if there was any, or if there is no document at all.
bool LoadDocuments(Session& session, const std::vector<std::string>& files,
                   const NamespaceOption& namespace_flag, std::vector<Document>& documents);

}  // namespace meshlet::controlplane::cli

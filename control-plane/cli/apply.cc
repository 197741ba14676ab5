// apply, delete and diff: the commands that take policy files (documents.h).

#include <google/protobuf/descriptor.h>

#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "control-plane/cli/commands.h"
#include "control-plane/cli/documents.h"
#include "control-plane/cli/output.h"
#include "control-plane/policy/codec.h"
#include "control-plane/policy/kinds.h"

namespace meshlet::controlplane::cli {
namespace {

std::string ReasonFor(int status) {
  switch (status) {
    case 400:
      return "bad request";
    case 404:
      return "not found";
    case 409:
      return "conflict";
    case 422:
      return "invalid";
    default:
      return absl::StrCat("HTTP ", status);
  }
}

class Apply final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    return {FileFlag(&files_, true),
            DryRunFlag(&dry_run_, "the server validates and checks conflicts but stores nothing"),
            NamespaceFlag(&namespace_,
                          "the namespace of documents that name none (default: the context "
                          "file's, else default); documents naming another one are refused")};
  }

  int Run(Session& session) override {
    std::vector<Document> documents;
    if (!LoadDocuments(session, files_, namespace_, documents)) {
      session.io().err << "nothing applied\n";
      return kExitFailed;
    }
    int exit_code = kExitOk;
    for (const Document& doc : documents) {
      const std::string path = absl::StrCat(ResourcePath(*doc.info, doc.namespace_, doc.name),
                                            dry_run_ ? "?dryRun=All" : "");
      int call_exit = kExitOk;
      std::optional<ApiReply> reply =
          session.api().Call("PUT", path, policy::ToJson(*doc.message), &call_exit);
      if (!reply.has_value()) return call_exit;
      const int status = reply->http.status;
      if (status == 200 || status == 201) {
        std::string result = reply->http.Header("x-meshlet-result");
        if (result == "updated") result = "configured";
        if (result == "dry_run") result = status == 201 ? "created" : "configured";
        session.io().out << doc.Label() << " " << result << (dry_run_ ? " (dry run)" : "") << "\n";
        continue;
      }
      exit_code = kExitFailed;
      session.io().err << "error: " << doc.source << ": " << doc.info->kind << " \"" << doc.name
                       << "\": " << ReasonFor(status) << ": " << reply->ErrorMessage() << "\n";
      for (const auto& [field, message] : reply->Causes()) {
        if (!field.empty()) session.io().err << "  " << field << ": " << message << "\n";
      }
    }
    return exit_code;
  }

 private:
  std::vector<std::string> files_;
  bool dry_run_ = false;
  NamespaceOption namespace_;
};

class Delete final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    return {FileFlag(&files_, false), NamespaceFlag(&namespace_),
            DryRunFlag(&dry_run_, "the server checks but deletes nothing")};
  }

  int Run(Session& session) override {
    int exit_code = kExitOk;
    std::vector<std::tuple<const policy::KindInfo*, std::string, std::string>> targets;
    if (!files_.empty()) {
      std::vector<Document> documents;
      if (!LoadDocuments(session, files_, namespace_, documents)) return kExitFailed;
      for (const Document& d : documents) targets.emplace_back(d.info, d.namespace_, d.name);
    } else {
      const policy::KindInfo* info = session.KindArg(&exit_code);
      if (info == nullptr) return exit_code;
      const std::vector<std::string>& args = session.positional();
      if (args.size() < 2) return session.Fail({kExitUsage, "delete needs KIND NAME or -f FILE"});
      for (size_t i = 1; i < args.size(); ++i) {
        targets.emplace_back(info, session.Namespace(namespace_), args[i]);
      }
    }
    for (const auto& [info, ns, name] : targets) {
      std::optional<ApiReply> reply = session.api().Call(
          "DELETE", absl::StrCat(ResourcePath(*info, ns, name), dry_run_ ? "?dryRun=All" : ""), "",
          &exit_code);
      if (!reply.has_value()) return exit_code;
      const std::string label = absl::StrCat(info->QualifiedName(), "/", name);
      if (reply->http.status == 200) {
        session.io().out << label << " deleted" << (dry_run_ ? " (dry run)" : "") << "\n";
      } else {
        session.io().err << "error: " << label << ": " << reply->ErrorMessage() << "\n";
        exit_code = kExitFailed;
      }
    }
    return exit_code;
  }

 private:
  std::vector<std::string> files_;
  NamespaceOption namespace_;
  bool dry_run_ = false;
};

// The resource as YAML without the fields the server sets, for comparisons.
std::string Comparable(google::protobuf::Message& message) {
  policy::ClearServerSetFields(message);
  policy::SetTypeFields(message);
  absl::StatusOr<std::string> yaml = JsonToYaml(policy::ToJson(message));
  return yaml.ok() ? *yaml : policy::ToJson(message, true);
}

class Diff final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    return {FileFlag(&files_, true), NamespaceFlag(&namespace_)};
  }

  int Run(Session& session) override {
    std::vector<Document> documents;
    if (!LoadDocuments(session, files_, namespace_, documents)) return kExitUsage;
    bool differs = false;
    int exit_code = kExitOk;
    for (Document& doc : documents) {
      std::optional<ApiReply> reply = session.api().Call(
          "GET", ResourcePath(*doc.info, doc.namespace_, doc.name), "", &exit_code);
      if (!reply.has_value()) return exit_code;
      std::string current;
      if (reply->http.status == 200) {
        absl::StatusOr<policy::ParsedResource> live =
            policy::ParseStoredResource(doc.info->store_kind, reply->http.body);
        if (!live.ok()) return session.Fail({kExitUsage, std::string(live.status().message())});
        current = Comparable(*live->message);
      } else if (reply->http.status != 404) {
        return session.Fail({kExitUsage, reply->ErrorMessage()});
      }
      const std::string wanted = Comparable(*doc.message);
      const std::string id = absl::StrCat(
          doc.info->kind, "/", doc.info->namespaced ? doc.namespace_ + "/" : "", doc.name);
      std::string diff =
          UnifiedDiff(current, wanted, current.empty() ? "/dev/null" : absl::StrCat("live ", id),
                      absl::StrCat(doc.source, " ", id));
      if (!diff.empty()) {
        differs = true;
        session.io().out << diff;
      }
    }
    return differs ? kExitFailed : kExitOk;
  }

 private:
  std::vector<std::string> files_;
  NamespaceOption namespace_;
};

}  // namespace

CommandSpec ApplyCommand() {
  return {.name = "apply",
          .summary = "create or update the resources in files",
          .about =
              "Creates or replaces every resource in the files, one at a time in file "
              "order. Every document of every file is parsed and validated first (with "
              "file, line and field path); if any is invalid, every problem is printed and "
              "nothing is applied. A document with metadata.resourceVersion is applied "
              "only if the resource has not changed since.",
          .examples = {{"every policy of a directory", "meshctl apply -f examples/policies/"},
                       {"checked by the server, nothing stored",
                        "meshctl get tp reviews -o yaml | meshctl apply -f - --dry-run"}},
          .make = [] { return std::make_unique<Apply>(); }};
}

CommandSpec DeleteCommand() {
  return {.name = "delete",
          .args = "[KIND NAME...]",
          .summary = "delete resources by kind and name, or those in files",
          .about =
              "Deletes the named resources of a kind, or (with -f) every resource in the "
              "files.",
          .examples = {{"", "meshctl delete httproute reviews -n shop"},
                       {"", "meshctl delete -f examples/policies/ --dry-run"}},
          .make = [] { return std::make_unique<Delete>(); }};
}

CommandSpec DiffCommand() {
  return {.name = "diff",
          .summary = "what apply would change (exit 1 when it would change something)",
          .about =
              "Prints a unified diff per resource between what is stored and what apply "
              "would store, without the fields the server sets; a resource that does not "
              "exist yet diffs against /dev/null. Exits 0 when nothing would change, 1 "
              "when something would (like diff(1)), 2 or 3 on errors.",
          .examples = {{"", "meshctl diff -f examples/policies/"}},
          .make = [] { return std::make_unique<Diff>(); }};
}

}  // namespace meshlet::controlplane::cli

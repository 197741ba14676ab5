#include "control-plane/cli/command.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "control-plane/cli/help.h"
#include "control-plane/cli/output.h"
#include "control-plane/inject/revision.h"

namespace meshlet::controlplane::cli {

std::optional<Failure> Session::Connect() {
  absl::StatusOr<Connection> connection = LoadConnection(connection_, env_);
  if (!connection.ok()) return Failure{kExitUsage, std::string(connection.status().message())};
  ServerTrust trust{.ca_source = connection->ca_source,
                    .server_identity = connection->server_identity};
  if (!connection->ca_pem.empty()) {
    absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
        ServerTrustContext(connection->ca_pem, connection->server_identity);
    if (!context.ok()) {
      return Failure{kExitUsage,
                     absl::StrCat(connection->ca_source, ": ", context.status().message())};
    }
    trust.tls = *std::move(context);
  }
  api_.Connect(connection->server, connection->token, std::move(trust));
  context_namespace_ = connection->namespace_;
  return std::nullopt;
}

Failure Session::UsageFailure() const {
  return Failure{kExitUsage, absl::StrCat("usage: ", UsageLine(command_), " (see meshctl help ",
                                          command_.name, ")")};
}

std::string Session::Namespace(const NamespaceOption& option) const {
  std::string namespace_ = option.set ? option.value : context_namespace_;
  return namespace_.empty() ? std::string(policy::kDefaultNamespace) : namespace_;
}

std::optional<int> Session::PrintStructured(absl::string_view output, const std::string& json) {
  if (output == "json") {
    io_.out << json;
    return kExitOk;
  }
  if (output != "yaml") return std::nullopt;
  absl::StatusOr<std::string> yaml = JsonToYaml(json);
  if (!yaml.ok()) return Fail({kExitFailed, std::string(yaml.status().message())});
  io_.out << *yaml;
  return kExitOk;
}

int Session::ShowReply(
    absl::string_view output, const std::string& path,
    const std::function<absl::StatusOr<std::string>(absl::string_view)>& format) {
  int exit_code = kExitOk;
  std::optional<ApiReply> reply = api_.Call("GET", path, "", &exit_code);
  if (!reply.has_value()) return exit_code;
  if (reply->http.status != 200) return Fail({kExitFailed, reply->ErrorMessage()});
  if (output == "json") {
    io_.out << reply->http.body;
    return kExitOk;
  }
  absl::StatusOr<std::string> text = format(reply->http.body);
  if (!text.ok()) return Fail({kExitFailed, std::string(text.status().message())});
  io_.out << *text;
  return kExitOk;
}

const policy::KindInfo* Session::KindArg(int* exit_code) {
  if (positional_.empty()) {
    *exit_code = Fail({kExitUsage, absl::StrCat("needs a KIND: ", policy::KnownKindNames())});
    return nullptr;
  }
  const policy::KindInfo* info = policy::FindKind(positional_[0]);
  if (info == nullptr) {
    *exit_code = Fail({kExitUsage, absl::StrCat("unknown kind \"", positional_[0], "\"; one of ",
                                                policy::KnownKindNames(), ", workloads")});
  }
  return info;
}

std::function<std::unique_ptr<Command>()> Runs(std::function<int(Session&)> run) {
  class Simple final : public Command {
   public:
    explicit Simple(std::function<int(Session&)> run) : run_(std::move(run)) {}
    std::vector<flags::Flag> Flags() override { return {}; }
    int Run(Session& session) override { return run_(session); }

   private:
    std::function<int(Session&)> run_;
  };
  return [run = std::move(run)] { return std::make_unique<Simple>(run); };
}

flags::Flag NamespaceFlag(NamespaceOption* out, std::string help, bool required) {
  return {.name = "--namespace",
          .shorthand = "-n",
          .value = "NS",
          .help = std::move(help),
          .required = required,
          .set = [out](absl::string_view v) {
            out->value = std::string(v);
            out->set = true;
            return absl::OkStatus();
          }};
}

flags::Flag RevisionFlag(std::string* out, std::string help, bool required, bool* given) {
  return {.name = "--revision",
          .value = "NAME",
          .help = std::move(help),
          .required = required,
          .set = [out, given](absl::string_view v) {
            absl::StatusOr<std::string> revision = inject::ParseRevision(v);
            if (!revision.ok()) return revision.status();
            *out = *std::move(revision);
            if (given != nullptr) *given = true;
            return absl::OkStatus();
          }};
}

flags::Flag OutputFlag(std::string* out, std::vector<std::string> formats, std::string help) {
  std::string value = absl::StrJoin(formats, "|");
  return {
      .name = "--output",
      .shorthand = "-o",
      .value = std::move(value),
      .help = std::move(help),
      .set = [out, formats = std::move(formats)](absl::string_view v) {
        if (std::find(formats.begin(), formats.end(), v) == formats.end()) {
          return absl::InvalidArgumentError(absl::StrCat("one of ", absl::StrJoin(formats, ", ")));
        }
        *out = std::string(v);
        return absl::OkStatus();
      }};
}

flags::Flag FileFlag(std::vector<std::string>* out, bool required) {
  return {.name = "--filename",
          .shorthand = "-f",
          .value = "FILE|DIR|-",
          .help =
              "a file, a directory (its *.yaml, *.yml and *.json files in name order) or - for "
              "stdin; may be given several times",
          .required = required,
          .set = [out](absl::string_view v) {
            out->emplace_back(v);
            return absl::OkStatus();
          }};
}

flags::Flag DryRunFlag(bool* out, std::string help) {
  return {.name = "--dry-run", .help = std::move(help), .set = [out](absl::string_view v) {
            // kubectl's spellings --dry-run=server and --dry-run=client mean the same here.
            if (!v.empty() && v != "server" && v != "client") {
              return absl::InvalidArgumentError("--dry-run=server and =client are the only values");
            }
            *out = true;
            return absl::OkStatus();
          }};
}

flags::Flag Switch(std::string name, std::string shorthand, bool* out, std::string help) {
  flags::Flag flag = flags::SwitchFlag(std::move(name), out, std::move(help));
  flag.shorthand = std::move(shorthand);
  return flag;
}

}  // namespace meshlet::controlplane::cli

#include "control-plane/cli/context.h"

#include <google/protobuf/descriptor.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/base/file.h"
#include "common/config/yaml_proto.h"
#include "control-plane/cli/context.pb.h"

namespace meshlet::controlplane::cli {
namespace {

using ::meshlet::cli::MeshctlContext;

std::string ContextKeys() {
  const google::protobuf::Descriptor* d = MeshctlContext::descriptor();
  std::vector<std::string> names;
  for (int i = 0; i < d->field_count(); ++i) names.push_back(d->field(i)->name());
  return absl::StrJoin(names, ", ");
}

}  // namespace

std::vector<flags::Flag> ConnectionFlagTable(ConnectionFlags& flags) {
  return {
      flags::StringFlag(
          "--server", "HOST:PORT[,HOST:PORT...]", &flags.server,
          "the control-plane API; several replicas are tried in turn (default: the context "
          "file's, else 127.0.0.1:15014)"),
      flags::StringFlag("--token", "TOKEN", &flags.token,
                        "the API token (default: the context file's)"),
      flags::StringFlag("--token-file", "FILE", &flags.token_file, "read the API token from FILE"),
      flags::StringFlag(
          "--context-file", "FILE", &flags.context_file,
          absl::StrCat("default $MESHCTL_CONFIG, else ~/.meshlet/meshctl.yaml; its keys (no "
                       "others): ",
                       ContextKeys())),
      {.name = "--timeout",
       .value = "DURATION",
       .help = "per request (default 10s)",
       .set =
           [&flags](absl::string_view value) {
             absl::StatusOr<absl::Duration> d = config::ParseDurationText(value);
             if (!d.ok() || *d <= absl::ZeroDuration()) {
               return absl::InvalidArgumentError("not a duration");
             }
             flags.timeout = std::chrono::milliseconds(absl::ToInt64Milliseconds(*d));
             return absl::OkStatus();
           }},
  };
}

absl::StatusOr<Connection> LoadConnection(const ConnectionFlags& flags, const Environment& env) {
  std::string context_path = flags.context_file;
  bool explicit_path = !context_path.empty();
  if (context_path.empty()) {
    if (!env.meshctl_config.empty()) {
      context_path = env.meshctl_config;
      explicit_path = true;
    } else if (!env.home.empty()) {
      context_path = absl::StrCat(env.home, "/.meshlet/meshctl.yaml");
    }
  }
  Connection connection{.server = "127.0.0.1:15014"};
  std::string token_file;
  if (!context_path.empty()) {
    absl::StatusOr<std::string> text = ReadFile(context_path);
    if (!text.ok() && explicit_path) {
      return absl::InvalidArgumentError(absl::StrCat("cannot read context file ", context_path));
    }
    if (text.ok()) {
      // Unknown keys are errors with file, line and the known keys, as in policy files.
      MeshctlContext context;
      config::YamlParseOptions options;
      options.source_name = context_path;
      if (absl::Status s = config::YamlToProto(*text, context, options); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("context file ", s.message()));
      }
      if (!context.server().empty()) connection.server = context.server();
      connection.token = context.token();
      connection.namespace_ = context.namespace_();
      token_file = context.tokenfile();
      // A relative tokenFile is relative to the context file.
      if (!token_file.empty() && token_file[0] != '/') {
        size_t slash = context_path.rfind('/');
        if (slash != std::string::npos) {
          token_file = absl::StrCat(context_path.substr(0, slash + 1), token_file);
        }
      }
    }
  }
  if (!flags.server.empty()) connection.server = flags.server;
  if (!flags.token_file.empty()) {
    token_file = flags.token_file;
    connection.token.clear();
  }
  if (!flags.token.empty()) connection.token = flags.token;
  if (connection.token.empty() && !token_file.empty()) {
    absl::StatusOr<std::string> text = ReadFile(token_file);
    if (!text.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("cannot read token file ", token_file));
    }
    connection.token = std::string(absl::StripAsciiWhitespace(*text));
  }
  return connection;
}

}  // namespace meshlet::controlplane::cli

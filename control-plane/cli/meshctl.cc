#include "control-plane/cli/meshctl.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/flags/flags.h"
#include "control-plane/cli/commands.h"
#include "control-plane/cli/failure.h"
#include "control-plane/cli/help.h"
#include "control-plane/inject/revision.h"

namespace meshlet::controlplane::cli {

int RunMeshctl(std::vector<std::string> args, Io io, ApiTransport& transport,
               const Environment& env) {
  ConnectionFlags connection;
  if (absl::Status s = flags::Extract(ConnectionFlagTable(connection), args); !s.ok()) {
    return Report(io.err, {kExitUsage, std::string(s.message())});
  }
  if (args.empty()) {
    io.err << GlobalHelp();
    return kExitUsage;
  }
  std::string name = args[0];
  args.erase(args.begin());
  if (name == "--help" || name == "-h") name = "help";
  const CommandSpec* spec = FindCommand(name);
  if (spec == nullptr) return Report(io.err, {kExitUsage, UnknownCommand(name)});

  std::unique_ptr<Command> command = spec->make();
  // The global --revision is also the revision of the commands that have one (upgrade, inject).
  if (connection.revision.has_value()) {
    for (const flags::Flag& flag : command->Flags()) {
      if (flag.name != "--revision") continue;
      args.insert(args.begin(),
                  absl::StrCat("--revision=", inject::RevisionDisplayName(*connection.revision)));
      break;
    }
  }
  bool help = false;
  absl::StatusOr<flags::ParsedArgs> parsed =
      flags::Parse(FlagsWithHelp(*command, &help), args,
                   {.command = spec->name,
                    .help_hint = absl::StrCat("see meshctl help ", spec->name),
                    .positional = true});
  if (!parsed.ok()) return Report(io.err, {kExitUsage, std::string(parsed.status().message())});
  if (help) {
    io.out << CommandHelp(*spec);
    return kExitOk;
  }
  Session session(io, transport, std::move(connection), env, *spec);
  session.positional() = std::move(parsed->positional);
  if (spec->needs_context) {
    if (std::optional<Failure> f = session.Connect()) return session.Fail(*f);
  }
  return command->Run(session);
}

}  // namespace meshlet::controlplane::cli

#include "control-plane/cli/help.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "control-plane/cli/commands.h"

namespace meshlet::controlplane::cli {

std::vector<flags::Flag> FlagsWithHelp(Command& command, bool* help_requested) {
  std::vector<flags::Flag> table = command.Flags();
  table.push_back(flags::HelpFlag(help_requested, "this help"));
  return table;
}

std::string UsageLine(const CommandSpec& command) {
  std::vector<std::string> words = {"meshctl", command.name};
  if (!command.args.empty()) words.push_back(command.args);
  for (const flags::Flag& flag : command.make()->Flags()) {
    const std::string usage = flags::FlagUsage(flag);
    words.push_back(flag.required ? usage : absl::StrCat("[", usage, "]"));
  }
  return flags::Wrap(words, 4);
}

std::string GlobalHelp() {
  std::string out = absl::StrCat(
      "meshctl: the operator's client for the meshlet control-plane API.\n\n"
      "Usage:\n  meshctl [global flags] COMMAND [arguments] [flags]\n\nCommands:\n");
  size_t width = 0;
  for (const CommandSpec& c : Commands()) width = std::max(width, c.name.size());
  for (const CommandSpec& c : Commands()) {
    absl::StrAppend(&out, "  ", c.name, std::string(width - c.name.size() + 3, ' '),
                    flags::Wrap(c.summary, width + 5), "\n");
  }
  ConnectionFlags scratch;
  absl::StrAppend(&out, "\nGlobal flags (before or after the command):\n",
                  flags::FlagTable(ConnectionFlagTable(scratch)), "\n",
                  flags::Wrap("\"meshctl help COMMAND\" or \"meshctl COMMAND --help\" shows a "
                              "command's usage, flags and examples.",
                              0),
                  "\n",
                  flags::Wrap("Exit codes: 0 success; 1 the operation failed (invalid or refused "
                              "resource, not found, diff found differences); 2 usage error "
                              "(unknown command, flag or kind, missing argument, unreadable or "
                              "invalid context file, no CA to verify the control plane with); 3 "
                              "the control plane cannot be reached, did not verify or refused "
                              "the token.",
                              0),
                  "\n");
  return out;
}

std::string CommandHelp(const CommandSpec& command) {
  std::unique_ptr<Command> instance = command.make();
  bool unused = false;
  std::string out =
      absl::StrCat(flags::Wrap(command.about, 0), "\n\nUsage:\n  ", UsageLine(command),
                   "\n\nFlags:\n", flags::FlagTable(FlagsWithHelp(*instance, &unused)));
  if (!command.examples.empty()) {
    out += "\nExamples:\n";
    for (const auto& [what, line] : command.examples) {
      if (!what.empty()) absl::StrAppend(&out, "  # ", what, "\n");
      absl::StrAppend(&out, "  ", line, "\n");
    }
  }
  ConnectionFlags scratch;
  std::vector<std::string> global;
  for (const flags::Flag& f : ConnectionFlagTable(scratch)) global.push_back(f.name);
  absl::StrAppend(
      &out, "\n",
      flags::Wrap(
          absl::StrCat("Global flags: ", absl::StrJoin(global, ", "), " (see meshctl help)."), 0),
      "\n");
  return out;
}

CommandSpec HelpCommand() {
  return {.name = "help",
          .args = "[COMMAND]",
          .summary = "a command's usage, flags and examples; without COMMAND this list",
          .about =
              "Shows a command's usage, flags and examples (the same as meshctl COMMAND "
              "--help), or without COMMAND the list of commands and the global flags.",
          .examples = {{"", "meshctl help apply"}, {"", "meshctl get --help"}},
          .needs_context = false,
          .make = Runs([](Session& session) {
            const std::vector<std::string>& args = session.positional();
            if (args.empty()) {
              session.io().out << GlobalHelp();
              return kExitOk;
            }
            if (args.size() > 1) return session.Fail(session.UsageFailure());
            const CommandSpec* command = FindCommand(args[0]);
            if (command == nullptr) return session.Fail({kExitUsage, UnknownCommand(args[0])});
            session.io().out << CommandHelp(*command);
            return kExitOk;
          })};
}

}  // namespace meshlet::controlplane::cli

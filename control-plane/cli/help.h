#pragma once

// meshctl's help, generated from the command and flag tables: the list of commands with the
// global flags (`meshctl help`), and one command's usage, flags and examples
// (`meshctl help COMMAND`, `COMMAND --help`).

#include <string>

#include "control-plane/cli/command.h"

namespace meshlet::controlplane::cli {

// "meshctl get KIND [NAME] [-n NS] [-A] [-o table|yaml|json]", wrapped.
std::string UsageLine(const CommandSpec& command);

// `meshctl help` (and, on stderr, `meshctl` alone).
std::string GlobalHelp();

// `meshctl help COMMAND`.
std::string CommandHelp(const CommandSpec& command);

// The flags a command accepts: its own, then -h/--help (writing `*help_requested`).
std::vector<flags::Flag> FlagsWithHelp(Command& command, bool* help_requested);

// help [COMMAND].
CommandSpec HelpCommand();

}  // namespace meshlet::controlplane::cli

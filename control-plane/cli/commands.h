#pragma once

// Every meshctl command, in the order `meshctl help` lists them. Each is defined in its own file
// with its flags: apply.cc (apply, delete, diff), inject.cc, install.cc (install, uninstall, and
// check --pre's part), upgrade.cc, get.cc (get, describe), proxy.cc (proxy-status,
// proxy-config), token.cc, operator_token.cc, multicluster.cc, trust_bundle.cc, context_command.cc,
// traces.cc (traces, trace), explain.cc, stat.cc (stat, top), tap.cc, check.cc (dashboard, check,
// version), help.cc.

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/base/version.h"
#include "control-plane/cli/command.h"

namespace meshlet::controlplane::cli {

CommandSpec ApplyCommand();
CommandSpec DeleteCommand();
CommandSpec DiffCommand();
CommandSpec InjectCommand();
CommandSpec UpgradeCommand();
CommandSpec TagCommand();
CommandSpec InstallCommand();
CommandSpec UninstallCommand();
CommandSpec GetCommand();
CommandSpec DescribeCommand();
CommandSpec ProxyStatusCommand();
CommandSpec ProxyConfigCommand();
CommandSpec TokenCommand();
CommandSpec ContextCommand();
CommandSpec OperatorTokenCommand();
CommandSpec MulticlusterCommand();
CommandSpec TrustBundleCommand();
CommandSpec CaCommand();
CommandSpec TracesCommand();
CommandSpec TraceCommand();
CommandSpec ExplainCommand();
CommandSpec StatCommand();
CommandSpec TapCommand();
CommandSpec TopCommand();
CommandSpec DashboardCommand();
CommandSpec CheckCommand();
CommandSpec VersionCommand();
// HelpCommand() is in help.h.

// check --pre: the install manifests of `files` checked offline (control-plane/install).
int PreCheck(Session& session, const std::vector<std::string>& files);

const std::vector<CommandSpec>& Commands();

// The command named `name`, or null.
const CommandSpec* FindCommand(absl::string_view name);

// `unknown command "NAME"; known commands: ...`.
std::string UnknownCommand(absl::string_view name);

// meshctl's own version.
inline constexpr const char* kMeshctlVersion = kMeshletVersion;

}  // namespace meshlet::controlplane::cli

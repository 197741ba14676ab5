#include "control-plane/cli/commands.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "control-plane/cli/help.h"

namespace meshlet::controlplane::cli {

const std::vector<CommandSpec>& Commands() {
  static const auto* commands = new std::vector<CommandSpec>{
      ApplyCommand(),   GetCommand(),           DescribeCommand(),     DeleteCommand(),
      DiffCommand(),    InjectCommand(),        InstallCommand(),      UninstallCommand(),
      UpgradeCommand(), TagCommand(),           ProxyStatusCommand(),  ProxyConfigCommand(),
      TokenCommand(),   OperatorTokenCommand(), MulticlusterCommand(), TrustBundleCommand(),
      CaCommand(),      TracesCommand(),        TraceCommand(),        ExplainCommand(),
      StatCommand(),    TopCommand(),           TapCommand(),          DashboardCommand(),
      ContextCommand(), CheckCommand(),         VersionCommand(),      HelpCommand(),
  };
  return *commands;
}

const CommandSpec* FindCommand(absl::string_view name) {
  for (const CommandSpec& c : Commands()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::string UnknownCommand(absl::string_view name) {
  return absl::StrCat(
      "unknown command \"", name, "\"; known commands: ",
      absl::StrJoin(Commands(), ", ",
                    [](std::string* out, const CommandSpec& c) { out->append(c.name); }),
      " (see meshctl help)");
}

}  // namespace meshlet::controlplane::cli

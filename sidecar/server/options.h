#pragma once

// ServerOptions: the sidecar's command line, parsed without global flag state so it can be
// tested and so every flag accepts the dashed spelling operators type (`--admin-address`) as well
// as the underscored one. Value type; no threads involved.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/base/clock.h"
#include "common/base/logging.h"
#include "common/net/address.h"

namespace meshlet::sidecar {

struct ServerOptions {
  std::string config_path;  // --config: the bootstrap file (YAML or JSON)
  int concurrency = 2;      // --concurrency: worker threads
  net::Address admin_address;
  LogLevel log_level = LogLevel::kInfo;
  Duration drain_time = std::chrono::seconds(30);
  std::string access_log_path;  // empty: no global access log
};

// What the command line asked for: run, or print help/version and exit 0.
struct ParsedCommandLine {
  enum class Action { kRun, kHelp, kVersion };
  Action action = Action::kRun;
  ServerOptions options;
};

// Parses argv[1..]. `--flag=value` and `--flag value` are both accepted. Errors
// (InvalidArgument) name the flag and what was wrong with its value.
absl::StatusOr<ParsedCommandLine> ParseCommandLine(const std::vector<std::string>& args);

// The text `sidecar --help` prints.
std::string UsageText();

}  // namespace meshlet::sidecar

// The sidecar binary: command line → Server (sidecar/server) → run until drained or told to quit.
// `sidecar init ...` is the pod's traffic-capture step instead (sidecar/capture), so one image
// serves the init container and the sidecar.

#include <cstdio>
#include <string>
#include <vector>

#include "common/base/version.h"
#include "sidecar/capture/init_command.h"
#include "sidecar/server/options.h"
#include "sidecar/server/server.h"

int main(int argc, char** argv) {
  using meshlet::sidecar::server::ParseCommandLine;
  using meshlet::sidecar::server::ParsedCommandLine;
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "init") {
    return meshlet::sidecar::capture::InitMain({args.begin() + 1, args.end()});
  }
  absl::StatusOr<ParsedCommandLine> command_line = ParseCommandLine(args);
  if (!command_line.ok()) {
    std::fprintf(stderr, "sidecar: %s\n", std::string(command_line.status().message()).c_str());
    return 2;
  }
  switch (command_line->action) {
    case ParsedCommandLine::Action::kHelp:
      std::fputs(meshlet::sidecar::server::UsageText().c_str(), stdout);
      std::puts("\nsidecar init [flags] programs the pod's traffic capture (sidecar init --help).");
      return 0;
    case ParsedCommandLine::Action::kVersion:
      std::printf("meshlet sidecar %s\n", meshlet::kMeshletVersion);
      return 0;
    case ParsedCommandLine::Action::kRun:
      break;
  }
  if (meshlet::sidecar::server::HasAutoValues(command_line->options)) {
    absl::StatusOr<meshlet::sidecar::server::PodEnvironment> pod =
        meshlet::sidecar::server::ReadPodEnvironment();
    absl::Status status =
        pod.ok() ? meshlet::sidecar::server::ResolveAutoValues(command_line->options, *pod)
                 : pod.status();
    if (!status.ok()) {
      std::fprintf(stderr, "sidecar: %s\n", std::string(status.message()).c_str());
      return 1;
    }
  }
  meshlet::sidecar::server::Server server(command_line->options);
  if (absl::Status status = server.Init(); !status.ok()) {
    std::fprintf(stderr, "sidecar: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return server.Run();
}

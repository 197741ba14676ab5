// The control-plane binary: command line → ControlPlane (control-plane/server) → run until
// SIGTERM/SIGINT.

#include <csignal>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "common/flags/flags.h"
#include "control-plane/ca/ca_service.h"
#include "control-plane/command_line.h"
#include "control-plane/server/control_plane.h"
#include "control-plane/telemetry/telemetry_service.h"
#include "control-plane/xds/xds_service.h"

int main(int argc, char** argv) {
  using meshlet::controlplane::CommandLine;
  // A peer closing its connection while TLS writes to it must be an error on that connection,
  // not the end of the process.
  ::signal(SIGPIPE, SIG_IGN);
  absl::StatusOr<CommandLine> command_line =
      meshlet::controlplane::ParseCommandLine(std::vector<std::string>(argv + 1, argv + argc));
  if (!command_line.ok()) {
    std::fprintf(stderr, "control-plane: %s\n",
                 std::string(command_line.status().message()).c_str());
    return meshlet::flags::kUsageExitCode;
  }
  switch (command_line->action) {
    case CommandLine::Action::kHelp:
      std::fputs(meshlet::controlplane::UsageText().c_str(), stdout);
      return 0;
    case CommandLine::Action::kVersion:
      std::printf("meshlet control-plane %s\n", meshlet::controlplane::kControlPlaneVersion);
      return 0;
    case CommandLine::Action::kRun:
      break;
  }
  meshlet::controlplane::ControlPlane control_plane(std::move(command_line->control_plane));
  if (absl::Status status = control_plane.Init(); !status.ok()) {
    std::fprintf(stderr, "control-plane: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  meshlet::controlplane::ads::XdsService xds(control_plane, std::move(command_line->xds));
  if (absl::Status status = xds.Start(); !status.ok()) {
    std::fprintf(stderr, "control-plane: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  // The CA serves on the discovery port, next to the ADS.
  meshlet::controlplane::ca::CaService ca(control_plane, std::move(command_line->ca));
  if (absl::Status status = ca.Start(xds.grpc_server()); !status.ok()) {
    std::fprintf(stderr, "control-plane: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  // Sidecars get the CA's roots over xDS, and may renew with their certificate on 15012.
  if (xds.grpc_server() != nullptr) {
    if (absl::Status status = xds.SetTrustBundle(ca.authority().trust_bundle_pem()); !status.ok()) {
      std::fprintf(stderr, "control-plane: %s\n", std::string(status.message()).c_str());
      return 1;
    }
  }
  meshlet::controlplane::telemetry::TelemetryService telemetry(control_plane,
                                                               std::move(command_line->telemetry));
  if (absl::Status status = telemetry.Start(xds.grpc_server()); !status.ok()) {
    std::fprintf(stderr, "control-plane: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return control_plane.Run();
}

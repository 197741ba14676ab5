// The control-plane binary: command line → ControlPlane (control-plane/server) → run until
// SIGTERM/SIGINT.

#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "control-plane/ca/ca_service.h"
#include "control-plane/server/control_plane.h"
#include "control-plane/telemetry/telemetry_service.h"
#include "control-plane/xds/xds_service.h"

int main(int argc, char** argv) {
  using meshlet::controlplane::ParsedControlPlaneCommandLine;
  // A peer closing its connection while TLS writes to it must be an error on that connection,
  // not the end of the process.
  ::signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args(argv + 1, argv + argc);
  // The discovery service takes its --xds-* flags; the rest are the control plane's.
  auto xds_options = meshlet::controlplane::ads::ExtractXdsFlags(args);
  if (!xds_options.ok()) {
    std::fprintf(stderr, "control-plane: %s\n",
                 std::string(xds_options.status().message()).c_str());
    return 2;
  }
  // The workload CA takes its --ca-*, --trust-domain and --cert-* flags.
  auto ca_options = meshlet::controlplane::ca::ExtractCaFlags(args);
  if (!ca_options.ok()) {
    std::fprintf(stderr, "control-plane: %s\n", std::string(ca_options.status().message()).c_str());
    return 2;
  }
  // The trace collector takes --otlp-address, --zipkin-address, --trace-store-* and --golden-*
  // flags.
  auto telemetry_options = meshlet::controlplane::telemetry::ExtractTelemetryFlags(args);
  if (!telemetry_options.ok()) {
    std::fprintf(stderr, "control-plane: %s\n",
                 std::string(telemetry_options.status().message()).c_str());
    return 2;
  }
  auto command_line = meshlet::controlplane::ParseControlPlaneCommandLine(args);
  if (!command_line.ok()) {
    std::fprintf(stderr, "control-plane: %s\n",
                 std::string(command_line.status().message()).c_str());
    return 2;
  }
  switch (command_line->action) {
    case ParsedControlPlaneCommandLine::Action::kHelp:
      std::fputs(meshlet::controlplane::ControlPlaneUsage().c_str(), stdout);
      std::fputs(meshlet::controlplane::ads::XdsUsage().c_str(), stdout);
      std::fputs(meshlet::controlplane::ca::CaUsage().c_str(), stdout);
      std::fputs(meshlet::controlplane::telemetry::TelemetryUsage().c_str(), stdout);
      return 0;
    case ParsedControlPlaneCommandLine::Action::kVersion:
      std::printf("meshlet control-plane %s\n", meshlet::controlplane::kControlPlaneVersion);
      return 0;
    case ParsedControlPlaneCommandLine::Action::kRun:
      break;
  }
  meshlet::controlplane::ControlPlane control_plane(command_line->options);
  if (absl::Status status = control_plane.Init(); !status.ok()) {
    std::fprintf(stderr, "control-plane: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  meshlet::controlplane::ads::XdsService xds(control_plane, *std::move(xds_options));
  if (absl::Status status = xds.Start(); !status.ok()) {
    std::fprintf(stderr, "control-plane: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  // The CA serves on the discovery port, next to the ADS.
  meshlet::controlplane::ca::CaService ca(control_plane, *std::move(ca_options));
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
                                                               *std::move(telemetry_options));
  if (absl::Status status = telemetry.Start(xds.grpc_server()); !status.ok()) {
    std::fprintf(stderr, "control-plane: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return control_plane.Run();
}

// The meshctl binary: the process's streams, environment and an HTTP transport, handed to
// RunMeshctl (meshctl.h), which dispatches to the command.

#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "control-plane/cli/api_client.h"
#include "control-plane/cli/meshctl.h"

int main(int argc, char** argv) {
  using namespace meshlet::controlplane::cli;  // NOLINT: the binary's whole body
  // A control plane that goes away mid-request is an error to report, not a reason to die.
  ::signal(SIGPIPE, SIG_IGN);
  Environment env;
  if (const char* config = std::getenv("MESHCTL_CONFIG")) env.meshctl_config = config;
  if (const char* home = std::getenv("HOME")) env.home = home;
  HttpApiTransport transport;
  return RunMeshctl(std::vector<std::string>(argv + 1, argv + argc),
                    Io{.in = std::cin,
                       .out = std::cout,
                       .err = std::cerr,
                       .out_is_terminal = isatty(STDOUT_FILENO) != 0},
                    transport, env);
}

#pragma once

// meshctl, the operator's command-line client for the control-plane API (docs/meshctl.md): takes
// the global flags from anywhere on the command line, finds the command, parses its flags with
// the command's own table, prints its help when asked, reads the context file when the command
// needs it, and runs it. meshctl_main.cc calls this with the process's streams, environment and
// an HTTP transport; tests call it with string streams and a fake transport.
//
// Exit codes (failure.h): 0 success, 1 the operation failed (invalid policy, refused, not found,
// differences found by `diff`), 2 usage errors, 3 the control plane could not be reached or
// refused the token.

#include <string>
#include <vector>

#include "control-plane/cli/api_client.h"
#include "control-plane/cli/command.h"
#include "control-plane/cli/context.h"

namespace meshlet::controlplane::cli {

// Runs meshctl with `args` (argv without the program name); returns the exit code.
int RunMeshctl(std::vector<std::string> args, Io io, ApiTransport& transport,
               const Environment& env);

}  // namespace meshlet::controlplane::cli

#pragma once

// `sidecar init`: the pod's traffic-capture step, a subcommand of the proxy binary so that one
// image serves the init container and the sidecar. Parses its command line (common/flags) into
// CaptureOptions and runs sidecar/capture/iptables.h: install the rules, remove them
// (--cleanup), or print them (--dry-run). docs/operations.md#traffic-capture says what the rules
// are and why.
//
// Single-threaded; runs child processes (iptables-save, iptables-restore) and waits for them.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sidecar/capture/iptables.h"
#include "sidecar/capture/rules.h"

namespace meshlet::sidecar::capture {

struct InitCommandLine {
  CaptureOptions options;
  Action action = Action::kApply;
  bool dry_run = false;
  bool help = false;
  int lock_wait_seconds = 10;
};

// Parses the arguments after "init". Errors name the flag and what is wrong with its value.
absl::StatusOr<InitCommandLine> ParseInitCommandLine(const std::vector<std::string>& args);

// What `sidecar init --help` prints.
std::string InitUsageText();

// Runs `sidecar init ARGS...` and returns the process's exit status: 0 done, 1 failed (the
// reason, and what to do, on stderr), 2 a bad command line. What was applied goes to stdout.
int InitMain(const std::vector<std::string>& args,
             const System& system = System::FromEnvironment());

}  // namespace meshlet::sidecar::capture

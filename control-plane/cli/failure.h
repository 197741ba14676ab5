#pragma once

// How a meshctl command ends: its exit code and, when it fails, the one line it says about it
// ("meshctl: ..." on stderr). docs/meshctl.md#exit-codes lists the codes.

#include <ostream>
#include <string>

#include "common/flags/flags.h"

namespace meshlet::controlplane::cli {

inline constexpr int kExitOk = 0;
// The operation failed: an invalid or refused resource, not found, differences found by `diff`.
inline constexpr int kExitFailed = 1;
// Unknown command, flag or kind, a missing argument, an unreadable or invalid context file.
inline constexpr int kExitUsage = flags::kUsageExitCode;
// The control plane cannot be reached or refused the token.
inline constexpr int kExitUnreachable = 3;

struct Failure {
  int code;
  std::string message;
};

// Writes "meshctl: MESSAGE" to `err` and returns the failure's exit code.
inline int Report(std::ostream& err, const Failure& failure) {
  err << "meshctl: " << failure.message << "\n";
  return failure.code;
}

}  // namespace meshlet::controlplane::cli

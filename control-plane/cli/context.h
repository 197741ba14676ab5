#pragma once

// Where meshctl connects and as whom: the global flags (--server, --token, --token-file,
// --context-file, --timeout, accepted before or after the command) over the context file
// (docs/meshctl.md#connecting; its keys are context.proto's), over the defaults.

#include <chrono>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/flags/flags.h"

namespace meshlet::controlplane::cli {

struct ConnectionFlags {
  std::string server;                        // --server HOST:PORT
  std::string token;                         // --token TOKEN
  std::string token_file;                    // --token-file FILE
  std::string context_file;                  // --context-file FILE
  std::chrono::milliseconds timeout{10000};  // --timeout DURATION, per request
};

// The global flags, writing into `flags`, in the order `meshctl help` lists them.
std::vector<flags::Flag> ConnectionFlagTable(ConnectionFlags& flags);

// What the process environment says: $MESHCTL_CONFIG and $HOME (empty when unset).
struct Environment {
  std::string meshctl_config;
  std::string home;
};

struct Connection {
  std::string server;      // HOST:PORT
  std::string token;       // empty: none
  std::string namespace_;  // the context file's default namespace, or empty
};

// Reads the context file (--context-file, else $MESHCTL_CONFIG, else ~/.meshlet/meshctl.yaml,
// which alone may be absent) and the token file, and applies the flags over them. The server
// defaults to 127.0.0.1:15014; a relative tokenFile is relative to the context file. Errors
// (InvalidArgument: exit code 2) name the file: unreadable, not YAML, an unknown key (with its
// line and the known keys).
absl::StatusOr<Connection> LoadConnection(const ConnectionFlags& flags, const Environment& env);

}  // namespace meshlet::controlplane::cli

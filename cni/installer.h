#pragma once

// The node agent's file work (docs/adr/0094, "Amended: the node agent"): meshlet-cni kept last in
// the plugin list of the CNI configuration the runtime uses, and taken out on uninstall with the
// file left as the agent found it. The agent's state (the file as it was before the insertion,
// and what the agent wrote) is kept in `state_file`, so that a restarted agent still restores the
// original bytes, also for a .conf it converted to a .conflist.
//
// Every write is a temporary file and a rename (WriteFileAtomically): a reader sees the old or
// the new file, never a part. A file that is not a network configuration is reported, never
// written. Blocking file I/O; one Installer per conf dir, used from one thread.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace meshlet::cni {

// The names of the regular files in `dir` (symlinks followed), sorted. NotFound and the like
// (naming the dir) when it cannot be read.
absl::StatusOr<std::vector<std::string>> ListFiles(const std::string& dir);

struct InstallerOptions {
  std::string conf_dir;    // the runtime's CNI conf dir (/etc/cni/net.d)
  std::string state_file;  // the agent's state; not in conf_dir unless hidden (starts with ".")
  std::string plugin;      // meshlet-cni's entry: one JSON object with "type": "meshlet-cni"
  size_t max_conf_bytes = 1 << 20;  // a larger configuration file is refused
};

enum class EnsureOutcome {
  kInChain,   // meshlet-cni was already last in the file the runtime uses: nothing written
  kInserted,  // inserted (first time, or with a changed entry)
  kRepaired,  // someone rewrote the file without meshlet-cni (or moved it): inserted again
  kNoConfig,  // the conf dir has no network configuration yet (the primary plugin's agent has
              // not written it): nothing to insert into
};
absl::string_view EnsureOutcomeName(EnsureOutcome outcome);

class Installer {
 public:
  explicit Installer(InstallerOptions options) : options_(std::move(options)) {}

  // Makes meshlet-cni the last plugin of the file the runtime uses. Errors: NotFound (no conf
  // dir), InvalidArgument (the file is not a network configuration; it is left untouched), or
  // the failed read or write (the file is then as before).
  absl::StatusOr<EnsureOutcome> Ensure();

  // Takes meshlet-cni out: when the file is still what the agent wrote, the original file (name
  // and bytes) comes back and a converted .conflist is removed; when someone rewrote it since,
  // only meshlet-cni's entry is spliced out. Then the state file is removed. OK when there was
  // nothing to remove.
  absl::Status Uninstall();

 private:
  InstallerOptions options_;
};

}  // namespace meshlet::cni

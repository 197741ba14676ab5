#pragma once

// Applies the capture rules of sidecar/capture/rules.h to the network namespace this process is
// in, by running iptables-save and iptables-restore (ip6tables-* for IPv6): for each family,
// read the nat table, hand iptables-restore --noflush one batch (atomic: all of it or none),
// read the table back and check it. Removing (--cleanup) works the same way.
//
// Before touching anything it says clearly what is missing: the NET_ADMIN capability, or the
// iptables binaries. Those checks, and the IPv6 detection of --ipv6=auto, read the System below,
// so tests run them against a fake /proc and fake tools.
//
// Runs child processes and waits for them: for a short-lived command (`sidecar init`), not for
// a process with an event loop. Single-threaded.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sidecar/capture/rules.h"

namespace meshlet::sidecar::capture {

// Where the tools and the kernel's view come from.
struct System {
  // Directories searched for the iptables tools, in order.
  std::vector<std::string> search_path;
  // Read for self/status (capabilities) and net/if_inet6 (the pod's IPv6 addresses).
  std::string proc_dir = "/proc";
  // How long iptables-restore waits for the xtables lock (its --wait). A tool still running
  // after this plus half a minute is killed and the run fails.
  absl::Duration lock_wait = absl::Seconds(10);

  // PATH (or, without one, the usual /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:
  // /bin) and the real /proc.
  static System FromEnvironment();
};

enum class Action {
  kApply,    // install (or replace) the rules
  kCleanup,  // remove exactly what kApply installs
  kCheck,    // change nothing; fail unless the nat table holds what kApply installs
};

// The families the options select: IPv4 always; IPv6 when --ipv6=true, or with --ipv6=auto when
// the pod has a global IPv6 address. A line for `log` says why IPv6 is left out, if it is.
std::vector<Family> SelectFamilies(const CaptureOptions& options, const System& system,
                                   std::string* log);

// What `sidecar init --dry-run` prints: for each selected family, a comment naming the tool,
// then its iptables-restore input as for a namespace without the rules (every jump added; for
// kCleanup, everything removed). Reads no nat table and needs no privilege: the output can be
// piped into `iptables-restore --noflush` as it is (comments included) for one family.
std::string DryRun(const CaptureOptions& options, Action action, const System& system);

// Applies `action` to each selected family, appending to `log` what it ran and what it found.
// Stops at the first error; what was done before it stays done (and logged). Running kApply
// again replaces the rules; kCleanup leaves every other rule of the table as it was; kCheck
// only reads (FailedPrecondition naming what is missing). The CNI plugin (cni/) calls this in
// the pod's network namespace exactly as `sidecar init` does in its init container.
absl::Status Execute(const CaptureOptions& options, Action action, const System& system,
                     std::string* log);

}  // namespace meshlet::sidecar::capture

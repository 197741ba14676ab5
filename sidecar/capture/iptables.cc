#include "sidecar/capture/iptables.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/base/file.h"
#include "common/base/status.h"

extern char** environ;

namespace meshlet::sidecar::capture {
namespace {

constexpr absl::string_view kDefaultPath =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr int kCapNetAdmin = 12;
constexpr int kCapNetRaw = 13;
// How long a tool may run beyond its lock wait before it is killed.
constexpr absl::Duration kToolGrace = absl::Seconds(30);

constexpr absl::string_view kCapabilityAdvice =
    "Run `sidecar init` as root with the NET_ADMIN and NET_RAW capabilities (Kubernetes: the "
    "init container's securityContext runAsUser: 0 and capabilities.add: [NET_ADMIN, NET_RAW]; "
    "podman or docker: --cap-add=NET_ADMIN --cap-add=NET_RAW), or print the rules without "
    "changing anything with `sidecar init --dry-run`.";

std::string SaveTool(Family family) {
  return family == Family::kIpv4 ? "iptables-save" : "ip6tables-save";
}
std::string RestoreTool(Family family) {
  return family == Family::kIpv4 ? "iptables-restore" : "ip6tables-restore";
}

// The effective capability set of /proc/self/status ("CapEff:\t000001ffffffffff"), or nullopt
// when it cannot be read.
std::optional<uint64_t> EffectiveCapabilities(const System& system) {
  absl::StatusOr<std::string> status = ReadFile(absl::StrCat(system.proc_dir, "/self/status"));
  if (!status.ok()) return std::nullopt;
  for (absl::string_view line : absl::StrSplit(*status, '\n')) {
    if (!absl::ConsumePrefix(&line, "CapEff:")) continue;
    uint64_t caps = 0;
    if (absl::SimpleHexAtoi(absl::StripAsciiWhitespace(line), &caps)) return caps;
  }
  return std::nullopt;
}

absl::Status CheckCapabilities(const System& system) {
  std::optional<uint64_t> caps = EffectiveCapabilities(system);
  if (!caps.has_value() || (*caps >> kCapNetAdmin & 1) != 0) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "this process lacks the NET_ADMIN capability, and changing the pod's nat table needs it "
      "(effective capabilities ",
      absl::Hex(*caps, absl::kZeroPad16), "). ", kCapabilityAdvice));
}

// The first executable `name` in the search path.
absl::StatusOr<std::string> FindTool(const System& system, const std::string& name) {
  for (const std::string& dir : system.search_path) {
    if (dir.empty()) continue;
    std::string path = absl::StrCat(dir, "/", name);
    if (access(path.c_str(), X_OK) == 0) return path;
  }
  return absl::FailedPreconditionError(absl::StrCat(
      name, " was not found (searched ", absl::StrJoin(system.search_path, ":"),
      "). Programming the pod's traffic capture needs iptables-save and iptables-restore "
      "(ip6tables-save and ip6tables-restore for IPv6): run `sidecar init` from the "
      "meshlet-proxy image, which has them, or install iptables (Debian: apt-get install "
      "iptables) and put it on PATH. `sidecar init --dry-run` prints the rules without them."));
}

struct ToolOutput {
  int exit_status = 0;  // 128 + the signal when killed by one
  std::string out;
  std::string err;
};

// Runs `path args...` with `input` on its stdin and collects its stdout and stderr; kills it
// after `timeout`.
absl::StatusOr<ToolOutput> RunTool(const std::string& path, const std::vector<std::string>& args,
                                   absl::string_view input, absl::Duration timeout) {
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  std::vector<std::string> argv_strings = {path};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& arg : argv_strings) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, path.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  for (int fd : {in[0], out[1], err[1]}) close(fd);
  if (spawned != 0) {
    for (int fd : {in[1], out[0], err[0]}) close(fd);
    return absl::InternalError(absl::StrCat("cannot run ", path, ": ", std::strerror(spawned)));
  }
  // A tool that exits without reading its input must not kill this process with SIGPIPE.
  struct sigaction ignore = {}, previous = {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ignore, &previous);
  fcntl(in[1], F_SETFL, O_NONBLOCK);

  ToolOutput result;
  size_t written = 0;
  int stdin_fd = in[1];
  if (input.empty()) {
    close(stdin_fd);
    stdin_fd = -1;
  }
  int open_outputs = 2;
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status failure;
  while (open_outputs > 0) {
    pollfd fds[3] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}, {stdin_fd, POLLOUT, 0}};
    const int wait_ms =
        static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now())));
    const int ready = poll(fds, stdin_fd >= 0 ? 3 : 2, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      failure =
          ready == 0
              ? absl::DeadlineExceededError(absl::StrCat(
                    path, " did not finish within ", absl::FormatDuration(timeout), "; killed it"))
              : absl::InternalError(absl::StrCat("poll: ", std::strerror(errno)));
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      char buffer[4096];
      const ssize_t n = read(fds[i].fd, buffer, sizeof(buffer));
      if (n > 0) {
        (i == 0 ? result.out : result.err).append(buffer, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        close(i == 0 ? out[0] : err[0]);
        (i == 0 ? out[0] : err[0]) = -1;
        --open_outputs;
      }
    }
    if (stdin_fd >= 0 && (fds[2].revents & (POLLOUT | POLLERR | POLLHUP)) != 0) {
      const ssize_t n = write(stdin_fd, input.data() + written, input.size() - written);
      if (n > 0) written += static_cast<size_t>(n);
      if ((n < 0 && errno != EAGAIN && errno != EINTR) || written == input.size()) {
        close(stdin_fd);
        stdin_fd = -1;
      }
    }
  }
  for (int fd : {stdin_fd, out[0], err[0]}) {
    if (fd >= 0) close(fd);
  }
  if (!failure.ok()) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  sigaction(SIGPIPE, &previous, nullptr);
  if (!failure.ok()) return failure;
  result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

// "iptables-restore failed (exit status 2): <its stderr>", with what to do when the cause is
// recognisable, and the input it was given.
absl::Status ToolFailed(const std::string& tool, Family family, const ToolOutput& output,
                        absl::string_view input, const System& system) {
  std::string message = absl::StrCat(tool, " failed (exit status ", output.exit_status, ")");
  const absl::string_view err = absl::StripAsciiWhitespace(output.err);
  if (!err.empty()) absl::StrAppend(&message, ": ", err);
  if (absl::StrContains(err, "Permission denied") || absl::StrContains(err, "must be root") ||
      absl::StrContains(err, "unable to initialize table")) {
    std::optional<uint64_t> caps = EffectiveCapabilities(system);
    if (caps.has_value() && (*caps >> kCapNetRaw & 1) == 0) {
      absl::StrAppend(&message, "\nThis process lacks NET_RAW, which the legacy iptables needs.");
    }
    absl::StrAppend(&message, "\n", kCapabilityAdvice);
  } else if (family == Family::kIpv6) {
    absl::StrAppend(&message,
                    "\nIf the kernel has no IPv6 NAT (ip6table_nat, or nft_chain_nat for the "
                    "nf_tables variant), --ipv6=false leaves IPv6 traffic alone.");
  }
  if (!input.empty()) absl::StrAppend(&message, "\nIts input was:\n", input);
  return absl::InternalError(message);
}

struct Tools {
  std::string save;
  std::string restore;
};

absl::StatusOr<NatTable> ReadNatTable(const Tools& tools, Family family, const System& system) {
  ASSIGN_OR_RETURN(ToolOutput output,
                   RunTool(tools.save, {"-t", "nat"}, "", system.lock_wait + kToolGrace));
  if (output.exit_status != 0) {
    return ToolFailed(SaveTool(family), family, output, "", system);
  }
  absl::StatusOr<NatTable> table = ParseNatTable(output.out);
  if (!table.ok()) return Annotate(table.status(), SaveTool(family));
  return table;
}

absl::Status Restore(const Tools& tools, Family family, const System& system,
                     absl::string_view batch) {
  const std::vector<std::string> args = {
      "--noflush", absl::StrCat("--wait=", absl::ToInt64Seconds(system.lock_wait))};
  ASSIGN_OR_RETURN(ToolOutput output,
                   RunTool(tools.restore, args, batch, system.lock_wait + kToolGrace));
  if (output.exit_status != 0) {
    return ToolFailed(RestoreTool(family), family, output, batch, system);
  }
  return absl::OkStatus();
}

absl::Status ApplyFamily(const CaptureOptions& options, Family family, const Tools& tools,
                         const System& system, std::string* log) {
  const std::string name(FamilyName(family));
  ASSIGN_OR_RETURN(NatTable before, ReadNatTable(tools, family, system));
  const Ruleset ruleset = BuildRules(options, family);
  const std::string batch = ApplyText(ruleset, &before);
  RETURN_IF_ERROR(Restore(tools, family, system, batch));
  absl::StrAppend(log, name, ": applied with ", RestoreTool(family), " --noflush:\n", batch);
  ASSIGN_OR_RETURN(NatTable after, ReadNatTable(tools, family, system));
  std::vector<std::string> reworded;
  RETURN_IF_ERROR(CheckApplied(ruleset, after, &reworded));
  for (const std::string& rule : reworded) {
    absl::StrAppend(log, name, ": note: ", rule, "\n");
  }
  absl::StrAppend(log, name, ": the nat table holds the ", ruleset.rules.size(),
                  " capture rules; outbound TCP goes to port ", options.outbound_port,
                  ", inbound TCP to port ", options.inbound_port, "\n");
  return absl::OkStatus();
}

absl::Status CleanupFamily(Family family, const Tools& tools, const System& system,
                           std::string* log) {
  const std::string name(FamilyName(family));
  ASSIGN_OR_RETURN(NatTable before, ReadNatTable(tools, family, system));
  const std::string batch = CleanupText(&before);
  if (batch.empty()) {
    absl::StrAppend(log, name, ": the nat table holds no capture rules; nothing to remove\n");
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(Restore(tools, family, system, batch));
  absl::StrAppend(log, name, ": removed with ", RestoreTool(family), " --noflush:\n", batch);
  ASSIGN_OR_RETURN(NatTable after, ReadNatTable(tools, family, system));
  if (std::string left = CleanupText(&after); !left.empty()) {
    return absl::InternalError(
        absl::StrCat(name, ": capture rules remain after removing them:\n", left));
  }
  return absl::OkStatus();
}

absl::Status CheckFamily(const CaptureOptions& options, Family family, const Tools& tools,
                         const System& system, std::string* log) {
  const std::string name(FamilyName(family));
  ASSIGN_OR_RETURN(NatTable table, ReadNatTable(tools, family, system));
  const Ruleset ruleset = BuildRules(options, family);
  std::vector<std::string> reworded;
  if (absl::Status applied = CheckApplied(ruleset, table, &reworded); !applied.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        name, ": the capture rules are not installed as they should be: ", applied.message()));
  }
  absl::StrAppend(log, name, ": the nat table holds the ", ruleset.rules.size(),
                  " capture rules\n");
  return absl::OkStatus();
}

}  // namespace

System System::FromEnvironment() {
  System system;
  const char* path = std::getenv("PATH");
  system.search_path = absl::StrSplit(path != nullptr ? path : kDefaultPath, ':');
  return system;
}

std::vector<Family> SelectFamilies(const CaptureOptions& options, const System& system,
                                   std::string* log) {
  std::vector<Family> families = {Family::kIpv4};
  switch (options.ipv6) {
    case Ipv6Mode::kOn:
      families.push_back(Family::kIpv6);
      break;
    case Ipv6Mode::kOff:
      absl::StrAppend(log, "IPv6: left alone (--ipv6=false)\n");
      break;
    case Ipv6Mode::kAuto: {
      absl::StatusOr<std::string> addresses =
          ReadFile(absl::StrCat(system.proc_dir, "/net/if_inet6"));
      if (addresses.ok() && HasGlobalIpv6Address(*addresses)) {
        families.push_back(Family::kIpv6);
      } else {
        absl::StrAppend(log,
                        "IPv6: left alone (--ipv6=auto and the pod has no global IPv6 "
                        "address)\n");
      }
      break;
    }
  }
  return families;
}

std::string DryRun(const CaptureOptions& options, Action action, const System& system) {
  std::string skipped;
  const std::vector<Family> families = SelectFamilies(options, system, &skipped);
  std::string out;
  for (Family family : families) {
    absl::StrAppend(&out, "# ", FamilyName(family), ": ", RestoreTool(family), " --noflush\n",
                    action == Action::kCleanup ? CleanupText(nullptr)
                                               : ApplyText(BuildRules(options, family), nullptr));
  }
  for (absl::string_view line : absl::StrSplit(skipped, '\n', absl::SkipEmpty())) {
    absl::StrAppend(&out, "# ", line, "\n");
  }
  return out;
}

absl::Status Execute(const CaptureOptions& options, Action action, const System& system,
                     std::string* log) {
  const std::vector<Family> families = SelectFamilies(options, system, log);
  RETURN_IF_ERROR(CheckCapabilities(system));
  std::vector<Tools> tools;
  for (Family family : families) {
    ASSIGN_OR_RETURN(std::string save, FindTool(system, SaveTool(family)));
    ASSIGN_OR_RETURN(std::string restore, FindTool(system, RestoreTool(family)));
    tools.push_back({std::move(save), std::move(restore)});
  }
  for (size_t i = 0; i < families.size(); ++i) {
    switch (action) {
      case Action::kApply:
        RETURN_IF_ERROR(ApplyFamily(options, families[i], tools[i], system, log));
        break;
      case Action::kCleanup:
        RETURN_IF_ERROR(CleanupFamily(families[i], tools[i], system, log));
        break;
      case Action::kCheck:
        RETURN_IF_ERROR(CheckFamily(options, families[i], tools[i], system, log));
        break;
    }
  }
  return absl::OkStatus();
}

}  // namespace meshlet::sidecar::capture

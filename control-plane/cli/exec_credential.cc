#include "control-plane/cli/exec_credential.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/base/json.h"
#include "control-plane/cli/output.h"

extern char** environ;

namespace meshlet::controlplane::cli {
namespace {

constexpr char kDefaultPath[] = "/usr/local/bin:/usr/bin:/bin";
// How often a running plugin is checked for its exit while its output is quiet (ms).
constexpr int64_t kExitCheckInterval = 10;
// After it exited, how long what is in its pipes may take to read: bounds a process it left
// behind that keeps writing.
constexpr absl::Duration kExitDrain = absl::Milliseconds(100);

bool Executable(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// The file to run, or "" when there is none: a bare name through PATH, a relative path with a
// slash from the kubeconfig's directory.
std::string Resolve(const ExecPluginConfig& config) {
  const std::string& command = config.command;
  if (command.find('/') != std::string::npos) {
    const std::string path = command[0] == '/' || config.directory.empty()
                                 ? command
                                 : absl::StrCat(config.directory, "/", command);
    return Executable(path) ? path : "";
  }
  const char* env_path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(env_path != nullptr ? env_path : kDefaultPath, ':')) {
    const std::string path = absl::StrCat(dir.empty() ? "." : dir, "/", command);
    if (Executable(path)) return path;
  }
  return "";
}

// Closes the descriptors it holds when it goes.
struct Fds {
  int fd[4] = {-1, -1, -1, -1};  // stdout read, write; stderr read, write
  ~Fds() {
    for (int f : fd) {
      if (f >= 0) ::close(f);
    }
  }
  void Close(int i) {
    if (fd[i] >= 0) ::close(fd[i]);
    fd[i] = -1;
  }
};

std::string StderrText(const std::string& err, bool cut) {
  const absl::string_view text = absl::StripAsciiWhitespace(err);
  if (text.empty()) return "";
  return absl::StrCat("; its stderr: \"", absl::CHexEscape(text), cut ? "...\" (cut)" : "\"");
}

}  // namespace

std::string ExecCredentialRequest(const ExecPluginConfig& config, absl::string_view server,
                                  absl::string_view ca_pem) {
  std::string out = absl::StrCat(R"({"apiVersion":)", JsonQuote(config.api_version),
                                 R"(,"kind":"ExecCredential","spec":{)");
  if (config.provide_cluster_info) {
    absl::StrAppend(&out, R"("cluster":{"server":)", JsonQuote(server));
    if (!ca_pem.empty()) {
      absl::StrAppend(&out, R"(,"certificate-authority-data":)",
                      JsonQuote(absl::Base64Escape(ca_pem)));
    }
    if (!config.cluster_config_json.empty()) {
      absl::StrAppend(&out, R"(,"config":)", config.cluster_config_json);
    }
    out.append("},");
  }
  out.append(R"("interactive":false}})");
  return out;
}

absl::StatusOr<ExecCredential> ParseExecCredential(absl::string_view output,
                                                   absl::string_view api_version) {
  YAML::Node answer;
  try {
    answer = YAML::Load(std::string(output));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("its output is not JSON: ", e.what()));
  }
  if (!answer.IsMap()) {
    return absl::InvalidArgumentError("its output is not an ExecCredential (a JSON object)");
  }
  if (Scalar(At(answer, {"kind"})) != "ExecCredential") {
    return absl::InvalidArgumentError(absl::StrCat("its output is not an ExecCredential (kind \"",
                                                   Scalar(At(answer, {"kind"})), "\")"));
  }
  const std::string version = Scalar(At(answer, {"apiVersion"}));
  if (version != api_version) {
    return absl::InvalidArgumentError(absl::StrCat(
        "it answered apiVersion \"", version, "\", the kubeconfig asks for \"", api_version, "\""));
  }
  const YAML::Node status = At(answer, {"status"});
  if (!status.IsMap()) return absl::InvalidArgumentError("its ExecCredential has no status");
  ExecCredential c;
  c.token = Scalar(At(status, {"token"}));
  c.cert_pem = Scalar(At(status, {"clientCertificateData"}));
  c.key_pem = Scalar(At(status, {"clientKeyData"}));
  if (c.cert_pem.empty() != c.key_pem.empty()) {
    return absl::InvalidArgumentError(
        "status.clientCertificateData and status.clientKeyData go together");
  }
  if (c.token.empty() && c.cert_pem.empty()) {
    return absl::InvalidArgumentError(
        "its status has neither a token nor clientCertificateData and clientKeyData");
  }
  const std::string expiry = Scalar(At(status, {"expirationTimestamp"}));
  if (!expiry.empty()) {
    absl::Time t;
    std::string error;
    if (!absl::ParseTime(absl::RFC3339_full, expiry, &t, &error)) {
      return absl::InvalidArgumentError(absl::StrCat("status.expirationTimestamp \"", expiry,
                                                     "\" is not an RFC 3339 time: ", error));
    }
    c.expiry = t;
  }
  return c;
}

absl::StatusOr<ExecCredential> RunExecPlugin(const ExecPluginConfig& config,
                                             absl::string_view server, absl::string_view ca_pem,
                                             const ExecPluginLimits& limits) {
  const std::string who =
      absl::StrCat("user ", config.user, ": exec plugin ", config.command, ": ");
  const std::string path = Resolve(config);
  if (path.empty()) {
    return absl::NotFoundError(absl::StrCat(
        who,
        config.command.find('/') != std::string::npos ? "no such executable file"
                                                      : "not found in PATH",
        config.install_hint.empty() ? "" : absl::StrCat(" (", config.install_hint, ")")));
  }
  // The environment: meshctl's, with the kubeconfig's entries and the request in place of any
  // variable of the same name.
  std::vector<std::pair<std::string, std::string>> added = config.env;
  added.emplace_back("KUBERNETES_EXEC_INFO", ExecCredentialRequest(config, server, ca_pem));
  std::vector<std::string> env_text;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const absl::string_view entry(*e);
    const absl::string_view name = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const auto& [n, v] : added) replaced = replaced || n == name;
    if (!replaced) env_text.emplace_back(entry);
  }
  for (const auto& [n, v] : added) env_text.push_back(absl::StrCat(n, "=", v));
  std::vector<char*> envp;
  for (std::string& e : env_text) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> arg_text = {config.command};
  arg_text.insert(arg_text.end(), config.args.begin(), config.args.end());
  std::vector<char*> argv;
  for (std::string& a : arg_text) argv.push_back(a.data());
  argv.push_back(nullptr);

  Fds fds;
  if (::pipe2(&fds.fd[0], O_CLOEXEC) != 0 || ::pipe2(&fds.fd[2], O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat(who, "pipe: ", std::strerror(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, fds.fd[1], 1);
  posix_spawn_file_actions_adddup2(&actions, fds.fd[3], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Its own process group, so a timeout ends what it started too; signals as a new process has
  // them (meshctl ignores SIGPIPE).
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  const int spawned = ::posix_spawn(&pid, path.c_str(), &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (spawned != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(who, "cannot run ", path, ": ", std::strerror(spawned)));
  }
  fds.Close(1);
  fds.Close(3);

  const absl::Time deadline = absl::Now() + limits.timeout;
  std::string out, err;
  bool err_cut = false;
  absl::Status failure;
  int status = 0;
  bool exited = false;
  // Once the plugin has exited, what it wrote is in the pipes: read it, but do not wait for them
  // to close, which a process it left behind (a cache agent, a background helper) may never do.
  absl::Time drain_until;
  char buffer[16 << 10];
  while (failure.ok()) {
    if (!exited) {
      const pid_t done = ::waitpid(pid, &status, WNOHANG);
      if (done == pid) {
        exited = true;
        drain_until = absl::Now() + kExitDrain;
      } else if (done < 0 && errno != EINTR) {
        failure = absl::InternalError(absl::StrCat(who, "waitpid: ", std::strerror(errno)));
        break;
      }
    }
    const int64_t left_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (!exited && left_ms <= 0) {
      failure = absl::DeadlineExceededError(absl::StrCat(who, "did not finish within ",
                                                         absl::FormatDuration(limits.timeout),
                                                         " (--kubernetes-exec-timeout)"));
      break;
    }
    if (exited && absl::Now() >= drain_until) break;
    pollfd polled[2];
    nfds_t n = 0;
    for (int i : {0, 2}) {
      if (fds.fd[i] >= 0) polled[n++] = {.fd = fds.fd[i], .events = POLLIN, .revents = 0};
    }
    if (n == 0 && exited) break;
    // Until it exits, wake up now and then to see whether it did; after, only take what is
    // there already.
    const int wait_ms =
        exited ? 0 : static_cast<int>(std::min<int64_t>(left_ms, kExitCheckInterval));
    const int ready = ::poll(n == 0 ? nullptr : polled, n, wait_ms);
    if (ready < 0 && errno != EINTR) {
      failure = absl::InternalError(absl::StrCat(who, "poll: ", std::strerror(errno)));
    }
    if (exited && ready == 0) break;
    for (nfds_t k = 0; ready > 0 && k < n; ++k) {
      if (polled[k].revents == 0) continue;
      const bool is_out = polled[k].fd == fds.fd[0];
      const ssize_t got = ::read(polled[k].fd, buffer, sizeof(buffer));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        fds.Close(is_out ? 0 : 2);
        continue;
      }
      if (is_out) {
        if (out.size() + static_cast<size_t>(got) > limits.max_stdout_bytes) {
          failure = absl::ResourceExhaustedError(
              absl::StrCat(who, "printed more than ", limits.max_stdout_bytes, " bytes on stdout"));
          break;
        }
        out.append(buffer, static_cast<size_t>(got));
      } else {
        const size_t room = limits.max_stderr_bytes - std::min(limits.max_stderr_bytes, err.size());
        err.append(buffer, std::min(room, static_cast<size_t>(got)));
        err_cut = err_cut || static_cast<size_t>(got) > room;
      }
    }
  }
  if (!exited) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (!failure.ok()) {
    return absl::Status(failure.code(), absl::StrCat(failure.message(), StderrText(err, err_cut)));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::UnauthenticatedError(
        absl::StrCat(who,
                     WIFEXITED(status) ? absl::StrCat("exited with status ", WEXITSTATUS(status))
                                       : absl::StrCat("was killed by signal ", WTERMSIG(status)),
                     StderrText(err, err_cut)));
  }
  absl::StatusOr<ExecCredential> credential = ParseExecCredential(out, config.api_version);
  if (!credential.ok()) {
    return absl::UnauthenticatedError(
        absl::StrCat(who, credential.status().message(), StderrText(err, err_cut)));
  }
  return credential;
}

}  // namespace meshlet::controlplane::cli

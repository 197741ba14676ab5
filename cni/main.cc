// meshlet-cni: the chained CNI plugin that programs an injected pod's traffic capture
// (cni/plugin.h). The container runtime runs it with the CNI_* environment and the network
// configuration on stdin; it answers on stdout and logs one line per run on stderr and in the
// configuration's logFile.

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <iterator>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cni/kubernetes.h"
#include "cni/plugin.h"
#include "sidecar/capture/iptables.h"

namespace {

using meshlet::cni::CniError;

absl::Status EnterNetns(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    const std::string message = absl::StrCat("cannot open ", path, ": ", std::strerror(error));
    return error == ENOENT ? absl::NotFoundError(message) : absl::InternalError(message);
  }
  const int entered = setns(fd, CLONE_NEWNET);
  const int error = errno;
  close(fd);
  if (entered != 0) {
    return absl::InternalError(
        absl::StrCat("setns(", path, ", CLONE_NEWNET): ", std::strerror(error)));
  }
  return absl::OkStatus();
}

// Appends the run's line (and what the capture code ran, indented) to the log file.
void AppendLog(const meshlet::cni::RunResult& result) {
  if (result.log_file.empty()) return;
  std::string text = absl::StrCat(result.log_line, "\n");
  for (absl::string_view line : absl::StrSplit(result.execute_log, '\n', absl::SkipEmpty())) {
    absl::StrAppend(&text, "    ", line, "\n");
  }
  const int fd = open(result.log_file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    std::fprintf(stderr, "meshlet-cni: cannot open the log file %s: %s\n", result.log_file.c_str(),
                 std::strerror(errno));
    return;
  }
  // One write: lines of concurrent runs do not interleave (O_APPEND).
  if (write(fd, text.data(), text.size()) < 0) {
    std::fprintf(stderr, "meshlet-cni: cannot write the log file %s: %s\n", result.log_file.c_str(),
                 std::strerror(errno));
  }
  close(fd);
}

}  // namespace

int main() {
  signal(SIGPIPE, SIG_IGN);
  std::string input;
  char buffer[16384];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), stdin)) > 0) {
    input.append(buffer, n);
    if (input.size() > meshlet::cni::kMaxConfigBytes) {
      std::fputs(
          meshlet::cni::ErrorJson(
              meshlet::cni::kSupportedVersions[std::size(meshlet::cni::kSupportedVersions) - 1],
              CniError{.code = meshlet::cni::kDecodeFailure,
                       .msg = absl::StrCat("the network configuration on stdin is larger "
                                           "than ",
                                           meshlet::cni::kMaxConfigBytes, " bytes")})
              .c_str(),
          stdout);
      std::fputs("meshlet-cni: the network configuration on stdin is too large\n", stderr);
      return 1;
    }
  }
  const meshlet::cni::Invocation invocation =
      meshlet::cni::InvocationFromEnvironment([](const char* name) { return std::getenv(name); });
  meshlet::cni::Host host{
      .pod_annotations = meshlet::cni::FetchPodAnnotations,
      .enter_netns = EnterNetns,
      .execute =
          [](const meshlet::sidecar::capture::CaptureOptions& options,
             meshlet::sidecar::capture::Action action, std::string* log) {
            return meshlet::sidecar::capture::Execute(
                options, action, meshlet::sidecar::capture::System::FromEnvironment(), log);
          },
  };
  const meshlet::cni::RunResult result = meshlet::cni::RunPlugin(invocation, input, host);
  std::fputs(result.stdout_text.c_str(), stdout);
  std::fflush(stdout);
  std::fprintf(stderr, "%s\n", result.log_line.c_str());
  AppendLog(result);
  return result.exit_code;
}

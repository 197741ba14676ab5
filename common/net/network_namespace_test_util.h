#pragma once

// Test helpers for traffic redirected by the packet filter (capture, original destinations): run
// a test body on a thread of its own inside a new, empty network namespace with loopback up, where
// it may add iptables/ip6tables rules. unshare(CLONE_NEWNET) moves only the calling thread; the
// threads it starts (a Worker's, a test server's) are in the namespace too. The namespace, its
// rules and its sockets go away when the last of them ends; nothing outside it changes. Without
// root, the tools or the kernel's NAT the helpers say why, for GTEST_SKIP.

#include <net/if.h>
#include <sched.h>
#include <spawn.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

extern char** environ;

namespace meshlet::net::testing {

inline std::string FindTool(const std::string& name) {
  for (const char* dir : {"/usr/sbin", "/sbin", "/usr/bin", "/bin"}) {
    std::string path = absl::StrCat(dir, "/", name);
    if (access(path.c_str(), X_OK) == 0) return path;
  }
  return "";
}

// Runs a tool (on the calling thread's network namespace); "" on success, else what failed.
inline std::string RunTool(const std::vector<std::string>& args) {
  std::string path = FindTool(args[0]);
  if (path.empty()) return absl::StrCat(args[0], " is missing");
  std::vector<char*> argv;
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  pid_t pid;
  if (int error = posix_spawn(&pid, path.c_str(), nullptr, nullptr, argv.data(), environ);
      error != 0) {
    return absl::StrCat(path, ": ", strerror(error));
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::StrCat(absl::StrJoin(args, " "), " failed (status ", status, ")");
  }
  return "";
}

inline std::string BringUpLoopback() {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::StrCat("socket: ", strerror(errno));
  ifreq request{};
  strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
  std::string why;
  if (ioctl(fd, SIOCGIFFLAGS, &request) != 0) {
    why = absl::StrCat("lo: ", strerror(errno));
  } else {
    request.ifr_flags |= IFF_UP;
    if (ioctl(fd, SIOCSIFFLAGS, &request) != 0) why = absl::StrCat("lo up: ", strerror(errno));
  }
  close(fd);
  return why;
}

// Runs `body` on a new thread inside a new network namespace with loopback up. Returns why it
// could not run, or why `body` says it could not (the test is then skipped); "" when it ran.
inline std::string InNewNetworkNamespace(const std::function<std::string()>& body) {
  if (geteuid() != 0) return "needs root (a network namespace and iptables rules of its own)";
  std::string why;
  std::thread thread([&] {
    if (unshare(CLONE_NEWNET) != 0) {
      why = absl::StrCat("cannot create a network namespace here: ", strerror(errno));
      return;
    }
    why = BringUpLoopback();
    if (why.empty()) why = body();
  });
  thread.join();
  return why;
}

}  // namespace meshlet::net::testing

// In a test: skips it, saying why, when `why` (InNewNetworkNamespace's answer) is not empty.
#define MESHLET_SKIP_UNLESS_EMPTY(why)                       \
  do {                                                       \
    if (const std::string reason = (why); !reason.empty()) { \
      GTEST_SKIP() << "SKIP: " << reason;                    \
    }                                                        \
  } while (0)

// meshlet-cni as the node agent installs it in the node's CNI bin dir: a static executable that
// runs the real plugin, meshlet-cni.d/meshlet-cni beside it, with the dynamic loader and the
// libraries it was built with (also in meshlet-cni.d/, copied there by the agent from the image),
// so that the plugin runs on any x86-64 Linux node whatever its own libraries. The CNI_*
// environment, stdin and stdout pass through (execv); argv[0] is kept (--argv0).
//
// Plain C library calls only: linked statically (-static), it loads nothing.

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace {

constexpr char kBundle[] = "meshlet-cni.d";
constexpr char kLoader[] = "ld-linux-x86-64.so.2";

// A CNI error result (code 5, I/O failure) on stdout, as the runtime expects from a plugin.
int Fail(const char* what, const std::string& path) {
  printf(
      "{\"cniVersion\":\"1.0.0\",\"code\":5,\"msg\":\"meshlet-cni cannot start: %s\","
      "\"details\":\"%s: %s; the meshlet-cni node agent installs it\"}\n",
      what, path.c_str(), strerror(errno));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  char self[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return Fail("no /proc/self/exe", "/proc/self/exe");
  self[n] = '\0';
  std::string dir(self);
  dir = dir.substr(0, dir.rfind('/') + 1) + kBundle;
  std::string loader = dir + "/" + kLoader;
  std::string plugin = dir + "/meshlet-cni";
  std::vector<char*> args = {loader.data(), const_cast<char*>("--library-path"),
                             dir.data(),    const_cast<char*>("--argv0"),
                             argv[0],       plugin.data()};
  for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
  args.push_back(nullptr);
  execv(loader.c_str(), args.data());
  return Fail("the plugin's loader did not run", loader);
}

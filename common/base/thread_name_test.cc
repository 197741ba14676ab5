#include "common/base/thread_name.h"

#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <sys/syscall.h>
#include <unistd.h>

#include "gtest/gtest.h"

namespace meshlet {
namespace {

// What the kernel shows for the calling thread, as `ps -L` and `top -H` read it.
std::string CommOfThisThread() {
  std::ifstream in("/proc/self/task/" + std::to_string(syscall(SYS_gettid)) + "/comm");
  std::string comm;
  std::getline(in, comm);
  return comm;
}

TEST(ThreadNameTest, NamesTheCallingThreadOnly) {
  const std::string before = CurrentThreadName();
  std::string inside, comm;
  std::thread([&] {
    SetThreadName("worker-3");
    inside = CurrentThreadName();
    comm = CommOfThisThread();
  }).join();
  EXPECT_EQ(inside, "worker-3");
  EXPECT_EQ(comm, "worker-3");
  EXPECT_EQ(CurrentThreadName(), before);
}

TEST(ThreadNameTest, ALongNameIsCutToWhatTheKernelKeeps) {
  std::string inside;
  std::thread([&] {
    SetThreadName("a-name-much-longer-than-fifteen");
    inside = CurrentThreadName();
  }).join();
  EXPECT_EQ(inside, "a-name-much-lon");
  EXPECT_EQ(inside.size(), kMaxThreadNameBytes);
}

}  // namespace
}  // namespace meshlet

#include "common/base/malloc_tuning.h"

#include <sys/resource.h>

#include <cstring>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace meshlet {
namespace {

long ThreadMinorFaults() {
  rusage usage{};
  getrusage(RUSAGE_THREAD, &usage);
  return usage.ru_minflt;
}

// On a thread of its own (its own arena, as a worker has), allocates 1 MiB in 16 KiB blocks,
// touches it and frees it, `rounds` times; returns the minor page faults after the first round.
long FaultsAfterFirstRound(int rounds) {
  long faults = 0;
  std::thread thread([&] {
    constexpr size_t kBlock = 16 * 1024;
    constexpr size_t kBlocks = 64;
    std::vector<char*> blocks(kBlocks);
    long after_first = 0;
    for (int round = 0; round < rounds; ++round) {
      for (char*& block : blocks) {
        block = static_cast<char*>(malloc(kBlock));
        std::memset(block, round, kBlock);
      }
      // Freed in reverse: the last block is at the arena's top, and each free grows the top.
      for (size_t i = kBlocks; i-- > 0;) free(blocks[i]);
      if (round == 0) after_first = ThreadMinorFaults();
    }
    faults = ThreadMinorFaults() - after_first;
  });
  thread.join();
  return faults;
}

TEST(MallocTuningTest, FreedMemoryStaysMappedBelowTheThreshold) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer's allocator has no arenas to trim";
#endif
  ASSERT_TRUE(SetMallocTrimThreshold(4 << 20));
  // Without the setting, glibc gives most of the 1 MiB back at every round and faults it in at
  // the next: over 200 faults a round (4 275 in 19 rounds with glibc 2.36).
  EXPECT_LT(FaultsAfterFirstRound(20), 20);
}

TEST(MallocTuningTest, ZeroKeepsTheDefaultsAndHugeValuesAreRefused) {
  EXPECT_TRUE(SetMallocTrimThreshold(0));
  EXPECT_FALSE(SetMallocTrimThreshold(size_t{1} << 40));
}

}  // namespace
}  // namespace meshlet

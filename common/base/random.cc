#include "common/base/random.h"

#include <sys/random.h>

#include "common/base/logging.h"

namespace meshlet {
namespace {
uint64_t SplitMix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
}  // namespace

RealRandom::RealRandom() {
  uint64_t seed = 0;
  ssize_t n = getrandom(&seed, sizeof(seed), 0);
  CHECK(n == static_cast<ssize_t>(sizeof(seed))) << "getrandom failed";
  *this = RealRandom(seed);
}

RealRandom::RealRandom(uint64_t seed) {
  for (uint64_t& word : s_) word = SplitMix64(seed);
}

RealRandom& RealRandom::ThreadLocal() {
  thread_local RealRandom random;
  return random;
}

}  // namespace meshlet

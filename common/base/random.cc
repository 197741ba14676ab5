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

uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
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

uint64_t RealRandom::Next() {
  const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

RealRandom& RealRandom::ThreadLocal() {
  thread_local RealRandom random;
  return random;
}

}  // namespace meshlet

#pragma once

// Randomness for decisions (jitter, sampling, load-balancer choices). Code takes a Random& so tests
// can script the values with FakeRandom (common/base/fake_random.h). Not for keys or tokens: those
// come from BoringSSL's RAND_bytes.

#include <cstdint>

namespace meshlet {

class Random {
 public:
  virtual ~Random() = default;
  // Uniform over all 64-bit values.
  virtual uint64_t Next() = 0;

  // Uniform in [0, n); 0 when n == 0. Uses Lemire's multiply-shift: no division, bias < 2^-64 * n.
  uint64_t Uniform(uint64_t n) {
    if (n == 0) return 0;
    return static_cast<uint64_t>((static_cast<unsigned __int128>(Next()) * n) >> 64);
  }
  // Uniform in [0, 1).
  double UniformDouble() { return ToUnitDouble(Next()); }
  // 64 uniformly random bits as a double uniform in [0, 1) (their top 53).
  static double ToUnitDouble(uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }
  // True with probability p (clamped to [0, 1]).
  bool Bernoulli(double p) { return UniformDouble() < p; }
};

// xoshiro256** seeded from the OS. Not thread-safe: give each thread its own (see ThreadLocal()).
class RealRandom final : public Random {
 public:
  RealRandom();  // seeded from getrandom(2)
  explicit RealRandom(uint64_t seed);
  // Inline: callers holding a RealRandom (not a Random&) get it without a call.
  uint64_t Next() override {
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

  // One generator per thread, created on first use.
  static RealRandom& ThreadLocal();

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace meshlet

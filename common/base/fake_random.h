#pragma once

// A Random that returns scripted values, then repeats the last one (or 0 if none were given).
// Helpers script the derived draws: PushDouble(0.25) makes the next UniformDouble() return 0.25.

#include <cstdint>
#include <deque>

#include "common/base/random.h"

namespace meshlet {

class FakeRandom final : public Random {
 public:
  void Push(uint64_t value) { values_.push_back(value); }
  // Next UniformDouble() returns `fraction` (in [0, 1)); Uniform(n) returns floor(fraction * n).
  void PushDouble(double fraction) {
    Push(static_cast<uint64_t>(fraction * 0x1.0p64 >= 0x1.0p64 ? ~0ULL : fraction * 0x1.0p64));
  }

  uint64_t Next() override {
    if (values_.empty()) return last_;
    last_ = values_.front();
    values_.pop_front();
    return last_;
  }

 private:
  std::deque<uint64_t> values_;
  uint64_t last_ = 0;
};

}  // namespace meshlet

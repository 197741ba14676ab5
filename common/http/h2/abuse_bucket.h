#pragma once

// The token bucket behind the HTTP/2 server's rate limits (internal to common/http/h2; the limits
// are Http2Options::stream_reset_burst and control_frame_burst). One per limit per connection,
// used on the connection's thread only.

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "common/base/clock.h"

namespace meshlet::http::h2::codec_internal {

// A per-connection token bucket for the server's abuse limits: `burst` tokens, refilled at `rate`
// a second, lazily when one is taken (no timer). Zero burst: no limit.
class AbuseBucket {
 public:
  void Start(uint32_t burst, uint32_t rate, MonotonicTime now) {
    burst_ = burst;
    rate_ = rate;
    tokens_ = burst;
    refilled_ = now;
  }
  // Takes a token; false when none is left.
  bool Take(MonotonicTime now) {
    if (burst_ == 0) return true;
    if (now > refilled_) {
      tokens_ = std::min<double>(
          burst_, tokens_ + std::chrono::duration<double>(now - refilled_).count() * rate_);
      refilled_ = now;
    }
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }
  // Gives a token back (up to the burst).
  void Credit() { tokens_ = std::min<double>(burst_, tokens_ + 1); }

 private:
  uint32_t burst_ = 0;
  uint32_t rate_ = 0;
  double tokens_ = 0;
  MonotonicTime refilled_{};
};

}  // namespace meshlet::http::h2::codec_internal

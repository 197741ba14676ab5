#pragma once

// PreciseTimer: a one-shot timer on an event::Loop that fires at an absolute steady_clock time
// with the kernel's resolution (a timerfd polled by the loop), where event::Timer rounds to whole
// milliseconds of the turn's cached time. The load generator sends on a schedule finer than a
// millisecond, and the delay server must never answer early.
//
// Ownership and threading: the owner holds it; the callback runs on the loop thread, never from
// inside Arm()/Disarm(). Loop thread only; destroy it before the Loop. Destroying it cancels it
// (from inside its own callback too): the handle's memory is freed in libuv's close callback.

#include <memory>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "common/base/clock.h"
#include "common/event/loop.h"

namespace meshlet::loadgen {

class PreciseTimer {
 public:
  using Callback = absl::AnyInvocable<void()>;

  // Fails when the kernel refuses a timerfd (descriptor limit).
  static absl::StatusOr<std::unique_ptr<PreciseTimer>> Create(event::Loop& loop, Callback callback);
  ~PreciseTimer();
  PreciseTimer(const PreciseTimer&) = delete;
  PreciseTimer& operator=(const PreciseTimer&) = delete;

  // Fires once at `when` (at once, on a later turn, if it has passed). Re-arms if armed.
  void Arm(MonotonicTime when);
  void Disarm();
  bool armed() const { return armed_; }

 private:
  struct Handle;
  PreciseTimer() = default;
  static void OnReadable(Handle* handle);

  Handle* handle_ = nullptr;
  Callback callback_;
  bool armed_ = false;
};

}  // namespace meshlet::loadgen

#pragma once

// Timer: a one-shot or repeating timer on a Loop. The owner holds the Timer; the callback fires on
// the loop thread, never from inside Enable()/Disable(). Destroying the Timer (even from inside
// its own callback) cancels it: the callback never fires again. The libuv handle and the callback
// object live in a separate allocation that outlives the Timer until the end of the loop turn,
// so destroying the Timer mid-callback never frees memory still in use. The Loop then keeps the
// handle for the next Timer (up to kMaxSpareHandles), so timers made and destroyed per request
// cost neither an allocation nor a libuv handle close (docs/adr/0024).
//
// Durations round up to whole milliseconds (libuv's resolution) and count from the loop time of
// the current turn (see Loop::Now()).

#include <uv.h>

#include "absl/functional/any_invocable.h"
#include "common/base/clock.h"
#include "common/event/loop.h"

namespace meshlet::event {

class Timer {
 public:
  using Callback = absl::AnyInvocable<void()>;

  Timer(Loop& loop, Callback callback);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Fires once after `timeout` (zero: on the next loop turn). Re-arms if already enabled.
  void Enable(Duration timeout);
  // Fires every `interval` until disabled; the first time after one interval.
  void EnableRepeating(Duration interval);
  void Disable();
  bool enabled() const;

  // Handles of destroyed Timers each Loop keeps for reuse; beyond that they are closed.
  static constexpr size_t kMaxSpareHandles = 128;

 private:
  friend class Loop;
  struct Handle;
  // At the end of the turn a Timer was destroyed in: the handle joins the Loop's spares.
  static void Retire(void* handle);
  // ~Loop: closes the spare handles.
  static void CloseSpareHandles(Loop& loop);

  Handle* handle_;
};

// Milliseconds for libuv, rounded up so a timer never fires early; negative counts as zero.
uint64_t ToLibuvMillis(Duration d);

}  // namespace meshlet::event

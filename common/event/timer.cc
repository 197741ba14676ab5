#include "common/event/timer.h"

#include <algorithm>
#include <utility>

#include "common/base/logging.h"

namespace meshlet::event {

// Re-arming is lazy, because a proxy re-arms idle timeouts on every request: Disable() only
// marks the timer off, and Enable() moves only the logical deadline when the libuv timer is
// already due no later than it. A libuv timer that comes due before the logical deadline is
// started again for the rest; one that comes due while the timer is off does nothing. libuv's
// timer heap then sees about one operation per timeout period instead of two per request. A
// timer that is off is unreferenced, so it never keeps the loop alive.
struct Timer::Handle {
  uv_timer_t uv;
  Callback callback;
  bool armed = false;      // enabled, as the owner sees it
  bool repeating = false;  // started with EnableRepeating (libuv repeats it; nothing lazy)
  uint64_t deadline = 0;   // loop time (ms) the owner wants the callback at, when armed
  uint64_t uv_due = 0;     // loop time (ms) the libuv timer is due, when it is active

  bool uv_active() const { return uv_is_active(reinterpret_cast<const uv_handle_t*>(&uv)) != 0; }
  void Close();

  void Start(uint64_t due, uint64_t now) {
    uv_due = due;
    uv_timer_start(&uv, &Handle::OnTimer, due - now, 0);
  }

  static void OnTimer(uv_timer_t* uv) {
    auto* h = static_cast<Handle*>(uv->data);
    if (!h->armed) return;
    if (!h->repeating) {
      uint64_t now = uv_now(uv->loop);
      if (now < h->deadline) {
        h->Start(h->deadline, now);
        return;
      }
      h->armed = false;
      uv_unref(reinterpret_cast<uv_handle_t*>(uv));
    }
    // Nothing may follow the call: the callback may destroy the Timer. The Handle itself stays
    // valid until libuv runs the close callback.
    h->callback();
  }
};

uint64_t ToLibuvMillis(Duration d) {
  if (d.count() <= 0) return 0;
  return static_cast<uint64_t>((d.count() + 999'999) / 1'000'000);
}

Timer::Timer(Loop& loop, Callback callback) {
  // A spare handle is initialised and unreferenced; its libuv timer may still be running for its
  // previous owner, which only makes a later Enable() lazy (see Handle).
  if (!loop.spare_timers_.empty()) {
    handle_ = static_cast<Handle*>(loop.spare_timers_.back());
    loop.spare_timers_.pop_back();
    handle_->callback = std::move(callback);
    return;
  }
  handle_ = new Handle{{}, std::move(callback)};
  CHECK(uv_timer_init(loop.uv_loop(), &handle_->uv) == 0);
  handle_->uv.data = handle_;
}

Timer::~Timer() {
  Handle* h = handle_;
  Disable();
  // The callback may be running right now: the handle keeps it until the end of this loop turn.
  static_cast<Loop*>(h->uv.loop->data)->RunAtEndOfTurn(&Timer::Retire, h);
}

void Timer::Handle::Close() {
  uv_close(reinterpret_cast<uv_handle_t*>(&uv),
           [](uv_handle_t* uv) { delete static_cast<Handle*>(uv->data); });
}

void Timer::Retire(void* handle) {
  auto* h = static_cast<Handle*>(handle);
  h->callback = nullptr;
  Loop& loop = *static_cast<Loop*>(h->uv.loop->data);
  if (loop.destroying_ || loop.spare_timers_.size() >= kMaxSpareHandles) {
    // uv_close stops the timer; libuv frees the Handle through the close callback.
    h->Close();
    return;
  }
  loop.spare_timers_.push_back(h);
}

void Timer::CloseSpareHandles(Loop& loop) {
  for (void* h : loop.spare_timers_) static_cast<Handle*>(h)->Close();
  loop.spare_timers_.clear();
}

void Timer::Enable(Duration timeout) {
  Handle* h = handle_;
  uint64_t now = uv_now(h->uv.loop);
  uint64_t due = now + ToLibuvMillis(timeout);
  if (h->repeating) {
    uv_timer_stop(&h->uv);
    h->repeating = false;
  }
  h->armed = true;
  h->deadline = due;
  uv_ref(reinterpret_cast<uv_handle_t*>(&h->uv));
  // A libuv timer due later than the new deadline must move; one due no later fires first and
  // is started again for the rest (OnTimer).
  if (!h->uv_active() || h->uv_due > due) h->Start(due, now);
}

void Timer::EnableRepeating(Duration interval) {
  Handle* h = handle_;
  // libuv reads a zero repeat as "one-shot"; a repeating timer fires at most every millisecond.
  uint64_t ms = std::max<uint64_t>(ToLibuvMillis(interval), 1);
  h->armed = true;
  h->repeating = true;
  uv_ref(reinterpret_cast<uv_handle_t*>(&h->uv));
  uv_timer_start(&h->uv, &Handle::OnTimer, ms, ms);
}

void Timer::Disable() {
  Handle* h = handle_;
  if (!h->armed) return;
  h->armed = false;
  if (h->repeating) {
    h->repeating = false;
    uv_timer_stop(&h->uv);
    return;
  }
  // Left running, unreferenced: a later Enable() usually reuses it (see Handle).
  uv_unref(reinterpret_cast<uv_handle_t*>(&h->uv));
}

bool Timer::enabled() const { return handle_->armed; }

}  // namespace meshlet::event

#include "common/event/timer.h"

#include <algorithm>
#include <utility>

#include "common/base/logging.h"

namespace meshlet::event {

struct Timer::Handle {
  uv_timer_t uv;
  Callback callback;

  static void OnTimer(uv_timer_t* uv) {
    // Nothing may follow the call: the callback may destroy the Timer. The Handle itself stays
    // valid until libuv runs the close callback.
    static_cast<Handle*>(uv->data)->callback();
  }
};

uint64_t ToLibuvMillis(Duration d) {
  if (d.count() <= 0) return 0;
  return static_cast<uint64_t>((d.count() + 999'999) / 1'000'000);
}

Timer::Timer(Loop& loop, Callback callback) : handle_(new Handle{{}, std::move(callback)}) {
  CHECK(uv_timer_init(loop.uv_loop(), &handle_->uv) == 0);
  handle_->uv.data = handle_;
}

Timer::~Timer() {
  // uv_close stops the timer; the Handle (and the callback, which may be running right now) is
  // freed only when libuv reports the close, at the end of this loop turn.
  uv_close(reinterpret_cast<uv_handle_t*>(&handle_->uv),
           [](uv_handle_t* h) { delete static_cast<Handle*>(h->data); });
}

void Timer::Enable(Duration timeout) {
  uv_timer_start(&handle_->uv, &Handle::OnTimer, ToLibuvMillis(timeout), 0);
}

void Timer::EnableRepeating(Duration interval) {
  // libuv reads a zero repeat as "one-shot"; a repeating timer fires at most every millisecond.
  uint64_t ms = std::max<uint64_t>(ToLibuvMillis(interval), 1);
  uv_timer_start(&handle_->uv, &Handle::OnTimer, ms, ms);
}

void Timer::Disable() { uv_timer_stop(&handle_->uv); }

bool Timer::enabled() const {
  return uv_is_active(reinterpret_cast<const uv_handle_t*>(&handle_->uv)) != 0;
}

}  // namespace meshlet::event

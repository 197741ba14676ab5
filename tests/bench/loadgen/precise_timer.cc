#include "tests/bench/loadgen/precise_timer.h"

#include <sys/timerfd.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"

namespace meshlet::loadgen {

struct PreciseTimer::Handle {
  uv_poll_t poll;
  int fd = -1;
  PreciseTimer* owner = nullptr;  // null once the owner is gone
};

absl::StatusOr<std::unique_ptr<PreciseTimer>> PreciseTimer::Create(event::Loop& loop,
                                                                   Callback callback) {
  // steady_clock is CLOCK_MONOTONIC on Linux, so deadlines convert without an offset.
  const int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, "timerfd_create");
  std::unique_ptr<PreciseTimer> timer(new PreciseTimer());
  timer->callback_ = std::move(callback);
  auto* handle = new Handle();
  handle->fd = fd;
  handle->owner = timer.get();
  const int rc = uv_poll_init(loop.uv_loop(), &handle->poll, fd);
  if (rc != 0) {
    ::close(fd);
    delete handle;
    return absl::InternalError(absl::StrCat("uv_poll_init: ", uv_strerror(rc)));
  }
  handle->poll.data = handle;
  timer->handle_ = handle;
  return timer;
}

PreciseTimer::~PreciseTimer() {
  if (handle_ == nullptr) return;
  handle_->owner = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&handle_->poll), [](uv_handle_t* h) {
    auto* handle = static_cast<Handle*>(h->data);
    ::close(handle->fd);
    delete handle;
  });
}

void PreciseTimer::Arm(MonotonicTime when) {
  const int64_t ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(when.time_since_epoch()).count();
  itimerspec spec{};
  // A zero it_value would disarm: a time already passed is the smallest positive one instead.
  const int64_t at = ns > 0 ? ns : 1;
  spec.it_value.tv_sec = at / 1'000'000'000;
  spec.it_value.tv_nsec = at % 1'000'000'000;
  CHECK(::timerfd_settime(handle_->fd, TFD_TIMER_ABSTIME, &spec, nullptr) == 0)
      << std::strerror(errno);
  if (!armed_) {
    uv_poll_start(&handle_->poll, UV_READABLE,
                  [](uv_poll_t* p, int, int) { OnReadable(static_cast<Handle*>(p->data)); });
  }
  armed_ = true;
}

void PreciseTimer::Disarm() {
  if (!armed_) return;
  armed_ = false;
  itimerspec spec{};
  (void)::timerfd_settime(handle_->fd, 0, &spec, nullptr);
  uv_poll_stop(&handle_->poll);
}

void PreciseTimer::OnReadable(Handle* handle) {
  uint64_t expirations = 0;
  // Clears the readiness; EAGAIN means it was re-armed for later since the poll saw it.
  if (::read(handle->fd, &expirations, sizeof(expirations)) != sizeof(expirations)) return;
  PreciseTimer* timer = handle->owner;
  if (timer == nullptr || !timer->armed_) return;
  timer->armed_ = false;
  uv_poll_stop(&handle->poll);
  timer->callback_();  // may re-arm or destroy the timer
}

}  // namespace meshlet::loadgen

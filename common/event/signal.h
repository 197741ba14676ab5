#pragma once

// Signal: runs a callback on the loop thread when the process receives a signal (SIGTERM, SIGINT,
// SIGHUP...). libuv turns the asynchronous signal into a loop event, so the callback may do
// anything a normal callback does. The owner holds the Signal; destroying it stops watching (even
// from inside its own callback). Several Signals (on one or several loops) may watch the same
// signal number; each is told.

#include <uv.h>

#include <memory>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "common/event/loop.h"

namespace meshlet::event {

class Signal {
 public:
  using Callback = absl::AnyInvocable<void(int signum)>;

  // Fails (InvalidArgument) for a signal number libuv cannot watch.
  static absl::StatusOr<std::unique_ptr<Signal>> Create(Loop& loop, int signum, Callback callback);
  ~Signal();
  Signal(const Signal&) = delete;
  Signal& operator=(const Signal&) = delete;

  int signum() const { return signum_; }

 private:
  struct Handle;
  Signal(Handle* handle, int signum) : handle_(handle), signum_(signum) {}

  Handle* handle_;
  int signum_;
};

}  // namespace meshlet::event

#pragma once

// Loop: one libuv event loop. Each thread that does I/O owns exactly one Loop and runs it; every
// handle-based object (Timer, Signal, Connection, Listener) belongs to one Loop and must be used
// and destroyed on that loop's thread, before the Loop itself is destroyed.
//
// Cross-thread entry points are Post() and Stop(); everything else is loop-thread only.
//
//   Post(fn)        runs fn on the loop thread during a later loop turn. Safe from any thread.
//                   Each function runs exactly once, in the order each sending thread posted.
//                   Many posts made before the loop wakes up cost a single wakeup.
//   DeferDelete(p)  destroys p at the end of the current loop turn, after the callback that
//                   asked for it has returned: the way an object deletes itself from its own
//                   callback (design rule: never delete an object inside its own callback).
//   RunAtEndOfTurn  the same moment, for a plain function.
//
// Destroying the Loop runs pending deferred deletions, drops functions still queued by Post()
// without running them, and lets libuv finish closing handles. A handle-owning object still alive
// at that point is a bug and crashes with a list of the handles left open.

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "common/base/clock.h"

namespace meshlet::event {

class Timer;

class Loop {
 public:
  // `clock` (not owned, may be null) replaces the loop's own time source for Now(); tests pass a
  // FakeClock. Timers always run on libuv's monotonic time.
  explicit Loop(const Clock* clock = nullptr);
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  // Runs until Stop(). The calling thread becomes the loop thread.
  void Run();
  // Makes Run() (or a RunOnce/RunUntil in progress) return after the current loop turn. Safe from
  // any thread; a Stop() that arrives before Run() starts makes the next Run() return at once.
  void Stop();

  // One loop turn; blocks until at least one event is ready. Returns false if nothing but the
  // loop's own machinery is active (nothing could ever wake it except Post/Stop).
  bool RunOnce();
  // Runs loop turns without blocking until no posted function, deferred deletion or closing
  // handle is pending. Expired timers and ready I/O run too.
  void RunUntilIdle();
  // Runs loop turns until `done()` is true (checked before each turn) or `timeout` passes.
  // Returns done(). For tests and shutdown sequences.
  bool RunUntil(absl::FunctionRef<bool()> done, Duration timeout);

  void Post(absl::AnyInvocable<void()> fn);

  template <typename T>
  void DeferDelete(std::unique_ptr<T> object) {
    if (object == nullptr) return;
    DeferDeleteRaw(object.release(), [](void* p) { delete static_cast<T*>(p); });
  }

  // Runs fn(arg) at the end of the current loop turn, after its I/O callbacks, in order with
  // deferred deletions; the next poll does not block meanwhile. For work that gathers what several
  // callbacks of one turn produced (net::Connection's write batching). Loop thread only.
  void RunAtEndOfTurn(void (*fn)(void*), void* arg) { DeferDeleteRaw(arg, fn); }

  // True on the thread that runs the loop (or, before it first runs, the one that created it).
  bool IsInLoopThread() const {
    return thread_id_.load(std::memory_order_relaxed) == std::this_thread::get_id();
  }

  // Loop time: cached once per loop turn (no system call), millisecond resolution, on the same
  // epoch as std::chrono::steady_clock. With an injected clock, that clock's Now().
  MonotonicTime Now() const;
  // Refreshes the cached loop time (libuv refreshes it at the start of each turn).
  void UpdateTime() { uv_update_time(&loop_); }

  uv_loop_t* uv_loop() { return &loop_; }

  // Changes before and after each poll for I/O, so between two changes the callbacks of one batch
  // of ready events run (or those of the timers and closing handles in between). TurnClock keys
  // its cached readings on it.
  uint64_t turn() const { return turn_; }
  // True while Run/RunOnce/RunUntilIdle/RunUntil is executing callbacks on this thread.
  bool running() const { return running_; }

  // Objects waiting for DeferDelete (for tests and leak checks).
  size_t pending_deletions() const { return deferred_.size(); }
  // Times the loop was woken for Post()/Stop() (for stats and tests of coalescing).
  uint64_t wakeups() const { return wakeups_; }

 private:
  friend class Timer;
  class RunningScope;
  struct PostNode;
  struct Deferred {
    void* object;
    void (*deleter)(void*);
  };

  void DeferDeleteRaw(void* object, void (*deleter)(void*));
  void RunDeferredDeletes();
  void RunPosted();
  void DropPosted();
  bool HasPendingWork() const;
  void BecomeLoopThread() { thread_id_.store(std::this_thread::get_id()); }

  uv_loop_t loop_;
  // Wakes the loop for Post() and Stop().
  uv_async_t async_;
  // Runs deferred deletions after I/O callbacks of each turn.
  uv_check_t check_;
  // Marks the end of the callbacks that ran before the poll (turn_).
  uv_prepare_t prepare_;
  // Active only while deletions are pending, so the next poll does not block.
  uv_idle_t idle_;

  const Clock* clock_;
  std::atomic<std::thread::id> thread_id_;
  std::atomic<bool> stop_requested_{false};
  // Treiber stack of posted functions, newest first; the loop takes the whole list at once.
  std::atomic<PostNode*> post_head_{nullptr};
  std::vector<Deferred> deferred_;
  std::vector<Deferred> deleting_;  // swapped with deferred_ so both keep their capacity
  uint64_t wakeups_ = 0;
  // Handles of destroyed Timers, kept initialised for the next Timer (timer.cc).
  std::vector<void*> spare_timers_;
  bool destroying_ = false;  // ~Loop started: timer handles are closed, not kept
  uint64_t turn_ = 1;
  bool running_ = false;
  // The condition of the innermost RunUntil, checked before each poll; null outside one.
  absl::FunctionRef<bool()>* run_until_done_ = nullptr;
};

}  // namespace meshlet::event

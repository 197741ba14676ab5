#include "common/event/loop.h"

#include <string>
#include <utility>

#include "common/base/logging.h"
#include "common/event/timer.h"

namespace meshlet::event {

struct Loop::PostNode {
  PostNode* next;
  absl::AnyInvocable<void()> fn;
};

Loop::Loop(const Clock* clock) : clock_(clock), thread_id_(std::this_thread::get_id()) {
  CHECK(uv_loop_init(&loop_) == 0);
  loop_.data = this;

  CHECK(uv_async_init(&loop_, &async_, [](uv_async_t* handle) {
          Loop* self = static_cast<Loop*>(handle->data);
          ++self->wakeups_;
          self->RunPosted();
          if (self->stop_requested_.exchange(false, std::memory_order_acq_rel)) {
            uv_stop(&self->loop_);
          }
        }) == 0);
  async_.data = this;
  // The async handle stays referenced: Run() keeps going until Stop(), even with nothing else
  // active, so a worker waiting for its first Post() does not exit.

  CHECK(uv_check_init(&loop_, &check_) == 0);
  check_.data = this;
  CHECK(uv_check_start(&check_, [](uv_check_t* handle) {
          Loop* self = static_cast<Loop*>(handle->data);
          ++self->turn_;
          self->RunDeferredDeletes();
        }) == 0);
  uv_unref(reinterpret_cast<uv_handle_t*>(&check_));

  CHECK(uv_prepare_init(&loop_, &prepare_) == 0);
  prepare_.data = this;
  CHECK(uv_prepare_start(&prepare_, [](uv_prepare_t* handle) {
          Loop* self = static_cast<Loop*>(handle->data);
          ++self->turn_;
          // RunUntil: a timer callback may have met the condition; then the poll must not block.
          if (self->run_until_done_ != nullptr && (*self->run_until_done_)()) {
            uv_stop(&self->loop_);
          }
        }) == 0);
  uv_unref(reinterpret_cast<uv_handle_t*>(&prepare_));

  CHECK(uv_idle_init(&loop_, &idle_) == 0);
  idle_.data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(&idle_));
}

namespace {

// Whether a handle other than libuv's own is open and not closing (a turn could then wait on it
// without end).
bool HasOpenHandles(uv_loop_t* loop) {
  bool open = false;
  uv_walk(
      loop,
      [](uv_handle_t* handle, void* arg) {
        if (!uv_is_closing(handle)) *static_cast<bool*>(arg) = true;
      },
      &open);
  return open;
}

}  // namespace

Loop::~Loop() {
  destroying_ = true;
  RunDeferredDeletes();
  Timer::CloseSpareHandles(*this);
  DropPosted();
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&check_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&prepare_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&idle_), nullptr);
  // Close callbacks of handles closed by objects already destroyed run here; they may free
  // memory and queue more deletions.
  for (int i = 0; i < 16; ++i) {
    uv_run(&loop_, UV_RUN_NOWAIT);
    RunDeferredDeletes();
    if (uv_loop_close(&loop_) == 0) return;
  }
  // Requests still running on libuv's thread pool (a getaddrinfo whose HostLookup was destroyed:
  // it cannot be cancelled once started) end by themselves; wait for them while no handle is
  // open, one completion per turn.
  while (!HasOpenHandles(&loop_) && uv_loop_alive(&loop_) != 0) {
    uv_run(&loop_, UV_RUN_ONCE);
    RunDeferredDeletes();
  }
  if (uv_loop_close(&loop_) == 0) return;
  std::string open;
  uv_walk(
      &loop_,
      [](uv_handle_t* handle, void* arg) {
        auto* out = static_cast<std::string*>(arg);
        if (!out->empty()) out->append(", ");
        out->append(uv_handle_type_name(uv_handle_get_type(handle)));
        if (uv_is_closing(handle)) out->append("(closing)");
      },
      &open);
  CHECK(false) << "Loop destroyed while handles are open: " << open
               << "; destroy every Timer/Connection/Listener/Signal before their Loop";
}

// Marks the loop as running callbacks for the duration of one Run* call (nested calls keep it).
class Loop::RunningScope {
 public:
  explicit RunningScope(Loop& loop) : loop_(loop), was_running_(loop.running_) {
    loop_.running_ = true;
    ++loop_.turn_;
  }
  ~RunningScope() {
    loop_.running_ = was_running_;
    ++loop_.turn_;
  }

 private:
  Loop& loop_;
  const bool was_running_;
};

void Loop::Run() {
  BecomeLoopThread();
  RunningScope running(*this);
  uv_run(&loop_, UV_RUN_DEFAULT);
}

void Loop::Stop() {
  // Always through the async handle, even on the loop thread: uv_stop() is not thread-safe, and a
  // loop created on one thread may be about to run on another.
  stop_requested_.store(true, std::memory_order_release);
  uv_async_send(&async_);
}

bool Loop::RunOnce() {
  BecomeLoopThread();
  RunningScope running(*this);
  return uv_run(&loop_, UV_RUN_ONCE) != 0;
}

// closing_handles is libuv's list of handles whose close callbacks are due; handles closed from
// inside a close callback wait for the next turn, so it is checked along with our own queues.
bool Loop::HasPendingWork() const {
  return post_head_.load(std::memory_order_acquire) != nullptr || !deferred_.empty() ||
         loop_.closing_handles != nullptr;
}

void Loop::RunUntilIdle() {
  BecomeLoopThread();
  RunningScope running(*this);
  do {
    uv_run(&loop_, UV_RUN_NOWAIT);
  } while (HasPendingWork());
}

bool Loop::RunUntil(absl::FunctionRef<bool()> done, Duration timeout) {
  BecomeLoopThread();
  if (done()) return true;
  bool timed_out = false;
  // The timer only wakes the loop; libuv time is refreshed first so the deadline is measured from
  // now rather than from the start of the current turn.
  uv_update_time(&loop_);
  Timer deadline(*this, [&timed_out] { timed_out = true; });
  deadline.Enable(timeout);
  absl::FunctionRef<bool()>* const outer = run_until_done_;
  run_until_done_ = &done;
  while (!done() && !timed_out) {
    RunningScope running(*this);
    uv_run(&loop_, UV_RUN_ONCE);
  }
  run_until_done_ = outer;
  return done();
}

void Loop::Post(absl::AnyInvocable<void()> fn) {
  auto* node = new PostNode{nullptr, std::move(fn)};
  PostNode* head = post_head_.load(std::memory_order_relaxed);
  do {
    node->next = head;
  } while (!post_head_.compare_exchange_weak(head, node, std::memory_order_release,
                                             std::memory_order_relaxed));
  // Only the post that makes the list non-empty wakes the loop. The loop takes the whole list
  // after libuv has reset the async handle, so any post that finds the list empty again sends a
  // new wakeup: nothing can be stranded.
  if (head == nullptr) uv_async_send(&async_);
}

void Loop::RunPosted() {
  PostNode* list = post_head_.exchange(nullptr, std::memory_order_acquire);
  // The stack holds newest first; reversing restores the global push order, which preserves each
  // sender's order.
  PostNode* ordered = nullptr;
  while (list != nullptr) {
    PostNode* next = list->next;
    list->next = ordered;
    ordered = list;
    list = next;
  }
  while (ordered != nullptr) {
    PostNode* next = ordered->next;
    std::move(ordered->fn)();
    delete ordered;
    ordered = next;
  }
}

void Loop::DropPosted() {
  PostNode* list = post_head_.exchange(nullptr, std::memory_order_acquire);
  while (list != nullptr) {
    PostNode* next = list->next;
    delete list;
    list = next;
  }
}

void Loop::DeferDeleteRaw(void* object, void (*deleter)(void*)) {
  DCHECK(IsInLoopThread()) << "DeferDelete called off the loop thread";
  if (deferred_.empty() && !uv_is_closing(reinterpret_cast<uv_handle_t*>(&idle_))) {
    uv_idle_start(&idle_, [](uv_idle_t*) {});
  }
  deferred_.push_back(Deferred{object, deleter});
}

void Loop::RunDeferredDeletes() {
  // Destructors may defer more deletions; those run in the same pass.
  while (!deferred_.empty()) {
    deleting_.swap(deferred_);
    for (const Deferred& d : deleting_) d.deleter(d.object);
    deleting_.clear();
  }
  uv_idle_stop(&idle_);
}

MonotonicTime Loop::Now() const {
  if (clock_ != nullptr) return clock_->Now();
  return MonotonicTime(std::chrono::milliseconds(uv_now(&loop_)));
}

}  // namespace meshlet::event

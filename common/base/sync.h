#pragma once

// Mutex, MutexLock and Notification: the project's few locks and one-shot hand-overs between
// threads (configuration handed to workers, the stats registry, TLS context swaps; never on the
// request path). They sit on std::mutex and std::condition_variable, i.e. on pthreads, which
// ThreadSanitizer intercepts: absl's own Mutex synchronises through atomics inside Debian's
// uninstrumented libabsl, so TSan would report every access it guards as a race
// (docs/adr/0047-locks-tsan-can-see.md).
//
// The interface is the subset of absl's that the code uses, so ABSL_GUARDED_BY and friends still
// document what each lock guards.
//
// Thread-safety: every method may be called from any thread; none is reentrant.

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"

namespace meshlet {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

// Holds `mu` for its lifetime.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// A one-shot event: Notify() once; waiters return once it has happened, and everything written
// before Notify() is visible to them.
class Notification {
 public:
  Notification() = default;
  Notification(const Notification&) = delete;
  Notification& operator=(const Notification&) = delete;

  void Notify() {
    std::lock_guard<std::mutex> lock(mu_);
    notified_ = true;
    cv_.notify_all();
  }
  bool HasBeenNotified() const {
    std::lock_guard<std::mutex> lock(mu_);
    return notified_;
  }
  void WaitForNotification() const {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return notified_; });
  }
  // False if `timeout` passed first.
  template <typename Rep, typename Period>
  bool WaitForNotificationWithTimeout(std::chrono::duration<Rep, Period> timeout) const {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [this] { return notified_; });
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool notified_ = false;
};

}  // namespace meshlet

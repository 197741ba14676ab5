#pragma once

// StoreWorker: runs the control plane's store calls (and the saved registry's writes) on a thread
// of their own, so that a slow store or disk never stalls the loop that serves xDS, the CA and the
// telemetry receivers. A file-store write
// waits for an fsync; an etcd call waits up to --etcd-timeout per member, and without quorum every
// write and linearizable read does. Before, such a wait froze every sidecar's stream on the loop.
//
// Jobs run one at a time, in the order they were queued: the API's writes stay serialised, as they
// were on the loop, and a policy reload queued after a write sees it. A job's `done` runs on the
// loop thread once the job has finished.
//
// Limits: at most `max_queued` jobs wait (the running one aside); Run refuses more, so a hung store
// turns into fast refusals (the API answers 503) instead of a growing queue.
//
// Threading: construct, Run, Stop and destroy on the loop's thread. `work` runs on the worker
// thread and may only touch what is safe from there (the Store, shared-shard stats). After Stop
// no `done` runs, including those of jobs that were under way.

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "common/event/loop.h"
#include "common/stats/stats.h"

namespace meshlet::controlplane {

struct StoreWorkerOptions {
  size_t max_queued = 256;
};

class StoreWorker {
 public:
  // `stats` may be null (no metrics). Starts the thread.
  StoreWorker(event::Loop& loop, StoreWorkerOptions options, StatsRegistry* stats);
  ~StoreWorker();  // Stop()
  StoreWorker(const StoreWorker&) = delete;
  StoreWorker& operator=(const StoreWorker&) = delete;

  // Queues `work` (worker thread), then `done(result)` (loop thread). False, running neither, when
  // max_queued jobs are waiting already or after Stop (counted as rejected).
  template <typename T>
  bool Run(absl::AnyInvocable<T() &&> work, absl::AnyInvocable<void(T) &&> done) {
    return Enqueue([work = std::move(work), done = std::move(done)]() mutable -> Done {
      return [done = std::move(done), result = std::move(work)()]() mutable {
        std::move(done)(std::move(result));
      };
    });
  }

  // Waits for the job under way, drops the queued ones (their `done` never runs) and ends the
  // thread. Loop thread; idempotent.
  void Stop();

  // Jobs queued or running (any thread).
  size_t pending() const;

 private:
  // A job does the work on the worker thread and returns what is left to do on the loop.
  using Done = absl::AnyInvocable<void() &&>;
  using Job = absl::AnyInvocable<Done() &&>;
  bool Enqueue(Job job);
  void ThreadMain();

  event::Loop& loop_;
  const StoreWorkerOptions options_;
  // Loop thread: false once stopped; the posted `done`s check it.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  Counter done_;
  Counter rejected_;
  Gauge queued_;
  Histogram seconds_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Job> jobs_;   // guarded by mu_
  bool running_ = false;   // guarded by mu_
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace meshlet::controlplane

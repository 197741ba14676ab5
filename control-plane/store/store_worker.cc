#include "control-plane/store/store_worker.h"

#include <chrono>

#include "common/base/logging.h"
#include "common/base/thread_name.h"

namespace meshlet::controlplane {

StoreWorker::StoreWorker(event::Loop& loop, StoreWorkerOptions options, StatsRegistry* stats)
    : loop_(loop), options_(options) {
  if (stats != nullptr) {
    StatsShard& shard = stats->shared_shard();
    auto must = [](auto stat) {
      CHECK(stat.ok()) << stat.status().message();
      return *stat;
    };
    constexpr char kJobsHelp[] =
        "Store calls run off the loop (API requests, policy reloads, join tokens, registry saves), "
        "by whether they ran.";
    done_ =
        must(shard.RegisterCounter("meshlet_cp_store_jobs_total", kJobsHelp, {{"result", "done"}}));
    rejected_ = must(
        shard.RegisterCounter("meshlet_cp_store_jobs_total", kJobsHelp, {{"result", "rejected"}}));
    queued_ = must(shard.RegisterGauge("meshlet_cp_store_jobs_pending",
                                       "Store calls queued or running.", {}, GaugeMerge::kGlobal));
    seconds_ = must(shard.RegisterHistogram("meshlet_cp_store_job_seconds",
                                            "Time a store call took, once it started.", {},
                                            HistogramOptions{.exposition_divisor = 1e6}));
  }
  thread_ = std::thread([this] {
    SetThreadName("store");
    ThreadMain();
  });
}

StoreWorker::~StoreWorker() { Stop(); }

bool StoreWorker::Enqueue(Job job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_ && jobs_.size() < options_.max_queued) {
      jobs_.push_back(std::move(job));
      queued_.Inc();
      wake_.notify_one();
      return true;
    }
  }
  rejected_.Inc();
  return false;
}

void StoreWorker::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    queued_.Add(-static_cast<int64_t>(jobs_.size()));
    jobs_.clear();
    wake_.notify_one();
  }
  *alive_ = false;
  thread_.join();
}

size_t StoreWorker::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return jobs_.size() + (running_ ? 1 : 0);
}

void StoreWorker::ThreadMain() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    wake_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (stopping_) return;
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    running_ = true;
    lock.unlock();
    const auto start = std::chrono::steady_clock::now();
    loop_.Post([alive = alive_, done = std::move(job)()]() mutable {
      if (*alive) std::move(done)();
    });
    seconds_.Record(std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::steady_clock::now() - start)
                        .count());
    done_.Inc();
    queued_.Dec();
    lock.lock();
    running_ = false;
  }
}

}  // namespace meshlet::controlplane

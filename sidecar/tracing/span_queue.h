#pragma once

// SpanQueue: the bounded, lock-free hand-off of finished spans from the workers (many producers)
// to the exporter thread (the consumer). A push never blocks and never allocates: when the queue
// is full it fails and the caller drops the span and counts it. The cells are allocated once, at
// construction, and a pushed Span is moved into its cell (its strings' buffers move with it).
//
// The algorithm is the classic bounded array queue with a sequence number per cell: a producer
// claims a position with a compare-and-swap on the tail and publishes the cell by storing the
// next sequence number; the consumer does the same on the head. Positions are taken modulo the
// capacity, so any capacity works.
//
// The consumer sleeps in Wait() until enough spans are queued (or a deadline, or Interrupt()):
// it publishes how many it waits for, and the producer whose push reaches that number (one of
// them: a compare-and-swap retires the request) wakes it. A push otherwise costs one extra load;
// an idle exporter never wakes.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "sidecar/tracing/span.h"

namespace meshlet::sidecar::tracing {

class SpanQueue {
 public:
  explicit SpanQueue(size_t capacity)
      : capacity_(capacity == 0 ? 1 : capacity), cells_(new Cell[capacity_]) {
    for (size_t i = 0; i < capacity_; ++i) cells_[i].sequence.store(i, std::memory_order_relaxed);
  }
  SpanQueue(const SpanQueue&) = delete;
  SpanQueue& operator=(const SpanQueue&) = delete;

  size_t capacity() const { return capacity_; }

  // Any thread. False when full (`span` is left as it was).
  bool TryPush(Span& span) {
    size_t pos = tail_.load(std::memory_order_relaxed);
    while (true) {
      Cell& cell = cells_[pos % capacity_];
      const size_t seq = cell.sequence.load(std::memory_order_acquire);
      const intptr_t diff = static_cast<intptr_t>(seq) - static_cast<intptr_t>(pos);
      if (diff == 0) {
        // seq_cst (free on x86, where the CAS is a locked instruction anyway) pairs with Wait():
        // either the consumer sees this position or this push sees its wake threshold.
        if (tail_.compare_exchange_weak(pos, pos + 1, std::memory_order_seq_cst,
                                        std::memory_order_relaxed)) {
          cell.span = std::move(span);
          cell.sequence.store(pos + 1, std::memory_order_release);
          MaybeWake(pos + 1);
          return true;
        }
      } else if (diff < 0) {
        return false;  // the cell still holds a span from a lap ago: full
      } else {
        pos = tail_.load(std::memory_order_relaxed);
      }
    }
  }

  // The consumer: blocks until at least `count` spans are queued, Interrupt() was called (then it
  // returns at once, now and on every later call), or `deadline` passes.
  void Wait(size_t count, absl::Time deadline) {
    absl::MutexLock lock(&wake_mu_);
    wake_at_.store(count, std::memory_order_seq_cst);
    struct Ready {
      const SpanQueue* queue;
      size_t count;
      bool operator()() const { return queue->woken_ || queue->SizeApprox() >= count; }
    } ready{this, count};
    wake_mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
    wake_at_.store(kNoWake, std::memory_order_relaxed);
    if (!interrupted_) woken_ = false;
  }

  // Any thread: ends the consumer's Wait (used to stop it).
  void Interrupt() {
    absl::MutexLock lock(&wake_mu_);
    woken_ = true;
    interrupted_ = true;
  }

  // Any thread (the exporter). False when empty.
  bool TryPop(Span* out) {
    size_t pos = head_.load(std::memory_order_relaxed);
    while (true) {
      Cell& cell = cells_[pos % capacity_];
      const size_t seq = cell.sequence.load(std::memory_order_acquire);
      const intptr_t diff = static_cast<intptr_t>(seq) - static_cast<intptr_t>(pos + 1);
      if (diff == 0) {
        if (head_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          *out = std::move(cell.span);
          cell.sequence.store(pos + capacity_, std::memory_order_release);
          return true;
        }
      } else if (diff < 0) {
        return false;
      } else {
        pos = head_.load(std::memory_order_relaxed);
      }
    }
  }

  // Approximate (for flushing decisions).
  size_t SizeApprox() const {
    const size_t tail = tail_.load(std::memory_order_seq_cst);
    const size_t head = head_.load(std::memory_order_relaxed);
    return tail > head ? tail - head : 0;
  }

 private:
  static constexpr size_t kNoWake = std::numeric_limits<size_t>::max();

  // After a push that made `tail` positions claimed: wakes the consumer when that is as many as it
  // waits for.
  void MaybeWake(size_t tail) {
    size_t wake_at = wake_at_.load(std::memory_order_seq_cst);
    if (wake_at == kNoWake) return;
    const size_t head = head_.load(std::memory_order_relaxed);
    if (tail - std::min(head, tail) < wake_at) return;
    if (!wake_at_.compare_exchange_strong(wake_at, kNoWake, std::memory_order_relaxed)) return;
    absl::MutexLock lock(&wake_mu_);
    woken_ = true;
  }

  struct Cell {
    std::atomic<size_t> sequence{0};
    Span span;
  };

  const size_t capacity_;
  std::unique_ptr<Cell[]> cells_;
  alignas(64) std::atomic<size_t> tail_{0};
  alignas(64) std::atomic<size_t> head_{0};
  // Spans the sleeping consumer waits for; kNoWake: it is not waiting.
  alignas(64) std::atomic<size_t> wake_at_{kNoWake};
  absl::Mutex wake_mu_;
  bool woken_ ABSL_GUARDED_BY(wake_mu_) = false;
  bool interrupted_ ABSL_GUARDED_BY(wake_mu_) = false;
};

}  // namespace meshlet::sidecar::tracing

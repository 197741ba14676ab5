#pragma once

// SpanQueue: the bounded, lock-free hand-off of finished spans from the workers (many producers)
// to the exporter thread (the consumer), and the pool those spans come from and return to.
//
// Spans travel by pointer and are recycled: a worker takes a cleared span (Acquire), fills it in
// place while its request runs and pushes it (TryPush); the exporter pops it, encodes it and hands
// it back (Recycle). A recycled span keeps its strings' buffers, so once the pool is warm a
// sampled request allocates nothing, and a push or a pop moves one pointer. A push never blocks
// and never allocates: when the queue is full it fails, and the caller recycles the span and
// counts the drop. Acquire allocates only when no recycled span is left (at first, or when more
// spans than ever are in flight); at most `capacity` spans wait for reuse, one more is freed.
//
// Both rings are the classic bounded array queue with a sequence number per cell: a producer
// claims a position with a compare-and-swap on the tail and publishes the cell by storing the
// next sequence number; a consumer does the same on the head. Positions are taken modulo the
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

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "sidecar/tracing/span.h"

namespace meshlet::sidecar::tracing {
namespace span_queue_internal {

// A bounded ring of pointers for many producers and many consumers.
template <typename T>
class PointerRing {
 public:
  explicit PointerRing(size_t capacity)
      : capacity_(std::max<size_t>(capacity, 1)), cells_(new Cell[capacity_]) {
    for (size_t i = 0; i < capacity_; ++i) cells_[i].sequence.store(i, std::memory_order_relaxed);
  }
  PointerRing(const PointerRing&) = delete;
  PointerRing& operator=(const PointerRing&) = delete;

  size_t capacity() const { return capacity_; }

  // The positions claimed once this push is in (the tail after it, at least 1), or 0 when full.
  size_t TryPush(T* item) {
    size_t pos = tail_.load(std::memory_order_relaxed);
    while (true) {
      Cell& cell = cells_[pos % capacity_];
      const size_t seq = cell.sequence.load(std::memory_order_acquire);
      const intptr_t diff = static_cast<intptr_t>(seq) - static_cast<intptr_t>(pos);
      if (diff == 0) {
        // seq_cst (free on x86, where the CAS is a locked instruction anyway) pairs with
        // SpanQueue::Wait(): either the consumer sees this position or this push sees its wake
        // threshold.
        if (tail_.compare_exchange_weak(pos, pos + 1, std::memory_order_seq_cst,
                                        std::memory_order_relaxed)) {
          cell.item = item;
          cell.sequence.store(pos + 1, std::memory_order_release);
          return pos + 1;
        }
      } else if (diff < 0) {
        return 0;  // the cell still holds an item from a lap ago: full
      } else {
        pos = tail_.load(std::memory_order_relaxed);
      }
    }
  }

  // Null when empty.
  T* TryPop() {
    size_t pos = head_.load(std::memory_order_relaxed);
    while (true) {
      Cell& cell = cells_[pos % capacity_];
      const size_t seq = cell.sequence.load(std::memory_order_acquire);
      const intptr_t diff = static_cast<intptr_t>(seq) - static_cast<intptr_t>(pos + 1);
      if (diff == 0) {
        if (head_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          T* item = cell.item;
          cell.sequence.store(pos + capacity_, std::memory_order_release);
          return item;
        }
      } else if (diff < 0) {
        return nullptr;
      } else {
        pos = head_.load(std::memory_order_relaxed);
      }
    }
  }

  size_t Head() const { return head_.load(std::memory_order_relaxed); }
  // Approximate.
  size_t SizeApprox() const {
    const size_t tail = tail_.load(std::memory_order_seq_cst);
    const size_t head = head_.load(std::memory_order_relaxed);
    return tail > head ? tail - head : 0;
  }

 private:
  struct Cell {
    std::atomic<size_t> sequence{0};
    T* item = nullptr;
  };

  const size_t capacity_;
  std::unique_ptr<Cell[]> cells_;
  alignas(64) std::atomic<size_t> tail_{0};
  alignas(64) std::atomic<size_t> head_{0};
};

}  // namespace span_queue_internal

class SpanQueue {
 public:
  // `capacity`: finished spans that may wait for the exporter, and recycled ones kept for reuse.
  explicit SpanQueue(size_t capacity) : queued_(capacity), free_(capacity) {}
  ~SpanQueue() {
    while (TryPop() != nullptr) {
    }
    while (Span* span = free_.TryPop()) delete span;
  }
  SpanQueue(const SpanQueue&) = delete;
  SpanQueue& operator=(const SpanQueue&) = delete;

  size_t capacity() const { return queued_.capacity(); }

  // Any thread: a span to fill, as a new one is; a recycled one when there is one.
  SpanPtr Acquire() {
    if (Span* span = free_.TryPop()) return SpanPtr(span);
    return std::make_unique<Span>();
  }

  // Any thread: a span done with (exported, or dropped) is cleared and kept for reuse, or freed
  // when as many wait already.
  void Recycle(SpanPtr span) {
    if (span == nullptr) return;
    span->Reset();
    if (free_.TryPush(span.get()) != 0) static_cast<void>(span.release());
  }

  // Any thread. False when full (`span` is left with the caller).
  bool TryPush(SpanPtr& span) {
    const size_t tail = queued_.TryPush(span.get());
    if (tail == 0) return false;
    static_cast<void>(span.release());  // the consumer's now
    MaybeWake(tail);
    return true;
  }

  // Any thread (the exporter). Null when empty.
  SpanPtr TryPop() { return SpanPtr(queued_.TryPop()); }

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

  // Approximate (for flushing decisions).
  size_t SizeApprox() const { return queued_.SizeApprox(); }

 private:
  static constexpr size_t kNoWake = std::numeric_limits<size_t>::max();

  // After a push that made `tail` positions claimed: wakes the consumer when that is as many as it
  // waits for.
  void MaybeWake(size_t tail) {
    size_t wake_at = wake_at_.load(std::memory_order_seq_cst);
    if (wake_at == kNoWake) return;
    const size_t head = queued_.Head();
    if (tail - std::min(head, tail) < wake_at) return;
    if (!wake_at_.compare_exchange_strong(wake_at, kNoWake, std::memory_order_relaxed)) return;
    absl::MutexLock lock(&wake_mu_);
    woken_ = true;
  }

  span_queue_internal::PointerRing<Span> queued_;  // finished, for the exporter
  span_queue_internal::PointerRing<Span> free_;    // cleared, for reuse
  // Spans the sleeping consumer waits for; kNoWake: it is not waiting.
  alignas(64) std::atomic<size_t> wake_at_{kNoWake};
  absl::Mutex wake_mu_;
  bool woken_ ABSL_GUARDED_BY(wake_mu_) = false;
  bool interrupted_ ABSL_GUARDED_BY(wake_mu_) = false;
};

}  // namespace meshlet::sidecar::tracing

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

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

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
        if (tail_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          cell.span = std::move(span);
          cell.sequence.store(pos + 1, std::memory_order_release);
          return true;
        }
      } else if (diff < 0) {
        return false;  // the cell still holds a span from a lap ago: full
      } else {
        pos = tail_.load(std::memory_order_relaxed);
      }
    }
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
    const size_t tail = tail_.load(std::memory_order_relaxed);
    const size_t head = head_.load(std::memory_order_relaxed);
    return tail > head ? tail - head : 0;
  }

 private:
  struct Cell {
    std::atomic<size_t> sequence{0};
    Span span;
  };

  const size_t capacity_;
  std::unique_ptr<Cell[]> cells_;
  alignas(64) std::atomic<size_t> tail_{0};
  alignas(64) std::atomic<size_t> head_{0};
};

}  // namespace meshlet::sidecar::tracing

#include "sidecar/tracing/span_queue.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::tracing {
namespace {

TEST(SpanQueueTest, FifoAndBounded) {
  SpanQueue queue(3);
  for (uint64_t id = 1; id <= 3; ++id) {
    Span span;
    span.span_id = id;
    span.name = "s";
    ASSERT_TRUE(queue.TryPush(span));
    EXPECT_TRUE(span.name.empty());  // moved into the queue
  }
  Span extra;
  extra.span_id = 4;
  EXPECT_FALSE(queue.TryPush(extra));
  EXPECT_EQ(extra.span_id, 4u);  // left as it was
  Span out;
  ASSERT_TRUE(queue.TryPop(&out));
  EXPECT_EQ(out.span_id, 1u);
  EXPECT_EQ(out.name, "s");
  ASSERT_TRUE(queue.TryPush(extra));  // a cell came free, after a full lap
  for (uint64_t id : {2u, 3u, 4u}) {
    ASSERT_TRUE(queue.TryPop(&out));
    EXPECT_EQ(out.span_id, id);
  }
  EXPECT_FALSE(queue.TryPop(&out));
}

// Several producers and one consumer: every span pushed is popped exactly once, none invented.
TEST(SpanQueueTest, ManyProducersOneConsumer) {
  constexpr int kProducers = 4;
  constexpr uint64_t kPerProducer = 20000;
  SpanQueue queue(64);
  std::atomic<int> producers_done{0};
  std::vector<int> seen(kProducers * kPerProducer + 1, 0);
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (uint64_t i = 0; i < kPerProducer; ++i) {
        Span span;
        span.span_id = p * kPerProducer + i + 1;
        while (!queue.TryPush(span)) std::this_thread::yield();
      }
      producers_done.fetch_add(1);
    });
  }
  uint64_t popped = 0;
  Span out;
  while (popped < kProducers * kPerProducer) {
    if (queue.TryPop(&out)) {
      ASSERT_GE(out.span_id, 1u);
      ASSERT_LE(out.span_id, kProducers * kPerProducer);
      ++seen[out.span_id];
      ++popped;
    } else {
      std::this_thread::yield();
    }
  }
  for (std::thread& t : producers) t.join();
  EXPECT_FALSE(queue.TryPop(&out));
  for (size_t id = 1; id < seen.size(); ++id) ASSERT_EQ(seen[id], 1) << id;
}

TEST(SpanQueueTest, WaitReturnsWhenEnoughSpansAreQueued) {
  SpanQueue queue(16);
  // Already there: no sleep.
  Span span;
  ASSERT_TRUE(queue.TryPush(span));
  const absl::Time before = absl::Now();
  queue.Wait(1, absl::InfiniteFuture());
  EXPECT_LT(absl::Now() - before, absl::Seconds(5));
  // Pushed by another thread while the consumer sleeps: the push that reaches the count wakes it.
  std::atomic<bool> woke{false};
  std::thread consumer([&] {
    queue.Wait(3, absl::InfiniteFuture());
    woke.store(true);
  });
  Span second;
  ASSERT_TRUE(queue.TryPush(second));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(woke.load());  // 2 of 3
  Span third;
  ASSERT_TRUE(queue.TryPush(third));
  consumer.join();
  EXPECT_TRUE(woke.load());
  EXPECT_EQ(queue.SizeApprox(), 3u);
}

TEST(SpanQueueTest, WaitEndsAtItsDeadlineOrInterrupt) {
  SpanQueue queue(4);
  absl::Time before = absl::Now();
  queue.Wait(1, before + absl::Milliseconds(30));
  EXPECT_GE(absl::Now() - before, absl::Milliseconds(30));
  std::thread consumer([&] { queue.Wait(1, absl::InfiniteFuture()); });
  absl::SleepFor(absl::Milliseconds(20));
  queue.Interrupt();
  consumer.join();
  // Interrupted for good: later waits return at once.
  before = absl::Now();
  queue.Wait(1, absl::InfiniteFuture());
  EXPECT_LT(absl::Now() - before, absl::Seconds(5));
}

}  // namespace
}  // namespace meshlet::sidecar::tracing

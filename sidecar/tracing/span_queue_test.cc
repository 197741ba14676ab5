#include "sidecar/tracing/span_queue.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "sidecar/tracing/span_encoding.h"

namespace meshlet::sidecar::tracing {
namespace {

SpanPtr SpanWithId(uint64_t id) {
  auto span = std::make_unique<Span>();
  span->span_id = id;
  return span;
}

TEST(SpanQueueTest, FifoAndBounded) {
  SpanQueue queue(3);
  for (uint64_t id = 1; id <= 3; ++id) {
    SpanPtr span = SpanWithId(id);
    ASSERT_TRUE(queue.TryPush(span));
    EXPECT_EQ(span, nullptr);  // the queue's now
    EXPECT_EQ(queue.SizeApprox(), id);
  }
  SpanPtr extra = SpanWithId(4);
  EXPECT_FALSE(queue.TryPush(extra));
  ASSERT_NE(extra, nullptr);  // left with the caller
  EXPECT_EQ(extra->span_id, 4u);
  SpanPtr out = queue.TryPop();
  ASSERT_NE(out, nullptr);
  EXPECT_EQ(out->span_id, 1u);
  ASSERT_TRUE(queue.TryPush(extra));  // a cell came free, after a full lap
  for (uint64_t id : {2u, 3u, 4u}) {
    out = queue.TryPop();
    ASSERT_NE(out, nullptr);
    EXPECT_EQ(out->span_id, id);
  }
  EXPECT_EQ(queue.TryPop(), nullptr);
}

// Several producers and one consumer: every span pushed is popped exactly once, none invented.
TEST(SpanQueueTest, ManyProducersOneConsumer) {
  constexpr int kProducers = 4;
  constexpr uint64_t kPerProducer = 20000;
  SpanQueue queue(64);
  std::vector<int> seen(kProducers * kPerProducer + 1, 0);
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (uint64_t i = 0; i < kPerProducer; ++i) {
        SpanPtr span = queue.Acquire();
        span->span_id = p * kPerProducer + i + 1;
        while (!queue.TryPush(span)) std::this_thread::yield();
      }
    });
  }
  uint64_t popped = 0;
  while (popped < kProducers * kPerProducer) {
    if (SpanPtr out = queue.TryPop()) {
      ASSERT_GE(out->span_id, 1u);
      ASSERT_LE(out->span_id, kProducers * kPerProducer);
      ++seen[out->span_id];
      ++popped;
      queue.Recycle(std::move(out));  // the producers take it again
    } else {
      std::this_thread::yield();
    }
  }
  for (std::thread& t : producers) t.join();
  EXPECT_EQ(queue.TryPop(), nullptr);
  for (size_t id = 1; id < seen.size(); ++id) ASSERT_EQ(seen[id], 1) << id;
}

// A recycled span comes back cleared, with the buffers of its strings (not one that grew past
// kKeptCapacity); the pool keeps at most `capacity` spans and frees the rest.
TEST(SpanQueueTest, RecycledSpansComeBackClearedWithTheirBuffers) {
  SpanQueue queue(2);
  SpanPtr first = queue.Acquire();
  first->request_id = std::string(36, 'r');
  first->path = std::string(Span::kKeptCapacity + 1, 'p');
  first->span_id = 9;
  const size_t request_id_capacity = first->request_id.capacity();
  Span* const first_address = first.get();
  queue.Recycle(std::move(first));
  SpanPtr again = queue.Acquire();
  ASSERT_EQ(again.get(), first_address);
  EXPECT_TRUE(again->request_id.empty());
  EXPECT_EQ(again->request_id.capacity(), request_id_capacity);
  EXPECT_TRUE(again->path.empty());
  EXPECT_LE(again->path.capacity(), Span::kKeptCapacity);
  EXPECT_EQ(again->span_id, 0u);

  SpanPtr second = queue.Acquire();  // the pool is empty: a new span
  SpanPtr third = queue.Acquire();
  std::vector<const Span*> kept = {again.get(), second.get()};
  queue.Recycle(std::move(again));
  queue.Recycle(std::move(second));
  queue.Recycle(std::move(third));  // a third would exceed the capacity: freed
  SpanPtr a = queue.Acquire();
  SpanPtr b = queue.Acquire();
  EXPECT_EQ(a.get(), kept[0]);
  EXPECT_EQ(b.get(), kept[1]);
}

// Reset() leaves nothing of the span it was: it encodes as a new one does.
TEST(SpanQueueTest, ResetSpanIsANewSpan) {
  Span used;
  used.trace_id = TraceId{1, 2};
  used.span_id = 3;
  used.parent_span_id = 4;
  used.kind = SpanKind::kClient;
  used.name = "n";
  used.start = absl::Now();
  used.end = used.start + absl::Seconds(1);
  used.error = true;
  used.status_message = "m";
  used.method = "GET";
  used.path = "/p";
  used.status_code = 503;
  used.protocol = "HTTP/1.1";
  used.peer_identity = "spiffe://td/ns/a/sa/b";
  used.route = "r";
  used.cluster = "c";
  used.endpoint = "10.0.0.1:80";
  used.response_flags = "UF";
  used.bytes_in = 5;
  used.bytes_out = 6;
  used.upstream_ready_us = 7;
  used.retry_attempt = 2;
  used.request_id = "id";
  used.Reset();
  const Span fresh;
  std::string reset_body, fresh_body;
  EncodeOtlpJson({&used}, "svc", &reset_body);
  EncodeOtlpJson({&fresh}, "svc", &fresh_body);
  EXPECT_EQ(reset_body, fresh_body);
  EXPECT_EQ(used.kind, fresh.kind);
  EXPECT_EQ(used.upstream_ready_us, fresh.upstream_ready_us);
}

TEST(SpanQueueTest, WaitReturnsWhenEnoughSpansAreQueued) {
  SpanQueue queue(16);
  // Already there: no sleep.
  SpanPtr span = SpanWithId(1);
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
  SpanPtr second = SpanWithId(2);
  ASSERT_TRUE(queue.TryPush(second));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(woke.load());  // 2 of 3
  SpanPtr third = SpanWithId(3);
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

// The router's retries, route timeouts and deadline handling against FakeUpstream servers (real
// sockets on 127.0.0.1, the fake line codec from sidecar/cluster/fake_codec.h) driven from the test
// thread's loop. The decision logic itself is unit-tested in sidecar/resilience; these tests check
// the wiring: what reaches the upstream, what reaches the client, and what is counted — and that
// a request that succeeds at once allocates no more with retries enabled than without.

#include "sidecar/router/router.h"
#include "sidecar/router/router_test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/allocation_counter.h"
#include "common/base/clock.h"
#include "common/base/fake_random.h"
#include "common/event/loop.h"
#include "common/http/header_map.h"
#include "common/net/buffer.h"
#include "common/stats/stats.h"
#include "sidecar/cluster/cluster.h"
#include "sidecar/cluster/fake_codec.h"
#include "sidecar/cluster/upstream_stats.h"
#include "sidecar/route/route_table.h"
#include "sidecar/tracing/recording_span_sink.h"
#include "sidecar/tracing/tracer.h"

namespace meshlet::sidecar::router {

namespace {

using RouterRetryTest = RouterTest;

TEST_F(RouterRetryTest, RetriedResponsesAreDiscardedAndTheLastOneForwarded) {
  FakeUpstream& up = AddUpstream();
  up.auto_respond = false;
  up.on_request = [&](const FakeUpstream::Request& r) {
    if (!r.ended) return;
    up.Respond(up.requests().size() - 1, up.requests().size() <= 2 ? 503 : 200);
  };
  Configure({up.address()}, Retrying(2));
  RecordingCallbacks& client = Send("GET");
  EXPECT_EQ(client.status, "200");
  EXPECT_EQ(client.headers_sent, 1);  // the two 503s never reached the client
  EXPECT_EQ(up.requests().size(), 3u);
  EXPECT_EQ(Count("meshlet_upstream_rq_retry_total", {{"reason", "status"}}), 2u);
  EXPECT_EQ(Count("meshlet_upstream_rq_retry_success_total"), 1u);
  EXPECT_EQ(client.info.response_flags, 0u);
}

TEST_F(RouterRetryTest, ExhaustedRetriesForwardTheLastFailureWithUrx) {
  FakeUpstream& up = AddUpstream();
  up.auto_respond = false;
  up.on_request = [&](const FakeUpstream::Request& r) {
    if (r.ended) up.Respond(up.requests().size() - 1, 503);
  };
  Configure({up.address()}, Retrying(1));
  RecordingCallbacks& client = Send("GET");
  EXPECT_EQ(client.status, "503");
  EXPECT_EQ(up.requests().size(), 2u);
  EXPECT_TRUE(client.info.HasFlag(ResponseFlag::kRetryLimitExceeded));
  EXPECT_EQ(Count("meshlet_upstream_rq_retry_skipped_total", {{"reason", "attempts_exhausted"}}),
            1u);
}

TEST_F(RouterRetryTest, RetryGoesToAnotherHost) {
  FakeUpstream& bad = AddUpstream();
  FakeUpstream& good = AddUpstream();
  bad.auto_respond = false;
  bad.on_request = [&](const FakeUpstream::Request& r) {
    if (r.ended) bad.Respond(bad.requests().size() - 1, 503);
  };
  Configure({bad.address(), good.address()}, Retrying(1));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(Send("GET").status, "200") << i;
  // Every request ended on the good host, and each retry left the host that had failed.
  EXPECT_EQ(good.requests().size(), 6u);
  EXPECT_GE(bad.requests().size(), 1u);
  EXPECT_EQ(Count("meshlet_upstream_rq_retry_total", {{"reason", "status"}}),
            bad.requests().size());
}

TEST_F(RouterRetryTest, NonIdempotentRequestIsNotRetriedOnceItReachedTheUpstream) {
  FakeUpstream& up = AddUpstream();
  up.auto_respond = false;
  up.on_request = [&](const FakeUpstream::Request& r) {
    if (r.ended && up.requests().size() == 1)
      up.Send(r.connection, absl::StrCat("RST ", r.id, "\n"));
    if (r.ended && up.requests().size() > 1) up.Respond(up.requests().size() - 1, 200);
  };
  Configure({up.address()}, Retrying(2));
  RecordingCallbacks& post = Send("POST", "payload");
  EXPECT_EQ(post.status, "503");
  EXPECT_EQ(up.requests().size(), 1u);
  EXPECT_TRUE(post.info.HasFlag(ResponseFlag::kUpstreamReset));
  EXPECT_TRUE(post.info.HasFlag(ResponseFlag::kRetryLimitExceeded));
  EXPECT_EQ(Count("meshlet_upstream_rq_retry_skipped_total", {{"reason", "non_idempotent"}}), 1u);
}

TEST_F(RouterRetryTest, IdempotentRequestIsRetriedAfterAReset) {
  FakeUpstream& up = AddUpstream();
  up.auto_respond = false;
  up.on_request = [&](const FakeUpstream::Request& r) {
    if (r.ended && up.requests().size() == 1)
      up.Send(r.connection, absl::StrCat("RST ", r.id, "\n"));
    if (r.ended && up.requests().size() > 1) up.Respond(up.requests().size() - 1, 200);
  };
  Configure({up.address()}, Retrying(2));
  RecordingCallbacks& put = Send("PUT", "payload");
  EXPECT_EQ(put.status, "200");
  ASSERT_EQ(up.requests().size(), 2u);
  EXPECT_TRUE(up.requests()[1].ended);  // the replayed body ended the second request
  EXPECT_EQ(Count("meshlet_upstream_rq_retry_total", {{"reason", "reset"}}), 1u);
}

TEST_F(RouterRetryTest, NonIdempotentRequestIsRetriedAfterAConnectFailure) {
  FakeUpstream& up = AddUpstream();
  FakeUpstream& dead = AddUpstream();
  dead.StopListening();
  Configure({dead.address(), up.address()}, Retrying(2));
  for (int i = 0; i < 2; ++i) EXPECT_EQ(Send("POST", "payload").status, "200");
  EXPECT_EQ(up.requests().size(), 2u);
  EXPECT_TRUE(up.requests()[0].ended && up.requests()[1].ended);  // whole bodies each time
  // Round robin puts the dead host first at least once; each time the POST was retried.
  EXPECT_GE(Count("meshlet_upstream_rq_retry_total", {{"reason", "connect_failure"}}), 1u);
  EXPECT_EQ(Count("meshlet_upstream_rq_connect_fail_total"), 0u);
}

TEST_F(RouterRetryTest, AConnectRefusedByTheOnlyLocalHostIsAnsweredAtOnce) {
  // The app behind an inbound sidecar, stopped: its loopback port refuses. A retry would ask it
  // again after a backoff; the 503 goes back at once instead.
  FakeUpstream& dead = AddUpstream();
  dead.StopListening();
  Configure({dead.address()}, Retrying(2));
  EXPECT_EQ(Send("GET", "").status, "503");
  EXPECT_EQ(Count("meshlet_upstream_rq_retry_total", {{"reason", "connect_failure"}}), 0u);
  EXPECT_EQ(Count("meshlet_upstream_rq_retry_skipped_total", {{"reason", "local_connect_refused"}}),
            1u);
  EXPECT_EQ(Count("meshlet_upstream_rq_connect_fail_total"), 1u);
}

TEST_F(RouterRetryTest, BodyBeyondTheReplayLimitIsNotRetried) {
  FakeUpstream& up = AddUpstream();
  up.auto_respond = false;
  up.on_request = [&](const FakeUpstream::Request& r) {
    if (r.ended) up.Respond(up.requests().size() - 1, 503);
  };
  Configure({up.address()}, Retrying(2));
  // A limit of 4 bytes: the 7-byte body cannot be replayed.
  RecordingCallbacks& client = NewStream();
  client.retry_buffer_limit = 4;
  auto headers = std::make_unique<http::HeaderMap>();
  headers->Add(":method", "PUT");
  headers->Add(":path", "/x");
  headers->Add(":authority", "test");
  Start(client, std::move(headers), false);
  net::Buffer body("payload");
  routers_.back()->DecodeData(body, true);
  loop_.RunUntil([&] { return client.done(); }, std::chrono::seconds(5));
  EXPECT_EQ(client.status, "503");
  EXPECT_EQ(up.requests().size(), 1u);
  EXPECT_EQ(Count("meshlet_upstream_rq_retry_skipped_total", {{"reason", "body_too_large"}}), 1u);
}

TEST_F(RouterRetryTest, RouteTimeoutIncludesRetriesAndBackoff) {
  FakeUpstream& up = AddUpstream();
  up.auto_respond = false;  // never answers
  RouteAction action = Retrying(10);
  action.timeout = milliseconds(200);
  // Two 70 ms tries end by ~142 ms; the third then has less than 70 ms left, so it gets no
  // per-try timer of its own and the route timeout ends it (UT). With a per-try timeout that
  // divides the route timeout evenly, which timer fires first would be a race. On a loaded
  // machine a per-try timer may fire late, so that the second try already has less than 70 ms
  // left and is the one the route timeout ends: two or three tries, never more, and the route
  // timeout always ends the last one.
  action.retry_policy.per_try_timeout = milliseconds(70);
  Configure({up.address()}, action);
  const MonotonicTime start = RealClock::Get().Now();
  RecordingCallbacks& client = Send("GET");
  const Duration elapsed = RealClock::Get().Now() - start;
  EXPECT_EQ(client.status, "504");
  EXPECT_TRUE(client.info.HasFlag(ResponseFlag::kUpstreamRequestTimeout));
  EXPECT_GE(elapsed, milliseconds(195));
  EXPECT_LT(elapsed, milliseconds(1000));
  EXPECT_GE(up.requests().size(), 2u);
  EXPECT_LE(up.requests().size(), 3u);
  EXPECT_EQ(Count("meshlet_upstream_rq_timeout_total"), 1u);
  EXPECT_EQ(Count("meshlet_upstream_rq_retry_total", {{"reason", "per_try_timeout"}}),
            up.requests().size() - 1);
}

TEST_F(RouterRetryTest, SpentBudgetMeansNoRetry) {
  FakeUpstream& up = AddUpstream();
  up.auto_respond = false;
  up.on_request = [&](const FakeUpstream::Request& r) {
    if (r.ended) up.Respond(up.requests().size() - 1, 503);
  };
  budget_.budget_percent = 0;
  budget_.min_retries_per_second = 0;
  Configure({up.address()}, Retrying(2));
  RecordingCallbacks& client = Send("GET");
  EXPECT_EQ(client.status, "503");
  EXPECT_EQ(up.requests().size(), 1u);
  EXPECT_EQ(Count("meshlet_upstream_rq_retry_overflow_total", {{"limit", "budget"}}), 1u);
}

TEST_F(RouterRetryTest, ExpiredCallerDeadlineAnswersAtOnce) {
  FakeUpstream& up = AddUpstream();
  Configure({up.address()}, Retrying(2));
  RecordingCallbacks& grpc =
      Send("POST", "", {{"content-type", "application/grpc"}, {"grpc-timeout", "0m"}});
  EXPECT_EQ(grpc.status, "200");
  EXPECT_EQ(grpc.grpc_status, "4");  // DEADLINE_EXCEEDED
  RecordingCallbacks& http = Send("GET", "", {{"x-meshlet-deadline", "0"}});
  EXPECT_EQ(http.status, "504");
  EXPECT_EQ(up.requests().size(), 0u);
}

TEST_F(RouterRetryTest, DeadlineHeaderCarriesTheAttemptsTime) {
  FakeUpstream& up = AddUpstream();
  RouteAction action = Retrying(2);
  action.timeout = milliseconds(5000);
  Configure({up.address()}, action);
  RecordingCallbacks& client = Send("GET", "", {{"x-meshlet-deadline", "1500"}});
  EXPECT_EQ(client.status, "200");
  const http::HeaderMap* sent = routers_.back()->request_headers();
  ASSERT_NE(sent, nullptr);
  int64_t remaining = 0;
  ASSERT_TRUE(absl::SimpleAtoi(sent->Get("x-meshlet-deadline").value_or(""), &remaining));
  EXPECT_LE(remaining, 1500);
  EXPECT_GT(remaining, 1000);
  // Without a caller deadline, the route timeout travels.
  Send("GET");
  ASSERT_TRUE(absl::SimpleAtoi(
      routers_.back()->request_headers()->Get("x-meshlet-deadline").value_or(""), &remaining));
  EXPECT_LE(remaining, 5000);
  EXPECT_GT(remaining, 4000);
}

// The deadline header says what the attempt has left when its headers leave, not when it began:
// time spent waiting for a connection is gone too. Otherwise the next hop, believing it has more
// time than this one, would time out after it rather than just before it.
TEST_F(RouterRetryTest, DeadlineHeaderLeavesOutTheWaitForAConnection) {
  FakeUpstream& up = AddUpstream();
  up.auto_respond = false;
  RouteAction action = Retrying(0);
  action.timeout = milliseconds(1000);
  Configure({up.address()}, action);
  // One connection: a second request waits for the first to be answered.
  AddCluster("c", {up.address()}, {.max_connections = 1, .max_retries = 100});
  auto get = [](absl::string_view path) {
    auto headers = std::make_unique<http::HeaderMap>();
    headers->Add(":method", "GET");
    headers->Add(":path", path);
    headers->Add(":authority", "test");
    headers->Add(":scheme", "http");
    return headers;
  };
  RecordingCallbacks& first = NewStream();
  Start(first, get("/first"), /*end_stream=*/true);
  ASSERT_TRUE(loop_.RunUntil([&] { return up.unanswered() == 1; }, std::chrono::seconds(5)));
  RecordingCallbacks& second = NewStream();
  Start(second, get("/second"), /*end_stream=*/true);
  const Router& waiting = *routers_.back();
  loop_.RunUntil([] { return false; }, milliseconds(300));
  EXPECT_EQ(up.requests().size(), 1u) << "the second request did not wait for the connection";
  up.Respond(0);
  ASSERT_TRUE(loop_.RunUntil([&] { return up.unanswered() == 1 && first.done(); },
                             std::chrono::seconds(5)));
  up.Respond(1);
  ASSERT_TRUE(loop_.RunUntil([&] { return second.done(); }, std::chrono::seconds(5)));
  EXPECT_EQ(second.status, "200");
  int64_t sent = 0;
  ASSERT_TRUE(
      absl::SimpleAtoi(waiting.request_headers()->Get("x-meshlet-deadline").value_or(""), &sent));
  // 1000 ms, less the 300 ms or more it waited (and NextHopBudget's margin).
  EXPECT_LE(sent, 700);
  EXPECT_GT(sent, 0);
}

TEST_F(RouterRetryTest, MalformedCallerDeadlineIsCountedAndReplaced) {
  FakeUpstream& up = AddUpstream();
  RouteAction action = Retrying(2);
  action.timeout = milliseconds(3000);
  Configure({up.address()}, action);
  RecordingCallbacks& client = Send("GET", "", {{"x-meshlet-deadline", "soon"}});
  EXPECT_EQ(client.status, "200");
  EXPECT_EQ(Count("meshlet_upstream_rq_deadline_header_invalid_total",
                  {{"header", "x-meshlet-deadline"}}),
            1u);
  int64_t remaining = 0;
  ASSERT_TRUE(absl::SimpleAtoi(
      routers_.back()->request_headers()->Get("x-meshlet-deadline").value_or(""), &remaining));
  EXPECT_LE(remaining, 3000);
  EXPECT_GT(remaining, 2000);
}

TEST_F(RouterRetryTest, RetryMachineryAddsNoAllocation) {
  // A request that succeeds at once costs the same allocations with the default retry policy as
  // on a route without retries (same connection, same header sizes).
  FakeUpstream& up = AddUpstream();
  RouteAction no_retries = Retrying(0);
  Configure({up.address()}, RouteAction(), &no_retries);  // "/b/": no retries, "/": defaults
  callbacks_.reserve(64);
  routers_.reserve(64);
  for (int i = 0; i < 4; ++i) {  // warm up: connection, pools, header arenas, stats cells
    Send("GET", "", {}, "/a/x");
    Send("GET", "", {}, "/b/x");
  }
  int with_retries = INT32_MAX;
  int without = INT32_MAX;
  for (int i = 0; i < 8; ++i) {
    for (const char* path : {"/a/x", "/b/x"}) {
      AllocationScope allocations;
      RecordingCallbacks& client = Send("GET", "", {}, path);
      const int count = static_cast<int>(allocations.count());
      ASSERT_EQ(client.status, "200");
      int& best = path[1] == 'a' ? with_retries : without;
      best = std::min(best, count);
    }
  }
  EXPECT_GT(without, 0);  // the counter is live: a request allocates (router, headers, ...)
  EXPECT_EQ(with_retries, without);
}

TEST_F(RouterRetryTest, AbandonDuringBackoffStopsEverything) {
  FakeUpstream& up = AddUpstream();
  up.auto_respond = false;
  up.on_request = [&](const FakeUpstream::Request& r) {
    if (r.ended) up.Respond(up.requests().size() - 1, 503);
  };
  RouteAction action = Retrying(2);
  action.retry_policy.backoff.base = milliseconds(200);
  action.retry_policy.backoff.cap = milliseconds(200);
  Configure({up.address()}, action);
  RecordingCallbacks& client = NewStream();
  auto headers = std::make_unique<http::HeaderMap>();
  headers->Add(":method", "GET");
  headers->Add(":path", "/x");
  headers->Add(":authority", "test");
  Start(client, std::move(headers), true);
  loop_.RunUntil([&] { return up.requests().size() == 1 && up.unanswered() == 0; },
                 std::chrono::seconds(5));
  loop_.RunUntil([] { return false; }, milliseconds(20));  // the 503 arrives: backoff starts
  routers_.back()->Abandon();
  loop_.RunUntil([] { return false; }, milliseconds(400));
  EXPECT_EQ(up.requests().size(), 1u);
  EXPECT_EQ(client.headers_sent, 0);
  EXPECT_EQ(client.read_disables, 0);
}

}  // namespace
}  // namespace meshlet::sidecar::router

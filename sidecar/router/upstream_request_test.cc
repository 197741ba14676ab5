// One attempt of the router (upstream_request.h, tcp_upstream.h) against FakeUpstream servers
// and the fake line codec: the pool's overflow answered, a withdrawn attempt's response dropped,
// the per-try timeout (over when the response headers come), each attempt's client span, and
// CONNECT's TCP upstream.

#include "sidecar/router/upstream_request.h"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/clock.h"
#include "gtest/gtest.h"
#include "sidecar/router/router.h"
#include "sidecar/router/router_test_util.h"
#include "sidecar/tracing/recording_span_sink.h"
#include "sidecar/tracing/tracer.h"

namespace meshlet::sidecar::router {
namespace {

using UpstreamRequestTest = RouterTest;

TEST_F(UpstreamRequestTest, OverflowIs503WithTheOverloadHeader) {
  FakeUpstream& up = AddUpstream();
  up.auto_respond = false;
  AddCluster(
      "c", {up.address()},
      {.max_connections = 1, .max_pending_requests = 1, .max_requests = 1, .max_retries = 0});
  table_ = Table({Routed("r", "/", ToCluster("c"))});
  // The first request takes the only request slot and waits for its answer.
  RecordingCallbacks& first = NewStream();
  auto headers = std::make_unique<http::HeaderMap>();
  headers->Add(":method", "GET");
  headers->Add(":path", "/x");
  headers->Add(":authority", "test");
  Start(first, std::move(headers), true);
  loop_.RunUntil([&] { return up.requests().size() == 1; }, std::chrono::seconds(5));
  RecordingCallbacks& second = Send("GET");
  EXPECT_EQ(second.status, "503");
  EXPECT_EQ(second.body, "upstream overloaded\n");
  EXPECT_EQ(second.response_headers.Get("x-meshlet-overloaded"), "true");
  EXPECT_TRUE(second.info.HasFlag(ResponseFlag::kUpstreamOverflow));
  EXPECT_EQ(Count("meshlet_upstream_rq_overflow_total"), 1u);
  EXPECT_FALSE(first.done());
}

TEST_F(UpstreamRequestTest, ConnectOpensATunnelToAClusterHost) {
  FakeUpstream& up = AddUpstream();
  AddCluster("c", {up.address()});
  table_ = Table({Routed("r", "/", ToCluster("c"))});
  RecordingCallbacks& client = NewStream();
  auto headers = std::make_unique<http::HeaderMap>();
  headers->Add(":method", "CONNECT");
  headers->Add(":authority", "test:443");
  Start(client, std::move(headers), false);
  loop_.RunUntil([&] { return client.headers_sent > 0; }, std::chrono::seconds(5));
  EXPECT_EQ(client.status, "200");
  EXPECT_EQ(client.info.tunnel, stream::TunnelKind::kConnect);
  EXPECT_TRUE(routers_.back()->tunnel());
  EXPECT_FALSE(client.request_headers->Has(":path"));  // matched as "/", sent without
  routers_.back()->Abandon();
}

TEST_F(UpstreamRequestTest, DiscardedResponseBodyNeverReachesTheClient) {
  // The retriable response's headers and body arrive in one read: once the router resets the
  // attempt on the headers, the rest of that response must go nowhere.
  FakeUpstream& up = AddUpstream();
  up.auto_respond = false;
  up.on_request = [&](const FakeUpstream::Request& r) {
    if (!r.ended) return;
    const bool first = up.requests().size() == 1;
    up.Send(r.connection, absl::StrCat("RESP ", r.id, first ? " 503" : " 200", "\nBODY ", r.id,
                                       first ? " discarded" : " kept", "\nDONE ", r.id, "\n"));
  };
  Configure({up.address()}, Retrying(1));
  RecordingCallbacks& client = Send("GET");
  EXPECT_EQ(client.status, "200");
  EXPECT_EQ(client.body, "kept");
  EXPECT_EQ(client.headers_sent, 1);
}

TEST_F(UpstreamRequestTest, PerTryTimeoutAbandonsASlowAttempt) {
  FakeUpstream& up = AddUpstream();
  up.auto_respond = false;
  up.on_request = [&](const FakeUpstream::Request& r) {
    if (r.ended && up.requests().size() == 2) up.Respond(1, 200);  // the first one never answers
  };
  RouteAction action = Retrying(2);
  action.retry_policy.per_try_timeout = milliseconds(50);
  Configure({up.address()}, action);
  RecordingCallbacks& client = Send("GET");
  EXPECT_EQ(client.status, "200");
  EXPECT_TRUE(client.info.HasFlag(ResponseFlag::kUpstreamPerTryTimeout));
  EXPECT_EQ(Count("meshlet_upstream_rq_per_try_timeout_total"), 1u);
  EXPECT_EQ(Count("meshlet_upstream_rq_retry_total", {{"reason", "per_try_timeout"}}), 1u);
}

TEST_F(UpstreamRequestTest, EachAttemptIsItsOwnClientSpan) {
  FakeUpstream& up = AddUpstream();
  up.auto_respond = false;
  up.on_request = [&](const FakeUpstream::Request& r) {
    if (!r.ended) return;
    up.Respond(up.requests().size() - 1, up.requests().size() == 1 ? 503 : 200);
  };
  Configure({up.address()}, Retrying(1));
  tracing::RecordingSpanSink sink;
  tracing::TracingConfig config;
  config.sampling_percent = 100;
  tracing::Tracer tracer(config, "svc", sink, tracing::TracerStats::Create(*shard_), random_,
                         RealClock::Get());
  context_.tracer = &tracer;
  tracing::RequestTrace trace;
  trace.trace_id = tracing::TraceId{1, 2};
  trace.server_span_id = 7;
  trace.sampled = true;
  next_trace_ = trace;
  RecordingCallbacks& client = Send("GET");
  EXPECT_EQ(client.status, "200");
  EXPECT_EQ(client.info.trace.attempts, 2u);
  const std::vector<tracing::Span>& spans = sink.spans;
  ASSERT_EQ(spans.size(), 2u);
  for (size_t i = 0; i < spans.size(); ++i) {
    EXPECT_EQ(spans[i].kind, tracing::SpanKind::kClient);
    EXPECT_EQ(spans[i].trace_id, (tracing::TraceId{1, 2}));
    EXPECT_EQ(spans[i].parent_span_id, 7u);
    EXPECT_EQ(spans[i].retry_attempt, i + 1);
    EXPECT_EQ(spans[i].cluster, "c");
    EXPECT_EQ(spans[i].route, "r");
    EXPECT_EQ(spans[i].endpoint, up.address().ToString());
    EXPECT_GE(spans[i].upstream_ready_us, 0);
  }
  EXPECT_EQ(spans[0].status_code, 503);
  EXPECT_TRUE(spans[0].error);
  EXPECT_EQ(spans[1].status_code, 200);
  EXPECT_FALSE(spans[1].error);
  routers_.clear();
  loop_.RunUntilIdle();
  context_.tracer = nullptr;
}

// The per-try timeout covers the wait for the response headers only: a response whose body comes
// well after it still reaches the client whole.
TEST_F(UpstreamRequestTest, PerTryTimeoutEndsWithTheResponseHeaders) {
  FakeUpstream& up = AddUpstream();
  up.auto_respond = false;
  up.on_request = [&](const FakeUpstream::Request& r) {
    if (r.ended) up.Send(r.connection, absl::StrCat("RESP ", r.id, " 200\n"));
  };
  RouteAction action = Retrying(1);
  action.retry_policy.per_try_timeout = milliseconds(50);
  Configure({up.address()}, action);
  RecordingCallbacks& client = NewStream();
  auto headers = std::make_unique<http::HeaderMap>();
  headers->Add(":method", "GET");
  headers->Add(":path", "/x");
  headers->Add(":authority", "test");
  Start(client, std::move(headers), true);
  ASSERT_TRUE(loop_.RunUntil([&] { return client.headers_sent == 1; }, std::chrono::seconds(5)));
  // Three per-try timeouts later, the body and the end.
  loop_.RunUntil([] { return false; }, milliseconds(150));
  EXPECT_FALSE(client.done());
  up.Send(up.requests()[0].connection,
          absl::StrCat("BODY ", up.requests()[0].id, " late\nDONE ", up.requests()[0].id, "\n"));
  ASSERT_TRUE(loop_.RunUntil([&] { return client.done(); }, std::chrono::seconds(5)));
  EXPECT_TRUE(client.complete);
  EXPECT_FALSE(client.reset);
  EXPECT_EQ(client.status, "200");
  EXPECT_EQ(client.body, "late");
  EXPECT_FALSE(client.info.HasFlag(ResponseFlag::kUpstreamPerTryTimeout));
  EXPECT_EQ(Count("meshlet_upstream_rq_per_try_timeout_total"), 0u);
  EXPECT_EQ(up.requests().size(), 1u);
}

}  // namespace
}  // namespace meshlet::sidecar::router

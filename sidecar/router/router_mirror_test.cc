// Request mirroring through the router (mirror.h): what a mirror cluster receives, that the
// original request never waits for or fails with its copy, the share of requests mirrored, and
// the limits (body size, copies in flight); against fake upstreams.
#include <chrono>
#include <string>

#include "gtest/gtest.h"
#include "sidecar/router/router_test_util.h"

namespace meshlet::sidecar::router {
namespace {

class RouterMirrorTest : public RouterTest {
 protected:
  // Route "r" to cluster "c" at `up`, mirrored to cluster "m" at `mirror` (share `fraction`).
  void ConfigureMirror(FakeUpstream& up, const net::Address& mirror, double fraction = 1.0) {
    AddCluster("c", {up.address()});
    AddCluster("m", {mirror});
    RouteAction action = ToCluster("c");
    action.extras.mut().mirrors = {{"m", fraction}};
    action.extras.mut().prefix_rewrite = "/v2";
    table_ = Table({Routed("r", "/v1", action)});
  }

  uint64_t Mirrored(absl::string_view name, LabelSet labels = {}) {
    return Count(name, std::move(labels), "m");
  }
};

TEST_F(RouterMirrorTest, MirrorGetsTheRequestAndTheOriginalDoesNotWaitForIt) {
  FakeUpstream& up = AddUpstream();
  FakeUpstream& shadow = AddUpstream();
  shadow.auto_respond = false;  // a mirror that never answers
  ConfigureMirror(up, shadow.address());
  Mirrors& mirrors = EnableMirrors(8);
  const MonotonicTime start = RealClock::Get().Now();
  RecordingCallbacks& client = Send("POST", "hello", {{"x-tenant", "a"}}, "/v1/items?q=1");
  EXPECT_EQ(client.status, "200");
  EXPECT_TRUE(client.complete);
  EXPECT_LT(RealClock::Get().Now() - start, std::chrono::seconds(1));
  ASSERT_EQ(up.requests().size(), 1u);
  EXPECT_EQ(up.requests()[0].path, "/v2/items?q=1");
  EXPECT_EQ(up.requests()[0].body_bytes, 5u);

  loop_.RunUntil([&] { return !shadow.requests().empty() && shadow.requests()[0].ended; },
                 std::chrono::seconds(5));
  ASSERT_EQ(shadow.requests().size(), 1u);
  // The copy is the request as it went upstream (after the route's rewrite), body included.
  EXPECT_EQ(shadow.requests()[0].path, "/v2/items?q=1");
  EXPECT_EQ(shadow.requests()[0].body_bytes, 5u);
  EXPECT_TRUE(shadow.requests()[0].ended);
  EXPECT_EQ(Mirrored("meshlet_upstream_rq_mirror_total"), 1u);
  EXPECT_EQ(mirrors.in_flight(), 1u);

  // Its answer is dropped; the slot is given back.
  shadow.Respond(0, 200);
  loop_.RunUntil([&] { return mirrors.in_flight() == 0; }, std::chrono::seconds(5));
  EXPECT_EQ(mirrors.in_flight(), 0u);
  EXPECT_EQ(Mirrored("meshlet_upstream_rq_mirror_failed_total"), 0u);
  EXPECT_EQ(client.body, "");
}

TEST_F(RouterMirrorTest, MirrorDownOrFailingNeverReachesTheOriginal) {
  FakeUpstream& up = AddUpstream();
  FakeUpstream& shadow = AddUpstream();
  const net::Address down = shadow.address();
  shadow.StopListening();  // connects are refused
  ConfigureMirror(up, down);
  Mirrors& mirrors = EnableMirrors(8);
  RecordingCallbacks& client = Send("GET", "", {}, "/v1/a");
  EXPECT_EQ(client.status, "200");
  EXPECT_EQ(client.local_replies, 0);
  EXPECT_EQ(client.info.response_flags, 0u);
  loop_.RunUntil([&] { return mirrors.in_flight() == 0; }, std::chrono::seconds(5));
  EXPECT_EQ(Mirrored("meshlet_upstream_rq_mirror_total"), 1u);
  EXPECT_EQ(Mirrored("meshlet_upstream_rq_mirror_failed_total"), 1u);
  EXPECT_EQ(Count("meshlet_upstream_rq_connect_fail_total"), 0u);

  // A mirror answering 503 is counted as failed; the client still gets the original's answer.
  FakeUpstream& failing = AddUpstream();
  failing.auto_respond = false;
  failing.on_request = [&](const FakeUpstream::Request& request) {
    if (request.ended) failing.Respond(failing.requests().size() - 1, 503);
  };
  ConfigureMirror(up, failing.address());
  RecordingCallbacks& second = Send("GET", "", {}, "/v1/b");
  EXPECT_EQ(second.status, "200");
  loop_.RunUntil([&] { return mirrors.in_flight() == 0; }, std::chrono::seconds(5));
  EXPECT_EQ(Mirrored("meshlet_upstream_rq_mirror_failed_total"), 2u);
}

TEST_F(RouterMirrorTest, MirrorResetAfterTheOriginalEndedIsCounted) {
  FakeUpstream& up = AddUpstream();
  FakeUpstream& shadow = AddUpstream();
  shadow.auto_respond = false;
  ConfigureMirror(up, shadow.address());
  Mirrors& mirrors = EnableMirrors(8);
  RecordingCallbacks& client = Send("GET", "", {}, "/v1/a");
  EXPECT_EQ(client.status, "200");
  loop_.RunUntil([&] { return !shadow.requests().empty(); }, std::chrono::seconds(5));
  // The stream this request ran on is gone; the mirror's connection drops.
  routers_.clear();
  shadow.Close(0);
  loop_.RunUntil([&] { return mirrors.in_flight() == 0; }, std::chrono::seconds(5));
  EXPECT_EQ(mirrors.in_flight(), 0u);
  EXPECT_EQ(Mirrored("meshlet_upstream_rq_mirror_failed_total"), 1u);
}

TEST_F(RouterMirrorTest, ShareOfRequestsMirroredFollowsTheDraw) {
  FakeUpstream& up = AddUpstream();
  FakeUpstream& shadow = AddUpstream();
  ConfigureMirror(up, shadow.address(), 0.25);
  EnableMirrors(8);
  random_ = FakeRandom();
  random_.PushDouble(0.5);  // above the share: not mirrored
  EXPECT_EQ(Send("GET", "", {}, "/v1/a").status, "200");
  random_.PushDouble(0.1);  // below it: mirrored
  EXPECT_EQ(Send("GET", "", {}, "/v1/b").status, "200");
  loop_.RunUntil([&] { return shadow.requests().size() == 1 && shadow.requests()[0].ended; },
                 std::chrono::seconds(5));
  ASSERT_EQ(shadow.requests().size(), 1u);
  EXPECT_EQ(shadow.requests()[0].path, "/v2/b");
  EXPECT_EQ(Mirrored("meshlet_upstream_rq_mirror_total"), 1u);
}

TEST_F(RouterMirrorTest, BodyOverTheReplayLimitIsNotMirrored) {
  FakeUpstream& up = AddUpstream();
  FakeUpstream& shadow = AddUpstream();
  ConfigureMirror(up, shadow.address());
  Mirrors& mirrors = EnableMirrors(8);
  RecordingCallbacks& client = NewStream();
  client.retry_buffer_limit = 4;
  auto headers = std::make_unique<http::HeaderMap>(http::HeaderMap{
      {":method", "POST"}, {":path", "/v1/big"}, {":authority", "t"}, {":scheme", "http"}});
  Start(client, std::move(headers), /*end_stream=*/false);
  net::Buffer first("abc");
  routers_.back()->DecodeData(first, /*end_stream=*/false);
  net::Buffer second("defg");
  routers_.back()->DecodeData(second, /*end_stream=*/true);
  loop_.RunUntil([&] { return client.done(); }, std::chrono::seconds(5));
  EXPECT_EQ(client.status, "200");
  ASSERT_EQ(up.requests().size(), 1u);
  EXPECT_EQ(up.requests()[0].body_bytes, 7u);
  EXPECT_EQ(Mirrored("meshlet_upstream_rq_mirror_skipped_total", {{"reason", "body_too_large"}}),
            1u);
  EXPECT_EQ(Mirrored("meshlet_upstream_rq_mirror_total"), 0u);
  EXPECT_EQ(mirrors.in_flight(), 0u);
  EXPECT_TRUE(shadow.requests().empty());
}

TEST_F(RouterMirrorTest, CopiesInFlightAreBoundedPerWorker) {
  FakeUpstream& up = AddUpstream();
  FakeUpstream& shadow = AddUpstream();
  shadow.auto_respond = false;
  ConfigureMirror(up, shadow.address());
  Mirrors& mirrors = EnableMirrors(1);
  EXPECT_EQ(Send("GET", "", {}, "/v1/a").status, "200");
  EXPECT_EQ(Send("GET", "", {}, "/v1/b").status, "200");  // the first copy still out
  EXPECT_EQ(Mirrored("meshlet_upstream_rq_mirror_total"), 1u);
  EXPECT_EQ(Mirrored("meshlet_upstream_rq_mirror_skipped_total", {{"reason", "in_flight_limit"}}),
            1u);
  EXPECT_EQ(mirrors.in_flight(), 1u);
  // A request abandoned before its body ended gives its slot back uncopied.
  loop_.RunUntil([&] { return shadow.unanswered() == 1; }, std::chrono::seconds(5));
  shadow.Respond(0);
  loop_.RunUntil([&] { return mirrors.in_flight() == 0; }, std::chrono::seconds(5));
  RecordingCallbacks& partial = NewStream();
  auto headers = std::make_unique<http::HeaderMap>(http::HeaderMap{
      {":method", "POST"}, {":path", "/v1/c"}, {":authority", "t"}, {":scheme", "http"}});
  Start(partial, std::move(headers), /*end_stream=*/false);
  EXPECT_EQ(mirrors.in_flight(), 1u);
  routers_.back()->Abandon();
  EXPECT_EQ(mirrors.in_flight(), 0u);
  EXPECT_EQ(Mirrored("meshlet_upstream_rq_mirror_skipped_total", {{"reason", "incomplete"}}), 1u);
}

TEST_F(RouterMirrorTest, MissingMirrorClusterIsCountedOnTheRoutesCluster) {
  FakeUpstream& up = AddUpstream();
  AddCluster("c", {up.address()});
  RouteAction action = ToCluster("c");
  action.extras.mut().mirrors = {{"gone", 1.0}};
  table_ = Table({Routed("r", "/", action)});
  EnableMirrors(8);
  EXPECT_EQ(Send("GET").status, "200");
  EXPECT_EQ(Count("meshlet_upstream_rq_mirror_skipped_total", {{"reason", "no_cluster"}}), 1u);
}

}  // namespace
}  // namespace meshlet::sidecar::router

// Requests waiting for their host's lookup (ADR 0086; active_stream.h): on a listener with
// on_demand.hosts, a request only the route table's "*" host answers waits for the worker's
// OnDemandWaiters, then is matched again in the snapshot the worker runs when the answer comes,
// over HTTP/1.1 and HTTP/2, with its body held meanwhile; any other answer, or none in time, leaves
// it to the "*" host as without on_demand.

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "sidecar/listener/active_stream.h"
#include "sidecar/listener/http_connection_manager_test_util.h"
#include "sidecar/listener/on_demand_waiters.h"
#include "sidecar/route/usage_cell.h"

namespace meshlet::sidecar::listener {
namespace {

using config::LookupOutcome;

class HostLookupTest : public HttpConnectionManagerTest {
 protected:
  void SetUp() override {
    HttpConnectionManagerTest::SetUp();
    listener_config_.on_demand = config::OnDemandConfig{};
    listener_config_.on_demand->hosts = true;
    listener_config_.on_demand->timeout = seconds(5);
    waiters_ = std::make_unique<OnDemandWaiters>(
        loop_, *shard_, OnDemandWaiters::Options{.request = [this](std::string key) {
          requested_.push_back(std::move(key));
        }});
    context_.on_demand = waiters_.get();
  }

  void TearDown() override {
    HttpConnectionManagerTest::TearDown();
    context_.on_demand = nullptr;
    waiters_.reset();
  }

  // The fixture's snapshot with one more virtual host, `host`, whose every request gets a direct
  // 200 with `body`: what the control plane's answer to the lookup brings.
  // `usage`: the host's usage cell, as a ServiceRoute's host has.
  std::shared_ptr<const config::Snapshot> WithHost(
      const std::string& host, const std::string& body,
      std::shared_ptr<route::UsageCell> usage = nullptr) {
    auto snapshot = std::make_shared<config::Snapshot>(*context_.snapshot);
    route::RouteConfig routes = context_.snapshot->route_tables.at("routes")->config();
    route::VirtualHostConfig vhost;
    vhost.name = host;
    vhost.domains = {host};
    route::RouteEntry entry;
    entry.name = "found";
    entry.action = route::DirectResponseAction{200, body};
    vhost.routes.push_back(entry);
    vhost.usage = std::move(usage);
    routes.virtual_hosts.push_back(vhost);
    auto table = route::RouteTable::Create(routes);
    EXPECT_TRUE(table.ok()) << table.status();
    snapshot->route_tables["routes"] = std::move(*table);
    return snapshot;
  }

  // What the main thread does on an answer: the snapshot first, then the answer.
  void Answer(const std::string& key, LookupOutcome outcome,
              std::shared_ptr<const config::Snapshot> snapshot = nullptr) {
    if (snapshot != nullptr) context_.snapshot = std::move(snapshot);
    waiters_->OnLookupAnswers({{key, outcome}});
  }

  uint64_t Waits(absl::string_view result) {
    return Counter("meshlet_on_demand_waits_total",
                   {{"kind", "host"}, {"result", std::string(result)}});
  }

  void RunFor(Duration d) {
    loop_.RunUntil([] { return false; }, d);
  }

  std::unique_ptr<OnDemandWaiters> waiters_;
  std::vector<std::string> requested_;
};

TEST_F(HostLookupTest, FirstRequestToAnUndiscoveredHostWaitsAndSucceeds) {
  net::testing::RecordingCallbacks client;
  auto c = Connect(client);
  c->Write("GET /reviews/1 HTTP/1.1\r\nhost: Reviews.Shop:9080\r\nconnection: close\r\n\r\n");
  ASSERT_TRUE(loop_.RunUntil([&] { return !requested_.empty(); }, seconds(5)));
  EXPECT_EQ(requested_, std::vector<std::string>{"host:reviews.shop:9080"});
  RunFor(milliseconds(50));
  EXPECT_EQ(client.received, "") << "answered before the lookup did";

  Answer("host:reviews.shop:9080", LookupOutcome::kFound, WithHost("reviews.shop:9080", "found"));
  ASSERT_TRUE(loop_.RunUntil([&] { return client.end_stream || client.closes > 0; }, seconds(5)));
  EXPECT_TRUE(absl::StartsWith(client.received, "HTTP/1.1 200")) << client.received;
  EXPECT_TRUE(absl::EndsWith(client.received, "found")) << client.received;
  EXPECT_EQ(Waits("found"), 1u);
}

// Unused destinations age out (ADR 0086): every request a ServiceRoute's host answers, known
// at once or after the lookup, marks the host used.
TEST_F(HostLookupTest, RequestsTouchTheUsageCellOfTheHostTheyMatch) {
  auto reviews = std::make_shared<route::UsageCell>();
  net::testing::RecordingCallbacks client;
  auto c = Connect(client);
  c->Write("GET / HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n");
  ASSERT_TRUE(loop_.RunUntil([&] { return !requested_.empty(); }, seconds(5)));
  EXPECT_FALSE(reviews->last_use().has_value());
  const MonotonicTime before = loop_.Now();
  Answer("host:reviews", LookupOutcome::kFound, WithHost("reviews", "found", reviews));
  ASSERT_TRUE(loop_.RunUntil([&] { return client.end_stream || client.closes > 0; }, seconds(5)));
  EXPECT_TRUE(absl::EndsWith(client.received, "found")) << client.received;
  ASSERT_TRUE(reviews->last_use().has_value());
  EXPECT_GT(*reviews->last_use(), before);

  // A host known from the start: touched on its match.
  auto ratings = std::make_shared<route::UsageCell>();
  context_.snapshot = WithHost("ratings", "known", ratings);
  const std::string response =
      Exchange("GET / HTTP/1.1\r\nhost: ratings\r\nconnection: close\r\n\r\n").first;
  EXPECT_TRUE(absl::EndsWith(response, "known")) << response;
  ASSERT_TRUE(ratings->last_use().has_value());
  EXPECT_GT(*ratings->last_use(), before);
}

TEST_F(HostLookupTest, AKnownHostNeverWaits) {
  context_.snapshot = WithHost("reviews", "known");
  const std::string response =
      Exchange("GET / HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n").first;
  EXPECT_TRUE(absl::EndsWith(response, "known")) << response;
  EXPECT_TRUE(requested_.empty());
}

TEST_F(HostLookupTest, NotFoundLeavesTheRequestToTheCatchAll) {
  net::testing::RecordingCallbacks client;
  auto c = Connect(client);
  c->Write("GET /direct HTTP/1.1\r\nhost: nowhere\r\nconnection: close\r\n\r\n");
  ASSERT_TRUE(loop_.RunUntil([&] { return !requested_.empty(); }, seconds(5)));
  Answer("host:nowhere", LookupOutcome::kNotFound);
  ASSERT_TRUE(loop_.RunUntil([&] { return client.end_stream || client.closes > 0; }, seconds(5)));
  // The "*" host's own route, as without on_demand.
  EXPECT_TRUE(absl::EndsWith(client.received, "ok")) << client.received;
  EXPECT_EQ(Waits("not_found"), 1u);
  // Known missing now: the next request is answered at once, without asking again.
  const std::string again =
      Exchange("GET /direct HTTP/1.1\r\nhost: nowhere\r\nconnection: close\r\n\r\n").first;
  EXPECT_TRUE(absl::EndsWith(again, "ok")) << again;
  EXPECT_EQ(requested_.size(), 1u);
}

TEST_F(HostLookupTest, NoAnswerInTimeLeavesTheRequestToTheCatchAll) {
  listener_config_.on_demand->timeout = milliseconds(50);
  const auto [response, took] =
      Exchange("GET /missing HTTP/1.1\r\nhost: slow\r\nconnection: close\r\n\r\n");
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 404")) << response;
  // The loop's clock counts whole milliseconds from the start of its iteration, so a 50 ms timer
  // may end up to 1 ms before a steady clock read in mid-iteration says 50 ms have passed.
  EXPECT_GE(took, milliseconds(49));
  EXPECT_EQ(Waits("timeout"), 1u);
}

TEST_F(HostLookupTest, TheBodyIsHeldWhileTheRequestWaits) {
  net::testing::RecordingCallbacks client;
  auto c = Connect(client);
  c->Write(
      "POST /upload HTTP/1.1\r\nhost: store\r\ncontent-length: 10\r\n"
      "connection: close\r\n\r\n01234");
  ASSERT_TRUE(loop_.RunUntil([&] { return !requested_.empty(); }, seconds(5)));
  c->Write("56789");
  RunFor(milliseconds(20));
  Answer("host:store", LookupOutcome::kFound, WithHost("store", "stored"));
  ASSERT_TRUE(loop_.RunUntil([&] { return client.end_stream || client.closes > 0; }, seconds(5)));
  EXPECT_TRUE(absl::EndsWith(client.received, "stored")) << client.received;
}

TEST_F(HostLookupTest, TwoHttp2StreamsForOneHostAskOnceAndBothGoOn) {
  hcm_options_.protocol = http::Protocol::kHttp2;
  net::testing::RecordingCallbacks client;
  auto c = Connect(client);
  // :authority "x" (kH2RequestStart) on streams 1 and 3.
  c->Write(kH2Preface +
           H2Frame(kH2Headers, kH2EndHeaders | kH2EndStream, 1, kH2RequestStart + H2Path("/a")) +
           H2Frame(kH2Headers, kH2EndHeaders | kH2EndStream, 3, kH2RequestStart + H2Path("/b")));
  ASSERT_TRUE(loop_.RunUntil([&] { return waiters_->waiting() == 2; }, seconds(5)));
  EXPECT_EQ(requested_, std::vector<std::string>{"host:x"});
  Answer("host:x", LookupOutcome::kFound, WithHost("x", "found"));
  ASSERT_TRUE(loop_.RunUntil(
      [&] {
        int ended = 0;
        for (const H2ReceivedFrame& f : H2Frames(client.received)) {
          ended += f.type == kH2Data && (f.flags & kH2EndStream) != 0;
        }
        return ended == 2;
      },
      seconds(5)))
      << client.received.size();
  EXPECT_EQ(Waits("found"), 2u);
}

TEST_F(HostLookupTest, AStreamResetWhileWaitingCancelsItsWait) {
  hcm_options_.protocol = http::Protocol::kHttp2;
  net::testing::RecordingCallbacks client;
  auto c = Connect(client);
  c->Write(kH2Preface +
           H2Frame(kH2Headers, kH2EndHeaders | kH2EndStream, 1, kH2RequestStart + H2Path("/a")));
  ASSERT_TRUE(loop_.RunUntil([&] { return waiters_->waiting() == 1; }, seconds(5)));
  c->Write(H2Frame(kH2RstStream, 0, 1, std::string("\0\0\0\x08", 4)));  // CANCEL
  ASSERT_TRUE(loop_.RunUntil([&] { return waiters_->waiting() == 0; }, seconds(5)));
  // A late answer wakes nothing.
  Answer("host:x", LookupOutcome::kFound, WithHost("x", "found"));
  RunFor(milliseconds(20));
  EXPECT_EQ(Waits("found"), 0u);
}

TEST_F(HostLookupTest, AListenerWithoutHostsOrAWorkerWithoutLookupsNeverWaits) {
  listener_config_.on_demand->hosts = false;
  std::string response =
      Exchange("GET /direct HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").first;
  EXPECT_TRUE(absl::EndsWith(response, "ok")) << response;
  listener_config_.on_demand->hosts = true;
  context_.on_demand = nullptr;
  response = Exchange("GET /direct HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").first;
  EXPECT_TRUE(absl::EndsWith(response, "ok")) << response;
  EXPECT_TRUE(requested_.empty());
}

}  // namespace
}  // namespace meshlet::sidecar::listener

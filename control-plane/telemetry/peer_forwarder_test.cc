#include "control-plane/telemetry/peer_forwarder.h"

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/event/loop.h"
#include "common/http/grpc/server.h"
#include "control-plane/store/fake_leased_keys.h"
#include "control-plane/telemetry/trace_ring.h"

namespace meshlet::controlplane::telemetry {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// Another replica's discovery port: records each ForwardBatch; answers at once unless `hold`.
class PeerServer {
 public:
  explicit PeerServer(event::Loop& loop) : server_(loop) {
    EXPECT_TRUE(server_
                    .RegisterMethod(kPeerForwardMethod,
                                    [this](std::shared_ptr<http::grpc::ServerCall> call) {
                                      authorization.push_back(std::string(
                                          call->metadata().Get("authorization").value_or("")));
                                      call->OnProtoMessage<peer::v1::ForwardBatch>(
                                          [this](peer::v1::ForwardBatch batch) {
                                            batches.push_back(std::move(batch));
                                          });
                                      call->OnHalfClose([this, call] {
                                        if (hold) {
                                          held.push_back(call);
                                          return;
                                        }
                                        call->SendProto(peer::v1::ForwardResponse());
                                        call->Finish(http::grpc::StatusCode::kOk);
                                      });
                                    })
                    .ok());
    EXPECT_TRUE(server_.Start(*net::Address::Parse("127.0.0.1:0")).ok());
  }
  std::string address() const { return server_.address().ToString(); }

  std::vector<peer::v1::ForwardBatch> batches;
  std::vector<std::string> authorization;
  bool hold = false;
  std::vector<std::shared_ptr<http::grpc::ServerCall>> held;

 private:
  http::grpc::Server server_;
};

std::string Record(const std::string& name, const std::string& address) {
  peer::v1::ReplicaRecord record;
  record.set_name(name);
  record.set_discovery_address(address);
  return record.SerializeAsString();
}

metrics::v1::MetricsReport Report(const std::string& node) {
  metrics::v1::MetricsReport report;
  report.set_node_id(node);
  report.set_instance(7);
  report.set_time_unix_nano(1'000'000'000);
  report.add_clusters()->set_cluster("outbound|8080||reviews.default");
  report.set_workload(node);
  metrics::v1::RouteRuleStats* route = report.add_routes();
  route->set_route("HTTPRoute/default/reviews");
  route->set_rule(1);
  route->set_service("reviews.default");
  route->mutable_success()->add_bucket(40);
  route->mutable_success()->add_count(3);
  return report;
}

SpanRecord Span(const std::string& id) {
  SpanRecord span;
  span.trace_id = std::string(32, 'a');
  span.span_id = id;
  span.name = "GET /";
  span.service = "frontend";
  span.start_unix_nanos = 1;
  span.end_unix_nanos = 2;
  return span;
}

class PeerForwarderTest : public ::testing::Test {
 protected:
  std::unique_ptr<PeerForwarder> Make(PeerForwarderOptions options = {}) {
    if (options.replica_name.empty()) options.replica_name = "cp-a";
    if (options.advertise_address.empty()) options.advertise_address = "127.0.0.1:1";
    if (options.interval == seconds(1)) options.interval = milliseconds(20);
    auto forwarder = std::make_unique<PeerForwarder>(loop_, a_, options, &stats_);
    forwarder->SetToken("secret");
    EXPECT_TRUE(forwarder->Start().ok());
    return forwarder;
  }
  bool RunUntil(absl::FunctionRef<bool()> done) { return loop_.RunUntil(done, seconds(10)); }

  event::Loop loop_;
  StatsRegistry stats_;
  FakeLeasedKeys keys_;
  FakeLeasedKeys::Replica a_{keys_, "lease-a"};
};

TEST_F(PeerForwarderTest, PublishesItselfAndSendsWhatItReceivedToEachOtherReplica) {
  PeerServer b(loop_), c(loop_);
  keys_.Put("lease-b", ReplicaKey("cp-b"), Record("cp-b", b.address()));
  std::unique_ptr<PeerForwarder> forwarder = Make();
  keys_.Put("lease-c", ReplicaKey("cp-c"), Record("cp-c", c.address()));
  loop_.RunUntilIdle();
  EXPECT_TRUE(keys_.Has("lease-a", "replica/cp-a"));
  ASSERT_EQ(forwarder->peers().size(), 2u);

  forwarder->AddReport(Report("fe-1"));
  forwarder->AddSpans({Span("0000000000000001"), Span("0000000000000002")});
  forwarder->AddReport(Report("fe-2"));
  ASSERT_TRUE(RunUntil([&] { return b.batches.size() == 1 && c.batches.size() == 1; }));
  for (PeerServer* peer : {&b, &c}) {
    const peer::v1::ForwardBatch& batch = peer->batches[0];
    EXPECT_EQ(batch.replica(), "cp-a");
    ASSERT_EQ(batch.reports_size(), 2);  // one batch for the interval
    EXPECT_EQ(batch.reports(0).node_id(), "fe-1");
    EXPECT_EQ(batch.reports(1).node_id(), "fe-2");
    // With the workload and route rules: replicas record what the receiving one did.
    EXPECT_EQ(batch.reports(1).workload(), "fe-2");
    ASSERT_EQ(batch.reports(1).routes_size(), 1);
    EXPECT_EQ(batch.reports(1).routes(0).route(), "HTTPRoute/default/reviews");
    EXPECT_EQ(batch.reports(1).routes(0).rule(), 1);
    EXPECT_EQ(batch.reports(1).routes(0).success().count(0), 3u);
    ASSERT_EQ(batch.span_batches_size(), 1);
    std::vector<SpanRecord> spans;
    ASSERT_TRUE(DecodeSpans(batch.span_batches(0), &spans));
    ASSERT_EQ(spans.size(), 2u);
    EXPECT_EQ(spans[1].span_id, "0000000000000002");
    EXPECT_EQ(peer->authorization[0], "Bearer secret");
  }
  ASSERT_TRUE(RunUntil([&] {
    for (const auto& peer : forwarder->peers()) {
      if (peer.sent != 1) return false;
    }
    return true;
  }));

  // A replica whose lease ran out is no longer sent to.
  keys_.Expire("lease-c");
  loop_.RunUntilIdle();
  ASSERT_EQ(forwarder->peers().size(), 1u);
  EXPECT_EQ(forwarder->peers()[0].name, "cp-b");
  forwarder->AddReport(Report("fe-3"));
  ASSERT_TRUE(RunUntil([&] { return b.batches.size() == 2; }));
  EXPECT_EQ(c.batches.size(), 1u);

  // Gone from the store when it stops.
  forwarder.reset();
  EXPECT_FALSE(keys_.Has("lease-a", "replica/cp-a"));
}

TEST_F(PeerForwarderTest, AReplicaListedUnderTwoLeasesGetsOneCopy) {
  PeerServer b(loop_);
  // B restarted: its old lease has not run out yet, its new one is there too.
  keys_.Put("lease-b-old", ReplicaKey("cp-b"), Record("cp-b", b.address()));
  keys_.Put("lease-b-new", ReplicaKey("cp-b"), Record("cp-b", b.address()));
  std::unique_ptr<PeerForwarder> forwarder = Make();
  loop_.RunUntilIdle();
  ASSERT_EQ(forwarder->peers().size(), 2u);
  forwarder->AddReport(Report("fe-1"));
  ASSERT_TRUE(RunUntil([&] { return b.batches.size() == 1; }));
  loop_.RunUntil([] { return false; }, milliseconds(100));
  EXPECT_EQ(b.batches.size(), 1u);
}

// The count the per-identity limits are divided by: each replica once, itself included.
TEST_F(PeerForwarderTest, CountsTheLiveReplicasEachOnce) {
  std::unique_ptr<PeerForwarder> forwarder = Make({.advertise_address = "127.0.0.1:15012"});
  std::vector<size_t> changes;
  forwarder->OnReplicasChanged([&](size_t replicas) { changes.push_back(replicas); });
  EXPECT_EQ(forwarder->replicas(), 1u);
  keys_.Put("lease-b", ReplicaKey("cp-b"), Record("cp-b", "127.0.0.1:2"));
  loop_.RunUntilIdle();
  EXPECT_EQ(forwarder->replicas(), 2u);
  // B restarted on another address before its old lease ran out; C appears; A's own older
  // lease, at another address, is still there too.
  keys_.Put("lease-b-new", ReplicaKey("cp-b"), Record("cp-b", "127.0.0.1:3"));
  keys_.Put("lease-c", ReplicaKey("cp-c"), Record("cp-c", "127.0.0.1:4"));
  keys_.Put("lease-a-old", ReplicaKey("cp-a"), Record("cp-a", "127.0.0.1:5"));
  loop_.RunUntilIdle();
  EXPECT_EQ(forwarder->replicas(), 3u);
  keys_.Expire("lease-b");
  loop_.RunUntilIdle();
  EXPECT_EQ(forwarder->replicas(), 3u);
  keys_.Expire("lease-c");
  loop_.RunUntilIdle();
  EXPECT_EQ(forwarder->replicas(), 2u);
  EXPECT_EQ(changes, (std::vector<size_t>{2, 3, 2}));
}

TEST_F(PeerForwarderTest, NothingIsKeptWithoutPeersAndItselfIsNoPeer) {
  std::unique_ptr<PeerForwarder> forwarder = Make({.advertise_address = "127.0.0.1:15012"});
  // The same replica under an older lease that has not run out yet.
  keys_.Put("lease-old", ReplicaKey("cp-a"), Record("cp-a", "127.0.0.1:15012"));
  keys_.Put("lease-x", ReplicaKey("cp-x"), "not a record");
  loop_.RunUntilIdle();
  EXPECT_TRUE(forwarder->peers().empty());
  forwarder->AddReport(Report("fe-1"));
  loop_.RunUntil([] { return false; }, milliseconds(100));
  EXPECT_TRUE(forwarder->peers().empty());
}

TEST_F(PeerForwarderTest, ABusyPeerMissesBatchesAndAFullBatchGoesOutEarly) {
  PeerServer b(loop_);
  b.hold = true;
  keys_.Put("lease-b", ReplicaKey("cp-b"), Record("cp-b", b.address()));
  // A long interval: only the size sends.
  std::unique_ptr<PeerForwarder> forwarder =
      Make({.interval = seconds(3600), .max_batch_bytes = 300});
  loop_.RunUntilIdle();
  ASSERT_EQ(forwarder->peers().size(), 1u);
  for (int i = 0; b.batches.empty() && i < 20; ++i) forwarder->AddReport(Report("fe-1"));
  ASSERT_TRUE(RunUntil([&] { return b.held.size() == 1; }));
  ASSERT_EQ(b.batches.size(), 1u);
  EXPECT_LT(b.batches[0].reports_size(), 20);
  // Still busy: the next full batch is skipped for it, and counted.
  for (int i = 0; i < 20; ++i) forwarder->AddReport(Report("fe-1"));
  EXPECT_GE(forwarder->peers()[0].skipped, 1u);
  EXPECT_EQ(b.batches.size(), 1u);
  // Answered: the next one goes out.
  b.held[0]->SendProto(peer::v1::ForwardResponse());
  b.held[0]->Finish(http::grpc::StatusCode::kOk);
  ASSERT_TRUE(RunUntil([&] { return forwarder->peers()[0].sent == 1; }));
  for (int i = 0; i < 20; ++i) forwarder->AddReport(Report("fe-1"));
  ASSERT_TRUE(RunUntil([&] { return b.batches.size() == 2; }));
}

TEST_F(PeerForwarderTest, AnUnreachablePeerCountsFailures) {
  // A port nothing listens on (bound then closed).
  std::string dead;
  {
    PeerServer gone(loop_);
    dead = gone.address();
  }
  keys_.Put("lease-b", ReplicaKey("cp-b"), Record("cp-b", dead));
  std::unique_ptr<PeerForwarder> forwarder = Make();
  loop_.RunUntilIdle();
  forwarder->AddReport(Report("fe-1"));
  ASSERT_TRUE(RunUntil([&] { return forwarder->peers()[0].failed == 1; }));
  EXPECT_NE(forwarder->peers()[0].last_error.find("UNAVAILABLE"), std::string::npos)
      << forwarder->peers()[0].last_error;
}

// Spans of `traces` traces of one span each, trace ids 1..traces.
std::vector<SpanRecord> Traces(int traces) {
  std::vector<SpanRecord> out;
  for (int t = 1; t <= traces; ++t) {
    SpanRecord span = Span(absl::StrFormat("%016x", t));
    span.trace_id = absl::StrFormat("%032x", t);
    out.push_back(std::move(span));
  }
  return out;
}

// The spans of every batch `peer` received, in order.
std::vector<SpanRecord> Received(const PeerServer& peer) {
  std::vector<SpanRecord> out;
  for (const peer::v1::ForwardBatch& batch : peer.batches) {
    for (const std::string& encoded : batch.span_batches()) {
      EXPECT_TRUE(DecodeSpans(encoded, &out));
    }
  }
  return out;
}

TEST_F(PeerForwarderTest, AReplicaThatAppearsIsHandedTheTracesKeptHereInChunks) {
  TraceStore store;
  store.Add(Traces(40));
  PeerServer b(loop_);
  std::unique_ptr<PeerForwarder> forwarder = Make({.max_batch_bytes = 2000});
  forwarder->SetHistory(&store);
  loop_.RunUntilIdle();
  keys_.Put("lease-b", ReplicaKey("cp-b"), Record("cp-b", b.address()));
  ASSERT_TRUE(RunUntil([&] { return Received(b).size() == 40; }));
  std::vector<SpanRecord> spans = Received(b);
  EXPECT_EQ(spans.front().trace_id, absl::StrFormat("%032x", 1));  // oldest first
  EXPECT_EQ(spans.back().trace_id, absl::StrFormat("%032x", 40));
  EXPECT_GT(b.batches.size(), 2u);  // in chunks of about max_batch_bytes
  for (const auto& batch : b.batches) EXPECT_EQ(batch.replica(), "cp-a");
  EXPECT_EQ(b.authorization.back(), "Bearer secret");
  ASSERT_TRUE(RunUntil([&] { return forwarder->peers()[0].history_sent == b.batches.size(); }));

  // Traces that arrive meanwhile go with the regular batches, not again with the history.
  loop_.RunUntilIdle();
  EXPECT_EQ(Received(b).size(), 40u);
}

TEST_F(PeerForwarderTest, OnlyTheLowestNamedOtherReplicaHandsOverHistory) {
  TraceStore store;
  PeerServer a0(loop_), c(loop_);
  // "cp-0" sorts before this replica ("cp-a"): it hands a newcomer the history, not this one.
  keys_.Put("lease-0", ReplicaKey("cp-0"), Record("cp-0", a0.address()));
  std::unique_ptr<PeerForwarder> forwarder = Make();
  forwarder->SetHistory(&store);
  loop_.RunUntilIdle();
  store.Add(Traces(3));  // received (and forwarded) since
  keys_.Put("lease-c", ReplicaKey("cp-c"), Record("cp-c", c.address()));
  forwarder->AddSpans({Span("00000000000000ff")});
  ASSERT_TRUE(RunUntil([&] { return c.batches.size() == 1 && a0.batches.size() == 1; }));
  loop_.RunUntil([] { return false; }, milliseconds(100));
  EXPECT_EQ(Received(c).size(), 1u);  // the live span only
  // cp-0 leaves: the next newcomer gets the history from this replica.
  keys_.Expire("lease-0");
  PeerServer d(loop_);
  keys_.Put("lease-d", ReplicaKey("cp-d"), Record("cp-d", d.address()));
  ASSERT_TRUE(RunUntil([&] { return Received(d).size() == 3; }));
}

TEST(DefaultReplicaAddressTest, ABoundAddressOrThisHostsOwn) {
  EXPECT_EQ(*DefaultReplicaAddress(*net::Address::Parse("127.0.0.1:15012")), "127.0.0.1:15012");
  absl::StatusOr<std::string> any = DefaultReplicaAddress(*net::Address::Parse("0.0.0.0:15012"));
  ASSERT_TRUE(any.ok()) << any.status();
  absl::StatusOr<net::Address> parsed = net::Address::Parse(*any);
  ASSERT_TRUE(parsed.ok()) << *any;
  EXPECT_EQ(parsed->port(), 15012);
  EXPECT_NE(parsed->ip(), "0.0.0.0");
}

}  // namespace
}  // namespace meshlet::controlplane::telemetry

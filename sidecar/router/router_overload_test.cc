// Overload answers through the router: a 429, or a gRPC status RESOURCE_EXHAUSTED in trailers or
// in a trailers-only response, reaches the cluster with its retry-after, and the endpoint that
// gave it stops receiving traffic while the other one takes it (cluster_config.h OverloadConfig;
// the balancing and ejection rules themselves are unit-tested in sidecar/cluster). Against
// FakeUpstream servers (real sockets on 127.0.0.1) driven from the test thread's loop.

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "sidecar/cluster/cluster.h"
#include "sidecar/cluster/fake_codec.h"
#include "sidecar/router/router.h"
#include "sidecar/router/router_test_util.h"

namespace meshlet::sidecar::router {
namespace {

using RouterOverloadTest = RouterTest;

const std::vector<std::pair<std::string, std::string>> kGrpc = {
    {"content-type", "application/grpc"}};

// How the busy endpoint answers every request: `lines` with "<id>" replaced by the stream's id.
void AnswerEvery(FakeUpstream& up, std::string lines) {
  up.auto_respond = false;
  up.on_request = [&up, lines](const FakeUpstream::Request& r) {
    if (!r.ended) return;
    std::string text = lines;
    for (size_t at; (at = text.find("<id>")) != std::string::npos;) {
      text.replace(at, 4, absl::StrCat(r.id));
    }
    up.Send(r.connection, text);
  };
}

// Requests each endpoint received.
struct Spread {
  size_t busy = 0;
  size_t idle = 0;
};

class Overload : public RouterOverloadTest {
 protected:
  // Two endpoints, round robin (the busy one first); `busy_answer` as for AnswerEvery.
  void Run(const std::string& busy_answer, bool grpc, int requests) {
    FakeUpstream& busy = AddUpstream();
    FakeUpstream& idle = AddUpstream();
    AnswerEvery(busy, busy_answer);
    Configure({busy.address(), idle.address()}, RouteAction());
    const cluster::UpstreamStats& stats = stats_["c"];
    clusters_["c"]->SetStatHandles({
        .overload_responses = stats.overload_responses,
        .overload_ejections = stats.overload_ejections,
        .overload_ejections_skipped = stats.overload_ejections_skipped,
        .overload_ejections_active = stats.overload_ejections_active,
    });
    for (int i = 0; i < requests; ++i) {
      RecordingCallbacks& client = grpc ? Send("POST", "", kGrpc) : Send("GET");
      ASSERT_FALSE(client.status.empty()) << i;
    }
    spread.busy = busy.requests().size();
    spread.idle = idle.requests().size();
  }
  Spread spread;
};

TEST_F(Overload, A429WithRetryAfterMovesTheTrafficToTheOtherEndpoint) {
  Run("FIELD <id> retry-after 5\nFULL <id> 429\n", /*grpc=*/false, 8);
  // Round robin sent the first request to the busy endpoint; it was ejected for 5 s after it.
  EXPECT_EQ(spread.busy, 1u);
  EXPECT_EQ(spread.idle, 7u);
  EXPECT_EQ(Count("meshlet_upstream_overload_responses_total"), 1u);
  EXPECT_EQ(Count("meshlet_upstream_overload_ejections_total"), 1u);
  const cluster::Host& host = *clusters_["c"]->host_set().hosts()[0];
  EXPECT_TRUE(host.has_health_flag(cluster::Host::kOverloadEjected));
  EXPECT_EQ(host.stats().overload_responses, 1u);
}

TEST_F(Overload, ResourceExhaustedInATrailersOnlyResponseCounts) {
  Run("FIELD <id> grpc-status 8\nFIELD <id> retry-after 5\nFULL <id> 200\n", /*grpc=*/true, 6);
  EXPECT_EQ(spread.busy, 1u);
  EXPECT_EQ(spread.idle, 5u);
  EXPECT_EQ(Count("meshlet_upstream_overload_ejections_total"), 1u);
}

TEST_F(Overload, ResourceExhaustedInTrailersCounts) {
  Run("RESP <id> 200\nBODY <id> x\nFIELD <id> grpc-status 8\nTRAILERS <id>\n", /*grpc=*/true, 6);
  EXPECT_EQ(spread.busy, 1u);
  EXPECT_EQ(spread.idle, 5u);
  EXPECT_EQ(Count("meshlet_upstream_overload_responses_total"), 1u);
}

TEST_F(Overload, OtherAnswersAreNotOverload) {
  // gRPC statuses other than RESOURCE_EXHAUSTED leave the balancing alone.
  Run("FIELD <id> grpc-status 7\nFULL <id> 200\n", /*grpc=*/true, 6);
  EXPECT_EQ(spread.busy, 3u);
  EXPECT_EQ(Count("meshlet_upstream_overload_responses_total"), 0u);
}

TEST_F(Overload, GrpcStatusIsOnlyReadForGrpcRequests) {
  Run("RESP <id> 200\nFIELD <id> grpc-status 8\nTRAILERS <id>\n", /*grpc=*/false, 4);
  EXPECT_EQ(spread.busy, 2u);
  EXPECT_EQ(Count("meshlet_upstream_overload_responses_total"), 0u);
}

}  // namespace
}  // namespace meshlet::sidecar::router

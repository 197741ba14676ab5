// TapService against a real AdsServer and sidecar streams over gRPC on loopback: who may tap
// what, the limits' refusals, the fan-out to every sidecar of a target, the lines the caller
// gets, and the stop when the caller goes.
#include "control-plane/xds/tap_service.h"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/http/grpc/client.h"
#include "common/http/grpc/server.h"
#include "common/net/address.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"
#include "xds/discovery.pb.h"
#include "xds/protocol.h"

namespace meshlet::controlplane::ads {
namespace {

// A sidecar's stream: registers its node, keeps the tap commands it gets, answers them.
struct Sidecar {
  std::shared_ptr<http::grpc::ClientCall> call;
  std::vector<xds::TapCommand> commands;

  void Register(const std::string& id, const std::string& service, const std::string& ns) {
    xds::DiscoveryRequest request;
    request.mutable_node()->set_id(id);
    request.mutable_node()->set_service(service);
    request.mutable_node()->set_namespace_(ns);
    request.set_type_url(std::string(xds::kResourceTypeUrls[5]));
    call->SendProto(request);
  }
  void Send(const xds::TapEvents& events) {
    xds::DiscoveryRequest request;
    request.set_type_url(xds::kTapTypeUrl);
    *request.mutable_tap_events() = events;
    call->SendProto(request);
  }
};

class TapServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc_server_ = std::make_unique<http::grpc::Server>(loop_);
    ads_ = std::make_unique<AdsServer>(
        loop_, stats_,
        [](const GenerateRequest&) -> absl::StatusOr<NodeResourceSet> { return NodeResourceSet(); },
        AdsServerOptions{});
    ASSERT_TRUE(ads_->Register(*grpc_server_).ok());
    ASSERT_TRUE(grpc_server_->Start(*net::Address::Parse("127.0.0.1:0")).ok());
    channel_ = std::make_unique<http::grpc::Channel>(loop_, grpc_server_->address());
    taps_ = std::make_unique<TapService>(
        loop_, RealClock::Get(), *ads_,
        TapOptions{.max_rate = 50, .max_duration = std::chrono::seconds(30), .max_concurrent = 1},
        stats_.shared_shard());
  }

  void TearDown() override {
    taps_.reset();
    sidecars_.clear();
    channel_.reset();
    ads_->Stop();
    grpc_server_.reset();
    ads_.reset();
    loop_.RunUntilIdle();
  }

  Sidecar& Connect(const std::string& id, const std::string& service) {
    auto sidecar = std::make_unique<Sidecar>();
    Sidecar* raw = sidecar.get();
    raw->call = channel_->StartCall(xds::kStreamMethod);
    raw->call->OnProtoMessage<xds::DiscoveryResponse>([raw](xds::DiscoveryResponse r) {
      if (r.type_url() == xds::kTapTypeUrl) raw->commands.push_back(r.tap());
    });
    raw->Register(id, service, "shop");
    sidecars_.push_back(std::move(sidecar));
    const size_t want = sidecars_.size();
    EXPECT_TRUE(loop_.RunUntil([&] { return ads_->ProxyStatuses().size() == want; },
                               std::chrono::seconds(5)));
    return *raw;
  }

  // GET `query` by `role`: the answer, and once it streams, what was written to it.
  struct Answer {
    http::ServerResponse response;
    std::shared_ptr<http::ResponseBodyStream> body;
    std::string written;
    bool ended = false;
  };
  std::shared_ptr<Answer> Tap(const std::string& query, access::Role role) {
    http::ServerRequest request;
    request.headers.Add(":method", "GET");
    request.headers.Add(":path", "/api/v1/tap?" + query);
    const access::Principal caller{.name = "dana", .credential = "operator-token", .role = role};
    auto answer = std::make_shared<Answer>();
    taps_->Handle(request, &caller, [answer](http::ServerResponse response) {
      answer->response = std::move(response);
      answer->written = answer->response.body;
      if (!answer->response.stream) return;
      answer->body = std::make_shared<http::ResponseBodyStream>();
      answer->body->Attach([answer](absl::string_view data, bool end) {
        answer->written.append(data.data(), data.size());
        answer->ended = answer->ended || end;
        return true;
      });
      answer->response.stream(answer->body);
    });
    return answer;
  }

  static std::vector<std::string> Lines(const std::string& text) {
    return absl::StrSplit(text, '\n', absl::SkipEmpty());
  }

  event::Loop loop_;
  StatsRegistry stats_;
  std::unique_ptr<http::grpc::Server> grpc_server_;
  std::unique_ptr<AdsServer> ads_;
  std::unique_ptr<http::grpc::Channel> channel_;
  std::unique_ptr<TapService> taps_;
  std::vector<std::unique_ptr<Sidecar>> sidecars_;
};

TEST_F(TapServiceTest, RolesAndLimitsAreClearRefusals) {
  Connect("web-1.shop", "web");
  auto headers = Tap("service=shop/web&headers=true", access::Role::kViewer);
  EXPECT_EQ(headers->response.status, 403);
  EXPECT_TRUE(absl::StrContains(headers->response.body, "needs the admin role; dana has viewer"))
      << headers->response.body;
  EXPECT_EQ(Tap("service=shop/web&rate=51", access::Role::kAdmin)->response.status, 400);
  EXPECT_EQ(Tap("service=shop/web&duration=31s", access::Role::kAdmin)->response.status, 400);
  EXPECT_EQ(Tap("service=shop/nothing", access::Role::kAdmin)->response.status, 404);
  EXPECT_EQ(Tap("workload=web-1", access::Role::kAdmin)->response.status, 400);
  EXPECT_EQ(Tap("", access::Role::kAdmin)->response.status, 400);
  // One at a time here (max_concurrent 1): a second is 429 while the first runs.
  auto first = Tap("service=shop/web&headers=true", access::Role::kAdmin);
  EXPECT_EQ(first->response.status, 200);
  auto second = Tap("service=shop/web", access::Role::kViewer);
  EXPECT_EQ(second->response.status, 429);
  EXPECT_TRUE(absl::StrContains(second->response.body, "--tap-max-concurrent 1"));
}

TEST_F(TapServiceTest, FansOutToEverySidecarOfTheTargetAndEndsWhenTheyHave) {
  Sidecar& a = Connect("web-1.shop", "web");
  Sidecar& b = Connect("web-2.shop", "web");
  Sidecar& other = Connect("db-1.shop", "db");
  auto tap = Tap("service=shop/web&rate=10&duration=20s", access::Role::kViewer);
  ASSERT_EQ(tap->response.status, 200) << tap->response.body;
  ASSERT_TRUE(loop_.RunUntil([&] { return !a.commands.empty() && !b.commands.empty(); },
                             std::chrono::seconds(5)));
  const xds::TapCommand& command = a.commands[0];
  EXPECT_EQ(command.rate(), 5u);  // each its share of 10
  EXPECT_EQ(command.duration_ms(), 20000u);
  EXPECT_FALSE(command.headers());
  EXPECT_TRUE(other.commands.empty());
  EXPECT_TRUE(
      absl::StrContains(Lines(tap->written)[0], R"("proxies":["web-1.shop","web-2.shop"])"));

  xds::TapEvents events;
  events.set_id(command.id());
  events.set_events_json(R"({"direction":"inbound","status":200})"
                         "\n");
  a.Send(events);
  // A stream the tap was not sent cannot feed it.
  other.Send(events);
  events.set_ended(true);
  events.clear_events_json();
  a.Send(events);
  b.Send(events);
  ASSERT_TRUE(loop_.RunUntil([&] { return tap->ended; }, std::chrono::seconds(5)));
  const std::vector<std::string> lines = Lines(tap->written);
  ASSERT_EQ(lines.size(), 5u) << tap->written;
  EXPECT_EQ(lines[1],
            R"({"kind":"TapEvent","proxy":"web-1.shop","direction":"inbound","status":200})");
  EXPECT_EQ(lines[2], R"({"kind":"TapProxy","proxy":"web-1.shop","status":"ended"})");
  EXPECT_TRUE(absl::StrContains(lines[4], R"("kind":"TapEnded")")) << lines[4];
  EXPECT_TRUE(absl::StrContains(lines[4], R"("reason":"every sidecar ended its part","events":1)"))
      << lines[4];
  EXPECT_EQ(taps_->active(), 0u);
}

TEST_F(TapServiceTest, TheCallerGoingStopsTheSidecarsTaps) {
  Sidecar& a = Connect("web-1.shop", "web");
  auto tap = Tap("workload=shop/web-1", access::Role::kViewer);
  ASSERT_EQ(tap->response.status, 200) << tap->response.body;
  ASSERT_TRUE(loop_.RunUntil([&] { return a.commands.size() == 1; }, std::chrono::seconds(5)));
  tap->body->Detach();  // what the server does when the client resets or closes
  ASSERT_TRUE(loop_.RunUntil([&] { return a.commands.size() == 2; }, std::chrono::seconds(5)));
  EXPECT_TRUE(a.commands[1].stop());
  EXPECT_EQ(a.commands[1].id(), a.commands[0].id());
  EXPECT_EQ(taps_->active(), 0u);
  // Its late events reach nobody.
  xds::TapEvents events;
  events.set_id(a.commands[0].id());
  events.set_events_json("{}\n");
  a.Send(events);
  const size_t written = tap->written.size();
  loop_.RunUntil([] { return false; }, std::chrono::milliseconds(100));
  EXPECT_EQ(tap->written.size(), written);
}

}  // namespace
}  // namespace meshlet::controlplane::ads

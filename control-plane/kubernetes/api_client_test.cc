// KubernetesApi against FakeApiServer: how a request is built (token, headers, body), how each
// kind of failure is labelled and told, and the bounds (answer size, requests in flight).

#include "control-plane/kubernetes/api_client.h"

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "common/base/atomic_file.h"
#include "common/event/loop.h"
#include "common/stats/stats.h"
#include "control-plane/kubernetes/fake_api_server.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::kubernetes {
namespace {

using testing::FakeApiServer;
using testing::RunUntil;

class ApiClientTest : public ::testing::Test {
 protected:
  // Calls `request` and runs the loop until its answer.
  ApiResult CallAndWait(KubernetesApi& api, ApiRequest request) {
    std::optional<ApiResult> result;
    api.Call(std::move(request), [&](ApiResult r) { result = std::move(r); });
    EXPECT_TRUE(RunUntil(loop_, [&] { return result.has_value(); }));
    if (!result.has_value())
      return ApiResult{.result = "no answer", .body = absl::UnknownError("")};
    return *std::move(result);
  }

  event::Loop loop_;
  FakeApiServer server_{loop_, "secret-token"};
};

TEST_F(ApiClientTest, SendsTheTokenTheHeadersAndTheBody) {
  server_.set_handler([](const http::ServerRequest&, http::Responder respond) {
    respond(http::ServerResponse::Json(201, R"({"kind":"TokenReview"})"));
  });
  auto api = server_.Api();
  ApiResult created = CallAndWait(*api, {.method = "POST",
                                         .path = "/apis/authentication.k8s.io/v1/tokenreviews",
                                         .content_type = "application/json",
                                         .body = R"({"spec":{}})"});
  EXPECT_EQ(created.result, "ok");
  EXPECT_EQ(created.http_status, 201);
  ASSERT_TRUE(created.body.ok()) << created.body.status();
  EXPECT_EQ(*created.body, R"({"kind":"TokenReview"})");
  ApiResult read = CallAndWait(
      *api, {.method = "GET", .path = "/api/v1/pods?limit=1", .accept = "application/yaml"});
  EXPECT_EQ(read.result, "ok");

  ASSERT_EQ(server_.requests().size(), 2u);
  const testing::SeenRequest& post = server_.requests()[0];
  EXPECT_EQ(post.method, "POST");
  EXPECT_EQ(post.path, "/apis/authentication.k8s.io/v1/tokenreviews");
  EXPECT_EQ(post.authorization, "Bearer secret-token");  // the file's newline stripped
  EXPECT_EQ(post.content_type, "application/json");
  EXPECT_EQ(post.accept, "application/json");  // the default
  EXPECT_EQ(post.body, R"({"spec":{}})");
  const testing::SeenRequest& get = server_.requests()[1];
  EXPECT_EQ(get.path, "/api/v1/pods?limit=1");
  EXPECT_EQ(get.accept, "application/yaml");
  EXPECT_EQ(get.content_type, "");
}

// The API server's session ticket is kept, and the next request's handshake resumes with it.
TEST_F(ApiClientTest, AnotherRequestResumesTheTlsSession) {
  server_.set_handler([](const http::ServerRequest&, http::Responder respond) {
    respond(http::ServerResponse::Json(200, "{}"));
  });
  // A connection per request, so that the second one resumes.
  auto api = server_.Api([](KubernetesApiOptions& o) { o.idle_timeout = absl::ZeroDuration(); });
  EXPECT_FALSE(api->resumable());
  EXPECT_EQ(CallAndWait(*api, {.method = "GET", .path = "/api/v1/pods"}).result, "ok");
  EXPECT_TRUE(api->resumable());
  EXPECT_EQ(CallAndWait(*api, {.method = "GET", .path = "/api/v1/pods"}).result, "ok");
  EXPECT_TRUE(api->resumable());  // the resumed connection's ticket replaced the one it used
  EXPECT_EQ(server_.connections_accepted(), 2u);
}

TEST_F(ApiClientTest, ShortRequestsShareAKeptAliveConnection) {
  server_.set_handler([](const http::ServerRequest&, http::Responder respond) {
    respond(http::ServerResponse::Json(200, "{}"));
  });
  auto api = server_.Api();
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(CallAndWait(*api, {.method = "GET", .path = "/api/v1/pods"}).result, "ok");
  }
  EXPECT_EQ(
      CallAndWait(*api,
                  {.method = "PUT", .path = "/x", .content_type = "application/json", .body = "{}"})
          .result,
      "ok");
  EXPECT_EQ(server_.requests().size(), 5u);
  EXPECT_EQ(server_.connections_accepted(), 1u);
  EXPECT_EQ(api->connections().opened(), 1u);
  EXPECT_EQ(api->connections().reused(), 4u);
}

TEST_F(ApiClientTest, ConnectionCountsAreExportedToTheRegistry) {
  StatsRegistry stats;
  auto count = [&stats](const char* event) {
    absl::StatusOr<CounterId> id = stats.RegisterCounter(
        "meshlet_cp_kubernetes_api_connections_total", "x", {{"event", event}});
    return id.ok() ? stats.CounterValue(*id) : ~uint64_t{0};
  };
  FakeApiServer server(loop_, "t", std::chrono::milliseconds(100));
  server.set_handler([](const http::ServerRequest&, http::Responder respond) {
    respond(http::ServerResponse::Json(200, "{}"));
  });
  auto api = server.Api([&stats](KubernetesApiOptions& o) { o.stats = &stats; });
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(CallAndWait(*api, {.method = "GET", .path = "/a"}).result, "ok");
  }
  EXPECT_EQ(count("opened"), 1u);
  EXPECT_EQ(count("reused"), 2u);
  // The server closes the idle connection: counted when the next request ends.
  ASSERT_TRUE(RunUntil(loop_, [&] { return api->connections().idle() == 0; }));
  EXPECT_EQ(CallAndWait(*api, {.method = "GET", .path = "/b"}).result, "ok");
  EXPECT_EQ(count("closed"), 1u);
  EXPECT_EQ(count("opened"), 2u);
  EXPECT_EQ(count("failed"), 0u);

  auto closed_port = server.Api([&stats](KubernetesApiOptions& o) {
    o.api = "https://127.0.0.1:1";
    o.stats = &stats;
  });
  EXPECT_EQ(CallAndWait(*closed_port, {.method = "GET", .path = "/"}).result, "connect_failed");
  EXPECT_EQ(count("failed"), 1u);
}

TEST_F(ApiClientTest, AfterTheServerClosedAnIdleConnectionTheNextRequestReconnects) {
  FakeApiServer server(loop_, "t", std::chrono::milliseconds(100));
  server.set_handler([](const http::ServerRequest&, http::Responder respond) {
    respond(http::ServerResponse::Json(200, "{}"));
  });
  auto api = server.Api();
  EXPECT_EQ(CallAndWait(*api, {.method = "GET", .path = "/a"}).result, "ok");
  EXPECT_EQ(api->connections().idle(), 1u);
  ASSERT_TRUE(RunUntil(loop_, [&] { return api->connections().idle() == 0; }));
  EXPECT_EQ(api->connections().closed_by_server(), 1u);
  EXPECT_EQ(CallAndWait(*api, {.method = "GET", .path = "/b"}).result, "ok");
  EXPECT_EQ(server.connections_accepted(), 2u);
}

TEST_F(ApiClientTest, AWatchHasAConnectionOfItsOwn) {
  server_.set_handler([](const http::ServerRequest&, http::Responder respond) {
    respond(http::ServerResponse::Json(200, "{\"a\":1}\n"));
  });
  auto api = server_.Api();
  EXPECT_EQ(CallAndWait(*api, {.method = "GET",
                               .path = "/w?watch=true",
                               .on_line = [](absl::string_view) { return true; }})
                .result,
            "ok");
  EXPECT_EQ(api->connections().opened(), 0u);
  EXPECT_EQ(api->connections().idle(), 0u);
}

TEST_F(ApiClientTest, TheTokenFileIsReadForEveryRequest) {
  server_.set_handler([](const http::ServerRequest&, http::Responder respond) {
    respond(http::ServerResponse::Json(200, "{}"));
  });
  auto api = server_.Api();
  EXPECT_EQ(CallAndWait(*api, {.method = "GET", .path = "/a"}).result, "ok");
  ASSERT_TRUE(WriteFileAtomically(server_.token_file(), "rotated\n").ok());
  EXPECT_EQ(CallAndWait(*api, {.method = "GET", .path = "/b"}).result, "ok");
  ASSERT_EQ(server_.requests().size(), 2u);
  EXPECT_EQ(server_.requests()[1].authorization, "Bearer rotated");
}

TEST_F(ApiClientTest, AnHttpErrorCarriesItsStatusTheHintAndTheBody) {
  server_.set_handler([](const http::ServerRequest& request, http::Responder respond) {
    respond(http::ServerResponse::Text(request.path() == "/forbidden" ? 403 : 500, "nope"));
  });
  auto api = server_.Api();
  ApiResult forbidden = CallAndWait(
      *api, {.method = "GET", .path = "/forbidden", .forbidden_hint = "needs get on pods"});
  EXPECT_EQ(forbidden.result, "http_error");
  EXPECT_EQ(forbidden.http_status, 403);
  EXPECT_TRUE(absl::IsUnavailable(forbidden.body.status()));
  EXPECT_EQ(forbidden.body.status().message(),
            "GET /forbidden: the API server answered HTTP 403 (needs get on pods): nope");
  // The hint is only for 401 and 403.
  ApiResult failed =
      CallAndWait(*api, {.method = "GET", .path = "/broken", .forbidden_hint = "needs get"});
  EXPECT_EQ(failed.http_status, 500);
  EXPECT_EQ(failed.body.status().message(), "GET /broken: the API server answered HTTP 500: nope");
}

TEST_F(ApiClientTest, WithoutATokenNothingIsSent) {
  ASSERT_TRUE(WriteFileAtomically(server_.token_file(), "  \n").ok());
  auto api = server_.Api();
  ApiResult result = CallAndWait(*api, {.method = "GET", .path = "/api/v1/pods"});
  EXPECT_EQ(result.result, "no_credentials");
  EXPECT_TRUE(absl::StrContains(result.body.status().message(), "is empty"))
      << result.body.status();
  auto missing = server_.Api([](KubernetesApiOptions& o) { o.token_file = "/nonexistent/token"; });
  EXPECT_EQ(CallAndWait(*missing, {.method = "GET", .path = "/"}).result, "no_credentials");
  EXPECT_TRUE(server_.requests().empty());
}

TEST_F(ApiClientTest, AServerTheClusterCaDidNotSignIsRefused) {
  auto api = server_.Api([&](KubernetesApiOptions& o) { o.ca_file = server_.other_ca_file(); });
  ApiResult result = CallAndWait(*api, {.method = "GET", .path = "/"});
  EXPECT_EQ(result.result, "tls_failed");
  EXPECT_TRUE(absl::StrContains(result.body.status().message(), "is --kubernetes-ca-file"))
      << result.body.status();
  EXPECT_TRUE(server_.requests().empty());
}

TEST_F(ApiClientTest, AnAnswerOverTheLimitIsTooLarge) {
  server_.set_handler([](const http::ServerRequest&, http::Responder respond) {
    respond(http::ServerResponse::Json(200, std::string(5000, ' ')));
  });
  auto api = server_.Api([](KubernetesApiOptions& o) { o.max_response_bytes = 1000; });
  ApiResult result = CallAndWait(*api, {.method = "GET", .path = "/"});
  EXPECT_EQ(result.result, "too_large");
  EXPECT_EQ(result.body.status().message(), "the API server's answer exceeds 1000 bytes");
}

TEST_F(ApiClientTest, RequestsBeyondTheLimitInFlightFailAsOverloaded) {
  std::vector<http::Responder> held;
  server_.set_handler([&](const http::ServerRequest&, http::Responder respond) {
    held.push_back(std::move(respond));
  });
  auto api = server_.Api([](KubernetesApiOptions& o) { o.max_in_flight = 1; });
  std::optional<ApiResult> first;
  api->Call({.method = "GET", .path = "/slow"}, [&](ApiResult r) { first = std::move(r); });
  ApiResult second = CallAndWait(*api, {.method = "GET", .path = "/second"});
  EXPECT_EQ(second.result, "overloaded");
  ASSERT_TRUE(RunUntil(loop_, [&] { return !held.empty(); }));
  held.front()(http::ServerResponse::Json(200, "{}"));
  ASSERT_TRUE(RunUntil(loop_, [&] { return first.has_value(); }));
  EXPECT_EQ(first->result, "ok");
  EXPECT_EQ(api->in_flight(), 0u);
}

TEST_F(ApiClientTest, AWatchHandsOverOneLineAtATime) {
  server_.set_handler([](const http::ServerRequest&, http::Responder respond) {
    respond(http::ServerResponse::Json(200, "{\"a\":1}\n\n{\"b\":2}\n{\"c\":3}\n"));
  });
  auto api = server_.Api();
  std::vector<std::string> lines;
  ApiResult result = CallAndWait(
      *api,
      {.method = "GET", .path = "/api/v1/pods?watch=true", .on_line = [&](absl::string_view line) {
         lines.emplace_back(line);
         return lines.size() < 2;  // stop after the second
       }});
  EXPECT_EQ(result.result, "ok");
  EXPECT_EQ(lines, (std::vector<std::string>{R"({"a":1})", R"({"b":2})"}));
  ASSERT_TRUE(result.body.ok());
  EXPECT_EQ(*result.body, "");
}

TEST_F(ApiClientTest, AClosedPortIsConnectFailed) {
  auto api = server_.Api([](KubernetesApiOptions& o) { o.api = "https://127.0.0.1:1"; });
  ApiResult result = CallAndWait(*api, {.method = "GET", .path = "/"});
  EXPECT_EQ(result.result, "connect_failed");
  EXPECT_TRUE(absl::StrContains(result.body.status().message(),
                                "cannot connect to the API server 127.0.0.1:1"))
      << result.body.status();
}

TEST_F(ApiClientTest, CreateNamesTheFlagWhoseValueIsWrong) {
  KubernetesApiOptions options = server_.Options();
  options.api = "http://10.96.0.1:443";
  EXPECT_EQ(KubernetesApi::Create(loop_, options).status().message(),
            "--kubernetes-api=\"http://10.96.0.1:443\": the API server is reached over https");
  options.api = "kubernetes.default.svc:443";
  EXPECT_TRUE(absl::StrContains(KubernetesApi::Create(loop_, options).status().message(),
                                "expected a numeric address"));
  options = server_.Options();
  options.ca_file = "/nonexistent/ca.crt";
  absl::Status no_ca = KubernetesApi::Create(loop_, options).status();
  EXPECT_TRUE(absl::IsInvalidArgument(no_ca));
  EXPECT_TRUE(absl::StartsWith(no_ca.message(), "--kubernetes-ca-file: cannot read")) << no_ca;
}

}  // namespace
}  // namespace meshlet::controlplane::kubernetes

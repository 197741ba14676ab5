#include "tests/e2e/testapp/app.h"

#include <algorithm>
#include <csignal>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/fake_random.h"
#include "common/base/random.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/net/address.h"
#include "gtest/gtest.h"
#include "tests/e2e/testapp/client.h"
#include "tests/e2e/testapp/load.h"
#include "tests/e2e/testapp/server.h"

namespace meshlet::testapp {
namespace {

size_t Count(absl::string_view text, absl::string_view needle) {
  size_t n = 0;
  for (size_t pos = text.find(needle); pos != absl::string_view::npos;
       pos = text.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

// Test apps on one loop, each behind its own Server on 127.0.0.1.
class AppTest : public ::testing::Test {
 protected:
  ~AppTest() override {
    for (auto& s : servers_) s.server.reset();
    servers_.clear();
    loop_.RunUntilIdle();
  }

  // Starts an app; returns its URL ("http://127.0.0.1:PORT").
  std::string Start(ServeOptions options) {
    if (options.pod.empty()) options.pod = options.service + "-0";
    Running r;
    r.app = std::make_unique<App>(loop_, std::move(options), random_);
    App* app = r.app.get();
    auto server = Server::Create(
        loop_, *net::Address::Parse("127.0.0.1:0"), ServerOptions{},
        [app](std::shared_ptr<Exchange> exchange) { app->Handle(std::move(exchange)); });
    EXPECT_TRUE(server.ok()) << server.status();
    r.server = *std::move(server);
    std::string url = absl::StrCat("http://", r.server->address().ToString());
    servers_.push_back(std::move(r));
    return url;
  }

  App& app(size_t i) { return *servers_[i].app; }

  static HttpUrl Url(const std::string& text) {
    auto url = ParseHttpUrl(text);
    EXPECT_TRUE(url.ok()) << url.status();
    return *url;
  }

  FetchResult Get(const std::string& url,
                  std::vector<std::pair<std::string, std::string>> headers = {},
                  std::string method = "GET") {
    FetchRequest request;
    request.url = Url(url);
    request.headers = std::move(headers);
    request.method = std::move(method);
    std::optional<FetchResult> result;
    auto fetch =
        Fetch::Start(loop_, std::move(request), [&](FetchResult r) { result = std::move(r); });
    EXPECT_TRUE(loop_.RunUntil([&] { return result.has_value(); }, std::chrono::seconds(10)));
    return result.has_value() ? *std::move(result) : FetchResult{};
  }

  struct Running {
    std::unique_ptr<App> app;
    std::unique_ptr<Server> server;
  };
  event::Loop loop_;
  FakeRandom random_;
  std::vector<Running> servers_;
};

TEST_F(AppTest, AnswersWithItsNameAndHeaders) {
  ServeOptions o;
  o.service = "ratings";
  o.version = "v2";
  o.pod = "ratings-v2-x";
  std::string url = Start(o);
  FetchResult r = Get(url + "/ratings/1?u=2");
  ASSERT_TRUE(r.error.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body,
            "{\"service\":\"ratings\",\"version\":\"v2\",\"pod\":\"ratings-v2-x\","
            "\"path\":\"/ratings/1?u=2\",\"status\":200,\"headers\":{},\"calls\":[]}\n");
  EXPECT_EQ(r.headers.Get("content-type").value_or(""), "application/json");
  EXPECT_EQ(r.headers.Get("x-testapp-pod").value_or(""), "ratings-v2-x");
  EXPECT_EQ(r.headers.Get("x-testapp-version").value_or(""), "v2");

  FetchResult health = Get(url + "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok\n");
  EXPECT_EQ(app(0).stats().requests, 1u);  // /healthz is not counted
}

// The echo's retry simulation without a responseCode: the first requests of a uuid get their
// connection reset, later ones the echo answer.
TEST_F(AppTest, EchoResetsTheConnectionOfTheFirstAttempts) {
  ServeOptions o;
  o.service = "echo-v3";
  o.echo = true;
  std::string url = Start(o);
  const std::string target = url + "/retry?succeedAfter=2&uuid=u1";
  for (int i = 0; i < 2; ++i) {
    FetchResult reset = Get(target);
    EXPECT_EQ(reset.error.code(), absl::StatusCode::kUnavailable) << reset.error;
    EXPECT_EQ(reset.status, 0);
  }
  FetchResult ok = Get(target);
  ASSERT_TRUE(ok.error.ok()) << ok.error;
  EXPECT_EQ(ok.status, 200);
  EXPECT_NE(ok.body.find("\"service\":\"echo-v3\""), std::string::npos) << ok.body;
  EXPECT_EQ(app(0).stats().echo_resets, 2u);
}

// productpage -> reviews -> ratings, one request: every answer nested in its caller's, and the
// trace headers reach the end of the chain.
TEST_F(AppTest, ChainForwardsTraceHeadersAndNestsAnswers) {
  ServeOptions ratings;
  ratings.service = "ratings";
  ratings.forward_headers = {"x-canary"};  // shown in its answer
  std::string ratings_url = Start(ratings);
  ServeOptions reviews;
  reviews.service = "reviews";
  reviews.calls = {Url(ratings_url + "/ratings")};
  reviews.forward_headers = {"x-canary"};
  std::string reviews_url = Start(reviews);
  ServeOptions productpage;
  productpage.service = "productpage";
  productpage.calls = {Url(reviews_url)};  // no path: the request's own
  productpage.forward_headers = {"x-canary"};
  std::string productpage_url = Start(productpage);

  const std::string traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  FetchResult r = Get(productpage_url + "/product/7",
                      {{"traceparent", traceparent},
                       {"x-request-id", "req-1"},
                       {"b3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"},
                       {"x-canary", "always"},
                       {"x-not-forwarded", "1"}});
  ASSERT_TRUE(r.error.ok()) << r.error;
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(absl::StartsWith(r.body, "{\"service\":\"productpage\"")) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, absl::StrCat("{\"url\":\"", reviews_url,
                                                     "/product/7\",\"status\":200,"
                                                     "\"answer\":{\"service\":\"reviews\"")))
      << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, absl::StrCat("{\"url\":\"", ratings_url,
                                                     "/ratings\",\"status\":200,"
                                                     "\"answer\":{\"service\":\"ratings\"")))
      << r.body;
  // Each of the three services saw the same trace headers.
  EXPECT_EQ(Count(r.body, absl::StrCat("\"traceparent\":\"", traceparent, "\"")), 3u) << r.body;
  EXPECT_EQ(Count(r.body, "\"x-request-id\":\"req-1\""), 3u) << r.body;
  EXPECT_EQ(Count(r.body, "\"b3\":\"4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1\""), 3u);
  EXPECT_EQ(Count(r.body, "\"x-canary\":\"always\""), 3u) << r.body;
  EXPECT_FALSE(absl::StrContains(r.body, "x-not-forwarded"));
  EXPECT_EQ(app(0).stats().requests, 1u);
  EXPECT_EQ(app(2).stats().calls, 1u);
}

TEST_F(AppTest, FailurePatternAndDownstreamFailures) {
  ServeOptions flaky;
  flaky.service = "reviews";
  flaky.fail_pattern = "x.";
  std::string flaky_url = Start(flaky);
  ServeOptions front;
  front.service = "front";
  front.calls = {Url(flaky_url + "/r")};
  std::string front_url = Start(front);
  ServeOptions degrading = front;
  degrading.service = "degrading";
  degrading.degrade = true;
  std::string degrading_url = Start(degrading);

  FetchResult direct = Get(flaky_url + "/x");
  EXPECT_EQ(direct.status, 503);
  EXPECT_TRUE(absl::StrContains(direct.body, "\"error\":\"failed on purpose (pattern x.)\""))
      << direct.body;
  EXPECT_EQ(Get(flaky_url + "/x").status, 200);

  FetchResult failed = Get(front_url + "/");  // the flaky service's third request: fails
  EXPECT_EQ(failed.status, 502);
  EXPECT_TRUE(absl::StrContains(failed.body, "\"status\":503,\"answer\":{\"service\":\"reviews\""))
      << failed.body;
  EXPECT_EQ(Get(front_url + "/").status, 200);
  FetchResult degraded = Get(degrading_url + "/");
  EXPECT_EQ(degraded.status, 200);
  EXPECT_TRUE(absl::StrContains(degraded.body, "\"status\":503")) << degraded.body;
  EXPECT_EQ(app(0).stats().failed, 3u);
  EXPECT_EQ(app(1).stats().call_failures, 1u);

  // Nobody listens here: the call fails, and the answer says why.
  ServeOptions broken;
  broken.service = "broken";
  {
    // A port that was free a moment ago.
    auto probe = Server::Create(loop_, *net::Address::Parse("127.0.0.1:0"), ServerOptions{},
                                [](std::shared_ptr<Exchange>) {});
    ASSERT_TRUE(probe.ok());
    broken.calls = {Url(absl::StrCat("http://", (*probe)->address().ToString(), "/"))};
  }
  loop_.RunUntilIdle();
  FetchResult r = Get(Start(broken) + "/");
  EXPECT_EQ(r.status, 502);
  EXPECT_TRUE(absl::StrContains(r.body, "\"error\":\"UNAVAILABLE: connect to 127.0.0.1:"))
      << r.body;
}

TEST_F(AppTest, SlowRequestsWaitWithoutHoldingOthersUp) {
  ServeOptions o;
  o.service = "slowpoke";
  o.slow = std::chrono::milliseconds(300);
  std::string url = Start(o);
  // Two /slow requests and a quick one at once: the quick one is not held up, and the two slow
  // ones wait together (one loop, no blocking).
  std::vector<std::optional<FetchResult>> results(3);
  std::vector<std::unique_ptr<Fetch>> fetches;
  const std::vector<std::string> paths = {"/slow", "/slow/x", "/quick"};
  auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < paths.size(); ++i) {
    FetchRequest request;
    request.url = Url(url + paths[i]);
    fetches.push_back(Fetch::Start(loop_, std::move(request),
                                   [&results, i](FetchResult r) { results[i] = std::move(r); }));
  }
  ASSERT_TRUE(loop_.RunUntil([&] { return results[0] && results[1] && results[2]; },
                             std::chrono::seconds(10)));
  auto total = std::chrono::steady_clock::now() - start;
  for (auto& r : results) EXPECT_EQ(r->status, 200) << r->error;
  EXPECT_LT(results[2]->elapsed, std::chrono::milliseconds(200));
  EXPECT_GE(results[0]->elapsed, std::chrono::milliseconds(290));
  EXPECT_GE(results[1]->elapsed, std::chrono::milliseconds(290));
  EXPECT_LT(total, std::chrono::milliseconds(550));
  EXPECT_EQ(app(0).stats().slow, 2u);
}

TEST_F(AppTest, CallTimeout) {
  ServeOptions slow;
  slow.service = "slow";
  slow.latency = std::chrono::seconds(2);
  std::string slow_url = Start(slow);
  ServeOptions front;
  front.service = "front";
  front.calls = {Url(slow_url + "/")};
  front.call_timeout = std::chrono::milliseconds(100);
  FetchResult r = Get(Start(front) + "/");
  EXPECT_EQ(r.status, 502);
  EXPECT_TRUE(absl::StrContains(r.body, "DEADLINE_EXCEEDED: no answer from")) << r.body;
  EXPECT_LT(r.elapsed, std::chrono::milliseconds(1000));
}

TEST_F(AppTest, SetChangesFailuresAtRunTime) {
  ServeOptions o;
  o.service = "reviews";
  std::string url = Start(o);
  EXPECT_EQ(Get(url + "/__set?fail-pattern=x").status, 405);
  FetchResult set = Get(url + "/__set?fail-pattern=x&latency=0ms", {}, "POST");
  EXPECT_EQ(set.status, 200);
  EXPECT_EQ(set.body, "{\"failure_plan\":\"pattern x\",\"latency_ms\":0}\n");
  EXPECT_EQ(Get(url + "/a").status, 503);
  EXPECT_EQ(Get(url + "/__set?fail-pattern=", {}, "POST").status, 200);
  EXPECT_EQ(Get(url + "/a").status, 200);
  FetchResult bad = Get(url + "/__set?fail-pattern=q", {}, "POST");
  EXPECT_EQ(bad.status, 400);
  EXPECT_TRUE(absl::StrContains(bad.body, "unexpected 'q'")) << bad.body;
  EXPECT_EQ(Get(url + "/__set?nope=1", {}, "POST").status, 400);
  FetchResult stats = Get(url + "/__stats");
  EXPECT_EQ(stats.status, 200);
  EXPECT_TRUE(absl::StrContains(stats.body, "\"requests\":2,\"failed\":1,")) << stats.body;
}

TEST_F(AppTest, LoadSummaryCountsStatusesAndPods) {
  ServeOptions o;
  o.service = "reviews";
  o.pod = "reviews-v1-a";
  o.fail_pattern = "x.";
  std::string url = Start(o);
  GetOptions get;
  get.url = Url(url + "/");
  get.count = 10;
  get.concurrency = 3;
  LoadSummary summary = RunLoad(loop_, get, random_);
  EXPECT_EQ(summary.requests, 10u);
  EXPECT_EQ(summary.statuses[200], 5u);
  EXPECT_EQ(summary.statuses[503], 5u);
  EXPECT_EQ(summary.pods["reviews-v1-a"], 10u);
  EXPECT_FALSE(summary.all_succeeded());
  EXPECT_TRUE(absl::StartsWith(summary.ToJson(),
                               "{\"requests\":10,\"statuses\":{\"200\":5,\"503\":5},\"errors\":{},"
                               "\"pods\":{\"reviews-v1-a\":10},\"latency_ms\":{\"p50\":"))
      << summary.ToJson();

  // By name, from /etc/hosts.
  get.url = Url(absl::StrCat("http://localhost:", get.url.port, "/"));
  get.count = 2;
  summary = RunLoad(loop_, get, random_);
  EXPECT_EQ(summary.statuses[200] + summary.statuses[503], 2u) << summary.ToJson();
}

// A mesh proxy's own answer names the proxy (x-meshlet-error) and the request (x-request-id): a
// failure lists both, so a test can hand the id to `meshctl explain`; other answers list neither.
TEST_F(AppTest, FailuresListAProxysAttributionAndTheRequestId) {
  bool from_proxy = true;
  auto proxy = Server::Create(loop_, *net::Address::Parse("127.0.0.1:0"), ServerOptions{},
                              [&](std::shared_ptr<Exchange> exchange) {
                                http::ServerResponse r;
                                r.status = 503;
                                if (from_proxy) {
                                  r.headers.Add("x-meshlet-error",
                                                "client-0.default; flag=UO; reason=upstream "
                                                "overloaded");
                                  r.headers.Add("x-request-id", "5e1c0a9f-77");
                                }
                                exchange->Respond(std::move(r));
                              });
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  GetOptions get;
  get.url = Url(absl::StrCat("http://", (*proxy)->address().ToString(), "/"));
  get.count = 2;
  LoadSummary summary = RunLoad(loop_, get, random_);
  ASSERT_EQ(summary.failures.size(), 2u) << summary.ToJson();
  EXPECT_EQ(summary.failures[0].proxy_error,
            "client-0.default; flag=UO; reason=upstream overloaded");
  EXPECT_EQ(summary.failures[0].request_id, "5e1c0a9f-77");
  EXPECT_TRUE(absl::StrContains(summary.ToJson(),
                                "\"proxy_error\":\"client-0.default; flag=UO; reason=upstream "
                                "overloaded\",\"request_id\":\"5e1c0a9f-77\""))
      << summary.ToJson();
  from_proxy = false;
  summary = RunLoad(loop_, get, random_);
  ASSERT_EQ(summary.failures.size(), 2u) << summary.ToJson();
  EXPECT_EQ(summary.failures[0].proxy_error, "");
  EXPECT_FALSE(absl::StrContains(summary.ToJson(), "request_id")) << summary.ToJson();
  proxy->reset();
  loop_.RunUntilIdle();
}

TEST_F(AppTest, LoadForADurationListsFailures) {
  ServeOptions o;
  o.service = "reviews";
  o.pod = "reviews-v1-a";
  o.fail_pattern = "x9.";  // the first of every 10 fails
  std::string url = Start(o);
  GetOptions get;
  get.url = Url(url + "/");
  get.duration = std::chrono::milliseconds(300);
  get.concurrency = 4;
  auto start = std::chrono::steady_clock::now();
  LoadSummary summary = RunLoad(loop_, get, random_);
  auto took = std::chrono::steady_clock::now() - start;
  // The loop's timers have millisecond resolution.
  EXPECT_GE(took, std::chrono::milliseconds(298));
  EXPECT_LT(took, std::chrono::milliseconds(1000));
  EXPECT_GE(summary.seconds, 0.298);
  EXPECT_GT(summary.requests, 10u) << summary.ToJson();
  EXPECT_EQ(summary.statuses[200] + summary.statuses[503], summary.requests);
  EXPECT_EQ(summary.failures.size(), std::min<size_t>(summary.statuses[503], kMaxListed));
  ASSERT_FALSE(summary.failures.empty());
  const FailureRecord& first = summary.failures[0];
  EXPECT_EQ(first.status, 503);
  EXPECT_EQ(first.pod, "reviews-v1-a");
  EXPECT_EQ(first.error, "");
  EXPECT_LT(first.at_seconds, 0.1);
  for (size_t i = 1; i < summary.failures.size(); ++i) {
    EXPECT_LE(summary.failures[i - 1].at_seconds, summary.failures[i].at_seconds + 0.01);
  }
  const std::string json = summary.ToJson();
  EXPECT_TRUE(absl::StrContains(json, ",\"failures\":[{\"at\":0.0")) << json;
  EXPECT_TRUE(absl::StrContains(json, "\"status\":503,\"pod\":\"reviews-v1-a\",\"ms\":")) << json;
  EXPECT_FALSE(absl::StrContains(json, "stopped")) << json;
  EXPECT_FALSE(summary.all_succeeded());

  // Nobody answers: errors are listed with their reason.
  get.url = Url("http://127.0.0.1:1/");
  get.duration = std::chrono::milliseconds(50);
  summary = RunLoad(loop_, get, random_);
  ASSERT_FALSE(summary.failures.empty()) << summary.ToJson();
  EXPECT_TRUE(absl::StartsWith(summary.failures[0].error, "UNAVAILABLE: connect to 127.0.0.1:1"))
      << summary.failures[0].error;
  EXPECT_TRUE(absl::StrContains(summary.ToJson(), "\"error\":\"UNAVAILABLE: connect to"));
}

TEST_F(AppTest, LoadRate) {
  ServeOptions o;
  o.service = "ratings";
  std::string url = Start(o);
  GetOptions get;
  get.url = Url(url + "/");
  get.duration = std::chrono::milliseconds(500);
  get.concurrency = 8;
  get.rate = 40;  // one every 25 ms: 20 in 500 ms
  LoadSummary summary = RunLoad(loop_, get, random_);
  EXPECT_GE(summary.requests, 19u) << summary.ToJson();
  EXPECT_LE(summary.requests, 21u) << summary.ToJson();
  EXPECT_TRUE(summary.all_succeeded()) << summary.ToJson();
  // With a count: 5 at 50/s take 80 ms at least (the first goes at once).
  get.duration = Duration(0);
  get.count = 5;
  get.rate = 50;
  auto start = std::chrono::steady_clock::now();
  summary = RunLoad(loop_, get, random_);
  EXPECT_EQ(summary.requests, 5u);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(79));
}

// A signal stops the load: the requests in flight finish, and the summary says so; a second
// signal cancels those in flight.
TEST_F(AppTest, LoadStopsOnSignal) {
  ServeOptions o;
  o.service = "slow";
  o.latency = std::chrono::milliseconds(200);
  std::string url = Start(o);
  GetOptions get;
  get.url = Url(url + "/");
  get.duration = std::chrono::seconds(30);
  get.concurrency = 3;
  {
    Load load(loop_, get, random_);
    ASSERT_TRUE(load.StopOnSignals().ok());
    event::Timer stop(loop_, [] { std::raise(SIGTERM); });
    stop.Enable(std::chrono::milliseconds(50));
    auto start = std::chrono::steady_clock::now();
    LoadSummary summary = load.Run();
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
    EXPECT_EQ(summary.requests, 3u) << summary.ToJson();
    EXPECT_EQ(summary.statuses[200], 3u);
    EXPECT_EQ(summary.stopped_by, "SIGTERM");
    EXPECT_TRUE(summary.all_succeeded());
    EXPECT_TRUE(absl::EndsWith(summary.ToJson(), ",\"stopped\":\"SIGTERM\",\"cancelled\":0}"))
        << summary.ToJson();
  }
  {
    Load load(loop_, get, random_);
    int stops = 0;
    event::Timer stop(loop_, [&] {
      load.Stop(++stops == 1 ? "SIGINT" : "again");
      if (stops == 1) stop.Enable(std::chrono::milliseconds(20));
    });
    stop.Enable(std::chrono::milliseconds(50));
    LoadSummary summary = load.Run();
    EXPECT_EQ(summary.requests, 0u) << summary.ToJson();
    EXPECT_EQ(summary.cancelled, 3u);
    EXPECT_EQ(summary.stopped_by, "SIGINT");
  }
}

TEST(TraceParentTest, RandomIdsNeverZero) {
  FakeRandom random;
  random.Push(0x0123456789abcdefULL);
  random.Push(1);
  random.Push(0xff);
  TraceParent t = NewTraceParent(random);
  EXPECT_EQ(t.trace_id, "0123456789abcdef0000000000000001");
  EXPECT_EQ(t.header, "00-0123456789abcdef0000000000000001-00000000000000ff-01");
  random.Push(0);
  random.Push(0);
  random.Push(0);
  t = NewTraceParent(random);
  EXPECT_EQ(t.header, "00-00000000000000000000000000000001-0000000000000001-01");
}

// --trace: every request gets a trace of its own, which the service sees and the summary lists.
TEST_F(AppTest, LoadWithFreshTraces) {
  ServeOptions o;
  o.service = "reviews";
  o.fail_pattern = "x.";
  std::string url = Start(o);
  RealRandom random;
  GetOptions get;
  get.url = Url(url + "/");
  get.count = 4;
  get.concurrency = 2;
  get.trace = true;
  LoadSummary summary = RunLoad(loop_, get, random);
  ASSERT_EQ(summary.traces.size(), 4u);
  std::set<std::string> unique(summary.traces.begin(), summary.traces.end());
  EXPECT_EQ(unique.size(), 4u);
  for (const std::string& id : summary.traces) {
    EXPECT_EQ(id.size(), 32u);
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
  }
  // The failures name their traces (the 1st and 3rd requests sent fail).
  ASSERT_EQ(summary.failures.size(), 2u) << summary.ToJson();
  for (const FailureRecord& f : summary.failures) {
    EXPECT_TRUE(unique.count(f.trace) == 1) << f.trace;
  }
  const std::string json = summary.ToJson();
  EXPECT_TRUE(absl::StrContains(json, absl::StrCat(",\"traces\":[\"", summary.traces[0], "\",")))
      << json;
  EXPECT_TRUE(absl::StrContains(json, absl::StrCat("\"trace\":\"", summary.failures[0].trace)))
      << json;
  // The service got the traceparent sent.
  get.count = 1;
  summary = RunLoad(loop_, get, random);
  ASSERT_EQ(summary.traces.size(), 1u);
  EXPECT_TRUE(absl::StrContains(summary.last.body,
                                absl::StrCat("\"traceparent\":\"00-", summary.traces[0], "-")))
      << summary.last.body;
  EXPECT_TRUE(absl::StrContains(summary.last.body, "-01\"}")) << summary.last.body;
  // Without --trace, no traceparent and no "traces".
  get.trace = false;
  summary = RunLoad(loop_, get, random);
  EXPECT_TRUE(summary.traces.empty());
  EXPECT_FALSE(absl::StrContains(summary.last.body, "traceparent")) << summary.last.body;
  EXPECT_FALSE(absl::StrContains(summary.ToJson(), "traces"));
}

}  // namespace
}  // namespace meshlet::testapp

#include "tests/e2e/testapp/options.h"

#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace meshlet::testapp {
namespace {

using Command = CommandLine::Command;

GetEnv Env(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::string Error(const std::vector<std::string>& args,
                  std::map<std::string, std::string> env = {}) {
  auto parsed = ParseCommandLine(args, Env(std::move(env)));
  return parsed.ok() ? std::string("ok") : std::string(parsed.status().message());
}

TEST(OptionsTest, ServeDefaults) {
  auto parsed = ParseCommandLine({}, Env({{"HOSTNAME", "web-7f"}}));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->command, Command::kServe);
  const ServeOptions& o = parsed->serve;
  EXPECT_EQ(o.listen, "0.0.0.0:9080");
  EXPECT_EQ(o.service, "testapp");
  EXPECT_EQ(o.version, "v1");
  EXPECT_EQ(o.pod, "web-7f");
  EXPECT_TRUE(o.calls.empty());
  EXPECT_EQ(o.fail_status, 503);
  EXPECT_EQ(o.slow, std::chrono::seconds(1));
  EXPECT_EQ(o.latency, Duration(0));
  EXPECT_FALSE(o.degrade);
}

TEST(OptionsTest, ServeFlags) {
  auto parsed = ParseCommandLine({"serve",
                                  "--listen=127.0.0.1:0",
                                  "--service",
                                  "reviews",
                                  "--service-version",
                                  "v2",
                                  "--pod",
                                  "reviews-v2-0",
                                  "--call",
                                  "http://ratings:9080/ratings",
                                  "--call",
                                  "http://details:9080",
                                  "--fail-pattern",
                                  "3x17.",
                                  "--fail_fraction",
                                  "0.1",
                                  "--fail-status",
                                  "500",
                                  "--latency",
                                  "20ms",
                                  "--slow=1.5s",
                                  "--call-timeout",
                                  "300ms",
                                  "--degrade",
                                  "--forward-header",
                                  "x-canary,X-User",
                                  "--log-requests",
                                  "--drain-time",
                                  "0s"},
                                 Env({{"POD_NAME", "ignored"}}));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const ServeOptions& o = parsed->serve;
  EXPECT_EQ(o.listen, "127.0.0.1:0");
  EXPECT_EQ(o.service, "reviews");
  EXPECT_EQ(o.version, "v2");
  EXPECT_EQ(o.pod, "reviews-v2-0");
  ASSERT_EQ(o.calls.size(), 2u);
  EXPECT_EQ(o.calls[0].ToString(), "http://ratings:9080/ratings");
  EXPECT_FALSE(o.calls[1].has_target());
  EXPECT_EQ(o.fail_pattern, "3x17.");
  EXPECT_DOUBLE_EQ(o.fail_fraction, 0.1);
  EXPECT_EQ(o.fail_status, 500);
  EXPECT_EQ(o.latency, std::chrono::milliseconds(20));
  EXPECT_EQ(o.slow, std::chrono::milliseconds(1500));
  EXPECT_EQ(o.call_timeout, std::chrono::milliseconds(300));
  EXPECT_TRUE(o.degrade);
  EXPECT_EQ(o.forward_headers, (std::vector<std::string>{"x-canary", "x-user"}));
  EXPECT_TRUE(o.log_requests);
  EXPECT_EQ(o.drain_time, Duration(0));
}

TEST(OptionsTest, EnvironmentForPodManifestsAndFlagsWin) {
  auto parsed = ParseCommandLine(
      {"--service-version", "v3"},
      Env({{"TESTAPP_SERVICE", "productpage"},
           {"TESTAPP_SERVICE_VERSION", "v1"},
           {"TESTAPP_CALL", "http://details:9080/details, http://reviews:9080/reviews"},
           {"TESTAPP_FAIL_PATTERN", "x."},
           {"TESTAPP_DEGRADE", "false"},
           {"POD_NAME", "productpage-v1-abc"},
           {"HOSTNAME", "not-this"}}));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const ServeOptions& o = parsed->serve;
  EXPECT_EQ(o.service, "productpage");
  EXPECT_EQ(o.version, "v3");
  EXPECT_EQ(o.pod, "productpage-v1-abc");
  ASSERT_EQ(o.calls.size(), 2u);
  EXPECT_EQ(o.calls[1].authority, "reviews:9080");
  EXPECT_EQ(o.fail_pattern, "x.");
  EXPECT_FALSE(o.degrade);

  // --call on the command line replaces the environment's list.
  parsed = ParseCommandLine({"--call", "http://a:1"}, Env({{"TESTAPP_CALL", "http://b:2"}}));
  ASSERT_TRUE(parsed.ok());
  ASSERT_EQ(parsed->serve.calls.size(), 1u);
  EXPECT_EQ(parsed->serve.calls[0].host, "a");
  // Without POD_NAME or HOSTNAME the pod is named after the service.
  parsed = ParseCommandLine({"--service", "ratings"}, Env({}));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->serve.pod, "ratings");
}

TEST(OptionsTest, ServeErrorsNameTheFlag) {
  EXPECT_EQ(Error({"--listen", "9080"}), "--listen: \"9080\" is not IP:PORT (0.0.0.0:9080)");
  EXPECT_EQ(Error({"--call", "reviews:9080"}),
            "--call: URL \"reviews:9080\": must start with http://");
  EXPECT_EQ(Error({"--fail-pattern", "xy"}),
            "--fail-pattern: failure pattern \"xy\": unexpected 'y' at 2; use x (fail), . "
            "(succeed) and counts, as in 3x17.");
  EXPECT_EQ(Error({"--fail-fraction", "2"}), "--fail-fraction: \"2\" is not a number from 0 to 1");
  EXPECT_EQ(Error({"--fail-status", "99"}),
            "--fail-status: \"99\" is not a status from 200 to 599");
  EXPECT_EQ(Error({"--latency", "5"}), "--latency: \"5\" is not a duration such as 250ms or 1.5s");
  EXPECT_EQ(Error({"--slow", "-1s"}), "--slow: \"-1s\" is not a duration such as 250ms or 1.5s");
  EXPECT_EQ(Error({"--forward-header", "bad name"}),
            "--forward-header: \"bad name\" is not a header name");
  EXPECT_EQ(Error({"--service", ""}), "--service: must not be empty");
  EXPECT_EQ(Error({"--service"}), "--service: needs a value");
  EXPECT_EQ(Error({"--nope", "1"}), "unknown flag --nope (testapp --help lists them)");
  EXPECT_EQ(Error({"stray"}), "unknown command \"stray\"; commands: serve (default), get");
  EXPECT_EQ(Error({"serve", "stray"}), "unexpected argument \"stray\"");
  EXPECT_EQ(Error({}, {{"TESTAPP_LATENCY", "soon"}}),
            "TESTAPP_LATENCY: --latency: \"soon\" is not a duration such as 250ms or 1.5s");
}

TEST(OptionsTest, HelpAndVersion) {
  auto parsed = ParseCommandLine({"--service", "x", "--help"}, Env({}));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->command, Command::kHelp);
  parsed = ParseCommandLine({"--version"}, Env({}));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->command, Command::kVersion);
  parsed = ParseCommandLine({"get", "-h"}, Env({}));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->command, Command::kHelp);
}

TEST(OptionsTest, Get) {
  auto parsed = ParseCommandLine(
      {"get", "http://productpage:9080", "-H", "traceparent: 00-a-b-01", "--header=X-Canary:always",
       "--method", "post", "--data", "{}", "--count", "100", "--concurrency=8", "--timeout", "2s"},
      Env({}));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->command, Command::kGet);
  const GetOptions& o = parsed->get;
  EXPECT_EQ(o.url.ToString(), "http://productpage:9080/");
  EXPECT_EQ(o.method, "POST");
  ASSERT_EQ(o.headers.size(), 2u);
  EXPECT_EQ(o.headers[0], (std::pair<std::string, std::string>{"traceparent", "00-a-b-01"}));
  EXPECT_EQ(o.headers[1], (std::pair<std::string, std::string>{"x-canary", "always"}));
  EXPECT_EQ(o.body, "{}");
  EXPECT_EQ(o.count, 100u);
  EXPECT_EQ(o.concurrency, 8u);
  EXPECT_EQ(o.timeout, std::chrono::seconds(2));

  EXPECT_EQ(Error({"get"}), "get: which URL? (testapp get http://HOST:PORT/PATH)");
  EXPECT_EQ(Error({"get", "http://a/", "http://b/"}), "a second URL \"http://b/\"");
  EXPECT_EQ(Error({"get", "http://a/", "-H", "novalue"}),
            "--header: \"novalue\" is not name: value");
  EXPECT_EQ(Error({"get", "http://a/", "--count", "0"}),
            "--count: \"0\" is not a number from 1 to 10000000");
  EXPECT_EQ(Error({"get", "http://a/", "--concurrency", "1001"}),
            "--concurrency: \"1001\" is not a number from 1 to 1000");
  EXPECT_EQ(Error({"get", "http://a/", "--listen", "x"}),
            "unknown flag --listen for get (testapp --help lists them)");
}

}  // namespace
}  // namespace meshlet::testapp

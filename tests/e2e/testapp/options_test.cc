#include "tests/e2e/testapp/options.h"

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
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
  EXPECT_EQ(Error({"stray"}),
            "unknown command \"stray\"; commands: serve (default), serve-tcp, get, tcp");
  EXPECT_EQ(Error({"serve", "stray"}), "unexpected argument \"stray\"");
  EXPECT_EQ(Error({}, {{"TESTAPP_LATENCY", "soon"}}),
            "TESTAPP_LATENCY: --latency: \"soon\" is not a duration such as 250ms or 1.5s");
}

TEST(OptionsTest, EchoModeAndNamespace) {
  auto parsed = ParseCommandLine({"--echo"}, Env({{"POD_NAMESPACE", "shop"}}));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->serve.echo);
  EXPECT_EQ(parsed->serve.namespace_name, "shop");
  parsed = ParseCommandLine({"--namespace", "other"},
                            Env({{"TESTAPP_ECHO", "true"}, {"POD_NAMESPACE", "shop"}}));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->serve.echo);
  EXPECT_EQ(parsed->serve.namespace_name, "other");
  parsed = ParseCommandLine({}, Env({}));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_FALSE(parsed->serve.echo);
  EXPECT_EQ(parsed->serve.namespace_name, "");
  EXPECT_NE(Error({}, {{"TESTAPP_ECHO", "maybe"}}).find("TESTAPP_ECHO"), std::string::npos);
}

TEST(OptionsTest, ServeAlsoTcp) {
  auto parsed = ParseCommandLine({"--tcp-listen", "0.0.0.0:3306", "--banner=* OK ready"}, Env({}));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->command, Command::kServe);
  EXPECT_EQ(parsed->serve.listen, "0.0.0.0:9080");
  EXPECT_EQ(parsed->serve.tcp_listen, "0.0.0.0:3306");
  EXPECT_EQ(parsed->serve.banner, "* OK ready");
  EXPECT_TRUE(ParseCommandLine({}, Env({}))->serve.tcp_listen.empty());
  parsed = ParseCommandLine(
      {}, Env({{"TESTAPP_TCP_LISTEN", "127.0.0.1:25"}, {"TESTAPP_BANNER", "220 smtp"}}));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->serve.tcp_listen, "127.0.0.1:25");
  EXPECT_EQ(parsed->serve.banner, "220 smtp");

  EXPECT_EQ(Error({"--tcp-listen", "3306"}),
            "--tcp-listen: \"3306\" is not IP:PORT (0.0.0.0:9080)");
  EXPECT_EQ(Error({"--banner", ""}), "--banner: must not be empty");
  EXPECT_EQ(Error({"--banner", "two\r\nlines"}), "--banner: must be one line (no CR or LF)");
  EXPECT_EQ(Error({}, {{"TESTAPP_BANNER", "a\nb"}}),
            "TESTAPP_BANNER: --banner: must be one line (no CR or LF)");
}

TEST(OptionsTest, ServeTcp) {
  auto parsed = ParseCommandLine({"serve-tcp"}, Env({{"POD_NAME", "db-0"}}));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->command, Command::kServeTcp);
  EXPECT_EQ(parsed->serve.listen, "");  // no HTTP
  EXPECT_EQ(parsed->serve.tcp_listen, "0.0.0.0:3306");
  EXPECT_EQ(parsed->serve.pod, "db-0");
  EXPECT_EQ(parsed->serve.banner, "");

  parsed = ParseCommandLine(
      {"serve-tcp", "--listen", "127.0.0.1:2525", "--service", "smtp", "--pod=smtp-1", "--banner",
       "220 mail ESMTP", "--max-connections", "10", "--drain-time", "1s", "--log-requests"},
      Env({{"TESTAPP_LISTEN", "0.0.0.0:1"}}));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const ServeOptions& o = parsed->serve;
  EXPECT_EQ(o.listen, "");
  EXPECT_EQ(o.tcp_listen, "127.0.0.1:2525");
  EXPECT_EQ(o.service, "smtp");
  EXPECT_EQ(o.pod, "smtp-1");
  EXPECT_EQ(o.banner, "220 mail ESMTP");
  EXPECT_EQ(o.max_connections, 10u);
  EXPECT_EQ(o.drain_time, std::chrono::seconds(1));
  EXPECT_TRUE(o.log_requests);

  // The environment: TESTAPP_LISTEN is serve-tcp's address; serve's other variables are ignored.
  parsed = ParseCommandLine({"serve-tcp"}, Env({{"TESTAPP_LISTEN", "127.0.0.1:3307"},
                                                {"TESTAPP_BANNER", "hello"},
                                                {"TESTAPP_CALL", "not a url"}}));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->serve.tcp_listen, "127.0.0.1:3307");
  EXPECT_EQ(parsed->serve.banner, "hello");

  EXPECT_EQ(Error({"serve-tcp", "--listen", "x"}), "--listen: \"x\" is not IP:PORT (0.0.0.0:9080)");
  EXPECT_EQ(Error({"serve-tcp", "--call", "http://a/"}),
            "unknown flag --call for serve-tcp (testapp --help lists them)");
  EXPECT_EQ(Error({"serve-tcp", "--tcp-listen", "0.0.0.0:1"}),
            "unknown flag --tcp-listen for serve-tcp (testapp --help lists them)");
  EXPECT_EQ(Error({"serve-tcp", "--banner", "a\rb"}), "--banner: must be one line (no CR or LF)");
  EXPECT_EQ(Error({"serve-tcp", "--max-connections", "0"}),
            "--max-connections: \"0\" is not a number from 1 to 1048576");
  EXPECT_EQ(Error({"serve-tcp"}, {{"TESTAPP_DRAIN_TIME", "x"}}),
            "TESTAPP_DRAIN_TIME: --drain-time: \"x\" is not a duration such as 250ms or 1.5s");
  EXPECT_EQ(Error({"serve-tcp", "stray"}), "unexpected argument \"stray\"");
  parsed = ParseCommandLine({"serve-tcp", "--help"}, Env({}));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->command, Command::kHelp);
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

TEST(OptionsTest, GetLoadForADuration) {
  auto parsed = ParseCommandLine(
      {"get", "http://a/", "--duration", "30s", "--concurrency", "4", "--rate=12.5"}, Env({}));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const GetOptions& o = parsed->get;
  EXPECT_EQ(o.duration, std::chrono::seconds(30));
  EXPECT_EQ(o.count, 1u);
  EXPECT_EQ(o.concurrency, 4u);
  EXPECT_DOUBLE_EQ(o.rate, 12.5);
  parsed = ParseCommandLine({"get", "http://a/"}, Env({}));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->get.duration, Duration(0));
  EXPECT_EQ(parsed->get.rate, 0);
  // --rate paces a count too.
  parsed = ParseCommandLine({"get", "http://a/", "--count", "10", "--rate", "5"}, Env({}));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->get.count, 10u);
  EXPECT_DOUBLE_EQ(parsed->get.rate, 5);

  EXPECT_EQ(Error({"get", "http://a/", "--duration", "soon"}),
            "--duration: \"soon\" is not a duration such as 250ms or 1.5s");
  EXPECT_EQ(Error({"get", "http://a/", "--duration", "0s"}), "--duration: must be above zero");
  EXPECT_EQ(Error({"get", "http://a/", "--duration"}), "--duration: needs a value");
  EXPECT_EQ(Error({"get", "http://a/", "--count", "5", "--duration", "1s"}),
            "--duration: give --count or --duration, not both");
  EXPECT_EQ(Error({"get", "http://a/", "--duration", "1s", "--count", "1"}),
            "--count: give --count or --duration, not both");
  for (const char* bad : {"0", "-1", "fast", "100001", "nan"}) {
    EXPECT_EQ(Error({"get", "http://a/", "--rate", bad}),
              absl::StrCat("--rate: \"", bad,
                           "\" is not a number of requests per second above 0 and at most 100000"));
  }
}

TEST(OptionsTest, GetTrace) {
  auto parsed = ParseCommandLine({"get", "--trace", "http://a/"}, Env({}));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->get.trace);
  EXPECT_EQ(parsed->get.url.ToString(), "http://a:80/");  // --trace takes no value
  EXPECT_FALSE(ParseCommandLine({"get", "http://a/"}, Env({}))->get.trace);
  parsed = ParseCommandLine({"get", "http://a/", "--trace=false"}, Env({}));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_FALSE(parsed->get.trace);

  EXPECT_EQ(Error({"get", "http://a/", "--trace=maybe"}),
            "--trace: \"maybe\" is not true or false");
  EXPECT_EQ(Error({"get", "http://a/", "--trace", "-H", "traceparent: 00-a-b-01"}),
            "--trace: sends a new traceparent with each request: leave out -H traceparent");
  EXPECT_EQ(Error({"get", "-H", "Traceparent: x", "http://a/", "--trace"}),
            "--trace: sends a new traceparent with each request: leave out -H traceparent");
}

TEST(OptionsTest, Tcp) {
  auto parsed = ParseCommandLine({"tcp", "mysql:3306"}, Env({{"TESTAPP_LISTEN", "ignored"}}));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->command, Command::kTcp);
  EXPECT_EQ(parsed->tcp.host, "mysql");
  EXPECT_EQ(parsed->tcp.port, 3306);
  EXPECT_TRUE(parsed->tcp.send.empty());
  EXPECT_EQ(parsed->tcp.timeout, std::chrono::seconds(5));
  EXPECT_EQ(parsed->tcp.count, 1u);

  parsed = ParseCommandLine({"tcp", "--send", "EHLO me", "[fd00::5]:25", "--send=", "--send",
                             "QUIT", "--timeout", "250ms", "--count=10"},
                            Env({}));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const TcpOptions& o = parsed->tcp;
  EXPECT_EQ(o.host, "fd00::5");
  EXPECT_EQ(o.port, 25);
  EXPECT_EQ(o.send, (std::vector<std::string>{"EHLO me", "", "QUIT"}));
  EXPECT_EQ(o.timeout, std::chrono::milliseconds(250));
  EXPECT_EQ(o.count, 10u);

  EXPECT_EQ(Error({"tcp"}), "tcp: where to? (testapp tcp HOST:PORT)");
  for (const char* bad : {"mysql", "mysql:0", "mysql:x", ":3306", "fd00::5:25", "[]:25"}) {
    EXPECT_EQ(Error({"tcp", bad}),
              absl::StrCat("tcp: \"", bad,
                           "\" is not HOST:PORT (mysql:3306, 10.0.0.5:25, [fd00::5]:25)"));
  }
  EXPECT_EQ(Error({"tcp", "a:1", "b:2"}), "a second HOST:PORT \"b:2\"");
  EXPECT_EQ(Error({"tcp", "a:1", "--send", "two\r\nlines"}),
            "--send: must be one line (no CR or LF)");
  EXPECT_EQ(Error({"tcp", "a:1", "--send"}), "--send: needs a value");
  EXPECT_EQ(Error({"tcp", "a:1", "--timeout", "soon"}),
            "--timeout: \"soon\" is not a duration such as 250ms or 1.5s");
  EXPECT_EQ(Error({"tcp", "a:1", "--count", "0"}),
            "--count: \"0\" is not a number from 1 to 1000000");
  EXPECT_EQ(Error({"tcp", "a:1", "--data", "x"}),
            "unknown flag --data for tcp (testapp --help lists them)");
  parsed = ParseCommandLine({"tcp", "-h"}, Env({}));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->command, Command::kHelp);
}

}  // namespace
}  // namespace meshlet::testapp

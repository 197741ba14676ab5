#pragma once

// The test app's command line (tests/e2e/testapp/README.md has the reference):
//
//   testapp [serve] [--listen ADDR] [--service NAME] [--service-version V] [--pod NAME]
//           [--call URL]... [--fail-pattern P] [--fail-fraction F] [--fail-status S]
//           [--latency D] [--slow D] [--call-timeout D] [--degrade] [--forward-header NAME]...
//           [--log-requests] [--drain-time D] [--max-connections N] [--tcp-listen ADDR]
//           [--banner TEXT] [--echo] [--namespace NS]
//   testapp serve-tcp [--listen ADDR] [--service NAME] [--pod NAME] [--banner TEXT]
//           [--max-connections N] [--drain-time D] [--log-requests]
//   testapp get URL [--method M] [-H 'name: value']... [--data BODY] [--count N | --duration D]
//           [--concurrency C] [--rate R] [--timeout D] [--trace]
//   testapp tcp HOST:PORT [--send LINE]... [--timeout D] [--count N]
//   testapp --help | --version
//
// `serve` and `serve-tcp` flags may also come from the environment, for pod manifests:
// TESTAPP_<FLAG> with the flag's name upper-cased and dashes as underscores
// (TESTAPP_FAIL_PATTERN=3x17.), TESTAPP_CALL as a comma-separated list, and the pod's name from
// POD_NAME (the downward API) when --pod is not given, else the host name; the namespace from
// --namespace, else POD_NAMESPACE. A flag wins over the
// environment. Flags take `--name value` or `--name=value`; durations take units ("250ms",
// "1.5s").

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/base/version.h"
#include "tests/e2e/testapp/url.h"

namespace meshlet::testapp {

struct ServeOptions {
  std::string listen = "0.0.0.0:9080";  // HTTP; "" for none (serve-tcp)
  // Where to serve the server-first line protocol (tcp_server.h) too; "" for nowhere. serve-tcp
  // serves only that, here (its --listen), with `listen` "".
  std::string tcp_listen;
  std::string banner;  // that protocol's first line; "" for "220 SERVICE POD ready"
  std::string service = "testapp";
  std::string version = "v1";
  std::string pod;  // empty until resolved (POD_NAME or the host name)
  // The pod's namespace, named in echo answers; "" until resolved (POD_NAMESPACE).
  std::string namespace_name;
  // Answer every request with a description of it (echo.h) instead of the app's JSON; no
  // downstream calls, no failure plan.
  bool echo = false;
  // The echo mode's retry simulation remembers this many uuids at most (echo.h).
  size_t echo_max_uuids = 4096;
  // Downstream services, called in parallel for every request that is not failed on purpose.
  // A URL without a path is called with the incoming request's path and query.
  std::vector<HttpUrl> calls;
  std::string fail_pattern;  // FailurePlan syntax, "" for none
  double fail_fraction = 0;
  int fail_status = 503;
  Duration latency{0};                      // added to every request
  Duration slow = std::chrono::seconds(1);  // added to requests under /slow
  Duration call_timeout = std::chrono::seconds(5);
  // Answer 200 when a downstream call failed (the failure is in the body); otherwise 502.
  bool degrade = false;
  // Incoming headers copied to downstream calls besides the trace headers (kTraceHeaders).
  std::vector<std::string> forward_headers;
  bool log_requests = false;
  // On SIGTERM/SIGINT: stop accepting, then wait this long at most for requests in flight.
  Duration drain_time = std::chrono::seconds(5);
  size_t max_connections = 1024;
  size_t max_request_body_bytes = 1 << 20;
};

// Headers that carry a trace (W3C, B3, Envoy's request id): always copied from an incoming
// request to its downstream calls, so one trace spans every service of a chain.
inline constexpr absl::string_view kTraceHeaders[] = {
    "traceparent", "tracestate",   "x-request-id",      "b3",         "x-b3-traceid",
    "x-b3-spanid", "x-b3-sampled", "x-b3-parentspanid", "x-b3-flags",
};

struct GetOptions {
  HttpUrl url;
  std::string method = "GET";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  uint64_t count = 1;
  // Send requests for this long instead of `count` of them; 0 for `count`.
  Duration duration{0};
  uint64_t concurrency = 1;
  double rate = 0;  // requests per second in all, 0 for as many as `concurrency` allows
  // Send each request with a new random sampled W3C traceparent (not with -H traceparent).
  bool trace = false;
  Duration timeout = std::chrono::seconds(5);
};

struct TcpOptions {
  std::string host;  // a name or an IP literal, without brackets
  uint16_t port = 0;
  std::vector<std::string> send;  // lines to send after the banner, without CR/LF
  Duration timeout = std::chrono::seconds(5);
  uint64_t count = 1;  // connections, one after another
};

struct CommandLine {
  enum class Command { kServe, kServeTcp, kGet, kTcp, kHelp, kVersion };
  Command command = Command::kServe;
  ServeOptions serve;
  GetOptions get;
  TcpOptions tcp;
};

// Looks a variable up in the environment; std::getenv in the binary, a map in tests.
using GetEnv = std::function<std::optional<std::string>(const std::string& name)>;

// `args` without the program name. Errors name the flag and what is wrong (exit status 2).
absl::StatusOr<CommandLine> ParseCommandLine(const std::vector<std::string>& args,
                                             const GetEnv& getenv);

std::string Usage();
// With the length given: string_view's constructor from a pointer compares it with null, which
// is not a constant expression under -fsanitize=address.
inline constexpr absl::string_view kVersion(kMeshletVersion, sizeof(kMeshletVersion) - 1);

}  // namespace meshlet::testapp

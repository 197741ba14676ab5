#pragma once

// App: what the test app does with a request (tests/e2e/testapp/README.md).
//
//   /healthz     200 "ok": never failed on purpose, never delayed, calls nothing (readiness)
//   /__stats     the counters below as JSON
//   /__set       POST with query parameters fail-pattern, fail-fraction, latency: changes them
//                for the requests that follow (a replica that starts or stops failing)
//   anything else, with --echo: a description of the request (echo.h), after the delay and
//     with the status its query asks for
//   anything else
//     1. the failure plan decides whether this request fails (counted in arrival order);
//     2. it waits --latency, plus --slow for paths under /slow;
//     3. a failed request is answered with --fail-status; otherwise every downstream URL is
//        called in parallel with the trace headers (and --forward-header ones) of the request;
//     4. the answer is JSON naming service, version and pod, the path, the trace headers it got,
//        and per call the URL, status, time taken and answer (nested when it is JSON). Status
//        200, or 502 when a call failed (not 2xx or no answer) unless --degrade.
// Every answer carries x-testapp-service, x-testapp-version and x-testapp-pod headers, so a load
// generator can count which replica answered without reading bodies.
//
// Ownership and threading: one App per loop, on its thread. It owns the requests in progress
// (their timers and fetches); destroying it drops them unanswered. Destroy it before the Loop.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/base/random.h"
#include "common/event/loop.h"
#include "tests/e2e/testapp/echo.h"
#include "tests/e2e/testapp/failure.h"
#include "tests/e2e/testapp/options.h"
#include "tests/e2e/testapp/server.h"

namespace meshlet::testapp {

struct AppStats {
  uint64_t requests = 0;  // not counting /healthz, /__stats, /__set
  uint64_t failed = 0;    // answered with the failure status on purpose
  uint64_t slow = 0;      // under /slow
  uint64_t calls = 0;     // downstream calls made
  uint64_t call_failures = 0;
  uint64_t echo_refused = 0;  // echo requests whose query asked for something invalid (400)
  uint64_t echo_resets = 0;   // echo requests answered with a connection reset (echo.h)
};

class App {
 public:
  // `options.pod` must be set; the failure pattern must be valid (ParseCommandLine checked it).
  App(event::Loop& loop, ServeOptions options, Random& random);
  ~App();
  App(const App&) = delete;
  App& operator=(const App&) = delete;

  // The server's handler.
  void Handle(std::shared_ptr<Exchange> exchange);

  const AppStats& stats() const { return stats_; }
  // Requests waiting for their delay or their downstream calls.
  size_t in_progress() const { return in_progress_.size(); }
  const ServeOptions& options() const { return options_; }

 private:
  class Request;
  // `headers`: more headers of the answer (the echo's x-echo-set-header pairs).
  void Answer(Exchange& exchange, int status, std::string body,
              const std::vector<std::pair<std::string, std::string>>& headers = {});
  void HandleSet(Exchange& exchange);
  void HandleEcho(std::shared_ptr<Exchange> exchange);
  void Done(Request* request);

  event::Loop& loop_;
  ServeOptions options_;
  Random& random_;
  FailurePlan failure_plan_;
  AppStats stats_;
  EchoAttempts echo_attempts_;
  std::map<Request*, std::unique_ptr<Request>> in_progress_;
};

}  // namespace meshlet::testapp

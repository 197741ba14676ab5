#pragma once

// The echo mode of the test app (`--echo`): the answer describes the request as it arrived, for
// the Gateway API conformance cases (tests/e2e/gateway_conformance_test.py), which judge what a
// route's filters did to a request (path, host, headers) and which backend answered it.
//
//   {"path":"/a?b=c","host":"echo","method":"GET","proto":"HTTP/1.1",
//    "headers":{"x-header-add":["one","two"],...},"namespace":"ns","service":"echo-v1",
//    "version":"v1","pod":"echo-v1-0","status":200}
//
// Query parameters ask for an outcome:
//   delay=D                      answer after D (a duration such as 250ms, at most 60s)
//   status=N                     answer with status N (200-599)
//   uuid=U&responseCode=N&succeedAfter=K[&delayRetry=D]
//                                the first K requests carrying uuid U are answered N (each after
//                                D), the later ones 200 at once: a backend that recovers after K
//                                failed attempts, to count a route's retries
//   uuid=U&succeedAfter=K[&delayRetry=D]
//                                the same with connection errors: the first K requests get no
//                                answer, their connection is reset (TCP RST) instead
// and a request header asks for response headers:
//   x-echo-set-header: Name:value[,Name2:value2...]   each pair is a header of the answer (the
//                                header may be repeated; a value holds no comma)
// A bad value is answered 400 naming it.
//
// Threading: an EchoAttempts belongs to one App on its loop's thread.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/http/server.h"
#include "tests/e2e/testapp/options.h"

namespace meshlet::testapp {

// Requests seen per uuid (the retry simulation), for the newest `max_keys` uuids: the oldest is
// forgotten when a new one would exceed it.
class EchoAttempts {
 public:
  explicit EchoAttempts(size_t max_keys) : max_keys_(max_keys) {}
  // Counts one more request for `uuid`; returns how many it has had, this one included.
  uint64_t Next(absl::string_view uuid);
  size_t keys() const { return counts_.size(); }

 private:
  const size_t max_keys_;
  absl::flat_hash_map<std::string, uint64_t> counts_;
  std::deque<std::string> order_;  // oldest first
};

// What the query asks of an echo answer.
struct EchoOutcome {
  int status = 200;
  Duration delay{0};
  bool reset = false;  // after the delay, reset the connection instead of answering
  std::vector<std::pair<std::string, std::string>> headers;  // x-echo-set-header's, in order
};

// The longest delay a query may ask for.
inline constexpr Duration kMaxEchoDelay = std::chrono::seconds(60);

// Reads the query parameters above; counts the request in `attempts` when it carries the retry
// simulation. InvalidArgument names the bad parameter.
absl::StatusOr<EchoOutcome> PlanEcho(const http::ServerRequest& request, EchoAttempts& attempts);

// The JSON answer (with a trailing newline) describing `request`, answered `status`.
std::string EchoBody(const http::ServerRequest& request, const ServeOptions& options, int status);

}  // namespace meshlet::testapp

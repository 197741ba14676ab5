#pragma once

// `testapp get`: sends requests, some at a time, for a count or for a while, and sums up what
// came back. The end-to-end tests run it inside a pod (podman exec) as the mesh's client, in the
// foreground or as background load that a signal stops.
//
// Ownership and threading: a Load runs on its loop's thread and owns its fetches in flight.
// Destroy it before the Loop.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/base/random.h"
#include "common/event/loop.h"
#include "common/event/signal.h"
#include "common/event/timer.h"
#include "tests/e2e/testapp/client.h"
#include "tests/e2e/testapp/options.h"
#include "tests/e2e/testapp/summary.h"

namespace meshlet::testapp {

struct LoadSummary {
  uint64_t requests = 0;                   // finished (answered or not), not cancelled
  std::map<int, uint64_t> statuses;        // answers by status
  std::map<std::string, uint64_t> errors;  // no answer, by status code name (UNAVAILABLE, ...)
  std::map<std::string, uint64_t> pods;    // answers by x-testapp-pod
  std::vector<double> latencies_ms;        // of the answers, in completion order
  double seconds = 0;                      // from the first request to the last answer
  std::vector<FailureRecord> failures;     // the first kMaxListed not 2xx or unanswered
  std::vector<std::string> traces;         // --trace: the first kMaxListed trace ids sent
  std::string stopped_by;                  // what stopped it early ("SIGTERM"), "" if nothing
  uint64_t cancelled = 0;                  // in flight when a second stop came
  FetchResult last;                        // the last one to complete

  bool all_succeeded() const;
  // One line of JSON: {"requests":N,"statuses":{"200":N},"errors":{},"pods":{},
  // "latency_ms":{"p50":..,"p90":..,"p99":..,"max":..},"seconds":S,"failures":[...]}, then
  // "traces":["<32 hex>",...] with --trace, and "stopped":"SIGTERM","cancelled":N when stopped
  // early.
  std::string ToJson() const;
};

// A fresh W3C trace context for one request: a random trace id and parent span id, sampled.
struct TraceParent {
  std::string trace_id;  // 32 lower-case hex digits, not all zero
  std::string header;    // traceparent: 00-<trace id>-<16 hex digits, not all zero>-01
};
TraceParent NewTraceParent(Random& random);

// Keeps `options.concurrency` requests in flight until `options.count` have been sent, or for
// `options.duration`; with `options.rate`, request k is not sent before k / rate seconds from
// the start (total rate, whatever the concurrency). With `options.trace`, each request carries
// a NewTraceParent of its own.
class Load {
 public:
  // `options` and `random` must outlive the Load.
  Load(event::Loop& loop, const GetOptions& options, Random& random);
  ~Load();
  Load(const Load&) = delete;
  Load& operator=(const Load&) = delete;

  // Runs the loop until every request is sent and finished (or stopped); once.
  LoadSummary Run();
  // For a loop callback during Run() (a signal). The first call sends no more requests and lets
  // those in flight finish (within --timeout); a second cancels them (`cancelled`, not counted as
  // requests).
  void Stop(absl::string_view why);
  // Stop("SIGTERM") or Stop("SIGINT") when the process gets one, while this Load lives: a test
  // may stop background load with a signal and still get the summary.
  absl::Status StopOnSignals();

 private:
  struct InFlight {
    std::unique_ptr<Fetch> fetch;
    MonotonicTime sent;
    std::string trace_id;  // "" without --trace
  };

  bool MayStart() const;
  // Starts requests while allowed; with a rate, arms the pacing timer for the next one.
  void StartMore();
  void StartOne();
  void OnDone(uint64_t id, FetchResult result);
  double SecondsSinceStart(MonotonicTime t) const;

  event::Loop& loop_;
  const GetOptions& options_;
  Random& random_;
  MonotonicTime start_;
  uint64_t started_ = 0;
  std::map<uint64_t, InFlight> in_flight_;  // by start order
  bool time_up_ = false;                    // --duration passed
  bool stopping_ = false;
  event::Timer pace_;  // --rate: the next request's turn
  event::Timer end_;   // --duration
  std::vector<std::unique_ptr<event::Signal>> signals_;
  LoadSummary summary_;
};

// Load(loop, options, random).Run().
LoadSummary RunLoad(event::Loop& loop, const GetOptions& options, Random& random);

}  // namespace meshlet::testapp

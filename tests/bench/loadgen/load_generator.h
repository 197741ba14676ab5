#pragma once

// The load generator behind //tests/bench/loadgen:loadgen: HTTP/1.1 or HTTP/2 requests, plaintext
// or TLS (with a client certificate for mutual TLS), sent over N connections either
//
//   open loop (rate > 0): on a fixed schedule of `rate` requests/s (evenly spaced, or Poisson
//     arrivals), whatever the server does. A request whose time comes while no connection can take
//     it (HTTP/1.1: one request in flight per connection; HTTP/2: max_streams per connection)
//     waits in a FIFO queue, and its latency still counts from its *intended* send time. A server
//     that stalls therefore shows the stall in every request scheduled during it, instead of in
//     the few that happened to be in flight (coordinated omission, which a closed-loop tool has).
//   closed loop (rate == 0): `concurrency` requests in flight at all times, each started when
//     another ends: the maximum requests/s the server sustains. Latency then counts from the
//     moment a request was started (queued), which is its intended time.
//
// Latency is intended send time → the end of the response, recorded in a LatencyHistogram (ns)
// for every response received (2xx or not); errors (resets, timeouts) are counted apart. Requests
// intended in the warm-up period are sent but not counted anywhere. The run ends `duration` after
// the warm-up; requests scheduled by then get up to request_timeout to finish, and those still
// queued or in flight after that are counted as unfinished.
//
// Threading: everything runs on one thread, the one calling Run(), on the Loop given to it; one
// core's worth of load at most (pin it with PinToCpu). Nothing on the request path allocates in
// steady state: request slots, the queue and the encoded request head are made before the run.

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/net/address.h"
#include "tests/bench/loadgen/histogram.h"

namespace meshlet::loadgen {

enum class HttpVersion { kHttp1, kHttp2 };
enum class Arrivals { kConstant, kPoisson };

struct TlsOptions {
  bool enabled = false;
  // PEM roots that must issue the server's certificate (required with TLS).
  std::string trust_bundle_pem;
  // Optional client certificate chain and key (PEM), for a server that requires mutual TLS.
  std::string certificate_chain_pem;
  std::string private_key_pem;
  // SNI, and the name (DNS or IP) the server certificate must carry; empty: the address's IP.
  std::string server_name;
};

inline constexpr size_t kMaxSlowest = 100'000;

struct LoadOptions {
  net::Address address;
  // :authority / Host; empty: the address as host:port.
  std::string authority;
  HttpVersion protocol = HttpVersion::kHttp1;
  TlsOptions tls;

  std::string method = "GET";
  std::string path = "/";
  // Extra request fields (lower-case names; pseudo-headers and content-length are the tool's).
  std::vector<std::pair<std::string, std::string>> headers;
  // Request body of this many bytes ('x'), with content-length; 0: none.
  size_t body_bytes = 0;
  // gRPC (HTTP/2 only): POST with content-type application/grpc and te: trailers, the body one
  // length-prefixed message of body_bytes (not parsed by anyone on the path), and a response
  // counts as ok only with grpc-status 0 (in its trailers, or its headers when trailers-only).
  bool grpc = false;

  // Requests/s on the schedule; 0: closed loop.
  double rate = 0;
  Arrivals arrivals = Arrivals::kConstant;
  // Closed loop: requests in flight (0: connections × streams per connection).
  size_t concurrency = 0;
  size_t connections = 1;
  // HTTP/2: streams in flight per connection at most (the server's SETTINGS may allow fewer).
  uint32_t max_streams = 100;

  Duration warmup = std::chrono::seconds(1);
  Duration duration = std::chrono::seconds(10);
  // A request with no complete response this long after it was sent fails (kTimeout); also how
  // long the run waits for the requests in flight when it ends.
  Duration request_timeout = std::chrono::seconds(10);
  Duration connect_timeout = std::chrono::seconds(2);
  // A request sent more than this after its intended time counts as late.
  Duration late_threshold = std::chrono::milliseconds(1);
  // Requests waiting for a connection at most; a request scheduled beyond it is dropped (counted).
  size_t max_queued = 1'000'000;
  // Seeds the Poisson arrivals.
  uint64_t seed = 1;
  // The slowest responses of the measured window to list with their intended send times, so a
  // latency tail can be placed in time (0: none; at most kMaxSlowest). Kept in a heap made
  // before the run.
  size_t slowest = 0;
};

// Why a request sent got no response.
enum class RequestError {
  kReset,     // the stream was reset or the connection closed under it
  kTimeout,   // request_timeout passed
  kProtocol,  // the response broke HTTP (the codec failed the connection)
};
inline constexpr size_t kRequestErrorKinds = 3;
// "reset", "timeout", "protocol".
const char* RequestErrorName(RequestError error);

// One of LoadResult::slowest.
struct SlowResponse {
  Duration at{0};       // intended send time, from the start of the measured window
  Duration latency{0};  // intended send time → the end of the response
};

struct LoadResult {
  // Counts of requests whose intended send time fell in the measured window.
  uint64_t scheduled = 0;  // put on the schedule (closed loop: started)
  uint64_t sent = 0;       // written to a connection
  uint64_t ok = 0;         // 2xx responses
  uint64_t non_2xx = 0;    // other final responses (gRPC: also 2xx without grpc-status 0)
  uint64_t errors = 0;     // sent, no response (by kind below)
  uint64_t errors_by_kind[kRequestErrorKinds] = {};
  uint64_t late = 0;        // sent more than late_threshold after the intended time
  uint64_t dropped = 0;     // not sent: the queue was full (max_queued)
  uint64_t unfinished = 0;  // still queued or in flight when the run ended

  uint64_t connections_opened = 0;  // connections established (handshake included)
  uint64_t connect_failures = 0;    // connection attempts that failed (refused, TLS, timeout)
  uint64_t connections_lost = 0;    // established connections that closed during the run
  uint64_t warmup_requests = 0;     // requests intended in the warm-up period

  MonotonicTime started{};    // when the schedule began (every connection up): the warm-up's start
  Duration measured{0};       // the measured window (the duration)
  LatencyHistogram latency;   // ns, intended send time → end of response
  LatencyHistogram send_lag;  // ns, intended send time → written to a connection
  // The LoadOptions::slowest slowest responses of the window, in order of intended send time.
  std::vector<SlowResponse> slowest;

  // Responses per second of the measured window.
  double AchievedRate() const;
};

// Checks `options` (messages name the flag a user would set).
absl::Status ValidateOptions(const LoadOptions& options);

// Runs the load on `loop` (which must have nothing else to do) from the calling thread, and
// returns the counts; fails only when the options are invalid or the TLS setup is refused.
// Connections that fail are retried throughout the run (counted), so a server that is down yields
// a result with nothing sent rather than an error.
absl::StatusOr<LoadResult> RunLoad(event::Loop& loop, const LoadOptions& options);

// The result as one JSON object (the fields are documented in tests/bench/README.md) and as one
// line for people.
std::string ResultJson(const LoadOptions& options, const LoadResult& result);
std::string ResultSummary(const LoadOptions& options, const LoadResult& result);

// Pins the calling thread to `cpu`.
absl::Status PinToCpu(int cpu);

}  // namespace meshlet::loadgen

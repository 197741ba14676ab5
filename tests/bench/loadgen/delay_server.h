#pragma once

// DelayServer: an HTTP server with a known answer time, to check the load generator against (and
// to stand in for an upstream in benchmarks). Every request is answered `delay` after it arrived,
// with status 200 and a body of `response_bytes`; optionally the server stalls once: from
// `stall_after` after the first request, for `stall`, no answer goes out, and every answer due
// in that time goes out when the stall ends (as a server in a long GC pause or stopped by the
// scheduler would). HTTP/1.1 and HTTP/2 (prior knowledge, or ALPN over TLS) on one port, through
// common/http's HttpServer; or, with grpc_method set, gRPC (HTTP/2) through common/http/grpc's
// Server: that one unary method answers one message of `response_bytes` and status OK, any other
// UNIMPLEMENTED.
//
// Answers never leave early: they wait on a PreciseTimer (kernel resolution), not a millisecond
// timer.
//
// Ownership and threading: the owner holds it; loop thread only (create, use and destroy it on
// the thread that runs the Loop). Answers still waiting when it is destroyed are not sent.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/http/grpc/server.h"
#include "common/http/server.h"
#include "common/net/address.h"
#include "common/net/transport.h"
#include "tests/bench/loadgen/precise_timer.h"

namespace meshlet::loadgen {

struct DelayServerOptions {
  net::Address listen;  // port 0: any free port (address() tells which)
  Duration delay{0};
  // Zero `stall`: never.
  Duration stall_after{0};
  Duration stall{0};
  size_t response_bytes = 0;
  size_t max_connections = 1024;
  // "/package.Service/Method": serve gRPC instead of plain HTTP.
  std::string grpc_method;
  // TLS (null: plaintext).
  net::TransportFactory transport_factory;
};

class DelayServer {
 public:
  static absl::StatusOr<std::unique_ptr<DelayServer>> Create(event::Loop& loop,
                                                             DelayServerOptions options);
  ~DelayServer();
  DelayServer(const DelayServer&) = delete;
  DelayServer& operator=(const DelayServer&) = delete;

  const net::Address& address() const {
    return grpc_server_ != nullptr ? grpc_server_->address() : server_->address();
  }
  uint64_t requests() const { return requests_; }
  // When the first request arrived (the stall is placed from it); none yet: nullopt.
  std::optional<MonotonicTime> first_request() const { return first_request_; }

 private:
  struct Pending {
    MonotonicTime due;
    std::function<void()> answer;  // sends the answer (does nothing if the request is gone)
  };

  explicit DelayServer(DelayServerOptions options);
  void OnRequest(std::function<void()> answer);
  void OnTimer();

  const DelayServerOptions options_;
  const std::string body_;
  std::unique_ptr<http::HttpServer> server_;
  std::unique_ptr<http::grpc::Server> grpc_server_;
  std::unique_ptr<PreciseTimer> timer_;
  // Due times never decrease in arrival order (the stall moves a range of them to its end), so
  // the answers wait in a FIFO behind one timer.
  std::deque<Pending> pending_;
  std::optional<MonotonicTime> first_request_;
  uint64_t requests_ = 0;
};

}  // namespace meshlet::loadgen

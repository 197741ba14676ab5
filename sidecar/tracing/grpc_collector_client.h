#pragma once

// GrpcCollectorClient: OTLP/gRPC export (opentelemetry.proto.collector.trace.v1.TraceService/
// Export) from one worker's event loop, one call at a time: the worker's own gRPC channel (one
// HTTP/2 connection, TLS when `transport` is set) to the control plane's discovery port, kept open
// between calls. The TLS settings are the xDS channel's, whose provider presents the workload
// certificate current when each connection opens (it is thread-safe: every worker makes its own
// connections from it). The control plane authenticates the export by that certificate.
//
// The address may stand for several replicas: a call that could not reach one (UNAVAILABLE) moves
// the next call to the next, and may be sent again there (Result::may_resend). The channel is
// replaced after any failed call, and before a call when it has been idle for `idle_limit` (a NAT
// or load balancer may have forgotten it). A call refused as UNAUTHENTICATED or UNAVAILABLE over a
// connection kept from before may be sent again over a new one: a connection keeps the
// certificate of its handshake, which expires after the sidecar renewed it, and the control plane
// then refuses calls on it.
//
// Each call is bounded by `timeout` (connect included), sent as grpc-timeout too. The body's pieces
// are copied once, into the request's frame. The response message is not read (an
// ExportTraceServiceResponse; its partial_success is counted by the control plane).
//
// Threading: the loop's thread only.

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>

#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/grpc/client.h"
#include "common/net/transport.h"
#include "sidecar/tracing/collector_client.h"

namespace meshlet::sidecar::tracing {

inline constexpr char kTraceExportMethod[] =
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

class GrpcCollectorClient final : public ExportClient {
 public:
  struct Options {
    net::TransportFactory transport;  // null: h2c (a plaintext discovery port)
    std::string authority;            // empty: the address
    Duration timeout = std::chrono::seconds(2);
    Duration idle_limit = std::chrono::seconds(30);
  };

  // `loop` and `clock` must outlive the client.
  GrpcCollectorClient(event::Loop& loop, std::shared_ptr<const CollectorAddress> address,
                      Options options, const Clock& clock);
  ~GrpcCollectorClient() override;  // ends the call in flight without calling back (not from
                                    // inside `done`)
  GrpcCollectorClient(const GrpcCollectorClient&) = delete;
  GrpcCollectorClient& operator=(const GrpcCollectorClient&) = delete;

  // One Export call whose request message is `body`'s pieces; `content_type` is gRPC's own.
  void Post(absl::string_view content_type, std::initializer_list<absl::string_view> body,
            Done done) override;
  bool busy() const override { return busy_; }
  uint64_t connections_opened() const override;

 private:
  void OnFinish(http::grpc::StatusCode code, const std::string& message);
  // Ends the call in flight with `result` (on a later turn than Post()).
  void Finish(Result result);
  // Lets go of the channel; destroyed at the end of the loop turn (this may run inside one of its
  // calls' callbacks).
  void DropChannel();

  event::Loop& loop_;
  const std::shared_ptr<const CollectorAddress> address_;
  const Options options_;
  const Clock& clock_;
  event::Timer failure_timer_;  // reports a failure found inside Post() on the next turn
  Result failure_;
  std::unique_ptr<http::grpc::Channel> channel_;
  std::string channel_address_;  // where channel_ goes, for messages
  size_t next_address_ = 0;      // the address entry the next channel goes to
  MonotonicTime last_used_{};
  uint64_t retired_connections_ = 0;  // connections of channels let go of

  // The call in flight.
  bool busy_ = false;
  bool reused_ = false;  // over a channel that had answered a call before
  Done done_;
};

}  // namespace meshlet::sidecar::tracing

#pragma once

// The trace collector as the workers' exporters reach it.
//
// CollectorAddress: the collector's "host:port" and the addresses it currently stands for. A
// numeric address is parsed once; a name is resolved in the background (ResolveInBackground(),
// which the server calls at start and then periodically), never on a worker or the main loop;
// workers only read the latest result.
//
// ExportClient: how a worker's exporter sends its batches, one at a time: CollectorClient
// (OTLP/HTTP, Zipkin) or GrpcCollectorClient (OTLP/gRPC, grpc_collector_client.h).
//
// CollectorClient: HTTP/1.1 POSTs to the collector from one worker's event loop, one at a time,
// non-blocking, over one connection kept open between them. Each POST is bounded by `timeout`
// (connect, send and answer together). The body is written straight from the caller's memory
// (libuv writes from the buffers it is given): an export copies no span bytes and allocates no
// buffer blocks, whose release after every batch made the allocator return and refault memory. The
// connection is replaced when the collector closed it, answered with `connection: close`, with a
// body delimited by the connection's end or longer than 64 KiB, or when it has been idle for
// `idle_limit` (a NAT or load balancer may have forgotten it). Answers are read with the proxy's
// HTTP/1 parser.

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/base/sync.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/h1/parser.h"
#include "common/net/address.h"
#include "uv.h"

namespace meshlet::sidecar::tracing {

class CollectorAddress : public std::enable_shared_from_this<CollectorAddress> {
 public:
  // `host_port`: "host:port"; the host a name, an IPv4 literal or an IPv6 one in brackets.
  // Fails when it is not of that form. A numeric one is ready at once.
  static absl::StatusOr<std::shared_ptr<CollectorAddress>> Create(std::string host_port);
  // Already resolved (tests): `text` names it in requests and messages.
  static std::shared_ptr<CollectorAddress> Resolved(std::string text,
                                                    std::vector<net::Address> addresses);

  const std::string& text() const { return text_; }
  // True when the host is a name (Resolve() has work to do).
  bool needs_resolving() const { return needs_resolving_; }
  // Blocking: resolves the name and keeps its addresses.
  absl::Status Resolve();
  // Resolve() on a thread of its own, unless one is still at it; returns at once. Failures are
  // logged (and the addresses already known kept).
  void ResolveInBackground();
  // Any thread: the latest addresses (none while a name has never resolved), in the resolver's
  // order; a connection tries them in turn.
  std::vector<net::Address> Get() const;

 private:
  CollectorAddress(std::string text, std::string host, uint16_t port, bool needs_resolving);

  const std::string text_;
  const std::string host_;
  const uint16_t port_;
  const bool needs_resolving_;
  std::atomic<bool> resolving_{false};
  mutable Mutex mu_;
  std::vector<net::Address> addresses_ ABSL_GUARDED_BY(mu_);
};

class ExportClient {
 public:
  struct Result {
    bool ok = false;  // the collector took the batch (a 2xx answer, gRPC OK)
    // The request was lost over a connection kept from before (the collector had closed it as the
    // request went out, or no longer accepts what that connection was opened with): the same
    // request may be sent again, over a new one.
    bool may_resend = false;
    std::string error;  // what went wrong, when !ok
  };
  using Done = absl::AnyInvocable<void(Result)>;
  static constexpr size_t kMaxBodyPieces = 3;

  virtual ~ExportClient() = default;
  // Sends one export whose body is `body`'s pieces in order (at most kMaxBodyPieces). The caller
  // keeps them unchanged until `done` runs (or the client is destroyed). `done` runs once, never
  // from inside Post(). Only while !busy().
  virtual void Post(absl::string_view content_type, std::initializer_list<absl::string_view> body,
                    Done done) = 0;
  virtual bool busy() const = 0;
  // Connections opened so far.
  virtual uint64_t connections_opened() const = 0;
};

class CollectorClient final : public ExportClient, private http::h1::ParserVisitor {
 public:
  struct Options {
    std::string path;  // the request's path
    Duration timeout = std::chrono::seconds(2);
    Duration idle_limit = std::chrono::seconds(30);
  };

  // `loop`, `clock` must outlive the client.
  CollectorClient(event::Loop& loop, std::shared_ptr<const CollectorAddress> address,
                  Options options, const Clock& clock);
  ~CollectorClient() override;  // closes the connection; calls no callback
  CollectorClient(const CollectorClient&) = delete;
  CollectorClient& operator=(const CollectorClient&) = delete;

  // A POST whose body is `body`'s pieces, written from where they are (ExportClient::Post).
  void Post(absl::string_view content_type, std::initializer_list<absl::string_view> body,
            Done done) override;
  bool busy() const override { return busy_; }
  uint64_t connections_opened() const override { return connections_opened_; }

 private:
  // The connection: libuv handles and requests, freed in the handle's close callback (a request
  // cancelled by the close still calls back, into a socket whose owner is gone).
  struct Socket {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    CollectorClient* owner = nullptr;  // null once the client let go of it
    bool connected = false;
    bool peer_closed = false;
    bool writing = false;
  };
  static void OnConnect(uv_connect_t* request, int status);
  static void OnWrite(uv_write_t* request, int status);
  static void OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  // Connects to the next address not tried yet for the request in flight; false when none is
  // left (`failure_` says why).
  bool ConnectNext();
  void StartWrite();
  // Bytes read from the collector (`end_stream`: it closed its side).
  void OnData(absl::string_view data, bool end_stream);
  void OnSocketError(absl::string_view what, int status);
  // http::h1::ParserVisitor: the answer (its body is counted and dropped).
  Action OnStatusLine(int, int, int status_code, absl::string_view) override;
  Action OnHeader(absl::string_view, absl::string_view) override { return Action::kContinue; }
  Action OnHeadersComplete(const http::h1::MessageInfo& info) override;
  Action OnBody(absl::string_view data) override;
  Action OnMessageComplete() override;

  // Ends the request in flight with `result`; the connection is kept only when `keep`.
  void Finish(Result result, bool keep);
  void DropConnection();
  bool busy_ = false;

  event::Loop& loop_;
  const std::shared_ptr<const CollectorAddress> address_;
  const Options options_;
  const Clock& clock_;
  event::Timer timeout_timer_;
  event::Timer failure_timer_;  // reports a failure found inside Post() on the next turn
  Result failure_;
  Socket* socket_ = nullptr;
  MonotonicTime last_used_;
  uint64_t connections_opened_ = 0;
  std::string head_;  // the request head, reused
  uv_buf_t request_[1 + kMaxBodyPieces];
  unsigned request_pieces_ = 0;
  char read_buffer_[4096];

  // The request in flight.
  Done done_;
  std::vector<net::Address> candidates_;  // for a new connection: the addresses to try
  size_t next_candidate_ = 0;
  bool reused_ = false;  // it went over a connection kept from an earlier request
  bool answer_byte_ = false;
  std::optional<http::h1::Parser> parser_;
  int status_ = 0;
  bool head_complete_ = false;
  bool keep_alive_ = false;
  bool message_complete_ = false;
  uint64_t body_bytes_ = 0;
};

}  // namespace meshlet::sidecar::tracing

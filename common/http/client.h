#pragma once

// A small HTTP/1.1 client for meshlet's own calls to other services: active health checks, the
// Kubernetes API, meshctl's calls to the control-plane API (docs/adr/0038). One request per
// connection (`connection: close`) unless the options name a KeptConnections, the answer buffered
// whole up to a limit. It is not the proxy's data path (sidecar/cluster's pools and codecs).
//
// HttpFetch: one request on an event::Loop, asynchronous. The request and the answer go through
// the project's HTTP/1.1 codec (h1::ClientCodec) on a net::Connection, plaintext or over the
// options' TransportFactory (TLS). The addresses are tried in turn while connecting fails. One
// timeout bounds it all: connecting, the handshake, sending and the whole answer.
//
// Ownership and callback timing: the caller owns the HttpFetch; the Loop must outlive it. `done`
// runs exactly once, on the loop thread, never from inside Start(), and never after the HttpFetch
// was destroyed. Destroying it (from anywhere, inside `done` too) cancels the request and closes
// its connection.
//
// FetchBlocking: the same on a Loop of its own, on the calling thread, for a program without one
// (meshctl). Never from a thread that runs a Loop.
//
// KeptConnections: idle HTTP/1.1 connections to one server kept between fetches that name it
// (ClientOptions::keep). A fetch takes the newest idle one (or connects), and gives it back when
// its answer came whole, both directions done and no `connection: close` from either side; so a
// request is never written on a connection with an answer still pending. An idle connection is
// closed after idle_timeout, when the server closes it or sends anything, and when more than
// max_idle are idle. A server may close an idle connection just as a request goes out on it: a
// fetch with retry_on_reused (only for requests whose replay does no harm) then tries once more
// on a new connection, provided no byte of an answer came; any other fetch fails as kClosed.
// Loop thread only; it must outlive the fetches that name it. Destroying it closes the idle ones.
//
// Writes to a peer that has gone may raise SIGPIPE: programs using this ignore it, as every
// meshlet main does.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/codec.h"
#include "common/http/connection_io.h"
#include "common/http/h1/codec.h"
#include "common/http/header_map.h"
#include "common/net/address.h"
#include "common/net/connection.h"
#include "common/net/transport.h"

namespace meshlet::http {

struct ClientRequest {
  std::string method = "GET";
  std::string path = "/";  // origin-form, with the query
  std::string authority;   // the Host header
  // Sent as they are, after host. Hop-by-hop fields (connection, transfer-encoding...) and
  // content-length are the client's: it sends `connection: close` and the body's length.
  HeaderMap headers;
  std::string body;
};

class KeptConnections;

struct ClientOptions {
  // Connecting (every address tried), the handshake, sending and the whole answer.
  Duration timeout = std::chrono::seconds(10);
  // The answer's bytes as received, head and body; past it the request fails (kTooLarge).
  size_t max_response_bytes = 1 << 20;
  // False: the request ends with the answer's head (status and headers; the body is not read and
  // the connection closes), for callers that only judge the status.
  bool read_body = true;
  // Set: a streamed answer (a Kubernetes watch). The body of a 2xx answer is handed to it piece by
  // piece as it arrives, on the loop thread, instead of being kept in ClientResult::body, and
  // max_response_bytes then bounds only the head (the callback bounds what it keeps). Returning
  // false ends the request at once, as complete (kNone); `done` follows on a later turn. Any other
  // status is buffered as usual. Not called after the request ended; it must not destroy the
  // HttpFetch.
  absl::AnyInvocable<bool(absl::string_view data)> on_body_data;
  // Null: plaintext.
  net::TransportFactory transport_factory;
  // Set: the connection comes from and goes back to it (all the fetches naming one
  // KeptConnections must go to the same server with the same transport_factory). Null: one
  // connection for this request, `connection: close`.
  KeptConnections* keep = nullptr;
  // With `keep`: the request may be sent twice (a GET; see KeptConnections).
  bool retry_on_reused = false;
};

enum class ClientError {
  kNone,
  kBadRequest,     // the request cannot be sent (a method, path or authority HTTP/1.1 refuses)
  kConnectFailed,  // no address accepted a connection (refused, unreachable, connect timeout)
  kTlsFailed,      // the transport failed: a TLS handshake or record error
  kTimeout,        // no complete answer within the timeout
  kMalformed,      // the answer is not HTTP/1.1
  kTooLarge,       // the answer passed max_response_bytes
  kClosed,         // the connection ended before the answer did
};
// "bad_request", "connect_failed", "tls_failed", "timeout", "malformed", "too_large", "closed";
// "ok" for kNone.
absl::string_view ClientErrorName(ClientError error);

struct ClientResult {
  ClientError error = ClientError::kNone;
  // What went wrong, when error is set, in the words of whoever saw it: the connection's
  // ("connection refused", why a peer certificate was refused), the codec's, or the client's.
  std::string detail;
  // For kConnectFailed, kTlsFailed and kClosed: how the (last) connection ended.
  net::CloseReason close_reason = net::CloseReason::kLocalClose;

  // The answer, when there is no error: any status (judging it is the caller's).
  int status = 0;
  HeaderMap headers;  // regular fields only
  std::string body;

  bool ok() const { return error == ClientError::kNone; }
};

namespace client_internal {
struct Kept;
}

class KeptConnections {
 public:
  struct Options {
    size_t max_idle = 2;
    // As client-go's (Go's http.Transport IdleConnTimeout). Zero: idle connections are not kept.
    Duration idle_timeout = std::chrono::seconds(90);
  };
  explicit KeptConnections(event::Loop& loop);
  KeptConnections(event::Loop& loop, Options options);
  ~KeptConnections();
  KeptConnections(const KeptConnections&) = delete;
  KeptConnections& operator=(const KeptConnections&) = delete;

  size_t idle() const { return idle_.size(); }
  // Connections connected by fetches naming this, and requests sent on an idle one.
  uint64_t opened() const { return opened_; }
  uint64_t reused() const { return reused_; }
  // Requests sent again on a new connection after a reused one ended without an answer.
  uint64_t retried() const { return retried_; }
  // Idle connections closed by the server (or that it sent something on), and by idle_timeout.
  uint64_t closed_by_server() const { return closed_by_server_; }
  uint64_t idle_timeouts() const { return idle_timeouts_; }

 private:
  friend class HttpFetch;
  friend struct client_internal::Kept;
  // The newest idle connection, or null.
  std::unique_ptr<client_internal::Kept> Take();
  // Keeps `kept` idle (or closes it, over max_idle).
  void Give(std::unique_ptr<client_internal::Kept> kept);
  // Closes an idle connection (from inside its callbacks too).
  void Remove(client_internal::Kept* kept);

  event::Loop& loop_;
  const Options options_;
  std::vector<std::unique_ptr<client_internal::Kept>> idle_;  // oldest first
  uint64_t opened_ = 0;
  uint64_t reused_ = 0;
  uint64_t retried_ = 0;
  uint64_t closed_by_server_ = 0;
  uint64_t idle_timeouts_ = 0;
};

class HttpFetch final : private net::ConnectionCallbacks,
                        private StreamDecoder,
                        private StreamCallbacks {
 public:
  using Done = absl::AnyInvocable<void(ClientResult)>;

  // Starts sending `request` to the first of `addresses` that accepts a connection (none: fails
  // with kConnectFailed).
  static std::unique_ptr<HttpFetch> Start(event::Loop& loop, std::vector<net::Address> addresses,
                                          ClientRequest request, ClientOptions options, Done done);
  ~HttpFetch() override;
  HttpFetch(const HttpFetch&) = delete;
  HttpFetch& operator=(const HttpFetch&) = delete;

 private:
  HttpFetch(event::Loop& loop, std::vector<net::Address> addresses, ClientRequest request,
            ClientOptions options, Done done);

  // Takes an idle kept connection or connects to the next address, and queues the request on it.
  void Attempt();
  // Hands the connection and its codec to the loop for deletion.
  void DropConnection();
  // After the answer: the connection goes back to options_.keep if `may_keep` and it can carry
  // another request, else it closes.
  void ReleaseConnection(bool may_keep);
  // The reused connection ended before any answer: true if the request goes again on a new one.
  bool RetryOnNewConnection();
  // Ends the request with `error` (kNone: the answer in result_); `done` runs on the next turn.
  void Finish(ClientError error, std::string detail = "");
  // The connection ended without a complete answer.
  std::string ClosedDetail() const;

  // net::ConnectionCallbacks
  void OnData(net::Buffer& data, bool end_stream) override;
  void OnClose(net::CloseReason reason, const absl::Status& detail) override;
  // StreamDecoder
  void DecodeHeaders(HeaderMapPtr headers, bool end_stream) override;
  void DecodeData(net::Buffer& data, bool end_stream) override;
  void DecodeTrailers(HeaderMapPtr trailers) override;
  // StreamCallbacks
  void OnResetStream(StreamResetReason reason, absl::string_view details) override;

  event::Loop& loop_;
  const std::vector<net::Address> addresses_;
  const ClientRequest request_;
  ClientOptions options_;  // mutable only for on_body_data's calls
  Done done_;
  // On steady_clock, like the timers: not the Loop's clock, which a test may replace.
  const MonotonicTime deadline_;
  event::Timer timeout_timer_;
  event::Timer report_timer_;  // runs `done` on the turn after the end
  size_t next_address_ = 0;
  // The attempt in flight: the connection, its CodecIo and codec.
  std::unique_ptr<client_internal::Kept> conn_;
  StreamEncoder* encoder_ = nullptr;
  bool reused_ = false;   // conn_ came from options_.keep
  bool retried_ = false;  // once only
  // Set by OnResetStream inside a codec call; judged when the call returns.
  bool reset_ = false;
  std::string reset_details_;
  size_t received_ = 0;
  bool head_received_ = false;
  bool streaming_ = false;  // the body goes to options_.on_body_data
  bool finished_ = false;
  ClientResult result_;
};

// Percent-encodes everything but unreserved characters (RFC 3986), for a path segment or a query
// value.
std::string QueryEscape(absl::string_view text);

// HttpFetch on a Loop of its own, run on the calling thread until the request ends.
ClientResult FetchBlocking(std::vector<net::Address> addresses, ClientRequest request,
                           ClientOptions options);

}  // namespace meshlet::http

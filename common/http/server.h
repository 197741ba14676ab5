#pragma once

// HttpServer: a small request/response HTTP server for meshlet's own endpoints (the sidecar's
// admin API, the control plane's REST API and dashboard). It is not the proxy's data path: a
// request body is buffered whole (up to a limit) and a handler returns the whole response.
//
// It speaks HTTP/1.1 and HTTP/2 on one port: HTTP/2 when TLS negotiated ALPN "h2" or the client
// sends the HTTP/2 preface (prior knowledge), HTTP/1.1 otherwise. Everything runs on the loop's
// thread; the handler is called there and must not block. An AsyncRequestHandler answers later:
// it gets a Responder to call once, on the loop thread, from inside the handler or after it
// returned; a responder whose request is gone (the client reset it, the connection or the server
// closed) does nothing.
//
// Slow clients: each connection has one timer. While a handler is at work it is off; else while
// a request is arriving it is the request timeout (from the request's first byte), and otherwise
// the idle timeout. The server's max_connections bounds how many connections a client holds.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/codec.h"
#include "common/http/header_map.h"
#include "common/net/address.h"
#include "common/net/listener.h"
#include "common/net/transport.h"
#include "common/stats/stats.h"

namespace meshlet::http {

struct ServerRequest {
  HeaderMap headers;  // with :method, :path, :authority
  std::string body;
  net::Address peer;
  Protocol protocol = Protocol::kHttp11;

  absl::string_view method() const;
  // The path without the query string.
  absl::string_view path() const;
  // Query parameters, percent-decoded ("a=1&b" gives {a: 1, b: ""}).
  std::map<std::string, std::string> QueryParams() const;
};

// The body of a streamed response (ServerResponse::stream), sent in pieces as they come: a
// newline-delimited JSON stream. The server holds it while the request lives; the handler keeps
// its shared_ptr. Loop thread only.
class ResponseBodyStream {
 public:
  // Sends `data` as the next piece of the body; false (nothing sent) once the client is gone or
  // End() was called, or while the connection holds more than the server's
  // max_streamed_buffered_bytes the client has not read yet (the caller counts what it drops).
  bool Write(absl::string_view data);
  // Ends the body; later calls do nothing.
  void End();
  // The client went away (reset, connection closed, server shut down) before End().
  bool gone() const { return gone_; }
  // Called once, on the loop thread, when the client goes away before End(); not after End().
  void OnGone(std::function<void()> callback) { on_gone_ = std::move(callback); }

  // The server's side: where pieces go (`end`: the last), and the client's going.
  void Attach(std::function<bool(absl::string_view data, bool end)> sink) {
    sink_ = std::move(sink);
  }
  void Detach();

 private:
  std::function<bool(absl::string_view, bool)> sink_;
  std::function<void()> on_gone_;
  bool gone_ = false;
  bool ended_ = false;
};

struct ServerResponse {
  int status = 200;
  HeaderMap headers;  // regular headers only; content-length is set by the server
  std::string body;
  // Set: the body is streamed. The headers go out at once without content-length (HTTP/1.1
  // chunked), then `body` if not empty, and `stream` is called with the stream the handler
  // writes the rest to. While a streamed response is open the connection's timeouts are off.
  std::function<void(std::shared_ptr<ResponseBodyStream>)> stream;

  static ServerResponse Text(int status, std::string body);
  static ServerResponse Json(int status, std::string body);
};

// Why `request` came from a web page of another origin than `scheme`://<its authority>, or "" if
// it did not: Sec-Fetch-Site says neither same-origin nor none (browsers send it with every
// request), or Origin names another origin (browsers send it with every cross-origin POST). A
// page may post a form to any address without a CORS preflight; clients that are not browsers
// (meshctl, curl, kubelet) send neither header. For servers that refuse such writes (the sidecar's
// admin port, the control plane's API).
std::string CrossOriginReason(const ServerRequest& request, absl::string_view scheme);

using RequestHandler = std::function<ServerResponse(const ServerRequest&)>;
using Responder = std::function<void(ServerResponse)>;
using AsyncRequestHandler = std::function<void(const ServerRequest&, Responder)>;

struct HttpServerOptions {
  size_t max_request_body_bytes = 1 << 20;  // larger bodies get 413
  size_t max_connections = 256;             // beyond this, new connections are closed at once
  net::TransportFactory transport_factory;  // TLS; plaintext when empty
  // Requests must arrive whole (header section and body) within this from the first byte the
  // connection received while no request was arriving; past it the connection is closed (an
  // HTTP/1 client first gets 408). Time a handler takes does not count. 0: no limit.
  Duration request_timeout = std::chrono::seconds(30);
  // A connection with no request arriving or being answered is closed after this long. 0: never.
  Duration idle_timeout = std::chrono::seconds(120);
  // Counts connections closed by either timeout (discarded unless registered).
  Counter timeouts;
  // A streamed answer's pieces are refused (ResponseBodyStream::Write false) while its
  // connection holds more than this that the client has not read.
  size_t max_streamed_buffered_bytes = 1 << 20;
};

class HttpServer {
 public:
  static absl::StatusOr<std::unique_ptr<HttpServer>> Create(event::Loop& loop,
                                                            const net::Address& address,
                                                            HttpServerOptions options,
                                                            RequestHandler handler);
  static absl::StatusOr<std::unique_ptr<HttpServer>> Create(event::Loop& loop,
                                                            const net::Address& address,
                                                            HttpServerOptions options,
                                                            AsyncRequestHandler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound address (the real port when created with port 0).
  const net::Address& address() const;
  // Stops accepting and tells open connections to finish (HTTP/2 GOAWAY, HTTP/1 close).
  void Shutdown();
  size_t active_connections() const { return connections_.size(); }
  uint64_t requests_served() const { return requests_served_; }
  // Connections accepted (those refused over max_connections too).
  uint64_t connections_accepted() const { return connections_accepted_; }

 private:
  class ServerConnectionImpl;
  HttpServer(event::Loop& loop, HttpServerOptions options, AsyncRequestHandler handler);
  void OnAccept(std::unique_ptr<net::Connection> connection);
  void RemoveConnection(ServerConnectionImpl* connection);

  event::Loop& loop_;
  const HttpServerOptions options_;
  const AsyncRequestHandler handler_;
  std::unique_ptr<net::Listener> listener_;
  std::map<ServerConnectionImpl*, std::unique_ptr<ServerConnectionImpl>> connections_;
  uint64_t requests_served_ = 0;
  uint64_t connections_accepted_ = 0;
  bool shutting_down_ = false;
};

}  // namespace meshlet::http

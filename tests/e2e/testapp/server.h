#pragma once

// The test app's HTTP/1.1 server: like common/http/server.h's HttpServer (a request body buffered
// whole, a whole response), except that a request is answered whenever the handler is ready,
// not when the handler returns. The test app keeps many requests open at once, each waiting for
// a delay or for its downstream calls, on one event loop; HttpServer's handler must return the
// response, which would make every such wait block the loop. HTTP/1.1 only: behind a sidecar the
// app is reached over loopback, where the sidecar speaks HTTP/1.1 to it.
//
// Ownership and threading: everything runs on the loop's thread. The server owns its connections
// and their request streams. The handler gets a shared Exchange per request; Respond() may be
// called during the handler or on any later loop callback, once. When the client goes away
// first (or the server is destroyed), the Exchange is cancelled and Respond() does nothing, so a
// late answer is never an error. Destroy the server before its Loop.

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/event/loop.h"
#include "common/http/server.h"
#include "common/net/address.h"
#include "common/net/connection.h"
#include "tests/e2e/testapp/acceptor.h"

namespace meshlet::testapp {

class RequestStream;     // server.cc
class ServerConnection;  // server.cc

// One request and the way to answer it. The request and response are HttpServer's types.
class Exchange {
 public:
  const http::ServerRequest& request() const { return request_; }

  // Sends the answer (content-length is set for you). Does nothing after the first call or once
  // cancelled.
  void Respond(http::ServerResponse response);
  // Answers nothing and closes the request's connection with a TCP RST instead (the client sees
  // a connection reset, not an end of stream), to play a backend that fails that way. Counts as
  // the answer: does nothing after Respond() or once cancelled.
  void ResetConnection();
  bool responded() const { return responded_; }
  // The client went away (or the server was destroyed) before the answer.
  bool cancelled() const { return stream_ == nullptr && !responded_; }

 private:
  friend class RequestStream;
  Exchange() = default;

  http::ServerRequest request_;
  RequestStream* stream_ = nullptr;  // null once answered or gone
  bool responded_ = false;
};

struct ServerOptions {
  size_t max_connections = 1024;            // beyond this, new connections are closed at once
  size_t max_request_body_bytes = 1 << 20;  // larger bodies get 413
};

class Server {
 public:
  using Handler = absl::AnyInvocable<void(std::shared_ptr<Exchange>)>;

  // Listens on `address` (port 0: any free one).
  static absl::StatusOr<std::unique_ptr<Server>> Create(event::Loop& loop,
                                                        const net::Address& address,
                                                        ServerOptions options, Handler handler);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  const net::Address& address() const { return acceptor_->address(); }
  // Stops accepting; idle connections close now, the others after their current answer.
  void Shutdown() { acceptor_->Shutdown(); }
  size_t connections() const { return acceptor_->connections(); }
  // Requests read whole and handed to the handler.
  uint64_t requests() const { return requests_; }

 private:
  friend class ServerConnection;
  friend class RequestStream;
  Server(event::Loop& loop, ServerOptions options, Handler handler);

  event::Loop& loop_;
  const ServerOptions options_;
  Handler handler_;
  std::unique_ptr<Acceptor> acceptor_;
  uint64_t requests_ = 0;
};

}  // namespace meshlet::testapp

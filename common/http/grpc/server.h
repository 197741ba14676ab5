#pragma once

// gRPC server on one event::Loop, over meshlet's HTTP/2 codec (docs/grpc.md). It listens on one
// address, plaintext (h2c with prior knowledge) or TLS (give a TransportFactory whose context
// offers ALPN "h2"), and routes each request by its `:path` ("/package.Service/Method") to the
// handler registered for it. Unknown methods get a trailers-only UNIMPLEMENTED reply.
//
// Every kind of RPC (unary, client/server streaming, bidi) uses one streaming API: the handler
// receives a ServerCall and talks to the client through it:
//
//   server.RegisterMethod("/meshlet.xds.AggregatedDiscoveryService/StreamAggregatedResources",
//       [](std::shared_ptr<ServerCall> call) {
//         call->OnProtoMessage<DiscoveryRequest>([call](DiscoveryRequest request) { ... });
//         call->OnHalfClose([call] { call->Finish(StatusCode::kOk); });
//         call->OnCancel([] { ... });
//       });
//
// Ownership: the Server owns its listener and connections. A ServerCall is shared: the server
// holds it while the stream is open, the handler holds it for as long as it wants to talk to the
// client. Once the call has ended (finished by the handler, cancelled by the client, deadline,
// connection loss) every further Send/Finish is ignored and returns false, so a handler may keep
// a stale call around safely.
//
// Callbacks fire on the loop thread:
//   handler      when a request's headers arrive; register the call's callbacks before returning
//                (messages that arrive while no OnMessage callback is set wait, and so does the
//                client: the stream stops returning flow-control window).
//   OnMessage    once per request message, in order.
//   OnHalfClose  the client finished sending (after its last message).
//   OnCancel     the call ended without the handler's Finish: client reset or went away,
//                deadline (the client gets DEADLINE_EXCEEDED), a limit was exceeded, server
//                shutdown. Fires at most once; nothing fires after it.
//   OnWriteBufferWatermark(true/false)
//                the bytes the handler sent but the client has not taken passed the stream's
//                buffer limit / drained below half of it. While above, the server also stops
//                delivering request messages (a bidi echo cannot pile up replies unboundedly).
// A callback never fires from inside a method the handler called on the call (an OnCancel such
// a method causes is posted to a later loop turn), except that ResumeReading() may deliver
// queued messages before it returns.
//
// Limits: request messages above max_receive_message_size end the call with
// RESOURCE_EXHAUSTED; so does sending a message above max_send_message_size. Only the identity
// encoding is supported: a request declaring another grpc-encoding gets UNIMPLEMENTED, and a
// message with the compressed flag set ends the call with INTERNAL.
//
// Shutdown(grace) stops accepting and sends GOAWAY (in-flight calls continue; clients open new
// ones elsewhere); calls still open after `grace` end with UNAVAILABLE and their connections
// close. Destroying the Server closes everything at once without calling handlers back.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/codec.h"
#include "common/http/grpc/call_util.h"
#include "common/http/grpc/framing.h"
#include "common/http/grpc/status.h"
#include "common/http/h2/codec.h"
#include "common/http/header_map.h"
#include "common/net/address.h"
#include "common/net/listener.h"
#include "common/net/transport.h"
#include "common/stats/stats.h"
#include "google/protobuf/message_lite.h"

namespace meshlet::http::grpc {

struct ServerOptions {
  // One Transport per accepted connection (TLS with ALPN "h2"); null means plaintext h2c.
  net::TransportFactory transport_factory;
  h2::Http2Options http2;
  size_t max_receive_message_size = kDefaultMaxMessageSize;
  size_t max_send_message_size = kDefaultMaxMessageSize;
  // Connections beyond this are closed as soon as they are accepted.
  size_t max_connections = 4096;
  // A connection without calls for this long is told to go away (GOAWAY); zero: never.
  Duration max_connection_idle{0};
  // A connection must finish its TLS handshake and open its first call within this of being
  // accepted, else it is closed (no GOAWAY: it may have no TLS session yet); zero: no limit.
  Duration handshake_timeout{0};
  // Counts connections closed by handshake_timeout or told to go away by max_connection_idle
  // (discarded unless registered).
  Counter timeouts;
};

struct ServerCounters {
  uint64_t calls_started = 0;
  uint64_t calls_unimplemented = 0;
  uint64_t calls_cancelled = 0;  // ended without the handler's Finish
  uint64_t deadlines_exceeded = 0;
  uint64_t messages_received = 0;
  uint64_t messages_sent = 0;
  uint64_t connections_accepted = 0;
};

class Server;

class ServerCall : public std::enable_shared_from_this<ServerCall> {
 public:
  ~ServerCall();
  ServerCall(const ServerCall&) = delete;
  ServerCall& operator=(const ServerCall&) = delete;

  // "/package.Service/Method".
  const std::string& method() const { return method_; }
  // The request headers: pseudo-headers, gRPC's own (grpc-timeout, te, content-type) and the
  // client's custom metadata. "-bin" values are as on the wire (base64).
  const HeaderMap& metadata() const { return metadata_; }
  const net::Address& peer_address() const { return peer_address_; }
  // TLS details of the connection (ALPN, peer URI SANs such as the SPIFFE id); empty for h2c.
  const net::PeerInfo& peer() const { return peer_; }
  // From grpc-timeout; nullopt without one.
  std::optional<MonotonicTime> deadline() const { return deadline_; }

  void OnMessage(std::function<void(std::string message)> callback);
  void OnHalfClose(std::function<void()> callback);
  void OnCancel(std::function<void()> callback);
  void OnWriteBufferWatermark(std::function<void(bool above_high)> callback);

  // Parses each request message as `T`; a message that does not parse ends the call with
  // INVALID_ARGUMENT (and OnCancel).
  template <typename T>
  void OnProtoMessage(std::function<void(T message)> callback) {
    OnMessage(grpc_internal::ParseEach<T>(std::move(callback), "request", [this](std::string why) {
      Abort(StatusCode::kInvalidArgument, why);
    }));
  }

  // A unary method's request, as `T`: `handler` runs once the client has finished sending (not if
  // the call ended before), with the request, or nullopt when none was sent. A second message
  // ends the call with INVALID_ARGUMENT. Sets the OnMessage and OnHalfClose callbacks.
  template <typename T>
  void OnUnaryRequest(std::function<void(std::optional<T> request)> handler) {
    auto request = std::make_shared<std::optional<T>>();
    OnProtoMessage<T>([this, request](T message) {
      if (request->has_value()) {
        Finish(StatusCode::kInvalidArgument, "unary method: one request only");
        return;
      }
      *request = std::move(message);
    });
    OnHalfClose([this, request, handler = std::move(handler)] {
      if (!ended()) handler(std::move(*request));
    });
  }

  // Adds response headers; they go out with the first message or the Finish, whichever comes
  // first. Ignored after that.
  void AddInitialMetadata(absl::string_view name, absl::string_view value);
  // Sends one response message. False if the call has ended (or the message is over the send
  // limit, which ends the call with RESOURCE_EXHAUSTED).
  bool Send(absl::string_view message);
  // False if serialization fails (the call then ends with INTERNAL) or the call has ended.
  bool SendProto(const google::protobuf::MessageLite& message);
  // Ends the call with a status (and custom trailing metadata). Without any message sent this is
  // a trailers-only response. False if the call had already ended.
  bool Finish(StatusCode code, absl::string_view message = "",
              const HeaderMap& trailing_metadata = HeaderMap());

  // Stops / resumes delivering request messages (counted with the server's own reasons: the
  // write watermark, no OnMessage callback yet). A paused call stops returning flow-control
  // window, so the client stalls after one stream window.
  void PauseReading();
  void ResumeReading();

  // Ended for whatever reason; Send/Finish are ignored from now on.
  bool ended() const { return ended_; }
  bool cancelled() const { return cancelled_; }
  bool write_buffer_above_high_watermark() const { return watermark_.above_high(); }

 private:
  friend class Server;
  class StreamAdapter;

  struct Owner {
    virtual ~Owner() = default;
    // This side ended the call (the stream may still be draining).
    virtual void OnCallEnding(ServerCall& call) = 0;
    // The codec is done with the call's stream.
    virtual void OnCallReleased(ServerCall& call) = 0;
  };

  ServerCall(event::Loop& loop, Server& server, Owner& owner, StreamEncoder& encoder,
             net::Address peer_address, net::PeerInfo peer);

  // StreamDecoder / StreamCallbacks events, forwarded by the adapter.
  void DecodeHeaders(HeaderMapPtr headers, bool end_stream);
  void DecodeData(net::Buffer& data, bool end_stream);
  void DecodeTrailers();
  void OnResetStream(StreamResetReason reason, absl::string_view details);
  void OnAboveWriteBufferHighWatermark();
  void OnBelowWriteBufferLowWatermark();

  // Validates the request and runs the handler, or replies with an error.
  void Dispatch();
  void DeliverMessages();
  void OnDeadline();
  // Ends the call from the server's side: replies with `code` (unless the stream is gone) and
  // tells the handler through OnCancel.
  void Abort(StatusCode code, absl::string_view message);
  // Marks the call ended and the stream no longer ours to write; `cancel` fires OnCancel (posted
  // when inside a handler's method call).
  void End(bool cancel);
  void ReleaseReadDisable();
  void FireCancel();
  void SendHeadersIfNeeded();
  void UpdateReadDisable();
  // The server is going away: no callbacks, no writes.
  void Detach();

  event::Loop& loop_;
  Server* server_;
  Owner* owner_;
  std::unique_ptr<StreamAdapter> adapter_;
  StreamEncoder* encoder_;  // null once the stream is no longer ours to write
  std::string method_;
  HeaderMap metadata_;
  net::Address peer_address_;
  net::PeerInfo peer_;
  std::optional<MonotonicTime> deadline_;
  std::unique_ptr<event::Timer> deadline_timer_;
  grpc_internal::InboundMessages inbound_;
  HeaderMap initial_metadata_;

  std::function<void(std::string)> on_message_;
  std::function<void()> on_half_close_;
  std::function<void()> on_cancel_;
  grpc_internal::WatermarkReporter watermark_;

  bool dispatched_ = false;
  bool in_handler_ = false;
  bool headers_sent_ = false;
  bool remote_half_closed_ = false;  // the request ended on the wire
  bool half_close_delivered_ = false;
  bool ended_ = false;
  bool cancelled_ = false;
  bool detached_ = false;
  bool delivering_ = false;
  bool stream_read_disabled_ = false;
  int user_pauses_ = 0;
  int user_call_depth_ = 0;  // >0 while inside a method the handler called
};

class Server {
 public:
  using Handler = std::function<void(std::shared_ptr<ServerCall> call)>;

  explicit Server(event::Loop& loop, ServerOptions options = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // `path` is "/package.Service/Method". Fails on a malformed or duplicate path.
  absl::Status RegisterMethod(absl::string_view path, Handler handler);
  // Binds and starts accepting (port 0: read the port back with address()).
  absl::Status Start(const net::Address& address);
  const net::Address& address() const;

  // Graceful stop; see the file comment. Zero grace ends open calls at once.
  void Shutdown(Duration grace);
  bool shutting_down() const { return shutting_down_; }

  size_t active_connections() const { return connections_.size(); }
  size_t active_calls() const;
  const ServerCounters& counters() const { return counters_; }
  const ServerOptions& options() const { return options_; }

 private:
  friend class ServerCall;
  class ConnectionImpl;

  void OnAccept(std::unique_ptr<net::Connection> connection);
  void RemoveConnection(ConnectionImpl* connection);
  const Handler* FindHandler(absl::string_view path) const;
  void ForceClose();

  event::Loop& loop_;
  const ServerOptions options_;
  absl::flat_hash_map<std::string, Handler> handlers_;
  std::unique_ptr<net::Listener> listener_;
  absl::flat_hash_map<ConnectionImpl*, std::unique_ptr<ConnectionImpl>> connections_;
  std::unique_ptr<event::Timer> grace_timer_;
  ServerCounters counters_;
  bool shutting_down_ = false;
};

}  // namespace meshlet::http::grpc

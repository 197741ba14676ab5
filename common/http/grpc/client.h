#pragma once

// gRPC client on one event::Loop, over meshlet's HTTP/2 codec (docs/grpc.md).
//
// Channel: the way to one server address, plaintext (h2c with prior knowledge) or TLS (give a
// TransportFactory whose context offers ALPN "h2"). It connects lazily, on the first call, and
// multiplexes every call over one HTTP/2 connection. When that connection is lost or the server
// says GOAWAY, the next call opens a new one (calls in flight on a GOAWAY'd connection finish
// there). Optional keepalive: a PING every keepalive_interval; no ACK within keepalive_timeout
// closes the connection (and fails its calls with UNAVAILABLE).
//
// ClientCall: one RPC of any kind (unary, client/server streaming, bidi), started by
// Channel::StartCall with metadata and an optional timeout (sent as grpc-timeout and enforced
// locally: DEADLINE_EXCEEDED). Send messages, HalfClose when done sending, Cancel to give up.
//
//   auto call = channel.StartCall("/meshlet.xds.AggregatedDiscoveryService/"
//                                 "StreamAggregatedResources");
//   call->OnProtoMessage<DiscoveryResponse>([](DiscoveryResponse response) { ... });
//   call->OnFinish([](StatusCode code, const std::string& message, const HeaderMap& trailers) {});
//   call->SendProto(request);
//
// Ownership: the caller owns the Channel; once the Channel is destroyed its calls end without
// calling back (never destroy it from inside one of its calls' callbacks: DeferDelete it). A
// ClientCall is shared between the channel (while the stream is open) and the caller (its
// handle, also the way to cancel); dropping the handle does not cancel the call.
//
// Callbacks fire on the loop thread, never from inside StartCall or a method the caller called
// on the call (OnFinish caused by Cancel(), a send limit, ... is posted to a later loop turn):
//   OnInitialMetadata  the response headers arrived (not for a trailers-only response).
//   OnMessage          once per response message, in order. While no OnMessage callback is set
//                      (or reading is paused) messages wait and the server is flow-controlled.
//   OnFinish           exactly once, after the last message: the status from the server's
//                      trailers, or a local one: CANCELLED (Cancel), DEADLINE_EXCEEDED,
//                      UNAVAILABLE (connection failed or lost, stream refused),
//                      RESOURCE_EXHAUSTED (message over a limit), INTERNAL (protocol errors,
//                      a response that does not parse). A status that is known before OnFinish
//                      is set waits for it.
//   OnWriteBufferWatermark(true/false)
//                      sent bytes not yet taken by the server passed the stream's buffer limit /
//                      drained below half of it: stop / resume sending.

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
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
#include "common/net/transport.h"
#include "google/protobuf/message_lite.h"

namespace meshlet::http::grpc {

struct ChannelOptions {
  // One Transport per connection (TLS with ALPN "h2"); null means plaintext h2c.
  net::TransportFactory transport_factory;
  // :authority of every call; empty means the address ("127.0.0.1:15012").
  std::string authority;
  h2::Http2Options http2;
  Duration connect_timeout = std::chrono::seconds(5);
  // PING every interval (zero: never); no ACK within the timeout closes the connection.
  Duration keepalive_interval{0};
  Duration keepalive_timeout = std::chrono::seconds(20);
  size_t max_receive_message_size = kDefaultMaxMessageSize;
  size_t max_send_message_size = kDefaultMaxMessageSize;
  std::string user_agent = "meshlet-grpc";
};

struct CallOptions {
  // Custom metadata (lowercase names; "-bin" values already base64). Pseudo-headers and the
  // names gRPC reserves (content-type, te, grpc-*) are ignored.
  HeaderMap metadata;
  // Deadline relative to the start of the call.
  std::optional<Duration> timeout;
};

class Channel;

class ClientCall : public std::enable_shared_from_this<ClientCall> {
 public:
  using FinishCallback =
      std::function<void(StatusCode code, const std::string& message, const HeaderMap& trailers)>;

  ~ClientCall();
  ClientCall(const ClientCall&) = delete;
  ClientCall& operator=(const ClientCall&) = delete;

  const std::string& method() const { return method_; }

  void OnInitialMetadata(std::function<void(const HeaderMap& metadata)> callback);
  void OnMessage(std::function<void(std::string message)> callback);
  void OnFinish(FinishCallback callback);
  void OnWriteBufferWatermark(std::function<void(bool above_high)> callback);

  // Parses each response message as `T`; one that does not parse ends the call with INTERNAL.
  template <typename T>
  void OnProtoMessage(std::function<void(T message)> callback) {
    OnMessage(grpc_internal::ParseEach<T>(std::move(callback), "response", [this](std::string why) {
      Fail(StatusCode::kInternal, why);
    }));
  }

  // Sends one request message. False once the call has finished or half-closed (or the message
  // is over the send limit, which ends the call with RESOURCE_EXHAUSTED).
  bool Send(absl::string_view message);
  // Sends one request message made of `pieces` in order, copied once into the frame (no message
  // is assembled first).
  bool SendPieces(std::initializer_list<absl::string_view> pieces);
  // False if serialization fails (the call then ends with INTERNAL) or Send fails.
  bool SendProto(const google::protobuf::MessageLite& message);
  // No more messages from this side. False if already done or finished.
  bool HalfClose();
  // Ends the call with CANCELLED (RST_STREAM to the server). No-op once finished.
  void Cancel();

  // Stops / resumes delivering response messages (and the status behind them).
  void PauseReading();
  void ResumeReading();

  bool finished() const { return finished_; }
  bool write_buffer_above_high_watermark() const { return watermark_.above_high(); }

 private:
  friend class Channel;
  class StreamAdapter;

  struct Owner {
    virtual ~Owner() = default;
    virtual void OnCallEnding(ClientCall& call) = 0;
    virtual void OnCallReleased(ClientCall& call) = 0;
  };

  ClientCall(event::Loop& loop, Channel& channel, std::string method);

  // Writes the request headers on `encoder` (may reset the stream at once).
  void Start(Owner& owner, StreamEncoder& encoder, const HeaderMap& headers,
             std::optional<Duration> timeout);

  void DecodeHeaders(HeaderMapPtr headers, bool end_stream);
  void DecodeData(net::Buffer& data, bool end_stream);
  void DecodeTrailers(HeaderMapPtr trailers);
  void OnResetStream(StreamResetReason reason, absl::string_view details);
  void OnAboveWriteBufferHighWatermark();
  void OnBelowWriteBufferLowWatermark();
  void OnConnectionLost(absl::string_view why);
  // The server ended its side of the stream (trailers, or END_STREAM).
  void RemoteEnded();

  void DeliverMessages();
  void UpdateReadDisable();
  // Ends the call locally: resets the stream if it is still ours, drops waiting messages.
  void Fail(StatusCode code, absl::string_view message);
  // Records the final status and gives up the stream.
  void Complete(StatusCode code, std::string message, HeaderMap trailers);
  void MaybeNotifyFinish();
  void Detach();

  event::Loop& loop_;
  Channel* channel_;
  Owner* owner_ = nullptr;
  std::unique_ptr<StreamAdapter> adapter_;
  StreamEncoder* encoder_ = nullptr;
  std::string method_;
  std::unique_ptr<event::Timer> deadline_timer_;
  grpc_internal::InboundMessages inbound_;
  size_t max_send_message_size_;

  std::function<void(const HeaderMap&)> on_initial_metadata_;
  std::function<void(std::string)> on_message_;
  FinishCallback on_finish_;
  grpc_internal::WatermarkReporter watermark_;

  // The server's status, waiting behind queued messages.
  std::optional<GrpcStatus> remote_status_;
  HeaderMap remote_trailers_;

  StatusCode final_code_ = StatusCode::kUnknown;
  std::string final_message_;
  HeaderMap final_trailers_;

  bool half_closed_ = false;
  bool remote_ended_ = false;
  bool finished_ = false;
  bool finish_notified_ = false;
  bool finish_posted_ = false;
  bool detached_ = false;
  bool delivering_ = false;
  bool stream_read_disabled_ = false;
  int user_pauses_ = 0;
  int user_call_depth_ = 0;
};

class Channel {
 public:
  using UnaryCallback =
      std::function<void(StatusCode code, const std::string& message, std::string response)>;

  Channel(event::Loop& loop, const net::Address& address, ChannelOptions options = {});
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // Starts a call to "/package.Service/Method" (connecting first if needed). Never null; a call
  // that cannot start finishes with UNAVAILABLE once OnFinish is set.
  std::shared_ptr<ClientCall> StartCall(absl::string_view method, CallOptions options = {});

  // One request, one response: `done` gets the status and, when OK, the response bytes.
  std::shared_ptr<ClientCall> Unary(absl::string_view method, absl::string_view request,
                                    CallOptions options, UnaryCallback done);

  const net::Address& address() const { return address_; }
  // A connection is open (or being opened) for new calls.
  bool has_connection() const { return current_ != nullptr; }
  // Connections started so far, for tests and stats of reconnects.
  uint64_t connection_attempts() const { return connection_attempts_; }
  size_t active_calls() const;

 private:
  friend class ClientCall;
  class ConnectionImpl;

  ConnectionImpl& CurrentConnection();
  void RemoveConnection(ConnectionImpl* connection);
  void OnGoAway(ConnectionImpl* connection);

  event::Loop& loop_;
  const net::Address address_;
  const ChannelOptions options_;
  std::string authority_;
  ConnectionImpl* current_ = nullptr;
  absl::flat_hash_map<ConnectionImpl*, std::unique_ptr<ConnectionImpl>> connections_;
  // Calls whose OnFinish has not fired yet: told to stay quiet when the channel goes away.
  absl::flat_hash_set<ClientCall*> unfinished_;
  uint64_t connection_attempts_ = 0;
};

}  // namespace meshlet::http::grpc

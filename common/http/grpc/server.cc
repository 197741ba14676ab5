#include "common/http/grpc/server.h"

#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/http/connection_io.h"
#include "common/net/buffer.h"
#include "common/net/connection.h"

namespace meshlet::http::grpc {

using grpc_internal::UserCallScope;

namespace {

// "/package.Service/Method": two non-empty segments.
bool ValidMethodPath(absl::string_view path) {
  if (path.size() < 4 || path[0] != '/') return false;
  size_t slash = path.find('/', 1);
  return slash != absl::string_view::npos && slash > 1 && slash + 1 < path.size() &&
         path.find('/', slash + 1) == absl::string_view::npos;
}

}  // namespace

// Receives the codec's events for one stream and hands them to the call; owned by the call,
// which the connection keeps alive for as long as the codec may call it.
class ServerCall::StreamAdapter final : public StreamDecoder, public StreamCallbacks {
 public:
  explicit StreamAdapter(ServerCall& call) : call_(call) {}

  void DecodeHeaders(HeaderMapPtr headers, bool end_stream) override {
    call_.DecodeHeaders(std::move(headers), end_stream);
  }
  void DecodeData(net::Buffer& data, bool end_stream) override {
    call_.DecodeData(data, end_stream);
  }
  void DecodeTrailers(HeaderMapPtr) override { call_.DecodeTrailers(); }
  void OnResetStream(StreamResetReason reason, absl::string_view details) override {
    call_.OnResetStream(reason, details);
  }
  void OnAboveWriteBufferHighWatermark() override { call_.OnAboveWriteBufferHighWatermark(); }
  void OnBelowWriteBufferLowWatermark() override { call_.OnBelowWriteBufferLowWatermark(); }

 private:
  ServerCall& call_;
};

// ----- ServerCall -----------------------------------------------------------------------------

ServerCall::ServerCall(event::Loop& loop, Server& server, Owner& owner, StreamEncoder& encoder,
                       net::Address peer_address, net::PeerInfo peer)
    : loop_(loop),
      server_(&server),
      owner_(&owner),
      adapter_(std::make_unique<StreamAdapter>(*this)),
      encoder_(&encoder),
      peer_address_(std::move(peer_address)),
      peer_(std::move(peer)),
      inbound_(server.options().max_receive_message_size) {
  encoder.GetStream().AddCallbacks(*adapter_);
}

ServerCall::~ServerCall() = default;

void ServerCall::OnMessage(std::function<void(std::string message)> callback) {
  if (ended_) return;
  on_message_ = std::move(callback);
  // Messages that waited for the callback go out on a later turn, never inside this setter.
  if (dispatched_ && !in_handler_) {
    loop_.Post([weak = weak_from_this()] {
      if (std::shared_ptr<ServerCall> self = weak.lock()) self->DeliverMessages();
    });
  }
}

void ServerCall::OnHalfClose(std::function<void()> callback) {
  if (!ended_) on_half_close_ = std::move(callback);
}

void ServerCall::OnCancel(std::function<void()> callback) {
  if (!ended_) on_cancel_ = std::move(callback);
}

void ServerCall::OnWriteBufferWatermark(std::function<void(bool above_high)> callback) {
  if (!ended_) watermark_.set_callback(std::move(callback));
}

void ServerCall::AddInitialMetadata(absl::string_view name, absl::string_view value) {
  if (headers_sent_ || ended_ || name.empty() || name[0] == ':') return;
  initial_metadata_.Add(name, value);
}

void ServerCall::SendHeadersIfNeeded() {
  if (headers_sent_ || encoder_ == nullptr) return;
  headers_sent_ = true;
  HeaderMap headers{{":status", "200"},
                    {"content-type", "application/grpc"},
                    {"grpc-accept-encoding", "identity"}};
  for (const HeaderView h : initial_metadata_) headers.Add(h.name, h.value);
  initial_metadata_.Clear();
  encoder_->EncodeHeaders(headers, false);
}

bool ServerCall::Send(absl::string_view message) {
  UserCallScope scope(user_call_depth_);
  if (ended_ || encoder_ == nullptr) return false;
  if (message.size() > server_->options().max_send_message_size) {
    Abort(StatusCode::kResourceExhausted,
          absl::StrCat("response message of ", message.size(), " bytes exceeds the limit of ",
                       server_->options().max_send_message_size));
    return false;
  }
  SendHeadersIfNeeded();
  if (encoder_ == nullptr) return false;
  net::Buffer framed;
  EncodeMessage(message, framed);
  encoder_->EncodeData(framed, false);
  ++server_->counters_.messages_sent;
  return !ended_;
}

bool ServerCall::SendProto(const google::protobuf::MessageLite& message) {
  UserCallScope scope(user_call_depth_);
  if (ended_) return false;
  std::string bytes;
  if (!message.SerializeToString(&bytes)) {
    Abort(StatusCode::kInternal,
          absl::StrCat("could not serialize the response ", message.GetTypeName()));
    return false;
  }
  return Send(bytes);
}

bool ServerCall::Finish(StatusCode code, absl::string_view message,
                        const HeaderMap& trailing_metadata) {
  UserCallScope scope(user_call_depth_);
  if (ended_ || encoder_ == nullptr) return false;
  // Ended before writing: a reset the write may cause is then not taken for a cancellation.
  ended_ = true;
  ReleaseReadDisable();
  if (encoder_ == nullptr) {
    End(/*cancel=*/false);
    return false;
  }
  HeaderMap trailers;
  if (headers_sent_) {
    trailers = StatusTrailers(code, message);
  } else {
    trailers = LocalReplyHeaders(code, message);
    for (const HeaderView h : initial_metadata_) trailers.Add(h.name, h.value);
  }
  for (const HeaderView h : trailing_metadata) {
    if (h.name.empty() || h.name[0] == ':' || absl::StartsWith(h.name, "grpc-")) continue;
    trailers.Add(h.name, h.value);
  }
  if (headers_sent_) {
    encoder_->EncodeTrailers(trailers);
  } else {
    headers_sent_ = true;
    encoder_->EncodeHeaders(trailers, true);
  }
  End(/*cancel=*/false);
  return true;
}

void ServerCall::PauseReading() {
  UserCallScope scope(user_call_depth_);
  ++user_pauses_;
  UpdateReadDisable();
}

void ServerCall::ResumeReading() {
  if (user_pauses_ == 0) return;
  --user_pauses_;
  DeliverMessages();
}

void ServerCall::DecodeHeaders(HeaderMapPtr headers, bool end_stream) {
  metadata_ = std::move(*headers);
  remote_half_closed_ = end_stream;
  Dispatch();
}

void ServerCall::Dispatch() {
  if (server_ == nullptr) return;
  auto reply = [this](HeaderMap headers) {
    ended_ = true;
    headers_sent_ = true;
    encoder_->EncodeHeaders(headers, true);
    End(/*cancel=*/false);
  };
  std::optional<absl::string_view> http_method = metadata_.Get(":method");
  if (http_method != "POST") {
    reply(HeaderMap{{":status", "405"}, {"allow", "POST"}});
    return;
  }
  if (!IsGrpcRequest(metadata_)) {
    reply(HeaderMap{{":status", "415"}});
    return;
  }
  method_ = std::string(metadata_.Get(":path").value_or(""));
  std::optional<absl::string_view> encoding = metadata_.Get("grpc-encoding");
  if (encoding.has_value() && *encoding != "identity") {
    HeaderMap headers = LocalReplyHeaders(
        StatusCode::kUnimplemented,
        absl::StrCat("grpc-encoding \"", *encoding, "\" is not supported; only identity is"));
    headers.Add("grpc-accept-encoding", "identity");
    reply(std::move(headers));
    return;
  }
  const Server::Handler* handler = server_->FindHandler(method_);
  if (handler == nullptr) {
    ++server_->counters_.calls_unimplemented;
    reply(LocalReplyHeaders(StatusCode::kUnimplemented, absl::StrCat("unknown method ", method_)));
    return;
  }
  if (std::optional<absl::string_view> timeout = metadata_.Get("grpc-timeout")) {
    // A malformed value is ignored rather than failing the call (the spec asks for leniency).
    if (std::optional<Duration> d = ParseGrpcTimeout(*timeout)) {
      if (d->count() <= 0) {
        ++server_->counters_.deadlines_exceeded;
        reply(LocalReplyHeaders(StatusCode::kDeadlineExceeded, "deadline exceeded"));
        return;
      }
      deadline_ = loop_.Now() + *d;
      deadline_timer_ = std::make_unique<event::Timer>(loop_, [this] { OnDeadline(); });
      deadline_timer_->Enable(*d);
    }
  }
  ++server_->counters_.calls_started;
  dispatched_ = true;
  std::shared_ptr<ServerCall> self = shared_from_this();
  in_handler_ = true;
  (*handler)(self);
  in_handler_ = false;
  DeliverMessages();
}

void ServerCall::DecodeData(net::Buffer& data, bool end_stream) {
  if (ended_) {
    data.Clear();
    return;
  }
  absl::Status status = inbound_.Decode(data);
  if (end_stream) remote_half_closed_ = true;
  if (!status.ok()) {
    Abort(FromAbslStatusCode(status.code()), status.message());
    return;
  }
  if (end_stream && inbound_.HasPartialMessage()) {
    Abort(StatusCode::kInternal, "request ended in the middle of a message");
    return;
  }
  DeliverMessages();
}

void ServerCall::DecodeTrailers() {
  if (ended_) return;
  remote_half_closed_ = true;
  if (inbound_.HasPartialMessage()) {
    Abort(StatusCode::kInternal, "request ended in the middle of a message");
    return;
  }
  DeliverMessages();
}

void ServerCall::DeliverMessages() {
  if (delivering_ || !dispatched_) return;
  std::shared_ptr<ServerCall> self = shared_from_this();
  delivering_ = true;
  while (!ended_ && user_pauses_ == 0 && !watermark_.above_high()) {
    if (!inbound_.empty()) {
      if (!on_message_) break;
      // Called through a copy: the callback may replace itself or end the call.
      std::function<void(std::string)> callback = on_message_;
      if (server_ != nullptr) ++server_->counters_.messages_received;
      callback(inbound_.Pop());
      continue;
    }
    if (remote_half_closed_ && !half_close_delivered_) {
      half_close_delivered_ = true;
      if (on_half_close_) {
        std::function<void()> callback = on_half_close_;
        callback();
      }
    }
    break;
  }
  delivering_ = false;
  UpdateReadDisable();
}

void ServerCall::UpdateReadDisable() {
  if (encoder_ == nullptr || ended_) return;
  bool disable = dispatched_ &&
                 (user_pauses_ > 0 || watermark_.above_high() || !on_message_ || !inbound_.empty());
  if (disable == stream_read_disabled_) return;
  stream_read_disabled_ = disable;
  // Re-enabling may deliver buffered data (DecodeData) before it returns.
  encoder_->GetStream().ReadDisable(disable);
}

void ServerCall::OnAboveWriteBufferHighWatermark() {
  if (ended_ || !watermark_.MarkHigh()) return;
  UpdateReadDisable();
  watermark_.ReportHigh(loop_, user_call_depth_ > 0,
                        [self = shared_from_this()] { return !self->ended_; });
}

void ServerCall::OnBelowWriteBufferLowWatermark() {
  if (ended_ || !watermark_.OnLow()) return;
  DeliverMessages();
}

void ServerCall::OnDeadline() {
  if (ended_) return;
  if (server_ != nullptr) ++server_->counters_.deadlines_exceeded;
  Abort(StatusCode::kDeadlineExceeded, "deadline exceeded");
}

void ServerCall::Abort(StatusCode code, absl::string_view message) {
  if (ended_) return;
  ended_ = true;
  ReleaseReadDisable();
  if (encoder_ != nullptr) {
    if (headers_sent_) {
      encoder_->EncodeTrailers(StatusTrailers(code, message));
    } else {
      headers_sent_ = true;
      encoder_->EncodeHeaders(LocalReplyHeaders(code, message), true);
    }
  }
  End(/*cancel=*/dispatched_);
}

void ServerCall::ReleaseReadDisable() {
  // Before the final frame: once the response is complete the codec may free the stream. The
  // rest of the request must reach the codec's decoder (which drops it, as the call has ended),
  // or the stream would never complete.
  if (encoder_ == nullptr || !stream_read_disabled_) return;
  stream_read_disabled_ = false;
  encoder_->GetStream().ReadDisable(false);
}

void ServerCall::End(bool cancel) {
  ended_ = true;
  encoder_ = nullptr;
  // Destroying the timer from its own callback is allowed (see timer.h).
  deadline_timer_.reset();
  inbound_.Clear();
  std::function<void()> on_cancel = std::move(on_cancel_);
  // Callbacks often hold the call itself; dropping them breaks that cycle. Any callback running
  // right now runs from a copy.
  on_message_ = nullptr;
  on_half_close_ = nullptr;
  on_cancel_ = nullptr;
  watermark_.clear_callback();
  if (cancel) {
    cancelled_ = true;
    if (server_ != nullptr) ++server_->counters_.calls_cancelled;
  }
  if (owner_ != nullptr) owner_->OnCallEnding(*this);
  if (!cancel || !on_cancel || detached_) return;
  if (user_call_depth_ > 0 || delivering_) {
    loop_.Post([self = shared_from_this(), on_cancel = std::move(on_cancel)] {
      if (!self->detached_) on_cancel();
    });
    return;
  }
  on_cancel();
}

void ServerCall::OnResetStream(StreamResetReason reason, absl::string_view details) {
  encoder_ = nullptr;
  if (!ended_) {
    LOG(DEBUG) << "grpc call " << method_ << " reset: " << ResetReasonName(reason) << " "
               << details;
    End(/*cancel=*/dispatched_);
  }
  if (owner_ != nullptr) owner_->OnCallReleased(*this);
}

void ServerCall::Detach() {
  detached_ = true;
  owner_ = nullptr;
  server_ = nullptr;
  encoder_ = nullptr;
  if (!ended_) End(/*cancel=*/false);
  ended_ = true;
}

// ----- Server::ConnectionImpl -----------------------------------------------------------------

// One accepted connection: bytes → h2::ServerCodec → one ServerCall per stream.
class Server::ConnectionImpl final
    : public grpc_internal::CallConnection<ServerCall, ServerCall::Owner, h2::ServerCodec>,
      public ServerConnectionCallbacks {
 public:
  ConnectionImpl(Server& server, std::unique_ptr<net::Connection> connection)
      : CallConnection(server.loop_, std::move(connection)),
        server_(server),
        io_(*connection_),
        peer_address_(connection_->remote_address()) {
    connection_->SetCallbacks(this);
    codec_ = std::make_unique<h2::ServerCodec>(io_, *this, server.options_.http2, &server.loop_);
    if (server_.options_.max_connection_idle.count() > 0) {
      idle_timer_ = std::make_unique<event::Timer>(server.loop_, [this] { OnIdle(); });
      idle_timer_->Enable(server_.options_.max_connection_idle);
    }
    if (server_.options_.handshake_timeout.count() > 0) {
      handshake_timer_ =
          std::make_unique<event::Timer>(server.loop_, [this] { OnHandshakeTimeout(); });
      handshake_timer_->Enable(server_.options_.handshake_timeout);
    }
  }

  ~ConnectionImpl() override {
    // Calls stay allocated until the codec is gone: destroying it resets their streams.
    for (const auto& call : calls_.Snapshot()) call->Detach();
    idle_timer_.reset();
    handshake_timer_.reset();
    TearDown();
  }

  // GOAWAY; the connection closes once its calls are done.
  void GoAway() {
    if (closed_) return;
    draining_ = true;
    codec_->GoAway();
    MaybeClose();
  }

  // Ends every open call with `code` (OnCancel for their handlers), then closes.
  void AbortCalls(StatusCode code, absl::string_view message) {
    if (closed_) return;
    for (const auto& call : calls_.Snapshot()) call->Abort(code, message);
    if (!closed_) connection_->Close(net::CloseMode::kFlush);
  }

  // net::ConnectionCallbacks
  void OnData(net::Buffer& data, bool end_stream) override {
    if (!checked_alpn_) {
      checked_alpn_ = true;
      const std::string& alpn = connection_->transport().peer().alpn;
      if (!alpn.empty() && alpn != "h2") {
        LOG(DEBUG) << "grpc: closing connection from " << peer_address_.ToString()
                   << " that negotiated ALPN " << alpn;
        connection_->Close(net::CloseMode::kNoFlush);
        return;
      }
    }
    absl::Status status = codec_->Dispatch(data);
    if (!status.ok()) {
      LOG(DEBUG) << "grpc: closing connection from " << peer_address_.ToString() << ": "
                 << status.message();
      // An HTTP/2 flood (ResourceExhausted): the queued replies are unread; drop them.
      connection_->Close(absl::IsResourceExhausted(status) ? net::CloseMode::kNoFlush
                                                           : net::CloseMode::kFlush);
      return;
    }
    if (end_stream) {
      connection_->Close(net::CloseMode::kFlush);
      return;
    }
    AfterActivity();
  }
  void OnClose(net::CloseReason reason, const absl::Status& detail) override {
    closed_ = true;
    LOG(DEBUG) << "grpc: connection from " << peer_address_.ToString()
               << " closed: " << CloseReasonName(reason) << " " << detail.message();
    idle_timer_.reset();
    // Open calls end now, not when the codec is destroyed at the end of the turn.
    for (const auto& call : calls_.Snapshot()) {
      call->encoder_ = nullptr;
      if (!call->ended_) call->End(/*cancel=*/call->dispatched_);
    }
    server_.RemoveConnection(this);
  }

  // ServerConnectionCallbacks
  StreamDecoder& NewStream(StreamEncoder& response_encoder) override {
    std::shared_ptr<ServerCall> call(new ServerCall(server_.loop_, server_, *this, response_encoder,
                                                    peer_address_,
                                                    connection_->transport().peer()));
    if (idle_timer_ != nullptr) idle_timer_->Disable();
    if (handshake_timer_ != nullptr) handshake_timer_->Disable();  // it has started
    StreamDecoder& decoder = *call->adapter_;
    calls_.Add(std::move(call));
    return decoder;
  }

 private:
  void AfterActivity() override {
    if (closed_) return;
    calls_.Purge(codec_->ActiveStreams());
    if (calls_.live() == 0 && idle_timer_ != nullptr && !idle_timer_->enabled() && !draining_) {
      idle_timer_->Enable(server_.options_.max_connection_idle);
    }
    MaybeClose();
  }

  void MaybeClose() {
    if (closed_ || !draining_ || codec_->ActiveStreams() > 0 || !codec_->WantsClose()) return;
    connection_->Close(net::CloseMode::kFlush);
  }

  void OnIdle() {
    if (calls_.live() > 0 || closed_) return;
    LOG(DEBUG) << "grpc: connection from " << peer_address_.ToString() << " idle; going away";
    server_.options_.timeouts.Inc();
    GoAway();
  }

  // No call opened within the handshake timeout (a TLS handshake left unfinished, or a client
  // that connects and sends nothing): closed.
  void OnHandshakeTimeout() {
    if (closed_) return;
    LOG(DEBUG) << "grpc: closing connection from " << peer_address_.ToString()
               << ": no call within the handshake timeout";
    server_.options_.timeouts.Inc();
    connection_->Close(net::CloseMode::kNoFlush);
  }

  Server& server_;
  ConnectionIo io_;
  std::unique_ptr<event::Timer> idle_timer_;
  std::unique_ptr<event::Timer> handshake_timer_;  // until the first call opens
  net::Address peer_address_;
  bool checked_alpn_ = false;
  bool draining_ = false;
};

// ----- Server ---------------------------------------------------------------------------------

Server::Server(event::Loop& loop, ServerOptions options)
    : loop_(loop), options_(std::move(options)) {
  CHECK_OK(h2::ValidateOptions(options_.http2));
}

Server::~Server() {
  grace_timer_.reset();
  listener_.reset();
  connections_.clear();
}

absl::Status Server::RegisterMethod(absl::string_view path, Handler handler) {
  if (!ValidMethodPath(path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("grpc method path \"", path, "\" is not /package.Service/Method"));
  }
  if (handler == nullptr) return absl::InvalidArgumentError("grpc handler is empty");
  if (!handlers_.emplace(std::string(path), std::move(handler)).second) {
    return absl::AlreadyExistsError(absl::StrCat("grpc method ", path, " is already registered"));
  }
  return absl::OkStatus();
}

absl::Status Server::Start(const net::Address& address) {
  if (listener_ != nullptr) return absl::FailedPreconditionError("grpc server already started");
  net::ListenerOptions listener_options;
  listener_options.transport_factory = options_.transport_factory;
  auto listener = net::Listener::Create(
      loop_, address, listener_options,
      [this](std::unique_ptr<net::Connection> connection) { OnAccept(std::move(connection)); });
  if (!listener.ok()) return listener.status();
  listener_ = std::move(*listener);
  return absl::OkStatus();
}

const net::Address& Server::address() const {
  static const net::Address kNone;
  return listener_ != nullptr ? listener_->address() : kNone;
}

size_t Server::active_calls() const {
  size_t n = 0;
  for (const auto& [raw, connection] : connections_) n += connection->live_calls();
  return n;
}

const Server::Handler* Server::FindHandler(absl::string_view path) const {
  auto it = handlers_.find(path);
  return it == handlers_.end() ? nullptr : &it->second;
}

void Server::OnAccept(std::unique_ptr<net::Connection> connection) {
  if (shutting_down_ || connections_.size() >= options_.max_connections) {
    connection->Close(net::CloseMode::kNoFlush);
    return;
  }
  ++counters_.connections_accepted;
  auto impl = std::make_unique<ConnectionImpl>(*this, std::move(connection));
  ConnectionImpl* raw = impl.get();
  connections_.emplace(raw, std::move(impl));
}

void Server::RemoveConnection(ConnectionImpl* connection) {
  auto it = connections_.find(connection);
  if (it == connections_.end()) return;
  loop_.DeferDelete(std::move(it->second));
  connections_.erase(it);
}

void Server::Shutdown(Duration grace) {
  if (!shutting_down_) {
    shutting_down_ = true;
    if (listener_ != nullptr) listener_->StopAccepting();
    std::vector<ConnectionImpl*> open;
    for (auto& [raw, connection] : connections_) open.push_back(raw);
    for (ConnectionImpl* c : open) {
      if (connections_.contains(c)) c->GoAway();
    }
  }
  if (grace.count() <= 0) {
    ForceClose();
    return;
  }
  grace_timer_ = std::make_unique<event::Timer>(loop_, [this] { ForceClose(); });
  grace_timer_->Enable(grace);
}

void Server::ForceClose() {
  std::vector<ConnectionImpl*> open;
  for (auto& [raw, connection] : connections_) open.push_back(raw);
  for (ConnectionImpl* c : open) {
    if (connections_.contains(c))
      c->AbortCalls(StatusCode::kUnavailable, "server is shutting down");
  }
}

}  // namespace meshlet::http::grpc

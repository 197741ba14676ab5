#include "common/http/grpc/client.h"

#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/net/buffer.h"
#include "common/net/connection.h"

namespace meshlet::http::grpc {

using grpc_internal::UserCallScope;

namespace {

// Names the caller may not set: the protocol's own.
bool IsReservedMetadata(absl::string_view name) {
  return name.empty() || name[0] == ':' || name == "content-type" || name == "te" ||
         name == "user-agent" || absl::StartsWith(name, "grpc-");
}

// gRPC's mapping of a stream that ended without a status.
StatusCode ResetReasonToStatus(StreamResetReason reason) {
  switch (reason) {
    case StreamResetReason::kRemoteRefusedStream:
    case StreamResetReason::kConnectionFailure:
    case StreamResetReason::kConnectionTermination:
      return StatusCode::kUnavailable;
    case StreamResetReason::kRemoteReset:
    case StreamResetReason::kLocalReset:
      return StatusCode::kCancelled;
    case StreamResetReason::kOverflow:
      return StatusCode::kResourceExhausted;
    case StreamResetReason::kProtocolError:
      return StatusCode::kInternal;
  }
  return StatusCode::kInternal;
}

}  // namespace

class ClientCall::StreamAdapter final : public StreamDecoder, public StreamCallbacks {
 public:
  explicit StreamAdapter(ClientCall& call) : call_(call) {}

  void DecodeHeaders(HeaderMapPtr headers, bool end_stream) override {
    call_.DecodeHeaders(std::move(headers), end_stream);
  }
  void DecodeData(net::Buffer& data, bool end_stream) override {
    call_.DecodeData(data, end_stream);
  }
  void DecodeTrailers(HeaderMapPtr trailers) override { call_.DecodeTrailers(std::move(trailers)); }
  void OnResetStream(StreamResetReason reason, absl::string_view details) override {
    call_.OnResetStream(reason, details);
  }
  void OnAboveWriteBufferHighWatermark() override { call_.OnAboveWriteBufferHighWatermark(); }
  void OnBelowWriteBufferLowWatermark() override { call_.OnBelowWriteBufferLowWatermark(); }

 private:
  ClientCall& call_;
};

// ----- ClientCall -----------------------------------------------------------------------------

ClientCall::ClientCall(event::Loop& loop, Channel& channel, std::string method)
    : loop_(loop),
      channel_(&channel),
      adapter_(std::make_unique<StreamAdapter>(*this)),
      method_(std::move(method)),
      inbound_(channel.options_.max_receive_message_size),
      max_send_message_size_(channel.options_.max_send_message_size) {
  channel.unfinished_.insert(this);
}

ClientCall::~ClientCall() {
  if (channel_ != nullptr) channel_->unfinished_.erase(this);
}

void ClientCall::Start(Owner& owner, StreamEncoder& encoder, const HeaderMap& headers,
                       std::optional<Duration> timeout) {
  UserCallScope scope(user_call_depth_);
  owner_ = &owner;
  encoder_ = &encoder;
  encoder.GetStream().AddCallbacks(*adapter_);
  if (timeout.has_value()) {
    deadline_timer_ = std::make_unique<event::Timer>(
        loop_, [this] { Fail(StatusCode::kDeadlineExceeded, "deadline exceeded"); });
    deadline_timer_->Enable(*timeout);
  }
  // Reading waits for an OnMessage callback.
  UpdateReadDisable();
  encoder.EncodeHeaders(headers, false);
}

void ClientCall::OnInitialMetadata(std::function<void(const HeaderMap& metadata)> callback) {
  if (!finished_) on_initial_metadata_ = std::move(callback);
}

void ClientCall::OnMessage(std::function<void(std::string message)> callback) {
  if (finished_) return;
  on_message_ = std::move(callback);
  loop_.Post([weak = weak_from_this()] {
    if (std::shared_ptr<ClientCall> self = weak.lock()) self->DeliverMessages();
  });
}

void ClientCall::OnFinish(FinishCallback callback) {
  on_finish_ = std::move(callback);
  if (finished_ && !finish_notified_ && !finish_posted_) {
    finish_posted_ = true;
    loop_.Post([self = shared_from_this()] {
      self->finish_posted_ = false;
      self->MaybeNotifyFinish();
    });
  }
}

void ClientCall::OnWriteBufferWatermark(std::function<void(bool above_high)> callback) {
  if (!finished_) watermark_.set_callback(std::move(callback));
}

bool ClientCall::Send(absl::string_view message) { return SendPieces({message}); }

bool ClientCall::SendPieces(std::initializer_list<absl::string_view> pieces) {
  UserCallScope scope(user_call_depth_);
  if (finished_ || half_closed_ || encoder_ == nullptr) return false;
  size_t size = 0;
  for (absl::string_view piece : pieces) size += piece.size();
  if (size > max_send_message_size_) {
    Fail(StatusCode::kResourceExhausted,
         absl::StrCat("request message of ", size, " bytes exceeds the limit of ",
                      max_send_message_size_));
    return false;
  }
  net::Buffer framed;
  EncodeFrameHeader(static_cast<uint32_t>(size), /*compressed=*/false, framed);
  for (absl::string_view piece : pieces) framed.Append(piece);
  encoder_->EncodeData(framed, false);
  return !finished_;
}

bool ClientCall::SendProto(const google::protobuf::MessageLite& message) {
  UserCallScope scope(user_call_depth_);
  if (finished_) return false;
  std::string bytes;
  if (!message.SerializeToString(&bytes)) {
    Fail(StatusCode::kInternal,
         absl::StrCat("could not serialize the request ", message.GetTypeName()));
    return false;
  }
  return Send(bytes);
}

bool ClientCall::HalfClose() {
  UserCallScope scope(user_call_depth_);
  if (finished_ || half_closed_ || encoder_ == nullptr) return false;
  half_closed_ = true;
  net::Buffer empty;
  encoder_->EncodeData(empty, true);
  return true;
}

void ClientCall::Cancel() {
  UserCallScope scope(user_call_depth_);
  Fail(StatusCode::kCancelled, "cancelled by the client");
}

void ClientCall::PauseReading() {
  UserCallScope scope(user_call_depth_);
  ++user_pauses_;
  UpdateReadDisable();
}

void ClientCall::ResumeReading() {
  if (user_pauses_ == 0) return;
  --user_pauses_;
  DeliverMessages();
}

void ClientCall::DecodeHeaders(HeaderMapPtr headers, bool end_stream) {
  if (finished_) return;
  int http_status = 0;
  std::optional<absl::string_view> status_text = headers->Get(":status");
  if (!status_text.has_value() || !absl::SimpleAtoi(*status_text, &http_status)) http_status = 0;
  std::optional<GrpcStatus> grpc_status = ParseStatus(*headers);
  if (end_stream) {
    RemoteEnded();
    // Trailers-only (or an HTTP error without a body).
    if (grpc_status.has_value()) {
      Complete(grpc_status->code, std::move(grpc_status->message), std::move(*headers));
    } else {
      Complete(HttpStatusToGrpcStatus(http_status),
               absl::StrCat("HTTP status ", http_status, " without grpc-status"), HeaderMap());
    }
    return;
  }
  if (http_status != 200) {
    Fail(HttpStatusToGrpcStatus(http_status),
         absl::StrCat("server answered with HTTP status ", http_status));
    return;
  }
  if (!IsGrpcRequest(*headers)) {
    Fail(StatusCode::kUnknown,
         absl::StrCat("response content-type is \"", headers->Get("content-type").value_or(""),
                      "\", not application/grpc"));
    return;
  }
  std::optional<absl::string_view> encoding = headers->Get("grpc-encoding");
  if (encoding.has_value() && *encoding != "identity") {
    Fail(StatusCode::kInternal,
         absl::StrCat("response grpc-encoding \"", *encoding, "\" is not supported"));
    return;
  }
  if (on_initial_metadata_) {
    std::function<void(const HeaderMap&)> callback = on_initial_metadata_;
    callback(*headers);
  }
}

void ClientCall::DecodeData(net::Buffer& data, bool end_stream) {
  if (finished_) {
    data.Clear();
    return;
  }
  absl::Status status = inbound_.Decode(data);
  if (!status.ok()) {
    Fail(FromAbslStatusCode(status.code()), status.message());
    return;
  }
  if (end_stream) {
    RemoteEnded();
    // A gRPC response always ends with trailers.
    remote_status_ = GrpcStatus{StatusCode::kInternal, "response ended without grpc-status"};
    if (inbound_.HasPartialMessage()) remote_status_->message = "response ended inside a message";
  }
  DeliverMessages();
}

void ClientCall::DecodeTrailers(HeaderMapPtr trailers) {
  if (finished_) return;
  RemoteEnded();
  std::optional<GrpcStatus> status = ParseStatus(*trailers);
  if (!status.has_value()) {
    status = GrpcStatus{StatusCode::kInternal, "trailers without grpc-status"};
  } else if (inbound_.HasPartialMessage()) {
    status = GrpcStatus{StatusCode::kInternal, "response ended inside a message"};
  }
  remote_status_ = std::move(status);
  remote_trailers_ = std::move(*trailers);
  DeliverMessages();
}

void ClientCall::DeliverMessages() {
  if (delivering_ || detached_) return;
  std::shared_ptr<ClientCall> self = shared_from_this();
  delivering_ = true;
  while (!finished_ && user_pauses_ == 0) {
    if (!inbound_.empty()) {
      if (!on_message_) break;
      std::function<void(std::string)> callback = on_message_;
      callback(inbound_.Pop());
      continue;
    }
    if (remote_status_.has_value()) {
      GrpcStatus status = std::move(*remote_status_);
      remote_status_.reset();
      Complete(status.code, std::move(status.message), std::move(remote_trailers_));
    }
    break;
  }
  delivering_ = false;
  UpdateReadDisable();
}

void ClientCall::UpdateReadDisable() {
  if (encoder_ == nullptr || finished_) return;
  bool disable = user_pauses_ > 0 || !on_message_ || !inbound_.empty();
  if (disable == stream_read_disabled_) return;
  stream_read_disabled_ = disable;
  encoder_->GetStream().ReadDisable(disable);
}

void ClientCall::OnAboveWriteBufferHighWatermark() {
  if (finished_ || !watermark_.MarkHigh()) return;
  watermark_.ReportHigh(loop_, user_call_depth_ > 0,
                        [self = shared_from_this()] { return !self->finished_; });
}

void ClientCall::OnBelowWriteBufferLowWatermark() {
  if (!finished_) watermark_.OnLow();
}

void ClientCall::RemoteEnded() {
  remote_ended_ = true;
  if (encoder_ == nullptr) return;
  // The codec frees a stream that has ended both ways at the end of this codec call, without
  // telling anyone: the encoder must not be kept past this point.
  StreamEncoder* encoder = encoder_;
  encoder_ = nullptr;
  if (!half_closed_) {
    // Our side is still open: end it (the reset comes back to OnResetStream, which releases
    // the call).
    encoder->GetStream().ResetStream(StreamResetReason::kLocalReset);
  }
}

void ClientCall::OnResetStream(StreamResetReason reason, absl::string_view details) {
  encoder_ = nullptr;
  if (!finished_ && !remote_ended_) {
    Complete(ResetReasonToStatus(reason),
             absl::StrCat("stream ended without status: ", ResetReasonName(reason),
                          details.empty() ? "" : ": ", details),
             HeaderMap());
  }
  if (owner_ != nullptr) owner_->OnCallReleased(*this);
}

void ClientCall::OnConnectionLost(absl::string_view why) {
  encoder_ = nullptr;
  if (!finished_) Complete(StatusCode::kUnavailable, std::string(why), HeaderMap());
}

void ClientCall::Fail(StatusCode code, absl::string_view message) {
  if (finished_) return;
  Complete(code, std::string(message), HeaderMap());
}

void ClientCall::Complete(StatusCode code, std::string message, HeaderMap trailers) {
  if (finished_) return;
  finished_ = true;
  final_code_ = code;
  final_message_ = std::move(message);
  final_trailers_ = std::move(trailers);
  deadline_timer_.reset();
  inbound_.Clear();
  remote_status_.reset();
  if (encoder_ != nullptr) {
    StreamEncoder* encoder = encoder_;
    encoder_ = nullptr;
    // Ended locally while the stream is open: RST_STREAM tells the server. The reset comes
    // back to OnResetStream, which releases the call. Reads stay disabled until then: enabling
    // them first would hand the call what waits in the stream (its trailers), and the codec
    // would free a stream that ended both ways before the reset reached it. A reset stream
    // delivers nothing more, so its read-disable count no longer matters.
    stream_read_disabled_ = false;
    encoder->GetStream().ResetStream(StreamResetReason::kLocalReset);
  }
  on_initial_metadata_ = nullptr;
  on_message_ = nullptr;
  watermark_.clear_callback();
  if (owner_ != nullptr) owner_->OnCallEnding(*this);
  MaybeNotifyFinish();
}

void ClientCall::MaybeNotifyFinish() {
  if (!finished_ || finish_notified_ || detached_ || !on_finish_) return;
  if (user_call_depth_ > 0 || delivering_) {
    if (finish_posted_) return;
    finish_posted_ = true;
    loop_.Post([self = shared_from_this()] {
      self->finish_posted_ = false;
      self->MaybeNotifyFinish();
    });
    return;
  }
  finish_notified_ = true;
  if (channel_ != nullptr) channel_->unfinished_.erase(this);
  channel_ = nullptr;
  FinishCallback callback = std::move(on_finish_);
  on_finish_ = nullptr;
  callback(final_code_, final_message_, final_trailers_);
}

void ClientCall::Detach() {
  detached_ = true;
  owner_ = nullptr;
  channel_ = nullptr;
  encoder_ = nullptr;
  finished_ = true;
  deadline_timer_.reset();
  on_initial_metadata_ = nullptr;
  on_message_ = nullptr;
  on_finish_ = nullptr;
  watermark_.clear_callback();
}

// ----- Channel::ConnectionImpl ----------------------------------------------------------------

// One HTTP/2 connection of the channel and the calls on it.
class Channel::ConnectionImpl final
    : public grpc_internal::CallConnection<ClientCall, ClientCall::Owner, h2::ClientCodec>,
      public CodecIo,
      public http::ConnectionCallbacks {
 public:
  explicit ConnectionImpl(Channel& channel)
      : CallConnection(channel.loop_, nullptr), channel_(channel) {
    const ChannelOptions& o = channel.options_;
    connection_ = net::Connection::Connect(channel.loop_, channel.address_, o.connect_timeout,
                                           o.transport_factory);
    connection_->SetCallbacks(this);
    h2::Http2Options http2 = o.http2;
    http2.keepalive_interval = o.keepalive_interval;
    http2.keepalive_timeout = o.keepalive_timeout;
    http2.default_scheme = o.transport_factory ? "https" : "http";
    codec_ = std::make_unique<h2::ClientCodec>(*this, *this, http2, &channel.loop_);
  }

  ~ConnectionImpl() override {
    for (const auto& call : calls_.Snapshot()) call->Detach();
    TearDown();
  }

  bool usable() const { return !closed_ && !goaway_; }

  void StartCall(const std::shared_ptr<ClientCall>& call, const HeaderMap& headers,
                 std::optional<Duration> timeout) {
    calls_.Add(call);
    StreamEncoder& encoder = codec_->NewStream(*call->adapter_);
    call->Start(*this, encoder, headers, timeout);
  }

  // net::ConnectionCallbacks
  void OnData(net::Buffer& data, bool end_stream) override {
    absl::Status status = codec_->Dispatch(data);
    if (!status.ok()) {
      close_reason_ = absl::StrCat("HTTP/2 error: ", status.message());
      connection_->Close(net::CloseMode::kFlush);
      return;
    }
    if (end_stream) {
      close_reason_ = "the server closed the connection";
      connection_->Close(net::CloseMode::kNoFlush);
      return;
    }
    AfterActivity();
  }
  void OnClose(net::CloseReason reason, const absl::Status& detail) override {
    closed_ = true;
    std::string why =
        close_reason_.empty()
            ? absl::StrCat("connection to ", channel_.address_.ToString(), " ",
                           reason == net::CloseReason::kConnectFailed ||
                                   reason == net::CloseReason::kConnectTimeout
                               ? "failed"
                               : "lost",
                           ": ", CloseReasonName(reason), detail.ok() ? "" : ": ", detail.message())
            : close_reason_;
    LOG(DEBUG) << "grpc channel: " << why;
    for (const auto& call : calls_.Snapshot()) call->OnConnectionLost(why);
    channel_.RemoveConnection(this);
  }

  // http::ConnectionCallbacks
  void OnGoAway() override {
    goaway_ = true;
    channel_.OnGoAway(this);
  }

  // CodecIo
  void Write(net::Buffer& data) override { connection_->Write(data); }
  size_t UnsentBytes() const override { return connection_->buffered_write_bytes(); }
  void ReadDisable(bool disable) override {
    disable ? connection_->ReadDisable() : connection_->ReadEnable();
  }
  void Close(bool flush) override {
    if (close_reason_.empty()) close_reason_ = "keepalive timed out";
    connection_->Close(flush ? net::CloseMode::kFlush : net::CloseMode::kNoFlush);
  }

 private:
  void AfterActivity() override {
    if (closed_) return;
    calls_.Purge(codec_->ActiveStreams());
    // A connection the server is retiring closes once its last call is done.
    if (goaway_ && codec_->ActiveStreams() == 0) connection_->Close(net::CloseMode::kFlush);
  }

  Channel& channel_;
  std::string close_reason_;
  bool goaway_ = false;
};

// ----- Channel --------------------------------------------------------------------------------

Channel::Channel(event::Loop& loop, const net::Address& address, ChannelOptions options)
    : loop_(loop), address_(address), options_(std::move(options)) {
  authority_ = options_.authority.empty() ? address_.ToString() : options_.authority;
  CHECK_OK(h2::ValidateOptions(options_.http2));
}

Channel::~Channel() {
  // Calls that have not reported yet stay quiet from now on.
  for (ClientCall* call : unfinished_) call->Detach();
  unfinished_.clear();
  current_ = nullptr;
  connections_.clear();
}

size_t Channel::active_calls() const {
  size_t n = 0;
  for (const auto& [raw, connection] : connections_) n += connection->live_calls();
  return n;
}

Channel::ConnectionImpl& Channel::CurrentConnection() {
  if (current_ == nullptr || !current_->usable()) {
    ++connection_attempts_;
    auto connection = std::make_unique<ConnectionImpl>(*this);
    current_ = connection.get();
    connections_.emplace(current_, std::move(connection));
  }
  return *current_;
}

void Channel::RemoveConnection(ConnectionImpl* connection) {
  if (current_ == connection) current_ = nullptr;
  auto it = connections_.find(connection);
  if (it == connections_.end()) return;
  loop_.DeferDelete(std::move(it->second));
  connections_.erase(it);
}

void Channel::OnGoAway(ConnectionImpl* connection) {
  // New calls go to a new connection; this one finishes what it has.
  if (current_ == connection) current_ = nullptr;
}

std::shared_ptr<ClientCall> Channel::StartCall(absl::string_view method, CallOptions options) {
  std::shared_ptr<ClientCall> call(new ClientCall(loop_, *this, std::string(method)));
  HeaderMap headers{{":method", "POST"},
                    {":scheme", options_.transport_factory ? "https" : "http"},
                    {":path", method},
                    {":authority", authority_},
                    {"content-type", "application/grpc"},
                    {"te", "trailers"},
                    {"user-agent", options_.user_agent},
                    {"grpc-accept-encoding", "identity"}};
  if (options.timeout.has_value()) {
    headers.Add("grpc-timeout", grpc_internal::EncodeGrpcTimeout(*options.timeout));
  }
  for (const HeaderView h : options.metadata) {
    if (!IsReservedMetadata(h.name)) headers.Add(h.name, h.value);
  }
  CurrentConnection().StartCall(call, headers, options.timeout);
  return call;
}

std::shared_ptr<ClientCall> Channel::Unary(absl::string_view method, absl::string_view request,
                                           CallOptions options, UnaryCallback done) {
  std::shared_ptr<ClientCall> call = StartCall(method, std::move(options));
  auto response = std::make_shared<std::optional<std::string>>();
  ClientCall* raw = call.get();
  call->OnMessage([response, raw](std::string message) {
    if (response->has_value()) {
      raw->Fail(StatusCode::kInternal, "unary call received more than one response message");
      return;
    }
    *response = std::move(message);
  });
  call->OnFinish([response, done = std::move(done)](StatusCode code, const std::string& message,
                                                    const HeaderMap&) {
    if (code == StatusCode::kOk && !response->has_value()) {
      done(StatusCode::kInternal, "unary call finished without a response message", "");
      return;
    }
    done(code, message, code == StatusCode::kOk ? std::move(**response) : std::string());
  });
  call->Send(request);
  call->HalfClose();
  return call;
}

}  // namespace meshlet::http::grpc

#include "tests/e2e/testapp/server.h"

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/http/codec.h"
#include "common/http/h1/codec.h"
#include "common/net/buffer.h"

namespace meshlet::testapp {

// One accepted connection and its HTTP/1.1 codec.
class ServerConnection final : public ServedConnection,
                               public net::ConnectionCallbacks,
                               public http::CodecIo,
                               public http::ServerConnectionCallbacks {
 public:
  ServerConnection(Server& server, std::unique_ptr<net::Connection> connection)
      : server_(server),
        connection_(std::move(connection)),
        codec_(std::make_unique<http::h1::ServerCodec>(server.loop_, *this, *this)) {
    connection_->SetCallbacks(this);
  }
  ~ServerConnection() override;

  void Shutdown() override {
    codec_->GoAway();
    if (codec_->ActiveStreams() == 0) connection_->Close(net::CloseMode::kFlush);
  }

  // net::ConnectionCallbacks
  void OnData(net::Buffer& data, bool end_stream) override {
    absl::Status status = codec_->Dispatch(data);
    if (!status.ok()) {
      LOG(DEBUG) << "closing the connection from " << connection_->remote_address().ToString()
                 << ": " << status.message();
      connection_->Close(net::CloseMode::kFlush);
      return;
    }
    if (end_stream) {
      (void)codec_->OnEndOfStream();
      if (codec_->ActiveStreams() == 0) connection_->Close(net::CloseMode::kFlush);
    }
  }
  void OnWriteHighWatermark() override { codec_->OnUnderlyingWriteHighWatermark(); }
  void OnWriteLowWatermark() override { codec_->OnUnderlyingWriteLowWatermark(); }
  void OnClose(net::CloseReason, const absl::Status&) override {
    codec_->OnConnectionClosed();
    server_.acceptor_->Remove(this);
  }

  // http::CodecIo
  void Write(net::Buffer& data) override { connection_->Write(data); }
  size_t UnsentBytes() const override { return connection_->buffered_write_bytes(); }
  void ReadDisable(bool disable) override {
    disable ? connection_->ReadDisable() : connection_->ReadEnable();
  }
  void Close(bool flush) override {
    connection_->Close(flush ? net::CloseMode::kFlush : net::CloseMode::kNoFlush);
  }
  // Exchange::ResetConnection: OnClose runs before this returns, resetting the streams, whose
  // deletion it defers.
  void Abort() { connection_->Close(net::CloseMode::kAbort); }

  // http::ServerConnectionCallbacks
  http::StreamDecoder& NewStream(http::StreamEncoder& response_encoder) override;

  // The stream is done with (answered and read, or reset): deleted at the end of the loop turn.
  void FinishStream(RequestStream* stream);

  Server& server() { return server_; }
  const net::Address& peer() const { return connection_->remote_address(); }

 private:
  Server& server_;
  std::unique_ptr<net::Connection> connection_;
  std::unique_ptr<http::h1::ServerCodec> codec_;
  std::map<RequestStream*, std::unique_ptr<RequestStream>> streams_;
};

// One request: reads it whole, hands it to the handler, writes the answer it is given.
class RequestStream final : public http::StreamDecoder, public http::StreamCallbacks {
 public:
  RequestStream(ServerConnection& owner, http::StreamEncoder& encoder)
      : owner_(owner), encoder_(&encoder), exchange_(new Exchange()) {
    encoder.GetStream().AddCallbacks(*this);
    exchange_->stream_ = this;
    exchange_->request_.peer = owner.peer();
  }
  ~RequestStream() override {
    Detach();
    if (exchange_->stream_ == this) exchange_->stream_ = nullptr;
  }

  void DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) override {
    exchange_->request_.headers = std::move(*headers);
    if (end_stream) RequestEnded();
  }
  void DecodeData(net::Buffer& data, bool end_stream) override {
    std::string& body = exchange_->request_.body;
    const size_t limit = owner_.server().options_.max_request_body_bytes;
    if (!exchange_->responded_) {
      if (body.size() + data.length() > limit) {
        exchange_->Respond(http::ServerResponse::Text(
            413, absl::StrCat("request body larger than ", limit, " bytes\n")));
      } else {
        body += data.ToString();
      }
    }
    data.Clear();
    if (end_stream) RequestEnded();
  }
  void DecodeTrailers(http::HeaderMapPtr) override { RequestEnded(); }

  void OnResetStream(http::StreamResetReason, absl::string_view) override {
    encoder_ = nullptr;
    exchange_->stream_ = nullptr;
    owner_.FinishStream(this);
  }

  // Exchange::Respond, once.
  void Send(http::ServerResponse response) {
    response_sent_ = true;
    if (encoder_ != nullptr) {
      http::HeaderMap headers;
      headers.Add(":status", absl::StrCat(response.status));
      for (const http::HeaderView h : response.headers) {
        if (!h.name.empty() && h.name[0] != ':') headers.Add(h.name, h.value);
      }
      headers.Set("content-length", absl::StrCat(response.body.size()));
      encoder_->EncodeHeaders(headers, response.body.empty());
      if (!response.body.empty() && encoder_ != nullptr) {
        net::Buffer body(response.body);
        encoder_->EncodeData(body, true);
      }
    }
    if (request_ended_) owner_.FinishStream(this);
  }

  // Exchange::ResetConnection, once.
  void ResetConnection() {
    response_sent_ = true;
    owner_.Abort();
  }

  // Stops watching the codec's stream, which may go on writing the answer after this object is
  // gone.
  void Detach() {
    if (encoder_ == nullptr) return;
    encoder_->GetStream().RemoveCallbacks(*this);
    encoder_ = nullptr;
  }

 private:
  void RequestEnded() {
    request_ended_ = true;
    if (response_sent_) {  // answered early (413)
      owner_.FinishStream(this);
      return;
    }
    Server& server = owner_.server();
    ++server.requests_;
    // The handler may answer at once, which may finish this stream: keep the exchange.
    std::shared_ptr<Exchange> exchange = exchange_;
    server.handler_(std::move(exchange));
  }

  ServerConnection& owner_;
  http::StreamEncoder* encoder_;
  std::shared_ptr<Exchange> exchange_;
  bool request_ended_ = false;
  bool response_sent_ = false;
};

ServerConnection::~ServerConnection() {
  // The streams stop watching the codec's streams before the codec goes (a codec being destroyed
  // calls no callbacks).
  for (auto& [raw, stream] : streams_) stream->Detach();
  codec_.reset();
  streams_.clear();
  if (!connection_->closed()) {
    connection_->SetCallbacks(nullptr);
    connection_->Close(net::CloseMode::kNoFlush);
  }
}

http::StreamDecoder& ServerConnection::NewStream(http::StreamEncoder& response_encoder) {
  auto stream = std::make_unique<RequestStream>(*this, response_encoder);
  RequestStream& ref = *stream;
  streams_.emplace(&ref, std::move(stream));
  return ref;
}

void ServerConnection::FinishStream(RequestStream* stream) {
  auto it = streams_.find(stream);
  if (it == streams_.end()) return;
  stream->Detach();
  server_.loop_.DeferDelete(std::move(it->second));
  streams_.erase(it);
}

void Exchange::Respond(http::ServerResponse response) {
  if (responded_ || stream_ == nullptr) return;
  responded_ = true;
  RequestStream* stream = stream_;
  stream_ = nullptr;
  stream->Send(std::move(response));
}

void Exchange::ResetConnection() {
  if (responded_ || stream_ == nullptr) return;
  responded_ = true;
  RequestStream* stream = stream_;
  stream_ = nullptr;
  stream->ResetConnection();
}

Server::Server(event::Loop& loop, ServerOptions options, Handler handler)
    : loop_(loop), options_(options), handler_(std::move(handler)) {}

Server::~Server() { acceptor_.reset(); }

absl::StatusOr<std::unique_ptr<Server>> Server::Create(event::Loop& loop,
                                                       const net::Address& address,
                                                       ServerOptions options, Handler handler) {
  std::unique_ptr<Server> server(new Server(loop, options, std::move(handler)));
  Server* raw = server.get();
  auto acceptor = Acceptor::Create(
      loop, address, options.max_connections, [raw](std::unique_ptr<net::Connection> connection) {
        return std::make_unique<ServerConnection>(*raw, std::move(connection));
      });
  if (!acceptor.ok()) return acceptor.status();
  server->acceptor_ = *std::move(acceptor);
  return server;
}

}  // namespace meshlet::testapp

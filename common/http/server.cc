#include "common/http/server.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/logging.h"
#include "common/http/connection_io.h"
#include "common/http/server_codec.h"
#include "common/net/buffer.h"
#include "common/net/connection.h"

namespace meshlet::http {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = absl::ascii_tolower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

std::string PercentDecode(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 &&
               HexValue(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace

absl::string_view ServerRequest::method() const { return headers.Get(":method").value_or(""); }

absl::string_view ServerRequest::path() const {
  absl::string_view full = headers.Get(":path").value_or("");
  return full.substr(0, full.find('?'));
}

std::map<std::string, std::string> ServerRequest::QueryParams() const {
  std::map<std::string, std::string> params;
  absl::string_view full = headers.Get(":path").value_or("");
  size_t q = full.find('?');
  if (q == absl::string_view::npos) return params;
  for (absl::string_view pair : absl::StrSplit(full.substr(q + 1), '&', absl::SkipEmpty())) {
    size_t eq = pair.find('=');
    if (eq == absl::string_view::npos) {
      params[PercentDecode(pair)] = "";
    } else {
      params[PercentDecode(pair.substr(0, eq))] = PercentDecode(pair.substr(eq + 1));
    }
  }
  return params;
}

std::string CrossOriginReason(const ServerRequest& request, absl::string_view scheme) {
  if (std::optional<absl::string_view> site = request.headers.Get("sec-fetch-site");
      site.has_value() && *site != "same-origin" && *site != "none") {
    return absl::StrCat("sec-fetch-site: ", *site);
  }
  std::optional<absl::string_view> origin = request.headers.Get("origin");
  if (!origin.has_value()) return "";
  absl::string_view authority = request.headers.Get(":authority").value_or("");
  if (authority.empty()) authority = request.headers.Get("host").value_or("");
  const std::string own = absl::StrCat(scheme, "://", authority);
  if (*origin == own) return "";
  return absl::StrCat("origin ", *origin, " is not ", own);
}

bool ResponseBodyStream::Write(absl::string_view data) {
  if (gone_ || ended_ || !sink_) return false;
  return sink_(data, false) && !gone_;
}

void ResponseBodyStream::End() {
  if (gone_ || ended_) return;
  ended_ = true;
  if (sink_) {
    // The sink's last call lets go of the request, which detaches this stream.
    auto sink = std::move(sink_);
    sink_ = nullptr;
    (void)sink({}, true);
  }
}

void ResponseBodyStream::Detach() {
  sink_ = nullptr;
  if (ended_ || gone_) return;
  gone_ = true;
  if (on_gone_) {
    auto on_gone = std::move(on_gone_);
    on_gone_ = nullptr;
    on_gone();
  }
}

ServerResponse ServerResponse::Text(int status, std::string body) {
  ServerResponse r;
  r.status = status;
  r.headers.Add("content-type", "text/plain; charset=utf-8");
  r.body = std::move(body);
  return r;
}

ServerResponse ServerResponse::Json(int status, std::string body) {
  ServerResponse r;
  r.status = status;
  r.headers.Add("content-type", "application/json");
  r.body = std::move(body);
  return r;
}

// One accepted connection: picks the codec, owns the request streams.
class HttpServer::ServerConnectionImpl final : public net::ConnectionCallbacks,
                                               public ServerConnectionCallbacks {
 public:
  ServerConnectionImpl(HttpServer& server, std::unique_ptr<net::Connection> connection)
      : server_(server),
        connection_(std::move(connection)),
        io_(*connection_),
        timer_(server.loop_, [this] { OnTimeout(); }) {
    connection_->SetCallbacks(this);
    ArmTimer();
  }

  ~ServerConnectionImpl() override {
    // The codec resets open streams as it goes; streams outlive it.
    codec_.reset();
    streams_.clear();
    if (!connection_->closed()) {
      connection_->SetCallbacks(nullptr);
      connection_->Close(net::CloseMode::kNoFlush);
    }
  }

  void Shutdown() {
    if (codec_ != nullptr) {
      codec_->GoAway();
      if (codec_->ActiveStreams() == 0) connection_->Close(net::CloseMode::kFlush);
    } else {
      connection_->Close(net::CloseMode::kFlush);
    }
  }

  // net::ConnectionCallbacks
  void OnData(net::Buffer& data, bool end_stream) override {
    const bool bytes = data.length() > 0;
    pending_.Move(data);
    if (codec_ == nullptr) {
      codec_ = NewServerCodec(server_.loop_, *connection_, pending_, end_stream, io_, *this);
      if (codec_ == nullptr) {  // the first bytes of the HTTP/2 preface: wait for more
        if (bytes) StartRequestClock();
        return;
      }
      // HTTP/2's clock starts with a stream (NewStream): SETTINGS or PING open no request.
      if (codec_->protocol() == Protocol::kHttp2) request_deadline_.reset();
    }
    // Before the codec runs: a request it completes now settles the timer again.
    if (bytes && codec_->protocol() != Protocol::kHttp2) StartRequestClock();
    ArmTimer();
    absl::Status status = DispatchServerInput(*codec_, *connection_, pending_, end_stream);
    if (!status.ok()) {
      LOG(DEBUG) << "closing HTTP connection from " << connection_->remote_address().ToString()
                 << ": " << status.message();
    }
  }

  // Responses a client does not read stop the codec from reading more requests.
  void OnWriteHighWatermark() override {
    if (codec_ != nullptr) codec_->OnUnderlyingWriteHighWatermark();
  }
  void OnWriteLowWatermark() override {
    if (codec_ != nullptr) codec_->OnUnderlyingWriteLowWatermark();
  }

  void OnClose(net::CloseReason, const absl::Status&) override {
    timer_.Disable();
    if (codec_ != nullptr) codec_->OnConnectionClosed();
    server_.RemoveConnection(this);
  }

  // ServerConnectionCallbacks
  StreamDecoder& NewStream(StreamEncoder& response_encoder) override {
    StartRequestClock();
    ArmTimer();
    auto stream = std::make_unique<RequestStream>(*this, response_encoder);
    RequestStream& ref = *stream;
    streams_.emplace(&ref, std::move(stream));
    return ref;
  }

 private:
  // Collects one request, answers it through the handler.
  class RequestStream final : public StreamDecoder, public StreamCallbacks {
   public:
    RequestStream(ServerConnectionImpl& owner, StreamEncoder& encoder)
        : owner_(owner), encoder_(&encoder) {
      encoder.GetStream().AddCallbacks(*this);
      request_.peer = owner.connection_->remote_address();
      request_.protocol = owner.codec_->protocol();
    }
    ~RequestStream() override {
      *alive_ = false;
      if (body_stream_ != nullptr) body_stream_->Detach();
    }

    void DecodeHeaders(HeaderMapPtr headers, bool end_stream) override {
      request_.headers = std::move(*headers);
      if (end_stream) Respond();
    }
    void DecodeData(net::Buffer& data, bool end_stream) override {
      if (!responded_) {
        if (request_.body.size() + data.length() > owner_.server_.options_.max_request_body_bytes) {
          Send(ServerResponse::Text(
              413, absl::StrCat("request body larger than ",
                                owner_.server_.options_.max_request_body_bytes, " bytes\n")));
        } else {
          request_.body.append(data.ToString());
        }
      }
      data.Clear();
      if (end_stream) Respond();
    }
    void DecodeTrailers(HeaderMapPtr) override { Respond(); }

    // Stops watching the codec stream: once finished, this object is deleted at the end of the
    // loop turn while the stream may still be sending the response (and report watermarks).
    void Detach() {
      if (encoder_ == nullptr) return;
      encoder_->GetStream().RemoveCallbacks(*this);
      encoder_ = nullptr;
    }

    void OnResetStream(StreamResetReason, absl::string_view) override {
      encoder_ = nullptr;
      streaming_ = false;
      OnStreamGone();
      owner_.FinishStream(this);
    }

   private:
    void Respond() {
      request_ended_ = true;
      // This request is in; bytes after it start the next one's clock.
      owner_.request_deadline_.reset();
      if (responded_) {
        owner_.FinishStream(this);
        return;
      }
      ++owner_.server_.requests_served_;
      // Finished once answered: now, or when the handler's responder runs.
      owner_.server_.handler_(request_, [this, alive = alive_](ServerResponse response) {
        if (!*alive || responded_) return;
        if (response.stream) {
          StartStream(std::move(response));
          return;
        }
        Send(std::move(response), /*last=*/true);
        owner_.FinishStream(this);
      });
      // Deleted at the end of the turn at the earliest: still here even if answered already.
      owner_.ArmTimer();
    }

    // A streamed response: the headers (and any first piece) now, the rest through the
    // ResponseBodyStream until it ends, the client goes, or the server closes the connection.
    void StartStream(ServerResponse response) {
      auto start = std::move(response.stream);
      std::string first = std::move(response.body);
      response.body.clear();
      responded_ = true;
      streaming_ = true;
      if (encoder_ == nullptr) return;
      HeaderMap headers;
      headers.Add(":status", absl::StrCat(response.status));
      for (const HeaderView h : response.headers) {
        if (!h.name.empty() && h.name[0] != ':') headers.Add(h.name, h.value);
      }
      encoder_->EncodeHeaders(headers, false);
      if (!first.empty() && encoder_ != nullptr) {
        net::Buffer piece(first);
        encoder_->EncodeData(piece, false);
      }
      body_stream_ = std::make_shared<ResponseBodyStream>();
      body_stream_->Attach([this](absl::string_view data, bool end) {
        if (encoder_ == nullptr) return false;
        StreamEncoder* encoder = encoder_;
        net::Buffer piece(data);
        if (!end) {
          // A client that does not read: refused here rather than held without bound.
          if (owner_.connection_->buffered_write_bytes() >
              owner_.server_.options_.max_streamed_buffered_bytes) {
            return false;
          }
          encoder->EncodeData(piece, false);
          return true;
        }
        streaming_ = false;
        Detach();
        encoder->EncodeData(piece, true);
        owner_.FinishStream(this);
        return true;
      });
      owner_.ArmTimer();
      start(body_stream_);
    }

    void OnStreamGone() {
      if (body_stream_ != nullptr) body_stream_->Detach();
    }

   public:
    // Received whole and not answered yet: the handler is at work (or a streamed answer is still
    // going out).
    bool handling() const { return request_ended_ && (!responded_ || streaming_); }
    bool responded() const { return responded_; }

   private:
    // `last`: the request has ended and nothing follows this answer, so this stream stops
    // watching the codec's stream before the call that ends it (an HTTP/2 stream is destroyed
    // inside that call when the answer is sent later, from outside the codec's own callbacks).
    void Send(ServerResponse response, bool last = false) {
      responded_ = true;
      if (encoder_ == nullptr) return;
      StreamEncoder* encoder = encoder_;
      HeaderMap headers;
      headers.Add(":status", absl::StrCat(response.status));
      for (const HeaderView h : response.headers) {
        if (!h.name.empty() && h.name[0] != ':') headers.Add(h.name, h.value);
      }
      headers.Set("content-length", absl::StrCat(response.body.size()));
      // An early answer (413) leaves the rest of the request to the codec: HTTP/2 resets the
      // stream with NO_ERROR, HTTP/1 closes the connection after the response.
      if (last && response.body.empty()) Detach();
      encoder->EncodeHeaders(headers, response.body.empty());
      if (!response.body.empty() && encoder_ != nullptr) {  // not reset meanwhile
        if (last) Detach();
        net::Buffer body(response.body);
        encoder->EncodeData(body, true);
      }
    }

    ServerConnectionImpl& owner_;
    StreamEncoder* encoder_;
    ServerRequest request_;
    // False once this stream is gone: a late responder does nothing.
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
    std::shared_ptr<ResponseBodyStream> body_stream_;  // a streamed response's
    bool streaming_ = false;
    bool responded_ = false;
    bool request_ended_ = false;
  };

  void FinishStream(RequestStream* stream) {
    auto it = streams_.find(stream);
    if (it == streams_.end()) return;
    stream->Detach();
    server_.loop_.DeferDelete(std::move(it->second));
    streams_.erase(it);
    ArmTimer();
  }

  void StartRequestClock() {
    if (!request_deadline_.has_value()) {
      request_deadline_ = server_.loop_.Now() + server_.options_.request_timeout;
    }
  }

  // Nothing while a handler is at work (the server is the slow one: a pipelined HTTP/1 request
  // is not even read meanwhile), the request timeout while a request arrives, the idle timeout
  // otherwise.
  void ArmTimer() {
    if (connection_->closed()) return;
    const HttpServerOptions& o = server_.options_;
    if (std::any_of(streams_.begin(), streams_.end(),
                    [](const auto& s) { return s.first->handling(); })) {
      timer_.Disable();
    } else if (request_deadline_.has_value() && o.request_timeout.count() > 0) {
      timer_.Enable(*request_deadline_ - server_.loop_.Now());
    } else if (o.idle_timeout.count() > 0) {
      timer_.Enable(o.idle_timeout);
    } else {
      timer_.Disable();
    }
  }

  void OnTimeout() {
    if (connection_->closed()) return;
    const bool arriving = request_deadline_.has_value();
    LOG(DEBUG) << "closing HTTP connection from " << connection_->remote_address().ToString()
               << ": " << (arriving ? "request not received within the request timeout" : "idle");
    server_.options_.timeouts.Inc();
    if (arriving && codec_ != nullptr && codec_->protocol() != Protocol::kHttp2 &&
        std::none_of(streams_.begin(), streams_.end(),
                     [](const auto& s) { return s.first->responded(); })) {
      // HTTP/1 with the request still arriving and nothing answered on it: say why.
      connection_->Write(
          "HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    }
    if (codec_ != nullptr && codec_->protocol() == Protocol::kHttp2) codec_->GoAway();
    connection_->Close(net::CloseMode::kFlush);
  }

  HttpServer& server_;
  std::unique_ptr<net::Connection> connection_;
  ConnectionIo io_;
  std::unique_ptr<ServerConnection> codec_;
  net::Buffer pending_;
  std::map<RequestStream*, std::unique_ptr<RequestStream>> streams_;
  event::Timer timer_;
  // When the request now arriving must be in; none while no request is arriving.
  std::optional<MonotonicTime> request_deadline_;
};

HttpServer::HttpServer(event::Loop& loop, HttpServerOptions options, AsyncRequestHandler handler)
    : loop_(loop), options_(std::move(options)), handler_(std::move(handler)) {}

HttpServer::~HttpServer() { connections_.clear(); }

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Create(event::Loop& loop,
                                                               const net::Address& address,
                                                               HttpServerOptions options,
                                                               RequestHandler handler) {
  return Create(loop, address, std::move(options),
                [handler = std::move(handler)](const ServerRequest& request, Responder respond) {
                  respond(handler(request));
                });
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Create(event::Loop& loop,
                                                               const net::Address& address,
                                                               HttpServerOptions options,
                                                               AsyncRequestHandler handler) {
  std::unique_ptr<HttpServer> server(new HttpServer(loop, std::move(options), std::move(handler)));
  net::ListenerOptions listener_options;
  listener_options.transport_factory = server->options_.transport_factory;
  HttpServer* raw = server.get();
  auto listener = net::Listener::Create(
      loop, address, listener_options,
      [raw](std::unique_ptr<net::Connection> connection) { raw->OnAccept(std::move(connection)); });
  if (!listener.ok()) return listener.status();
  server->listener_ = std::move(*listener);
  return server;
}

const net::Address& HttpServer::address() const { return listener_->address(); }

void HttpServer::OnAccept(std::unique_ptr<net::Connection> connection) {
  ++connections_accepted_;
  if (shutting_down_ || connections_.size() >= options_.max_connections) {
    connection->Close(net::CloseMode::kNoFlush);
    return;
  }
  auto impl = std::make_unique<ServerConnectionImpl>(*this, std::move(connection));
  ServerConnectionImpl* raw = impl.get();
  connections_.emplace(raw, std::move(impl));
}

void HttpServer::RemoveConnection(ServerConnectionImpl* connection) {
  auto it = connections_.find(connection);
  if (it == connections_.end()) return;
  loop_.DeferDelete(std::move(it->second));
  connections_.erase(it);
}

void HttpServer::Shutdown() {
  shutting_down_ = true;
  listener_->StopAccepting();
  for (auto& [raw, connection] : connections_) connection->Shutdown();
}

}  // namespace meshlet::http

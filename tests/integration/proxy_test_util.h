#pragma once

// Test peers for proxy tests, all running on one event loop: an upstream server that streams its
// responses (trailers, large bodies that respect flow control, bodies echoed as they arrive), an
// HTTP/1.1 or HTTP/2 client built on the in-repo codecs, a listener that accepts connections
// and never answers, and a relay whose network path can be taken away. Everything here must be
// created, used and destroyed on the loop's thread.

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "common/base/logging.h"
#include "common/event/loop.h"
#include "common/http/codec.h"
#include "common/http/connection_io.h"
#include "common/http/h1/codec.h"
#include "common/http/h2/codec.h"
#include "common/http/header_map.h"
#include "common/http/server_codec.h"
#include "common/net/buffer.h"
#include "common/net/connection.h"
#include "common/net/listener.h"

namespace meshlet::testing {

// An upstream that answers
//   /stream/trailers         200, body "hello", trailers x-trailer: done and grpc-status: 0
//   /stream/big?bytes=N      200 with N bytes of body, written only while the stream is below its
//                            high watermark (so it produces no faster than the proxy takes)
//   anything else            200, the request body streamed back as it arrives
// over HTTP/1.1 or HTTP/2 (detected from the preface), like HttpServer.
class StreamingUpstream {
 public:
  explicit StreamingUpstream(event::Loop& loop) : loop_(loop) {
    net::ListenerOptions options;
    // Small kernel buffers keep what sits in sockets small, so flow-control bounds are tight.
    options.connection.send_buffer_bytes = 64 * 1024;
    options.connection.receive_buffer_bytes = 64 * 1024;
    auto listener =
        net::Listener::Create(loop, *net::Address::Parse("127.0.0.1:0"), options,
                              [this](std::unique_ptr<net::Connection> c) { Accept(std::move(c)); });
    CHECK_OK(listener);
    listener_ = std::move(*listener);
  }
  ~StreamingUpstream() { connections_.clear(); }

  const net::Address& address() const { return listener_->address(); }
  // Body bytes handed to the connection for /stream/big, across all requests.
  uint64_t big_bytes_written() const { return big_bytes_written_.load(); }

 private:
  class Conn;
  class Stream;

  void Accept(std::unique_ptr<net::Connection> connection);
  void Remove(Conn* conn);

  event::Loop& loop_;
  std::unique_ptr<net::Listener> listener_;
  std::list<std::unique_ptr<Conn>> connections_;
  std::atomic<uint64_t> big_bytes_written_{0};
};

class StreamingUpstream::Stream final : public http::StreamDecoder, public http::StreamCallbacks {
 public:
  Stream(StreamingUpstream& server, http::StreamEncoder& encoder)
      : server_(server), encoder_(&encoder), pump_timer_(server.loop_, [this] { Pump(); }) {
    encoder.GetStream().AddCallbacks(*this);
  }

  void DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) override {
    const absl::string_view path = headers->Get(":path").value_or("");
    if (path == "/stream/trailers") {
      mode_ = Mode::kTrailers;
    } else if (absl::StartsWith(path, "/stream/big?bytes=")) {
      mode_ = Mode::kBig;
      CHECK(absl::SimpleAtoi(path.substr(strlen("/stream/big?bytes=")), &big_remaining_));
    }
    http::HeaderMap response{{":status", "200"}};
    if (mode_ == Mode::kBig) response.Add("content-length", absl::StrCat(big_remaining_));
    encoder_->EncodeHeaders(response, false);
    if (encoder_ == nullptr) return;
    if (mode_ == Mode::kTrailers) {
      net::Buffer body("hello");
      encoder_->EncodeData(body, false);
      http::HeaderMap trailers{{"x-trailer", "done"}, {"grpc-status", "0"}};
      Done();
      encoder_->EncodeTrailers(trailers);
      return;
    }
    if (mode_ == Mode::kBig) {
      Pump();
      return;
    }
    if (end_stream) {
      net::Buffer empty;
      Done();
      encoder_->EncodeData(empty, true);
    }
  }
  void DecodeData(net::Buffer& data, bool end_stream) override {
    if (encoder_ == nullptr || mode_ != Mode::kEcho) {
      data.Drain(data.length());
      return;
    }
    if (end_stream) {
      http::StreamEncoder* encoder = encoder_;
      Done();
      encoder->EncodeData(data, true);
      return;
    }
    encoder_->EncodeData(data, false);
  }
  void DecodeTrailers(http::HeaderMapPtr) override {
    if (encoder_ == nullptr || mode_ != Mode::kEcho) return;
    net::Buffer empty;
    http::StreamEncoder* encoder = encoder_;
    Done();
    encoder->EncodeData(empty, true);
  }

  void OnResetStream(http::StreamResetReason, absl::string_view) override {
    encoder_ = nullptr;
    pump_timer_.Disable();
  }
  void OnAboveWriteBufferHighWatermark() override { above_high_ = true; }
  void OnBelowWriteBufferLowWatermark() override {
    above_high_ = false;
    if (mode_ == Mode::kBig && encoder_ != nullptr) pump_timer_.Enable(Duration(0));
  }

 private:
  enum class Mode { kEcho, kTrailers, kBig };
  static constexpr size_t kChunk = 64 * 1024;

  void Done() {
    if (encoder_ != nullptr) encoder_->GetStream().RemoveCallbacks(*this);
  }

  void Pump() {
    // A few chunks per turn, then yield, so the loop also serves the proxy in between.
    for (int i = 0; i < 4 && encoder_ != nullptr && !above_high_ && big_remaining_ > 0; ++i) {
      const size_t n = std::min<uint64_t>(kChunk, big_remaining_);
      net::Buffer chunk(std::string(n, 'x'));
      big_remaining_ -= n;
      server_.big_bytes_written_ += n;
      const bool last = big_remaining_ == 0;
      if (last) {
        http::StreamEncoder* encoder = encoder_;
        Done();
        encoder_ = nullptr;
        encoder->EncodeData(chunk, true);
        return;
      }
      encoder_->EncodeData(chunk, false);
    }
    if (encoder_ != nullptr && !above_high_ && big_remaining_ > 0) pump_timer_.Enable(Duration(0));
  }

  StreamingUpstream& server_;
  http::StreamEncoder* encoder_;
  Mode mode_ = Mode::kEcho;
  uint64_t big_remaining_ = 0;
  bool above_high_ = false;
  event::Timer pump_timer_;
};

class StreamingUpstream::Conn final : public net::ConnectionCallbacks,
                                      public http::ServerConnectionCallbacks {
 public:
  Conn(StreamingUpstream& server, std::unique_ptr<net::Connection> connection)
      : server_(server), connection_(std::move(connection)), io_(*connection_) {
    connection_->SetCallbacks(this);
  }
  ~Conn() override {
    if (!connection_->closed()) {
      connection_->SetCallbacks(nullptr);
      connection_->Close(net::CloseMode::kNoFlush);
    }
    codec_.reset();
    streams_.clear();
  }

  void OnData(net::Buffer& data, bool end_stream) override {
    if (codec_ == nullptr) {
      codec_ = http::NewServerCodec(server_.loop_, *connection_, data, end_stream, io_, *this);
      if (codec_ == nullptr) return;  // the first bytes of the HTTP/2 preface: wait for more
    }
    (void)http::DispatchServerInput(*codec_, *connection_, data, end_stream);
  }
  void OnWriteHighWatermark() override {
    if (codec_ != nullptr) codec_->OnUnderlyingWriteHighWatermark();
  }
  void OnWriteLowWatermark() override {
    if (codec_ != nullptr) codec_->OnUnderlyingWriteLowWatermark();
  }
  void OnClose(net::CloseReason, const absl::Status&) override {
    if (codec_ != nullptr) codec_->OnConnectionClosed();
    server_.Remove(this);
  }

  http::StreamDecoder& NewStream(http::StreamEncoder& encoder) override {
    streams_.push_back(std::make_unique<Stream>(server_, encoder));
    return *streams_.back();
  }

 private:
  StreamingUpstream& server_;
  std::unique_ptr<net::Connection> connection_;
  http::ConnectionIo io_;
  std::unique_ptr<http::ServerConnection> codec_;
  // Kept for the connection's life: a test connection carries few streams.
  std::list<std::unique_ptr<Stream>> streams_;
};

inline void StreamingUpstream::Accept(std::unique_ptr<net::Connection> connection) {
  connections_.push_back(std::make_unique<Conn>(*this, std::move(connection)));
}

inline void StreamingUpstream::Remove(Conn* conn) {
  for (auto it = connections_.begin(); it != connections_.end(); ++it) {
    if (it->get() == conn) {
      loop_.DeferDelete(std::move(*it));
      connections_.erase(it);
      return;
    }
  }
}

// Accepts connections and holds them without ever answering (an upstream that hangs).
class SilentUpstream {
 public:
  explicit SilentUpstream(event::Loop& loop) {
    auto listener = net::Listener::Create(loop, *net::Address::Parse("127.0.0.1:0"), {},
                                          [this](std::unique_ptr<net::Connection> c) {
                                            c->SetCallbacks(&sink_);
                                            connections_.push_back(std::move(c));
                                          });
    CHECK_OK(listener);
    listener_ = std::move(*listener);
  }
  ~SilentUpstream() {
    for (auto& c : connections_) c->SetCallbacks(nullptr);
  }
  const net::Address& address() const { return listener_->address(); }

 private:
  struct Sink : net::ConnectionCallbacks {
    void OnData(net::Buffer& data, bool) override { data.Drain(data.length()); }
    void OnClose(net::CloseReason, const absl::Status&) override {}
  };
  Sink sink_;
  std::unique_ptr<net::Listener> listener_;
  std::vector<std::unique_ptr<net::Connection>> connections_;
};

// A TCP relay to `target`, standing for the network path to a pod. Cut() takes the path away
// under the connections it carries, as tearing down a pod's network does: from then on nothing
// passes either way and neither end hears of it (no FIN, no RST; each side's writes go into the
// void), and new connections are refused.
class CuttableRelay {
 public:
  CuttableRelay(event::Loop& loop, const net::Address& target) : loop_(loop), target_(target) {
    auto listener =
        net::Listener::Create(loop, *net::Address::Parse("127.0.0.1:0"), {},
                              [this](std::unique_ptr<net::Connection> c) { Accept(std::move(c)); });
    CHECK_OK(listener);
    address_ = (*listener)->address();
    listener_ = std::move(*listener);
  }
  ~CuttableRelay() {
    for (auto& path : paths_) {
      for (auto* side : {&path->down, &path->up}) {
        if (side->connection != nullptr) side->connection->SetCallbacks(nullptr);
      }
    }
  }

  const net::Address& address() const { return address_; }
  size_t connections() const { return paths_.size(); }
  void Cut() {
    cut_ = true;
    listener_.reset();
  }

 private:
  struct Path;
  struct Side final : net::ConnectionCallbacks {
    void OnData(net::Buffer& data, bool end_stream) override {
      if (relay->cut_ || other->connection == nullptr) {
        data.Drain(data.length());
        return;
      }
      other->connection->Write(data);
      if (end_stream) other->connection->ShutdownWrite();
    }
    void OnClose(net::CloseReason, const absl::Status&) override {
      if (relay->cut_ || other->connection == nullptr) return;
      other->connection->Close(net::CloseMode::kFlush);
    }
    CuttableRelay* relay = nullptr;
    Side* other = nullptr;
    std::unique_ptr<net::Connection> connection;
  };
  struct Path {
    Side down;
    Side up;
  };

  void Accept(std::unique_ptr<net::Connection> down) {
    auto path = std::make_unique<Path>();
    path->down.relay = path->up.relay = this;
    path->down.other = &path->up;
    path->up.other = &path->down;
    path->down.connection = std::move(down);
    path->up.connection = net::Connection::Connect(loop_, target_, std::chrono::seconds(5));
    path->down.connection->SetCallbacks(&path->down);
    path->up.connection->SetCallbacks(&path->up);
    paths_.push_back(std::move(path));
  }

  event::Loop& loop_;
  const net::Address target_;
  net::Address address_;
  std::unique_ptr<net::Listener> listener_;
  std::vector<std::unique_ptr<Path>> paths_;
  bool cut_ = false;
};

struct ClientResponse {
  http::HeaderMapPtr headers;
  std::string body;
  http::HeaderMapPtr trailers;
  std::optional<http::StreamResetReason> reset;
  bool complete = false;

  int status() const {
    int s = 0;
    if (headers != nullptr) (void)absl::SimpleAtoi(headers->Get(":status").value_or("0"), &s);
    return s;
  }
  std::string header(absl::string_view name) const {
    if (headers == nullptr) return "";
    return std::string(headers->Get(name).value_or(""));
  }
};

// One request on its own connection, through the in-repo HTTP/1.1 or HTTP/2 client codec.
class TestClient final : public net::ConnectionCallbacks,
                         public http::ConnectionCallbacks,
                         public http::StreamDecoder,
                         public http::StreamCallbacks {
 public:
  TestClient(event::Loop& loop, const net::Address& address, http::Protocol protocol)
      : loop_(loop),
        connection_(net::Connection::Connect(loop, address, std::chrono::seconds(5))),
        io_(*connection_) {
    connection_->SetCallbacks(this);
    if (protocol == http::Protocol::kHttp2) {
      codec_ = std::make_unique<http::h2::ClientCodec>(io_, *this);
    } else {
      codec_ = std::make_unique<http::h1::ClientCodec>(loop, io_, *this);
    }
  }
  ~TestClient() override {
    if (!connection_->closed()) {
      connection_->SetCallbacks(nullptr);
      connection_->Close(net::CloseMode::kNoFlush);
    }
    codec_.reset();
  }

  // Sends the request; the response collects in response().
  void Send(const http::HeaderMap& headers, absl::string_view body) {
    response_ = ClientResponse();
    encoder_ = &codec_->NewStream(*this);
    encoder_->GetStream().AddCallbacks(*this);
    if (read_disabled_) encoder_->GetStream().ReadDisable(true);
    encoder_->EncodeHeaders(headers, body.empty());
    if (!body.empty() && encoder_ != nullptr) {
      net::Buffer data(body);
      encoder_->EncodeData(data, true);
    }
  }
  // Abandons the request: RST_STREAM for HTTP/2, closing the connection for HTTP/1.
  void Reset() {
    if (encoder_ == nullptr) return;
    http::StreamEncoder* encoder = encoder_;
    encoder_ = nullptr;
    encoder->GetStream().ResetStream(http::StreamResetReason::kLocalReset);
  }
  // Stops (or resumes) taking response bytes, like a slow reader.
  void SetReadDisabled(bool disabled) {
    if (disabled == read_disabled_) return;
    read_disabled_ = disabled;
    if (encoder_ != nullptr && !response_.complete && !response_.reset.has_value()) {
      encoder_->GetStream().ReadDisable(disabled);
    }
  }

  const ClientResponse& response() const { return response_; }
  bool closed() const { return closed_; }
  bool goaway() const { return goaway_; }
  bool done() const { return response_.complete || response_.reset.has_value() || closed_; }
  uint64_t body_bytes() const { return body_bytes_; }
  // Keep only the byte count of the body (large responses).
  void set_count_only(bool count_only) { count_only_ = count_only; }

  // net::ConnectionCallbacks
  void OnData(net::Buffer& data, bool end_stream) override {
    if (absl::Status status = codec_->Dispatch(data); !status.ok()) {
      LOG(WARN) << "test client: " << status;
      connection_->Close(net::CloseMode::kNoFlush);
      return;
    }
    if (end_stream) {
      (void)codec_->OnEndOfStream();
      // The server is done with the connection.
      if (!connection_->closed()) connection_->Close(net::CloseMode::kNoFlush);
    }
  }
  void OnWriteHighWatermark() override { codec_->OnUnderlyingWriteHighWatermark(); }
  void OnWriteLowWatermark() override { codec_->OnUnderlyingWriteLowWatermark(); }
  void OnClose(net::CloseReason, const absl::Status&) override {
    closed_ = true;
    codec_->OnConnectionClosed();
  }

  // http::ConnectionCallbacks
  void OnGoAway() override { goaway_ = true; }

  // http::StreamDecoder
  void DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) override {
    response_.headers = std::move(headers);
    if (end_stream) Complete();
  }
  void DecodeData(net::Buffer& data, bool end_stream) override {
    body_bytes_ += data.length();
    if (!count_only_) response_.body += data.ToString();
    data.Drain(data.length());
    if (end_stream) Complete();
  }
  void DecodeTrailers(http::HeaderMapPtr trailers) override {
    response_.trailers = std::move(trailers);
    Complete();
  }
  // http::StreamCallbacks
  void OnResetStream(http::StreamResetReason reason, absl::string_view) override {
    encoder_ = nullptr;
    if (!response_.complete) response_.reset = reason;
  }

 private:
  void Complete() {
    response_.complete = true;
    encoder_ = nullptr;
  }

  event::Loop& loop_;
  std::unique_ptr<net::Connection> connection_;
  http::ConnectionIo io_;
  std::unique_ptr<http::ClientConnection> codec_;
  http::StreamEncoder* encoder_ = nullptr;
  ClientResponse response_;
  uint64_t body_bytes_ = 0;
  bool read_disabled_ = false;
  bool count_only_ = false;
  bool closed_ = false;
  bool goaway_ = false;
};

}  // namespace meshlet::testing

#pragma once

// Test helpers for the HTTP/2 codec: a CodecIo that collects output in a Buffer, decoders and
// stream callbacks that record what they saw, and CodecPair, a client and a server codec wired
// back to back in memory (bytes move between them only when the test pumps them).
//
// Ownership: CodecPair owns both codecs, both IOs and every recorded server-side request; the
// codecs are declared last so they are destroyed first, while the decoders they call still live.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/http/codec.h"
#include "common/http/h2/codec.h"
#include "common/net/buffer.h"

namespace meshlet::http::h2::testing {

class BufferIo : public CodecIo {
 public:
  void Write(net::Buffer& data) override {
    bytes_written += data.length();
    out.Move(data);
  }
  // A peer that does not read leaves everything ever written in the socket's buffer.
  size_t UnsentBytes() const override { return peer_reads ? 0 : bytes_written; }
  void ReadDisable(bool disable) override { read_disabled += disable ? 1 : -1; }
  void Close(bool flush) override {
    closed = true;
    close_flush = flush;
  }

  net::Buffer out;
  uint64_t bytes_written = 0;
  bool peer_reads = true;
  int read_disabled = 0;
  bool closed = false;
  bool close_flush = false;
};

class RecordingDecoder : public StreamDecoder {
 public:
  void Decode1xxHeaders(HeaderMapPtr h) override { informational.push_back(std::move(h)); }
  void DecodeHeaders(HeaderMapPtr h, bool end_stream) override {
    headers = std::move(h);
    if (end_stream) end = true;
    if (on_headers) on_headers(end_stream);
  }
  void DecodeData(net::Buffer& data, bool end_stream) override {
    ++data_calls;
    if (on_data) {
      on_data(data, end_stream);
    } else {
      body += data.ToString();
      data.Drain(data.length());
    }
    if (end_stream) end = true;
    if (end_stream && on_end) on_end();
  }
  void DecodeTrailers(HeaderMapPtr t) override {
    trailers = std::move(t);
    end = true;
    if (on_end) on_end();
  }

  std::vector<HeaderMapPtr> informational;
  HeaderMapPtr headers;
  std::string body;
  HeaderMapPtr trailers;
  bool end = false;
  int data_calls = 0;
  std::function<void(bool end_stream)> on_headers;
  std::function<void(net::Buffer&, bool)> on_data;
  std::function<void()> on_end;
};

class RecordingStreamCallbacks : public StreamCallbacks {
 public:
  void OnResetStream(StreamResetReason r, absl::string_view d) override {
    ++resets;
    reason = r;
    details = std::string(d);
  }
  void OnAboveWriteBufferHighWatermark() override {
    ++high;
    if (on_high) on_high();
  }
  void OnBelowWriteBufferLowWatermark() override {
    ++low;
    if (on_low) on_low();
  }

  int resets = 0;
  std::optional<StreamResetReason> reason;
  std::string details;
  int high = 0;
  int low = 0;
  std::function<void()> on_high;
  std::function<void()> on_low;
};

// One request as the server saw it.
struct ServerRequest {
  StreamEncoder* encoder = nullptr;
  RecordingDecoder decoder;
  RecordingStreamCallbacks callbacks;
};

class RecordingServerCallbacks : public ServerConnectionCallbacks {
 public:
  StreamDecoder& NewStream(StreamEncoder& encoder) override {
    requests.push_back(std::make_unique<ServerRequest>());
    ServerRequest& r = *requests.back();
    r.encoder = &encoder;
    encoder.GetStream().AddCallbacks(r.callbacks);
    if (on_new_stream) on_new_stream(r);
    return r.decoder;
  }
  void OnGoAway() override { ++goaways; }
  void OnFloodDrain() override { ++flood_drains; }

  std::vector<std::unique_ptr<ServerRequest>> requests;
  std::function<void(ServerRequest&)> on_new_stream;
  int goaways = 0;
  int flood_drains = 0;
};

class RecordingConnectionCallbacks : public ConnectionCallbacks {
 public:
  void OnGoAway() override { ++goaways; }
  int goaways = 0;
};

// One client request and what came back.
struct ClientRequest {
  RecordingDecoder decoder;
  RecordingStreamCallbacks callbacks;
  StreamEncoder* encoder = nullptr;
};

struct CodecPair {
  // `server_loop` (optional): the server's loop, whose clock it reads (a FakeClock's in tests).
  explicit CodecPair(const Http2Options& client_options = {},
                     const Http2Options& server_options = {}, event::Loop* server_loop = nullptr) {
    server =
        std::make_unique<ServerCodec>(server_io, server_callbacks, server_options, server_loop);
    client = std::make_unique<ClientCodec>(client_io, client_callbacks, client_options);
  }

  // Moves client output to the server and back until both are quiet. Stops at the first
  // Dispatch error and returns it.
  absl::Status Pump() {
    for (int i = 0; i < 100000; ++i) {
      if (!client_io.out.empty()) {
        absl::Status s = ClientToServer();
        if (!s.ok()) return s;
      } else if (!server_io.out.empty()) {
        absl::Status s = ServerToClient();
        if (!s.ok()) return s;
      } else {
        return absl::OkStatus();
      }
    }
    return absl::DeadlineExceededError("codecs never went quiet");
  }
  absl::Status ClientToServer() {
    net::Buffer b;
    b.Move(client_io.out);
    return server->Dispatch(b);
  }
  absl::Status ServerToClient() {
    net::Buffer b;
    b.Move(server_io.out);
    return client->Dispatch(b);
  }

  // Starts a request on the client.
  ClientRequest& Start(const HeaderMap& headers, bool end_stream) {
    client_requests.push_back(std::make_unique<ClientRequest>());
    ClientRequest& r = *client_requests.back();
    r.encoder = &client->NewStream(r.decoder);
    r.encoder->GetStream().AddCallbacks(r.callbacks);
    r.encoder->EncodeHeaders(headers, end_stream);
    return r;
  }

  BufferIo client_io;
  BufferIo server_io;
  RecordingServerCallbacks server_callbacks;
  RecordingConnectionCallbacks client_callbacks;
  std::vector<std::unique_ptr<ClientRequest>> client_requests;
  std::unique_ptr<ServerCodec> server;
  std::unique_ptr<ClientCodec> client;
};

inline HeaderMap Request(absl::string_view method = "GET", absl::string_view path = "/") {
  return HeaderMap{
      {":method", method}, {":scheme", "http"}, {":authority", "example.test"}, {":path", path}};
}

}  // namespace meshlet::http::h2::testing

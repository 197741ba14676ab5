#pragma once

// Test doubles for code that drives http::ClientConnection (connection pools, and anything that
// wants an upstream without a real HTTP codec):
//
//   FakeClientConnection  a ClientConnection speaking a tiny line protocol, one event per line,
//                         so a test can read what was sent and script what comes back.
//   FakeUpstream          a server on 127.0.0.1:0 (real sockets) that speaks the same protocol,
//                         answers requests automatically or on command, and can close
//                         connections or send GOAWAY.
//   RefusedTlsTransport   a net::Transport whose handshake always fails, as TLS to a peer that
//                         presents the wrong identity does; it sends nothing.
//
// Wire format (ids are per connection, starting at 1):
//   client → upstream   "REQ <id> <path>"    request headers (path from :path, "/" if absent)
//                       "DATA <id> <bytes>"  request body bytes (count only)
//                       "END <id>"           the request is complete
//                       "RST <id>"           the client reset the stream (HTTP/2 mode)
//   upstream → client   "RESP <id> <status>" response headers, more to come
//                       "FULL <id> <status>" response headers ending the response
//                       "BODY <id> <text>"   response body bytes
//                       "DONE <id>"          end of response (empty data, end_stream)
//                       "FIELD <id> <n> <v>" field n: v for the stream's next RESP/FULL/TRAILERS
//                       "TRAILERS <id>"      end of response with trailers (the FIELDs before)
//                       "RST <id>"           the upstream reset the stream
//                       "GOAWAY"             no new streams (HTTP/2 GOAWAY, HTTP/1 close)
//                       "SETTINGS <n>"       the peer allows n concurrent streams
// Any other line is a protocol error: Dispatch() fails and resets every open stream.
//
// HTTP/1 mode (protocol kHttp11) carries one stream at a time; HTTP/2 mode multiplexes up to
// min(max_concurrent_streams, the peer's SETTINGS). A reset in HTTP/1 mode closes the connection
// (CodecIo::Close) like a real HTTP/1 codec must.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/event/loop.h"
#include "common/http/codec.h"
#include "common/net/address.h"
#include "common/net/connection.h"
#include "common/net/listener.h"
#include "common/net/transport.h"
#include "sidecar/cluster/conn_pool.h"

namespace meshlet::sidecar::cluster::testing {

struct FakeCodecOptions {
  http::Protocol protocol = http::Protocol::kHttp11;
  // Local limit on concurrent streams in HTTP/2 mode (the peer's SETTINGS may lower it).
  uint32_t max_concurrent_streams = 100;
};

class FakeClientConnection final : public http::ClientConnection {
 public:
  FakeClientConnection(http::CodecIo& io, http::ConnectionCallbacks& callbacks,
                       FakeCodecOptions options);
  ~FakeClientConnection() override;

  // http::Connection
  absl::Status Dispatch(net::Buffer& data) override;
  void GoAway() override { ++local_goaways_; }
  http::Protocol protocol() const override { return options_.protocol; }
  size_t ActiveStreams() const override;
  void OnUnderlyingWriteHighWatermark() override { ++high_watermarks_; }
  void OnUnderlyingWriteLowWatermark() override { ++low_watermarks_; }
  // Like the real codecs: at the peer's EOF or the connection's end no open stream can finish.
  absl::Status OnEndOfStream() override {
    ResetAll(http::StreamResetReason::kConnectionTermination, "peer closed the connection");
    return absl::OkStatus();
  }
  void OnConnectionClosed() override {
    ResetAll(http::StreamResetReason::kConnectionTermination, "connection closed");
  }

  // http::ClientConnection
  http::StreamEncoder& NewStream(http::StreamDecoder& response_decoder) override;
  bool CanOpenStream() const override;

  uint32_t streams_opened() const { return next_id_ - 1; }
  bool goaway_received() const { return goaway_received_; }
  int local_goaways() const { return local_goaways_; }
  int high_watermarks() const { return high_watermarks_; }
  int low_watermarks() const { return low_watermarks_; }

  // A CodecFactory making FakeClientConnections. `created` (optional, must outlive the factory's
  // use) receives every codec made.
  static CodecFactory Factory(FakeCodecOptions options,
                              std::vector<FakeClientConnection*>* created = nullptr);

 private:
  class FakeStream;
  absl::Status HandleLine(absl::string_view line);
  FakeStream* Find(absl::string_view id_text);
  void ResetAll(http::StreamResetReason reason, absl::string_view details);

  http::CodecIo& io_;
  http::ConnectionCallbacks& callbacks_;
  FakeCodecOptions options_;
  // Streams are kept until the codec dies, so an encoder is never freed inside its own call.
  std::map<uint32_t, std::unique_ptr<FakeStream>> streams_;
  uint32_t next_id_ = 1;
  uint32_t peer_max_streams_ = UINT32_MAX;
  bool goaway_received_ = false;
  int local_goaways_ = 0;
  int high_watermarks_ = 0;
  int low_watermarks_ = 0;
};

class FakeUpstream {
 public:
  struct Request {
    size_t connection;  // index into connections, in accept order
    uint32_t id;
    std::string path;
    size_t body_bytes = 0;  // request body announced by DATA lines
    bool ended = false;
  };

  // Listens on 127.0.0.1:0; CHECK-fails if it cannot.
  explicit FakeUpstream(event::Loop& loop);
  ~FakeUpstream();

  const net::Address& address() const;

  // Sends raw protocol text (lines end with '\n') on connection `index`.
  void Send(size_t index, absl::string_view text);
  // Closes connection `index` (FIN after flushing).
  void Close(size_t index);
  // Stops accepting; later connects are refused.
  void StopListening();

  size_t accepted() const { return connections_.size(); }
  size_t open_connections() const;
  bool connection_open(size_t index) const;
  const std::vector<Request>& requests() const { return requests_; }
  // Requests that ended and have not been answered (only when auto_respond is false).
  size_t unanswered() const;
  // Answers request `i` of requests() with "FULL <id> <status>".
  void Respond(size_t i, int status = 200);

  // Answer every request with "FULL <id> 200" as soon as it ends.
  bool auto_respond = true;
  // Called after a request line or its end arrives.
  std::function<void(const Request&)> on_request;

 private:
  struct Conn;
  void OnLine(size_t index, absl::string_view line);

  event::Loop& loop_;
  std::unique_ptr<net::Listener> listener_;
  std::vector<std::unique_ptr<Conn>> connections_;
  std::vector<Request> requests_;
  std::vector<bool> answered_;
};

class RefusedTlsTransport final : public net::Transport {
 public:
  static net::TransportFactory Factory() {
    return [] { return std::make_unique<RefusedTlsTransport>(); };
  }

  absl::Status Start(const net::Address&, net::Buffer&) override { return Refused(); }
  absl::Status OnReceived(net::Buffer&, net::Buffer&, net::Buffer&) override { return Refused(); }
  absl::Status Send(net::Buffer&, net::Buffer&) override { return Refused(); }
  void Shutdown(net::Buffer&) override {}
  bool HandshakeComplete() const override { return false; }
  const net::PeerInfo& peer() const override { return peer_; }

 private:
  static absl::Status Refused() {
    return absl::PermissionDeniedError("peer identity is not the endpoint's");
  }
  net::PeerInfo peer_;
};

}  // namespace meshlet::sidecar::cluster::testing

#pragma once

// Fetch: one HTTP/1.1 request from the test app to a URL, on an event::Loop, over its own
// connection (the request says `Connection: close`), read with meshlet's HTTP/1 codec. One
// deadline covers the whole exchange: name lookup, connect, request, answer.
//
// The host is looked up with getaddrinfo (net::ResolveAll) when the fetch starts, on the loop
// thread: names come from /etc/hosts in the pods the tests play (hostAliases, or the mesh's
// service addresses), which answers at once. A refused connect tries the name's next address
// ("localhost" may be ::1 first).
//
// Ownership: the caller owns the Fetch. The callback fires exactly once, on a later loop turn
// than Start() (never from inside it), with the answer or the reason there is none; the callback
// may destroy the Fetch. Destroying the Fetch earlier cancels it: the connection closes and the
// callback never fires. Destroy it before its Loop.

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/codec.h"
#include "common/http/h1/codec.h"
#include "common/http/header_map.h"
#include "common/net/address.h"
#include "common/net/connection.h"
#include "tests/e2e/testapp/url.h"

namespace meshlet::testapp {

struct FetchRequest {
  std::string method = "GET";
  HttpUrl url;  // an empty target means "/"
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  Duration timeout = std::chrono::seconds(5);
  size_t max_response_bytes = 4 << 20;  // a longer body fails the fetch (ResourceExhausted)
};

struct FetchResult {
  // OK when an answer arrived (whatever its status). Otherwise why not: InvalidArgument (bad
  // request), Unavailable (name lookup, connect or connection failed), DeadlineExceeded,
  // ResourceExhausted (answer too long), DataLoss (the answer broke HTTP/1.1).
  absl::Status error;
  int status = 0;
  http::HeaderMap headers;  // the answer's regular headers
  std::string body;
  Duration elapsed{0};
};

class Fetch final : public net::ConnectionCallbacks,
                    public http::CodecIo,
                    public http::ConnectionCallbacks,
                    public http::StreamDecoder,
                    public http::StreamCallbacks {
 public:
  using Callback = absl::AnyInvocable<void(FetchResult)>;

  static std::unique_ptr<Fetch> Start(event::Loop& loop, FetchRequest request, Callback callback);
  ~Fetch() override;
  Fetch(const Fetch&) = delete;
  Fetch& operator=(const Fetch&) = delete;

 private:
  Fetch(event::Loop& loop, FetchRequest request, Callback callback);
  void Begin();
  // Connects to addresses_[next_address_] and sends the request.
  void Connect();
  // Records the outcome, closes the connection and schedules the callback (once).
  void Finish(absl::Status error);

  // net::ConnectionCallbacks
  void OnConnected() override { connected_ = true; }
  void OnData(net::Buffer& data, bool end_stream) override;
  void OnWriteHighWatermark() override { codec_->OnUnderlyingWriteHighWatermark(); }
  void OnWriteLowWatermark() override { codec_->OnUnderlyingWriteLowWatermark(); }
  void OnClose(net::CloseReason reason, const absl::Status& detail) override;
  // http::CodecIo
  void Write(net::Buffer& data) override { connection_->Write(data); }
  size_t UnsentBytes() const override { return connection_->buffered_write_bytes(); }
  void ReadDisable(bool disable) override;
  void Close(bool flush) override;
  // http::StreamDecoder
  void DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) override;
  void DecodeData(net::Buffer& data, bool end_stream) override;
  void DecodeTrailers(http::HeaderMapPtr trailers) override;
  // http::StreamCallbacks
  void OnResetStream(http::StreamResetReason reason, absl::string_view details) override;

  event::Loop& loop_;
  const FetchRequest request_;
  Callback callback_;
  const MonotonicTime started_;
  FetchResult result_;
  std::vector<net::Address> addresses_;
  size_t next_address_ = 0;
  std::unique_ptr<net::Connection> connection_;
  std::unique_ptr<http::h1::ClientCodec> codec_;
  event::Timer deadline_;
  event::Timer done_;  // runs the callback on a turn of its own
  bool connected_ = false;
  bool finished_ = false;
};

}  // namespace meshlet::testapp

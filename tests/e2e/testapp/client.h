#pragma once

// Fetch: one HTTP/1.1 request from the test app to a URL, on an event::Loop, over its own
// connection (the request says `Connection: close`), read with meshlet's HTTP/1 codec. One
// deadline covers the whole exchange: name lookup, connect, request, answer. Names are looked up
// as one_connection_client.h says (/etc/hosts in the pods: hostAliases, or the mesh's service
// addresses).
//
// Ownership: the caller owns the Fetch. The callback fires exactly once, on a later loop turn
// than Start() (never from inside it), with the answer or the reason there is none; the callback
// may destroy the Fetch. Destroying the Fetch earlier cancels it: the connection closes and the
// callback never fires. Destroy it before its Loop.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/http/codec.h"
#include "common/http/h1/codec.h"
#include "common/http/header_map.h"
#include "common/net/address.h"
#include "common/net/connection.h"
#include "tests/e2e/testapp/one_connection_client.h"
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

class Fetch final : public OneConnectionClient<FetchResult>,
                    public http::CodecIo,
                    public http::ConnectionCallbacks,
                    public http::StreamDecoder,
                    public http::StreamCallbacks {
 public:
  static std::unique_ptr<Fetch> Start(event::Loop& loop, FetchRequest request, Callback callback);
  ~Fetch() override;

 private:
  Fetch(event::Loop& loop, FetchRequest request, Callback callback);

  // OneConnectionClient
  void OnConnectStarted() override;  // a new codec, and the request
  void OnClosedEarly(net::CloseReason reason) override;
  std::string Awaited() const override { return "answer"; }
  // net::ConnectionCallbacks
  void OnData(net::Buffer& data, bool end_stream) override;
  void OnWriteHighWatermark() override { codec_->OnUnderlyingWriteHighWatermark(); }
  void OnWriteLowWatermark() override { codec_->OnUnderlyingWriteLowWatermark(); }
  // http::CodecIo
  void Write(net::Buffer& data) override { connection()->Write(data); }
  size_t UnsentBytes() const override;
  void ReadDisable(bool disable) override;
  void Close(bool flush) override;
  // http::StreamDecoder
  void DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) override;
  void DecodeData(net::Buffer& data, bool end_stream) override;
  void DecodeTrailers(http::HeaderMapPtr trailers) override;
  // http::StreamCallbacks
  void OnResetStream(http::StreamResetReason reason, absl::string_view details) override;

  const FetchRequest request_;
  std::unique_ptr<http::h1::ClientCodec> codec_;
};

}  // namespace meshlet::testapp

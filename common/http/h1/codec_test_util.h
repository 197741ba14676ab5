#pragma once

// Test helpers for the HTTP/1 codec: an in-memory CodecIo, a recording StreamDecoder that also
// records its stream's callbacks, and a ServerConnectionCallbacks that keeps one recorder per
// request. The recorders own nothing of the codec; tests keep them alive as long as the codec.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/base/logging.h"
#include "common/http/codec.h"
#include "common/http/header_map.h"
#include "common/net/buffer.h"

namespace meshlet::http::h1::testing {

// Collects what the codec writes; counts read-disable the way a Connection does.
class FakeIo : public CodecIo {
 public:
  void Write(net::Buffer& data) override {
    ++writes;
    written.Move(data);
  }
  size_t UnsentBytes() const override { return 0; }
  void ReadDisable(bool disable) override {
    read_disabled += disable ? 1 : -1;
    CHECK(read_disabled >= 0) << "unbalanced ReadDisable";
  }
  void Close(bool flush) override {
    ++close_calls;
    closed = true;
    close_flush = flush;
  }
  std::string Take() {
    std::string s = written.ToString();
    written.Clear();
    return s;
  }

  net::Buffer written;
  int writes = 0;
  int read_disabled = 0;
  int close_calls = 0;
  bool closed = false;
  bool close_flush = false;
};

// Records one message's decoding and the stream's events.
class RecordingDecoder : public StreamDecoder, public StreamCallbacks {
 public:
  void Decode1xxHeaders(HeaderMapPtr headers) override {
    informational.push_back(std::move(headers));
    if (on_1xx) on_1xx();
  }
  void DecodeHeaders(HeaderMapPtr h, bool end_stream) override {
    headers = std::move(h);
    if (end_stream) ended = true;
    if (on_headers) on_headers();
  }
  void DecodeData(net::Buffer& data, bool end_stream) override {
    ++data_calls;
    body += data.ToString();
    data.Drain(data.length());
    if (end_stream) ended = true;
    if (on_data) on_data();
  }
  void DecodeTrailers(HeaderMapPtr t) override {
    trailers = std::move(t);
    ended = true;
    if (on_data) on_data();
  }
  void OnResetStream(StreamResetReason r, absl::string_view details) override {
    reset = r;
    reset_details = std::string(details);
  }
  void OnAboveWriteBufferHighWatermark() override { ++high_watermarks; }
  void OnBelowWriteBufferLowWatermark() override { ++low_watermarks; }

  std::string Header(absl::string_view name) const {
    if (headers == nullptr) return "<no headers>";
    return std::string(headers->Get(name).value_or("<absent>"));
  }

  std::vector<HeaderMapPtr> informational;
  HeaderMapPtr headers;
  HeaderMapPtr trailers;
  std::string body;
  int data_calls = 0;
  bool ended = false;
  std::optional<StreamResetReason> reset;
  std::string reset_details;
  int high_watermarks = 0;
  int low_watermarks = 0;
  std::function<void()> on_1xx;
  std::function<void()> on_headers;
  std::function<void()> on_data;
};

// A request seen by a server codec: its decoder plus the encoder to answer with.
struct ServerRequest : RecordingDecoder {
  explicit ServerRequest(StreamEncoder& e) : encoder(&e) {}
  StreamEncoder* encoder;
};

class RecordingServerCallbacks : public ServerConnectionCallbacks {
 public:
  StreamDecoder& NewStream(StreamEncoder& encoder) override {
    requests.push_back(std::make_unique<ServerRequest>(encoder));
    ServerRequest& r = *requests.back();
    encoder.GetStream().AddCallbacks(r);
    if (on_new_stream) on_new_stream(r);
    return r;
  }
  void OnGoAway() override { ++goaways; }

  std::vector<std::unique_ptr<ServerRequest>> requests;
  std::function<void(ServerRequest&)> on_new_stream;
  int goaways = 0;
};

class RecordingConnectionCallbacks : public ConnectionCallbacks {
 public:
  void OnGoAway() override { ++goaways; }
  int goaways = 0;
};

}  // namespace meshlet::http::h1::testing

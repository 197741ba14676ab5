#pragma once

// The user side of a codec fuzz target (h1/codec_fuzz.cc, h2/codec_fuzz.cc): one server or client
// connection whose peer bytes come from the fuzzer, and a user that answers, streams bodies, sends
// trailers, resets, read-disables and goes away as a pseudo-random script decides. Every stream
// checks what codec.h promises: headers arrive once and first; nothing arrives after the end of
// the message, after a reset, or after the stream completed for its user; at most one reset.
// A broken promise aborts, so the fuzzer reports it like a crash.
//
// Ownership: the user owns its streams (they outlive the codec, which the target owns and
// must destroy before the user) and the CodecIo the codec writes to.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/http/codec.h"
#include "common/http/header_map.h"
#include "common/net/buffer.h"

namespace meshlet::http::fuzzing {

[[noreturn]] inline void Die(const char* what) {
  std::fprintf(stderr, "codec fuzz invariant broken: %s\n", what);
  std::abort();
}

// Discards what the codec writes; counts read-disable like a connection.
class DiscardIo : public CodecIo {
 public:
  void Write(net::Buffer& data) override {
    written += data.length();
    data.Drain(data.length());
  }
  size_t UnsentBytes() const override { return 0; }
  void ReadDisable(bool disable) override { read_disabled += disable ? 1 : -1; }
  void Close(bool) override { closed = true; }

  uint64_t written = 0;
  int read_disabled = 0;
  bool closed = false;
};

// When a client stream completes for its user (codec.h leaves it to the protocol). A server
// stream completes with its response in both protocols (an early response drops the rest of the
// request).
enum class ClientCompletion {
  kWithResponse,  // HTTP/1: the response ended (an unfinished request is never sent further)
  kBothEnded,     // HTTP/2: the request and the response ended
};

// One stream as its user sees it.
struct FuzzStream : public StreamDecoder, public StreamCallbacks {
  bool server = true;
  ClientCompletion completion = ClientCompletion::kBothEnded;
  StreamEncoder* encoder = nullptr;
  bool headers_seen = false;
  bool in_ended = false;   // the peer's message ended (end_stream or trailers)
  bool out_ended = false;  // our message ended
  bool reset = false;
  int read_disabled = 0;
  int planned = -1;  // server: what the user does with the request
  std::function<void()> on_headers;

  bool Complete() const {
    if (server) return out_ended;
    if (completion == ClientCompletion::kWithResponse) return in_ended;
    return out_ended && in_ended;
  }
  // The encoder may be used: the stream neither reset nor complete.
  bool Usable() const { return encoder != nullptr && !reset && !Complete(); }

  void CheckAlive(const char* what) const {
    if (reset || Complete() || in_ended) Die(what);
  }
  void Decode1xxHeaders(HeaderMapPtr headers) override {
    CheckAlive("1xx after the stream ended");
    if (server) Die("1xx on a server stream");
    if (headers_seen) Die("1xx after the final headers");
    if (headers == nullptr) Die("null 1xx headers");
  }
  void DecodeHeaders(HeaderMapPtr headers, bool end_stream) override {
    CheckAlive("headers after the stream ended");
    if (headers_seen) Die("headers twice");
    if (headers == nullptr) Die("null headers");
    headers_seen = true;
    if (end_stream) in_ended = true;
    if (on_headers) on_headers();
  }
  void DecodeData(net::Buffer& data, bool end_stream) override {
    CheckAlive("data after the stream ended");
    if (!headers_seen) Die("data before headers");
    data.Drain(data.length());
    if (end_stream) in_ended = true;
  }
  void DecodeTrailers(HeaderMapPtr trailers) override {
    CheckAlive("trailers after the stream ended");
    if (!headers_seen) Die("trailers before headers");
    if (trailers == nullptr) Die("null trailers");
    in_ended = true;
  }
  void OnResetStream(StreamResetReason, absl::string_view) override {
    if (reset) Die("reset twice");
    if (Complete()) Die("reset after the stream completed");
    reset = true;
  }
};

inline HeaderMap FuzzRequest(absl::string_view method) {
  return HeaderMap{
      {":method", method}, {":scheme", "http"}, {":authority", "fuzz.test"}, {":path", "/fuzz"}};
}

// Server or client user of one codec. The target creates the codec (with this user as its
// callbacks) and hands it over with SetServer/SetClient.
class CodecFuzzUser : public ServerConnectionCallbacks {
 public:
  CodecFuzzUser(ClientCompletion completion, uint32_t seed) : completion_(completion), rng(seed) {}

  void SetServer(ServerConnection& codec) { connection_ = &codec; }
  void SetClient(ClientConnection& codec) {
    connection_ = &codec;
    client_ = &codec;
  }
  Connection& codec() { return *connection_; }

  // Server: a request began.
  StreamDecoder& NewStream(StreamEncoder& encoder) override {
    if (client_ != nullptr) Die("NewStream on a client");
    FuzzStream& s = AddStream(true);
    s.encoder = &encoder;
    encoder.GetStream().AddCallbacks(s);
    s.planned = static_cast<int>(rng() % 8);
    // Some requests get an answer at once, from inside Dispatch.
    s.on_headers = [this, &s] {
      if (!s.Usable()) return;
      if (s.planned == 3) s.encoder->GetStream().ResetStream(StreamResetReason::kLocalReset);
      if (s.planned == 4) ReadDisable(s, true);
      if (s.planned == 6) s.encoder->Encode1xxHeaders(HeaderMap{{":status", "100"}});
      if (s.planned == 0) Respond(s);
    };
    return s;
  }
  void OnGoAway() override { ++goaways; }

  // Client: starts a request of one of several shapes, if the codec can take one.
  void StartRequest() {
    if (client_ == nullptr || !client_->CanOpenStream()) return;
    FuzzStream& s = AddStream(false);
    s.encoder = &client_->NewStream(s);
    s.encoder->GetStream().AddCallbacks(s);
    HeaderMap request = FuzzRequest(rng() % 2 ? "POST" : "GET");
    switch (rng() % 4) {
      case 0:
        s.out_ended = true;
        s.encoder->EncodeHeaders(request, true);
        break;
      case 1:
        s.encoder->EncodeHeaders(request, false);
        if (s.Usable()) SendBody(s, rng() % 70000, true);
        break;
      case 2:
        request.Add("te", "trailers");
        s.encoder->EncodeHeaders(request, false);
        if (s.Usable()) SendBody(s, rng() % 300, false);
        if (s.Usable()) {
          s.out_ended = true;
          s.encoder->EncodeTrailers(HeaderMap{{"x-checksum", "1"}});
        }
        break;
      case 3:  // the body follows between reads
        s.encoder->EncodeHeaders(request, false);
        break;
    }
  }

  // Between reads: the user does something to a stream or to the connection.
  void Act() {
    FuzzStream* s = streams.empty() ? nullptr : streams[rng() % streams.size()].get();
    switch (rng() % 10) {
      case 0:
        if (s != nullptr) ReadDisable(*s, false);
        break;
      case 1:
        if (s != nullptr && s->Usable()) {
          s->encoder->GetStream().ResetStream(StreamResetReason::kLocalReset);
        }
        break;
      case 2:
        if (s != nullptr && s->Usable() && !s->out_ended) {
          if (s->server) {
            Respond(*s);
          } else {
            SendBody(*s, rng() % 1000, true);
          }
        }
        break;
      case 3:
        codec().GoAway();
        break;
      case 4:
        codec().OnUnderlyingWriteHighWatermark();
        codec().OnUnderlyingWriteLowWatermark();
        break;
      case 5:
        StartRequest();
        break;
      default:
        break;
    }
    // Requests that ended get their answer now, except the ones left hanging on purpose.
    for (auto& st : streams) {
      if (st->server && st->in_ended && st->planned != 7 && st->Usable()) Respond(*st);
    }
  }

  // Feeds `input` in pseudo-random pieces (often all at once), acting between them and calling
  // `after_each` (e.g. to run a loop). Stops at the first Dispatch error.
  void Feed(absl::string_view input, const std::function<void()>& after_each) {
    size_t pos = 0;
    while (pos < input.size()) {
      size_t chunk = rng() % 4 == 0 ? input.size() : 1 + rng() % 64;
      chunk = std::min(chunk, input.size() - pos);
      net::Buffer in;
      in.Append(input.substr(pos, chunk));
      pos += chunk;
      if (!codec().Dispatch(in).ok()) return;
      if (after_each) after_each();
      Act();
      if (after_each) after_each();
    }
  }

  // After the codec is gone: every stream completed or was reset.
  void CheckAllEnded() const {
    for (size_t i = 0; i < streams.size(); ++i) {
      const FuzzStream& s = *streams[i];
      if (s.reset || s.Complete()) continue;
      std::fprintf(stderr,
                   "stream %zu of %zu (%s): headers_seen=%d in_ended=%d out_ended=%d planned=%d\n",
                   i, streams.size(), s.server ? "server" : "client", s.headers_seen, s.in_ended,
                   s.out_ended, s.planned);
      Die("a stream neither completed nor was reset");
    }
  }

  DiscardIo io;
  std::vector<std::unique_ptr<FuzzStream>> streams;
  int goaways = 0;

 private:
  FuzzStream& AddStream(bool server) {
    streams.push_back(std::make_unique<FuzzStream>());
    FuzzStream& s = *streams.back();
    s.server = server;
    s.completion = completion_;
    return s;
  }

  void ReadDisable(FuzzStream& s, bool disable) {
    if (!s.Usable() || s.out_ended) return;
    if (!disable && s.read_disabled == 0) return;
    s.read_disabled += disable ? 1 : -1;
    s.encoder->GetStream().ReadDisable(disable);
  }

  // Sends `bytes` of body; with end_stream the message ends (out_ended is set first, since the
  // stream may complete inside the call).
  void SendBody(FuzzStream& s, size_t bytes, bool end_stream) {
    net::Buffer body;
    body.Append(std::string(bytes, 'b'));
    if (end_stream) s.out_ended = true;
    s.encoder->EncodeData(body, end_stream);
  }

  // Server: answers with one of several response shapes.
  void Respond(FuzzStream& s) {
    if (!s.Usable() || s.out_ended) return;
    switch (rng() % 4) {
      case 0:
        s.out_ended = true;
        s.encoder->EncodeHeaders(HeaderMap{{":status", "204"}}, true);
        break;
      case 1:
        s.encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, false);
        if (s.Usable()) SendBody(s, rng() % 70000, true);
        break;
      case 2:
        s.encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, false);
        if (s.Usable()) SendBody(s, rng() % 300, false);
        if (s.Usable()) {
          s.out_ended = true;
          s.encoder->EncodeTrailers(HeaderMap{{"grpc-status", "0"}});
        }
        break;
      case 3:
        s.encoder->EncodeHeaders(HeaderMap{{":status", "503"}}, false);
        if (s.Usable()) SendBody(s, rng() % 20, false);
        if (s.Usable()) s.encoder->GetStream().ResetStream(StreamResetReason::kLocalReset);
        break;
    }
  }

  const ClientCompletion completion_;
  Connection* connection_ = nullptr;
  ClientConnection* client_ = nullptr;

 public:
  std::minstd_rand rng;
};

}  // namespace meshlet::http::fuzzing

// Fuzz target for the HTTP/2 codec: a server or a client codec fed arbitrary peer bytes, with a
// user that answers, streams bodies, sends trailers, resets, read-disables and goes away as a
// pseudo-random script decides.
//
// Input layout: byte 0 picks the mode, byte 1 seeds the chunking and the user's script, the rest
// is what the peer sends.
//   mode bit 0     0: ServerCodec, 1: ClientCodec
//   mode bit 1     prepend a valid preface (server: client preface + SETTINGS; client: SETTINGS),
//                  so mutations start in the frame layer
//   mode bit 2     tight options (smallest windows, tiny buffers, 2 concurrent streams, small
//   header
//                  lists) to reach flow-control and limit paths with short inputs
//   mode bits 3-4  client: how many requests to start before the first byte arrives (1-4)
//   mode bits 5-6  how the connection ends: OnEndOfStream, OnConnectionClosed, or neither
//   mode bit 7     server: abuse limits a few frames away (2 premature resets, 3 PING/SETTINGS,
//                  2 PRIORITY per stream) with drain_on_flood, so floods, their drain and the
//                  cut-off during it are reached
// Invariants (on top of no crash, leak or sanitizer report): the stream checks of
// common/http/codec_fuzz_user.h, and once the codec is destroyed every stream has either
// completed or been reset.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/fuzz/fuzz_target.h"
#include "common/http/codec.h"
#include "common/http/codec_fuzz_user.h"
#include "common/http/h2/codec.h"
#include "common/http/h2/test_util.h"
#include "common/http/header_map.h"
#include "common/net/buffer.h"

namespace meshlet::http::h2 {
namespace {

constexpr absl::string_view kClientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

std::string Frame(uint8_t type, uint8_t flags, uint32_t stream, absl::string_view payload) {
  std::string f;
  uint32_t len = static_cast<uint32_t>(payload.size());
  f.push_back(static_cast<char>(len >> 16));
  f.push_back(static_cast<char>(len >> 8));
  f.push_back(static_cast<char>(len));
  f.push_back(static_cast<char>(type));
  f.push_back(static_cast<char>(flags));
  for (int shift = 24; shift >= 0; shift -= 8) f.push_back(static_cast<char>(stream >> shift));
  f.append(payload.data(), payload.size());
  return f;
}

std::string U32(uint32_t v) {
  std::string s;
  for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<char>(v >> shift));
  return s;
}

std::string Setting(uint16_t id, uint32_t value) {
  std::string s;
  s.push_back(static_cast<char>(id >> 8));
  s.push_back(static_cast<char>(id));
  return s + U32(value);
}

// HPACK literal header fields without indexing and without Huffman coding (RFC 7541 6.2.2);
// short names and values only (lengths below 127).
std::string Hpack(std::initializer_list<std::pair<absl::string_view, absl::string_view>> fields) {
  std::string block;
  for (const auto& [name, value] : fields) {
    block.push_back(0);
    block.push_back(static_cast<char>(name.size()));
    block.append(name.data(), name.size());
    block.push_back(static_cast<char>(value.size()));
    block.append(value.data(), value.size());
  }
  return block;
}

void FuzzOne(const uint8_t* data, size_t size) {
  if (size < 2) return;
  const uint8_t mode = data[0];
  const bool server_side = (mode & 1) == 0;
  std::string input;
  if (mode & 2) {
    if (server_side) input.append(kClientPreface.data(), kClientPreface.size());
    input += Frame(4, 0, 0, "");
  }
  input.append(reinterpret_cast<const char*>(data + 2), size - 2);

  Http2Options options;
  if (mode & 4) {
    options.max_concurrent_streams = 2;
    options.initial_stream_window_size = 65535;
    options.initial_connection_window_size = 65535;
    options.max_header_list_size = 1024;
    options.stream_buffer_limit = 64;
    options.assumed_peer_max_concurrent_streams = 2;
  }
  if (mode & 0x80) {
    // Abuse limits within reach of short inputs, and the drain after them (the sidecar's).
    options.drain_on_flood = true;
    options.stream_reset_burst = 2;
    options.stream_resets_per_second = 0;
    options.control_frame_burst = 3;
    options.max_inbound_priority_frames_per_stream = 2;
  }
  fuzzing::CodecFuzzUser user(fuzzing::ClientCompletion::kBothEnded,
                              data[1] * 2654435761u + static_cast<uint32_t>(size));
  std::unique_ptr<ServerCodec> server;
  std::unique_ptr<ClientCodec> client;
  if (server_side) {
    server = std::make_unique<ServerCodec>(user.io, user, options);
    user.SetServer(*server);
  } else {
    client = std::make_unique<ClientCodec>(user.io, user, options);
    user.SetClient(*client);
    int requests = 1 + ((mode >> 3) & 3);
    for (int i = 0; i < requests; ++i) user.StartRequest();
  }
  user.Feed(input, nullptr);
  switch ((mode >> 5) & 3) {
    case 0:
      (void)user.codec().OnEndOfStream();
      break;
    case 1:
      user.codec().OnConnectionClosed();
      break;
    default:
      break;
  }
  // Destroying the codec resets whatever is still open (codec.h).
  server.reset();
  client.reset();
  user.CheckAllEnded();
}

}  // namespace
}  // namespace meshlet::http::h2

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  meshlet::http::h2::FuzzOne(data, size);
  return 0;
}

namespace meshlet::fuzz {

using meshlet::http::h2::Frame;
using meshlet::http::h2::Hpack;
using meshlet::http::h2::Setting;
using meshlet::http::h2::U32;

// Conversations recorded from the codecs themselves (what a real peer sends), plus hand-made
// frame sequences for the control frames and edge cases a well-behaved peer never sends.
std::vector<std::string> SeedCorpus() {
  using namespace meshlet::http;
  std::vector<std::string> seeds;
  // Recorded: the client's bytes become server-side seeds, the server's client-side seeds.
  for (int shape = 0; shape < 4; ++shape) {
    h2::testing::CodecPair pair;
    std::string client_bytes, server_bytes;
    pair.server_callbacks.on_new_stream = [shape](h2::testing::ServerRequest& r) {
      r.decoder.on_end = [&r, shape] {
        if (shape == 3) {
          r.encoder->GetStream().ResetStream(StreamResetReason::kLocalReset);
          return;
        }
        r.encoder->EncodeHeaders(HeaderMap{{":status", "200"}}, false);
        net::Buffer body;
        body.Append("response body");
        r.encoder->EncodeData(body, shape != 1);
        if (shape == 1) r.encoder->EncodeTrailers(HeaderMap{{"grpc-status", "0"}});
      };
    };
    int requests = 1 + shape;
    for (int i = 0; i < requests; ++i) {
      bool with_body = (i + shape) % 2 == 1;
      h2::testing::ClientRequest& r =
          pair.Start(h2::testing::Request(with_body ? "POST" : "GET", "/seed"), !with_body);
      if (with_body) {
        net::Buffer body;
        body.Append("request body");
        r.encoder->EncodeData(body, shape != 2);
        if (shape == 2) r.encoder->EncodeTrailers(HeaderMap{{"x-t", "1"}});
      }
    }
    for (int round = 0; round < 50; ++round) {
      if (!pair.client_io.out.empty()) {
        client_bytes += pair.client_io.out.ToString();
        if (!pair.ClientToServer().ok()) break;
      } else if (!pair.server_io.out.empty()) {
        server_bytes += pair.server_io.out.ToString();
        if (!pair.ServerToClient().ok()) break;
      } else {
        break;
      }
    }
    const uint8_t requests_bits = static_cast<uint8_t>((requests - 1) << 3);
    seeds.push_back(std::string{char(0), char(shape)} + client_bytes);
    seeds.push_back(std::string{char(4), char(shape + 10)} + client_bytes);
    seeds.push_back(std::string{char(1 | requests_bits), char(shape)} + server_bytes);
    seeds.push_back(std::string{char(1 | 4 | requests_bits | 32), char(shape)} + server_bytes);
  }

  // Hand-made frames after the harness's preface (mode bit 1).
  const std::string get =
      Hpack({{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {":authority", "a"}});
  const std::string post = Hpack({{":method", "POST"},
                                  {":scheme", "http"},
                                  {":path", "/p"},
                                  {":authority", "a"},
                                  {"content-length", "3"}});
  const std::string status = Hpack({{":status", "200"}});
  std::vector<std::string> server_frames = {
      Frame(1, 5, 1, get) + Frame(1, 5, 3, get) + Frame(3, 0, 1, U32(8)),
      Frame(1, 4, 1, post) + Frame(0, 0, 1, "ab") + Frame(0, 1, 1, "c"),
      Frame(1, 4, 1, post) + Frame(0, 8 | 1, 1, std::string(1, '\2') + "abc" + "pp"),
      Frame(1, 1, 1, get.substr(0, 10)) + Frame(9, 4, 1, get.substr(10)),
      Frame(1, 4, 1, post) + Frame(0, 0, 1, "ab") + Frame(1, 5, 1, Hpack({{"x-trailer", "1"}})),
      Frame(4, 0, 0, Setting(4, 1) + Setting(5, 16384) + Setting(3, 1) + Setting(1, 0)) +
          Frame(1, 5, 1, get) + Frame(8, 0, 1, U32(100000)) + Frame(8, 0, 0, U32(1 << 30)),
      Frame(1, 0x20 | 5, 1, U32(0) + std::string(1, '\x10') + get) + Frame(2, 0, 1, U32(3) + "x"),
      Frame(6, 0, 0, "12345678") + Frame(1, 5, 1, get) + Frame(7, 0, 0, U32(1) + U32(0)),
      Frame(1, 5, 1, get) + Frame(1, 5, 1, get) + Frame(1, 5, 2, get),
      Frame(1, 4, 1, post) + Frame(0, 0, 1, std::string(70000 % 16384, 'x')) + Frame(4, 1, 0, ""),
  };
  std::vector<std::string> client_frames = {
      Frame(1, 4, 1, status) + Frame(0, 1, 1, "hello"),
      Frame(1, 4, 1, Hpack({{":status", "100"}})) + Frame(1, 4, 1, status) + Frame(0, 0, 1, "x") +
          Frame(1, 5, 1, Hpack({{"grpc-status", "0"}})),
      Frame(7, 0, 0, U32(1) + U32(0)) + Frame(1, 5, 1, status),
      Frame(7, 0, 0, U32(0) + U32(0) + "debug") + Frame(3, 0, 3, U32(7)),
      Frame(3, 0, 1, U32(7)) + Frame(1, 5, 3, status),
      Frame(5, 4, 1, U32(2) + status) + Frame(1, 5, 1, status),
      Frame(1, 1, 1, status.substr(0, 3)) + Frame(9, 4, 1, status.substr(3)),
      Frame(4, 0, 0, Setting(4, 0) + Setting(3, 0)) + Frame(8, 0, 1, U32(10)) +
          Frame(1, 5, 1, status),
      Frame(1, 4, 1, Hpack({{":status", "200"}, {"content-length", "2"}})) + Frame(0, 1, 1, "abc"),
      Frame(6, 1, 0, "12345678") + Frame(1, 5, 1, status) + Frame(0, 1, 1, ""),
  };
  uint8_t split = 0;
  for (const std::string& f : server_frames) {
    for (uint8_t mode : {2, 6}) seeds.push_back(std::string{char(mode), char(split++)} + f);
  }
  for (const std::string& f : client_frames) {
    for (uint8_t mode : {3, 7, 3 | 8, 3 | 64}) {
      seeds.push_back(std::string{char(mode), char(split++)} + f);
    }
  }
  return seeds;
}

std::vector<std::string> Dictionary() {
  std::vector<std::string> d = {
      std::string(meshlet::http::h2::kClientPreface),
      U32(0),
      U32(1),
      U32(3),
      U32(0x7fffffff),
      U32(0xffffffff),
      Hpack({{":status", "200"}}),
      Hpack({{":method", "GET"}}),
      Hpack({{":path", "/"}}),
      Hpack({{"content-length", "0"}}),
      Hpack({{"te", "trailers"}}),
      Hpack({{"connection", "close"}}),
      std::string("\x82"),          // :method GET (static table)
      std::string("\x84"),          // :path /
      std::string("\x86"),          // :scheme http
      std::string("\x88"),          // :status 200
      std::string("\x3f\xe1\x1f"),  // dynamic table size update
  };
  for (uint8_t type = 0; type <= 9; ++type) {
    for (uint8_t flags : {0, 1, 4, 5, 8, 0x20}) {
      d.push_back(Frame(type, flags, type <= 3 || type == 5 || type == 9 ? 1 : 0, "").substr(0, 9));
    }
  }
  return d;
}

}  // namespace meshlet::fuzz

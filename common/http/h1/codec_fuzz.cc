// Fuzz target for the HTTP/1.1 codec (not only the parser): a ServerCodec or a ClientCodec fed
// arbitrary peer bytes, with the scripted user of common/http/codec_fuzz_user.h answering,
// streaming, resetting and read-disabling, and the loop run between reads so held-back input
// (pipelining, read-disable) resumes as it would on a real connection.
//
// Input layout: byte 0 picks the mode, byte 1 seeds the chunking and the user's script, the rest
// is what the peer sends.
//   mode bit 0     0: ServerCodec, 1: ClientCodec
//   mode bit 1     tight parser limits (short start line, few small headers)
//   mode bit 2     auto_continue (server)
//   mode bit 3     allow_connect (server)
//   mode bits 5-6  how the connection ends: OnEndOfStream, OnConnectionClosed, or neither
// Invariants: the stream checks of codec_fuzz_user.h; once the connection is closed under the
// codec, every stream has completed or been reset.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/event/loop.h"
#include "common/fuzz/fuzz_target.h"
#include "common/http/codec_fuzz_user.h"
#include "common/http/h1/codec.h"
#include "common/http/h1/parser_test_util.h"

namespace meshlet::http::h1 {
namespace {

void FuzzOne(const uint8_t* data, size_t size) {
  if (size < 2) return;
  static event::Loop* loop = new event::Loop();
  const uint8_t mode = data[0];
  const bool server_side = (mode & 1) == 0;
  absl::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);

  CodecOptions options;
  if (mode & 2) {
    options.limits.max_start_line_bytes = 64;
    options.limits.max_uri_bytes = 32;
    options.limits.max_header_bytes = 128;
    options.limits.max_header_count = 4;
    options.limits.max_chunk_extension_bytes = 8;
  }
  options.auto_continue = (mode & 4) != 0;
  options.allow_connect = (mode & 8) != 0;
  options.stream_buffer_limit = 1024;

  fuzzing::CodecFuzzUser user(fuzzing::ClientCompletion::kWithResponse,
                              data[1] * 2654435761u + static_cast<uint32_t>(size));
  std::unique_ptr<ServerCodec> server;
  std::unique_ptr<ClientCodec> client;
  if (server_side) {
    server = std::make_unique<ServerCodec>(*loop, user.io, user, options);
    user.SetServer(*server);
  } else {
    client = std::make_unique<ClientCodec>(*loop, user.io, user, options);
    user.SetClient(*client);
    user.StartRequest();
  }
  user.Feed(input, [] { loop->RunUntilIdle(); });
  const int end = (mode >> 5) & 3;
  if (end == 0) {
    (void)user.codec().OnEndOfStream();
    loop->RunUntilIdle();
  }
  if (end <= 1) {
    user.codec().OnConnectionClosed();
    // The connection is gone: whatever had not completed was reset (codec.h).
    user.CheckAllEnded();
  }
  server.reset();
  client.reset();
  loop->RunUntilIdle();
}

}  // namespace
}  // namespace meshlet::http::h1

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  meshlet::http::h1::FuzzOne(data, size);
  return 0;
}

namespace meshlet::fuzz {

// Seeds: mode byte, script byte, peer bytes. Server seeds are requests of every framing (several
// pipelined), client seeds responses of every framing.
std::vector<std::string> SeedCorpus() {
  return meshlet::http::h1::testing::SampleSeeds({0, 2, 4 | 8, 32, 64}, {1, 3, 33, 65});
}

std::vector<std::string> Dictionary() {
  return {
      "\r\n",
      "\r\n\r\n",
      " ",
      ":",
      ",",
      ";",
      "0\r\n\r\n",
      "HTTP/1.1 ",
      "HTTP/1.0",
      "GET ",
      "HEAD ",
      "CONNECT ",
      "Host: a\r\n",
      "Content-Length: ",
      "Transfer-Encoding: chunked\r\n",
      "Connection: close\r\n",
      "Connection: keep-alive\r\n",
      "Connection: upgrade\r\nUpgrade: websocket\r\n",
      "Expect: 100-continue\r\n",
      "HTTP/1.1 100 Continue\r\n\r\n",
      "HTTP/1.1 101 Switching Protocols\r\n",
      "HTTP/1.1 200 OK\r\n",
      "HTTP/1.1 204 No Content\r\n",
  };
}

}  // namespace meshlet::fuzz

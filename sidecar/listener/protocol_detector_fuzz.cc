// Fuzz target for protocol detection (protocol_detector.h) on a listener's first bytes.
//
// Invariants: the answer for a prefix, once decided, is the answer for every longer input (more
// bytes never change a decision); kMaxDetectBytes bytes always decide; a Buffer holding the bytes
// in several slices gives the same answer as the plain bytes. The same for the first-line check
// (DetectHttp1RequestLine), which answers only HTTP/1 or opaque, and always within its limit.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/fuzz/fuzz_target.h"
#include "common/net/buffer.h"
#include "sidecar/listener/protocol_detector.h"

namespace meshlet::sidecar::listener {
namespace {

[[noreturn]] void Die(const char* what, absl::string_view input) {
  std::fprintf(stderr, "protocol_detector_fuzz invariant broken: %s (%zu bytes)\n", what,
               input.size());
  std::abort();
}

void FuzzOne(absl::string_view input) {
  const DetectedProtocol full = DetectProtocol(input);
  if (input.size() >= kMaxDetectBytes && full == DetectedProtocol::kNeedMoreBytes) {
    Die("undecided after kMaxDetectBytes", input);
  }
  for (size_t n = 0; n < input.size() && n <= kMaxDetectBytes; ++n) {
    DetectedProtocol partial = DetectProtocol(input.substr(0, n));
    if (partial != DetectedProtocol::kNeedMoreBytes && partial != full) {
      Die("a decision changed with more bytes", input);
    }
  }
  // The same bytes as a Buffer of small slices.
  net::Buffer buffer;
  for (size_t pos = 0; pos < input.size(); pos += 3) {
    net::Buffer piece;
    piece.Append(input.substr(pos, 3));
    buffer.Move(piece);
  }
  if (DetectProtocol(buffer) != DetectProtocol(input.substr(0, kMaxDetectBytes))) {
    Die("Buffer and bytes disagree", input);
  }
  // The first-line check: final once decided, the same over a Buffer, and never a protocol it
  // does not decide between.
  constexpr size_t kMaxLine = 64;
  const DetectedProtocol line = DetectHttp1RequestLine(input, kMaxLine);
  if (line == DetectedProtocol::kHttp2 || line == DetectedProtocol::kTls) {
    Die("the first-line check answered neither HTTP/1 nor opaque", input);
  }
  if (input.size() > kMaxLine && line == DetectedProtocol::kNeedMoreBytes) {
    Die("the first-line check undecided past its limit", input);
  }
  for (size_t n = 0; n < input.size() && n <= kMaxLine + 1; ++n) {
    const DetectedProtocol partial = DetectHttp1RequestLine(input.substr(0, n), kMaxLine);
    if (partial != DetectedProtocol::kNeedMoreBytes && partial != line) {
      Die("a first-line decision changed with more bytes", input);
    }
  }
  if (DetectHttp1RequestLine(buffer, kMaxLine) != line) {
    Die("the first-line check: Buffer and bytes disagree", input);
  }
}

}  // namespace
}  // namespace meshlet::sidecar::listener

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  meshlet::sidecar::listener::FuzzOne(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}

namespace meshlet::fuzz {

std::vector<std::string> SeedCorpus() {
  return {"GET / HTTP/1.1\r\n",
          "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
          "PRI * HTTP/2.0\r\n\r\nXX",
          std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11),
          std::string("\x16\x03\x03\x00\x10\x02", 6),
          "PROPFIND /x HTTP/1.1",
          "PURGE /x HTTP/1.1\r\n",
          "\r\nGET / HTTP/1.1\r\n",
          "GET\t/ HTTP/1.1\r\n",
          "INVALID CONNECTION PREFACE\r\n\r\n",
          "SSH-2.0-OpenSSH_9.2\r\n",
          "G",
          std::string("\0\0\0\0", 4)};
}

std::vector<std::string> Dictionary() {
  return {"GET ",
          "POST ",
          "PRI ",
          "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
          std::string("\x16\x03", 2),
          std::string("\x01", 1),
          " ",
          "\t",
          "\r\n"};
}

}  // namespace meshlet::fuzz

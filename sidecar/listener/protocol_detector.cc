#include "sidecar/listener/protocol_detector.h"

#include <algorithm>
#include <array>

#include "common/net/buffer.h"

namespace meshlet::sidecar::listener {
namespace {

constexpr absl::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Methods a proxy will meet (RFC 9110 plus WebDAV and PATCH); an unknown token that happens to
// look like a method still has to be followed by a space within kMaxMethodLength bytes.
constexpr std::array<absl::string_view, 16> kMethods = {
    "GET",   "HEAD",     "POST",      "PUT",   "DELETE", "CONNECT", "OPTIONS", "TRACE",
    "PATCH", "PROPFIND", "PROPPATCH", "MKCOL", "COPY",   "MOVE",    "LOCK",    "UNLOCK"};

// TLS record: content type 22 (handshake), version major 3, then a ClientHello (type 1).
constexpr unsigned char kTlsHandshake = 0x16;
constexpr unsigned char kTlsMajorVersion = 0x03;
constexpr unsigned char kClientHello = 0x01;

bool IsPrefixOf(absl::string_view bytes, absl::string_view full) {
  size_t n = std::min(bytes.size(), full.size());
  return bytes.substr(0, n) == full.substr(0, n);
}

}  // namespace

absl::string_view DetectedProtocolName(DetectedProtocol protocol) {
  switch (protocol) {
    case DetectedProtocol::kNeedMoreBytes:
      return "undecided";
    case DetectedProtocol::kHttp1:
      return "http1";
    case DetectedProtocol::kHttp2:
      return "http2";
    case DetectedProtocol::kTls:
      return "tls";
    case DetectedProtocol::kOpaque:
      return "tcp";
  }
  return "unknown";
}

DetectedProtocol DetectProtocol(absl::string_view bytes) {
  if (bytes.empty()) return DetectedProtocol::kNeedMoreBytes;

  const auto byte = [&](size_t i) { return static_cast<unsigned char>(bytes[i]); };
  if (byte(0) == kTlsHandshake) {
    if (bytes.size() < 2) return DetectedProtocol::kNeedMoreBytes;
    if (byte(1) != kTlsMajorVersion) return DetectedProtocol::kOpaque;
    // Bytes 3-4 are the record length; byte 5 is the handshake type.
    if (bytes.size() < 6) return DetectedProtocol::kNeedMoreBytes;
    return byte(5) == kClientHello ? DetectedProtocol::kTls : DetectedProtocol::kOpaque;
  }

  bool could_be_http2 = IsPrefixOf(bytes, kHttp2Preface);
  if (could_be_http2 && bytes.size() >= kHttp2Preface.size()) return DetectedProtocol::kHttp2;

  bool could_be_http1 = false;
  for (absl::string_view method : kMethods) {
    if (bytes.size() > method.size()) {
      if (bytes.substr(0, method.size()) == method && bytes[method.size()] == ' ') {
        return DetectedProtocol::kHttp1;
      }
    } else if (IsPrefixOf(bytes, method)) {
      could_be_http1 = true;  // "GE": still possibly "GET "
    }
  }
  // "PRI * HTTP/2.0..." also starts like a method token "PRI"; only the full preface decides.
  if (could_be_http1 || could_be_http2) return DetectedProtocol::kNeedMoreBytes;
  return DetectedProtocol::kOpaque;
}

DetectedProtocol DetectProtocol(const net::Buffer& buffer) {
  char prefix[kMaxDetectBytes];
  size_t n = buffer.CopyOut(0, prefix, sizeof(prefix));
  return DetectProtocol(absl::string_view(prefix, n));
}

}  // namespace meshlet::sidecar::listener

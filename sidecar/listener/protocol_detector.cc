#include "sidecar/listener/protocol_detector.h"

#include <algorithm>
#include <array>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "common/net/buffer.h"

namespace meshlet::sidecar::listener {

bool IsTokenChar(unsigned char c) {
  if (absl::ascii_isalnum(c)) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}
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

// SP or HTAB: what an attempt at a request line separates its fields with. RFC 9112 3 wants SP;
// the HTTP/1 codec answers a request line with HTAB 400, which is why it must be the one to see it.
bool IsLineWhitespace(unsigned char c) { return c == ' ' || c == '\t'; }

// How many bytes of empty lines (CRLF, or a bare LF) begin `bytes`, and whether they end in a
// CR whose LF has not come yet.
struct LeadingEmptyLines {
  size_t bytes = 0;
  bool pending_cr = false;
};

LeadingEmptyLines SkipEmptyLines(absl::string_view bytes) {
  LeadingEmptyLines leading;
  while (leading.bytes < bytes.size()) {
    const char c = bytes[leading.bytes];
    if (c == '\n') {
      ++leading.bytes;
    } else if (c == '\r' && leading.bytes + 1 == bytes.size()) {
      leading.pending_cr = true;
      break;
    } else if (c == '\r' && bytes[leading.bytes + 1] == '\n') {
      leading.bytes += 2;
    } else {
      break;
    }
  }
  return leading;
}

// DetectHttp1RequestLine, fed the first bytes a piece at a time.
class RequestLineScanner {
 public:
  explicit RequestLineScanner(size_t max_line_bytes) : max_line_bytes_(max_line_bytes) {}

  void Feed(absl::string_view bytes) {
    for (const char ch : bytes) {
      if (decision_ != DetectedProtocol::kNeedMoreBytes) return;
      Step(static_cast<unsigned char>(ch));
    }
  }
  DetectedProtocol decision() const { return decision_; }

 private:
  void Step(unsigned char c) {
    if (leading_) {  // empty lines before the request line (RFC 9112 2.2)
      if (++line_bytes_ > max_line_bytes_) {
        decision_ = DetectedProtocol::kHttp1;  // the HTTP/1 codec skips them all
        return;
      }
      if (pending_cr_) {
        pending_cr_ = false;
        if (c == '\n') return;
        decision_ = DetectedProtocol::kOpaque;  // a CR that ends no line
        return;
      }
      if (c == '\r') {
        pending_cr_ = true;
        return;
      }
      if (c == '\n') return;  // a bare LF: the codec's 400
      leading_ = false;
      line_start_ = line_bytes_ - 1;
      --line_bytes_;  // counted again below
    }
    if (c == '\n') {
      decision_ = spaces_ >= 2 && EndsInHttp1Version() ? DetectedProtocol::kHttp1
                                                       : DetectedProtocol::kOpaque;
      return;
    }
    if (++line_bytes_ > max_line_bytes_) {
      decision_ = DetectedProtocol::kHttp1;  // too long for the listener: HTTP/1's 414
      return;
    }
    if (spaces_ == 0) {  // the method
      if (IsLineWhitespace(c) && line_bytes_ > line_start_ + 1) {
        spaces_ = 1;
      } else if (!IsTokenChar(c)) {
        decision_ = DetectedProtocol::kOpaque;
      }
      return;
    }
    if (IsLineWhitespace(c)) {
      ++spaces_;
      field_bytes_ = 0;
      return;
    }
    // The last field so far: what the version must be when the line ends.
    if (field_bytes_ < field_.size()) field_[field_bytes_] = static_cast<char>(c);
    ++field_bytes_;
  }

  bool EndsInHttp1Version() const {
    size_t n = field_bytes_;
    if (n > field_.size()) return false;
    if (n > 0 && field_[n - 1] == '\r') --n;
    const absl::string_view version(field_.data(), n);
    return version.size() == 8 && absl::StartsWith(version, "HTTP/1.") &&
           absl::ascii_isdigit(static_cast<unsigned char>(version[7]));
  }

  const size_t max_line_bytes_;
  DetectedProtocol decision_ = DetectedProtocol::kNeedMoreBytes;
  bool leading_ = true;      // still in the empty lines before the request line
  bool pending_cr_ = false;  // a leading CR, whose LF has not come yet
  size_t line_bytes_ = 0;    // of the empty lines and the request line before its LF
  size_t line_start_ = 0;    // where the request line begins
  size_t spaces_ = 0;
  std::array<char, 9> field_{};  // "HTTP/1.1\r"
  size_t field_bytes_ = 0;
};

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

  // HTTP/1 servers skip empty lines before a request line (RFC 9112 2.2); the preface and a
  // ClientHello have none.
  const LeadingEmptyLines leading = SkipEmptyLines(bytes);
  if (leading.bytes > kMaxLeadingEmptyLineBytes) return DetectedProtocol::kOpaque;
  if (leading.pending_cr) return DetectedProtocol::kNeedMoreBytes;
  const absl::string_view line = bytes.substr(leading.bytes);
  if (line.empty()) return DetectedProtocol::kNeedMoreBytes;

  bool could_be_http1 = false;
  for (absl::string_view method : kMethods) {
    if (line.size() > method.size()) {
      if (line.substr(0, method.size()) == method &&
          IsLineWhitespace(static_cast<unsigned char>(line[method.size()]))) {
        return DetectedProtocol::kHttp1;
      }
    } else if (IsPrefixOf(line, method)) {
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

DetectedProtocol DetectHttp1RequestLine(absl::string_view first_bytes, size_t max_line_bytes) {
  RequestLineScanner scanner(max_line_bytes);
  scanner.Feed(first_bytes);
  return scanner.decision();
}

DetectedProtocol DetectHttp1RequestLine(const net::Buffer& buffer, size_t max_line_bytes) {
  RequestLineScanner scanner(max_line_bytes);
  buffer.ForEachSlice([&](absl::string_view slice) { scanner.Feed(slice); });
  return scanner.decision();
}

}  // namespace meshlet::sidecar::listener

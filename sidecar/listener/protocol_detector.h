#pragma once

// Decides from a connection's first bytes which protocol the peer speaks, so one listener port
// can serve HTTP/1, HTTP/2 (prior knowledge), TLS and opaque TCP (design.md §4 step 2). The
// detector never consumes bytes: the caller keeps them and hands them to whatever handles the
// protocol. It answers kNeedMoreBytes while the bytes seen so far fit more than one protocol; the
// listener then waits for more or, at its detect timeout, treats the connection as opaque TCP.

#include <cstddef>

#include "absl/strings/string_view.h"

namespace meshlet::net {
class Buffer;
}

namespace meshlet::sidecar::listener {

enum class DetectedProtocol {
  kNeedMoreBytes,
  kHttp1,   // starts with an HTTP method token followed by a space
  kHttp2,   // the HTTP/2 client connection preface ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
  kTls,     // a TLS handshake record carrying a ClientHello
  kOpaque,  // anything else
};

absl::string_view DetectedProtocolName(DetectedProtocol protocol);

// Looks at the first bytes of a connection.
DetectedProtocol DetectProtocol(absl::string_view first_bytes);
// Same, over the front of a Buffer (copies at most the few bytes it needs).
DetectedProtocol DetectProtocol(const net::Buffer& buffer);

// The longest prefix DetectProtocol ever needs to decide.
inline constexpr size_t kMaxDetectBytes = 24;

// For bytes DetectProtocol calls kOpaque that reach a listener serving only HTTP
// (PROTOCOL_HTTP): HTTP/1 with a method DetectProtocol does not know (PURGE, REPORT...), or not
// HTTP at all? The first line decides. kHttp1 once it ends (LF, after an optional CR) the way a
// request line does, `token SP ... SP HTTP/1.<digit>`, or once `max_line_bytes` have come
// without its end (the HTTP/1 codec then refuses it as too long); kOpaque as soon as the bytes
// cannot begin such a line, or when the line ends otherwise (h2spec's "INVALID CONNECTION
// PREFACE", a preface gone wrong after "PRI * HTTP/2.0"); kNeedMoreBytes until then. Like
// DetectProtocol, a decision never changes with more bytes.
DetectedProtocol DetectHttp1RequestLine(absl::string_view first_bytes, size_t max_line_bytes);
// Same, over the front of a Buffer (reads at most max_line_bytes + 1, copies nothing).
DetectedProtocol DetectHttp1RequestLine(const net::Buffer& buffer, size_t max_line_bytes);

}  // namespace meshlet::sidecar::listener

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

}  // namespace meshlet::sidecar::listener

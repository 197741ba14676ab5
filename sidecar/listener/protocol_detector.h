#pragma once

// Decides from a connection's first bytes which protocol the peer speaks, so one listener port
// can serve HTTP/1, HTTP/2 (prior knowledge), TLS and opaque TCP (design.md §4 step 2). The
// detector never consumes bytes: the caller keeps them and hands them to whatever handles the
// protocol. It answers kNeedMoreBytes while the bytes seen so far fit more than one protocol; the
// listener then waits for more or, at its detect timeout, treats the connection as opaque TCP.
//
// The rule for HTTP/1: what the HTTP/1 codec would parse, or answer 400 to, goes to it. Empty
// lines before the request line (CRLF, or a bare LF the codec refuses) are skipped, as RFC 9112
// 2.2 has servers do; the fields of the request line may be separated by SP or HTAB (HTAB is the
// codec's 400). Only HTTP/1 is recognised after empty lines: the HTTP/2 preface and a TLS
// ClientHello are the very first bytes or nothing. An opaque stream stays opaque: it would have
// to begin with one of a few upper-case method names followed by SP or HTAB, at most
// kMaxLeadingEmptyLineBytes of empty lines after the start, to be taken for HTTP/1.

#include <cstddef>

#include "absl/strings/string_view.h"

namespace meshlet::net {
class Buffer;
}

namespace meshlet::sidecar::listener {

enum class DetectedProtocol {
  kNeedMoreBytes,
  kHttp1,   // a common HTTP method followed by SP or HTAB, after optional empty lines
  kHttp2,   // the HTTP/2 client connection preface ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
  kTls,     // a TLS handshake record carrying a ClientHello
  kOpaque,  // anything else
};

absl::string_view DetectedProtocolName(DetectedProtocol protocol);

// tchar (RFC 9110 5.6.2): what methods and header field names are made of.
bool IsTokenChar(unsigned char c);

// Looks at the first bytes of a connection.
DetectedProtocol DetectProtocol(absl::string_view first_bytes);
// Same, over the front of a Buffer (copies at most the few bytes it needs).
DetectedProtocol DetectProtocol(const net::Buffer& buffer);

// Empty lines DetectProtocol skips before an HTTP/1 request line (16 CRLFs): bytes that are still
// empty lines past it are opaque. Only the first-line check (DetectHttp1RequestLine, HTTP-only
// listeners) skips more, up to its line limit, as the HTTP/1 codec does.
inline constexpr size_t kMaxLeadingEmptyLineBytes = 32;

// The longest prefix DetectProtocol ever needs to decide: the HTTP/2 preface is 24 bytes, the
// longest method and its separator 10 after the empty lines.
inline constexpr size_t kMaxDetectBytes = kMaxLeadingEmptyLineBytes + 24;

// For bytes DetectProtocol calls kOpaque that reach a listener serving only HTTP
// (PROTOCOL_HTTP): HTTP/1 with a method DetectProtocol does not know (PURGE, REPORT...), or not
// HTTP at all? The first line after any empty lines decides. kHttp1 once it ends (LF, after an
// optional CR) the way an attempt at a request line does, `token WS ... WS HTTP/1.<digit>` with
// WS one SP or HTAB, or once `max_line_bytes` have come without its end (empty lines before it
// included; the HTTP/1 codec then refuses it as too long, or skips the empty lines); kOpaque as
// soon as the bytes cannot begin such a line, or when the line ends otherwise (h2spec's
// "INVALID CONNECTION PREFACE", a preface gone wrong after "PRI * HTTP/2.0"); kNeedMoreBytes
// until then. Like DetectProtocol, a decision never changes with more bytes.
DetectedProtocol DetectHttp1RequestLine(absl::string_view first_bytes, size_t max_line_bytes);
// Same, over the front of a Buffer (reads at most max_line_bytes + 1, copies nothing).
DetectedProtocol DetectHttp1RequestLine(const net::Buffer& buffer, size_t max_line_bytes);

}  // namespace meshlet::sidecar::listener

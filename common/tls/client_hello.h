#pragma once

// Reads what a TLS client asks for from the first bytes of its connection, without terminating
// TLS: the server name (SNI, RFC 6066 §3) and the application protocols it offers (ALPN, RFC 7301)
// of its ClientHello (RFC 8446 §4.1.2; TLS 1.0 to 1.3 share its shape). For routing TLS that
// passes through the proxy by name (a passthrough listener, an east-west gateway) and for logging
// where opaque TLS went.
//
// The ClientHello may span several handshake records (a post-quantum key share makes it larger
// than one record); they are reassembled up to ClientHelloLimits::max_bytes. Nothing is consumed:
// the caller keeps the bytes and forwards them unchanged. Pure functions, any thread; the result
// owns its strings (parsed once per connection, not per request).

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace meshlet::tls {

struct ClientHelloLimits {
  // The largest handshake message accepted (the ClientHello with its 4-byte header); larger ones
  // are kTooLarge. Browsers' hellos are under 2 KiB; with post-quantum key shares under 4 KiB.
  size_t max_bytes = 16 * 1024;
};

struct ClientHello {
  enum class Status {
    kNeedMoreBytes,  // a prefix of a possibly valid ClientHello: read more and call again
    kOk,
    kNotTls,    // the first record is not a TLS handshake record carrying a ClientHello
    kInvalid,   // a malformed ClientHello (lengths that do not add up, a bad server name)
    kTooLarge,  // longer than ClientHelloLimits::max_bytes
  };
  Status status = Status::kNeedMoreBytes;
  // The host_name of the server_name extension, lower-cased, without a trailing dot; empty when
  // the client sent none. Only DNS names are accepted (letters, digits, '-', '_', '.'; labels of
  // 1..63 bytes; at most 253 bytes); an IP literal or any other byte makes the hello kInvalid.
  std::string server_name;
  // The ALPN protocol names offered, in the client's order; empty when it offered none.
  std::vector<std::string> alpn;
  // How many bytes of the input the ClientHello's records took (kOk only).
  size_t consumed = 0;
  // Why it is kInvalid or kNotTls, for logs ("handshake length 70000 exceeds ..."); a literal or
  // short text.
  std::string error;
};

absl::string_view ClientHelloStatusName(ClientHello::Status status);

// Parses the ClientHello at the start of `bytes` (a connection's first bytes).
ClientHello ParseClientHello(absl::string_view bytes, const ClientHelloLimits& limits = {});

}  // namespace meshlet::tls

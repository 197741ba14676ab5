#pragma once

// Reads the host a plain HTTP/1 connection's first request names, from the connection's first
// bytes, before anything serves it: a capture listener routes plain HTTP to destinations by that
// name (ListenerDestination.http_hosts, destination_matcher.h) as it routes TLS by a ClientHello's
// server name (common/tls/client_hello.h). Nothing is consumed: the caller keeps the bytes and
// hands them to whatever serves the connection.
//
// The name is the one the HTTP/1 codec (common/http/h1/server_codec.cc) gives the request as
// :authority, which is what the route table matches: an absolute-form target's authority
// ("GET http://a.example/ HTTP/1.1"), else the Host field. It is read only from a head the
// codec's parser (common/http/h1/parser.h) would accept in the same way:
//   - optional empty lines (CRLF), then `method SP request-target SP HTTP/1.0|HTTP/1.1 CRLF`:
//     the method a token; the target VCHARs but '#', origin-form ("/..."), "*" for OPTIONS, or
//     absolute-form with an http or https scheme and a valid, non-empty authority;
//   - field lines `name ":" OWS value OWS CRLF` up to the empty line that ends the head: the name
//     a token with no whitespace before the colon; no obs-fold; no NUL, other CTL or DEL in a
//     value; every line ends in CRLF (a bare CR or LF is refused, as the parser refuses it).
// The host is the value (OWS trimmed) of the one field named Host (any case), which must be a
// valid `uri-host [ ":" port ]` (common/http/authority.h), without its port ("a.example:8080"
// → "a.example", "[::1]:80" → "[::1]") and lower-cased; a trailing dot is kept, as the route
// table keeps it. An absolute-form target's authority replaces it: the two must then name the
// same host (ports aside), or the request is ambiguous; an HTTP/1.0 request may leave Host out
// then. A CONNECT request names a tunnel's destination, not a host to route plain HTTP by: it is
// kNoHost as soon as its method is read (the connection manager refuses it, or tunnels it by its
// route table).
//
// Every answer but kNeedMoreBytes is final: more bytes never change it, and any split of the same
// bytes gives the same answer. At most `max_bytes` bytes are read: a head (and the empty lines
// before it) not over by then is kTooLarge.
//
// Http1HostReader keeps its place between calls, so a head that arrives in many small reads is
// scanned once, not again on each read; ParseHttp1Host is the same over bytes held in one piece.
// Neither allocates, except the returned host string. Not thread-safe; pure otherwise.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace meshlet::sidecar::listener {

struct Http1Host {
  enum class Status : uint8_t {
    kNeedMoreBytes,  // a prefix of a request head that may still name a host: read more
    kOk,             // `host` is set
    kNotHttp1,       // not an HTTP/1.0 or 1.1 request head the codec accepts
    kNoHost,         // a request head without a usable Host: none, empty, invalid, or CONNECT
    kAmbiguous,      // two Host fields, or an absolute-form target naming another host
    kTooLarge,       // no end of the head within max_bytes
  };
  Status status = Status::kNeedMoreBytes;
  // kOk: the host, lower-cased, without a port (never empty).
  std::string host;
};

inline constexpr size_t kHttp1HostStatusCount = 6;

// "need_more_bytes", "ok", "not_http1", "no_host", "ambiguous", "too_large" (stats labels).
absl::string_view Http1HostStatusName(Http1Host::Status status);

// Reads the head at the start of `bytes` (a connection's first bytes).
Http1Host ParseHttp1Host(absl::string_view bytes, size_t max_bytes);

class Http1HostReader {
 public:
  explicit Http1HostReader(size_t max_bytes);

  // The connection's next bytes, following all those fed before. Bytes past the decision are
  // ignored.
  void Feed(absl::string_view bytes);
  // Whether the answer is known (Result is final).
  bool decided() const { return state_ == State::kDecided || state_ == State::kHeadEnd; }
  // How many of the connection's first bytes were read up to the decision (all fed before it).
  size_t bytes_read() const { return position_; }
  // The answer; kNeedMoreBytes until decided(). `head`: the connection's first bytes_read()
  // bytes (or more), in one piece.
  Http1Host Result(absl::string_view head) const;

 private:
  enum class State : uint8_t {
    kLeading,    // empty lines before the request line
    kLeadingLf,  // after a leading CR
    kMethod,
    kTarget,
    kVersion,
    kVersionLf,  // after the request line's CR
    kLineStart,  // a field line or the empty line
    kName,
    kValue,
    kValueLf,  // after a field line's CR
    kEndLf,    // after the empty line's CR
    kHeadEnd,  // decided: the head is whole, and Result() reads the host from it
    kDecided,  // decided before the end of the head: status_
  };

  // Consumes one byte; false once decided.
  bool Step(unsigned char c);
  void Decide(Http1Host::Status status);

  const size_t max_bytes_;
  State state_ = State::kLeading;
  Http1Host::Status status_ = Http1Host::Status::kNeedMoreBytes;  // kDecided
  size_t position_ = 0;                                           // bytes read
  // The method, compared with the ones that decide something as it is read.
  size_t method_bytes_ = 0;
  bool method_connect_ = true;  // a prefix of "CONNECT" so far
  bool method_options_ = true;  // a prefix of "OPTIONS" so far
  size_t target_begin_ = 0;
  size_t target_end_ = 0;
  size_t version_bytes_ = 0;
  bool http10_ = false;
  // The field being read, and the Host field's value (untrimmed) once read.
  size_t name_bytes_ = 0;
  bool name_host_ = true;  // a prefix of "host" (any case) so far
  size_t value_begin_ = 0;
  size_t host_begin_ = 0;
  size_t host_end_ = 0;
  int host_fields_ = 0;
};

}  // namespace meshlet::sidecar::listener

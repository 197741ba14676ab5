#pragma once

// Parser: meshlet's incremental, push-style HTTP/1.1 message parser (RFC 9112, RFC 9110), the
// core of the sidecar's HTTP/1 codec. One Parser parses either requests or responses for one
// connection, message after message (keep-alive, pipelining).
//
// Use:
//   Parser parser(Parser::Type::kRequest, &visitor);
//   size_t n = parser.Execute(bytes);   // whatever arrived: a whole buffer or a single byte
//   switch (parser.status()) { ... }    // kOk: n == bytes.size(), feed more later
//   parser.Finish();                    // the peer closed its side
//
// Callbacks fire synchronously from Execute() (and Finish()), in message order:
//   OnMessageBegin, OnRequestLine | OnStatusLine, OnHeader*, OnHeadersComplete,
//   (OnChunkHeader? OnBody*)*, OnTrailer*, OnMessageComplete.
// Every absl::string_view handed to a callback is valid only during that callback. Views point
// into the caller's bytes (zero-copy) except when a line straddles two Execute() calls: then the
// line is assembled in a small parser-owned buffer, bounded by the limits below. Body views always
// point into the caller's bytes with chunk framing stripped; bodies are never buffered.
//
// A callback returns kContinue, kPause (Execute() returns right after the element that produced
// the callback; call Resume() then Execute() with the unconsumed rest, which may be empty) or
// kAbort (the parser fails with ParserError::kCallbackAborted).
//
// Strictness: every violation puts the parser into a terminal error state with a specific
// ParserError (see HttpStatusForError() for the reply a server should send) and a fixed message;
// the codec answers and closes. Notable choices:
// - Lines must end in CRLF: a bare LF (kBareLf) or a CR not followed by LF (kBareCr) is an error.
//   RFC 9112 2.2 allows accepting a bare LF; we do not, because parsers that disagree on line
//   ends are a request-smuggling vector.
// - obs-fold is rejected (RFC 9112 5.2 permits rejection), as is whitespace before the colon.
// - Content-Length with Transfer-Encoding is rejected for requests and responses; identical
//   repeated Content-Length values (separate lines or a list) are accepted as one.
// - The only transfer coding accepted is a single "chunked" (list syntax and case-insensitivity
//   per RFC). Other codings are kUnsupportedTransferEncoding (501); chunked not last or twice is
//   kInvalidTransferEncoding (400). Transfer-Encoding in an HTTP/1.0 message is rejected
//   (RFC 9112 6.1: its framing is faulty).
// - HTTP/1.1 requests need exactly one Host; HTTP/1.0 requests at most one. Its value must be a
//   valid `uri-host [ ":" port ]` (common/http/authority.h: no userinfo, list, path, space or
//   non-numeric port), also when an absolute-form target's authority replaces it (RFC 9112 3.2).
// - The request-target is origin-form, absolute-form with an http or https scheme and a non-empty
//   valid authority (no userinfo), authority-form (host and port) for CONNECT only, or "*" for
//   OPTIONS only (RFC 9112 3.2, RFC 9110 4.2). Other schemes and "scheme:" forms are refused.
// - Versions other than HTTP/1.0 and HTTP/1.1 are kVersionNotSupported (505).
// - Empty lines (CRLF) before a start line are skipped (RFC 9112 2.2).
// - A response status line may omit the space before an empty reason ("HTTP/1.1 200\r\n").
//
// Not thread-safe; a parser belongs to one connection on one worker. Execute() does not allocate,
// except to grow the straddling-line buffer (bounded by the limits; capacity kept for reuse).

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace meshlet::http::h1 {

enum class ParserError : uint8_t {
  kOk = 0,
  // Syntax of lines.
  kBareCr,                 // CR not followed by LF
  kBareLf,                 // LF not preceded by CR
  kInvalidMethod,          // method empty or not a token, or not followed by one SP
  kInvalidTarget,          // request-target empty, bad characters or form
  kInvalidVersion,         // not "HTTP/" DIGIT "." DIGIT
  kVersionNotSupported,    // well-formed, but not 1.0 or 1.1 (505)
  kInvalidStatus,          // status code not 3 digits in 100..599, bad separator
  kInvalidReason,          // control characters in the reason phrase
  kInvalidHeaderName,      // empty, non-token characters, or no colon
  kWhitespaceBeforeColon,  // "Name : value" (RFC 9112 5.1)
  kObsFold,                // a field line starting with SP/HTAB (RFC 9112 5.2)
  kInvalidHeaderValue,     // NUL, CTL other than HTAB, or DEL in a field value
  // Framing.
  kInvalidContentLength,      // not 1*DIGIT, or overflows
  kConflictingContentLength,  // repeated with different values
  kContentLengthAndTransferEncoding,
  kInvalidTransferEncoding,      // chunked not final, repeated, empty, or in HTTP/1.0
  kUnsupportedTransferEncoding,  // a coding other than chunked (501)
  kMissingHost,                  // HTTP/1.1 request without Host
  kDuplicateHost,                // more than one Host
  kInvalidHost,                  // Host not a valid uri-host [ ":" port ]
  kInvalidChunkSize,             // not hex, overflow, or bad extension syntax
  kInvalidChunkData,             // chunk data not followed by CRLF
  // Limits.
  kStartLineTooLong,       // request line / status line over max_start_line_bytes (414)
  kUriTooLong,             // request-target over max_uri_bytes (414)
  kHeaderSectionTooLarge,  // header or trailer section over max_header_bytes (431)
  kTooManyHeaders,         // more than max_header_count fields (431)
  kChunkExtensionTooLong,  // chunk-size line over max_chunk_extension_bytes (+ size digits)
  // Other.
  kIncompleteMessage,  // Finish() in the middle of a message
  kCallbackAborted,    // a visitor callback returned kAbort
};

// "kBareCr" style name, for logs and stats tags.
absl::string_view ParserErrorName(ParserError error);
// One-line human-readable explanation; static storage.
absl::string_view ParserErrorMessage(ParserError error);
// The status a server replies with to a request that failed this way: 400, 414, 431, 501 or 505.
// (A response that fails to parse is the upstream's fault: the codec answers 502 instead.)
int HttpStatusForError(ParserError error);

// How the body of a message is delimited (RFC 9112 6.3).
enum class BodyFraming : uint8_t {
  kNone,           // no body (no CL/TE request, HEAD/1xx/204/304 responses, CONNECT, ...)
  kContentLength,  // exactly content_length bytes (which may be 0)
  kChunked,        // chunked transfer coding; chunk framing is stripped before OnBody
  kUntilClose,     // response body delimited by the connection closing (see Finish())
};

// What the parser decided once the header section is complete.
struct MessageInfo {
  int version_major = 1;
  int version_minor = 1;
  int status_code = 0;  // responses only
  BodyFraming framing = BodyFraming::kNone;
  uint64_t content_length = 0;  // with kContentLength
  // Whether the connection stays usable after this message (RFC 9112 9.3): HTTP/1.1 unless
  // "Connection: close"; HTTP/1.0 only with "Connection: keep-alive"; never when the body is
  // delimited by close.
  bool keep_alive = true;
  // The connection stops being HTTP/1 after this message: a CONNECT request or a request with
  // Upgrade + "Connection: upgrade" (HTTP/1.1 only), a 101 response, or a 2xx response to
  // CONNECT. The parser stops with status kUpgraded after OnMessageComplete.
  bool upgrade = false;
  bool expect_continue = false;  // request carries "Expect: 100-continue"
};

class ParserVisitor {
 public:
  enum class Action : uint8_t { kContinue, kPause, kAbort };

  virtual ~ParserVisitor() = default;

  virtual Action OnMessageBegin() { return Action::kContinue; }
  // `method` is case-sensitive (RFC 9110 9.1).
  virtual Action OnRequestLine(absl::string_view method, absl::string_view target,
                               int version_major, int version_minor) {
    (void)method, (void)target, (void)version_major, (void)version_minor;
    return Action::kContinue;
  }
  virtual Action OnStatusLine(int version_major, int version_minor, int status_code,
                              absl::string_view reason) {
    (void)version_major, (void)version_minor, (void)status_code, (void)reason;
    return Action::kContinue;
  }
  // `name` as received (case preserved); `value` with surrounding whitespace removed.
  virtual Action OnHeader(absl::string_view name, absl::string_view value) = 0;
  virtual Action OnHeadersComplete(const MessageInfo& info) = 0;
  // Start of each chunk of a chunked body (size > 0; the last chunk is not reported).
  virtual Action OnChunkHeader(uint64_t size) {
    (void)size;
    return Action::kContinue;
  }
  // A piece of the body, never empty.
  virtual Action OnBody(absl::string_view data) = 0;
  // A trailer field of a chunked message (RFC 9112 7.1.2).
  virtual Action OnTrailer(absl::string_view name, absl::string_view value) {
    (void)name, (void)value;
    return Action::kContinue;
  }
  virtual Action OnMessageComplete() = 0;
};

struct ParserLimits {
  // Request line or status line, including CRLF.
  size_t max_start_line_bytes = 16 * 1024;
  size_t max_uri_bytes = 8 * 1024;
  // Header section (field lines with CRLF, plus the final CRLF; not the start line). Also
  // applies to the trailer section separately.
  size_t max_header_bytes = 60 * 1024;
  size_t max_header_count = 100;
  // Chunk extensions are tolerated and ignored, up to this many bytes per chunk-size line.
  size_t max_chunk_extension_bytes = 1024;
};

class Parser {
 public:
  enum class Type : uint8_t { kRequest, kResponse };
  enum class Status : uint8_t {
    kOk,        // ready for more bytes
    kPaused,    // a callback returned kPause; call Resume()
    kUpgraded,  // the message switched protocols; the rest of the bytes are not HTTP/1.
                // Resume() continues parsing HTTP/1 if the server declined the upgrade.
    kClosed,    // the last message had keep_alive == false; further bytes are not parsed
    kError,     // terminal; see error()
  };

  // `visitor` must outlive the parser.
  Parser(Type type, ParserVisitor* visitor, const ParserLimits& limits = ParserLimits());
  Parser(const Parser&) = delete;
  Parser& operator=(const Parser&) = delete;

  // Parses as much of `data` as possible and returns how many bytes were consumed: all of them
  // while status() stays kOk; fewer if the parser paused, upgraded, closed or failed (bytes
  // after that point are untouched). Does nothing and returns 0 unless status() is kOk.
  size_t Execute(absl::string_view data);
  size_t Execute(const char* data, size_t len) { return Execute(absl::string_view(data, len)); }

  // The peer closed the connection: completes a close-delimited response body; anything else
  // left mid-message is kIncompleteMessage. Returns the resulting error (kOk if none).
  ParserError Finish();

  // Leaves kPaused or kUpgraded; no effect otherwise.
  void Resume();
  // Back to the initial state for a new connection; keeps buffer capacity.
  void Reset();

  // Responses only: the method of the request the next response answers. HEAD means no body;
  // CONNECT means a 2xx opens a tunnel. Kept until changed, so one call covers a 100-continue
  // followed by the final response. Call before the response's header section completes, e.g.
  // from OnMessageBegin.
  void SetRequestMethod(absl::string_view method);

  Status status() const { return status_; }
  ParserError error() const { return error_; }
  absl::string_view error_message() const { return ParserErrorMessage(error_); }
  // OK, or InvalidArgument carrying the error name and message.
  absl::Status ToStatus() const;
  // The decisions of the current (or last) message; valid from OnHeadersComplete on.
  const MessageInfo& message_info() const { return info_; }
  bool ShouldKeepAlive() const { return info_.keep_alive; }
  Type type() const { return type_; }
  const ParserLimits& limits() const { return limits_; }

 private:
  enum class State : uint8_t;
  enum class LineResult : uint8_t { kLine, kNeedMore, kError };

  // Takes the next CRLF-terminated line from [*p, end), assembling it across calls in spill_.
  // On kLine, *line excludes the CRLF. `limit` bounds the line including CRLF; exceeding it is
  // `too_long`.
  LineResult NextLine(const char** p, const char* end, size_t limit, ParserError too_long,
                      absl::string_view* line);
  void BeginMessage();
  bool ParseRequestLine(absl::string_view line);
  bool ParseStatusLine(absl::string_view line);
  // Parses a field line; on success sets *name and *value.
  bool ParseFieldLine(absl::string_view line, absl::string_view* name, absl::string_view* value);
  bool ProcessHeader(absl::string_view name, absl::string_view value);
  bool ParseContentLength(absl::string_view value);
  bool ParseTransferEncoding(absl::string_view value);
  void ParseConnection(absl::string_view value);
  bool HeadersComplete();
  bool ParseChunkSizeLine(absl::string_view line);
  // Applies a callback's action; false if the parser must stop (paused or aborted).
  bool Handle(ParserVisitor::Action action);
  bool Fail(ParserError error);
  void FinishMessage();

  const Type type_;
  ParserVisitor* const visitor_;
  const ParserLimits limits_;

  Status status_ = Status::kOk;
  ParserError error_ = ParserError::kOk;
  State state_;
  std::string spill_;        // a line straddling Execute() calls
  bool spill_line_ = false;  // spill_ holds the line last returned; clear before reuse

  // Response context.
  bool request_was_head_ = false;
  bool request_was_connect_ = false;

  // Per-message state; reset by BeginMessage().
  MessageInfo info_;
  bool is_connect_request_ = false;
  size_t header_bytes_ = 0;  // of the current header or trailer section
  size_t header_count_ = 0;
  bool has_content_length_ = false;
  bool has_transfer_encoding_ = false;
  bool chunked_ = false;  // Transfer-Encoding ended in chunked
  bool connection_close_ = false;
  bool connection_keep_alive_ = false;
  bool connection_upgrade_ = false;
  bool has_upgrade_header_ = false;
  int host_count_ = 0;
  uint64_t body_remaining_ = 0;  // of the Content-Length body or current chunk
};

}  // namespace meshlet::http::h1

#include "common/http/h1/parser.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/http/ascii_case.h"
#include "common/http/authority.h"

namespace meshlet::http::h1 {
namespace {

// Character classes (RFC 9110 5.6.2, 5.5; RFC 9112 3.2), one table lookup per byte.
enum CharClass : uint8_t {
  kTokenChar = 1 << 0,   // tchar
  kFieldChar = 1 << 1,   // field-vchar / SP / HTAB (obs-text included)
  kTargetChar = 1 << 2,  // request-target bytes: VCHAR except '#'
  kDigitChar = 1 << 3,
  kHexChar = 1 << 4,
  kWhiteChar = 1 << 5,  // SP / HTAB
};

constexpr std::array<uint8_t, 256> MakeCharTable() {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    uint8_t v = 0;
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    bool digit = c >= '0' && c <= '9';
    bool vchar = c >= 0x21 && c <= 0x7e;
    if (alpha || digit) v |= kTokenChar;
    for (char s : absl::string_view("!#$%&'*+-.^_`|~")) {
      if (c == static_cast<unsigned char>(s)) v |= kTokenChar;
    }
    if (vchar || c == ' ' || c == '\t' || c >= 0x80) v |= kFieldChar;
    if (vchar && c != '#') v |= kTargetChar;
    if (digit) v |= kDigitChar;
    if (digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) v |= kHexChar;
    if (c == ' ' || c == '\t') v |= kWhiteChar;
    t[c] = v;
  }
  return t;
}

constexpr std::array<uint8_t, 256> kCharTable = MakeCharTable();

inline bool Is(char c, CharClass cls) { return kCharTable[static_cast<unsigned char>(c)] & cls; }

// Advances p over bytes of class `cls`.
inline const char* Skip(const char* p, const char* end, CharClass cls) {
  while (p < end && Is(*p, cls)) ++p;
  return p;
}

// chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ), where
// chunk-ext-name = token and chunk-ext-val = token / quoted-string (RFC 9112 7.1.1; quoted-string
// as RFC 9110 5.6.4: qdtext = HTAB / SP / VCHAR but '"' and '\\' / obs-text, quoted-pair = '\\'
// ( HTAB / SP / VCHAR / obs-text )). Returns null when [p, end) is exactly that (p != end), else
// where it stops being that.
const char* BadChunkExtension(const char* p, const char* end) {
  do {
    p = Skip(p, end, kWhiteChar);
    if (p == end || *p != ';') return p;
    p = Skip(p + 1, end, kWhiteChar);
    const char* name_end = Skip(p, end, kTokenChar);
    if (name_end == p) return p;
    p = Skip(name_end, end, kWhiteChar);
    if (p == end || *p != '=') continue;
    p = Skip(p + 1, end, kWhiteChar);
    if (p == end || *p != '"') {
      const char* value_end = Skip(p, end, kTokenChar);
      if (value_end == p) return p;
      p = value_end;
      continue;
    }
    for (++p;; ++p) {
      if (p == end) return p;
      unsigned char c = static_cast<unsigned char>(*p);
      if (c == '"') break;
      if (c == '\\') {
        if (++p == end) return p;
        c = static_cast<unsigned char>(*p);
      }
      if (c == 0x7f || (c < 0x20 && c != '\t')) return p;
    }
    ++p;
  } while (p != end);
  return nullptr;
}

// The error for a byte that stopped a scan: a CR inside a line is always a bare CR.
inline ParserError At(const char* p, const char* end, ParserError otherwise) {
  return p < end && *p == '\r' ? ParserError::kBareCr : otherwise;
}

inline int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  return (c | 0x20) - 'a' + 10;
}

absl::string_view TrimWhite(absl::string_view s) {
  const char* b = s.data();
  const char* e = b + s.size();
  while (b < e && Is(*b, kWhiteChar)) ++b;
  while (e > b && Is(e[-1], kWhiteChar)) --e;
  return absl::string_view(b, e - b);
}

// Calls fn(element) for each comma-separated element, OWS trimmed; empty elements are skipped as
// RFC 9110 5.6.1 requires. Stops early (returning false) when fn returns false.
template <typename Fn>
bool ForEachElement(absl::string_view list, Fn fn) {
  const char* p = list.data();
  const char* end = p + list.size();
  while (p <= end) {
    const char* comma = static_cast<const char*>(std::memchr(p, ',', end - p));
    const char* stop = comma ? comma : end;
    absl::string_view element = TrimWhite(absl::string_view(p, stop - p));
    if (!element.empty() && !fn(element)) return false;
    if (comma == nullptr) break;
    p = comma + 1;
  }
  return true;
}

// "HTTP/" DIGIT "." DIGIT (RFC 9112 2.3; case-sensitive).
ParserError ParseVersion(absl::string_view v, int* major, int* minor) {
  if (v.size() != 8 || std::memcmp(v.data(), "HTTP/", 5) != 0 || !Is(v[5], kDigitChar) ||
      v[6] != '.' || !Is(v[7], kDigitChar)) {
    return ParserError::kInvalidVersion;
  }
  *major = v[5] - '0';
  *minor = v[7] - '0';
  if (*major != 1 || *minor > 1) return ParserError::kVersionNotSupported;
  return ParserError::kOk;
}

// RFC 9112 3.2: origin-form, absolute-form with an http or https URI, authority-form (CONNECT
// only), asterisk-form (OPTIONS only); nothing else. Characters were already checked: VCHAR but
// '#', so origin-form needs no more than its leading '/'.
bool ValidTargetForm(absl::string_view method, absl::string_view target) {
  if (method == "CONNECT") {
    // authority-form = uri-host ":" port; CONNECT has no default port (RFC 9110 9.3.6).
    std::optional<HostPort> authority = ParseHostPort(target);
    return authority.has_value() && !authority->host.empty() && !authority->port.empty();
  }
  if (target == "*") return method == "OPTIONS";
  if (target[0] == '/') return true;
  // absolute-form. The URIs HTTP defines are http and https (RFC 9110 4.2), and a proxy forwards
  // nothing else; another "scheme:" (or "host:port" read as one) is not a target to rewrite into
  // a path. An http(s) URI with an empty host must be rejected (RFC 9110 4.2.1), and userinfo is
  // refused (RFC 9110 4.2.4) like everywhere else an authority is checked.
  // Schemes are case-insensitive (RFC 3986 3.1).
  return AbsoluteFormAuthority(target).has_value();
}

// A chunk-size line is the hex size (leading zeros allowed), optional extensions and CRLF; this
// is the allowance beyond max_chunk_extension_bytes.
constexpr size_t kChunkSizeLineOverhead = 64;

}  // namespace

enum class Parser::State : uint8_t {
  kIdle,    // between messages; skipping empty lines
  kIdleCr,  // saw CR of an empty line before a start line
  kStartLine,
  kHeaderLine,
  kBodyLength,      // Content-Length body
  kBodyUntilClose,  // close-delimited response body
  kChunkSize,
  kChunkData,
  kChunkDataCr,  // expecting the CR after chunk data
  kChunkDataLf,  // expecting the LF after chunk data
  kTrailerLine,
  kMessageDone,  // complete; OnMessageComplete not yet delivered
};

absl::string_view ParserErrorName(ParserError error) {
  switch (error) {
    case ParserError::kOk:
      return "kOk";
    case ParserError::kBareCr:
      return "kBareCr";
    case ParserError::kBareLf:
      return "kBareLf";
    case ParserError::kInvalidMethod:
      return "kInvalidMethod";
    case ParserError::kInvalidTarget:
      return "kInvalidTarget";
    case ParserError::kInvalidVersion:
      return "kInvalidVersion";
    case ParserError::kVersionNotSupported:
      return "kVersionNotSupported";
    case ParserError::kInvalidStatus:
      return "kInvalidStatus";
    case ParserError::kInvalidReason:
      return "kInvalidReason";
    case ParserError::kInvalidHeaderName:
      return "kInvalidHeaderName";
    case ParserError::kWhitespaceBeforeColon:
      return "kWhitespaceBeforeColon";
    case ParserError::kObsFold:
      return "kObsFold";
    case ParserError::kInvalidHeaderValue:
      return "kInvalidHeaderValue";
    case ParserError::kInvalidContentLength:
      return "kInvalidContentLength";
    case ParserError::kConflictingContentLength:
      return "kConflictingContentLength";
    case ParserError::kContentLengthAndTransferEncoding:
      return "kContentLengthAndTransferEncoding";
    case ParserError::kInvalidTransferEncoding:
      return "kInvalidTransferEncoding";
    case ParserError::kUnsupportedTransferEncoding:
      return "kUnsupportedTransferEncoding";
    case ParserError::kMissingHost:
      return "kMissingHost";
    case ParserError::kDuplicateHost:
      return "kDuplicateHost";
    case ParserError::kInvalidHost:
      return "kInvalidHost";
    case ParserError::kInvalidChunkSize:
      return "kInvalidChunkSize";
    case ParserError::kInvalidChunkData:
      return "kInvalidChunkData";
    case ParserError::kStartLineTooLong:
      return "kStartLineTooLong";
    case ParserError::kUriTooLong:
      return "kUriTooLong";
    case ParserError::kHeaderSectionTooLarge:
      return "kHeaderSectionTooLarge";
    case ParserError::kTooManyHeaders:
      return "kTooManyHeaders";
    case ParserError::kChunkExtensionTooLong:
      return "kChunkExtensionTooLong";
    case ParserError::kIncompleteMessage:
      return "kIncompleteMessage";
    case ParserError::kCallbackAborted:
      return "kCallbackAborted";
  }
  return "kUnknown";
}

absl::string_view ParserErrorMessage(ParserError error) {
  switch (error) {
    case ParserError::kOk:
      return "ok";
    case ParserError::kBareCr:
      return "CR not followed by LF";
    case ParserError::kBareLf:
      return "line ends in LF without CR";
    case ParserError::kInvalidMethod:
      return "invalid method";
    case ParserError::kInvalidTarget:
      return "invalid request-target";
    case ParserError::kInvalidVersion:
      return "invalid HTTP version";
    case ParserError::kVersionNotSupported:
      return "HTTP version not supported";
    case ParserError::kInvalidStatus:
      return "invalid status code";
    case ParserError::kInvalidReason:
      return "invalid character in reason phrase";
    case ParserError::kInvalidHeaderName:
      return "invalid header field name";
    case ParserError::kWhitespaceBeforeColon:
      return "whitespace between header field name and colon";
    case ParserError::kObsFold:
      return "obsolete line folding";
    case ParserError::kInvalidHeaderValue:
      return "invalid character in header field value";
    case ParserError::kInvalidContentLength:
      return "invalid Content-Length";
    case ParserError::kConflictingContentLength:
      return "conflicting Content-Length values";
    case ParserError::kContentLengthAndTransferEncoding:
      return "both Content-Length and Transfer-Encoding";
    case ParserError::kInvalidTransferEncoding:
      return "invalid Transfer-Encoding";
    case ParserError::kUnsupportedTransferEncoding:
      return "unsupported transfer coding";
    case ParserError::kMissingHost:
      return "missing Host header";
    case ParserError::kDuplicateHost:
      return "more than one Host header";
    case ParserError::kInvalidHost:
      return "invalid Host header";
    case ParserError::kInvalidChunkSize:
      return "invalid chunk size line";
    case ParserError::kInvalidChunkData:
      return "chunk data not followed by CRLF";
    case ParserError::kStartLineTooLong:
      return "start line too long";
    case ParserError::kUriTooLong:
      return "request-target too long";
    case ParserError::kHeaderSectionTooLarge:
      return "header section too large";
    case ParserError::kTooManyHeaders:
      return "too many header fields";
    case ParserError::kChunkExtensionTooLong:
      return "chunk extension too long";
    case ParserError::kIncompleteMessage:
      return "connection closed before message completed";
    case ParserError::kCallbackAborted:
      return "aborted by callback";
  }
  return "unknown error";
}

int HttpStatusForError(ParserError error) {
  switch (error) {
    case ParserError::kOk:
      return 200;
    case ParserError::kStartLineTooLong:
    case ParserError::kUriTooLong:
      return 414;
    case ParserError::kHeaderSectionTooLarge:
    case ParserError::kTooManyHeaders:
      return 431;
    case ParserError::kUnsupportedTransferEncoding:
      return 501;
    case ParserError::kVersionNotSupported:
      return 505;
    default:
      return 400;
  }
}

Parser::Parser(Type type, ParserVisitor* visitor, const ParserLimits& limits)
    : type_(type), visitor_(visitor), limits_(limits), state_(State::kIdle) {
  // Room for a typical straddling line, so steady-state parsing does not allocate.
  spill_.reserve(1024);
}

void Parser::Reset() {
  status_ = Status::kOk;
  error_ = ParserError::kOk;
  state_ = State::kIdle;
  spill_.clear();
  request_was_head_ = false;
  request_was_connect_ = false;
  info_ = MessageInfo();
}

void Parser::Resume() {
  if (status_ == Status::kPaused || status_ == Status::kUpgraded) status_ = Status::kOk;
}

void Parser::SetRequestMethod(absl::string_view method) {
  request_was_head_ = method == "HEAD";
  request_was_connect_ = method == "CONNECT";
}

absl::Status Parser::ToStatus() const {
  if (error_ == ParserError::kOk) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(ParserErrorName(error_), ": ", ParserErrorMessage(error_)));
}

bool Parser::Fail(ParserError error) {
  status_ = Status::kError;
  error_ = error;
  return false;
}

bool Parser::Handle(ParserVisitor::Action action) {
  switch (action) {
    case ParserVisitor::Action::kContinue:
      return true;
    case ParserVisitor::Action::kPause:
      if (status_ == Status::kOk) status_ = Status::kPaused;
      return false;
    case ParserVisitor::Action::kAbort:
      return Fail(ParserError::kCallbackAborted);
  }
  return Fail(ParserError::kCallbackAborted);
}

Parser::LineResult Parser::NextLine(const char** p, const char* end, size_t limit,
                                    ParserError too_long, absl::string_view* line) {
  if (spill_line_) {
    spill_.clear();
    spill_line_ = false;
  }
  const char* start = *p;
  size_t avail = end - start;
  // The LF must fall within the limit; never scan (or buffer) further than that, so the result
  // is the same however the bytes are split.
  size_t allowed = limit > spill_.size() ? limit - spill_.size() : 0;
  size_t scan = std::min(avail, allowed);
  // memchr must not see a null pointer, even for zero bytes.
  const char* lf = scan == 0 ? nullptr : static_cast<const char*>(std::memchr(start, '\n', scan));
  if (lf == nullptr) {
    if (avail > allowed) {
      Fail(too_long);
      return LineResult::kError;
    }
    spill_.append(start, avail);
    *p = end;
    return LineResult::kNeedMore;
  }
  *p = lf + 1;
  absl::string_view l;
  if (spill_.empty()) {
    l = absl::string_view(start, lf - start);
  } else {
    spill_.append(start, lf - start);
    spill_line_ = true;
    l = spill_;
  }
  if (l.empty() || l.back() != '\r') {
    Fail(ParserError::kBareLf);
    return LineResult::kError;
  }
  l.remove_suffix(1);
  *line = l;
  return LineResult::kLine;
}

void Parser::BeginMessage() {
  info_ = MessageInfo();
  is_connect_request_ = false;
  header_bytes_ = 0;
  header_count_ = 0;
  has_content_length_ = false;
  has_transfer_encoding_ = false;
  chunked_ = false;
  connection_close_ = false;
  connection_keep_alive_ = false;
  connection_upgrade_ = false;
  has_upgrade_header_ = false;
  host_count_ = 0;
  body_remaining_ = 0;
}

bool Parser::ParseRequestLine(absl::string_view line) {
  const char* p = line.data();
  const char* end = p + line.size();
  const char* method_end = Skip(p, end, kTokenChar);
  if (method_end == p || method_end == end || *method_end != ' ') {
    return Fail(At(method_end, end, ParserError::kInvalidMethod));
  }
  absl::string_view method(p, method_end - p);
  const char* target_begin = method_end + 1;
  const char* target_end = Skip(target_begin, end, kTargetChar);
  if (target_end == end) {
    // No SP after the target: an HTTP/0.9-style line or garbage; either way no valid version.
    return Fail(target_begin == end ? ParserError::kInvalidTarget : ParserError::kInvalidVersion);
  }
  if (target_end == target_begin || *target_end != ' ') {
    return Fail(At(target_end, end, ParserError::kInvalidTarget));
  }
  absl::string_view target(target_begin, target_end - target_begin);
  if (target.size() > limits_.max_uri_bytes) return Fail(ParserError::kUriTooLong);
  absl::string_view version(target_end + 1, end - target_end - 1);
  ParserError err = ParseVersion(version, &info_.version_major, &info_.version_minor);
  if (err != ParserError::kOk) {
    return Fail(At(std::find(version.begin(), version.end(), '\r'), version.end(), err));
  }
  if (!ValidTargetForm(method, target)) return Fail(ParserError::kInvalidTarget);
  is_connect_request_ = method == "CONNECT";
  state_ = State::kHeaderLine;
  return Handle(visitor_->OnRequestLine(method, target, info_.version_major, info_.version_minor));
}

bool Parser::ParseStatusLine(absl::string_view line) {
  // status-line = HTTP-version SP status-code SP [ reason-phrase ]
  if (line.size() < 9 || line[8] != ' ') {
    ParserError err = ParseVersion(line.substr(0, std::min<size_t>(line.size(), 8)),
                                   &info_.version_major, &info_.version_minor);
    if (err == ParserError::kOk) err = ParserError::kInvalidStatus;
    return Fail(At(std::find(line.begin(), line.end(), '\r'), line.end(), err));
  }
  ParserError err = ParseVersion(line.substr(0, 8), &info_.version_major, &info_.version_minor);
  if (err != ParserError::kOk) return Fail(err);
  if (line.size() < 12 || !Is(line[9], kDigitChar) || !Is(line[10], kDigitChar) ||
      !Is(line[11], kDigitChar)) {
    return Fail(
        At(std::find(line.begin(), line.end(), '\r'), line.end(), ParserError::kInvalidStatus));
  }
  int code = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
  if (code < 100 || code > 599) return Fail(ParserError::kInvalidStatus);
  absl::string_view reason;
  if (line.size() > 12) {
    if (line[12] != ' ') return Fail(At(line.data() + 12, line.end(), ParserError::kInvalidStatus));
    reason = line.substr(13);
    const char* stop = Skip(reason.data(), reason.data() + reason.size(), kFieldChar);
    if (stop != reason.data() + reason.size()) {
      return Fail(At(stop, reason.data() + reason.size(), ParserError::kInvalidReason));
    }
  }
  info_.status_code = code;
  state_ = State::kHeaderLine;
  return Handle(visitor_->OnStatusLine(info_.version_major, info_.version_minor, code, reason));
}

bool Parser::ParseFieldLine(absl::string_view line, absl::string_view* name,
                            absl::string_view* value) {
  const char* p = line.data();
  const char* end = p + line.size();
  const char* name_end = Skip(p, end, kTokenChar);
  if (name_end == p) {
    if (p < end && Is(*p, kWhiteChar)) return Fail(ParserError::kObsFold);
    return Fail(At(p, end, ParserError::kInvalidHeaderName));
  }
  if (name_end == end || *name_end != ':') {
    if (name_end < end && Is(*name_end, kWhiteChar)) {
      return Fail(ParserError::kWhitespaceBeforeColon);
    }
    return Fail(At(name_end, end, ParserError::kInvalidHeaderName));
  }
  const char* v = Skip(name_end + 1, end, kWhiteChar);
  const char* v_end = Skip(v, end, kFieldChar);
  if (v_end != end) return Fail(At(v_end, end, ParserError::kInvalidHeaderValue));
  while (v_end > v && Is(v_end[-1], kWhiteChar)) --v_end;
  *name = absl::string_view(p, name_end - p);
  *value = absl::string_view(v, v_end - v);
  return true;
}

bool Parser::ParseContentLength(absl::string_view value) {
  if (has_transfer_encoding_) return Fail(ParserError::kContentLengthAndTransferEncoding);
  // RFC 9110 8.6 lets a recipient accept a list of identical values as one value. Unlike other
  // lists, no element may be empty: "1,,1" is malformed, not a list of two.
  const char* p = value.data();
  const char* end = p + value.size();
  bool first = true;
  uint64_t length = 0;
  while (true) {
    const char* comma = static_cast<const char*>(std::memchr(p, ',', end - p));
    const char* stop = comma ? comma : end;
    absl::string_view element = TrimWhite(absl::string_view(p, stop - p));
    if (element.empty()) return Fail(ParserError::kInvalidContentLength);
    uint64_t n = 0;
    for (char c : element) {
      if (!Is(c, kDigitChar)) return Fail(ParserError::kInvalidContentLength);
      uint64_t d = static_cast<uint64_t>(c - '0');
      if (n > (UINT64_MAX - d) / 10) return Fail(ParserError::kInvalidContentLength);
      n = n * 10 + d;
    }
    if ((!first && n != length) || (has_content_length_ && n != info_.content_length)) {
      return Fail(ParserError::kConflictingContentLength);
    }
    first = false;
    length = n;
    if (comma == nullptr) break;
    p = comma + 1;
  }
  has_content_length_ = true;
  info_.content_length = length;
  return true;
}

bool Parser::ParseTransferEncoding(absl::string_view value) {
  if (has_content_length_) return Fail(ParserError::kContentLengthAndTransferEncoding);
  // RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 means the framing cannot be trusted.
  if (info_.version_minor == 0) return Fail(ParserError::kInvalidTransferEncoding);
  has_transfer_encoding_ = true;
  ParserError err = ParserError::kOk;
  ForEachElement(value, [&](absl::string_view coding) {
    // chunked must be the last coding, applied once (RFC 9112 6.1, 7).
    if (chunked_) {
      err = ParserError::kInvalidTransferEncoding;
      return false;
    }
    if (ascii_case::EqualsLowercase(coding, "chunked")) {
      chunked_ = true;
      return true;
    }
    const char* token_end = Skip(coding.data(), coding.data() + coding.size(), kTokenChar);
    absl::string_view token(coding.data(), token_end - coding.data());
    // Another coding (gzip, ...) is well-formed but not implemented; garbage is a bad request.
    err = token.empty() || ascii_case::EqualsLowercase(token, "chunked")
              ? ParserError::kInvalidTransferEncoding
              : ParserError::kUnsupportedTransferEncoding;
    return false;
  });
  if (err != ParserError::kOk) return Fail(err);
  return true;
}

void Parser::ParseConnection(absl::string_view value) {
  ForEachElement(value, [&](absl::string_view option) {
    if (ascii_case::EqualsLowercase(option, "close")) {
      connection_close_ = true;
    } else if (ascii_case::EqualsLowercase(option, "keep-alive")) {
      connection_keep_alive_ = true;
    } else if (ascii_case::EqualsLowercase(option, "upgrade")) {
      connection_upgrade_ = true;
    }
    return true;
  });
}

bool Parser::ProcessHeader(absl::string_view name, absl::string_view value) {
  // Dispatch on length first: most fields are none of these and cost one switch.
  switch (name.size()) {
    case 4:
      if (type_ == Type::kRequest && ascii_case::EqualsLowercase(name, "host")) {
        if (++host_count_ > 1) return Fail(ParserError::kDuplicateHost);
        // RFC 9112 3.2: 400 for an invalid Host, even if an absolute-form target replaces it.
        if (!ParseHostPort(value).has_value()) return Fail(ParserError::kInvalidHost);
      }
      break;
    case 6:
      if (type_ == Type::kRequest && ascii_case::EqualsLowercase(name, "expect") &&
          ascii_case::EqualsLowercase(value, "100-continue")) {
        info_.expect_continue = true;
      }
      break;
    case 7:
      if (ascii_case::EqualsLowercase(name, "upgrade")) has_upgrade_header_ = true;
      break;
    case 10:
      if (ascii_case::EqualsLowercase(name, "connection")) ParseConnection(value);
      break;
    case 14:
      if (ascii_case::EqualsLowercase(name, "content-length")) return ParseContentLength(value);
      break;
    case 17:
      if (ascii_case::EqualsLowercase(name, "transfer-encoding"))
        return ParseTransferEncoding(value);
      break;
    default:
      break;
  }
  return true;
}

bool Parser::HeadersComplete() {
  if (has_transfer_encoding_ && !chunked_) return Fail(ParserError::kInvalidTransferEncoding);
  MessageInfo& info = info_;
  if (info.version_minor == 1) {
    info.keep_alive = !connection_close_;
  } else {
    info.keep_alive = connection_keep_alive_ && !connection_close_;
  }
  if (type_ == Type::kRequest) {
    if (info.version_minor == 1 && host_count_ == 0) return Fail(ParserError::kMissingHost);
    if (is_connect_request_) {
      // A CONNECT request has no content (RFC 9110 9.3.6); what follows is the tunnel.
      info.framing = BodyFraming::kNone;
      info.upgrade = true;
    } else {
      info.framing = chunked_              ? BodyFraming::kChunked
                     : has_content_length_ ? BodyFraming::kContentLength
                                           : BodyFraming::kNone;
      // RFC 9110 7.8: Upgrade counts only with "Connection: upgrade", and never in HTTP/1.0.
      info.upgrade = info.version_minor == 1 && has_upgrade_header_ && connection_upgrade_;
    }
  } else {
    int code = info.status_code;
    if (code < 200) {
      // Interim responses have no body and do not decide persistence; 101 switches protocols.
      info.framing = BodyFraming::kNone;
      info.keep_alive = true;
      info.upgrade = code == 101;
    } else if (request_was_connect_ && code < 300) {
      // Any 2xx to CONNECT opens the tunnel, 204 included (RFC 9110 9.3.6).
      info.framing = BodyFraming::kNone;
      info.upgrade = true;
    } else if (request_was_head_ || code == 204 || code == 304) {
      info.framing = BodyFraming::kNone;
    } else if (chunked_) {
      info.framing = BodyFraming::kChunked;
    } else if (has_content_length_) {
      info.framing = BodyFraming::kContentLength;
    } else {
      info.framing = BodyFraming::kUntilClose;
      info.keep_alive = false;
    }
  }
  if (info.framing != BodyFraming::kContentLength) info.content_length = 0;

  switch (info.framing) {
    case BodyFraming::kNone:
      state_ = State::kMessageDone;
      break;
    case BodyFraming::kContentLength:
      body_remaining_ = info.content_length;
      state_ = body_remaining_ == 0 ? State::kMessageDone : State::kBodyLength;
      break;
    case BodyFraming::kChunked:
      state_ = State::kChunkSize;
      break;
    case BodyFraming::kUntilClose:
      state_ = State::kBodyUntilClose;
      break;
  }
  return Handle(visitor_->OnHeadersComplete(info_));
}

bool Parser::ParseChunkSizeLine(absl::string_view line) {
  const char* p = line.data();
  const char* end = p + line.size();
  const char* digits_end = Skip(p, end, kHexChar);
  if (digits_end == p) return Fail(At(p, end, ParserError::kInvalidChunkSize));
  uint64_t size = 0;
  for (const char* d = p; d < digits_end; ++d) {
    if (size > (UINT64_MAX >> 4)) return Fail(ParserError::kInvalidChunkSize);
    size = (size << 4) | static_cast<uint64_t>(HexValue(*d));
  }
  // Extensions are ignored, but parsed to the letter of the grammar: parsers that read a chunk
  // line differently (a bare ';', a control character) are a smuggling vector.
  if (digits_end != end) {
    const char* bad = BadChunkExtension(digits_end, end);
    if (bad != nullptr) return Fail(At(bad, end, ParserError::kInvalidChunkSize));
  }
  body_remaining_ = size;
  if (size == 0) {
    header_bytes_ = 0;
    header_count_ = 0;
    state_ = State::kTrailerLine;
    return true;
  }
  state_ = State::kChunkData;
  return Handle(visitor_->OnChunkHeader(size));
}

void Parser::FinishMessage() {
  state_ = State::kIdle;
  if (info_.upgrade) {
    status_ = Status::kUpgraded;
  } else if (!info_.keep_alive) {
    status_ = Status::kClosed;
  }
  Handle(visitor_->OnMessageComplete());
}

size_t Parser::Execute(absl::string_view data) {
  if (status_ != Status::kOk) return 0;
  const char* const begin = data.data();
  const char* p = begin;
  const char* const end = p + data.size();
  auto consumed = [&] { return static_cast<size_t>(p - begin); };

  while (true) {
    switch (state_) {
      case State::kIdle: {
        if (p == end) return consumed();
        if (*p == '\r') {
          ++p;
          state_ = State::kIdleCr;
          break;
        }
        if (*p == '\n') {
          Fail(ParserError::kBareLf);
          return consumed();
        }
        BeginMessage();
        state_ = State::kStartLine;
        if (!Handle(visitor_->OnMessageBegin())) return consumed();
        break;
      }
      case State::kIdleCr: {
        if (p == end) return consumed();
        if (*p != '\n') {
          Fail(ParserError::kBareCr);
          return consumed();
        }
        ++p;
        state_ = State::kIdle;
        break;
      }
      case State::kStartLine: {
        absl::string_view line;
        LineResult r =
            NextLine(&p, end, limits_.max_start_line_bytes, ParserError::kStartLineTooLong, &line);
        if (r != LineResult::kLine) return consumed();
        bool ok = type_ == Type::kRequest ? ParseRequestLine(line) : ParseStatusLine(line);
        if (!ok) return consumed();
        break;
      }
      case State::kHeaderLine:
      case State::kTrailerLine: {
        absl::string_view line;
        LineResult r = NextLine(&p, end, limits_.max_header_bytes - header_bytes_,
                                ParserError::kHeaderSectionTooLarge, &line);
        if (r != LineResult::kLine) return consumed();
        header_bytes_ += line.size() + 2;
        bool trailer = state_ == State::kTrailerLine;
        if (line.empty()) {
          if (trailer) {
            state_ = State::kMessageDone;
          } else if (!HeadersComplete()) {
            return consumed();
          }
          break;
        }
        if (++header_count_ > limits_.max_header_count) {
          Fail(ParserError::kTooManyHeaders);
          return consumed();
        }
        absl::string_view name, value;
        if (!ParseFieldLine(line, &name, &value)) return consumed();
        if (trailer) {
          if (!Handle(visitor_->OnTrailer(name, value))) return consumed();
        } else {
          if (!ProcessHeader(name, value)) return consumed();
          if (!Handle(visitor_->OnHeader(name, value))) return consumed();
        }
        break;
      }
      case State::kBodyLength:
      case State::kChunkData: {
        if (p == end) return consumed();
        size_t n = static_cast<size_t>(
            std::min<uint64_t>(body_remaining_, static_cast<uint64_t>(end - p)));
        const char* chunk = p;
        p += n;
        body_remaining_ -= n;
        if (body_remaining_ == 0) {
          state_ = state_ == State::kBodyLength ? State::kMessageDone : State::kChunkDataCr;
        }
        if (!Handle(visitor_->OnBody(absl::string_view(chunk, n)))) return consumed();
        break;
      }
      case State::kBodyUntilClose: {
        if (p == end) return consumed();
        const char* chunk = p;
        p = end;
        if (!Handle(visitor_->OnBody(absl::string_view(chunk, end - chunk)))) return consumed();
        break;
      }
      case State::kChunkSize: {
        absl::string_view line;
        LineResult r = NextLine(&p, end, limits_.max_chunk_extension_bytes + kChunkSizeLineOverhead,
                                ParserError::kChunkExtensionTooLong, &line);
        if (r != LineResult::kLine) return consumed();
        if (!ParseChunkSizeLine(line)) return consumed();
        break;
      }
      case State::kChunkDataCr: {
        if (p == end) return consumed();
        if (*p != '\r') {
          Fail(*p == '\n' ? ParserError::kBareLf : ParserError::kInvalidChunkData);
          return consumed();
        }
        ++p;
        state_ = State::kChunkDataLf;
        break;
      }
      case State::kChunkDataLf: {
        if (p == end) return consumed();
        if (*p != '\n') {
          Fail(ParserError::kBareCr);
          return consumed();
        }
        ++p;
        state_ = State::kChunkSize;
        break;
      }
      case State::kMessageDone: {
        FinishMessage();
        if (status_ != Status::kOk) return consumed();
        break;
      }
    }
  }
}

ParserError Parser::Finish() {
  switch (status_) {
    case Status::kError:
      return error_;
    case Status::kUpgraded:
    case Status::kClosed:
      return ParserError::kOk;
    case Status::kOk:
    case Status::kPaused:
      break;
  }
  switch (state_) {
    case State::kIdle:
    case State::kIdleCr:
      return ParserError::kOk;
    case State::kBodyUntilClose:
    case State::kMessageDone:
      status_ = Status::kOk;
      FinishMessage();
      return error_;
    default:
      Fail(ParserError::kIncompleteMessage);
      return error_;
  }
}

}  // namespace meshlet::http::h1

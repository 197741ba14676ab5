// Differential fuzz target: meshlet's HTTP/1 parser against http_parser 2.9 (Debian's
// libhttp-parser-dev, the non-strict build), which serves as an oracle here and nowhere else.
//
// Input layout: byte 0 picks the mode (bit 0: responses instead of requests; bits 1-2: the method
// of the request the responses answer: GET, HEAD, CONNECT, POST; bit 3: the peer closes after the
// bytes; bits 4 and 5 both set: tight limits); the rest is what one connection receives. Both
// parsers read it whole and record every message: start line, header and trailer fields, body
// bytes (de-chunked), the offset where it ends, keep-alive and upgrade. Then, message by message:
// - messages both complete must agree on all of that (field names compared case-insensitively,
//   values without surrounding whitespace); comparison stops after a message both agree ends the
//   connection (close or upgrade);
// - where http_parser gets further into a message than meshlet (meshlet refuses it, or has not
//   decided yet), meshlet's error must fall into a category of deliberate strictness
//   (kLineEnds ... kLimits below), checked against the input;
// - where meshlet gets further (accepts a header section or a message http_parser refuses), or
//   both accept the same header section but end the message or the connection differently, the
//   input must show one of http_parser's known misreadings (kExtensionMethod ... kTrailerFields)
//   or a case where meshlet follows the RFCs and http_parser not (kCloseWithKeepAlive ...).
// Anything else aborts with both records. Request-targets and Host values meshlet accepts are also
// checked against an independent reading of their grammar (RFC 9112 3.2, RFC 3986 3.2.2).
// MESHLET_DIFF_STATS=1 in the environment prints how often each category explained an input.
//
// Drivers (a deterministic test run, libFuzzer): common/fuzz/fuzz_target.h.

#include <arpa/inet.h>
#include <http_parser.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/fuzz/fuzz_target.h"
#include "common/http/h1/parser.h"
#include "common/http/h1/parser_test_util.h"

namespace meshlet::http::h1 {
namespace {

// Why the parsers may disagree. Each is checked against the input before it is accepted.
enum class Category : int {
  // meshlet refuses what http_parser accepts: deliberate strictness.
  kLineEnds,               // a bare CR or LF ends a line (RFC 9112 2.2)
  kObsFold,                // obs-fold (RFC 9112 5.2)
  kWhitespaceInFieldName,  // SP inside a field name or before its colon (RFC 9112 5.1)
  kFieldValueBytes,        // NUL / CTL / DEL in a field value (RFC 9110 5.5)
  kRequestLineWhitespace,  // more than one SP between request-line parts (RFC 9112 3)
  kTargetBytes,            // bytes outside VCHAR, or '#', in the request-target (RFC 9112 3.2)
  kTargetForm,             // target form not allowed for the method, scheme, authority
  kVersion,                // version other than HTTP/1.0 and HTTP/1.1, or malformed
  kStatusLine,             // status code not 3 digits in 100..599, or extra SP (RFC 9112 4)
  kReasonBytes,            // control bytes in the reason phrase (RFC 9112 4)
  kTransferEncoding,       // not exactly one final chunked, or in HTTP/1.0 (RFC 9112 6.1)
  // Content-Length and Transfer-Encoding both (RFC 9112 6.1).
  kContentLengthAndTransferEncoding,
  kHost,            // missing, repeated or invalid Host (RFC 9112 3.2)
  kChunkExtension,  // chunk-size line outside the chunk-ext grammar (RFC 9112 7.1.1)
  kChunkSizeBytes,  // bytes above 0x7F in a chunk size, which http_parser reads as 0
  kChunkDataEnd,    // chunk data not followed by CRLF (RFC 9112 7.1)
  kLimits,          // meshlet's configured limits (ParserLimits)
  // http_parser misreads valid input: it refuses what meshlet accepts, or frames it otherwise.
  kExtensionMethod,            // a method token outside http_parser's list (RFC 9110 9.1)
  kFramingListSyntax,          // list syntax or HTAB in Transfer-Encoding / Content-Length
  kRepeatedContentLength,      // identical Content-Length values repeated (RFC 9110 8.6)
  kHugeLength,                 // lengths near 2^64, past http_parser's overflow checks
  kChunkExtensionWhitespace,   // HTAB as BWS before a chunk extension (RFC 9112 7.1.1)
  kConnectionListSyntax,       // Connection options after HTAB, an empty or odd element, or
                               // "c," (RFC 9110 5.6.1)
  kTransferEncodingLookalike,  // a field named Transfer-Encoding<more>, taken for it
  kProxyConnection,            // Proxy-Connection, which HTTP does not define, honoured
  kTrailerFields,              // framing or connection fields in the trailer section, which
                               // http_parser applies or refuses (RFC 9110 6.5.1)
  // Both accept; meshlet ends the message or the connection as the RFCs say, http_parser not.
  kCloseWithKeepAlive,  // HTTP/1.0 "close" with "keep-alive": meshlet closes (RFC 9112 9.3)
  kUpgradeInHttp10,     // Upgrade in HTTP/1.0 is ignored (RFC 9110 7.8)
  kEmptyUpgrade,        // "Connection: upgrade" with an empty Upgrade: held as an upgrade
  kNoContentStatus,     // 1xx, 204 and 304 responses have no content (RFC 9112 6.3)
  kInterimPersistence,  // an interim response does not decide persistence (RFC 9110 15.2)
  kSwitchingProtocols,  // a 101 always ends HTTP/1 on the connection (RFC 9110 15.2.2)
  kCount,
};

const char* const kCategoryNames[] = {
    "line-ends",
    "obs-fold",
    "whitespace-in-field-name",
    "field-value-bytes",
    "request-line-whitespace",
    "target-bytes",
    "target-form",
    "version",
    "status-line",
    "reason-bytes",
    "transfer-encoding",
    "content-length-and-transfer-encoding",
    "host",
    "chunk-extension",
    "chunk-size-bytes",
    "chunk-data-end",
    "limits",
    "extension-method",
    "framing-list-syntax",
    "repeated-content-length",
    "huge-length",
    "chunk-extension-whitespace",
    "connection-list-syntax",
    "transfer-encoding-lookalike",
    "proxy-connection",
    "trailer-fields",
    "close-with-keep-alive",
    "upgrade-in-http10",
    "empty-upgrade",
    "no-content-status",
    "interim-persistence",
    "switching-protocols",
};
static_assert(sizeof(kCategoryNames) / sizeof(kCategoryNames[0]) ==
              static_cast<size_t>(Category::kCount));

// ---------------------------------------------------------------------------------------------
// Records.

using Fields = std::vector<std::pair<std::string, std::string>>;

// One message as a parser reported it. Offsets are into the whole input.
struct Message {
  std::string method, target, reason;
  int major = 0, minor = 0, status = 0;
  Fields headers, trailers;
  std::string body;
  std::vector<uint64_t> chunk_sizes;  // meshlet only
  uint64_t content_length = 0;        // meshlet only, with BodyFraming::kContentLength
  bool head_done = false, complete = false;
  bool keep_alive = false, upgrade = false;
  size_t begin = 0;     // where the previous message ended
  size_t head_end = 0;  // meshlet only: after the header section
  size_t end = 0;
};

struct Run {
  enum class Final { kOk, kStopped, kError };  // kStopped: closed or upgraded
  std::vector<Message> messages;
  Final final = Final::kOk;
  int error = 0;         // ParserError or http_errno
  size_t error_pos = 0;  // bytes consumed when it failed
  std::string error_name;

  size_t Completed() const {
    size_t n = 0;
    while (n < messages.size() && messages[n].complete) ++n;
    return n;
  }
};

struct Mode {
  Parser::Type type = Parser::Type::kRequest;
  const char* request_method = "GET";  // responses only
  bool finish = false;
  ParserLimits limits;
};

// ---------------------------------------------------------------------------------------------
// meshlet's run: pauses after each header section and message so their offsets are known.

class MeshletRecorder : public ParserVisitor {
 public:
  explicit MeshletRecorder(Run& run) : run_(run) {}

  enum class Mark { kNone, kHeadEnd, kEnd };
  Mark TakeMark() { return std::exchange(mark_, Mark::kNone); }
  size_t next_begin = 0;

  Action OnMessageBegin() override {
    run_.messages.emplace_back();
    run_.messages.back().begin = next_begin;
    return Action::kContinue;
  }
  Action OnRequestLine(absl::string_view method, absl::string_view target, int major,
                       int minor) override {
    Message& m = run_.messages.back();
    m.method = std::string(method);
    m.target = std::string(target);
    m.major = major;
    m.minor = minor;
    return Action::kContinue;
  }
  Action OnStatusLine(int major, int minor, int status, absl::string_view reason) override {
    Message& m = run_.messages.back();
    m.major = major;
    m.minor = minor;
    m.status = status;
    m.reason = std::string(reason);
    return Action::kContinue;
  }
  Action OnHeader(absl::string_view name, absl::string_view value) override {
    run_.messages.back().headers.emplace_back(name, value);
    return Action::kContinue;
  }
  Action OnHeadersComplete(const MessageInfo& info) override {
    Message& m = run_.messages.back();
    m.head_done = true;
    m.keep_alive = info.keep_alive;
    m.upgrade = info.upgrade;
    if (info.framing == BodyFraming::kContentLength) m.content_length = info.content_length;
    mark_ = Mark::kHeadEnd;
    return Action::kPause;
  }
  Action OnChunkHeader(uint64_t size) override {
    run_.messages.back().chunk_sizes.push_back(size);
    return Action::kContinue;
  }
  Action OnBody(absl::string_view data) override {
    run_.messages.back().body.append(data.data(), data.size());
    return Action::kContinue;
  }
  Action OnTrailer(absl::string_view name, absl::string_view value) override {
    run_.messages.back().trailers.emplace_back(name, value);
    return Action::kContinue;
  }
  Action OnMessageComplete() override {
    run_.messages.back().complete = true;
    mark_ = Mark::kEnd;
    return Action::kPause;
  }

 private:
  Run& run_;
  Mark mark_ = Mark::kNone;
};

[[noreturn]] void Fatal(const std::string& what) {
  std::fprintf(stderr, "parser_differential_fuzz: %s\n", what.c_str());
  std::abort();
}

Run RunMeshlet(absl::string_view input, const Mode& mode) {
  Run run;
  MeshletRecorder recorder(run);
  Parser parser(mode.type, &recorder, mode.limits);
  if (mode.type == Parser::Type::kResponse) parser.SetRequestMethod(mode.request_method);
  size_t pos = 0;
  auto apply_mark = [&](size_t at) {
    switch (recorder.TakeMark()) {
      case MeshletRecorder::Mark::kHeadEnd:
        run.messages.back().head_end = at;
        break;
      case MeshletRecorder::Mark::kEnd:
        run.messages.back().end = at;
        recorder.next_begin = at;
        break;
      case MeshletRecorder::Mark::kNone:
        break;
    }
  };
  // Every pause marks a header section or a message, and there are fewer of those than bytes.
  for (size_t rounds = 0;; ++rounds) {
    if (rounds > 2 * input.size() + 8) Fatal("meshlet's parser does not progress");
    pos += parser.Execute(input.substr(pos));
    apply_mark(pos);
    if (parser.status() != Parser::Status::kPaused) break;
    parser.Resume();
  }
  if (mode.finish && parser.status() == Parser::Status::kOk) {
    parser.Finish();
    apply_mark(input.size());
  }
  switch (parser.status()) {
    case Parser::Status::kOk:
    case Parser::Status::kPaused:
      run.final = Run::Final::kOk;
      break;
    case Parser::Status::kUpgraded:
    case Parser::Status::kClosed:
      run.final = Run::Final::kStopped;
      break;
    case Parser::Status::kError:
      run.final = Run::Final::kError;
      run.error = static_cast<int>(parser.error());
      run.error_name = std::string(ParserErrorName(parser.error()));
      run.error_pos = pos;
      break;
  }
  return run;
}

// ---------------------------------------------------------------------------------------------
// http_parser's run, also paused after each message.

struct OracleState {
  Run* run;
  const Mode* mode;
  bool in_value = false;  // the last field callback was a value
  bool message_done = false;

  Message& current() { return run->messages.back(); }
  Fields& fields() { return current().head_done ? current().trailers : current().headers; }
};

OracleState& StateOf(http_parser* p) { return *static_cast<OracleState*>(p->data); }

int OnOracleMessageBegin(http_parser* p) {
  OracleState& s = StateOf(p);
  size_t begin = s.run->messages.empty() ? 0 : s.run->messages.back().end;
  s.run->messages.emplace_back();
  s.current().begin = begin;
  s.in_value = false;
  return 0;
}
int OnOracleUrl(http_parser* p, const char* at, size_t n) {
  StateOf(p).current().target.append(at, n);
  return 0;
}
int OnOracleStatus(http_parser* p, const char* at, size_t n) {
  StateOf(p).current().reason.append(at, n);
  return 0;
}
int OnOracleHeaderField(http_parser* p, const char* at, size_t n) {
  OracleState& s = StateOf(p);
  Fields& fields = s.fields();
  if (fields.empty() || s.in_value) fields.emplace_back();
  fields.back().first.append(at, n);
  s.in_value = false;
  return 0;
}
int OnOracleHeaderValue(http_parser* p, const char* at, size_t n) {
  OracleState& s = StateOf(p);
  Fields& fields = s.fields();
  if (fields.empty()) fields.emplace_back();
  fields.back().second.append(at, n);
  s.in_value = true;
  return 0;
}
int OnOracleHeadersComplete(http_parser* p) {
  OracleState& s = StateOf(p);
  Message& m = s.current();
  m.head_done = true;
  m.major = p->http_major;
  m.minor = p->http_minor;
  m.status = p->status_code;
  if (p->type == HTTP_REQUEST) m.method = http_method_str(static_cast<http_method>(p->method));
  s.in_value = false;
  if (p->type == HTTP_RESPONSE) {
    // What the caller of http_parser tells it about the request (http_parser.h): no body after
    // HEAD; a 2xx to CONNECT opens a tunnel.
    if (std::strcmp(s.mode->request_method, "HEAD") == 0) return 1;
    if (std::strcmp(s.mode->request_method, "CONNECT") == 0 && p->status_code >= 200 &&
        p->status_code < 300) {
      return 2;
    }
  }
  return 0;
}
int OnOracleBody(http_parser* p, const char* at, size_t n) {
  StateOf(p).current().body.append(at, n);
  return 0;
}
int OnOracleMessageComplete(http_parser* p) {
  OracleState& s = StateOf(p);
  Message& m = s.current();
  m.complete = true;
  m.keep_alive = http_should_keep_alive(p) != 0;
  m.upgrade = p->upgrade != 0;
  s.message_done = true;
  http_parser_pause(p, 1);
  return 0;
}

Run RunOracle(absl::string_view input, const Mode& mode) {
  Run run;
  OracleState state{&run, &mode};
  http_parser_settings settings;
  http_parser_settings_init(&settings);
  settings.on_message_begin = OnOracleMessageBegin;
  settings.on_url = OnOracleUrl;
  settings.on_status = OnOracleStatus;
  settings.on_header_field = OnOracleHeaderField;
  settings.on_header_value = OnOracleHeaderValue;
  settings.on_headers_complete = OnOracleHeadersComplete;
  settings.on_body = OnOracleBody;
  settings.on_message_complete = OnOracleMessageComplete;
  http_parser parser;
  parser.data = &state;
  http_parser_init(&parser, mode.type == Parser::Type::kRequest ? HTTP_REQUEST : HTTP_RESPONSE);

  // Returns false when parsing stops. `len` 0 tells http_parser the connection closed.
  size_t pos = 0;
  auto execute = [&](size_t len) {
    state.message_done = false;
    static const char kNothing = 0;
    const char* data = len == 0 ? &kNothing : input.data() + pos;
    size_t consumed = http_parser_execute(&parser, &settings, data, len);
    // At the close, http_parser counts one byte it does not have when it fails.
    pos = std::min(pos + consumed, input.size());
    http_errno err = HTTP_PARSER_ERRNO(&parser);
    if (state.message_done) {
      run.messages.back().end = pos;
      if (err == HPE_PAUSED) http_parser_pause(&parser, 0);
      if (run.messages.back().upgrade) {
        run.final = Run::Final::kStopped;
        return false;
      }
      err = HTTP_PARSER_ERRNO(&parser);
    }
    if (err != HPE_OK) {
      run.final = Run::Final::kError;
      run.error = err;
      run.error_name = http_errno_name(err);
      run.error_pos = pos;
      return false;
    }
    if (!state.message_done && consumed < len) {
      run.final = Run::Final::kStopped;  // returned early without a message: nothing follows
      return false;
    }
    return true;
  };
  bool going = true;
  while (going && pos < input.size()) going = execute(input.size() - pos);
  if (going && mode.finish) {
    // A message completed by the close is paused like any other; nothing follows it.
    execute(0);
  }
  return run;
}

// ---------------------------------------------------------------------------------------------
// Independent readings of the grammar, for checking explanations and meshlet's acceptances.

bool IsWhite(char c) { return c == ' ' || c == '\t'; }
bool IsCtl(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  return (u < 0x20 && c != '\t') || u == 0x7f;
}

absl::string_view TrimWhite(absl::string_view s) {
  while (!s.empty() && IsWhite(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsWhite(s.back())) s.remove_suffix(1);
  return s;
}

std::string Lower(absl::string_view s) { return absl::AsciiStrToLower(s); }

// reg-name characters (RFC 3986 3.2.2) without ',' (see common/http/authority.h).
bool RegNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         absl::string_view("-._~!$&'()*+;=").find(c) != absl::string_view::npos;
}

struct Authority {
  bool valid = false;
  bool empty_host = true;
  bool port = false;  // a non-empty port
};

// uri-host [ ":" port ], port at most 65535.
Authority ReadAuthority(absl::string_view v) {
  Authority a;
  size_t i = 0;
  if (!v.empty() && v[0] == '[') {
    size_t close = v.find(']');
    if (close == absl::string_view::npos) return a;
    absl::string_view inner = v.substr(1, close - 1);
    if (!inner.empty() && (inner[0] == 'v' || inner[0] == 'V')) {
      size_t j = 1;
      while (j < inner.size() && absl::ascii_isxdigit(static_cast<unsigned char>(inner[j]))) ++j;
      if (j == 1 || j + 1 >= inner.size() || inner[j] != '.') return a;
      for (++j; j < inner.size(); ++j) {
        if (inner[j] != ':' && !RegNameChar(inner[j])) return a;
      }
    } else {
      char text[64];
      if (inner.empty() || inner.size() >= sizeof(text)) return a;
      for (char c : inner) {
        if (!absl::ascii_isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') return a;
      }
      std::memcpy(text, inner.data(), inner.size());
      text[inner.size()] = '\0';
      in6_addr addr;
      if (inet_pton(AF_INET6, text, &addr) != 1) return a;
    }
    a.empty_host = false;
    i = close + 1;
  } else {
    for (; i < v.size() && v[i] != ':'; ++i) {
      if (v[i] == '%') {
        if (i + 2 >= v.size() || !absl::ascii_isxdigit(static_cast<unsigned char>(v[i + 1])) ||
            !absl::ascii_isxdigit(static_cast<unsigned char>(v[i + 2]))) {
          return a;
        }
        i += 2;
      } else if (!RegNameChar(v[i])) {
        return a;
      }
    }
    a.empty_host = i == 0;
  }
  if (i < v.size()) {
    if (v[i] != ':') return a;
    absl::string_view port = v.substr(i + 1);
    uint32_t value = 0;
    for (char c : port) {
      if (c < '0' || c > '9') return a;
      value = value * 10 + static_cast<uint32_t>(c - '0');
      if (value > 65535) return a;
    }
    a.port = !port.empty();
  }
  a.valid = true;
  return a;
}

bool TargetBytesValid(absl::string_view target) {
  if (target.empty()) return false;
  for (char c : target) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '#') return false;
  }
  return true;
}

// The request-target forms RFC 9112 3.2 allows, as docs/security.md narrows them.
bool TargetFormValid(absl::string_view method, absl::string_view target) {
  if (target.empty()) return false;
  if (method == "CONNECT") {
    Authority a = ReadAuthority(target);
    return a.valid && !a.empty_host && a.port;
  }
  if (target == "*") return method == "OPTIONS";
  if (target[0] == '/') return true;
  absl::string_view rest = target;
  if (absl::StartsWithIgnoreCase(rest, "http://")) {
    rest.remove_prefix(7);
  } else if (absl::StartsWithIgnoreCase(rest, "https://")) {
    rest.remove_prefix(8);
  } else {
    return false;
  }
  Authority a = ReadAuthority(rest.substr(0, rest.find_first_of("/?")));
  return a.valid && !a.empty_host;
}

// The methods http_parser knows; any other token is an extension method to it.
bool OracleKnowsMethod(absl::string_view method) {
  for (int i = 0;; ++i) {
    const char* name = http_method_str(static_cast<http_method>(i));
    if (std::strcmp(name, "<unknown>") == 0) return false;
    if (method == name) return true;
  }
}

// ---------------------------------------------------------------------------------------------
// The raw bytes of one message.

struct RawHead {
  absl::string_view start_line;  // without CR LF
  // Field lines up to the empty line (or the end): name as written, value after the colon with
  // nothing removed but the line end.
  std::vector<std::pair<absl::string_view, absl::string_view>> fields;
};

absl::string_view LineAt(absl::string_view input, size_t* pos) {
  size_t lf = input.find('\n', *pos);
  size_t end = lf == absl::string_view::npos ? input.size() : lf;
  absl::string_view line = input.substr(*pos, end - *pos);
  *pos = lf == absl::string_view::npos ? input.size() : lf + 1;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

// The header section of the message starting at `begin` (after empty lines). Lines end at LF.
RawHead ReadRawHead(absl::string_view input, size_t begin) {
  RawHead head;
  size_t pos = begin;
  while (pos < input.size() && (input[pos] == '\r' || input[pos] == '\n')) ++pos;
  head.start_line = LineAt(input, &pos);
  while (pos < input.size()) {
    absl::string_view line = LineAt(input, &pos);
    if (line.empty()) break;
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos) {
      head.fields.emplace_back(line, absl::string_view());
    } else {
      head.fields.emplace_back(line.substr(0, colon), line.substr(colon + 1));
    }
  }
  return head;
}

std::vector<absl::string_view> RawValues(const RawHead& head, absl::string_view name) {
  std::vector<absl::string_view> values;
  for (const auto& [n, v] : head.fields) {
    if (absl::EqualsIgnoreCase(n, name)) values.push_back(v);
  }
  return values;
}

// A Transfer-Encoding meshlet reads as chunked (it accepted the message) which http_parser does
// not: it takes exactly "chunked", SP after it allowed, and nothing else.
bool TransferEncodingListSyntax(const RawHead& head) {
  for (absl::string_view v : RawValues(head, "transfer-encoding")) {
    absl::string_view value = v;
    while (!value.empty() && IsWhite(value.front())) value.remove_prefix(1);
    while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
    if (!absl::EqualsIgnoreCase(value, "chunked")) return true;
  }
  return false;
}

// A Content-Length of 2^64 - 16 or more: http_parser's overflow check refuses it (and takes
// 2^64 - 1 for "no Content-Length"). Leading zeros do not count.
bool HasHugeContentLength(const RawHead& head) {
  for (absl::string_view v : RawValues(head, "content-length")) {
    for (absl::string_view e : absl::StrSplit(v, ',')) {
      e = TrimWhite(e);
      while (e.size() > 1 && e[0] == '0') e.remove_prefix(1);
      if (e.size() == 20 && e >= "18446744073709551600") return true;
    }
  }
  return false;
}

// A field whose name starts with, but is longer than, Transfer-Encoding.
bool HasTransferEncodingLookalike(const RawHead& head) {
  for (const auto& [n, v] : head.fields) {
    if (n.size() > 17 && absl::StartsWithIgnoreCase(n, "transfer-encoding")) return true;
  }
  return false;
}

bool IsTchar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         absl::string_view("!#$%&'*+-.^_`|~").find(c) != absl::string_view::npos;
}

// Whether http_parser may miss an option of this Connection value: it stops looking at HTAB, at
// an empty element, and at an element that starts with a non-token byte (RFC 9110 5.6.1 allows
// empty elements and OWS), and it takes the ',' after a proper prefix of an option it knows
// ("c,close") for part of that element.
bool ConnectionListMisread(absl::string_view value) {
  if (absl::StrContains(value, "\t")) return true;
  std::vector<absl::string_view> elements = absl::StrSplit(value, ',');
  for (size_t i = 0; i + 1 < elements.size(); ++i) {
    absl::string_view e = TrimWhite(elements[i]);
    if (e.empty() || !IsTchar(e[0])) return true;
    if (!IsWhite(elements[i].back())) {
      for (absl::string_view option : {"close", "keep-alive", "upgrade"}) {
        if (e.size() < option.size() && absl::StartsWithIgnoreCase(option, e)) return true;
      }
    }
  }
  return false;
}

bool HasField(const Fields& fields, absl::string_view name) {
  for (const auto& [n, v] : fields) {
    if (absl::EqualsIgnoreCase(n, name)) return true;
  }
  return false;
}

// List elements of all `name` fields, OWS trimmed, empty ones dropped (RFC 9110 5.6.1).
std::vector<std::string> ListElements(const RawHead& head, absl::string_view name) {
  std::vector<std::string> elements;
  for (absl::string_view v : RawValues(head, name)) {
    for (absl::string_view e : absl::StrSplit(v, ',')) {
      e = TrimWhite(e);
      if (!e.empty()) elements.push_back(Lower(e));
    }
  }
  return elements;
}

bool HasElement(const RawHead& head, absl::string_view name, absl::string_view element) {
  for (const std::string& e : ListElements(head, name)) {
    if (e == element) return true;
  }
  return false;
}

// The minor version a raw start line states, or -1 when it states none that is HTTP/1.x.
int RawMinor(const RawHead& head, Parser::Type type) {
  absl::string_view v = head.start_line;
  if (type == Parser::Type::kRequest) {
    if (v.size() < 8) return -1;
    v = v.substr(v.size() - 8);
  } else {
    v = v.substr(0, 8);
  }
  if (v == "HTTP/1.0") return 0;
  if (v == "HTTP/1.1") return 1;
  return -1;
}

bool HasBareCr(absl::string_view s) {
  for (size_t i = 0; i + 1 < s.size(); ++i) {
    if (s[i] == '\r' && s[i + 1] != '\n') return true;
  }
  return false;
}

bool HasBareLf(absl::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) return true;
  }
  return false;
}

// The line meshlet was parsing when it failed at `fail` (just after that line's LF), without its
// line end.
absl::string_view FailingLine(absl::string_view input, size_t fail) {
  if (fail == 0 || fail > input.size() || input[fail - 1] != '\n') return absl::string_view();
  size_t end = fail - 1;
  size_t start = end == 0 ? absl::string_view::npos : input.rfind('\n', end - 1);
  start = start == absl::string_view::npos ? 0 : start + 1;
  absl::string_view line = input.substr(start, end - start);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

size_t HexDigits(absl::string_view line) {
  size_t n = 0;
  while (n < line.size() && absl::ascii_isxdigit(static_cast<unsigned char>(line[n]))) ++n;
  return n;
}

// The chunk-size lines of a chunked body meshlet accepted, from `from` up to `to`.
std::vector<absl::string_view> ChunkSizeLines(absl::string_view input, size_t from, size_t to) {
  std::vector<absl::string_view> lines;
  size_t pos = from;
  while (pos < to) {
    absl::string_view line = LineAt(input, &pos);
    lines.push_back(line);
    size_t digits = HexDigits(line);
    uint64_t size = 0;
    for (size_t i = 0; i < digits && (size >> 60) == 0; ++i) {
      char c = absl::ascii_tolower(static_cast<unsigned char>(line[i]));
      size = size * 16 + static_cast<uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    if (size == 0 || size > to - pos) break;
    pos += size + 2;
  }
  return lines;
}

// ---------------------------------------------------------------------------------------------
// The comparison.

std::array<uint64_t, static_cast<size_t>(Category::kCount)> g_category_counts{};
uint64_t g_inputs = 0;
uint64_t g_messages_agreed = 0;
uint64_t g_both_refused = 0;

struct StatsPrinter {
  ~StatsPrinter() {
    if (std::getenv("MESHLET_DIFF_STATS") == nullptr || g_inputs == 0) return;
    std::fprintf(stderr,
                 "parser_differential_fuzz: %llu inputs, %llu messages agreed, %llu both "
                 "refused\n",
                 static_cast<unsigned long long>(g_inputs),
                 static_cast<unsigned long long>(g_messages_agreed),
                 static_cast<unsigned long long>(g_both_refused));
    for (size_t i = 0; i < g_category_counts.size(); ++i) {
      std::fprintf(stderr, "  %-36s %llu\n", kCategoryNames[i],
                   static_cast<unsigned long long>(g_category_counts[i]));
    }
  }
};
StatsPrinter g_stats_printer;

std::string Describe(const Run& run) {
  std::string out;
  for (const Message& m : run.messages) {
    absl::StrAppend(&out, "\n    [", m.begin, "..", m.end, " head_end=", m.head_end, "] ");
    if (!m.method.empty() || !m.target.empty()) {
      absl::StrAppend(&out, absl::CEscape(m.method), " ", absl::CEscape(m.target), " ");
    }
    absl::StrAppend(&out, m.major, ".", m.minor);
    if (m.status != 0) absl::StrAppend(&out, " ", m.status, " ", absl::CEscape(m.reason));
    for (const auto& [n, v] : m.headers) {
      absl::StrAppend(&out, " | ", absl::CEscape(n.substr(0, 100)), ": ",
                      absl::CEscape(v.substr(0, 100)));
    }
    absl::StrAppend(&out, m.head_done ? " || head" : " || (no head)");
    absl::StrAppend(&out, " ka=", m.keep_alive ? 1 : 0, " up=", m.upgrade ? 1 : 0, " body=\"",
                    absl::CEscape(m.body.substr(0, 200)), "\"");
    for (const auto& [n, v] : m.trailers) {
      absl::StrAppend(&out, " | t ", absl::CEscape(n), ": ", absl::CEscape(v));
    }
    absl::StrAppend(&out, m.complete ? " (complete)" : " (partial)");
  }
  switch (run.final) {
    case Run::Final::kOk:
      absl::StrAppend(&out, "\n    => ok");
      break;
    case Run::Final::kStopped:
      absl::StrAppend(&out, "\n    => stopped");
      break;
    case Run::Final::kError:
      absl::StrAppend(&out, "\n    => error ", run.error_name, " at ", run.error_pos);
      break;
  }
  return out;
}

class Comparison {
 public:
  Comparison(absl::string_view input, const Mode& mode, const Run& meshlet, const Run& oracle)
      : input_(input), mode_(mode), m_(meshlet), o_(oracle) {}

  void Check();

 private:
  enum Mismatch : unsigned {
    kContent = 1,  // start line, fields, trailers
    kFraming = 2,  // body bytes, end offset, or one finished the message and the other not
    kKeepAlive = 4,
    kUpgrade = 8,
  };

  [[noreturn]] void Die(absl::string_view what) const {
    Fatal(absl::StrCat(
        what, "\nmode: ", mode_.type == Parser::Type::kRequest ? "requests" : "responses to ",
        mode_.type == Parser::Type::kRequest ? "" : mode_.request_method,
        mode_.finish ? ", then close" : "",
        mode_.limits.max_header_count < 100 ? ", tight limits" : "", "\ninput (", input_.size(),
        " bytes): \"", absl::CEscape(input_.substr(0, 4000)), "\"\nmeshlet:", Describe(m_),
        "\nhttp_parser:", Describe(o_)));
  }

  void Explained(Category c) { ++g_category_counts[static_cast<size_t>(c)]; }

  unsigned Compare(const Message& a, const Message& b) const;
  void CheckAccepted(const Message& m) const;
  std::optional<Category> ExplainStricter(size_t n) const;
  std::optional<Category> ExplainUndecided(size_t n) const;
  std::optional<Category> ExplainOracleGap(size_t n) const;
  std::optional<Category> ExplainSemantic(const Message& m, const Message& o,
                                          unsigned mismatch) const;

  bool IsRequest() const { return mode_.type == Parser::Type::kRequest; }

  absl::string_view input_;
  const Mode& mode_;
  const Run& m_;
  const Run& o_;
};

bool SameFields(const Fields& a, const Fields& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!absl::EqualsIgnoreCase(a[i].first, b[i].first)) return false;
    // http_parser keeps trailing whitespace; meshlet removes OWS on both sides (RFC 9112 5).
    if (TrimWhite(a[i].second) != TrimWhite(b[i].second)) return false;
  }
  return true;
}

unsigned Comparison::Compare(const Message& a, const Message& b) const {
  unsigned mismatch = 0;
  if (a.major != b.major || a.minor != b.minor || !SameFields(a.headers, b.headers)) {
    mismatch |= kContent;
  }
  if (IsRequest() ? (a.method != b.method || a.target != b.target)
                  : (a.status != b.status || a.reason != b.reason)) {
    mismatch |= kContent;
  }
  if (a.complete && b.complete) {
    // Trailers belong to the body: with another framing they are not comparable.
    if (a.body != b.body || a.end != b.end) {
      mismatch |= kFraming;
    } else if (!SameFields(a.trailers, b.trailers)) {
      mismatch |= kContent;
    }
    if (a.keep_alive != b.keep_alive) mismatch |= kKeepAlive;
    if (a.upgrade != b.upgrade) mismatch |= kUpgrade;
  } else if (a.complete != b.complete) {
    mismatch |= kFraming;
  }
  return mismatch;
}

// What meshlet accepts must be inside the grammar it documents, whatever http_parser thinks.
void Comparison::CheckAccepted(const Message& m) const {
  if (!IsRequest() || !m.head_done) return;
  if (!TargetBytesValid(m.target) || !TargetFormValid(m.method, m.target)) {
    Die("meshlet accepted a request-target outside RFC 9112 3.2");
  }
  int hosts = 0;
  for (const auto& [n, v] : m.headers) {
    if (!absl::EqualsIgnoreCase(n, "host")) continue;
    ++hosts;
    if (!ReadAuthority(v).valid) Die("meshlet accepted an invalid Host");
  }
  if (hosts > 1 || (m.minor == 1 && hosts == 0)) Die("meshlet accepted a wrong number of Host");
}

// meshlet failed (or stopped short) in message n where http_parser got further.
std::optional<Category> Comparison::ExplainStricter(size_t n) const {
  const size_t begin = n < m_.messages.size() ? m_.messages[n].begin
                       : n == 0               ? 0
                                              : m_.messages[n - 1].end;
  const size_t fail = m_.error_pos;
  const absl::string_view region = input_.substr(begin, std::min(fail + 1, input_.size()) - begin);
  const absl::string_view line = FailingLine(input_, fail);
  const RawHead head = ReadRawHead(input_, begin);
  const ParserLimits& limits = mode_.limits;
  const size_t rest = input_.size() - begin;
  auto field_name = [&]() {
    size_t colon = line.find(':');
    return line.substr(0, colon);
  };
  switch (static_cast<ParserError>(m_.error)) {
    case ParserError::kInvalidContentLength:
    case ParserError::kConflictingContentLength:
    case ParserError::kContentLengthAndTransferEncoding:
    case ParserError::kInvalidTransferEncoding:
    case ParserError::kUnsupportedTransferEncoding:
    case ParserError::kInvalidHost:
    case ParserError::kDuplicateHost:
      // meshlet judged the field before the next line, which http_parser folds into the value.
      if (fail < input_.size() && IsWhite(input_[fail])) return Category::kObsFold;
      break;
    default:
      break;
  }
  switch (static_cast<ParserError>(m_.error)) {
    case ParserError::kBareCr:
    case ParserError::kBareLf:
    case ParserError::kIncompleteMessage:
      if (HasBareCr(region) || HasBareLf(region)) return Category::kLineEnds;
      // An LF meshlet stopped at, where a CR must be (after chunk data, whose last byte may be a
      // CR itself).
      if (fail < input_.size() && input_[fail] == '\n') return Category::kLineEnds;
      if (m_.error == static_cast<int>(ParserError::kIncompleteMessage)) return ExplainUndecided(n);
      return std::nullopt;
    case ParserError::kObsFold:
      if (!line.empty() && IsWhite(line[0])) return Category::kObsFold;
      return std::nullopt;
    case ParserError::kWhitespaceBeforeColon: {
      absl::string_view name = field_name();
      if (!name.empty() && !IsWhite(name[0]) &&
          name.find_first_of(" \t") != absl::string_view::npos) {
        return Category::kWhitespaceInFieldName;
      }
      return std::nullopt;
    }
    case ParserError::kInvalidHeaderValue: {
      size_t colon = line.find(':');
      if (colon == absl::string_view::npos) return std::nullopt;
      for (char c : line.substr(colon + 1)) {
        if (IsCtl(c)) return Category::kFieldValueBytes;
      }
      return std::nullopt;
    }
    case ParserError::kInvalidTarget:
    case ParserError::kInvalidVersion:
    case ParserError::kVersionNotSupported: {
      if (IsRequest() && absl::StrContains(head.start_line, "  ")) {
        return Category::kRequestLineWhitespace;
      }
      if (static_cast<ParserError>(m_.error) == ParserError::kInvalidTarget) {
        // The target as http_parser read it, the method as written.
        const Message* o = n < o_.messages.size() ? &o_.messages[n] : nullptr;
        if (o == nullptr || o->target.empty()) return std::nullopt;
        absl::string_view method = head.start_line.substr(0, head.start_line.find(' '));
        if (!TargetBytesValid(o->target)) return Category::kTargetBytes;
        if (!TargetFormValid(method, o->target)) return Category::kTargetForm;
        return std::nullopt;
      }
      if (RawMinor(head, mode_.type) < 0) return Category::kVersion;
      if (IsRequest() && std::count(head.start_line.begin(), head.start_line.end(), ' ') != 2) {
        return Category::kVersion;  // no version at all (HTTP/0.9 style)
      }
      return std::nullopt;
    }
    case ParserError::kInvalidStatus: {
      absl::string_view l = head.start_line;
      bool exact = l.size() >= 12 && RawMinor(head, mode_.type) >= 0 && l[8] == ' ' &&
                   l[9] >= '1' && l[9] <= '5' && absl::ascii_isdigit(l[10]) &&
                   absl::ascii_isdigit(l[11]) && (l.size() == 12 || l[12] == ' ');
      if (!exact) return Category::kStatusLine;
      return std::nullopt;
    }
    case ParserError::kInvalidReason:
      for (char c : head.start_line.substr(std::min<size_t>(13, head.start_line.size()))) {
        if (IsCtl(c)) return Category::kReasonBytes;
      }
      return std::nullopt;
    case ParserError::kInvalidTransferEncoding:
    case ParserError::kUnsupportedTransferEncoding: {
      std::vector<std::string> codings = ListElements(head, "transfer-encoding");
      if (codings.size() != 1 || codings[0] != "chunked" || RawMinor(head, mode_.type) == 0) {
        return Category::kTransferEncoding;
      }
      return std::nullopt;
    }
    case ParserError::kContentLengthAndTransferEncoding:
      if (!RawValues(head, "content-length").empty() &&
          !RawValues(head, "transfer-encoding").empty()) {
        return Category::kContentLengthAndTransferEncoding;
      }
      return std::nullopt;
    case ParserError::kMissingHost:
      if (RawValues(head, "host").empty() && RawMinor(head, mode_.type) == 1) {
        return Category::kHost;
      }
      return std::nullopt;
    case ParserError::kDuplicateHost:
      if (RawValues(head, "host").size() > 1) return Category::kHost;
      return std::nullopt;
    case ParserError::kInvalidHost:
      for (absl::string_view v : RawValues(head, "host")) {
        if (!ReadAuthority(TrimWhite(v)).valid) return Category::kHost;
      }
      return std::nullopt;
    case ParserError::kInvalidChunkSize: {
      // http_parser's hex table has no entries above 0x7F: it reads those bytes as the digit 0.
      size_t size_end = 0;
      bool high = false;
      for (; size_end < line.size(); ++size_end) {
        unsigned char u = static_cast<unsigned char>(line[size_end]);
        if (u >= 0x80) {
          high = true;
        } else if (!absl::ascii_isxdigit(u)) {
          break;
        }
      }
      if (high) return Category::kChunkSizeBytes;
      if (size_end > 0 && size_end < line.size()) return Category::kChunkExtension;
      return std::nullopt;
    }
    case ParserError::kInvalidChunkData:
      if (fail < input_.size() && input_[fail] != '\r') return Category::kChunkDataEnd;
      return std::nullopt;
    case ParserError::kStartLineTooLong:
      if (rest > limits.max_start_line_bytes) return Category::kLimits;
      return std::nullopt;
    case ParserError::kUriTooLong: {
      size_t sp = head.start_line.find(' ');
      size_t sp2 = head.start_line.find(' ', sp + 1);
      if (sp != absl::string_view::npos && sp2 != absl::string_view::npos &&
          sp2 - sp - 1 > limits.max_uri_bytes) {
        return Category::kLimits;
      }
      return std::nullopt;
    }
    case ParserError::kHeaderSectionTooLarge:
      if (rest > limits.max_header_bytes) return Category::kLimits;
      return std::nullopt;
    case ParserError::kTooManyHeaders:
      if (static_cast<size_t>(std::count(region.begin(), region.end(), '\n')) >
          limits.max_header_count) {
        return Category::kLimits;
      }
      return std::nullopt;
    case ParserError::kChunkExtensionTooLong:
      if (rest > limits.max_chunk_extension_bytes) return Category::kLimits;
      return std::nullopt;
    default:
      return std::nullopt;
  }
}

// meshlet has not finished message n (it waits for a line end) where http_parser already has:
// http_parser's non-strict build takes CR plus any byte as a line end.
std::optional<Category> Comparison::ExplainUndecided(size_t n) const {
  const size_t begin = n < m_.messages.size() ? m_.messages[n].begin
                       : n == 0               ? 0
                                              : m_.messages[n - 1].end;
  if (HasBareCr(input_.substr(begin))) return Category::kLineEnds;
  return std::nullopt;
}

// meshlet accepted (more of) message n, which http_parser refused. Each gap also needs the error
// http_parser gives for it.
std::optional<Category> Comparison::ExplainOracleGap(size_t n) const {
  const Message& m = m_.messages[n];
  const int err = o_.error;
  if (IsRequest() && !OracleKnowsMethod(m.method) && err == HPE_INVALID_METHOD) {
    return Category::kExtensionMethod;
  }
  const RawHead head = ReadRawHead(input_, m.begin);
  const bool length_error =
      err == HPE_INVALID_CONTENT_LENGTH || err == HPE_UNEXPECTED_CONTENT_LENGTH;
  // http_parser reads a Transfer-Encoding of exactly "chunked" (SP after it allowed) and a
  // Content-Length of digits and SP; meshlet reads both as lists with OWS (RFC 9110 5.6.1).
  // The lookalike counts as Transfer-Encoding: not chunked, or beside Content-Length.
  if ((err == HPE_INVALID_TRANSFER_ENCODING || err == HPE_UNEXPECTED_CONTENT_LENGTH) &&
      HasTransferEncodingLookalike(head)) {
    return Category::kTransferEncodingLookalike;
  }
  if (err == HPE_INVALID_TRANSFER_ENCODING && TransferEncodingListSyntax(head)) {
    return Category::kFramingListSyntax;
  }
  std::vector<absl::string_view> lengths = RawValues(head, "content-length");
  if (length_error) {
    for (absl::string_view v : lengths) {
      if (v.find_first_of("\t,") != absl::string_view::npos) return Category::kFramingListSyntax;
    }
    if (lengths.size() > 1) return Category::kRepeatedContentLength;
    if (HasHugeContentLength(head)) return Category::kHugeLength;
    for (uint64_t size : m.chunk_sizes) {
      if (size >= 0xfffffffffffffff0u) return Category::kHugeLength;
    }
    if (HasField(m.trailers, "content-length")) return Category::kTrailerFields;
  }
  if (err == HPE_INVALID_CHUNK_SIZE && m.head_done) {
    size_t to = m.complete ? m.end : input_.size();
    for (absl::string_view l : ChunkSizeLines(input_, m.head_end, to)) {
      size_t digits = HexDigits(l);
      if (digits < l.size() && l[digits] == '\t') return Category::kChunkExtensionWhitespace;
    }
  }
  return std::nullopt;
}

// Both parsed the same header section of a message and then framed the message or the connection
// differently (`mismatch`).
std::optional<Category> Comparison::ExplainSemantic(const Message& m, const Message& o,
                                                    unsigned mismatch) const {
  if (mismatch & kContent) return std::nullopt;
  const RawHead head = ReadRawHead(input_, m.begin);
  const bool framing_fields =
      !RawValues(head, "content-length").empty() || !RawValues(head, "transfer-encoding").empty();
  if (!IsRequest()) {
    if (m.status == 101 && m.upgrade && !o.upgrade) return Category::kSwitchingProtocols;
    bool no_content = m.status < 200 || m.status == 204 || m.status == 304;
    if (no_content && framing_fields && (mismatch & kFraming)) return Category::kNoContentStatus;
    if (m.status < 200 && mismatch == kKeepAlive) return Category::kInterimPersistence;
  }
  if ((mismatch & kFraming) && HasHugeContentLength(head)) {
    return Category::kHugeLength;
  }
  if ((mismatch & kFraming) && HasTransferEncodingLookalike(head)) {
    return Category::kTransferEncodingLookalike;
  }
  // A response http_parser then reads until the close; a request with Connection: upgrade it
  // takes as an upgrade without a body (it checks Transfer-Encoding after the upgrade's exit).
  if ((mismatch & kFraming) && (!IsRequest() || o.upgrade) && TransferEncodingListSyntax(head)) {
    return Category::kFramingListSyntax;
  }
  if (mismatch & kFraming) return std::nullopt;
  // Only persistence or upgrade differ from here on.
  if (!RawValues(head, "proxy-connection").empty()) return Category::kProxyConnection;
  for (absl::string_view v : RawValues(head, "connection")) {
    if (ConnectionListMisread(v)) return Category::kConnectionListSyntax;
  }
  // Persistence and upgrade each need their own explanation (both may differ at once: an
  // HTTP/1.0 upgrade that also says both close and keep-alive).
  std::optional<Category> keep_alive;
  if (mismatch & kKeepAlive) {
    if (m.minor == 0 && HasElement(head, "connection", "close") &&
        HasElement(head, "connection", "keep-alive")) {
      keep_alive = Category::kCloseWithKeepAlive;
    }
    // (A name that only starts with Transfer-Encoding is one to http_parser.)
    for (const auto& [name, value] : m.trailers) {
      if (absl::EqualsIgnoreCase(name, "connection") ||
          absl::EqualsIgnoreCase(name, "proxy-connection") ||
          absl::StartsWithIgnoreCase(name, "transfer-encoding")) {
        if (!keep_alive) keep_alive = Category::kTrailerFields;
      }
    }
    if (!keep_alive) return std::nullopt;
  }
  std::optional<Category> upgrade;
  if ((mismatch & kUpgrade) && IsRequest()) {
    if (m.minor == 0 && !m.upgrade && o.upgrade) upgrade = Category::kUpgradeInHttp10;
    bool all_empty = true;
    for (absl::string_view v : RawValues(head, "upgrade")) {
      if (!TrimWhite(v).empty()) all_empty = false;
    }
    if (!upgrade && m.upgrade && !o.upgrade && all_empty) upgrade = Category::kEmptyUpgrade;
  }
  if ((mismatch & kUpgrade) && !upgrade) return std::nullopt;
  return keep_alive ? keep_alive : upgrade;
}

void Comparison::Check() {
  const size_t m_done = m_.Completed();
  const size_t o_done = o_.Completed();
  const size_t n = std::min(m_done, o_done);
  for (size_t i = 0; i < m_.messages.size(); ++i) CheckAccepted(m_.messages[i]);
  for (size_t i = 0; i < n; ++i) {
    const Message& m = m_.messages[i];
    const Message& o = o_.messages[i];
    if (unsigned mismatch = Compare(m, o); mismatch != 0) {
      if (std::optional<Category> c = ExplainSemantic(m, o, mismatch)) return Explained(*c);
      Die(absl::StrCat("message ", i, " differs (mismatch ", mismatch, ")"));
    }
    ++g_messages_agreed;
    if (!m.keep_alive || m.upgrade) return;  // both stop reading HTTP/1 here
  }

  // Message n: at most one of them completed it.
  const Message* m = n < m_.messages.size() ? &m_.messages[n] : nullptr;
  const Message* o = n < o_.messages.size() ? &o_.messages[n] : nullptr;
  auto level = [](const Message* x) { return x == nullptr ? 0 : x->complete ? 2 : x->head_done; };
  const int m_level = level(m);
  const int o_level = level(o);
  const bool m_refused = m_done == n && m_.final == Run::Final::kError;
  const bool o_refused = o_done == n && o_.final == Run::Final::kError;

  if (m_level > o_level) {
    // meshlet accepted more of message n: where both read the header section, a different end
    // of the message may be a semantic difference (http_parser then waits or fails at the close).
    if (o_level == 1) {
      unsigned mismatch = Compare(*m, *o) | kFraming;
      if (std::optional<Category> c = ExplainSemantic(*m, *o, mismatch)) return Explained(*c);
    }
    if (o_refused) {
      if (std::optional<Category> c = ExplainOracleGap(n)) return Explained(*c);
      Die(absl::StrCat("meshlet accepts message ", n, " where http_parser fails with ",
                       o_.error_name));
    }
    Die(absl::StrCat("meshlet finished message ", n, " (level ", m_level,
                     ") where http_parser has not"));
  }
  if (o_level > m_level) {
    // http_parser accepted more of message n.
    if (m_level == 1 && o_level == 2) {
      unsigned mismatch = Compare(*m, *o) | kFraming;
      if (mismatch & kContent) Die(absl::StrCat("message ", n, " has different heads"));
      if (std::optional<Category> c = ExplainSemantic(*m, *o, mismatch)) return Explained(*c);
    }
    std::optional<Category> c = m_refused ? ExplainStricter(n) : ExplainUndecided(n);
    if (c.has_value()) return Explained(*c);
    Die(absl::StrCat("http_parser accepts message ", n, " where meshlet ",
                     m_refused ? absl::StrCat("fails with ", m_.error_name) : "is not done"));
  }
  // The same level.
  if (m_level >= 1 && (Compare(*m, *o) & kContent)) {
    Die(absl::StrCat("message ", n, " has different heads"));
  }
  if (m_level == 1 && m_.final == Run::Final::kOk && o_.final == Run::Final::kOk &&
      m->body != o->body) {
    // meshlet may still wait for the LF of a line http_parser ended at CR plus any byte, or
    // the header sections framed the body differently.
    if (absl::StartsWith(o->body, m->body)) {
      if (std::optional<Category> c = ExplainUndecided(n)) return Explained(*c);
    }
    if (std::optional<Category> c = ExplainSemantic(*m, *o, kFraming)) return Explained(*c);
    Die(absl::StrCat("message ", n, " has different partial bodies"));
  }
  if (m_refused && !o_refused) {
    if (std::optional<Category> c = ExplainStricter(n)) return Explained(*c);
    // Or the header sections framed the body differently, and meshlet refused what http_parser
    // takes for body bytes.
    if (m_level == 1) {
      if (std::optional<Category> c = ExplainSemantic(*m, *o, kFraming)) return Explained(*c);
    }
    // The input ends where meshlet failed: http_parser, which judges some fields only at the
    // next line (obs-fold) or at the end of the header section, has not decided yet.
    if (m_.error_pos == input_.size() && o_.final == Run::Final::kOk && !mode_.finish) return;
    Die(absl::StrCat("meshlet fails with ", m_.error_name, " in message ", n,
                     " which http_parser accepts so far"));
  }
  if (m_refused && o_refused) ++g_both_refused;
}

void FuzzOne(const uint8_t* data, size_t size) {
  if (size < 1) return;
  const uint8_t bits = data[0];
  absl::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  Mode mode;
  mode.type = (bits & 1) ? Parser::Type::kResponse : Parser::Type::kRequest;
  static const char* const kMethods[] = {"GET", "HEAD", "CONNECT", "POST"};
  mode.request_method = kMethods[(bits >> 1) & 3];
  mode.finish = (bits & 8) != 0;
  if ((bits & 0x30) == 0x30) {
    mode.limits.max_start_line_bytes = 64;
    mode.limits.max_uri_bytes = 32;
    mode.limits.max_header_bytes = 128;
    mode.limits.max_header_count = 4;
    mode.limits.max_chunk_extension_bytes = 8;
  }
  ++g_inputs;
  Run meshlet = RunMeshlet(input, mode);
  Run oracle = RunOracle(input, mode);
  Comparison(input, mode, meshlet, oracle).Check();
}

}  // namespace
}  // namespace meshlet::http::h1

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  meshlet::http::h1::FuzzOne(data, size);
  return 0;
}

namespace meshlet::fuzz {

// Seeds: mode byte, then a connection's bytes. The parser tests' valid messages of every
// framing, plus one input for each category above.
std::vector<std::string> SeedCorpus() {
  std::vector<std::string> seeds;
  auto add = [&](uint8_t mode, absl::string_view bytes) {
    seeds.push_back(absl::StrCat(std::string(1, static_cast<char>(mode)), bytes));
  };
  for (const std::string& r : meshlet::http::h1::testing::SampleRequests()) {
    add(0, r);
    add(8, r);
  }
  for (const std::string& r : meshlet::http::h1::testing::SampleResponses()) {
    for (uint8_t mode : {1, 3, 5, 9}) add(mode, r);
  }
  constexpr absl::string_view kPost =
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n";
  for (absl::string_view r : {
           "GET / HTTP/1.1\nHost: a\n\n",
           "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
           "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n",
           "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
           "GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
           "GET / HTTP/1.2\r\nHost: a\r\n\r\n",
           "GET / HTTP/1.1\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
           "GET / HTTP/1.1\r\nHost: a\r\nProxy-Connection: close\r\n\r\n",
           "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\nUpgrade:\r\nConnection: upgrade\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: w\r\nConnection: upgrade\r\n"
           "Transfer-Encoding: , chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
           "PURGE / HTTP/1.1\r\nHost: a\r\n\r\nQUERY / HTTP/1.1\r\nHost: a\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\nConnection: ,close\r\n\r\nGET / HTTP/1.1\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encodings: x\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n",
       }) {
    add(0, r);
  }
  add(0, absl::StrCat(kPost, "\r\n1 ;a\r\nx\r\n0\r\n\r\n"));
  add(0, absl::StrCat(kPost, "\r\n1\r\nxy\r\n0\r\n\r\n"));
  add(0, absl::StrCat(kPost, "\r\n1\t;a\r\nx\r\n0\r\nContent-Length: 1\r\n\r\n"));
  add(0, absl::StrCat(kPost,
                      "\r\n\xff"
                      "1\r\nx\r\n0\r\nConnection: close\r\n\r\n"));
  add(8, absl::StrCat(kPost, "Content-Length: 1\r\n\r\n1\r\nx\r\n0\r\n\r\n"));
  add(0x30, "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n");
  for (absl::string_view r : {
           "HTTP/1.1 204 No Content\r\nContent-Length: 2\r\n\r\nhi",
           "HTTP/1.1 101 Switching\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
           "HTTP/1.0 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
           "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc",
           "HTTP/1.1 099 OK\r\n\r\n",
           "HTTP/1.1 200 O\x01K\r\n\r\n",
       }) {
    add(9, r);
  }
  add(5, "HTTP/1.1 204 No Content\r\n\r\ntunnel");
  return seeds;
}

std::vector<std::string> Dictionary() {
  return {
      "\r",
      "\n",
      "\r\n",
      " ",
      "\t",
      ":",
      ",",
      ";",
      "=",
      "\"",
      "#",
      "@",
      "*",
      std::string(1, '\0'),
      "\x01",
      "\x7f",
      "\xff",
      "0",
      "f",
      "chunked",
      "keep-alive",
      "close",
      "upgrade",
      "Content-Length: ",
      "Transfer-Encoding: ",
      "Connection: ",
      "Proxy-Connection: ",
      "Upgrade: ",
      "Host: ",
      "Host: a\r\n",
      "0\r\n\r\n",
      "\r\n\r\n",
      "HTTP/1.1",
      "HTTP/1.0",
      "HTTP/1.1 ",
      "GET ",
      "HEAD ",
      "CONNECT ",
      "OPTIONS ",
      "http://",
      "https://",
      "[::1]",
      "a:80",
      "100",
      "101",
      "204",
      "304",
      "18446744073709551615",
      "ffffffffffffffff",
  };
}

}  // namespace meshlet::fuzz

#include "common/http/h1/parser_test_util.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace meshlet::http::h1::testing {
namespace {

absl::string_view FramingName(BodyFraming framing) {
  switch (framing) {
    case BodyFraming::kNone:
      return "none";
    case BodyFraming::kContentLength:
      return "cl";
    case BodyFraming::kChunked:
      return "chunked";
    case BodyFraming::kUntilClose:
      return "close";
  }
  return "?";
}

}  // namespace

absl::string_view StatusName(Parser::Status status) {
  switch (status) {
    case Parser::Status::kOk:
      return "ok";
    case Parser::Status::kPaused:
      return "paused";
    case Parser::Status::kUpgraded:
      return "upgraded";
    case Parser::Status::kClosed:
      return "closed";
    case Parser::Status::kError:
      return "error";
  }
  return "?";
}

using Action = ParserVisitor::Action;

void RecordingVisitor::Expect(bool ok, absl::string_view what) {
  if (!ok) absl::StrAppend(&violations_, what, "; ");
}

void RecordingVisitor::CheckField(absl::string_view name, absl::string_view value) {
  static constexpr absl::string_view kTokenSpecials = "!#$%&'*+-.^_`|~";
  Expect(!name.empty(), "empty field name");
  for (char c : name) {
    Expect(absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
               kTokenSpecials.find(c) != absl::string_view::npos,
           "non-token byte in field name");
  }
  if (!value.empty()) {
    Expect(value.front() != ' ' && value.front() != '\t' && value.back() != ' ' &&
               value.back() != '\t',
           "untrimmed field value");
  }
  for (char c : value) {
    unsigned char u = static_cast<unsigned char>(c);
    Expect((u >= 0x20 && u != 0x7f) || u == '\t', "control byte in field value");
  }
}

Action RecordingVisitor::OnMessageBegin() {
  if (parser != nullptr && request_method != nullptr) parser->SetRequestMethod(request_method);
  Expect(phase_ == Phase::kIdle, "begin inside a message");
  phase_ = Phase::kBegun;
  events_.push_back("begin");
  last_was_body_ = false;
  return Action::kContinue;
}

Action RecordingVisitor::OnRequestLine(absl::string_view method, absl::string_view target,
                                       int major, int minor) {
  Expect(phase_ == Phase::kBegun, "request line out of order");
  Expect(!method.empty() && !target.empty(), "empty method or target");
  phase_ = Phase::kHeaders;
  events_.push_back(absl::StrCat("req ", absl::CEscape(method), " ", absl::CEscape(target), " ",
                                 major, ".", minor));
  last_was_body_ = false;
  return Action::kContinue;
}

Action RecordingVisitor::OnStatusLine(int major, int minor, int code, absl::string_view reason) {
  Expect(phase_ == Phase::kBegun, "status line out of order");
  Expect(code >= 100 && code <= 599, "status code out of range");
  phase_ = Phase::kHeaders;
  events_.push_back(
      absl::StrCat("status ", major, ".", minor, " ", code, " ", absl::CEscape(reason)));
  last_was_body_ = false;
  return Action::kContinue;
}

Action RecordingVisitor::OnHeader(absl::string_view name, absl::string_view value) {
  Expect(phase_ == Phase::kHeaders, "header out of order");
  CheckField(name, value);
  events_.push_back(absl::StrCat("h ", absl::CEscape(name), ": ", absl::CEscape(value)));
  last_was_body_ = false;
  return Action::kContinue;
}

Action RecordingVisitor::OnHeadersComplete(const MessageInfo& info) {
  Expect(phase_ == Phase::kHeaders, "headers complete out of order");
  Expect(info.version_major == 1 && info.version_minor <= 1, "unsupported version accepted");
  phase_ = Phase::kBody;
  std::string e = absl::StrCat("hc ", FramingName(info.framing));
  if (info.framing == BodyFraming::kContentLength) absl::StrAppend(&e, "=", info.content_length);
  absl::StrAppend(&e, " ka=", info.keep_alive ? 1 : 0);
  if (info.upgrade) absl::StrAppend(&e, " upgrade");
  if (info.expect_continue) absl::StrAppend(&e, " 100c");
  events_.push_back(std::move(e));
  last_was_body_ = false;
  return Action::kContinue;
}

Action RecordingVisitor::OnChunkHeader(uint64_t size) {
  Expect(phase_ == Phase::kBody && size > 0, "chunk header out of order");
  events_.push_back(absl::StrCat("chunk ", size));
  last_was_body_ = false;
  return Action::kContinue;
}

Action RecordingVisitor::OnBody(absl::string_view data) {
  body_bytes_ += data.size();
  Expect(phase_ == Phase::kBody, "body out of order");
  if (data.empty()) {
    Expect(false, "empty body piece");
  } else if (last_was_body_) {
    absl::StrAppend(&events_.back(), absl::CEscape(data));
  } else {
    events_.push_back(absl::StrCat("body ", absl::CEscape(data)));
  }
  last_was_body_ = true;
  return Action::kContinue;
}

Action RecordingVisitor::OnTrailer(absl::string_view name, absl::string_view value) {
  Expect(phase_ == Phase::kBody || phase_ == Phase::kTrailers, "trailer out of order");
  CheckField(name, value);
  phase_ = Phase::kTrailers;
  events_.push_back(absl::StrCat("t ", absl::CEscape(name), ": ", absl::CEscape(value)));
  last_was_body_ = false;
  return Action::kContinue;
}

Action RecordingVisitor::OnMessageComplete() {
  Expect(phase_ == Phase::kBody || phase_ == Phase::kTrailers, "complete out of order");
  phase_ = Phase::kIdle;
  events_.push_back("done");
  ++messages_completed_;
  last_was_body_ = false;
  return Action::kContinue;
}

std::string RecordingVisitor::Log() const { return absl::StrJoin(events_, "|"); }

ParseOutcome ParsePieces(const std::vector<absl::string_view>& pieces,
                         const ParseOptions& options) {
  RecordingVisitor visitor;
  Parser parser(options.type, &visitor, options.limits);
  visitor.parser = &parser;
  visitor.request_method = options.request_method;
  ParseOutcome out;
  for (absl::string_view piece : pieces) {
    size_t n = parser.Execute(piece);
    out.consumed += n;
    if (n > piece.size()) visitor.Violation("consumed more than given");
    if (parser.status() != Parser::Status::kOk) break;
    if (n != piece.size()) visitor.Violation("stopped early while ok");
  }
  if (parser.status() != Parser::Status::kOk && parser.Execute("GET") != 0) {
    visitor.Violation("executed while stopped");
  }
  if (options.finish) parser.Finish();
  out.log = absl::StrCat(visitor.Log(), " => ", StatusName(parser.status()));
  if (parser.status() == Parser::Status::kError) {
    absl::StrAppend(&out.log, " ", ParserErrorName(parser.error()));
  }
  out.body_bytes = visitor.body_bytes();
  out.violations = visitor.violations();
  out.status = parser.status();
  out.error = parser.error();
  return out;
}

ParseOutcome ParseWhole(absl::string_view input, const ParseOptions& options) {
  return ParsePieces({input}, options);
}

ParseOutcome ParseSplit(absl::string_view input, const std::vector<size_t>& cuts,
                        const ParseOptions& options) {
  std::vector<absl::string_view> pieces;
  size_t start = 0;
  for (size_t cut : cuts) {
    if (cut < start || cut > input.size()) continue;
    pieces.push_back(input.substr(start, cut - start));
    start = cut;
  }
  pieces.push_back(input.substr(start));
  return ParsePieces(pieces, options);
}

std::vector<std::string> SampleRequests() {
  return {
      "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
      "POST /p?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n"
      "0\r\nX-T: 1\r\n\r\n",
      "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.1\r\nHost: b\r\n\r\n",
      "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
      "POST /3 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
      "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nraw",
      "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\ntunnel bytes",
      "PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2, 2\r\n\r\nok",
      "OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
      "GET http://b.test/abs?q HTTP/1.1\r\nHost: b.test\r\n\r\n",
      "HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx",
  };
}

std::vector<std::string> SampleResponses() {
  return {
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n"
      "grpc-status: 0\r\n\r\n",
      "HTTP/1.0 200 OK\r\n\r\nuntil close",
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nws",
      "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
      "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
      "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
  };
}

std::vector<std::string> SampleSeeds(const std::vector<uint8_t>& request_modes,
                                     const std::vector<uint8_t>& response_modes) {
  std::vector<std::string> seeds;
  uint8_t counter = 0;
  auto add = [&](const std::vector<std::string>& messages, const std::vector<uint8_t>& modes) {
    for (const std::string& m : messages) {
      for (uint8_t mode : modes) {
        seeds.push_back(std::string{static_cast<char>(mode), static_cast<char>(counter++)} + m);
      }
    }
  };
  add(SampleRequests(), request_modes);
  add(SampleResponses(), response_modes);
  return seeds;
}

}  // namespace meshlet::http::h1::testing

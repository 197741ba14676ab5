// Fuzz target for the HTTP/1 Host reader (http1_host.h) on a connection's first bytes.
//
// Invariants: an answer once decided is the answer for every longer input; max_bytes bytes always
// decide; the reader fed in pieces agrees with ParseHttp1Host; a host is non-empty, lower-case and
// portless. And against the HTTP/1 codec's own parser (common/http/h1/parser.h), whose request the
// route table sees: a host is read only from a head the parser accepts, and it is the host of the
// :authority the codec gives that request (the absolute-form target's authority, else Host); a
// head the parser accepts is never "not HTTP/1"; "no host" and "ambiguous" only where the codec's
// :authority names no host or a Host naming another host was replaced.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "common/fuzz/fuzz_target.h"
#include "common/http/authority.h"
#include "common/http/h1/parser.h"
#include "sidecar/listener/http1_host.h"

namespace meshlet::sidecar::listener {
namespace {

using Status = Http1Host::Status;

[[noreturn]] void Die(const char* what, absl::string_view input) {
  std::fprintf(stderr, "http1_host_fuzz invariant broken: %s (%zu bytes)\n", what, input.size());
  std::abort();
}

// What the codec's parser makes of the first request's head.
class HeadVisitor : public http::h1::ParserVisitor {
 public:
  Action OnRequestLine(absl::string_view method, absl::string_view target, int,
                       int minor) override {
    method_ = std::string(method);
    target_ = std::string(target);
    http10_ = minor == 0;
    return Action::kContinue;
  }
  Action OnHeader(absl::string_view name, absl::string_view value) override {
    if (absl::EqualsIgnoreCase(name, "host")) host_ = std::string(value);
    return Action::kContinue;
  }
  Action OnHeadersComplete(const http::h1::MessageInfo&) override {
    complete_ = true;
    return Action::kPause;
  }
  Action OnBody(absl::string_view) override { return Action::kContinue; }
  Action OnMessageComplete() override { return Action::kContinue; }

  bool complete_ = false;
  bool http10_ = false;
  std::string method_;
  std::string target_;
  std::optional<std::string> host_;
};

// Parser errors about framing and limits, which the Host reader does not check: a head that
// fails only so may still have a host.
bool UncheckedError(http::h1::ParserError error) {
  using http::h1::ParserError;
  switch (error) {
    case ParserError::kInvalidContentLength:
    case ParserError::kConflictingContentLength:
    case ParserError::kContentLengthAndTransferEncoding:
    case ParserError::kInvalidTransferEncoding:
    case ParserError::kUnsupportedTransferEncoding:
    case ParserError::kStartLineTooLong:
    case ParserError::kUriTooLong:
    case ParserError::kHeaderSectionTooLarge:
    case ParserError::kTooManyHeaders:
      return true;
    default:
      return false;
  }
}

// The host part of a valid authority, lower-cased.
std::string HostPart(absl::string_view authority, absl::string_view input) {
  std::optional<http::HostPort> parsed = http::ParseHostPort(authority);
  if (!parsed.has_value()) Die("the parser accepted an invalid authority", input);
  return absl::AsciiStrToLower(parsed->host);
}

void CheckAgainstParser(absl::string_view input, const Http1Host& ours) {
  HeadVisitor visitor;
  http::h1::ParserLimits limits;
  limits.max_start_line_bytes = 1 << 20;
  limits.max_uri_bytes = 1 << 20;
  limits.max_header_bytes = 1 << 20;
  limits.max_header_count = 1 << 20;
  http::h1::Parser parser(http::h1::Parser::Type::kRequest, &visitor, limits);
  parser.Execute(input);
  if (!visitor.complete_) {
    if (ours.status == Status::kOk &&
        (parser.status() != http::h1::Parser::Status::kError || !UncheckedError(parser.error()))) {
      Die("a host read from a head the parser does not accept", input);
    }
    return;
  }
  if (visitor.method_ == "CONNECT") {
    if (ours.status != Status::kNoHost) Die("CONNECT not read as no_host", input);
    return;
  }
  // The codec's :authority: an absolute-form target's authority, else Host.
  const absl::string_view target = visitor.target_;
  std::optional<std::string> authority_host;
  bool replaced_other_host = false;
  if (target[0] != '/' && target != "*") {
    absl::string_view rest = target.substr(target[4] == ':' ? 7 : 8);
    authority_host = HostPart(rest.substr(0, rest.find_first_of("/?")), input);
    replaced_other_host =
        visitor.host_.has_value() && HostPart(*visitor.host_, input) != *authority_host;
  } else if (visitor.host_.has_value()) {
    authority_host = HostPart(*visitor.host_, input);
  }
  switch (ours.status) {
    case Status::kOk:
      if (replaced_other_host || !authority_host.has_value() || *authority_host != ours.host) {
        Die("a host other than the codec's :authority", input);
      }
      return;
    case Status::kNoHost:
      if (authority_host.has_value() && !authority_host->empty() && !replaced_other_host) {
        Die("no_host for a request whose :authority names a host", input);
      }
      return;
    case Status::kAmbiguous:
      if (!replaced_other_host) Die("ambiguous without a Host naming another host", input);
      return;
    case Status::kNotHttp1:
    case Status::kNeedMoreBytes:
    case Status::kTooLarge:
      Die("a head the parser accepts not read as one", input);
  }
}

void FuzzOne(absl::string_view input) {
  // A limit past the input: every answer is the one for the bytes themselves.
  const size_t max_bytes = input.size() + 1;
  const Http1Host full = ParseHttp1Host(input, max_bytes);
  if (full.status == Status::kOk) {
    if (full.host.empty()) Die("an empty host", input);
    if (full.host != absl::AsciiStrToLower(full.host)) Die("a host not lower-cased", input);
    std::optional<http::HostPort> parsed = http::ParseHostPort(full.host);
    if (!parsed.has_value() || parsed->has_port) Die("a host with a port, or invalid", input);
  }
  for (size_t n = 0; n < input.size(); ++n) {
    const Http1Host partial = ParseHttp1Host(input.substr(0, n), max_bytes);
    if (partial.status != Status::kNeedMoreBytes &&
        (partial.status != full.status || partial.host != full.host)) {
      Die("a decision changed with more bytes", input);
    }
  }
  // The reader in pieces of 1 to 7 bytes, the piece sizes taken from the input itself.
  Http1HostReader reader(max_bytes);
  for (size_t at = 0; at < input.size();) {
    const size_t piece = 1 + static_cast<unsigned char>(input[at]) % 7;
    reader.Feed(input.substr(at, piece));
    at += piece;
  }
  if (reader.bytes_read() > input.size()) Die("read past the bytes fed", input);
  const Http1Host fed = reader.Result(input);
  if (fed.status != full.status || fed.host != full.host) Die("pieces and bytes disagree", input);
  // A small limit: decided once reached, and a decision within it stands.
  constexpr size_t kSmall = 24;
  const Http1Host small = ParseHttp1Host(input, kSmall);
  if (input.size() >= kSmall && small.status == Status::kNeedMoreBytes) {
    Die("undecided past max_bytes", input);
  }
  if (small.status != Status::kTooLarge && small.status != Status::kNeedMoreBytes &&
      (small.status != full.status || small.host != full.host)) {
    Die("a decision within the limit changed with the limit", input);
  }
  CheckAgainstParser(input, full);
}

}  // namespace
}  // namespace meshlet::sidecar::listener

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  meshlet::sidecar::listener::FuzzOne(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}

namespace meshlet::fuzz {

std::vector<std::string> SeedCorpus() {
  return {"GET / HTTP/1.1\r\nHost: api.partner.example\r\n\r\n",
          "GET / HTTP/1.1\r\nHOST:  A.Example:8080 \r\nx: y\r\n\r\n",
          "GET http://a.example/x HTTP/1.1\r\nHost: a.example:80\r\n\r\n",
          "GET http://a.example/x HTTP/1.1\r\nHost: b.example\r\n\r\n",
          "GET http://a.example/x HTTP/1.0\r\n\r\n",
          "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
          "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
          "OPTIONS * HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
          "\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx",
          "GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n",
          "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
          std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11),
          "GET / HTTP/1.1\r\nHost:\r\n\r\n"};
}

std::vector<std::string> Dictionary() {
  return {"GET ",    "CONNECT ", "OPTIONS ", "HTTP/1.1\r\n", "HTTP/1.0\r\n", "Host: ", "host:",
          "http://", "https://", "\r\n",     ":80",          "[::1]",        " ",      "\t"};
}

}  // namespace meshlet::fuzz

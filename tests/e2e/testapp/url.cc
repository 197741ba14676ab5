#include "tests/e2e/testapp/url.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace meshlet::testapp {

std::string HttpUrl::ToString() const { return absl::StrCat("http://", authority, target); }

absl::StatusOr<HttpUrl> ParseHttpUrl(absl::string_view url) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("URL \"", url, "\": ", why));
  };
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "http://")) return bad("must start with http://");
  size_t end = rest.find_first_of("/?");
  absl::string_view authority = rest.substr(0, end);
  HttpUrl out;
  if (end != absl::string_view::npos) {
    // "http://a?q" asks for "/?q".
    out.target = absl::StrCat(rest[end] == '?' ? "/" : "", rest.substr(end));
  }
  if (authority.empty()) return bad("no host");
  if (authority.find('@') != absl::string_view::npos) return bad("user information is not allowed");
  absl::string_view port_text;
  bool has_port = false;
  bool bracketed = false;
  if (authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == absl::string_view::npos) return bad("unclosed [");
    out.host = std::string(authority.substr(1, close - 1));
    absl::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad("expected :port after ]");
      port_text = after.substr(1);
      has_port = true;
    }
    bracketed = true;
  } else {
    size_t colon = authority.rfind(':');
    if (colon != absl::string_view::npos) {
      port_text = authority.substr(colon + 1);
      authority = authority.substr(0, colon);
      has_port = true;
    }
    if (authority.find(':') != absl::string_view::npos) {
      return bad("an IPv6 address must be in brackets");
    }
    out.host = std::string(authority);
  }
  if (out.host.empty()) return bad("no host");
  if (has_port) {
    uint32_t port = 0;
    if (!absl::SimpleAtoi(port_text, &port) || port == 0 || port > 65535) {
      return bad("port must be 1-65535");
    }
    out.port = static_cast<uint16_t>(port);
  }
  out.authority = bracketed ? absl::StrCat("[", out.host, "]:", out.port)
                            : absl::StrCat(out.host, ":", out.port);
  for (char c : out.target) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f || c == '#') {
      return bad("the path has a space, a control character or a fragment");
    }
  }
  return out;
}

}  // namespace meshlet::testapp

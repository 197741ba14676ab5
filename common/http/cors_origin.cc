#include "common/http/cors_origin.h"

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/http/authority.h"

namespace meshlet::http {
namespace {

// "http://" or "https://" (any case) at the start of `text`: removed, and whether it was https.
std::optional<bool> ConsumeScheme(absl::string_view& text) {
  if (absl::StartsWithIgnoreCase(text, "https://")) {
    text.remove_prefix(8);
    return true;
  }
  if (absl::StartsWithIgnoreCase(text, "http://")) {
    text.remove_prefix(7);
    return false;
  }
  return std::nullopt;
}

// 1..65535, digits only; 0 when not.
uint16_t ParsePort(absl::string_view digits) {
  if (digits.empty() || digits.size() > 5) return 0;
  for (char c : digits) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return 0;
  }
  uint32_t port = 0;
  if (!absl::SimpleAtoi(digits, &port) || port == 0 || port > 65535) return 0;
  return static_cast<uint16_t>(port);
}

uint16_t DefaultPort(bool https) { return https ? 443 : 80; }

// DNS labels of letters, digits and '-' joined by single dots.
bool ValidLabels(absl::string_view host) {
  if (host.empty() || host.front() == '.' || host.back() == '.') return false;
  char previous = '.';
  for (char c : host) {
    if (c == '.') {
      if (previous == '.') return false;
    } else if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-') {
      return false;
    }
    previous = c;
  }
  return true;
}

}  // namespace

absl::StatusOr<OriginPattern> ParseOriginPattern(absl::string_view text) {
  OriginPattern out;
  if (text == "*") return out;
  if (text.empty()) return absl::InvalidArgumentError("must not be empty");
  if (text.size() > kMaxOriginPatternLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("longer than ", kMaxOriginPatternLength, " characters"));
  }
  const auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", text, "\" is not an origin pattern (", why,
        "; \"*\", or http(s)://host[:port] where host may be \"*\" or start with \"*.\")"));
  };
  absl::string_view rest = text;
  std::optional<bool> https = ConsumeScheme(rest);
  if (!https.has_value()) return bad("the scheme must be http or https");
  out.https = *https;
  absl::string_view host = rest;
  out.port = DefaultPort(out.https);
  if (size_t colon = rest.rfind(':'); colon != absl::string_view::npos) {
    host = rest.substr(0, colon);
    out.port = ParsePort(rest.substr(colon + 1));
    if (out.port == 0) return bad("the port must be a number from 1 to 65535");
  }
  if (host.find_first_of("/?#@") != absl::string_view::npos) {
    return bad("an origin has no path, query, fragment or user");
  }
  if (host == "*") {
    out.kind = OriginPattern::Kind::kAnyHost;
    return out;
  }
  out.kind = OriginPattern::Kind::kExact;
  if (absl::StartsWith(host, "*.")) {
    out.kind = OriginPattern::Kind::kSuffix;
    host.remove_prefix(1);  // keeps the '.'
    if (!ValidLabels(host.substr(1))) return bad("the host after \"*.\" must be DNS labels");
  } else if (!ValidLabels(host)) {
    return bad(host.find('*') != absl::string_view::npos
                   ? "a wildcard may only be the whole host or its first label"
                   : "the host must be DNS labels (letters, digits, '-') joined by '.'");
  }
  out.host = absl::AsciiStrToLower(host);
  return out;
}

std::optional<Origin> ParseOrigin(absl::string_view value) {
  Origin out;
  std::optional<bool> https = ConsumeScheme(value);
  if (!https.has_value()) return std::nullopt;
  out.https = *https;
  std::optional<HostPort> authority = ParseHostPort(value);
  if (!authority.has_value() || authority->host.empty()) return std::nullopt;
  out.host = authority->host;
  out.port = DefaultPort(out.https);
  if (authority->has_port) {
    out.port = ParsePort(authority->port);
    if (out.port == 0) return std::nullopt;
  }
  return out;
}

bool OriginMatches(const OriginPattern& pattern, const std::optional<Origin>& origin) {
  if (pattern.kind == OriginPattern::Kind::kAny) return true;
  if (!origin.has_value() || origin->https != pattern.https || origin->port != pattern.port) {
    return false;
  }
  switch (pattern.kind) {
    case OriginPattern::Kind::kExact:
      return absl::EqualsIgnoreCase(origin->host, pattern.host);
    case OriginPattern::Kind::kSuffix:
      return origin->host.size() > pattern.host.size() &&
             absl::EndsWithIgnoreCase(origin->host, pattern.host);
    case OriginPattern::Kind::kAnyHost:
    case OriginPattern::Kind::kAny:
      return true;
  }
  return false;
}

}  // namespace meshlet::http

#include "common/http/authority.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdint>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace meshlet::http {
namespace {

// unreserved / sub-delims (RFC 3986 2.2, 2.3), without ',' (see authority.h).
bool IsHostChar(char c) {
  if (absl::ascii_isalnum(static_cast<unsigned char>(c))) return true;
  switch (c) {
    case '-':
    case '.':
    case '_':
    case '~':
    case '!':
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')':
    case '*':
    case '+':
    case ';':
    case '=':
      return true;
    default:
      return false;
  }
}

bool IsHex(char c) { return absl::ascii_isxdigit(static_cast<unsigned char>(c)); }

// reg-name = *( unreserved / pct-encoded / sub-delims ); an IPv4 address is one too.
bool ValidRegName(absl::string_view name) {
  for (size_t i = 0; i < name.size(); ++i) {
    if (name[i] == '%') {
      if (name.size() - i < 3 || !IsHex(name[i + 1]) || !IsHex(name[i + 2])) return false;
      i += 2;
    } else if (!IsHostChar(name[i])) {
      return false;
    }
  }
  return true;
}

// What is between the brackets of IP-literal = "[" ( IPv6address / IPvFuture ) "]".
bool ValidIpLiteral(absl::string_view inner) {
  if (!inner.empty() && (inner[0] == 'v' || inner[0] == 'V')) {
    // IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
    size_t i = 1;
    while (i < inner.size() && IsHex(inner[i])) ++i;
    if (i == 1 || i + 1 >= inner.size() || inner[i] != '.') return false;
    for (++i; i < inner.size(); ++i) {
      if (inner[i] != ':' && !IsHostChar(inner[i])) return false;
    }
    return true;
  }
  // IPv6address as RFC 3986 writes it is RFC 4291's text form, which inet_pton reads (and a
  // zone identifier, not part of either, it refuses). It stops at a NUL, so only the characters
  // an address may have get that far.
  char text[INET6_ADDRSTRLEN];
  if (inner.empty() || inner.size() >= sizeof(text)) return false;
  for (char c : inner) {
    if (!IsHex(c) && c != ':' && c != '.') return false;
  }
  std::memcpy(text, inner.data(), inner.size());
  text[inner.size()] = '\0';
  in6_addr address;
  return inet_pton(AF_INET6, text, &address) == 1;
}

bool ValidPort(absl::string_view port) {
  uint32_t value = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<uint32_t>(c - '0');
    if (value > 65535) return false;
  }
  return true;
}

}  // namespace

std::optional<HostPort> ParseHostPort(absl::string_view value) {
  HostPort parts;
  absl::string_view rest;
  if (!value.empty() && value[0] == '[') {
    const size_t close = value.find(']');
    if (close == absl::string_view::npos || !ValidIpLiteral(value.substr(1, close - 1))) {
      return std::nullopt;
    }
    parts.host = value.substr(0, close + 1);
    rest = value.substr(close + 1);
  } else {
    // A reg-name has no ':', so the first one starts the port.
    const size_t colon = value.find(':');
    parts.host = value.substr(0, colon);
    if (!ValidRegName(parts.host)) return std::nullopt;
    if (colon != absl::string_view::npos) rest = value.substr(colon);
  }
  if (!rest.empty()) {
    if (rest[0] != ':') return std::nullopt;
    parts.has_port = true;
    parts.port = rest.substr(1);
    if (!ValidPort(parts.port)) return std::nullopt;
  }
  return parts;
}

std::optional<HostPort> AbsoluteFormAuthority(absl::string_view target) {
  absl::string_view rest = target;
  if (absl::StartsWithIgnoreCase(rest, "http://")) {
    rest.remove_prefix(7);
  } else if (absl::StartsWithIgnoreCase(rest, "https://")) {
    rest.remove_prefix(8);
  } else {
    return std::nullopt;
  }
  std::optional<HostPort> authority = ParseHostPort(rest.substr(0, rest.find_first_of("/?")));
  if (!authority.has_value() || authority->host.empty()) return std::nullopt;
  return authority;
}

}  // namespace meshlet::http

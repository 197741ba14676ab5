#include "xds/protocol.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/net/ip_prefix.h"

namespace meshlet::xds {
namespace {

// Characters of a host as a request may carry it: a name, an IPv4 or bracketed IPv6 literal, and
// a ":port" suffix.
bool IsHostChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ||
         c == ':' || c == '[' || c == ']';
}

}  // namespace

std::optional<size_t> ResourceTypeIndex(absl::string_view type_url) {
  for (size_t i = 0; i < kResourceTypeCount; ++i) {
    if (type_url == kResourceTypeUrls[i]) return i;
  }
  return std::nullopt;
}

bool IsLookupKey(absl::string_view name) {
  return absl::StartsWith(name, kLookupAddressPrefix) || absl::StartsWith(name, kLookupHostPrefix);
}

std::optional<std::string> LookupKeyForAddress(absl::string_view ip, uint32_t port) {
  if (port == 0 || port > 65535) return std::nullopt;
  if (ip.size() >= 2 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);
  absl::StatusOr<net::IpAddress> address = net::IpAddress::Parse(ip);
  if (!address.ok()) return std::nullopt;
  if (!address->is_v4()) {
    // An IPv4-mapped IPv6 address (::ffff:10.96.0.5) is its IPv4 address.
    const std::array<uint8_t, 16>& b = address->bytes();
    if (std::all_of(b.begin(), b.begin() + 10, [](uint8_t x) { return x == 0; }) && b[10] == 0xff &&
        b[11] == 0xff) {
      address = net::IpAddress::FromV4Bytes(&b[12]);
    }
  }
  return address->is_v4()
             ? absl::StrCat(kLookupAddressPrefix, address->ToString(), ":", port)
             : absl::StrCat(kLookupAddressPrefix, "[", address->ToString(), "]:", port);
}

std::optional<std::string> LookupKeyForHost(absl::string_view host) {
  if (host.empty()) return std::nullopt;
  for (char c : host) {
    if (!IsHostChar(c)) return std::nullopt;
  }
  // The name ends where the port starts: the last ':' after a bracketed literal's ']', or the
  // only ':' of a name.
  absl::string_view name = host;
  absl::string_view port;
  const size_t bracket = host.rfind(']');
  const size_t colon = host.rfind(':');
  if (colon != absl::string_view::npos && (bracket == absl::string_view::npos || colon > bracket)) {
    name = host.substr(0, colon);
    port = host.substr(colon);  // ":9080"
  }
  if (!port.empty()) {
    uint32_t number = 0;
    if (port.size() < 2 || port.size() > 6 ||
        !std::all_of(port.begin() + 1, port.end(), [](char c) { return absl::ascii_isdigit(c); }) ||
        !absl::SimpleAtoi(port.substr(1), &number) || number == 0 || number > 65535) {
      return std::nullopt;
    }
  }
  // Brackets only around a whole IPv6 literal; a name has no ':' of its own.
  const bool literal = absl::StartsWith(name, "[") && absl::EndsWith(name, "]");
  if (literal) {
    if (!net::IpAddress::Parse(name.substr(1, name.size() - 2)).ok()) return std::nullopt;
  } else if (absl::StrContains(name, ':') || absl::StrContains(name, '[') ||
             absl::StrContains(name, ']')) {
    return std::nullopt;
  }
  if (absl::EndsWith(name, ".")) name.remove_suffix(1);
  if (name.empty()) return std::nullopt;
  std::string key = absl::StrCat(kLookupHostPrefix, name, port);
  if (key.size() > kMaxLookupKeyBytes) return std::nullopt;
  absl::AsciiStrToLower(&key);
  return key;
}

bool GatewayProxyService(absl::string_view label, std::string* service, std::string* namespace_) {
  const size_t slash = label.find('/');
  if (slash == absl::string_view::npos || slash == 0 || slash + 1 == label.size() ||
      label.find('/', slash + 1) != absl::string_view::npos) {
    return false;
  }
  *service = absl::StrCat(kGatewayServicePrefix, label.substr(slash + 1));
  *namespace_ = std::string(label.substr(0, slash));
  return true;
}

}  // namespace meshlet::xds

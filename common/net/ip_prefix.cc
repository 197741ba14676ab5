#include "common/net/ip_prefix.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace meshlet::net {
namespace {

// Whether the first `length` bits of `a` and `b` are equal.
bool SamePrefix(const std::array<uint8_t, 16>& a, const std::array<uint8_t, 16>& b, int length) {
  int i = 0;
  for (; length >= 8; length -= 8, ++i) {
    if (a[i] != b[i]) return false;
  }
  if (length == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff << (8 - length));
  return (a[i] & mask) == (b[i] & mask);
}

}  // namespace

absl::StatusOr<IpAddress> IpAddress::Parse(absl::string_view text) {
  const std::string input(text);
  IpAddress address;
  if (input.find(':') == std::string::npos) {
    if (inet_pton(AF_INET, input.c_str(), address.bytes_.data()) == 1) return address;
  } else if (inet_pton(AF_INET6, input.c_str(), address.bytes_.data()) == 1) {
    address.family_ = Family::kIPv6;
    return address;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("\"", text, "\" is not an IP address (10.0.0.1, fd00::1)"));
}

IpAddress IpAddress::FromV4Bytes(const void* bytes) {
  IpAddress address;
  std::memcpy(address.bytes_.data(), bytes, 4);
  return address;
}

IpAddress IpAddress::FromV6Bytes(const void* bytes) {
  IpAddress address;
  address.family_ = Family::kIPv6;
  std::memcpy(address.bytes_.data(), bytes, 16);
  return address;
}

std::string IpAddress::ToString() const {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(is_v4() ? AF_INET : AF_INET6, bytes_.data(), text, sizeof(text));
  return text;
}

absl::StatusOr<IpPrefix> IpPrefix::Parse(absl::string_view text) {
  const size_t slash = text.find('/');
  absl::StatusOr<IpAddress> address = IpAddress::Parse(text.substr(0, slash));
  if (!address.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\" is not an address range (10.0.0.0/8, fd00::/64)"));
  }
  int length = address->bits();
  if (slash != absl::string_view::npos) {
    const absl::string_view digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3 ||
        !std::all_of(digits.begin(), digits.end(), absl::ascii_isdigit) ||
        !absl::SimpleAtoi(digits, &length) || length > address->bits()) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", text, "\": the prefix length must be 0 to ", address->bits()));
    }
  }
  IpPrefix prefix = Of(*address, length);
  if (prefix.network_ != *address) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", text, "\" has bits set past the prefix length; the range is ", prefix.ToString()));
  }
  return prefix;
}

IpPrefix IpPrefix::Of(const IpAddress& address, int length) {
  IpPrefix prefix;
  prefix.length_ = std::clamp(length, 0, address.bits());
  prefix.network_ = address;
  for (int bit = prefix.length_; bit < address.bits(); ++bit) {
    prefix.network_.bytes_[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
  }
  return prefix;
}

bool IpPrefix::Contains(const IpAddress& address) const {
  return address.family() == family() && SamePrefix(address.bytes(), network_.bytes(), length_);
}

bool IpPrefix::Overlaps(const IpPrefix& other) const {
  return Contains(other.network_) || other.Contains(network_);
}

uint64_t IpPrefix::Size() const {
  const int host_bits = network_.bits() - length_;
  if (host_bits >= 64) return std::numeric_limits<uint64_t>::max();
  return uint64_t{1} << host_bits;
}

std::optional<IpAddress> IpPrefix::At(uint64_t offset) const {
  if (offset >= Size()) return std::nullopt;
  IpAddress address = network_;
  // Host bits are zero in the network address and offset < Size(): adding byte by byte from the
  // end never carries into the prefix.
  unsigned carry = 0;
  for (int i = network_.bits() / 8 - 1; i >= 0 && (offset != 0 || carry != 0); --i) {
    const unsigned sum = address.bytes_[i] + static_cast<unsigned>(offset & 0xff) + carry;
    address.bytes_[i] = static_cast<uint8_t>(sum);
    carry = sum >> 8;
    offset >>= 8;
  }
  return address;
}

std::string IpPrefix::ToString() const { return absl::StrCat(network_.ToString(), "/", length_); }

}  // namespace meshlet::net

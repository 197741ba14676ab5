#pragma once

// IpAddress and IpPrefix: IP addresses without a port, and address ranges in CIDR notation
// ("10.0.0.0/8", "fd00::/64"), as values. For configuration and policy: Service virtual
// addresses and the range they are allocated from, address matches of capture listeners.
// Parse() accepts numeric text only and says what is wrong with anything else; ToString() gives
// the canonical text (inet_ntop's: "10.0.0.1", "fd00::1"), so two spellings of one address
// compare equal once parsed and print alike.
//
// Values only; no threads, no callbacks.

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshlet::net {

class IpAddress {
 public:
  enum class Family { kIPv4, kIPv6 };

  // "10.0.0.1", "fd00::1" (no brackets, no port, no zone).
  static absl::StatusOr<IpAddress> Parse(absl::string_view text);
  // From a kernel sockaddr's address: `bytes` are 4 (IPv4) or 16 (IPv6) bytes in network order.
  static IpAddress FromV4Bytes(const void* bytes);
  static IpAddress FromV6Bytes(const void* bytes);

  // 0.0.0.0.
  IpAddress() = default;

  Family family() const { return family_; }
  bool is_v4() const { return family_ == Family::kIPv4; }
  // 32 or 128.
  int bits() const { return is_v4() ? 32 : 128; }
  // Network byte order; the first 4 bytes for IPv4.
  const std::array<uint8_t, 16>& bytes() const { return bytes_; }
  // The canonical text.
  std::string ToString() const;

  // Ordered by family (IPv4 first), then numerically.
  friend auto operator<=>(const IpAddress&, const IpAddress&) = default;
  friend bool operator==(const IpAddress&, const IpAddress&) = default;

 private:
  friend class IpPrefix;
  Family family_ = Family::kIPv4;
  std::array<uint8_t, 16> bytes_{};
};

class IpPrefix {
 public:
  // "10.0.0.0/8", "fd00::/64"; a bare address is the range of that one address. The host bits
  // (those past the prefix length) must be zero: "10.0.0.1/8" is refused, naming 10.0.0.0/8.
  static absl::StatusOr<IpPrefix> Parse(absl::string_view text);
  // The range of the addresses sharing the first `length` bits of `address` (host bits cleared).
  static IpPrefix Of(const IpAddress& address, int length);

  const IpAddress& network() const { return network_; }
  int length() const { return length_; }
  IpAddress::Family family() const { return network_.family(); }

  bool Contains(const IpAddress& address) const;
  // Whether the two ranges share an address (one contains the other's network address).
  bool Overlaps(const IpPrefix& other) const;
  // How many addresses the range holds, at most 2^64 - 1 (every IPv6 range of /64 or wider).
  uint64_t Size() const;
  // The address `offset` past the network address; nullopt when that is outside the range.
  std::optional<IpAddress> At(uint64_t offset) const;

  // "10.0.0.0/8".
  std::string ToString() const;

  friend bool operator==(const IpPrefix&, const IpPrefix&) = default;

 private:
  IpAddress network_;
  int length_ = 0;
};

}  // namespace meshlet::net

#include "sidecar/config/resource_version.h"

namespace meshlet::sidecar::config {
namespace {

// `hash` as xds::Hex16 spells it: 16 lowercase hex digits, zero-padded.
absl::string_view SpellHash(uint64_t hash, ResourceVersion::Buffer& buffer) {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (size_t i = buffer.size(); i > 0; --i, hash >>= 4) buffer[i - 1] = kDigits[hash & 0xf];
  return absl::string_view(buffer.data(), buffer.size());
}

}  // namespace

ResourceVersion::ResourceVersion(absl::string_view version, uint64_t content_hash)
    : content_hash_(content_hash) {
  Buffer buffer;
  if (!version.empty() && version != SpellHash(content_hash, buffer)) other_ = std::string(version);
}

absl::string_view ResourceVersion::View(Buffer& buffer) const {
  return copied() ? absl::string_view(other_) : SpellHash(content_hash_, buffer);
}

std::string ResourceVersion::str() const {
  Buffer buffer;
  return std::string(View(buffer));
}

}  // namespace meshlet::sidecar::config

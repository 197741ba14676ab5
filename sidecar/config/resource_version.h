#pragma once

// ResourceVersion: what the xDS client keeps of a held resource's version and content hash
// (ADR 0086, "Amended: a held resource's version is its content hash"). The control plane
// versions a resource by the FNV-1a 64 of its bytes in hex (xds::ContentVersion), which is the
// hash the client takes of the bytes as received anyway: a version that is that hash, or none
// (taken to be it), is kept as the hash alone; only another version is kept as text. Sixteen hex
// digits are past std::string's inline capacity, so the copy was an allocation per resource.
//
// A value, plain data (one thread at a time); reading allocates nothing but str().

#include <array>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace meshlet::sidecar::config {

class ResourceVersion {
 public:
  // Room for the version when it is the content hash: 16 lowercase hex digits.
  using Buffer = std::array<char, 16>;

  ResourceVersion() = default;
  // `version`, as the server named it (empty: the content hash's), of a resource whose bytes as
  // received hash to `content_hash` (xds::Fnv1a64).
  ResourceVersion(absl::string_view version, uint64_t content_hash);

  uint64_t content_hash() const { return content_hash_; }
  // The version, spelt in `buffer` when it is the content hash's: valid while both live.
  absl::string_view View(Buffer& buffer) const;
  std::string str() const;
  // Whether the version is kept as text: not the content hash's.
  bool copied() const { return !other_.empty(); }

  // By version and hash (one form per version: kept as text only when not the hash's).
  friend bool operator==(const ResourceVersion&, const ResourceVersion&) = default;

 private:
  std::string other_;  // the version when it is not the content hash's; else empty
  uint64_t content_hash_ = 0;
};

}  // namespace meshlet::sidecar::config

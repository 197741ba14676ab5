#include "xds/version.h"

#include "absl/strings/str_cat.h"

namespace meshlet::xds {

std::string Hex16(uint64_t hash) { return absl::StrCat(absl::Hex(hash, absl::kZeroPad16)); }

std::string ContentVersion(absl::string_view bytes) { return Hex16(Fnv1a64(bytes)); }

void TypeVersionHash::Add(absl::string_view name, absl::string_view version) {
  hash_ = Fnv1a64(name, hash_);
  hash_ = Fnv1a64(absl::string_view("\0", 1), hash_);
  hash_ = Fnv1a64(version, hash_);
  hash_ = Fnv1a64("\n", hash_);
}

}  // namespace meshlet::xds

#include "xds/version.h"

#include "absl/strings/str_cat.h"

namespace meshlet::xds {

std::string Hex16(uint64_t hash) { return absl::StrCat(absl::Hex(hash, absl::kZeroPad16)); }

std::string ContentVersion(absl::string_view bytes) { return Hex16(Fnv1a64(bytes)); }

uint64_t TypeVersionEntry(absl::string_view name, absl::string_view version) {
  uint64_t hash = Fnv1a64(name);
  hash = Fnv1a64(absl::string_view("\0", 1), hash);
  hash = Fnv1a64(version, hash);
  hash = Fnv1a64("\n", hash);
  hash = (hash ^ (hash >> 30)) * 0xbf58476d1ce4e5b9ull;
  hash = (hash ^ (hash >> 27)) * 0x94d049bb133111ebull;
  return hash ^ (hash >> 31);
}

}  // namespace meshlet::xds

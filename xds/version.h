#pragma once

// The content-hash versions of the discovery protocol (docs/xds.md, "Versions"): FNV-1a 64,
// written as 16 lowercase hex digits. Both ends compute them with these functions: the control
// plane versions every resource and type it sends, the sidecar versions the state a delta stream
// leaves it with (so both report the same string) and resources it read back from its saved
// configuration, and a static configuration is versioned by the hash of its bytes.
//
// Plain functions of their arguments; any thread. FNV-1a is used (not absl::Hash) because the
// value must be the same in every process and build.

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace meshlet::xds {

inline constexpr uint64_t kFnv1aOffset = 14695981039346656037ull;
inline constexpr uint64_t kFnv1aPrime = 1099511628211ull;

// FNV-1a 64 over `bytes`, continuing from `hash` (the offset basis starts a new hash).
constexpr uint64_t Fnv1a64(absl::string_view bytes, uint64_t hash = kFnv1aOffset) {
  for (char c : bytes) {
    hash ^= static_cast<unsigned char>(c);
    hash *= kFnv1aPrime;
  }
  return hash;
}

// `hash` as 16 lowercase hex digits, zero-padded.
std::string Hex16(uint64_t hash);

// The version of a resource whose (deterministic) serialization is `bytes`.
std::string ContentVersion(absl::string_view bytes);

// A type's version: the FNV-1a 64 offset basis plus, modulo 2^64, each resource's entry hash
// (TypeVersionEntry). A sum, not a hash of the names in order, so that a set that changes by a
// few resources gets its version by adding and subtracting those few (the control plane's
// resource maps keep the sum per subtree). An empty type's version is the offset basis.
//
// A resource's entry hash: FNV-1a 64 over "name\0version\n", mixed (splitmix64's finalizer) so
// that the sum of many spreads over all 64 bits.
uint64_t TypeVersionEntry(absl::string_view name, absl::string_view version);

class TypeVersionHash {
 public:
  void Add(absl::string_view name, absl::string_view version) {
    sum_ += TypeVersionEntry(name, version);
  }
  // Adds the sum of entry hashes of several resources (TypeVersionEntry).
  void AddEntries(uint64_t sum) { sum_ += sum; }
  std::string Hex() const { return Hex16(kFnv1aOffset + sum_); }

 private:
  uint64_t sum_ = 0;
};

// The version of the type whose resources are `by_name` (a map); `version_of(value)` gives a
// resource's version.
template <typename Map, typename VersionOf>
std::string TypeVersion(const Map& by_name, VersionOf version_of) {
  TypeVersionHash hash;
  for (const auto& [name, value] : by_name) hash.Add(name, version_of(value));
  return hash.Hex();
}

}  // namespace meshlet::xds

#pragma once

// SessionKey: what a sticky-session token (sidecar/route/session.h) names a cluster and an
// endpoint by. A stable 64-bit hash (FNV-1a) of the cluster's name or the endpoint's address text
// (net::Address::ToString()): the same in every process and build, so tokens survive sidecar
// restarts, and no address appears in a token. Never 0 (0 stands for "no key"). Any thread.

#include <cstdint>

#include "absl/strings/string_view.h"

namespace meshlet::sidecar::cluster {

constexpr uint64_t SessionKey(absl::string_view text) {
  uint64_t hash = 14695981039346656037ull;
  for (char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ull;
  }
  return hash == 0 ? 1 : hash;
}

}  // namespace meshlet::sidecar::cluster

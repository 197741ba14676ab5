#pragma once

// SPIFFE trust bundles of federated trust domains (ADR 0101), as a bundle endpoint, a file or a
// Secret holds them: the SPIFFE bundle format (a JWKS whose "x509-svid" keys carry one root each
// in "x5c", with optional "spiffe_sequence" and "spiffe_refresh_hint"), or plain PEM roots.
//
// Pure functions: no I/O, no state, callable from any thread.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/tls/certificate.h"

namespace meshlet::controlplane::federation {

struct FederatedBundle {
  // The X.509 roots, PEM, in the order given; each is a CA certificate. Never empty.
  std::string roots_pem;
  std::vector<tls::CertificateInfo> roots;
  // "spiffe_sequence" and "spiffe_refresh_hint" (seconds) when the bundle states them; PEM has
  // neither.
  std::optional<uint64_t> sequence;
  std::optional<absl::Duration> refresh_hint;
  // Keys left out, one line each ("keys[1]: use \"jwt-svid\" is not for X.509"), for logs and
  // status: JWT-SVID keys, and keys of a use this mesh does not know.
  std::vector<std::string> skipped;
};

// Limits on what a bundle may hold.
struct BundleLimits {
  size_t max_bytes = 1 << 20;
  size_t max_roots = 64;
};

// Parses `text`: PEM when it starts (after whitespace) with "-----BEGIN", else a SPIFFE bundle.
// Errors name what is wrong and where ("keys[0].x5c[0]: not base64", "keys[2]: x509-svid key
// needs exactly one x5c certificate, has 2", "root #1 (CN=leaf) is not a CA certificate", "no
// x509-svid key"); `domain` must be a valid trust domain ("other.example").
absl::StatusOr<FederatedBundle> ParseFederatedBundle(absl::string_view domain,
                                                     absl::string_view text,
                                                     const BundleLimits& limits = {});

}  // namespace meshlet::controlplane::federation

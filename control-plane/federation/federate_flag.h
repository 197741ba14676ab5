#pragma once

// `--federate DOMAIN=SOURCE` values (ADR 0101): where the control plane reads a foreign trust
// domain's bundle, and when it reads it again. Pure functions, callable from any thread.

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/http/https_get.h"

namespace meshlet::controlplane::federation {

struct FederationSource {
  enum class Kind { kFile, kSecret, kBundleEndpoint };
  std::string domain;  // a valid trust domain, not the local one
  Kind kind = Kind::kFile;
  // kFile: the path; kSecret: "NAMESPACE/NAME"; kBundleEndpoint: the https URL.
  std::string location;
  // kBundleEndpoint: the URL's parts.
  http::HttpsUrl url;
};

// Parses one flag value: "other.example=file:/etc/meshlet/other.json",
// "other.example=secret:meshlet-system/other-bundle" or
// "other.example=https://spire.other.example/bundle". `local_trust_domain` may not be federated.
absl::StatusOr<FederationSource> ParseFederateFlag(absl::string_view value,
                                                   absl::string_view local_trust_domain);

// Every value of the repeated flag; a domain given twice is an error.
absl::StatusOr<std::vector<FederationSource>> ParseFederateFlags(
    const std::vector<std::string>& values, absl::string_view local_trust_domain);

// When to read a bundle again after a read: its spiffe_refresh_hint when it has one, else
// `max_interval`, kept within [min_interval, max_interval].
absl::Duration RefreshInterval(std::optional<absl::Duration> hint, absl::Duration min_interval,
                               absl::Duration max_interval);

}  // namespace meshlet::controlplane::federation

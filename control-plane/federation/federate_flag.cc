#include "control-plane/federation/federate_flag.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/http/https_get.h"
#include "common/tls/spiffe.h"

namespace meshlet::controlplane::federation {

absl::StatusOr<FederationSource> ParseFederateFlag(absl::string_view value,
                                                   absl::string_view local_trust_domain) {
  const auto error = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("--federate \"", value, "\": ", why));
  };
  const size_t eq = value.find('=');
  if (eq == absl::string_view::npos) return error("expected DOMAIN=SOURCE");
  FederationSource out;
  out.domain = std::string(value.substr(0, eq));
  if (absl::Status status = tls::ValidateTrustDomain(out.domain); !status.ok()) {
    return error(absl::StrCat("trust domain: ", status.message()));
  }
  if (out.domain == local_trust_domain) {
    return error("is the local trust domain; its roots are the CA's");
  }
  const absl::string_view source = value.substr(eq + 1);
  absl::string_view rest = source;
  if (absl::ConsumePrefix(&rest, "file:")) {
    out.kind = FederationSource::Kind::kFile;
    if (!absl::StartsWith(rest, "/")) return error("file: needs an absolute path");
  } else if (absl::ConsumePrefix(&rest, "secret:")) {
    out.kind = FederationSource::Kind::kSecret;
    std::vector<absl::string_view> parts = absl::StrSplit(rest, '/');
    if (parts.size() != 2 || parts[0].empty() || parts[1].empty()) {
      return error("secret: needs NAMESPACE/NAME");
    }
  } else if (absl::StartsWith(source, "https://")) {
    out.kind = FederationSource::Kind::kBundleEndpoint;
    absl::StatusOr<http::HttpsUrl> url = http::ParseHttpsUrl(source);
    if (!url.ok()) return error(url.status().message());
    out.url = *std::move(url);
    rest = source;
  } else {
    return error("SOURCE is file:PATH, secret:NAMESPACE/NAME or an https:// URL");
  }
  out.location = std::string(rest);
  return out;
}

absl::StatusOr<std::vector<FederationSource>> ParseFederateFlags(
    const std::vector<std::string>& values, absl::string_view local_trust_domain) {
  std::vector<FederationSource> out;
  absl::flat_hash_set<std::string> seen;
  for (const std::string& value : values) {
    absl::StatusOr<FederationSource> source = ParseFederateFlag(value, local_trust_domain);
    if (!source.ok()) return source.status();
    if (!seen.insert(source->domain).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("--federate: trust domain \"", source->domain, "\" given twice"));
    }
    out.push_back(*std::move(source));
  }
  return out;
}

absl::Duration RefreshInterval(std::optional<absl::Duration> hint, absl::Duration min_interval,
                               absl::Duration max_interval) {
  return std::clamp(hint.value_or(max_interval), min_interval, max_interval);
}

}  // namespace meshlet::controlplane::federation

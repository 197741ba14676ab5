#include "control-plane/federation/federate_flag.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/net/address.h"
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
    absl::string_view url = source.substr(8);
    const size_t slash = url.find('/');
    const absl::string_view authority = url.substr(0, slash);
    out.path = slash == absl::string_view::npos ? "/" : std::string(url.substr(slash));
    if (authority.empty()) return error("https:// needs a host");
    if (absl::StrContains(authority, '@')) {
      return error("the https:// URL must not carry user information");
    }
    if (absl::StrContains(out.path, '#'))
      return error("the https:// URL must not carry a fragment");
    if (absl::StartsWith(authority, "[") || absl::StrContains(authority, ':')) {
      absl::StatusOr<net::HostPort> host_port = net::SplitHostPort(authority);
      if (authority.back() == ']') {  // [v6] without a port
        host_port = net::HostPort{.host = std::string(authority.substr(1, authority.size() - 2)),
                                  .port = 443,
                                  .bracketed = true};
      }
      if (!host_port.ok() || host_port->host.empty() || host_port->port == 0 ||
          host_port->unbracketed_ipv6()) {
        return error("the https:// URL's host is not HOST, HOST:PORT or [IPv6]:PORT");
      }
      out.host = host_port->host;
      out.port = host_port->port;
    } else {
      out.host = std::string(authority);
      out.port = 443;
    }
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

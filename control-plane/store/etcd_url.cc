#include "control-plane/store/etcd_url.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace meshlet::controlplane {
namespace {

constexpr absl::string_view kHttps = "https://";
constexpr absl::string_view kHttp = "http://";

}  // namespace

absl::StatusOr<EtcdUrlParts> SplitEtcdUrl(absl::string_view url) {
  auto bad = [url](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("store \"", url, "\": ", what));
  };
  EtcdUrlParts parts;
  absl::string_view rest = url;
  if (absl::ConsumePrefix(&rest, kHttps)) {
    parts.tls = true;
  } else if (absl::ConsumePrefix(&rest, kHttp)) {
    parts.tls = false;
  } else {
    return bad(
        "expected https://HOST:PORT[,HOST:PORT...] (etcd over TLS) or http://HOST:PORT[,...] "
        "(plaintext)");
  }
  for (absl::string_view part : absl::StrSplit(rest, ',')) {
    absl::string_view endpoint = part;
    const bool https = absl::ConsumePrefix(&endpoint, kHttps);
    const bool http = !https && absl::ConsumePrefix(&endpoint, kHttp);
    if ((https && !parts.tls) || (http && parts.tls)) {
      return bad(absl::StrCat("endpoint \"", part,
                              "\": every endpoint must use the first one's scheme (",
                              parts.tls ? kHttps : kHttp, ")"));
    }
    absl::StatusOr<net::HostPort> split = net::SplitHostPort(endpoint);
    if (!split.ok()) return bad(absl::StrCat("endpoint ", split.status().message()));
    parts.endpoints.push_back(*std::move(split));
  }
  return parts;
}

}  // namespace meshlet::controlplane

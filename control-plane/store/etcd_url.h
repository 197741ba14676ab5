#pragma once

// The --store URL of an etcd cluster, read for its form only (no name is resolved): the control
// plane's flag, and `meshctl install --set etcd=...`, which names hosts of another network.
//
//   https://HOST:PORT[,HOST:PORT...]   TLS (the members' certificates must name HOST)
//   http://HOST:PORT[,HOST:PORT...]    plaintext, refused unless asked for explicitly
//
// Endpoints after the first may repeat the scheme ("https://a:2379,https://b:2379", as etcd's
// own --endpoints are written); all must have the same one. IPv6 literals in brackets.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/net/address.h"

namespace meshlet::controlplane {

struct EtcdUrlParts {
  bool tls = true;  // https
  std::vector<net::HostPort> endpoints;
};

// InvalidArgument naming the URL and the part that is wrong.
absl::StatusOr<EtcdUrlParts> SplitEtcdUrl(absl::string_view url);

}  // namespace meshlet::controlplane

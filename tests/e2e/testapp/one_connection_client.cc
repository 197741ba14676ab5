#include "tests/e2e/testapp/one_connection_client.h"

namespace meshlet::testapp {

absl::StatusOr<std::vector<net::Address>> AddressesOf(const std::string& host, uint16_t port) {
  absl::StatusOr<net::Address> literal = net::Address::FromIp(host, port);
  if (literal.ok()) return std::vector<net::Address>{*literal};
  // A name: /etc/hosts (or DNS) has it.
  absl::StatusOr<std::vector<net::Address>> resolved = net::ResolveAll(host, port);
  if (!resolved.ok()) return absl::UnavailableError(resolved.status().message());
  return resolved;
}

}  // namespace meshlet::testapp

#include "sidecar/server/upstream_transport.h"

#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/tls/spiffe.h"
#include "common/tls/tls_transport.h"

namespace meshlet::sidecar::server {

using cluster::ClusterConfig;
using cluster::EndpointTlsConfig;
using cluster::EndpointTransportFactory;
using cluster::UsesTls;

namespace {

// Connections that fail at once with `error` (a connect failure, counted by the pool) where TLS
// cannot be set up as the configuration asks: rather that than plaintext it did not ask for.
class FailedTlsTransport final : public net::Transport {
 public:
  explicit FailedTlsTransport(absl::Status error) : error_(std::move(error)) {}
  absl::Status Start(const net::Address&, net::Buffer&) override { return error_; }
  absl::Status OnReceived(net::Buffer&, net::Buffer&, net::Buffer&) override { return error_; }
  absl::Status Send(net::Buffer&, net::Buffer&) override { return error_; }
  void Shutdown(net::Buffer&) override {}
  bool HandshakeComplete() const override { return false; }
  const net::PeerInfo& peer() const override { return peer_; }

 private:
  const absl::Status error_;
  net::PeerInfo peer_;
};

net::TransportFactory FailedTlsTransportFactory(absl::Status error) {
  return [error = std::move(error)] { return std::make_unique<FailedTlsTransport>(error); };
}

}  // namespace

EndpointTransportFactory UpstreamTransportFactory(const TlsContexts* contexts,
                                                  const ClusterConfig& cluster) {
  if (!cluster.tls.enabled) return nullptr;
  std::shared_ptr<const tls::TlsContextProvider> provider =
      contexts == nullptr ? nullptr : contexts->ForCluster(cluster.name);
  if (provider == nullptr) {
    LOG_EVERY_N_SEC(WARN, 60) << "cluster " << cluster.name
                              << " asks for TLS but has no TLS context: its connections fail";
    net::TransportFactory failed =
        FailedTlsTransportFactory(absl::UnavailableError("no TLS context for this cluster"));
    return [failed](const EndpointTlsConfig& endpoint) -> net::TransportFactory {
      return endpoint.plaintext ? nullptr : failed;
    };
  }
  // Mesh upstreams are checked by SPIFFE id (the cluster's expected_peer_ids) and the name is
  // only SNI; an upstream without an expected SPIFFE id must also present a certificate for the
  // SNI name, else any certificate the trust bundle verifies would do.
  const bool checked_by_spiffe_id =
      cluster.tls.workload_certificate || !cluster.tls.expected_peer_ids.empty();
  tls::TlsSession::Options options{.server_name = cluster.tls.sni,
                                   .verify_peer_name = checked_by_spiffe_id ? "" : cluster.tls.sni};
  // Or, when given, one of the subjectAltNames instead of the SNI name (validated as "dns:" or
  // "uri:" and a name).
  for (const std::string& san : *cluster.tls.subject_alt_names) {
    const bool uri = absl::StartsWith(san, "uri:");
    options.verify_subject_alt_names.push_back(
        {.type = uri ? tls::SubjectAltName::Type::kUri : tls::SubjectAltName::Type::kDns,
         .value = san.substr(4)});
  }
  // The context is shared by every cluster with the same certificate and trust bundle, so the
  // cluster's identities are each connection's. Validated when the contexts were prepared; should
  // one not parse here, the cluster's connections fail rather than go unchecked.
  absl::StatusOr<tls::SpiffeIdMatcher> ids =
      tls::SpiffeIdMatcher::FromPatterns(cluster.tls.expected_peer_ids);
  if (!ids.ok()) {
    net::TransportFactory failed = FailedTlsTransportFactory(ids.status());
    return [failed](const EndpointTlsConfig& endpoint) -> net::TransportFactory {
      return endpoint.plaintext ? nullptr : failed;
    };
  }
  std::optional<tls::SpiffeIdMatcher> cluster_ids;
  if (!ids->empty()) cluster_ids = *std::move(ids);
  options.peer_identity = cluster_ids;
  net::TransportFactory cluster_transport = tls::TlsTransport::Factory(provider, options);
  return [provider = std::move(provider), options = std::move(options),
          cluster_ids = std::move(cluster_ids), cluster_transport = std::move(cluster_transport)](
             const EndpointTlsConfig& endpoint) -> net::TransportFactory {
    if (endpoint.plaintext) return nullptr;
    if (endpoint.identity.empty() && !endpoint.http1_only) return cluster_transport;
    tls::TlsSession::Options endpoint_options = options;
    if (endpoint.http1_only) endpoint_options.alpn_protocols = {"http/1.1"};
    if (endpoint.identity.empty()) {
      return tls::TlsTransport::Factory(provider, std::move(endpoint_options));
    }
    absl::StatusOr<tls::SpiffeIdMatcher> exact =
        tls::SpiffeIdMatcher::Create({endpoint.identity.str()}, {});
    absl::StatusOr<tls::SpiffeId> id = tls::SpiffeId::Parse(endpoint.identity.str());
    if (!exact.ok() || !id.ok()) {  // refused by configuration validation already
      return FailedTlsTransportFactory(!exact.ok() ? exact.status() : id.status());
    }
    // The endpoint narrows the cluster's identities and never widens them.
    if (cluster_ids.has_value() && !cluster_ids->Matches(*id)) {
      return FailedTlsTransportFactory(absl::PermissionDeniedError(
          absl::StrCat("endpoint identity ", endpoint.identity.str(),
                       " is not among the cluster's expected_peer_ids ", cluster_ids->Describe())));
    }
    endpoint_options.peer_identity = *std::move(exact);
    return tls::TlsTransport::Factory(provider, std::move(endpoint_options));
  };
}

}  // namespace meshlet::sidecar::server

#pragma once

// GrpcCertificateSigner: the sidecar's client of the control plane's CA
// (meshlet.ca.v1.CertificateService/CreateCertificate on the discovery port), the
// CertificateSigner (certificate_manager.h) of the running sidecar. The CA's protobuf messages stay
// in ca_client.cc; the rotation logic and this header are proto-free.
//
// The first request carries the configured credential: a join token (`meshctl token create`) or
// a Kubernetes projected service-account token, re-read from its file for every request because
// the kubelet rotates it. Once the signer has a workload certificate (SetClientCertificate) and
// the channel uses TLS, renewals present that certificate on a new connection to the CA and send
// no token: the CA renews the identity the certificate proves (ADR 0016), so a join token is
// needed only once and renewals outlive it (until the token is revoked: the certificate names it).
// A renewal the CA refuses that way, or one attempted with a certificate about to expire, falls
// back to the configured token. With a Kubernetes token every request sends the token: the CA
// renews a pod's certificate only with a token of that pod, which proves the pod still exists.
//
// Threading: the loop thread; `done` runs there, exactly once.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/event/loop.h"
#include "common/http/grpc/client.h"
#include "common/net/address.h"
#include "common/net/transport.h"
#include "common/tls/tls_context.h"
#include "sidecar/identity/certificate_manager.h"

namespace meshlet::sidecar::identity {

struct CaClientOptions {
  // The control plane's replicas; a request that finds one unavailable makes the next request
  // go to the next. At least one.
  std::vector<net::Address> server_addresses;
  // TLS with ALPN h2 to the control plane; null: plaintext h2c (local tests and demos only).
  net::TransportFactory transport_factory;
  // The client TLS settings transport_factory was made from; set, renewals present the workload
  // certificate. Unset (plaintext, or no way to rebuild the context): always the token.
  std::optional<tls::TlsContextConfig> tls_config;
  // :authority (and TLS server name); empty: the address.
  std::string authority;
  // One of these (or neither, for renewal with the current certificate).
  std::string join_token;
  std::string kubernetes_token_file;
  Duration timeout = std::chrono::seconds(10);
};

class GrpcCertificateSigner final : public CertificateSigner {
 public:
  GrpcCertificateSigner(event::Loop& loop, CaClientOptions options);
  ~GrpcCertificateSigner() override;

  void RequestCertificate(const std::string& csr_pem, const tls::SpiffeId& identity,
                          absl::Duration ttl,
                          std::function<void(absl::StatusOr<SignedCertificate>)> done) override;

  // The current workload certificate (chain, leaf first, and key), valid until `not_after`:
  // later requests renew with it (see above).
  void SetClientCertificate(std::string certificate_chain_pem, std::string private_key_pem,
                            absl::Time not_after);
  // Roots the control plane pushed over the authenticated xDS stream (the mesh trust bundle),
  // trusted beside tls_config's for the CA's server certificate from the next request on: a
  // control plane that issues its own discovery certificate moves it to a new root during a CA
  // rotation, and the sidecar follows without a restart. Without tls_config: ignored. The
  // caller sets it only when tls_config checks the server's SPIFFE id.
  void SetPushedRoots(std::string trust_bundle_pem);

 private:
  // Whether the next request authenticates with the workload certificate.
  bool RenewWithCertificate() const;
  void UseChannel(net::TransportFactory transport_factory);

  event::Loop& loop_;
  const CaClientOptions options_;
  std::shared_ptr<http::grpc::Channel> channel_;
  // channel_ goes to server_addresses[server_index_], over transport_factory_.
  size_t server_index_ = 0;
  net::TransportFactory transport_factory_;
  // Set by SetClientCertificate; the channel is rebuilt with it before the next request.
  std::string client_chain_pem_, client_key_pem_;
  absl::Time client_not_after_ = absl::InfinitePast();
  bool channel_has_client_certificate_ = false;
  std::string pushed_roots_pem_;
  bool channel_stale_ = false;        // pushed_roots_pem_ changed: rebuilt before the next request
  bool certificate_refused_ = false;  // the last renewal with it failed: use the token once
};

}  // namespace meshlet::sidecar::identity

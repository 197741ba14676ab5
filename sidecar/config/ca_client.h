#pragma once

// GrpcCertificateSigner: the sidecar's client of the control plane's CA
// (meshlet.ca.v1.CertificateService/CreateCertificate on the discovery port). It implements
// sidecar/identity's CertificateSigner, so protobuf stays in sidecar/config and the rotation
// logic stays proto-free.
//
// Each request carries the configured credential: a join token (`meshctl token create`) or a
// Kubernetes projected service-account token, re-read from its file for every request because
// the kubelet rotates it. Without either, the CA must see the workload's current certificate on
// the TLS connection (renewal).
//
// Threading: the loop thread; `done` runs there, exactly once.

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/event/loop.h"
#include "common/http/grpc/client.h"
#include "common/net/address.h"
#include "common/net/transport.h"
#include "sidecar/identity/certificate_manager.h"

namespace meshlet::sidecar::config {

struct CaClientOptions {
  net::Address server_address;
  // TLS with ALPN h2 to the control plane; null: plaintext h2c (local tests and demos only).
  net::TransportFactory transport_factory;
  // :authority (and TLS server name); empty: the address.
  std::string authority;
  // One of these (or neither, for renewal with the current certificate).
  std::string join_token;
  std::string kubernetes_token_file;
  Duration timeout = std::chrono::seconds(10);
};

class GrpcCertificateSigner final : public identity::CertificateSigner {
 public:
  GrpcCertificateSigner(event::Loop& loop, CaClientOptions options);
  ~GrpcCertificateSigner() override;

  void RequestCertificate(
      const std::string& csr_pem, const tls::SpiffeId& identity, absl::Duration ttl,
      std::function<void(absl::StatusOr<identity::SignedCertificate>)> done) override;

 private:
  event::Loop& loop_;
  const CaClientOptions options_;
  std::unique_ptr<http::grpc::Channel> channel_;
};

}  // namespace meshlet::sidecar::config

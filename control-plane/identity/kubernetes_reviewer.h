#pragma once

// KubernetesTokenReviewer: the production TokenReviewer. It POSTs a TokenReview to
// https://<api>/apis/authentication.k8s.io/v1/tokenreviews over TLS (the API server verified
// against the cluster CA file) with `Authorization: Bearer <the control plane's own
// service-account token>`, and hands the JSON answer to CheckTokenReview.
//
// One connection per review (reviews happen once per workload start, not per request), with one
// deadline covering connect, TLS handshake and the whole answer. The bearer token file is read
// again for every review, because projected tokens are rotated by the kubelet. Answers are
// bounded in size. Every failure has a clear reason and is counted in
// meshlet_ca_token_reviews_total{result}: connect_failed, tls_failed, timeout, http_error,
// malformed, too_large, no_credentials, overloaded; successful HTTP exchanges count as ok.
//
// The API server's certificate must chain to the CA file, be a serverAuth certificate and carry
// the dialled IP address in its subjectAltName (API servers list their service IP, which is
// KUBERNETES_SERVICE_HOST); the bearer token is sent only after that check.
//
// Threading: loop thread only; `done` is called on it, never from inside Review(). Destroying
// the reviewer drops reviews in flight without calling their callbacks.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/event/loop.h"
#include "common/net/address.h"
#include "common/net/transport.h"
#include "common/stats/stats.h"
#include "common/tls/tls_context.h"
#include "control-plane/identity/token_review.h"

namespace meshlet::controlplane::identity {

inline constexpr char kInClusterTokenFile[] = "/var/run/secrets/kubernetes.io/serviceaccount/token";
inline constexpr char kInClusterCaFile[] = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

struct KubernetesApiOptions {
  // "https://10.96.0.1:443", "10.96.0.1:443" or "[fd00::1]:443" (numeric). Empty: attestation
  // with Kubernetes tokens is off.
  std::string api;
  std::string token_file = kInClusterTokenFile;
  std::string ca_file = kInClusterCaFile;
  // SNI sent to the API server.
  std::string server_name = "kubernetes.default.svc";
  absl::Duration timeout = absl::Seconds(5);
  size_t max_response_bytes = 256 * 1024;
  // Reviews in flight at once; more are refused at once (result "overloaded") so a burst of
  // certificate requests cannot open unbounded connections to the API server.
  size_t max_in_flight = 64;
};

// The API address from KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT (what the kubelet sets
// in every pod), or empty when not in a cluster.
std::string InClusterApiFromEnvironment();

class KubernetesTokenReviewer final : public TokenReviewer {
 public:
  // Reads the CA file and parses the address; errors name the flag's value that is wrong.
  static absl::StatusOr<std::unique_ptr<KubernetesTokenReviewer>> Create(
      event::Loop& loop, const KubernetesApiOptions& options, StatsRegistry& stats);
  ~KubernetesTokenReviewer() override;

  void Review(const std::string& request_json,
              std::function<void(absl::StatusOr<std::string> response_json)> done) override;

  const net::Address& address() const { return address_; }
  size_t in_flight() const { return reviews_.size(); }

 private:
  class Exchange;
  KubernetesTokenReviewer(event::Loop& loop, const KubernetesApiOptions& options,
                          net::Address address, std::shared_ptr<const tls::TlsContext> context,
                          StatsRegistry& stats);
  // Counts `result`, removes the exchange and calls its callback on a later loop turn.
  void Finish(Exchange* exchange, absl::string_view result, absl::StatusOr<std::string> response);

  event::Loop& loop_;
  const KubernetesApiOptions options_;
  const net::Address address_;
  const net::TransportFactory transport_factory_;
  StatsRegistry& stats_;
  absl::flat_hash_map<Exchange*, std::unique_ptr<Exchange>> reviews_;
};

}  // namespace meshlet::controlplane::identity

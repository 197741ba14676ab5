#pragma once

// KubernetesApi: the control plane's client of the Kubernetes API server, for one request at a
// time per call (TokenReviews, reading and patching its own webhook configuration). HTTPS to the
// API server's numeric address (the server certificate verified against the cluster CA file, a
// serverAuth certificate carrying the dialled IP in its subjectAltName), HTTP/1.1, with
// `Authorization: Bearer <the control plane's own service-account token>`; the token file is read
// again for every request, because the kubelet rotates projected tokens, and the token is sent
// only after the server's certificate was checked.
//
// Short requests (all but watches) share kept-alive connections (http::KeptConnections): at most
// `max_idle_connections` stay open between requests, each for `idle_timeout` (as client-go), one
// request at a time on each; a new connection resumes a TLS 1.3 session from a ticket the API
// server gave an earlier one, when it gives them. A watch has a connection of its own. A request
// that finds its reused connection closed by the server before any answer goes once more on a new
// connection when a replay does no harm: a GET, or one marked replay_safe (a PUT carrying
// metadata.resourceVersion: if the first was applied, the replay is refused with 409 Conflict,
// which its caller treats as a lost race); any other fails as malformed. One deadline covers
// connect, TLS and the whole answer; answers are bounded in size, and at most `max_in_flight`
// requests run at once (more fail at once as "overloaded").
// Every outcome has a result label: ok (a 2xx answer), connect_failed, tls_failed, timeout,
// http_error (its status is in ApiResult), malformed, too_large, closed (a watch cut short),
// no_credentials, overloaded.
//
// Watches (ApiRequest::on_line): a 2xx answer's body is read as it arrives, one line (one watch
// event) at a time, each line bounded by max_response_bytes; the request's own timeout bounds
// the whole watch.
//
// Connection counters (KubernetesApiOptions::stats): meshlet_cp_kubernetes_api_connections_total
// {event}: opened and reused (kept-alive connections of short requests), closed (kept ones the
// server closed or that idled out; counted when the next request ends), failed (a request's
// connect or TLS handshake failed, watches included).
//
// Threading: loop thread only; `done` is called on it, never from inside Call(). Destroying the
// client drops requests in flight without calling their callbacks.

#include <functional>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/http/client.h"
#include "common/net/address.h"
#include "common/net/transport.h"
#include "common/stats/stats.h"
#include "common/tls/tls_context.h"

namespace meshlet::controlplane::kubernetes {

inline constexpr char kInClusterTokenFile[] = "/var/run/secrets/kubernetes.io/serviceaccount/token";
inline constexpr char kInClusterCaFile[] = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

struct KubernetesApiOptions {
  // "https://10.96.0.1:443", "10.96.0.1:443" or "[fd00::1]:443" (numeric). Empty: no API server
  // (off Kubernetes).
  std::string api;
  std::string token_file = kInClusterTokenFile;
  std::string ca_file = kInClusterCaFile;
  // SNI sent to the API server.
  std::string server_name = "kubernetes.default.svc";
  absl::Duration timeout = absl::Seconds(5);
  size_t max_response_bytes = 256 * 1024;
  size_t max_in_flight = 64;
  // Kept-alive connections for short requests; 0 (either): one connection per request.
  size_t max_idle_connections = 2;
  absl::Duration idle_timeout = absl::Seconds(90);
  // Set: the client's connections are counted in meshlet_cp_kubernetes_api_connections_total
  // (every client of one registry adds to the same series). Must outlive the client.
  StatsRegistry* stats = nullptr;
};

// The API address from KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT (what the kubelet sets
// in every pod), or empty when not in a cluster.
std::string InClusterApiFromEnvironment();

struct ApiRequest {
  std::string method;        // "GET", "POST", "PATCH"
  std::string path;          // "/apis/authentication.k8s.io/v1/tokenreviews"
  std::string content_type;  // of `body`; empty without one
  std::string body;
  // The Accept header; empty: application/json.
  std::string accept;
  // Added to the message of a 401 or 403 answer: what permission the request needs.
  std::string forbidden_hint;
  // Zero: KubernetesApiOptions::timeout.
  absl::Duration timeout = absl::ZeroDuration();
  // Set: a watch. Each line of a 2xx answer (one JSON watch event, without its newline; empty
  // lines skipped) is handed to it as it arrives, on the loop thread, and ApiResult::body stays
  // empty. Returning false ends the watch; `done` then follows with "ok". A line longer than
  // max_response_bytes ends it as too_large, a connection that ends mid-answer as closed.
  std::function<bool(absl::string_view line)> on_line;
  // True: sending the request twice does no harm (see above); a GET always may be.
  bool replay_safe = false;
};

struct ApiResult {
  std::string result;   // the label above
  int http_status = 0;  // when an HTTP answer came
  // The answer's body when 2xx; otherwise UnavailableError saying what went wrong.
  absl::StatusOr<std::string> body;
};

class KubernetesApi {
 public:
  // Reads the CA file and parses the address; errors name the flag whose value is wrong
  // (--kubernetes-api, --kubernetes-ca-file).
  static absl::StatusOr<std::unique_ptr<KubernetesApi>> Create(event::Loop& loop,
                                                               const KubernetesApiOptions& options);
  ~KubernetesApi();
  KubernetesApi(const KubernetesApi&) = delete;
  KubernetesApi& operator=(const KubernetesApi&) = delete;

  void Call(ApiRequest request, std::function<void(ApiResult)> done);

  const net::Address& address() const { return address_; }
  const KubernetesApiOptions& options() const { return options_; }
  size_t in_flight() const { return exchanges_.size(); }
  // Whether a session ticket from the API server is kept for the next connection.
  bool resumable() const { return context_->resumable_peers() > 0; }
  // The kept-alive connections of short requests: opened, reused, retried...
  const http::KeptConnections& connections() const { return kept_; }

 private:
  class Exchange;
  KubernetesApi(event::Loop& loop, const KubernetesApiOptions& options, net::Address address,
                std::shared_ptr<const tls::TlsContext> context);
  // Removes the exchange and calls its callback (the exchange is deleted after this loop turn).
  void Finish(Exchange* exchange, ApiResult result);
  // Adds what kept_ counted since the last call to the exported counters.
  void ExportConnectionCounts();

  // The exported connection counters (discarding without a registry) and kept_'s counts they
  // already hold.
  struct ConnectionCounters {
    Counter opened, reused, closed, failed;
    uint64_t opened_seen = 0, reused_seen = 0, closed_seen = 0;
  };

  event::Loop& loop_;
  const KubernetesApiOptions options_;
  const net::Address address_;
  const std::shared_ptr<const tls::TlsContext> context_;
  const net::TransportFactory transport_factory_;
  // Before exchanges_: their fetches use it, and go first.
  http::KeptConnections kept_;
  ConnectionCounters counters_;
  absl::flat_hash_map<Exchange*, std::unique_ptr<Exchange>> exchanges_;
};

}  // namespace meshlet::controlplane::kubernetes

#include "sidecar/server/worker.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/event/timer.h"
#include "common/net/listener.h"
#include "common/net/plaintext_transport.h"
#include "common/tls/tls_transport.h"
#include "sidecar/listener/http_connection_manager.h"
#include "sidecar/listener/protocol_detector.h"
#include "sidecar/server/downstream_tls.h"
#include "sidecar/server/tcp_proxy.h"

namespace meshlet::sidecar {

using cluster::Cluster;
using cluster::ClusterConfig;
using cluster::ClusterManagerOptions;
using cluster::EndpointTlsConfig;
using cluster::EndpointTransportFactory;
using cluster::HostSharedPtr;
using cluster::UsesTls;
using cluster::WorkerClusterManager;

namespace {

template <typename T>
T OrDiscard(absl::StatusOr<T> handle, absl::string_view name) {
  if (handle.ok()) return *handle;
  LOG_EVERY_N_SEC(ERROR, 1) << "stat " << name << ": " << handle.status();
  return T();
}

Counter RejectedCounter(StatsShard& shard, const std::string& listener, absl::string_view reason) {
  return OrDiscard(
      shard.RegisterCounter("meshlet_downstream_cx_rejected_total",
                            "Downstream connections closed without being served, by reason.",
                            {{"listener", listener}, {"reason", std::string(reason)}}),
      "meshlet_downstream_cx_rejected_total");
}

Counter ProtocolCounter(StatsShard& shard, const std::string& listener, absl::string_view proto) {
  return OrDiscard(
      shard.RegisterCounter("meshlet_downstream_cx_protocol_total",
                            "Downstream connections by the protocol they were "
                            "handled as.",
                            {{"listener", listener}, {"protocol", std::string(proto)}}),
      "meshlet_downstream_cx_protocol_total");
}

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
  // Mesh upstreams are checked by SPIFFE id (the context's expected_peer_ids) and the name is
  // only SNI; an upstream without an expected SPIFFE id must also present a certificate for the
  // SNI name, else any certificate the trust bundle verifies would do.
  const bool checked_by_spiffe_id =
      cluster.tls.workload_certificate || !cluster.tls.expected_peer_ids.empty();
  tls::TlsSession::Options options{.server_name = cluster.tls.sni,
                                   .verify_peer_name = checked_by_spiffe_id ? "" : cluster.tls.sni};
  // Validated when the context was built from the same list.
  std::optional<tls::SpiffeIdMatcher> cluster_ids;
  if (absl::StatusOr<tls::SpiffeIdMatcher> ids =
          tls::SpiffeIdMatcher::FromPatterns(cluster.tls.expected_peer_ids);
      ids.ok() && !ids->empty()) {
    cluster_ids = *std::move(ids);
  }
  net::TransportFactory cluster_transport = tls::TlsTransport::Factory(provider, options);
  return [provider = std::move(provider), options = std::move(options),
          cluster_ids = std::move(cluster_ids), cluster_transport = std::move(cluster_transport)](
             const EndpointTlsConfig& endpoint) -> net::TransportFactory {
    if (endpoint.plaintext) return nullptr;
    if (endpoint.identity.empty() && endpoint.alpn.empty()) return cluster_transport;
    tls::TlsSession::Options endpoint_options = options;
    endpoint_options.alpn_protocols = endpoint.alpn;
    if (endpoint.identity.empty()) {
      return tls::TlsTransport::Factory(provider, std::move(endpoint_options));
    }
    absl::StatusOr<tls::SpiffeIdMatcher> exact =
        tls::SpiffeIdMatcher::Create({endpoint.identity}, {});
    absl::StatusOr<tls::SpiffeId> id = tls::SpiffeId::Parse(endpoint.identity);
    if (!exact.ok() || !id.ok()) {  // refused by configuration validation already
      return FailedTlsTransportFactory(!exact.ok() ? exact.status() : id.status());
    }
    // The endpoint narrows the cluster's identities and never widens them.
    if (cluster_ids.has_value() && !cluster_ids->Matches(*id)) {
      return FailedTlsTransportFactory(absl::PermissionDeniedError(
          absl::StrCat("endpoint identity ", endpoint.identity,
                       " is not among the cluster's expected_peer_ids ", cluster_ids->Describe())));
    }
    endpoint_options.peer_identity = *std::move(exact);
    return tls::TlsTransport::Factory(provider, std::move(endpoint_options));
  };
}

namespace {

ClusterManagerOptions UpstreamOptions(const TlsContexts* contexts) {
  ClusterManagerOptions options;
  options.transport_factory = [contexts](const ClusterConfig& cluster) {
    return UpstreamTransportFactory(contexts, cluster);
  };
  return options;
}

}  // namespace

std::shared_ptr<std::atomic<int64_t>> ListenerConnectionCounts::Get(
    const std::string& listener_name) {
  absl::MutexLock lock(&mu_);
  auto& entry = by_name_[listener_name];
  if (entry == nullptr) entry = std::make_shared<std::atomic<int64_t>>(0);
  return entry;
}

// Everything a connection needs from its listener, as of one snapshot. Immutable once built;
// connections keep the one they were accepted with.
struct Worker::ListenerContext {
  config::ListenerConfig config;
  std::shared_ptr<const config::Snapshot> snapshot;
  std::shared_ptr<std::atomic<int64_t>> connection_count;  // process-wide, for max_connections
  std::shared_ptr<AccessLogSink> access_log;               // null: off
  WorkerContext* worker_context = nullptr;  // for HTTP connections; owned by the Worker

  Counter cx_total;
  Gauge cx_active;
  Counter rejected_overflow;
  Counter rejected_no_tcp_cluster;
  Counter rejected_tls_unavailable;
  Counter rejected_rbac;  // connections to tcp_cluster the authorization policies denied
  DownstreamTlsTransport::Counters tls;
  std::shared_ptr<const tls::TlsContextProvider> tls_provider;  // null: plaintext listener
  TlsRefusalLog* tls_refusal_log = nullptr;
  Counter rejected_detect_timeout;
  Counter rejected_tls_handshake_timeout;
  Counter detect_restarted_late;  // detect waits that expired long past their time and restarted
  Counter closed_before_detect;
  Counter as_http1;
  Counter as_http2;
  Counter as_tcp;
  TcpProxyStats tcp;

  bool has_tls() const { return config.tls.mode != config::DownstreamTlsConfig::Mode::kDisable; }
  // The transport of a connection accepted now.
  std::unique_ptr<net::Transport> NewTransport() const {
    if (tls_provider == nullptr) return std::make_unique<net::PlaintextTransport>();
    return std::make_unique<DownstreamTlsTransport>(
        tls_provider, config.tls.mode == config::DownstreamTlsConfig::Mode::kStrict, tls,
        config.name, tls_refusal_log);
  }
};

class Worker::ActiveListener {
 public:
  std::shared_ptr<const ListenerContext> context;
  std::unique_ptr<net::Listener> listener;
};

// One accepted connection from accept to close, whatever ends up handling it. While the protocol
// is being detected it is the connection's callbacks object; afterwards it owns the handler.
class Worker::ActiveConnection : public net::ConnectionCallbacks {
 public:
  ActiveConnection(Worker& worker, std::shared_ptr<const ListenerContext> listener,
                   std::unique_ptr<net::Connection> connection)
      : worker_(worker),
        listener_(std::move(listener)),
        connection_(std::move(connection)),
        active_(listener_->cx_active) {
    worker_.active_connections_.fetch_add(1, std::memory_order_relaxed);
    connection_->SetCallbacks(this);
  }

  ~ActiveConnection() override {
    // Handlers first: they may still use the connection counters' owners below.
    detect_timer_.reset();
    tcp_.reset();
    http_.reset();  // closes its connection without calling back
    if (connection_ != nullptr) connection_->SetCallbacks(nullptr);
    connection_.reset();
    listener_->connection_count->fetch_sub(1, std::memory_order_relaxed);
    worker_.active_connections_.fetch_sub(1, std::memory_order_relaxed);
  }

  void Start() {
    using config::ListenerProtocol;
    const bool tls = listener_->has_tls();
    if (tls && listener_->tls_provider == nullptr) {
      Reject(listener_->rejected_tls_unavailable, "tls_unavailable");
      return;
    }
    // With TLS, HTTP listeners wait for the first decrypted bytes: only then is it known whether
    // the client spoke TLS, which protocol ALPN chose, and who the client is. TCP listeners start
    // at once (the TLS transport terminates, or refuses plaintext under STRICT, by itself), so
    // server-first protocols inside TLS still work.
    switch (listener_->config.protocol) {
      case ListenerProtocol::kTcp:
        // Authorization needs the peer's identity, known once the handshake is done: wait for
        // the first decrypted bytes, or detect_timeout for server-first protocols.
        if (tls && listener_->config.authorizer != nullptr) break;
        ToTcp();
        return;
      case ListenerProtocol::kHttp1:
        if (tls) break;
        ToHttp(DetectedProtocol::kHttp1);
        return;
      case ListenerProtocol::kHttp2:
        if (tls) break;
        ToHttp(DetectedProtocol::kHttp2);
        return;
      case ListenerProtocol::kHttp:
      case ListenerProtocol::kAuto:
        break;
    }
    accepted_at_ = worker_.loop_->Now();
    detect_timer_ = std::make_unique<event::Timer>(*worker_.loop_, [this] { OnDetectTimeout(); });
    ArmDetectTimer(listener_->config.detect_timeout);
    if (tls) {
      // The wait for the first bytes restarts when a handshake finishes: a slow handshake does
      // not eat into it (the handshake has tls_handshake_timeout of its own).
      if (auto* transport = dynamic_cast<DownstreamTlsTransport*>(&connection_->transport())) {
        transport->SetHandshakeDoneCallback([this] {
          if (detect_timer_ != nullptr) ArmDetectTimer(listener_->config.detect_timeout);
        });
      }
    }
  }

  void StartDrain() {
    // HTTP connections finish their streams and close (GOAWAY / Connection: close); TCP proxies
    // and connections still detecting carry on until they end or the drain time is up.
    if (http_ != nullptr) http_->Drain();
  }

  // net::ConnectionCallbacks, while detecting.
  void OnData(net::Buffer& data, bool end_stream) override {
    pending_.Move(data);
    if (listener_->config.protocol == config::ListenerProtocol::kTcp) {
      detect_timer_.reset();
      ToTcp();  // authorized TCP with TLS (Start): the handshake is done
      return;
    }
    if (!pending_.empty()) {
      if (std::optional<DetectedProtocol> chosen = ChosenProtocol()) {
        detect_timer_.reset();
        ToHttp(*chosen);
        return;
      }
    }
    DetectedProtocol protocol = DetectProtocol(pending_);
    if (protocol == DetectedProtocol::kNeedMoreBytes) {
      if (!end_stream && pending_.length() < kMaxDetectBytes) return;
      protocol = DetectedProtocol::kOpaque;
    }
    if (end_stream && pending_.empty()) {
      listener_->closed_before_detect.Inc();
      connection_->Close(net::CloseMode::kNoFlush);
      return;
    }
    detect_timer_.reset();
    // A peer that half-closed right after its first bytes still gets served: the handler sees
    // the end of stream on the connection's next read.
    Dispatch(protocol, /*timed_out=*/false);
  }

  void OnClose(net::CloseReason, const absl::Status&) override {
    // Closed while detecting (or while being refused).
    detect_timer_.reset();
    worker_.OnConnectionDone(this);
  }

 private:
  // The protocol settled without looking at the bytes: by the listener (HTTP1/HTTP2 listeners
  // with TLS wait here only for the handshake) or by ALPN.
  std::optional<DetectedProtocol> ChosenProtocol() const {
    using config::ListenerProtocol;
    if (listener_->config.protocol == ListenerProtocol::kHttp1) return DetectedProtocol::kHttp1;
    if (listener_->config.protocol == ListenerProtocol::kHttp2) return DetectedProtocol::kHttp2;
    return NegotiatedProtocol();
  }

  // The HTTP version the client chose by ALPN in a completed TLS handshake, if any.
  std::optional<DetectedProtocol> NegotiatedProtocol() const {
    const DownstreamTlsTransport* tls = Tls();
    if (tls == nullptr || !tls->tls() || !tls->HandshakeComplete()) return std::nullopt;
    const std::string& alpn = tls->peer().alpn;
    if (alpn == "h2") return DetectedProtocol::kHttp2;
    if (alpn == "http/1.1") return DetectedProtocol::kHttp1;
    return std::nullopt;
  }

  // The connection's TLS-or-plaintext transport, on listeners with TLS; else null.
  const DownstreamTlsTransport* Tls() const {
    if (connection_ == nullptr || listener_->tls_provider == nullptr) return nullptr;
    return dynamic_cast<const DownstreamTlsTransport*>(&connection_->transport());
  }

  void ArmDetectTimer(Duration window) {
    detect_window_ = window;
    detect_deadline_ = worker_.loop_->Now() + window;
    detect_timer_->Enable(window);
  }

  void OnDetectTimeout() {
    const MonotonicTime now = worker_.loop_->Now();
    if (now - detect_deadline_ > std::max(detect_window_ / 2, kLateFloor) &&
        late_restarts_ < kMaxLateRestarts) {
      // Far past its time: this worker was not running (the machine or process stalled, CPU
      // starvation), and likely neither was the peer. Silence measured across a stall says
      // nothing, and the expired timer runs before the worker reads what arrived meanwhile:
      // wait one more window, which the next poll for I/O cuts short if bytes are there.
      ++late_restarts_;
      listener_->detect_restarted_late.Inc();
      ArmDetectTimer(listener_->config.detect_timeout);
      return;
    }
    if (const DownstreamTlsTransport* tls = Tls(); tls != nullptr && tls->handshake_in_progress()) {
      // A TLS client is not silent: its handshake is under way. Bounded from accept on.
      const Duration left = accepted_at_ + listener_->config.tls_handshake_timeout - now;
      if (left > Duration::zero()) {
        ArmDetectTimer(left);
        return;
      }
      Reject(listener_->rejected_tls_handshake_timeout, "tls_handshake_timeout");
      return;
    }
    detect_timer_.reset();
    if (listener_->config.protocol == config::ListenerProtocol::kTcp) {
      ToTcp();
      return;
    }
    if (std::optional<DetectedProtocol> negotiated = NegotiatedProtocol()) {
      // The client chose HTTP in its handshake (ALPN) and has not sent its first bytes yet: HTTP
      // all the same, whose own timeouts now apply; never the TCP fallback.
      ToHttp(*negotiated);
      return;
    }
    if (listener_->config.protocol == config::ListenerProtocol::kAuto) {
      // Server-first protocols (MySQL, SMTP...) send nothing until the server speaks.
      Dispatch(pending_.empty() ? DetectedProtocol::kOpaque : DetectProtocol(pending_),
               /*timed_out=*/true);
      return;
    }
    Reject(listener_->rejected_detect_timeout, "detect_timeout");
  }

  void Dispatch(DetectedProtocol protocol, bool timed_out) {
    const bool auto_mode = listener_->config.protocol == config::ListenerProtocol::kAuto;
    switch (protocol) {
      case DetectedProtocol::kHttp2:
        ToHttp(protocol);
        return;
      case DetectedProtocol::kHttp1:
        ToHttp(protocol);
        return;
      case DetectedProtocol::kTls:
        // On a listener with TLS the transport already terminated the outer TLS; what is left
        // is as opaque as on a plaintext listener.
        if (auto_mode) {
          ToTcp();  // passthrough to tcp_cluster
          return;
        }
        ToHttp(DetectedProtocol::kHttp1);  // an HTTP-only listener answers 400
        return;
      case DetectedProtocol::kNeedMoreBytes:
      case DetectedProtocol::kOpaque:
        if (auto_mode) {
          ToTcp();
          return;
        }
        if (timed_out) {
          Reject(listener_->rejected_detect_timeout, "detect_timeout");
          return;
        }
        ToHttp(DetectedProtocol::kHttp1);  // the HTTP/1 codec answers garbage with 400
        return;
    }
  }

  void ToTcp() {
    if (listener_->config.tcp_cluster.empty()) {
      Reject(listener_->rejected_no_tcp_cluster, "no_tcp_cluster");
      return;
    }
    if (!AuthorizedConnection()) return;
    listener_->as_tcp.Inc();
    tcp_ = std::make_unique<TcpProxy>(*worker_.loop_, *worker_.clusters_, *worker_.clock_,
                                      listener_->tcp, listener_->access_log.get(),
                                      listener_->config.name, listener_->config.tcp_cluster,
                                      listener_->config.tcp_idle_timeout, std::move(connection_),
                                      [this] { worker_.OnConnectionDone(this); });
    tcp_->Start(std::move(pending_));
  }

  // Opaque bytes are authorized once per connection, on the peer's identity and the destination
  // port (filters/authorization.h). False: denied and closed.
  bool AuthorizedConnection() {
    const filters::Authorizer* authorizer = listener_->config.authorizer.get();
    if (authorizer == nullptr) return true;
    std::string peer;
    if (const DownstreamTlsTransport* tls = Tls(); tls != nullptr && tls->tls()) {
      peer = tls->peer_identity();
    }
    const uint32_t port = listener_->config.destination_port != 0
                              ? listener_->config.destination_port
                              : connection_->local_address().port();
    const filters::AuthorizationDecision decision = authorizer->DecideConnection(peer, port);
    if (decision.allowed) return true;
    LOG_EVERY_N_SEC(INFO, 1) << "listener " << listener_->config.name << ": connection from "
                             << connection_->remote_address().ToString() << " ("
                             << (peer.empty() ? "no identity" : peer) << ") to port " << port
                             << " denied"
                             << (decision.policy != nullptr
                                     ? absl::StrCat(" by ", *decision.policy)
                                     : std::string(" (no ALLOW policy matches)"));
    Reject(listener_->rejected_rbac, "rbac_denied");
    return false;
  }

  void ToHttp(DetectedProtocol protocol) {
    const bool h2 = protocol == DetectedProtocol::kHttp2;
    (h2 ? listener_->as_http2 : listener_->as_http1).Inc();
    HttpConnectionManager::Options options{.protocol = h2 ? http::Protocol::kHttp2
                                                          : http::Protocol::kHttp11};
    if (const DownstreamTlsTransport* tls = Tls(); tls != nullptr && tls->tls()) {
      options.tls = true;
      options.peer_identity = tls->peer_identity();
    }
    http_ = std::make_unique<HttpConnectionManager>(
        *listener_->worker_context, *worker_.http_stats_, listener_->config, std::move(connection_),
        std::move(pending_), std::move(options),
        [this](HttpConnectionManager&) { worker_.OnConnectionDone(this); });
    http_->Start();
  }

  void Reject(Counter counter, absl::string_view reason) {
    counter.Inc();
    LOG_EVERY_N_SEC(DEBUG, 1) << "listener " << listener_->config.name
                              << ": closing connection from "
                              << connection_->remote_address().ToString() << ": " << reason;
    // OnClose runs before Close() returns and schedules this object's deletion.
    connection_->Close(net::CloseMode::kNoFlush);
  }

  Worker& worker_;
  std::shared_ptr<const ListenerContext> listener_;
  std::unique_ptr<net::Connection> connection_;  // until a handler takes it
  GaugeGuard active_;
  // A detect timer that fires this much past its time (or half its window, if more) was held up
  // by a stall; a connection gets at most kMaxLateRestarts fresh waits for it. The floor keeps
  // timer rounding and ordinary loop delays from counting, the cap keeps a worker that stays
  // overloaded from waiting forever.
  static constexpr Duration kLateFloor = std::chrono::milliseconds(100);
  static constexpr int kMaxLateRestarts = 3;

  std::unique_ptr<event::Timer> detect_timer_;
  int late_restarts_ = 0;
  MonotonicTime accepted_at_{};
  MonotonicTime detect_deadline_{};  // when detect_timer_ is due
  Duration detect_window_{};         // what it was armed with
  net::Buffer pending_;              // bytes read while detecting
  std::unique_ptr<TcpProxy> tcp_;
  std::unique_ptr<HttpConnectionManager> http_;
};

Worker::Worker(int index, WorkerShared shared) : index_(index), shared_(std::move(shared)) {}

Worker::~Worker() { Stop(); }

absl::Status Worker::Start(std::shared_ptr<const config::Snapshot> snapshot) {
  CHECK(!started_) << "Worker::Start called twice";
  started_ = true;
  absl::Notification started;
  absl::Status start_status;
  thread_ = std::thread([this, snapshot = std::move(snapshot), &started, &start_status]() mutable {
    ThreadMain(std::move(snapshot), started, start_status);
  });
  started.WaitForNotification();
  if (!start_status.ok()) {
    thread_.join();
    stopped_ = true;
  }
  return start_status;
}

void Worker::ThreadMain(std::shared_ptr<const config::Snapshot> snapshot,
                        absl::Notification& started, absl::Status& start_status) {
  loop_ = std::make_unique<event::Loop>();
  clock_ = std::make_unique<event::TurnClock>(*loop_, shared_.clock);
  stats_ = shared_.stats.CreateShard();
  random_ = std::make_unique<RealRandom>();
  clusters_ = std::make_unique<WorkerClusterManager>(*loop_, *random_, *clock_, *stats_,
                                                     shared_.cluster_limits,
                                                     UpstreamOptions(shared_.tls_contexts));
  clusters_->SetWorkerIndex(index_);
  context_ = std::make_unique<WorkerContext>(WorkerContext{
      {
          .loop = *loop_,
          .random = *random_,
          .clock = *clock_,
          .stats = *stats_,
          .access_log = shared_.global_access_log.get(),
          .draining = false,
          .worker_index = index_,
      },
      *clusters_,
      snapshot,
  });
  if (shared_.tracing != nullptr) {
    const tracing::TracingConfig& tracing = *shared_.tracing;
    span_exporter_ = std::make_unique<tracing::SpanExporter>(
        *loop_, tracing, tracing.service_name, shared_.trace_collector, *stats_, *clock_);
    tracer_ =
        std::make_unique<tracing::Tracer>(tracing, tracing.service_name, *span_exporter_,
                                          tracing::TracerStats::Create(*stats_), *random_, *clock_);
    context_->tracer = tracer_.get();
  }
  absl::StatusOr<HttpStats> http_stats = HttpStats::Create(*stats_);
  if (!http_stats.ok()) LOG(ERROR) << "HTTP stats: " << http_stats.status();
  http_stats_ = std::make_unique<HttpStats>(http_stats.ok() ? *http_stats : HttpStats());
  const LabelSet worker_label = {{"worker", absl::StrCat(index_)}};
  accepted_ =
      OrDiscard(stats_->RegisterCounter("meshlet_worker_cx_accepted_total",
                                        "Connections accepted, by worker thread.", worker_label),
                "meshlet_worker_cx_accepted_total");
  config_updates_ = OrDiscard(
      stats_->RegisterCounter("meshlet_worker_config_updates_total",
                              "Configuration snapshots applied, by worker thread.", worker_label),
      "meshlet_worker_config_updates_total");
  bind_errors_ = OrDiscard(stats_->RegisterCounter("meshlet_listener_bind_errors_total",
                                                   "Listeners that failed to bind."),
                           "meshlet_listener_bind_errors_total");

  absl::Status status = Apply(std::move(snapshot), /*initial=*/true);
  const bool ok = status.ok();
  if (ok) {
    start_status = absl::OkStatus();
    started.Notify();  // `started` and `start_status` are gone after this
    loop_->Run();
  } else {
    ShutdownOnThread();
  }
  // Deferred deletions hold stats handles and cluster references: run them while both exist.
  loop_->RunUntilIdle();
  connections_.clear();
  listeners_.clear();
  listener_worker_contexts_.clear();
  context_.reset();
  tracer_.reset();
  span_exporter_.reset();
  clusters_.reset();
  http_stats_.reset();
  loop_->RunUntilIdle();
  clock_.reset();
  loop_.reset();
  stats_.reset();
  random_.reset();
  if (!ok) {
    start_status = status;
    started.Notify();
  }
}

void Worker::ApplySnapshot(std::shared_ptr<const config::Snapshot> snapshot) {
  if (!started_ || stopped_) return;
  loop_->Post([this, snapshot = std::move(snapshot)]() mutable {
    (void)Apply(std::move(snapshot), /*initial=*/false);
  });
}

void Worker::StartDrain() {
  if (!started_ || stopped_) return;
  loop_->Post([this] { DrainOnThread(); });
}

void Worker::RequestStop() {
  if (!started_ || stop_requested_) return;
  stop_requested_ = true;
  loop_->Post([this] { ShutdownOnThread(); });
}

void Worker::Stop() {
  if (!started_ || stopped_) return;
  RequestStop();
  stopped_ = true;
  thread_.join();
}

std::vector<ListenerStatus> Worker::listeners() const {
  absl::MutexLock lock(&status_mu_);
  return listener_status_;
}

std::optional<std::vector<ClusterStatus>> Worker::CollectClusters(Duration timeout) {
  if (!started_ || stopped_) return std::nullopt;
  struct Result {
    absl::Notification done;
    std::vector<ClusterStatus> clusters;
  };
  auto result = std::make_shared<Result>();
  loop_->Post([this, result] {
    for (const auto& [name, config] : context_->snapshot->clusters) {
      Cluster* cluster = clusters_->Find(name);
      if (cluster == nullptr) continue;
      ClusterStatus status;
      status.name = name;
      for (const HostSharedPtr& host : cluster->host_set().hosts()) {
        status.hosts.push_back(HostStatus{.address = host->address().ToString(),
                                          .weight = host->weight(),
                                          .health_flags = host->health_flags(),
                                          .active_requests = host->active_requests(),
                                          .tls = UsesTls(cluster->config(), host->tls()),
                                          .identity = host->tls().identity,
                                          .stats = host->stats()});
      }
      result->clusters.push_back(std::move(status));
    }
    result->done.Notify();
  });
  if (!result->done.WaitForNotificationWithTimeout(absl::FromChrono(timeout))) {
    return std::nullopt;
  }
  return std::move(result->clusters);
}

absl::Status Worker::Apply(std::shared_ptr<const config::Snapshot> snapshot, bool initial) {
  context_->snapshot = snapshot;
  for (auto& [name, listener_context] : listener_worker_contexts_) {
    listener_context.context->snapshot = snapshot;
  }
  clusters_->Update(snapshot->clusters);
  absl::Status first_error;
  std::set<std::string, std::less<>> names;
  for (const config::ListenerConfig& config : snapshot->listeners) {
    names.insert(config.name);
    std::shared_ptr<const ListenerContext> context = MakeListenerContext(config, snapshot);
    auto it = listeners_.find(config.name);
    if (it != listeners_.end() && it->second->context->config.address == config.address) {
      // Same socket; connections accepted from now on see the new settings.
      it->second->context = std::move(context);
      continue;
    }
    if (it != listeners_.end()) listeners_.erase(it);  // moved: close the old socket
    if (draining_ && config.direction == config::TrafficDirection::kInbound) continue;
    auto active = std::make_unique<ActiveListener>();
    active->context = std::move(context);
    ActiveListener* raw = active.get();
    net::ListenerOptions listener_options;
    listener_options.reuse_port = true;  // one socket per worker; the kernel spreads connections
    // Called just before the accept callback, with the same (current) listener context.
    listener_options.transport_factory = [raw] { return raw->context->NewTransport(); };
    absl::StatusOr<std::unique_ptr<net::Listener>> listener =
        net::Listener::Create(*loop_, config.address, std::move(listener_options),
                              [this, raw](std::unique_ptr<net::Connection> connection) {
                                OnAccept(raw->context, std::move(connection));
                              });
    if (!listener.ok()) {
      bind_errors_.Inc();
      absl::Status error = Annotate(
          listener.status(),
          absl::StrCat("listener \"", config.name, "\" (", config.address.ToString(), ")"));
      LOG(ERROR) << "worker " << index_ << ": " << error.message();
      if (first_error.ok()) first_error = error;
      continue;
    }
    active->listener = std::move(*listener);
    listeners_[config.name] = std::move(active);
  }
  for (auto it = listeners_.begin(); it != listeners_.end();) {
    if (names.find(it->first) == names.end()) {
      LOG(INFO) << "worker " << index_ << ": listener " << it->first
                << " removed; its connections carry on";
      it = listeners_.erase(it);
    } else {
      ++it;
    }
  }
  PublishListeners();
  config_updates_.Inc();
  snapshots_applied_.fetch_add(1, std::memory_order_release);
  if (!initial) LOG(DEBUG) << "worker " << index_ << ": applied " << snapshot->version;
  return first_error;
}

std::shared_ptr<const Worker::ListenerContext> Worker::MakeListenerContext(
    const config::ListenerConfig& config, const std::shared_ptr<const config::Snapshot>& snapshot) {
  auto context = std::make_shared<ListenerContext>();
  context->config = config;
  context->snapshot = snapshot;
  context->connection_count = shared_.connection_counts.Get(config.name);
  context->access_log = shared_.global_access_log;
  if (!config.access_log_path.empty()) {
    absl::StatusOr<std::shared_ptr<AccessLogFile>> file =
        shared_.access_logs.Get(config.access_log_path);
    if (file.ok()) {
      context->access_log = *std::move(file);
    } else {
      LOG_EVERY_N_SEC(ERROR, 1) << "listener " << config.name << ": " << file.status().message();
    }
  }
  ListenerWorkerContext& worker_context = listener_worker_contexts_[config.name];
  if (worker_context.context == nullptr) {
    worker_context.context = std::make_unique<WorkerContext>(*context_);
  }
  worker_context.access_log = context->access_log;
  worker_context.context->access_log = worker_context.access_log.get();
  context->worker_context = worker_context.context.get();

  StatsShard& shard = *stats_;
  const LabelSet labels = {{"listener", config.name}};
  context->cx_total = OrDiscard(shard.RegisterCounter("meshlet_downstream_cx_total",
                                                      "Downstream connections accepted.", labels),
                                "meshlet_downstream_cx_total");
  context->cx_active = OrDiscard(
      shard.RegisterGauge("meshlet_downstream_cx_active", "Downstream connections open.", labels),
      "meshlet_downstream_cx_active");
  context->detect_restarted_late = OrDiscard(
      shard.RegisterCounter("meshlet_downstream_detect_restarted_late_total",
                            "Waits for a connection's first bytes that expired long past their "
                            "time (the worker was not running) and started over.",
                            labels),
      "meshlet_downstream_detect_restarted_late_total");
  context->rejected_overflow = RejectedCounter(shard, config.name, "overflow");
  context->rejected_no_tcp_cluster = RejectedCounter(shard, config.name, "no_tcp_cluster");
  context->rejected_tls_unavailable = RejectedCounter(shard, config.name, "tls_unavailable");
  if (config.authorizer != nullptr) {
    context->rejected_rbac = RejectedCounter(shard, config.name, "rbac_denied");
  }
  if (context->has_tls() && shared_.tls_contexts != nullptr) {
    context->tls_provider = shared_.tls_contexts->ForListener(config.name);
  }
  if (context->has_tls()) {
    context->tls.plaintext_refused = RejectedCounter(shard, config.name, "plaintext_refused");
    context->tls.handshake_error = RejectedCounter(shard, config.name, "tls_handshake_error");
    for (tls::HandshakeFailure failure : tls::kHandshakeFailures) {
      context->tls.handshake_fail[static_cast<size_t>(failure)] = OrDiscard(
          shard.RegisterCounter("meshlet_downstream_tls_handshake_fail_total",
                                "Downstream TLS handshakes that failed, by reason (each is also a "
                                "tls_handshake_error rejection).",
                                {{"listener", config.name},
                                 {"reason", std::string(tls::HandshakeFailureName(failure))}}),
          "meshlet_downstream_tls_handshake_fail_total");
    }
    context->tls_refusal_log = shared_.tls_refusal_log;
    context->tls.handshakes =
        OrDiscard(shard.RegisterCounter("meshlet_downstream_tls_handshakes_total",
                                        "Downstream TLS handshakes completed.", labels),
                  "meshlet_downstream_tls_handshakes_total");
    context->tls.resumed = OrDiscard(
        shard.RegisterCounter("meshlet_downstream_tls_resumed_total",
                              "Downstream TLS handshakes that resumed a session (no signatures; "
                              "counted in meshlet_downstream_tls_handshakes_total too).",
                              labels),
        "meshlet_downstream_tls_resumed_total");
  }
  context->rejected_detect_timeout = RejectedCounter(shard, config.name, "detect_timeout");
  context->rejected_tls_handshake_timeout =
      RejectedCounter(shard, config.name, "tls_handshake_timeout");
  context->closed_before_detect = RejectedCounter(shard, config.name, "closed_before_detect");
  context->as_http1 = ProtocolCounter(shard, config.name, "http1");
  context->as_http2 = ProtocolCounter(shard, config.name, "http2");
  context->as_tcp = ProtocolCounter(shard, config.name, "tcp");
  context->tcp = TcpProxyStats::Create(shard, config.name);
  return context;
}

void Worker::OnAccept(const std::shared_ptr<const ListenerContext>& listener,
                      std::unique_ptr<net::Connection> connection) {
  accepted_.Inc();
  listener->cx_total.Inc();
  const int64_t count = listener->connection_count->fetch_add(1, std::memory_order_relaxed) + 1;
  const uint32_t limit = listener->config.max_connections;
  if (limit != 0 && count > static_cast<int64_t>(limit)) {
    listener->connection_count->fetch_sub(1, std::memory_order_relaxed);
    listener->rejected_overflow.Inc();
    LOG_EVERY_N_SEC(WARN, 1) << "listener " << listener->config.name << ": max_connections ("
                             << limit << ") reached; closing new connections";
    connection->Close(net::CloseMode::kNoFlush);
    return;
  }
  auto active = std::make_unique<ActiveConnection>(*this, listener, std::move(connection));
  ActiveConnection* raw = active.get();
  connections_.emplace(raw, std::move(active));
  raw->Start();
}

void Worker::OnConnectionDone(ActiveConnection* connection) {
  auto node = connections_.extract(connection);
  if (!node.empty()) loop_->DeferDelete(std::move(node.mapped()));
}

void Worker::DrainOnThread() {
  if (draining_) return;
  draining_ = true;
  context_->draining = true;
  for (auto& [name, listener_context] : listener_worker_contexts_) {
    listener_context.context->draining = true;
  }
  for (auto& [name, listener] : listeners_) {
    if (listener->context->config.direction == config::TrafficDirection::kInbound &&
        listener->listener != nullptr) {
      listener->listener->StopAccepting();
    }
  }
  for (auto& [raw, connection] : connections_) connection->StartDrain();
  PublishListeners();
}

void Worker::ShutdownOnThread() {
  listeners_.clear();
  connections_.clear();
  PublishListeners();
  if (span_exporter_ == nullptr) {
    loop_->Stop();
    return;
  }
  // The spans of the requests that just ended go out first (bounded by export_timeout).
  span_exporter_->Shutdown([this] { loop_->Stop(); });
}

void Worker::PublishListeners() {
  std::vector<ListenerStatus> status;
  for (const auto& [name, listener] : listeners_) {
    status.push_back(ListenerStatus{
        .name = name,
        .address = listener->listener->address(),
        .accepting = listener->listener->accepting(),
    });
  }
  absl::MutexLock lock(&status_mu_);
  listener_status_ = std::move(status);
}

}  // namespace meshlet::sidecar

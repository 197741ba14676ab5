// Server (server.h): start-up (Init), reloads, signals, readiness, draining and shutdown, and what
// the admin endpoint reads. The start-up steps that reach the control plane (the workload
// certificate, the xDS client, span export and the metrics report) are in
// server_control_plane.cc.

#include "sidecar/server/server.h"

#include <signal.h>
#include <unistd.h>

#include <map>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/base/logging.h"
#include "common/base/malloc_tuning.h"
#include "common/base/random.h"
#include "common/base/status.h"
#include "common/stats/must_stat.h"
#include "common/tls/certificate.h"
#include "common/tls/spiffe.h"
#include "common/tls/tls_transport.h"
#include "sidecar/admin/admin_json.h"
#include "sidecar/config/bootstrap.h"
#include "sidecar/config/translate.h"
#include "sidecar/listener/capture_stats.h"
#include "sidecar/route/route_table.h"
#include "sidecar/server/proxy_info.h"

namespace meshlet::sidecar::server {

using cluster::AppendHealthCheckJson;
using cluster::ClusterConfig;
using cluster::HealthCheckManager;
using cluster::Host;
using cluster::HostStats;
using stream::AccessLogSink;

namespace {

// How long an admin request waits for a worker to report its clusters.
constexpr Duration kWorkerQueryTimeout = std::chrono::seconds(1);
// How often a drain checks whether the last connection has gone.
constexpr Duration kDrainPollInterval = std::chrono::milliseconds(100);

StatsRegistry::Options StatsOptions(const ServerOptions& options) {
  StatsRegistry::Options stats;
  stats.max_series = options.stats_max_series;
  stats.max_scoped_series = options.stats_max_cluster_series;
  return stats;
}

}  // namespace

Server::Server(ServerOptions options)
    : options_(std::move(options)),
      stats_(StatsOptions(options_)),
      access_logs_(stats_.shared_shard()),
      route_stats_limit_(stats_, options_.max_route_stats),
      tls_contexts_(TlsContextLimits{.upstream_sessions = options_.upstream_tls_session_cache,
                                     .verified_chains = options_.tls_verified_chain_cache}) {
  readiness_check_ = std::make_unique<event::Timer>(loop_, [this] { ReportReadiness(); });
  net::DnsLookupOptions dns_lookup;
  dns_lookup.server = options_.dns_server;
  dns_clusters_ = std::make_unique<config::DnsClusters>(loop_, stats_.shared_shard(), dns_lookup,
                                                        [this] { OnDnsAnswers(); });
  StatsShard& shard = stats_.shared_shard();
  draining_gauge_ = MustStat(shard.RegisterGauge(
      "meshlet_server_draining", "1 while the sidecar is draining.", {}, GaugeMerge::kGlobal));
  reload_success_ = MustStat(shard.RegisterCounter("meshlet_config_reloads_total",
                                                   "Configuration reloads (SIGHUP), by result.",
                                                   {{"result", "success"}}));
  reload_failure_ = MustStat(shard.RegisterCounter("meshlet_config_reloads_total",
                                                   "Configuration reloads (SIGHUP), by result.",
                                                   {{"result", "failure"}}));
  certificate_apply_failures_ = MustStat(shard.RegisterCounter(
      "meshlet_workload_certificate_apply_failures_total",
      "New workload certificates whose TLS contexts could not be built (the previous stay)."));
  auto hand_overs = [&](absl::string_view side) {
    return MustStat(shard.RegisterCounter(
        "meshlet_server_hand_overs_total",
        "Hand-overs through --hand-over: took_over (this process took the listening sockets of "
        "its predecessor), handed_over (it handed its own to a successor), refused (it refused a "
        "successor: draining, not ready, or handing over to another), failed (an exchange with a "
        "would-be successor failed "
        "before it took over: a peer of another user, a malformed or oversized message, a "
        "successor gone before it was ready; this process serves on).",
        {{"side", std::string(side)}}));
  };
  hand_overs_taken_ = hand_overs("took_over");
  hand_overs_given_ = hand_overs("handed_over");
  hand_overs_refused_ = hand_overs("refused");
  hand_overs_failed_ = hand_overs("failed");
  hand_over_serve_failures_ = MustStat(shard.RegisterCounter(
      "meshlet_server_hand_over_serve_failures_total",
      "Times this process took over through --hand-over but could not serve the socket for a "
      "next process (the predecessor still held it); it serves its traffic, and is replaced by "
      "a restart rather than a hand-over."));
}

Server::~Server() {
  // Run() normally did this; an Init() error or a test may not have run the loop.
  if (!shut_down_) Shutdown();
  hand_over_client_.reset();
  prometheus_.reset();
  admin_.reset();
  signals_.clear();
  drain_deadline_.reset();
  drain_poll_.reset();
  capture_check_timer_.reset();
  readiness_check_.reset();
  capture_probe_.connection.reset();
  loop_.RunUntilIdle();
}

absl::StatusOr<std::shared_ptr<const config::Snapshot>> Server::LoadSnapshot(
    TlsContexts::Prepared& tls, config::ResourceSet& resources) {
  absl::StatusOr<config::BootstrapConfig> bootstrap =
      config::LoadBootstrapFile(options_.config_path);
  if (!bootstrap.ok()) return bootstrap.status();
  resources = bootstrap->resources;
  config::ResourceSet scratch;
  absl::StatusOr<std::shared_ptr<const config::Snapshot>> snapshot = config::BuildSnapshot(
      dns_clusters_->WithEndpoints(resources, scratch), nullptr, &node_locality_);
  if (!snapshot.ok()) return Annotate(snapshot.status(), options_.config_path);
  // Certificates and keys that do not load refuse the configuration like any other error.
  absl::StatusOr<TlsContexts::Prepared> prepared = tls_contexts_.Prepare(**snapshot);
  if (!prepared.ok()) return Annotate(prepared.status(), options_.config_path);
  tls = *std::move(prepared);
  return snapshot;
}

absl::StatusOr<config::BootstrapConfig> Server::LoadBootstrap() const {
  return config::LoadBootstrap(options_.config_path, options_.bootstrap_flags());
}

bool Server::CaptureCheckPending() const {
  if (!options_.capture_check.has_value() || listener::CaptureSeen() || snapshot_ == nullptr)
    return false;
  for (const config::ListenerConfig& listener : snapshot_->listeners) {
    if (listener.use_original_destination) return true;
  }
  return false;
}

void Server::DialCaptureCheck() {
  if (!CaptureCheckPending()) {
    if (listener::CaptureSeen()) capture_check_timer_->Disable();
    capture_probe_.connection.reset();
    return;
  }
  // The previous dial, if it still runs, is given up (destroying calls no callback).
  capture_probe_.connection =
      net::Connection::Connect(loop_, *options_.capture_check, std::chrono::seconds(1));
  capture_probe_.connection->SetCallbacks(&capture_probe_);
}

std::string Server::NotReadyReason() const {
  // In the order ready() checks.
  if (shut_down_) return "shutting down";
  if (!ready_) return "starting: listeners not bound yet";
  if (CaptureCheckPending()) {
    return absl::StrCat("traffic capture not in effect: no redirected connection seen yet (",
                        options_.capture_check->ToString(),
                        " is dialled every second; are the `sidecar init` rules there?)");
  }
  if (xds_client_ != nullptr && !xds_client_->has_complete_config()) {
    return "no complete configuration from the control plane yet";
  }
  for (const auto& worker : workers_) {
    if (worker->snapshots_applied() < snapshots_needed_for_ready_) {
      return "the workers have not applied the configuration yet";
    }
  }
  return UnboundListenersReason();
}

std::string Server::UnboundListenersReason() const {
  // Every worker binds the same listeners; the first that could not tells why.
  for (const auto& worker : workers_) {
    const std::map<std::string, std::string, std::less<>> unbound = worker->unbound_listeners();
    if (unbound.empty()) continue;
    std::string reason = absl::StrCat("listener not bound: ", unbound.begin()->second);
    if (unbound.size() > 1) absl::StrAppend(&reason, " (and ", unbound.size() - 1, " more)");
    return reason;
  }
  return "";
}

void Server::ReportReadiness() {
  // Handed over: the successor, on its own stream under the same node id, is the workload now.
  if (xds_client_ == nullptr || shut_down_ || handed_over_) return;
  // What /ready answers (admin.cc), in the same order.
  if (draining_) {
    readiness_check_->Disable();
    xds_client_->SetReadiness(false, "draining");
    return;
  }
  const bool ready_now = ready();
  xds_client_->SetReadiness(ready_now, ready_now ? "" : NotReadyReason());
  if (ready_now) {
    readiness_check_->Disable();
  } else if (!readiness_check_->enabled()) {
    readiness_check_->EnableRepeating(kReadinessCheckInterval);
  }
}

bool Server::ready() const {
  if (!ready_ || shut_down_) return false;
  if (CaptureCheckPending()) return false;
  if (xds_client_ != nullptr && !xds_client_->has_complete_config()) return false;
  if (snapshots_needed_for_ready_ == 0) snapshots_needed_for_ready_ = snapshots_sent_;
  for (const auto& worker : workers_) {
    if (worker->snapshots_applied() < snapshots_needed_for_ready_) return false;
  }
  if (!UnboundListenersReason().empty()) return false;
  ever_ready_ = true;
  return true;
}

absl::Status Server::ApplyResources(const config::ResourceSet& resources) {
  // Without a DNS cluster (the usual case) nothing is copied.
  config::ResourceSet scratch;
  const config::ResourceSet& built = dns_clusters_->WithEndpoints(resources, scratch);
  ASSIGN_OR_RETURN(std::shared_ptr<const config::Snapshot> snapshot,
                   config::BuildSnapshot(built, snapshot_.get(), &node_locality_));
  // By the clusters that changed when built from snapshot_, which tls_contexts_ last committed.
  ASSIGN_OR_RETURN(TlsContexts::Prepared tls,
                   tls_contexts_.Prepare(*snapshot, config::ChangedClusters(*snapshot)));
  snapshot_ = std::move(snapshot);
  tls_contexts_.Commit(std::move(tls));
  for (auto& worker : workers_) worker->ApplySnapshot(snapshot_);
  ++snapshots_sent_;
  UpdateSharedClusters(config::ChangedClusters(*snapshot_));
  UpdateCertificateFacts();
  ApplyOnDemandTimes();
  memory_releaser_.Notify();
  FollowDnsClusters(resources, /*any=*/&built != &resources);
  // Readiness may change with it (a first complete configuration, a capture listener): asked
  // again on the next loop turn, outside the xDS client's callback, once the workers have had
  // a moment to apply it.
  if (xds_client_ != nullptr && ready_ && !draining_) readiness_check_->Enable(Duration::zero());
  return absl::OkStatus();
}

absl::Status Server::Init() {
  SetLogLevel(options_.log_level);
  // Before the workers allocate: their arenas keep what they free up to the threshold.
  if (!SetMallocTrimThreshold(options_.malloc_trim_threshold)) {
    LOG(WARN) << "--malloc-trim-threshold=" << options_.malloc_trim_threshold
              << ": the allocator refused it (a sanitizer's has no such setting)";
  }
  init_started_ = RealClock::Get().Now();
  ASSIGN_OR_RETURN(config::BootstrapConfig bootstrap, LoadBootstrap());
  node_name_ = bootstrap.node.id();
  node_locality_ = bootstrap.node.locality();
  RegisterProxyInfo(stats_.shared_shard(), bootstrap.node.id(), bootstrap.node.service(),
                    bootstrap.node.namespace_());
  // Before taking over: a SIGTERM that arrives while a predecessor's sockets are held must end
  // the wait cleanly (FinishTakeOver), not kill this process with its default action. The loop
  // runs the handlers only once it runs, after Init.
  for (int signum : {SIGTERM, SIGINT, SIGHUP}) {
    ASSIGN_OR_RETURN(std::unique_ptr<event::Signal> signal,
                     event::Signal::Create(loop_, signum, [this](int s) { OnSignal(s); }));
    signals_.push_back(std::move(signal));
  }
  // A peer closing while we write must be an error return, not a dead process.
  ::signal(SIGPIPE, SIG_IGN);
  if (!options_.hand_over_path.empty()) RETURN_IF_ERROR(TakeOver());
  if (options_.workload_identity()) {
    if (absl::Status status = InitWorkloadCertificate(bootstrap); !status.ok()) return status;
  }
  if (bootstrap.has_xds()) {
    if (absl::Status status = InitXds(bootstrap); !status.ok()) {
      return options_.config_path.empty() ? status : Annotate(status, options_.config_path);
    }
  } else {
    TlsContexts::Prepared tls;
    config::ResourceSet resources;
    ASSIGN_OR_RETURN(snapshot_, LoadSnapshot(tls, resources));
    tls_contexts_.Commit(std::move(tls));
    FollowDnsClusters(resources, config::DnsClusters::Any(resources.clusters));
  }
  InitOnDemand();
  if (!options_.access_log_path.empty()) {
    ASSIGN_OR_RETURN(global_access_log_, access_logs_.Get(options_.access_log_path));
  }

  if (bootstrap.tracing.enabled && tracing_ == nullptr) {
    // Tracing settings take effect at start (a reload keeps the running ones).
    if (absl::Status status = InitTracing(bootstrap); !status.ok()) {
      return Annotate(status, "tracing");
    }
  }
  // Before the workers: the reporter's creation marks when the counters started.
  if (absl::Status status = InitMetricsReport(bootstrap); !status.ok()) {
    return Annotate(status, "metrics_report");
  }
  // --max-route-stats 0: no route-rule series at all.
  route::RouteStatsLimit* const route_stats_limit =
      options_.max_route_stats > 0 ? &route_stats_limit_ : nullptr;
  for (int i = 0; i < options_.concurrency; ++i) {
    auto worker = std::make_unique<Worker>(
        i, WorkerShared{.stats = stats_,
                        .access_logs = access_logs_,
                        .global_access_log = global_access_log_,
                        .connection_counts = connection_counts_,
                        .cluster_limits = cluster_limits_,
                        .tls_contexts = &tls_contexts_,
                        .tls_refusal_log = &tls_refusal_log_,
                        .tracing = tracing_.get(),
                        .trace_collector = trace_collector_,
                        .trace_channel = trace_channel_,
                        .memory_pressure = overload_.flag(),
                        .max_active_requests = PerWorkerActiveRequests(),
                        .overload_max_active_requests = options_.overload_max_active_requests,
                        .overload_max_rss_mb = options_.overload_max_rss_mb,
                        .max_mirrors_in_flight = options_.mirror_max_in_flight,
                        .error_header = options_.error_header,
                        .node_name = node_name_,
                        .decision_ring_size = options_.decision_ring_size,
                        .route_stats_limit = route_stats_limit,
                        .bind_retry_interval = options_.listener_bind_retry,
                        .bind_retry_max = options_.listener_bind_retry_max,
                        .worker_count = options_.concurrency,
                        // A worker thread's ask, answered on the main thread.
                        .request_lookup =
                            [this](std::string key) {
                              loop_.Post([this, key = std::move(key)]() mutable {
                                if (on_demand_ != nullptr) on_demand_->Request(std::move(key));
                              });
                            },
                        .on_demand_max_waiting = options_.on_demand_max_waiting,
                        .on_demand_missing_ttl = options_.on_demand_missing_ttl});
    absl::Status status = worker->Start(snapshot_);
    if (!status.ok()) {
      workers_.clear();  // stops the ones already running
      return status;
    }
    workers_.push_back(std::move(worker));
  }
  snapshots_sent_ = 1;  // each worker started with snapshot_
  if (xds_client_ != nullptr) {
    TapManagerOptions taps{.max_active = options_.tap_max_active,
                           .max_rate = static_cast<uint32_t>(options_.tap_max_rate),
                           .max_duration = options_.tap_max_duration,
                           .max_batch_bytes = options_.tap_max_batch_bytes,
                           .flush_interval = options_.tap_flush_interval};
    if (options_.workload_identity()) {
      taps.own_identity =
          absl::StrCat("spiffe://", options_.trust_domain, "/ns/", bootstrap.node.namespace_(),
                       "/sa/", bootstrap.node.service_account());
    }
    tap_manager_ = std::make_unique<TapManager>(
        loop_, RealClock::Get(), std::move(taps), workers_.size(),
        [this](size_t index, std::function<void(stream::WorkerTap&)> task) {
          workers_[index]->WithTaps(std::move(task));
        },
        [this](const config::TapEvents& events) { xds_client_->SendTapEvents(events); },
        stats_.shared_shard());
  }

  admin_handler_ =
      std::make_unique<admin::AdminHandler>(*this, stats_.shared_shard(), options_.admin_hosts);
  // The default request (30 s) and idle (120 s) timeouts, counted per port.
  auto server_options = [this](absl::string_view port) {
    http::HttpServerOptions options;
    absl::StatusOr<Counter> timeouts = stats_.shared_shard().RegisterCounter(
        "meshlet_admin_timeouts_total",
        "Connections to the admin or metrics port closed because a request did not arrive "
        "within 30 s or nothing happened for 120 s.",
        {{"port", std::string(port)}});
    CHECK_OK(timeouts);
    options.timeouts = *timeouts;
    return options;
  };
  absl::StatusOr<std::unique_ptr<http::HttpServer>> admin =
      http::HttpServer::Create(loop_, options_.admin_address, server_options("admin"),
                               [this](const http::ServerRequest& request) {
                                 http::ServerResponse response = admin_handler_->Handle(request);
                                 // A large page (/config_dump, /stats, /clusters of a big mesh) was
                                 // built and will be freed.
                                 if (response.body.size() >= kLargeAdminResponse)
                                   memory_releaser_.Notify();
                                 return response;
                               });
  if (!admin.ok()) {
    workers_.clear();
    return Annotate(admin.status(),
                    absl::StrCat("admin address ", options_.admin_address.ToString()));
  }
  admin_ = *std::move(admin);
  if (options_.prometheus_address.has_value()) {
    // Read-only: the two admin pages a scraper needs, nothing that changes state; and the
    // app's own HTTP probes (--app-probe), asked of the app on loopback.
    absl::StatusOr<std::unique_ptr<http::HttpServer>> prometheus = http::HttpServer::Create(
        loop_, *options_.prometheus_address, server_options("metrics"),
        [this](const http::ServerRequest& request, http::Responder respond) {
          if (request.method() == "GET" &&
              (request.path() == "/stats/prometheus" || request.path() == "/ready")) {
            respond(admin_handler_->Handle(request, admin::AdminHandler::Port::kMetrics));
            return;
          }
          if (request.method() == "GET") {
            for (const ServerOptions::AppProbe& probe : options_.app_probes) {
              if (request.path() == probe.path) {
                ProbeApp(probe, std::move(respond));
                return;
              }
            }
          }
          respond(http::ServerResponse::Text(
              404, "only GET /stats/prometheus, /ready and the app probes (--app-probe) here\n"));
        });
    if (!prometheus.ok()) {
      workers_.clear();
      return Annotate(prometheus.status(),
                      absl::StrCat("prometheus address ", options_.prometheus_address->ToString()));
    }
    prometheus_ = *std::move(prometheus);
  }
  UpdateSharedClusters();
  if (metrics_reporter_ != nullptr) metrics_reporter_->Start();
  overload_.Start();
  if (options_.capture_check.has_value()) {
    capture_check_timer_ = std::make_unique<event::Timer>(loop_, [this] { DialCaptureCheck(); });
    capture_check_timer_->EnableRepeating(std::chrono::seconds(1));
    DialCaptureCheck();
  }
  ready_ = true;
  const bool took_over = hand_over_client_ != nullptr;
  if (took_over) RETURN_IF_ERROR(FinishTakeOver());
  if (!options_.hand_over_path.empty()) RETURN_IF_ERROR(ServeHandOver(took_over));
  // The stream's first request reports what /ready says by then (usually not ready yet: the
  // control plane's configuration comes over that stream); changes follow (ReportReadiness).
  ReportReadiness();
  if (xds_client_ != nullptr) xds_client_->Start();
  LOG(INFO) << "sidecar ready: config " << snapshot_->version << ", " << snapshot_->listeners.size()
            << " listeners, " << workers_.size() << " workers, admin on "
            << admin_->address().ToString()
            << (prometheus_ != nullptr
                    ? absl::StrCat(", Prometheus metrics on ", prometheus_->address().ToString())
                    : "");
  return absl::OkStatus();
}

int Server::Run() {
  if (!shut_down_) loop_.Run();
  return 0;
}

absl::Status Server::Reload() {
  if (xds_client_ != nullptr) {
    // Only the static part comes from the file; the dynamic part stays as streamed.
    absl::StatusOr<config::BootstrapConfig> bootstrap = LoadBootstrap();
    absl::Status status = bootstrap.ok() ? xds_client_->UpdateStaticResources(bootstrap->resources)
                                         : bootstrap.status();
    (status.ok() ? reload_success_ : reload_failure_).Inc();
    if (!status.ok()) {
      LOG(ERROR) << "configuration reload refused, keeping " << snapshot_->version << ": "
                 << status.message();
    } else {
      LOG(INFO) << "configuration reloaded: " << snapshot_->version;
    }
    return status;
  }
  TlsContexts::Prepared tls;
  config::ResourceSet resources;
  absl::StatusOr<std::shared_ptr<const config::Snapshot>> snapshot = LoadSnapshot(tls, resources);
  if (!snapshot.ok()) {
    reload_failure_.Inc();
    LOG(ERROR) << "configuration reload refused, keeping " << snapshot_->version << ": "
               << snapshot.status().message();
    return snapshot.status();
  }
  snapshot_ = *std::move(snapshot);
  // New TLS contexts first: connections accepted from now on use them; open ones keep theirs.
  tls_contexts_.Commit(std::move(tls));
  for (auto& worker : workers_) worker->ApplySnapshot(snapshot_);
  ++snapshots_sent_;
  UpdateSharedClusters();
  memory_releaser_.Notify();
  FollowDnsClusters(resources, config::DnsClusters::Any(resources.clusters));
  reload_success_.Inc();
  LOG(INFO) << "configuration reloaded: " << snapshot_->version;
  return absl::OkStatus();
}

void Server::OnSignal(int signum) {
  if (workers_.empty() && !shut_down_) {
    // Still in Init (the handlers are installed before the hand-over and the certificate wait):
    // there is nothing to reload or drain yet.
    if (signum == SIGHUP) {
      LOG(WARN) << "SIGHUP before the proxy started: ignored";
      return;
    }
    LOG(INFO) << (signum == SIGTERM ? "SIGTERM" : "SIGINT")
              << " before the proxy started: stopping";
    stopped_before_start_ = true;
    return;
  }
  if (signum == SIGHUP) {
    LOG(INFO) << "SIGHUP: reloading " << options_.config_path;
    (void)Reload();
    return;
  }
  if (exit_when_drained_) {
    LOG(WARN) << "second " << (signum == SIGTERM ? "SIGTERM" : "SIGINT") << ": exiting now";
    Shutdown();
    return;
  }
  LOG(INFO) << (signum == SIGTERM ? "SIGTERM" : "SIGINT") << ": draining for up to "
            << absl::FormatDuration(absl::FromChrono(options_.drain_time));
  Drain(/*exit_when_done=*/true);
}

void Server::Drain(bool exit_when_done) {
  if (shut_down_) return;
  if (!draining_) {
    draining_ = true;
    draining_since_ = loop_.Now();
    // A proxy that never became ready (no complete configuration, capture never seen) served
    // no caller: nothing to keep accepting for, so it exits as soon as it is idle.
    never_ready_ = !ready() && !ever_ready_;
    if (never_ready_) LOG(INFO) << "never ready: no listen time before exiting";
    draining_gauge_.Set(1);
    // The control plane withdraws this workload's endpoints from every caller; the stream and
    // the configuration stay (the app's outbound calls still need them).
    ReportReadiness();
    // Inbound listeners keep accepting for drain_listen_time (never past the drain time), while
    // that news reaches the callers.
    for (auto& worker : workers_) worker->StartDrain(DrainListenTime());
  }
  if (exit_when_done) ExitWhenDrained();
}

void Server::ExitWhenDrained() {
  if (exit_when_drained_) return;
  exit_when_drained_ = true;
  drain_deadline_ = std::make_unique<event::Timer>(loop_, [this] {
    LOG(INFO) << "drain time is up; exiting with connections still open";
    Shutdown();
  });
  drain_deadline_->Enable(options_.drain_time);
  drain_poll_ = std::make_unique<event::Timer>(loop_, [this] { CheckDrained(); });
  drain_poll_->EnableRepeating(kDrainPollInterval);
  CheckDrained();
}

Duration Server::DrainListenTime() const {
  // Handed over: the successor accepts on the same sockets.
  if (never_ready_ || handed_over_) return Duration::zero();
  return std::min(options_.drain_listen_time, options_.drain_time);
}

void Server::CheckDrained() {
  // Not while inbound listeners still accept: exiting would refuse the callers they are for.
  if (loop_.Now() - draining_since_ < DrainListenTime()) return;
  int64_t open = 0;
  for (const auto& worker : workers_) open += worker->active_connections();
  if (open == 0) {
    LOG(INFO) << "drained: no connections left";
    Shutdown();
  }
}

void Server::BeforeStatsRead() {
  cluster_limits_.PublishStats(stats_.shared_shard());
  PublishRateLimiterStats();
}

void Server::PublishRateLimiterStats() {
  if (snapshot_ == nullptr) return;
  StatsShard& shard = stats_.shared_shard();
  ++rate_limiter_publish_pass_;
  auto publish = [&](absl::string_view scope, const std::string& name,
                     const std::shared_ptr<resilience::LocalRateLimiter>& limiter) {
    auto [it, inserted] =
        published_rate_limiters_.try_emplace({std::string(scope), name}, PublishedRateLimiter{});
    PublishedRateLimiter& published = it->second;
    if (inserted) {
      const LabelSet labels = {{"scope", std::string(scope)}, {"name", name}};
      absl::StatusOr<Gauge> principals = shard.RegisterGauge(
          "meshlet_ratelimit_principals",
          "Caller identities a per-caller rate limit tracks now (at most its max_principals).",
          labels, GaugeMerge::kGlobal);
      absl::StatusOr<Counter> evictions = shard.RegisterCounter(
          "meshlet_ratelimit_principal_evictions_total",
          "Caller buckets a per-caller rate limit dropped to make room for new identities.",
          labels);
      if (!principals.ok() || !evictions.ok()) {
        LOG_EVERY_N_SEC(ERROR, 60)
            << "rate limit " << name
            << ": stats: " << (principals.ok() ? evictions.status() : principals.status());
        published_rate_limiters_.erase(it);
        return;
      }
      published.principals = *principals;
      published.evictions = *evictions;
    }
    published.pass = rate_limiter_publish_pass_;
    // A new snapshot brings a new limiter, whose count starts again from zero. Holding it keeps
    // its address from being reused by a later one.
    if (published.limiter != limiter) {
      published.limiter = limiter;
      published.evictions_seen = 0;
    }
    const resilience::PrincipalRateLimiter& per_principal = *limiter->per_principal();
    published.principals.Set(static_cast<int64_t>(per_principal.principals()));
    const uint64_t evictions = per_principal.evictions();
    published.evictions.Inc(evictions - published.evictions_seen);
    published.evictions_seen = evictions;
  };
  auto per_caller = [](const std::shared_ptr<resilience::LocalRateLimiter>& limiter) {
    return limiter != nullptr && limiter->per_principal() != nullptr;
  };
  for (const config::ListenerConfig& listener : snapshot_->listeners) {
    if (per_caller(listener.rate_limiter)) {
      publish("listener", listener.name, listener.rate_limiter);
    }
  }
  for (const auto& [table_name, table] : snapshot_->route_tables) {
    for (const route::VirtualHostConfig* vhost : table->virtual_hosts()) {
      const route::VirtualHostConfig& host = *vhost;
      for (size_t i = 0; i < host.routes.size(); ++i) {
        const route::RouteEntry& route = host.routes[i];
        if (!per_caller(route.extras->rate_limiter)) continue;
        publish("route",
                absl::StrCat(table_name, "/", host.name, "/",
                             route.name.empty() ? absl::StrCat(i) : route.name),
                route.extras->rate_limiter);
      }
    }
  }
  // Limits the configuration no longer has track nobody.
  for (auto& [key, published] : published_rate_limiters_) {
    if (published.pass == rate_limiter_publish_pass_) continue;
    published.principals.Set(0);
    published.limiter.reset();
  }
}

void Server::Quit() {
  LOG(INFO) << "exit requested through the admin API";
  // After this turn, so the response is written first.
  loop_.Post([this] { Shutdown(); });
}

void Server::ProbeApp(const ServerOptions::AppProbe& probe, http::Responder respond) {
  if (!app_probe_stats_) {
    app_probe_stats_ = true;
    StatsShard& shard = stats_.shared_shard();
    auto counter = [&](absl::string_view result) {
      absl::StatusOr<Counter> c = shard.RegisterCounter(
          "meshlet_app_probes_total",
          "The app's HTTP probes asked through the sidecar (--app-probe), by result: ok (the app "
          "answered, whatever the status), failed (no answer, or too many at once).",
          {{"result", std::string(result)}});
      CHECK(c.ok()) << c.status().message();
      return *c;
    };
    app_probes_ok_ = counter("ok");
    app_probes_failed_ = counter("failed");
  }
  const std::string target = absl::StrCat(probe.port, probe.target);
  if (app_probes_.size() >= kMaxAppProbesInFlight || shut_down_) {
    app_probes_failed_.Inc();
    respond(http::ServerResponse::Text(
        503, absl::StrCat("app probe ", target, ": too many probes in flight\n")));
    return;
  }
  http::ClientRequest request{
      .method = "GET", .path = probe.target, .authority = absl::StrCat("127.0.0.1:", probe.port)};
  request.headers.Add("user-agent", "kube-probe (through meshlet)");
  auto slot = std::make_shared<http::HttpFetch*>(nullptr);
  std::unique_ptr<http::HttpFetch> fetch = http::HttpFetch::Start(
      loop_, {*net::Address::Parse(absl::StrCat("127.0.0.1:", probe.port))}, std::move(request),
      {.timeout = kAppProbeTimeout, .max_response_bytes = 64 * 1024},
      [this, slot, target, respond = std::move(respond)](const http::ClientResult& result) {
        if (result.ok()) {
          app_probes_ok_.Inc();
          respond(http::ServerResponse::Text(
              result.status, absl::StrCat("app probe ", target, ": HTTP ", result.status, "\n")));
        } else {
          app_probes_failed_.Inc();
          respond(http::ServerResponse::Text(
              503, absl::StrCat("app probe ", target, ": ", http::ClientErrorName(result.error),
                                result.detail.empty() ? "" : ": ", result.detail, "\n")));
        }
        auto it = app_probes_.find(*slot);
        if (it != app_probes_.end()) {
          loop_.DeferDelete(std::move(it->second));
          app_probes_.erase(it);
        }
      });
  *slot = fetch.get();
  app_probes_.emplace(fetch.get(), std::move(fetch));
}

void Server::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  app_probes_.clear();
  if (drain_deadline_ != nullptr) drain_deadline_->Disable();
  if (drain_poll_ != nullptr) drain_poll_->Disable();
  readiness_check_->Disable();
  if (xds_client_ != nullptr) xds_client_->Stop();
  metrics_reporter_.reset();
  hand_over_server_.reset();
  certificate_manager_.reset();
  health_checks_.reset();
  for (auto& worker : workers_) worker->RequestStop();  // all at once, then joined
  for (auto& worker : workers_) worker->Stop();
  workers_.clear();
  if (admin_ != nullptr) admin_->Shutdown();
  if (prometheus_ != nullptr) prometheus_->Shutdown();
  loop_.Stop();
}

std::string Server::DecisionsJson(const std::string& request_id, const std::string& trace_id) {
  std::string records;
  int answered = 0;
  for (auto& worker : workers_) {
    std::optional<std::string> json =
        worker->CollectDecisions(request_id, trace_id, kWorkerQueryTimeout);
    if (!json.has_value()) continue;
    ++answered;
    if (json->empty()) continue;
    if (!records.empty()) records.push_back(',');
    records.append(*json);
  }
  return absl::StrCat("{\"workers_answered\":", answered, ",\"records\":[", records, "]}");
}

std::string Server::ClustersJson() {
  std::vector<std::optional<std::vector<admin::ClusterStatus>>> reports;
  for (auto& worker : workers_) reports.push_back(worker->CollectClusters(kWorkerQueryTimeout));
  return admin::ClustersJson(reports, cluster_limits_, health_checks_.get());
}

void Server::UpdateSharedClusters(const std::vector<std::string>* changed) {
  if (snapshot_ == nullptr || shut_down_) return;
  // Only when the previous snapshot's set was applied in full before (the health checks exist).
  if (changed != nullptr && health_checks_ != nullptr) {
    cluster_limits_.Update(snapshot_->clusters, *changed);
    health_checks_->Update(snapshot_->clusters, *changed);
    return;
  }
  cluster_limits_.Update(snapshot_->clusters);
  if (health_checks_ == nullptr) {
    health_checks_ = std::make_unique<HealthCheckManager>(
        loop_, RealRandom::ThreadLocal(), RealClock::Get(), stats_.shared_shard(),
        cluster_limits_.host_health(), [this](const ClusterConfig& cluster) {
          return UpstreamTransportFactory(&tls_contexts_, cluster);
        });
  }
  health_checks_->Update(snapshot_->clusters);
}

std::string Server::XdsStatusJson() {
  if (xds_client_ == nullptr) return "";
  std::string status = xds_client_->StatusJson();
  // The lookup keys and their state join the stream's status object.
  if (on_demand_ != nullptr && !status.empty() && status.back() == '}') {
    status.insert(status.size() - 1, absl::StrCat(",\"on_demand\":", on_demand_->Json()));
  }
  return status;
}

std::string Server::CertsJson() {
  return admin::CertsJson(certificate_manager_.get(), certificate_apply_error_, snapshot_.get(),
                          [this](absl::string_view kind, const std::string& name) -> uint64_t {
                            std::shared_ptr<const tls::TlsContextProvider> provider =
                                kind == "listener" ? tls_contexts_.ForListener(name)
                                                   : tls_contexts_.ForCluster(name);
                            return provider ? provider->generation() : 0;
                          });
}

std::string Server::ListenersJson() {
  std::vector<std::vector<admin::ListenerStatus>> reports;
  for (const auto& worker : workers_) reports.push_back(worker->listeners());
  return admin::ListenersJson(draining_, snapshot_.get(), reports);
}

}  // namespace meshlet::sidecar::server

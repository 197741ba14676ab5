#include "sidecar/server/worker.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/base/sync.h"
#include "common/base/thread_name.h"
#include "common/event/timer.h"
#include "common/net/listener.h"
#include "common/stats/or_discard.h"
#include "sidecar/config/translate.h"
#include "sidecar/listener/access_log.h"

namespace meshlet::sidecar::server {

using cluster::Cluster;
using cluster::ClusterConfig;
using cluster::ClusterManagerOptions;
using cluster::EndpointTlsConfig;
using cluster::EndpointTransportFactory;
using cluster::HostSharedPtr;
using cluster::UsesTls;
using cluster::WorkerClusterManager;
using listener::HttpConnectionManager;
using listener::HttpStats;
using listener::WorkerContext;
using stream::AccessLogSink;

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
  MutexLock lock(&mu_);
  auto& entry = by_name_[listener_name];
  if (entry == nullptr) entry = std::make_shared<std::atomic<int64_t>>(0);
  return entry;
}

class Worker::ActiveListener {
 public:
  std::shared_ptr<const listener::ListenerContext> context;
  // The socket on config.address, then those on config.additional_addresses that were bound.
  std::vector<std::unique_ptr<net::Listener>> sockets;
};

namespace {

// Whether a listener of `before` keeps its sockets under `after`: the same addresses.
bool SameAddresses(const config::ListenerConfig& before, const config::ListenerConfig& after) {
  return before.address == after.address &&
         before.additional_addresses == after.additional_addresses;
}

}  // namespace

Worker::Worker(int index, WorkerShared shared) : index_(index), shared_(std::move(shared)) {}

Worker::~Worker() { Stop(); }

absl::Status Worker::Start(std::shared_ptr<const config::Snapshot> snapshot) {
  CHECK(!started_) << "Worker::Start called twice";
  started_ = true;
  Notification started;
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

void Worker::ThreadMain(std::shared_ptr<const config::Snapshot> snapshot, Notification& started,
                        absl::Status& start_status) {
  SetThreadName(absl::StrCat("worker-", index_));
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
          .overload = {.memory_pressure = shared_.memory_pressure,
                       .max_active_requests = shared_.max_active_requests,
                       .max_active_requests_setting = shared_.overload_max_active_requests,
                       .max_rss_mb = shared_.overload_max_rss_mb},
          .error_header = shared_.error_header,
          .node_name = shared_.node_name,
      },
      *clusters_,
      snapshot,
  });
  on_demand_ = std::make_unique<listener::OnDemandWaiters>(
      *loop_, *stats_,
      listener::OnDemandWaiters::Options{.request = shared_.request_lookup,
                                         .max_waiting = shared_.on_demand_max_waiting,
                                         .missing_ttl = shared_.on_demand_missing_ttl});
  context_->on_demand = on_demand_.get();
  mirrors_ = std::make_unique<router::Mirrors>(*loop_, *clusters_, shared_.max_mirrors_in_flight);
  context_->mirrors = mirrors_.get();
  if (shared_.decision_ring_size > 0) {
    const LabelSet worker = {{"worker", absl::StrCat(index_)}};
    const auto counter = [&](absl::string_view name, absl::string_view help) {
      return OrDiscard(stats_->RegisterCounter(name, help, worker), name);
    };
    decisions_ = std::make_unique<stream::DecisionRing>(
        shared_.decision_ring_size, index_,
        counter("meshlet_decision_records_total",
                "Decision records kept of failed and sampled requests, by worker thread."),
        counter("meshlet_decision_records_overwritten_total",
                "Decision records overwritten by newer ones (--decision-ring-size), by worker "
                "thread."),
        counter("meshlet_decision_attempts_dropped_total",
                "Upstream attempts beyond those a decision record keeps (8), by worker thread."));
    context_->decisions = decisions_.get();
  }
  if (shared_.route_stats_limit != nullptr) {
    route_stats_ = std::make_unique<route::RouteStats>(*stats_, *shared_.route_stats_limit);
    context_->route_stats = route_stats_.get();
  }
  absl::StatusOr<router::CorsStats> cors_stats = router::CorsStats::Create(*stats_);
  if (!cors_stats.ok()) LOG(ERROR) << "CORS stats: " << cors_stats.status();
  cors_stats_ =
      std::make_unique<router::CorsStats>(cors_stats.ok() ? *cors_stats : router::CorsStats());
  context_->cors = cors_stats_.get();
  if (shared_.tracing != nullptr) {
    const tracing::TracingConfig& tracing = *shared_.tracing;
    span_exporter_ = std::make_unique<tracing::SpanExporter>(*loop_, tracing, tracing.service_name,
                                                             shared_.trace_collector, *stats_,
                                                             *clock_, shared_.trace_channel);
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
  bind_errors_ =
      OrDiscard(stats_->RegisterCounter("meshlet_listener_bind_errors_total",
                                        "Listener binds that failed (start-up, reload or retry)."),
                "meshlet_listener_bind_errors_total");
  bind_retries_ = OrDiscard(
      stats_->RegisterCounter("meshlet_listener_bind_retries_total",
                              "Binds of an unbound listener tried again (--listener-bind-retry)."),
      "meshlet_listener_bind_retries_total");
  unbound_gauge_ =
      OrDiscard(stats_->RegisterGauge("meshlet_listeners_unbound",
                                      "Listeners configured but not bound (a bind error); the "
                                      "proxy is not ready while any is.",
                                      {}, GaugeMerge::kSum),
                "meshlet_listeners_unbound");

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
  mirrors_.reset();
  loop_->RunUntilIdle();
  on_demand_.reset();
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

void Worker::OnLookupAnswers(std::vector<config::LookupAnswer> answers) {
  if (!started_ || stopped_) return;
  loop_->Post([this, answers = std::move(answers)] { on_demand_->OnLookupAnswers(answers); });
}

void Worker::ForgetMissingLookups(std::vector<std::string> keys) {
  if (!started_ || stopped_) return;
  loop_->Post([this, keys = std::move(keys)] { on_demand_->ForgetMissing(keys); });
}

void Worker::StartDrain(Duration accept_for, bool keep_idle_http1) {
  if (!started_ || stopped_) return;
  loop_->Post([this, accept_for, keep_idle_http1] { DrainOnThread(accept_for, keep_idle_http1); });
}

void Worker::StopAccepting() {
  if (!started_ || stopped_) return;
  loop_->Post([this] {
    accepting_stopped_ = true;
    for (auto& [name, listener] : listeners_) {
      for (const std::unique_ptr<net::Listener>& socket : listener->sockets) {
        socket->StopAccepting();
      }
    }
    PublishListeners();
  });
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

std::vector<admin::ListenerStatus> Worker::listeners() const {
  MutexLock lock(&status_mu_);
  return listener_status_;
}

std::map<std::string, std::string, std::less<>> Worker::unbound_listeners() const {
  MutexLock lock(&status_mu_);
  return unbound_;
}

std::optional<std::vector<admin::ClusterStatus>> Worker::CollectClusters(Duration timeout) {
  if (!started_ || stopped_) return std::nullopt;
  struct Result {
    Notification done;
    std::vector<admin::ClusterStatus> clusters;
  };
  auto result = std::make_shared<Result>();
  loop_->Post([this, result] {
    for (const auto& [name, config] : context_->snapshot->clusters) {
      if (config == nullptr) continue;
      Cluster* cluster = clusters_->FindBuilt(name);
      if (cluster == nullptr) {
        // Not used on this worker: its configured endpoints, with the shared health-check
        // results, and nothing counted.
        result->clusters.push_back(
            admin::UnbuiltClusterStatus(*config, shared_.cluster_limits.host_health()));
        continue;
      }
      admin::ClusterStatus status{.name = name, .built = true};
      for (const HostSharedPtr& host : cluster->host_set().hosts()) {
        status.hosts.push_back(admin::HostStatus{.address = host->address().ToString(),
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
  if (!result->done.WaitForNotificationWithTimeout(timeout)) {
    return std::nullopt;
  }
  return std::move(result->clusters);
}

std::optional<std::string> Worker::CollectDecisions(std::string request_id, std::string trace_id,
                                                    Duration timeout) {
  if (!started_ || stopped_) return std::nullopt;
  struct Result {
    Notification done;
    std::string json;
  };
  auto result = std::make_shared<Result>();
  loop_->Post([this, result, request_id = std::move(request_id), trace_id = std::move(trace_id)] {
    if (decisions_ != nullptr) {
      bool first = true;
      decisions_->AppendJson(request_id, trace_id, &result->json, &first);
    }
    result->done.Notify();
  });
  if (!result->done.WaitForNotificationWithTimeout(timeout)) return std::nullopt;
  return std::move(result->json);
}

void Worker::WithTaps(std::function<void(stream::WorkerTap&)> task) {
  if (!started_ || stopped_) return;
  loop_->Post([this, task = std::move(task)] {
    task(taps_);
    stream::WorkerTap* tap = taps_.empty() ? nullptr : &taps_;
    context_->tap = tap;
    for (auto& [name, listener_context] : listener_worker_contexts_) {
      listener_context.context->tap = tap;
    }
  });
}

absl::Status Worker::Apply(std::shared_ptr<const config::Snapshot> snapshot, bool initial) {
  // The clusters changed since the snapshot this worker runs, when that is the one the new
  // snapshot's were taken from: then only those are compared (held until the Update below).
  const std::shared_ptr<const config::Snapshot> before = std::move(context_->snapshot);
  const std::vector<std::string>* changed_clusters =
      config::ChangedClustersSince(*snapshot, before.get());
  context_->snapshot = snapshot;
  for (auto& [name, listener_context] : listener_worker_contexts_) {
    listener_context.context->snapshot = snapshot;
  }
  // Shared with the snapshot, not copied: this worker builds a cluster when a request uses it.
  clusters_->Update(std::shared_ptr<const cluster::ClusterSet>(snapshot, &snapshot->clusters),
                    changed_clusters);
  absl::Status first_error;
  std::set<std::string, std::less<>> names;
  std::map<std::string, std::string, std::less<>> unbound;
  for (const config::ListenerConfig& config : snapshot->listeners) {
    names.insert(config.name);
    std::shared_ptr<const listener::ListenerContext> context =
        MakeListenerContext(config, snapshot);
    auto it = listeners_.find(config.name);
    if (it != listeners_.end() && SameAddresses(it->second->context->config, config)) {
      // Same socket; connections accepted from now on see the new settings.
      it->second->context = std::move(context);
      continue;
    }
    if (it != listeners_.end()) listeners_.erase(it);  // moved: close the old socket
    absl::Status bound = Bind(config, std::move(context));
    if (!bound.ok()) {
      if (first_error.ok()) first_error = bound;
      unbound[config.name] = std::string(bound.message());
    }
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
  bind_retry_delay_ = shared_.bind_retry_interval;
  SetUnbound(std::move(unbound));
  config_updates_.Inc();
  snapshots_applied_.fetch_add(1, std::memory_order_release);
  if (!initial) LOG(DEBUG) << "worker " << index_ << ": applied " << snapshot->version;
  return first_error;
}

absl::Status Worker::Bind(const config::ListenerConfig& config,
                          std::shared_ptr<const listener::ListenerContext> context) {
  if (draining_ && config.direction == config::TrafficDirection::kInbound) {
    return absl::OkStatus();
  }
  if (accepting_stopped_) return absl::OkStatus();
  auto active = std::make_unique<ActiveListener>();
  active->context = std::move(context);
  ActiveListener* raw = active.get();
  auto bind = [&](const net::Address& address, bool additional) -> absl::Status {
    net::ListenerOptions listener_options;
    listener_options.reuse_port = true;  // one socket per worker; the kernel spreads connections
    // An additional IPv6 wildcard sits beside the IPv4 one on the same port.
    listener_options.ipv6_only = additional;
    // Called just before the accept callback, with the same (current) listener context.
    listener_options.transport_factory = [raw] { return raw->context->NewTransport(); };
    absl::StatusOr<std::unique_ptr<net::Listener>> listener =
        net::Listener::Create(*loop_, address, std::move(listener_options),
                              [this, raw](std::unique_ptr<net::Connection> connection) {
                                OnAccept(raw->context, std::move(connection));
                              });
    if (!listener.ok()) {
      bind_errors_.Inc();
      absl::Status error =
          Annotate(listener.status(),
                   absl::StrCat("listener \"", config.name, "\" (", address.ToString(), ")"));
      LOG(ERROR) << "worker " << index_ << ": " << error.message();
      return error;
    }
    raw->sockets.push_back(std::move(*listener));
    return absl::OkStatus();
  };
  // The last worker also takes the sockets of this address a predecessor handed over that the
  // others did not (it ran more workers), so the connections queued on them are served.
  auto bind_with_leftovers = [&](const net::Address& address, bool additional) -> absl::Status {
    RETURN_IF_ERROR(bind(address, additional));
    if (index_ != shared_.worker_count - 1) return absl::OkStatus();
    for (int extra = 0; extra < 1024 && net::InheritedSocketCount(address, true) > 0; ++extra) {
      RETURN_IF_ERROR(bind(address, additional));
    }
    return absl::OkStatus();
  };
  absl::Status bound = bind_with_leftovers(config.address, false);
  for (const net::Address& address : config.additional_addresses) {
    if (!bound.ok()) break;
    if (!net::Listener::FamilyAvailable(address.family())) {
      if (index_ == 0) {
        LOG(INFO) << "listener " << config.name << ": " << address.ToString()
                  << " skipped: this kernel has no IPv6";
      }
      continue;
    }
    bound = bind_with_leftovers(address, true);
  }
  if (!bound.ok()) return bound;  // `active` goes, with any socket it bound
  listeners_[config.name] = std::move(active);
  return absl::OkStatus();
}

void Worker::SetUnbound(std::map<std::string, std::string, std::less<>> unbound) {
  unbound_gauge_.Set(static_cast<int64_t>(unbound.size()));
  if (unbound.empty() || shared_.bind_retry_interval <= Duration::zero()) {
    if (bind_retry_timer_ != nullptr) bind_retry_timer_->Disable();
  } else {
    if (bind_retry_timer_ == nullptr) {
      bind_retry_timer_ = std::make_unique<event::Timer>(*loop_, [this] { RetryUnbound(); });
    }
    bind_retry_timer_->Enable(bind_retry_delay_);
  }
  MutexLock lock(&status_mu_);
  unbound_ = std::move(unbound);
}

void Worker::RetryUnbound() {
  std::map<std::string, std::string, std::less<>> unbound;
  {
    MutexLock lock(&status_mu_);
    unbound = unbound_;
  }
  const std::shared_ptr<const config::Snapshot>& snapshot = context_->snapshot;
  for (const config::ListenerConfig& config : snapshot->listeners) {
    auto it = unbound.find(config.name);
    if (it == unbound.end()) continue;
    bind_retries_.Inc();
    absl::Status bound = Bind(config, MakeListenerContext(config, snapshot));
    if (bound.ok()) {
      LOG(INFO) << "worker " << index_ << ": listener " << config.name << " bound on a retry";
      unbound.erase(it);
    } else {
      it->second = std::string(bound.message());
    }
  }
  PublishListeners();
  bind_retry_delay_ = std::min(bind_retry_delay_ * 2, shared_.bind_retry_max);
  SetUnbound(std::move(unbound));
}

std::shared_ptr<const listener::ListenerContext> Worker::MakeListenerContext(
    const config::ListenerConfig& config, const std::shared_ptr<const config::Snapshot>& snapshot) {
  std::shared_ptr<listener::ListenerContext> context = listener::ListenerContext::Create(
      config, snapshot, *stats_,
      shared_.tls_contexts == nullptr ? nullptr : shared_.tls_contexts->ForListener(config.name),
      shared_.tls_refusal_log);
  context->connection_count = shared_.connection_counts.Get(config.name);
  context->access_log = shared_.global_access_log;
  if (!config.access_log_path.empty()) {
    absl::StatusOr<std::shared_ptr<listener::AccessLogFile>> file =
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
  return context;
}

void Worker::OnAccept(const std::shared_ptr<const listener::ListenerContext>& context,
                      std::unique_ptr<net::Connection> connection) {
  accepted_.Inc();
  context->cx_total.Inc();
  const int64_t count = context->connection_count->fetch_add(1, std::memory_order_relaxed) + 1;
  const uint32_t limit = context->config.max_connections;
  if (limit != 0 && count > static_cast<int64_t>(limit)) {
    context->connection_count->fetch_sub(1, std::memory_order_relaxed);
    context->rejected_overflow.Inc();
    LOG_EVERY_N_SEC(WARN, 1) << "listener " << context->config.name << ": max_connections ("
                             << limit << ") reached; closing new connections";
    connection->Close(net::CloseMode::kNoFlush);
    return;
  }
  listener::ConnectionOwner& owner = *this;
  auto active = std::make_unique<listener::ActiveConnection>(owner, context, std::move(connection));
  listener::ActiveConnection* raw = active.get();
  connections_.emplace(raw, std::move(active));
  raw->Start();
}

std::shared_ptr<const listener::ListenerContext> Worker::CurrentListenerContext(
    absl::string_view name) {
  auto it = listeners_.find(name);
  return it == listeners_.end() ? nullptr : it->second->context;
}

void Worker::OnConnectionDone(listener::ActiveConnection& connection) {
  auto node = connections_.extract(&connection);
  if (!node.empty()) loop_->DeferDelete(std::move(node.mapped()));
}

void Worker::DrainOnThread(Duration accept_for, bool keep_idle_http1) {
  if (draining_) return;
  draining_ = true;
  context_->draining = true;
  for (auto& [name, listener_context] : listener_worker_contexts_) {
    listener_context.context->draining = true;
  }
  if (accept_for > Duration::zero()) {
    stop_accepting_timer_ =
        std::make_unique<event::Timer>(*loop_, [this] { StopAcceptingInbound(); });
    stop_accepting_timer_->Enable(accept_for);
  } else {
    StopAcceptingInbound();
  }
  for (auto& [raw, connection] : connections_) connection->StartDrain(keep_idle_http1);
  PublishListeners();
}

void Worker::StopAcceptingInbound() {
  for (auto& [name, listener] : listeners_) {
    if (listener->context->config.direction == config::TrafficDirection::kInbound) {
      for (const std::unique_ptr<net::Listener>& socket : listener->sockets) {
        socket->StopAccepting();
      }
    }
  }
  PublishListeners();
}

void Worker::ShutdownOnThread() {
  stop_accepting_timer_.reset();
  bind_retry_timer_.reset();
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
  std::vector<admin::ListenerStatus> status;
  for (const auto& [name, listener] : listeners_) {
    for (const std::unique_ptr<net::Listener>& socket : listener->sockets) {
      status.push_back(admin::ListenerStatus{
          .name = name,
          .address = socket->address(),
          .accepting = socket->accepting(),
      });
    }
  }
  MutexLock lock(&status_mu_);
  listener_status_ = std::move(status);
}

}  // namespace meshlet::sidecar::server

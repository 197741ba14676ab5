#pragma once

// Worker: one thread running its own event loop with its own copy of every listener (bound with
// SO_REUSEPORT, so the kernel spreads new connections over the workers), its own clusters, stats
// shard and randomness. Nothing it does on the request path takes a lock (design.md §3).
//
// Accepted connections: each becomes a listener::ActiveConnection (sidecar/listener) with the
// listener's context as of the current snapshot; the worker is its ConnectionOwner.
// max_connections is enforced per listener across all workers (refusals counted in
// meshlet_downstream_cx_rejected_total{reason="overflow"}). On a listener with tls every
// connection gets a DownstreamTlsTransport from the listener's current context. Upstream,
// clusters with tls.enabled connect through a TlsTransport from their context.
//
// Configuration: the main thread posts each new snapshot (ApplySnapshot). The worker diffs the
// listeners by name: new ones bind, removed ones stop accepting (their connections carry on),
// changed ones take the new settings for connections accepted from then on. The snapshot's cluster
// set is shared with the cluster manager, which builds a cluster when a request on this worker
// first uses it and updates the ones it built in place (cluster_manager.h). Connections and
// requests in flight keep the snapshot they started with.
//
// Threading: the public methods are for the main thread (the thread that owns the Worker); they
// talk to the worker thread through Loop::Post. Stop() (or the destructor) closes every listener
// and connection on the worker thread, joins it, and frees everything in a safe order (connections,
// then clusters, then the loop, then the stats shard).

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "common/base/clock.h"
#include "common/base/random.h"
#include "common/base/sync.h"
#include "common/event/loop.h"
#include "common/event/turn_clock.h"
#include "common/net/address.h"
#include "common/stats/stats.h"
#include "sidecar/admin/admin_json.h"
#include "sidecar/cluster/cluster_manager.h"
#include "sidecar/config/lookup.h"
#include "sidecar/config/snapshot.h"
#include "sidecar/listener/access_log.h"
#include "sidecar/listener/active_connection.h"
#include "sidecar/listener/downstream_tls.h"
#include "sidecar/listener/http_stats.h"
#include "sidecar/listener/listener_context.h"
#include "sidecar/listener/on_demand_waiters.h"
#include "sidecar/listener/worker_context.h"
#include "sidecar/route/route_stats.h"
#include "sidecar/router/cors_stats.h"
#include "sidecar/router/mirror.h"
#include "sidecar/server/tls_contexts.h"
#include "sidecar/server/upstream_transport.h"
#include "sidecar/stream/decision_ring.h"
#include "sidecar/stream/tap.h"
#include "sidecar/tracing/exporter.h"
#include "sidecar/tracing/tracer.h"

namespace meshlet::sidecar::server {

// Process-wide connection counts per listener name, for max_connections. Entries live as long as
// the process; the counters are atomics shared by the workers (one fetch_add per accept).
class ListenerConnectionCounts {
 public:
  std::shared_ptr<std::atomic<int64_t>> Get(const std::string& listener_name);

 private:
  Mutex mu_;
  std::map<std::string, std::shared_ptr<std::atomic<int64_t>>> by_name_ ABSL_GUARDED_BY(mu_);
};

// What every worker shares; owned by the Server and outliving the workers. Thread-safe.
struct WorkerShared {
  StatsRegistry& stats;
  listener::AccessLogFiles& access_logs;
  std::shared_ptr<stream::AccessLogSink> global_access_log;  // --access-log; null: off
  ListenerConnectionCounts& connection_counts;
  cluster::SharedClusterLimits& cluster_limits;
  const Clock& clock = RealClock::Get();
  // TLS contexts of listeners and clusters; null: every TLS listener and cluster fails closed.
  const TlsContexts* tls_contexts = nullptr;
  // Which failed downstream TLS handshakes are logged; null: none are.
  listener::TlsRefusalLog* tls_refusal_log = nullptr;
  // The bootstrap's tracing section and the collector it names; null: tracing off. Each worker
  // runs its own Tracer and SpanExporter.
  const tracing::TracingConfig* tracing = nullptr;
  std::shared_ptr<const tracing::CollectorAddress> trace_collector;
  // OTLP/gRPC: the xDS channel's TLS (a thread-safe provider) and :authority.
  tracing::ControlPlaneChannel trace_channel;
  // Load shedding (stream::OverloadState): the monitor's memory flag (null: no memory limit),
  // and the requests each worker may have in flight (0: no limit).
  const std::atomic<bool>* memory_pressure = nullptr;
  uint64_t max_active_requests = 0;
  // The flags' values, for the decision records of shed requests.
  uint64_t overload_max_active_requests = 0;
  uint64_t overload_max_rss_mb = 0;
  // Mirror copies each worker may have in flight (--mirror-max-in-flight; router/mirror.h).
  uint64_t max_mirrors_in_flight = router::Mirrors::kDefaultMaxInFlight;
  // Error attribution (stream::StreamContext): the field's name (empty: off) and this proxy's
  // node name; the server owns both text.
  absl::string_view error_header;
  absl::string_view node_name;
  // Decision records each worker keeps (--decision-ring-size; stream/decision_ring.h); 0: none.
  size_t decision_ring_size = 0;
  // Which route rules get series (--max-route-stats; route/route_stats.h); null: no route-rule
  // series.
  route::RouteStatsLimit* route_stats_limit = nullptr;
  // An unbound listener (a port taken) is bound again after bind_retry_interval, then at
  // doubling intervals up to bind_retry_max (--listener-bind-retry, --listener-bind-retry-max);
  // zero interval: only when a snapshot configures it again.
  Duration bind_retry_interval = std::chrono::seconds(1);
  Duration bind_retry_max = std::chrono::seconds(30);
  // How many workers there are: the last one also takes the listening sockets a predecessor
  // handed over (net::AdoptListeningSockets) that the others did not, so none is left unserved.
  int worker_count = 1;
  // Asks the main thread to look `key` up (ADR 0086; a key of xds/protocol.h); called on a worker
  // thread, once per key a connection or request of that worker waits for. The answer comes back
  // through Worker::OnLookupAnswers. Null: no lookups (every wait ends disconnected at once).
  std::function<void(std::string key)> request_lookup;
  // Connections (and requests) each worker lets wait for lookups at once; past it they are served
  // without waiting, counted as overflow (--on-demand-max-waiting).
  size_t on_demand_max_waiting = listener::OnDemandWaiters::kDefaultMaxWaiting;
  // How long a worker answers a key the control plane answered not found so itself
  // (--on-demand-missing-ttl, as the main thread's table).
  Duration on_demand_missing_ttl = std::chrono::seconds(30);
};

class Worker final : private listener::ConnectionOwner {
 public:
  Worker(int index, WorkerShared shared);
  ~Worker();  // Stop()s if still running
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Starts the thread and applies `snapshot`; returns once every listener is bound, or with the
  // first bind error (the thread is then stopped).
  absl::Status Start(std::shared_ptr<const config::Snapshot> snapshot);
  // Applies a new snapshot on the worker thread (asynchronously).
  void ApplySnapshot(std::shared_ptr<const config::Snapshot> snapshot);
  // Answers to lookups (WorkerShared::request_lookup), called after the snapshot that carries
  // them was applied with ApplySnapshot, so the worker applies that snapshot first (Loop::Post is
  // FIFO). Asynchronous: the worker wakes the connections waiting for those keys.
  void OnLookupAnswers(std::vector<config::LookupAnswer> answers);
  // Keys answered not found that the main thread asks for again from now on (their missing_ttl
  // passed): the worker stops answering them not found itself. Asynchronous.
  void ForgetMissingLookups(std::vector<std::string> keys);
  // HTTP connections are told to wind down (GOAWAY / Connection: close), and so is every one
  // accepted from now on; inbound listeners stop accepting after `accept_for` (while callers
  // learn that this workload is going, a connection they open still gets its request served,
  // rather than refused). Outbound listeners keep working. Asynchronous.
  // With `keep_idle_http1`, idle HTTP/1.1 connections answer their next request (with
  // Connection: close) before closing, instead of closing at once (HttpConnectionManager::Drain).
  void StartDrain(Duration accept_for = Duration::zero(), bool keep_idle_http1 = false);
  // Every listener, inbound and outbound, stops accepting for good, and no new one is bound: this
  // process handed its sockets to a successor (hand_over.h). Asynchronous.
  void StopAccepting();
  // Closes everything and joins the thread. Idempotent.
  void Stop();
  // Stop() in two steps, so that several workers wind down at once (each may send its last spans,
  // bounded by the tracing export_timeout): RequestStop() asks, Stop() then joins.
  void RequestStop();

  int index() const { return index_; }
  // Downstream connections open on this worker (any thread may read it).
  int64_t active_connections() const { return active_connections_.load(std::memory_order_relaxed); }
  // Snapshot versions applied so far (any thread), for tests of configuration pushes.
  uint64_t snapshots_applied() const { return snapshots_applied_.load(std::memory_order_acquire); }
  // Listener states as of the last snapshot applied (any thread).
  std::vector<admin::ListenerStatus> listeners() const;
  // Listeners of the last snapshot applied that this worker could not bind (a port taken or
  // privileged), by name, with the bind error (any thread). Empty once each is bound; an unbound
  // listener is tried again after WorkerShared::bind_retry_interval, then at doubling intervals up
  // to bind_retry_max, and whenever a snapshot configures it again. Server::ready() is false
  // while any is.
  std::map<std::string, std::string, std::less<>> unbound_listeners() const;
  // Asks the worker thread for the state of every configured cluster (ClusterStatus::built says
  // whether it built it); nullopt if it does not answer in `timeout`.
  std::optional<std::vector<admin::ClusterStatus>> CollectClusters(Duration timeout);
  // Asks the worker thread for its decision records matching `request_id` and `trace_id` (empty:
  // any), newest first, as JSON objects joined by ","; nullopt if it does not answer in `timeout`.
  std::optional<std::string> CollectDecisions(std::string request_id, std::string trace_id,
                                              Duration timeout);
  // Runs `task` on the worker thread with the worker's live taps (stream/tap.h), then lets its
  // requests see them (StreamContext::tap) while any tap runs. Asynchronous; `task` may post its
  // results elsewhere. Dropped if the worker is not running.
  void WithTaps(std::function<void(stream::WorkerTap&)> task);

 private:
  class ActiveListener;

  void ThreadMain(std::shared_ptr<const config::Snapshot> snapshot, Notification& started,
                  absl::Status& start_status);
  // Worker thread: applies a snapshot; with `initial`, the first bind error is returned.
  absl::Status Apply(std::shared_ptr<const config::Snapshot> snapshot, bool initial);
  std::shared_ptr<const listener::ListenerContext> MakeListenerContext(
      const config::ListenerConfig& config,
      const std::shared_ptr<const config::Snapshot>& snapshot);
  // Binds `config`'s sockets into listeners_ (nothing while draining inbound or after
  // StopAccepting); the bind error otherwise, with nothing kept.
  absl::Status Bind(const config::ListenerConfig& config,
                    std::shared_ptr<const listener::ListenerContext> context);
  // Publishes the unbound listeners and arms the retry timer while there are any.
  void SetUnbound(std::map<std::string, std::string, std::less<>> unbound);
  void RetryUnbound();
  void OnAccept(const std::shared_ptr<const listener::ListenerContext>& context,
                std::unique_ptr<net::Connection> connection);

  // listener::ConnectionOwner (worker thread).
  event::Loop& loop() override { return *loop_; }
  const Clock& clock() override { return *clock_; }
  cluster::ClusterManager& clusters() override { return *clusters_; }
  listener::HttpStats& http_stats() override { return *http_stats_; }
  void CountConnection(int delta) override {
    active_connections_.fetch_add(delta, std::memory_order_relaxed);
  }
  void OnConnectionDone(listener::ActiveConnection& connection) override;
  listener::OnDemandWaiters& on_demand() override { return *on_demand_; }
  std::shared_ptr<const listener::ListenerContext> CurrentListenerContext(
      absl::string_view name) override;
  void DrainOnThread(Duration accept_for, bool keep_idle_http1);
  void StopAcceptingInbound();
  void ShutdownOnThread();
  void PublishListeners();

  const int index_;
  WorkerShared shared_;
  std::thread thread_;
  bool started_ = false;
  bool stopped_ = false;
  bool stop_requested_ = false;

  // Worker-thread state. loop_ is set before Start() returns and reset after the thread ends.
  std::unique_ptr<event::Loop> loop_;
  // shared_.clock read once per loop turn: what this worker's requests use (turn_clock.h).
  std::unique_ptr<event::TurnClock> clock_;
  std::unique_ptr<StatsShard> stats_;
  std::unique_ptr<RealRandom> random_;
  std::unique_ptr<tracing::SpanExporter> span_exporter_;  // null: tracing off
  std::unique_ptr<tracing::Tracer> tracer_;               // null: tracing off
  std::unique_ptr<cluster::WorkerClusterManager> clusters_;
  std::unique_ptr<router::Mirrors> mirrors_;         // copies in flight hold clusters: goes first
  std::unique_ptr<stream::DecisionRing> decisions_;  // null: --decision-ring-size 0
  stream::WorkerTap taps_;  // the live taps; the contexts point at it while it is not empty
  std::unique_ptr<route::RouteStats> route_stats_;  // null: no route-rule series
  std::unique_ptr<router::CorsStats> cors_stats_;
  // Connections waiting for lookups hold handles into it: outlives them.
  std::unique_ptr<listener::OnDemandWaiters> on_demand_;
  // What the HTTP connection manager and router see; `snapshot` is the current one.
  std::unique_ptr<listener::WorkerContext> context_;
  // Copies of context_ that differ only in the access log, one per listener name ever configured,
  // so each listener's HTTP connections log where that listener says. Kept (and kept current)
  // after a listener is removed, because its connections still refer to it.
  struct ListenerWorkerContext {
    std::unique_ptr<listener::WorkerContext> context;
    std::shared_ptr<stream::AccessLogSink> access_log;
  };
  std::map<std::string, ListenerWorkerContext, std::less<>> listener_worker_contexts_;
  std::unique_ptr<listener::HttpStats> http_stats_;
  std::map<std::string, std::unique_ptr<ActiveListener>, std::less<>> listeners_;
  absl::flat_hash_map<listener::ActiveConnection*, std::unique_ptr<listener::ActiveConnection>>
      connections_;
  bool draining_ = false;
  bool accepting_stopped_ = false;  // StopAccepting(): no listener binds any more
  std::unique_ptr<event::Timer> stop_accepting_timer_;  // the drain's accept_for
  std::unique_ptr<event::Timer> bind_retry_timer_;      // armed while a listener is unbound
  Duration bind_retry_delay_{0};                        // the next retry's delay (doubling)
  Counter accepted_;                                    // meshlet_worker_cx_accepted_total{worker}
  Counter config_updates_;  // meshlet_worker_config_updates_total{worker}
  Counter bind_errors_;     // meshlet_listener_bind_errors_total
  Counter bind_retries_;    // meshlet_listener_bind_retries_total
  Gauge unbound_gauge_;     // meshlet_listeners_unbound (this worker's share)

  std::atomic<int64_t> active_connections_{0};
  std::atomic<uint64_t> snapshots_applied_{0};
  mutable Mutex status_mu_;
  std::vector<admin::ListenerStatus> listener_status_ ABSL_GUARDED_BY(status_mu_);
  std::map<std::string, std::string, std::less<>> unbound_ ABSL_GUARDED_BY(status_mu_);
};

}  // namespace meshlet::sidecar::server

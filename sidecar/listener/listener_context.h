#pragma once

// ListenerContext: what a connection needs from the listener that accepted it, as of one
// configuration snapshot: the listener's settings, its TLS context, its access log, the worker
// context its HTTP connections run in, and its stat handles on the accepting worker's shard.
//
// Ownership and threading: the worker builds one per listener and snapshot on its loop thread
// (Create, then fills in the worker's parts) and shares it with the connections it accepts,
// which keep the one they were accepted with. Immutable once shared. The counters are handles of
// that worker's stats shard; `worker_context` and `tls_refusal_log` must outlive it. `config` is
// the snapshot's own ListenerConfig, not a copy: every worker's context of one snapshot reads the
// same one, which `snapshot` keeps alive. Never copied or moved once made: `matcher` refers to
// `config`.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "common/net/transport.h"
#include "common/stats/stats.h"
#include "common/tls/client_hello.h"
#include "common/tls/tls_context_provider.h"
#include "sidecar/config/snapshot.h"
#include "sidecar/listener/capture_stats.h"
#include "sidecar/listener/destination_matcher.h"
#include "sidecar/listener/downstream_tls.h"
#include "sidecar/listener/http1_host.h"
#include "sidecar/listener/tcp_proxy.h"
#include "sidecar/listener/worker_context.h"

namespace meshlet::sidecar::listener {

struct ListenerContext {
  // A context for `config`, which must be one of `snapshot`'s listeners (checked), with its stats
  // registered on `shard` (a registration that fails leaves a discarding handle and is logged).
  // `tls_provider` is the listener's TLS context (ignored unless the listener has TLS; null
  // there: its connections are refused); `tls_refusal_log` may be null.
  static std::shared_ptr<ListenerContext> Create(
      const config::ListenerConfig& config, std::shared_ptr<const config::Snapshot> snapshot,
      StatsShard& shard, std::shared_ptr<const tls::TlsContextProvider> tls_provider,
      TlsRefusalLog* tls_refusal_log);

  // Use Create(); `config` must live as long as `snapshot`.
  ListenerContext(const config::ListenerConfig& config,
                  std::shared_ptr<const config::Snapshot> snapshot)
      : config(config), snapshot(std::move(snapshot)) {}
  ListenerContext(const ListenerContext&) = delete;
  ListenerContext& operator=(const ListenerContext&) = delete;

  const config::ListenerConfig& config;  // an element of snapshot->listeners
  const std::shared_ptr<const config::Snapshot> snapshot;
  std::shared_ptr<std::atomic<int64_t>> connection_count;  // process-wide, for max_connections
  std::shared_ptr<AccessLogSink> access_log;               // null: off
  WorkerContext* worker_context = nullptr;                 // for HTTP connections

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

  // Capture listeners (config.use_original_destination), and listeners with destinations by
  // server name: what serves each connection; connections refused for want of a destination
  // (opaque bytes, or silence; an unknown server name or host) are rejected with reason
  // "unmatched_destination". The count of the decisions: capture listeners only.
  std::optional<DestinationMatcher> matcher;
  CaptureStats capture;
  // Listeners that route TLS by server name: their connections' first bytes, by
  // tls::ClientHello::Status (kNeedMoreBytes: ended or timed out before a whole ClientHello).
  std::array<Counter, 5> client_hellos;
  // Capture listeners that route plain HTTP by Host: their connections' first request heads, by
  // Http1Host::Status (kNeedMoreBytes: ended or timed out before a whole head).
  std::array<Counter, kHttp1HostStatusCount> http_hosts;
  Counter rejected_unmatched_destination;
  Counter original_destination_errors;  // ReadOriginalDestination failed: served as not redirected

  bool has_tls() const { return config.tls.mode != config::DownstreamTlsConfig::Mode::kDisable; }
  // The transport of a connection accepted now.
  std::unique_ptr<net::Transport> NewTransport() const;
};

}  // namespace meshlet::sidecar::listener

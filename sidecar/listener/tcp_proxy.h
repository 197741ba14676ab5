#pragma once

// TcpProxy: forwards the bytes of one downstream connection to one upstream connection and back,
// for TCP listeners, opaque traffic on AUTO listeners and TLS passthrough.
//
// - The upstream endpoint comes from the cluster's load balancer (Cluster::ChooseHost); the
//   connect timeout is the cluster's. A connect failure closes the downstream connection (counted)
//   and is reported to the cluster's outlier detector as a gateway error. The upstream connection
//   uses the transport the cluster has for the chosen endpoint (Cluster::TransportFor: TLS
//   origination, or plaintext for an endpoint marked so); a TLS handshake that fails counts as a
//   connect failure. An endpoint that needs TLS but has no transport (a cluster made without
//   one) is refused rather than sent plaintext.
// - Backpressure both ways: when one side's write buffer passes its high watermark, reading from
//   the other side stops until it falls to the low watermark, so a fast sender never makes the
//   proxy buffer more than about one watermark per direction.
// - Half-close: a FIN from one side becomes a write shutdown towards the other; the pair closes
//   once both directions have finished (or either side fails, which closes the other after
//   flushing what is buffered; a reset is passed on as a reset).
// - Idle timeout: with no byte moving either way for `idle_timeout` (read from, or written to,
//   either side), both sides are closed (their buffers flushed first), counted and logged with
//   failure "idle_timeout". Reads only stamp a time and writes are seen through the connections'
//   byte counts when the timer fires, so busy connections do not re-arm it per read.
// - Bytes are counted as they move; one access-log line is written when the pair is done.
// - StartTo() instead of Start(): a fixed upstream address (a capture listener's passthrough),
//   plaintext, with no cluster — no host choice, no cluster or host stats, no outlier reports.
//
// Ownership and threading: created on a worker's loop thread, which it never leaves. It owns both
// connections. `on_done` fires exactly once, from a loop callback (or from inside Start() when no
// upstream can be chosen), after which the owner must destroy the proxy with Loop::DeferDelete —
// never directly from inside on_done's caller's stack. The ClusterManager is used only in
// Start(); the clock and access log must outlive the proxy.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/net/connection.h"
#include "common/stats/stats.h"
#include "sidecar/cluster/cluster.h"
#include "sidecar/cluster/host.h"
#include "sidecar/listener/worker_context.h"

namespace meshlet::sidecar::listener {

// Handles into one worker's stats shard, per listener. Default handles discard.
struct TcpProxyStats {
  Counter connections;       // meshlet_tcp_proxy_cx_total
  Counter connect_failures;  // meshlet_tcp_proxy_connect_fail_total (refused, timeout...)
  Counter no_healthy_host;   // meshlet_tcp_proxy_no_healthy_host_total (or no such cluster)
  Counter idle_timeouts;     // meshlet_tcp_proxy_idle_timeout_total
  Counter received_bytes;    // meshlet_tcp_proxy_received_bytes_total (downstream → upstream)
  Counter sent_bytes;        // meshlet_tcp_proxy_sent_bytes_total (upstream → downstream)
  Gauge active;              // meshlet_tcp_proxy_cx_active

  // Registers the listener's series on `shard` (failures leave discarding handles and are logged).
  static TcpProxyStats Create(StatsShard& shard, const std::string& listener_name);
};

class TcpProxy {
 public:
  using DoneCallback = absl::AnyInvocable<void()>;
  // `idle_timeout` zero: never closed for idleness.
  TcpProxy(event::Loop& loop, cluster::ClusterManager& clusters, const Clock& clock,
           TcpProxyStats stats, AccessLogSink* access_log, std::string listener_name,
           std::string cluster_name, Duration idle_timeout,
           std::unique_ptr<net::Connection> downstream, DoneCallback on_done);
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  // Chooses the upstream and starts connecting; `initial_bytes` (already read from downstream,
  // e.g. during protocol detection) are sent first.
  void Start(net::Buffer initial_bytes);
  // Connects to `upstream` in plaintext instead (the cluster name is only logged).
  void StartTo(const net::Address& upstream, Duration connect_timeout, net::Buffer initial_bytes);
  // What the access log says about where the bytes went: e.g. the capture listener's original
  // destination. Empty: nothing. Set before Start. (The log also names the server a TLS client
  // asked for, `requested_server_name`, when the initial bytes hold its whole ClientHello.)
  void set_original_destination(std::string address) { original_destination_ = std::move(address); }

  bool done() const { return done_; }
  uint64_t received_bytes() const { return received_bytes_; }
  uint64_t sent_bytes() const { return sent_bytes_; }

 private:
  class Side : public net::ConnectionCallbacks {
   public:
    Side(TcpProxy& proxy, bool upstream) : proxy_(proxy), upstream_(upstream) {}
    void OnConnected() override;
    void OnData(net::Buffer& data, bool end_stream) override;
    void OnWriteHighWatermark() override;
    void OnWriteLowWatermark() override;
    void OnClose(net::CloseReason reason, const absl::Status& detail) override;

   private:
    TcpProxy& proxy_;
    const bool upstream_;
  };

  net::Connection* Other(bool upstream) { return upstream ? downstream_.get() : upstream_.get(); }
  // Start's common first steps: counters, timers.
  void Begin();
  // Keeps the SNI of the ClientHello at the front of `initial` for the access log.
  void NoteServerName(const net::Buffer& initial);
  // Connects to upstream_address_ and sends `initial_bytes`.
  void Connect(Duration timeout, const net::TransportFactory& transport, net::Buffer initial_bytes);
  void OnUpstreamConnected();
  void OnSideData(bool upstream, net::Buffer& data, bool end_stream);
  void OnSideClose(bool upstream, net::CloseReason reason, const absl::Status& detail);
  // Reports the connect outcome to the cluster (outlier detection).
  void ReportConnectResult(bool success);
  void MaybeFinish();
  void WriteAccessLog();
  void OnIdleTimer();
  uint64_t WireBytesSent() const;  // both sides, so far

  event::Loop& loop_;
  cluster::ClusterManager& clusters_;
  const Clock& clock_;
  TcpProxyStats stats_;
  AccessLogSink* access_log_;
  const std::string listener_name_;
  const std::string cluster_name_;
  const Duration idle_timeout_;
  DoneCallback on_done_;
  event::Timer idle_timer_;
  MonotonicTime last_activity_{};  // loop time of the last byte read, or of a write seen
  uint64_t wire_bytes_sent_at_check_ = 0;
  bool idle_closing_ = false;  // closed by the idle timeout

  Side downstream_callbacks_{*this, /*upstream=*/false};
  Side upstream_callbacks_{*this, /*upstream=*/true};
  std::unique_ptr<net::Connection> downstream_;
  std::unique_ptr<net::Connection> upstream_;
  // Keeps the cluster (and its circuit-breaker counters) alive even if a configuration change
  // removes it while this connection lasts.
  cluster::ClusterRef cluster_;
  cluster::HostSharedPtr host_;
  net::Address upstream_address_;  // once a connect started
  std::string original_destination_;
  // The SNI of a TLS ClientHello that was whole in the initial bytes (access log only).
  std::string requested_server_name_;
  cluster::Host::RequestGuard host_request_;
  bool probe_ = false;
  std::optional<GaugeGuard> active_;

  MonotonicTime start_;
  absl::Time start_wall_;
  bool tcp_connected_ = false;
  bool connected_ = false;  // TCP connected and, with TLS, the handshake done
  bool downstream_closed_ = false;
  bool upstream_closed_ = true;  // until a connect starts
  bool done_ = false;
  std::string failure_;  // empty, or why the pair ended abnormally (access log)
  uint64_t received_bytes_ = 0;
  uint64_t sent_bytes_ = 0;
};

}  // namespace meshlet::sidecar::listener

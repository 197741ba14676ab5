#pragma once

// TcpUpstream: the upstream of an allowed CONNECT request (docs/operations.md), for the Router
// (router.h): one TCP connection to one host of the route's cluster, not pooled (a tunnel is never
// reused). Bytes go straight between it and the downstream stream. It reports the connect outcome
// to the cluster's outlier detection once. A tunnel may outlive its host's place in the cluster (a
// configuration update), so it holds a reference to the host, as the TCP proxy does.
//
// Ownership and callbacks: the router owns it and outlives it; the connection's callbacks reach
// the router (Router::OnTcpUpstream*, Router::OnUpstream*) on the worker's loop thread. After
// Reset() no callback follows. Made only for CONNECT, so it is an ordinary heap object.

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "common/base/clock.h"
#include "common/net/buffer.h"
#include "common/net/connection.h"
#include "common/stats/stats.h"
#include "sidecar/cluster/cluster.h"
#include "sidecar/resilience/outlier_detector.h"

namespace meshlet::sidecar::router {

class Router;

class TcpUpstream final : public net::ConnectionCallbacks {
 public:
  // A connection to `host` of `cluster` (`probe`: the outlier detector's probe of an ejected
  // host). `host` must be in `cluster`'s host set.
  TcpUpstream(Router& router, cluster::Cluster& cluster, cluster::Host& host, bool probe);
  ~TcpUpstream() override { Reset(); }
  TcpUpstream(const TcpUpstream&) = delete;
  TcpUpstream& operator=(const TcpUpstream&) = delete;

  // Connects, within the cluster's connect timeout.
  void Start();

  bool connected() const { return connected_; }

  // Bytes for the upstream; `end_stream` half-closes towards it (the answer may still come).
  void Write(net::Buffer& data, bool end_stream);
  void ReadDisable(bool disable);

  // Lets the connection go (flushing what was written, as far as this loop turn allows); no
  // callback follows.
  void Reset();

  // net::ConnectionCallbacks
  void OnConnected() override;
  void OnData(net::Buffer& data, bool end_stream) override;
  void OnWriteHighWatermark() override;
  void OnWriteLowWatermark() override;
  void OnClose(net::CloseReason reason, const absl::Status& detail) override;

 private:
  static cluster::HostSharedPtr SharedHost(cluster::Cluster& cluster, cluster::Host& host);
  // The connect outcome goes to outlier detection once; `report` false only settles a probe.
  void ReportOnce(resilience::HostResult result, bool report);

  Router& router_;
  cluster::Cluster& cluster_;
  const cluster::HostSharedPtr host_;  // before host_request_, which points into it
  const uint64_t host_id_;
  const bool probe_;
  std::optional<GaugeGuard> active_;
  cluster::Host::RequestGuard host_request_;
  std::unique_ptr<net::Connection> connection_;
  MonotonicTime start_{};
  bool connected_ = false;
  bool reported_ = false;
};

}  // namespace meshlet::sidecar::router

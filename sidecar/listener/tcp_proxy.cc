#include "sidecar/listener/tcp_proxy.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/stats/or_discard.h"
#include "common/tls/client_hello.h"
#include "sidecar/cluster/upstream_stats.h"
#include "sidecar/listener/access_log.h"

namespace meshlet::sidecar::listener {

using cluster::Cluster;
using cluster::ClusterManager;
using cluster::Host;
using cluster::HostSharedPtr;
using cluster::UsesTls;

TcpProxyStats TcpProxyStats::Create(StatsShard& shard, const std::string& listener_name) {
  const LabelSet labels = {{"listener", listener_name}};
  TcpProxyStats s;
  s.connections = OrDiscard(
      shard.RegisterCounter("meshlet_tcp_proxy_cx_total", "TCP proxy connections started.", labels),
      "meshlet_tcp_proxy_cx_total");
  s.connect_failures = OrDiscard(
      shard.RegisterCounter("meshlet_tcp_proxy_connect_fail_total",
                            "TCP proxy upstream connects that failed or timed out.", labels),
      "meshlet_tcp_proxy_connect_fail_total");
  s.no_healthy_host =
      OrDiscard(shard.RegisterCounter(
                    "meshlet_tcp_proxy_no_healthy_host_total",
                    "TCP proxy connections closed: no cluster or no usable endpoint.", labels),
                "meshlet_tcp_proxy_no_healthy_host_total");
  s.idle_timeouts =
      OrDiscard(shard.RegisterCounter(
                    "meshlet_tcp_proxy_idle_timeout_total",
                    "TCP proxy connections closed after tcp_idle_timeout without a byte.", labels),
                "meshlet_tcp_proxy_idle_timeout_total");
  s.received_bytes = OrDiscard(
      shard.RegisterCounter("meshlet_tcp_proxy_received_bytes_total",
                            "Bytes the TCP proxy read from downstream and sent upstream.", labels),
      "meshlet_tcp_proxy_received_bytes_total");
  s.sent_bytes = OrDiscard(
      shard.RegisterCounter("meshlet_tcp_proxy_sent_bytes_total",
                            "Bytes the TCP proxy read from upstream and sent downstream.", labels),
      "meshlet_tcp_proxy_sent_bytes_total");
  s.active = OrDiscard(
      shard.RegisterGauge("meshlet_tcp_proxy_cx_active", "TCP proxy connections open.", labels),
      "meshlet_tcp_proxy_cx_active");
  return s;
}

TcpProxy::TcpProxy(event::Loop& loop, ClusterManager& clusters, const Clock& clock,
                   TcpProxyStats stats, AccessLogSink* access_log, std::string listener_name,
                   std::string cluster_name, Duration idle_timeout,
                   std::unique_ptr<net::Connection> downstream, DoneCallback on_done)
    : loop_(loop),
      clusters_(clusters),
      clock_(clock),
      stats_(stats),
      access_log_(access_log),
      listener_name_(std::move(listener_name)),
      cluster_name_(std::move(cluster_name)),
      idle_timeout_(idle_timeout),
      on_done_(std::move(on_done)),
      idle_timer_(loop, [this] { OnIdleTimer(); }),
      downstream_(std::move(downstream)) {
  downstream_->SetCallbacks(&downstream_callbacks_);
}

TcpProxy::~TcpProxy() {
  // Destroying connections never calls callbacks; detach anyway so nothing can reach us.
  if (upstream_ != nullptr) upstream_->SetCallbacks(nullptr);
  downstream_->SetCallbacks(nullptr);
  // A half-open host's probe that never finished connecting: free the probe slot.
  if (probe_ && host_ != nullptr && cluster_.cluster != nullptr) {
    cluster_.cluster->CancelProbe(*host_);
  }
}

void TcpProxy::Begin() {
  // Exact, not the turn's shared reading: a connection refused at once (no cluster, no host)
  // ends in the turn it started and would log a duration of zero.
  start_ = clock_.ExactNow();
  start_wall_ = clock_.WallNow();
  stats_.connections.Inc();
  active_.emplace(stats_.active);
  last_activity_ = loop_.Now();
  if (idle_timeout_ > Duration::zero()) idle_timer_.Enable(idle_timeout_);
}

void TcpProxy::NoteServerName(const net::Buffer& initial) {
  // Only for the log, and only what is there already: a TLS handshake record's ClientHello.
  constexpr size_t kMaxHello = 16 * 1024;
  if (access_log_ == nullptr || initial.length() < 5 || !initial.StartsWith("\x16\x03")) return;
  std::string front(std::min(initial.length(), kMaxHello + 64), '\0');
  front.resize(initial.CopyOut(0, front.data(), front.size()));
  tls::ClientHello hello = tls::ParseClientHello(front, {.max_bytes = kMaxHello});
  if (hello.status == tls::ClientHello::Status::kOk) {
    requested_server_name_ = std::move(hello.server_name);
  }
}

void TcpProxy::StartTo(const net::Address& upstream, Duration connect_timeout,
                       net::Buffer initial_bytes) {
  Begin();
  NoteServerName(initial_bytes);
  upstream_address_ = upstream;
  Connect(connect_timeout, nullptr, std::move(initial_bytes));
}

void TcpProxy::Connect(Duration timeout, const net::TransportFactory& transport,
                       net::Buffer initial_bytes) {
  upstream_closed_ = false;
  upstream_ = net::Connection::Connect(loop_, upstream_address_, timeout, transport);
  upstream_->SetCallbacks(&upstream_callbacks_);
  if (!initial_bytes.empty()) {
    received_bytes_ += initial_bytes.length();
    stats_.received_bytes.Inc(initial_bytes.length());
    if (cluster_.stats != nullptr) cluster_.stats->tx_bytes.Inc(initial_bytes.length());
    upstream_->Write(initial_bytes);
  }
}

void TcpProxy::Start(net::Buffer initial_bytes) {
  Begin();
  NoteServerName(initial_bytes);
  if (!cluster_name_.empty()) cluster_ = clusters_.Get(cluster_name_);
  Cluster* cluster = cluster_.cluster.get();
  Host* host = nullptr;
  if (cluster != nullptr) {
    Cluster::HostSelection selection = cluster->ChooseHost();
    host = selection.host;
    probe_ = selection.probe;
    // Locality-aware picks are counted as the router counts them.
    if (host != nullptr && selection.locality.has_value() && cluster_.stats != nullptr) {
      cluster_.stats->rq_locality[static_cast<size_t>(*selection.locality)].Inc();
    }
    if (host != nullptr) {
      for (const HostSharedPtr& candidate : cluster->host_set().hosts()) {
        if (candidate.get() == host) host_ = candidate;
      }
    }
  }
  if (host_ == nullptr) {
    stats_.no_healthy_host.Inc();
    failure_ = cluster == nullptr ? "no_cluster" : "no_healthy_host";
    LOG_EVERY_N_SEC(DEBUG, 1) << "listener " << listener_name_ << ": " << failure_ << " for \""
                              << cluster_name_ << "\"; closing downstream";
    downstream_->Close(net::CloseMode::kNoFlush);
    return;
  }
  const net::TransportFactory& transport = cluster->TransportFor(*host);
  if (UsesTls(cluster->config(), host->tls()) && transport == nullptr) {
    // Plaintext to a TLS upstream would leak what the configuration meant to protect.
    stats_.connect_failures.Inc();
    failure_ = "upstream_tls_unavailable";
    LOG_EVERY_N_SEC(WARN, 60) << "listener " << listener_name_ << ": cluster " << cluster_name_
                              << " asks for TLS but has no TLS transport; connection refused";
    downstream_->Close(net::CloseMode::kNoFlush);
    return;
  }
  host_request_ = Host::RequestGuard(*host_);
  ++host_->mutable_stats().rq_total;
  // The cluster's own series too (connections opened, bytes each way), which the golden metrics
  // report per source -> destination, as for HTTP.
  if (cluster_.stats != nullptr) cluster_.stats->cx_total.Inc();
  upstream_address_ = host_->address();
  Connect(cluster->config().connect_timeout, transport, std::move(initial_bytes));
}

void TcpProxy::Side::OnConnected() {
  if (upstream_) proxy_.OnUpstreamConnected();
}
void TcpProxy::Side::OnData(net::Buffer& data, bool end_stream) {
  proxy_.OnSideData(upstream_, data, end_stream);
}
// This side's write buffer is full: stop reading from the side that fills it.
void TcpProxy::Side::OnWriteHighWatermark() {
  if (net::Connection* other = proxy_.Other(upstream_); other != nullptr) other->ReadDisable();
}
void TcpProxy::Side::OnWriteLowWatermark() {
  if (net::Connection* other = proxy_.Other(upstream_); other != nullptr) other->ReadEnable();
}
void TcpProxy::Side::OnClose(net::CloseReason reason, const absl::Status& detail) {
  proxy_.OnSideClose(upstream_, reason, detail);
}

void TcpProxy::OnUpstreamConnected() {
  tcp_connected_ = true;
  // With TLS the handshake is still to come: success is reported once it completed.
  if (!upstream_->transport().HandshakeComplete()) return;
  connected_ = true;
  ReportConnectResult(true);
}

void TcpProxy::OnSideData(bool upstream, net::Buffer& data, bool end_stream) {
  if (upstream && !connected_ && tcp_connected_ && upstream_->transport().HandshakeComplete()) {
    connected_ = true;
    ReportConnectResult(true);
  }
  const size_t n = data.length();
  if (n > 0) last_activity_ = loop_.Now();
  if (upstream) {
    sent_bytes_ += n;
    stats_.sent_bytes.Inc(n);
    if (cluster_.stats != nullptr) cluster_.stats->rx_bytes.Inc(n);
  } else {
    received_bytes_ += n;
    stats_.received_bytes.Inc(n);
    if (cluster_.stats != nullptr) cluster_.stats->tx_bytes.Inc(n);
  }
  net::Connection* other = Other(upstream);
  if (other == nullptr || other->closed()) {
    data.Clear();
    return;
  }
  if (n > 0) other->Write(data);
  if (end_stream) other->ShutdownWrite();
}

void TcpProxy::OnSideClose(bool upstream, net::CloseReason reason, const absl::Status& detail) {
  if (upstream) {
    upstream_closed_ = true;
  } else {
    downstream_closed_ = true;
  }
  if (upstream && !connected_ && tcp_connected_ && upstream_->transport().HandshakeComplete()) {
    connected_ = true;  // a TLS upstream that closed right after its handshake
    ReportConnectResult(true);
  }
  if (upstream && !connected_ && !downstream_closed_ && !idle_closing_) {
    // The connect (or TLS handshake) failed or timed out: give up on downstream. (Not when the
    // idle timeout closed it: the host did nothing wrong.)
    stats_.connect_failures.Inc();
    failure_ = absl::StrCat("upstream_", net::CloseReasonName(reason));
    if (reason == net::CloseReason::kTransportError) {
      // As for HTTP upstreams (conn_pool.cc): a refused certificate or identity.
      if (cluster_.stats != nullptr) cluster_.stats->cx_tls_handshake_fail.Inc();
      LOG_EVERY_N_SEC(WARN, 1) << "listener " << listener_name_ << ": upstream "
                               << upstream_address_.ToString()
                               << ": TLS handshake failed: " << detail.message();
    } else {
      LOG_EVERY_N_SEC(DEBUG, 1) << "listener " << listener_name_ << ": connect to "
                                << upstream_address_.ToString() << " failed: " << detail;
    }
    ReportConnectResult(false);
    downstream_->Close(net::CloseMode::kNoFlush);
  } else if (net::Connection* other = Other(upstream); other != nullptr && !other->closed()) {
    if (reason != net::CloseReason::kEndOfStream && reason != net::CloseReason::kLocalClose &&
        failure_.empty()) {
      failure_ = absl::StrCat(upstream ? "upstream_" : "downstream_", net::CloseReasonName(reason));
    }
    // Deliver what the other side still has buffered unless this side was reset: a reset is
    // passed on as a reset so the peer does not take a truncated stream for a complete one.
    other->Close(reason == net::CloseReason::kRemoteReset ? net::CloseMode::kAbort
                                                          : net::CloseMode::kFlush);
  }
  MaybeFinish();
}

uint64_t TcpProxy::WireBytesSent() const {
  return downstream_->bytes_sent() + (upstream_ != nullptr ? upstream_->bytes_sent() : 0);
}

void TcpProxy::OnIdleTimer() {
  if (done_) return;
  // Bytes written count too: a slow reader drains a full buffer while reads are paused for it.
  if (const uint64_t sent = WireBytesSent(); sent != wire_bytes_sent_at_check_) {
    wire_bytes_sent_at_check_ = sent;
    last_activity_ = loop_.Now();
  }
  const Duration quiet = loop_.Now() - last_activity_;
  if (quiet < idle_timeout_) {
    idle_timer_.Enable(idle_timeout_ - quiet);
    return;
  }
  stats_.idle_timeouts.Inc();
  idle_closing_ = true;
  if (failure_.empty()) failure_ = "idle_timeout";
  LOG_EVERY_N_SEC(DEBUG, 1) << "listener " << listener_name_ << ": TCP connection idle for "
                            << absl::FormatDuration(absl::FromChrono(idle_timeout_)) << "; closing";
  // Each close may finish the pair (MaybeFinish runs on_done, which schedules our deletion at
  // the end of the turn), so `this` stays valid here.
  if (upstream_ != nullptr && !upstream_->closed()) upstream_->Close(net::CloseMode::kFlush);
  if (!downstream_->closed()) downstream_->Close(net::CloseMode::kFlush);
}

void TcpProxy::ReportConnectResult(bool success) {
  if (host_ == nullptr || cluster_.cluster == nullptr) return;
  Cluster* cluster = cluster_.cluster.get();
  const bool probe = probe_;
  probe_ = false;
  if (!success) ++host_->mutable_stats().cx_connect_fail;
  // A host the cluster dropped meanwhile no longer feeds its outlier detector.
  if (cluster->host_set().FindById(host_->id()) != host_.get()) return;
  cluster->RecordResult(
      *host_, success ? resilience::HostResult::kSuccess : resilience::HostResult::kGatewayError,
      probe);
}

void TcpProxy::MaybeFinish() {
  if (done_ || !downstream_closed_ || !upstream_closed_) return;
  done_ = true;
  idle_timer_.Disable();
  host_request_.Release();
  active_.reset();
  WriteAccessLog();
  // on_done may schedule our deletion; nothing of `this` is touched after it.
  DoneCallback done = std::move(on_done_);
  if (done) done();
}

void TcpProxy::WriteAccessLog() {
  if (access_log_ == nullptr) return;
  const uint64_t duration_us = MicrosRoundedUp(clock_.ExactNow() - start_);
  std::string line = "{\"start_time\":";
  AppendJsonString(&line,
                   absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", start_wall_, absl::UTCTimeZone()));
  absl::StrAppend(&line, ",\"duration_ms\":", duration_us / 1000, ",\"duration_us\":", duration_us,
                  ",\"protocol\":\"tcp\",\"listener\":");
  AppendJsonString(&line, listener_name_);
  line += ",\"downstream_remote_address\":";
  AppendJsonString(&line, downstream_->remote_address().ToString());
  line += ",\"cluster\":";
  AppendJsonString(&line, cluster_name_);
  line += ",\"upstream_host\":";
  AppendJsonString(&line, upstream_ == nullptr ? "" : upstream_address_.ToString());
  if (!original_destination_.empty()) {
    line += ",\"original_destination\":";
    AppendJsonString(&line, original_destination_);
  }
  if (!requested_server_name_.empty()) {
    line += ",\"requested_server_name\":";
    AppendJsonString(&line, requested_server_name_);
  }
  absl::StrAppend(&line, ",\"bytes_received\":", received_bytes_, ",\"bytes_sent\":", sent_bytes_,
                  ",\"failure\":");
  AppendJsonString(&line, failure_);
  line += "}";
  access_log_->Write(line);
}

}  // namespace meshlet::sidecar::listener

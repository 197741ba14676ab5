#include "sidecar/router/tcp_upstream.h"

#include <utility>

#include "common/base/logging.h"
#include "sidecar/router/router.h"

namespace meshlet::sidecar::router {

TcpUpstream::TcpUpstream(Router& router, cluster::Cluster& cluster, cluster::Host& host, bool probe)
    : router_(router),
      cluster_(cluster),
      host_(SharedHost(cluster, host)),
      host_id_(host.id()),
      probe_(probe),
      active_(router.stats_->rq_active),
      host_request_(host) {}

void TcpUpstream::Start() {
  start_ = router_.context_.clock.Now();
  ++host_->mutable_stats().rq_total;
  connection_ = net::Connection::Connect(router_.context_.loop, host_->address(),
                                         cluster_.config().connect_timeout);
  connection_->SetCallbacks(this);
}

void TcpUpstream::Write(net::Buffer& data, bool end_stream) {
  if (connection_ == nullptr) {
    data.Drain(data.length());
    return;
  }
  if (data.length() > 0) connection_->Write(data);
  if (end_stream) connection_->ShutdownWrite();
}

void TcpUpstream::ReadDisable(bool disable) {
  if (connection_ == nullptr) return;
  if (disable) {
    connection_->ReadDisable();
  } else {
    connection_->ReadEnable();
  }
}

void TcpUpstream::Reset() {
  ReportOnce(resilience::HostResult::kGatewayError, /*report=*/false);
  if (connection_ == nullptr) return;
  connection_->SetCallbacks(nullptr);
  connection_->Close(net::CloseMode::kFlush);
  router_.context_.loop.DeferDelete(std::move(connection_));
  host_request_.Release();
  active_.reset();
}

void TcpUpstream::OnConnected() {
  connected_ = true;
  ReportOnce(resilience::HostResult::kSuccess, /*report=*/true);
  router_.OnTcpUpstreamConnected();
}

void TcpUpstream::OnData(net::Buffer& data, bool end_stream) {
  router_.OnUpstreamData(data, end_stream);
}

void TcpUpstream::OnWriteHighWatermark() { router_.OnUpstreamAboveWriteBufferHighWatermark(); }

void TcpUpstream::OnWriteLowWatermark() { router_.OnUpstreamBelowWriteBufferLowWatermark(); }

void TcpUpstream::OnClose(net::CloseReason reason, const absl::Status& detail) {
  LOG(DEBUG) << "CONNECT upstream " << router_.info_.upstream_host->ToString()
             << " closed: " << net::CloseReasonName(reason) << " " << detail;
  connection_->SetCallbacks(nullptr);
  router_.context_.loop.DeferDelete(std::move(connection_));
  host_request_.Release();
  active_.reset();
  if (!connected_) {
    ++host_->mutable_stats().cx_connect_fail;
    ReportOnce(resilience::HostResult::kGatewayError, /*report=*/true);
    router_.OnTcpUpstreamConnectFailed();
    return;
  }
  if (reason == net::CloseReason::kEndOfStream) return;  // both directions ended normally
  router_.OnUpstreamReset(http::StreamResetReason::kConnectionTermination);
}

cluster::HostSharedPtr TcpUpstream::SharedHost(cluster::Cluster& cluster, cluster::Host& host) {
  for (const cluster::HostSharedPtr& candidate : cluster.host_set().hosts()) {
    if (candidate.get() == &host) return candidate;
  }
  CHECK(false) << "the chosen host is not in its cluster";
  return nullptr;
}

void TcpUpstream::ReportOnce(resilience::HostResult result, bool report) {
  if (reported_) return;
  reported_ = true;
  // A host the cluster dropped meanwhile no longer feeds its outlier detector.
  cluster::Host* host = cluster_.host_set().FindById(host_id_);
  if (host == nullptr) return;
  if (report) {
    cluster_.RecordResult(*host, result, probe_, router_.context_.clock.Now() - start_);
  } else if (probe_) {
    cluster_.CancelProbe(*host);
  }
}

}  // namespace meshlet::sidecar::router

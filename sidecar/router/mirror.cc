#include "sidecar/router/mirror.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "common/base/logging.h"
#include "sidecar/cluster/upstream_stats.h"

namespace meshlet::sidecar::router {

Mirrors::~Mirrors() {
  // Each copy resets its stream as it goes; Done() is not called from destructors.
  active_.clear();
}

bool Mirrors::Reserve() {
  if (in_flight_ >= max_in_flight_) return false;
  ++in_flight_;
  return true;
}

void Mirrors::Release() {
  if (in_flight_ > 0) --in_flight_;
}

void Mirrors::Send(cluster::ClusterRef cluster, http::HeaderMapPtr headers, net::Buffer& body,
                   http::HeaderMapPtr trailers, http::Protocol protocol, Duration timeout) {
  auto request = std::make_unique<MirrorRequest>(*this, std::move(cluster), std::move(headers),
                                                 body, std::move(trailers));
  MirrorRequest& started = *request;
  active_.emplace(&started, std::move(request));
  started.Start(protocol, timeout);
}

void Mirrors::Done(MirrorRequest& request) {
  auto it = active_.find(&request);
  if (it == active_.end()) return;
  std::unique_ptr<MirrorRequest> done = std::move(it->second);
  active_.erase(it);
  Release();
  // Its own callback may be on the stack.
  loop_.DeferDelete(std::move(done));
}

MirrorRequest::MirrorRequest(Mirrors& owner, cluster::ClusterRef cluster,
                             http::HeaderMapPtr headers, net::Buffer& body,
                             http::HeaderMapPtr trailers)
    : owner_(owner),
      cluster_(std::move(cluster)),
      headers_(std::move(headers)),
      trailers_(std::move(trailers)) {
  body_.Move(body);
}

MirrorRequest::~MirrorRequest() {
  finished_ = true;
  Detach();
}

void MirrorRequest::Start(http::Protocol protocol, Duration timeout) {
  cluster::Cluster& cluster = *cluster_.cluster;
  if (cluster_.stats != nullptr) cluster_.stats->rq_mirror.Inc();
  const cluster::Cluster::HostSelection selection = cluster.ChooseHost();
  if (selection.host == nullptr) {
    Finish(/*failed=*/true);
    return;
  }
  // A copy is no test of an ejected host: the probe goes back at once.
  if (selection.probe) cluster.CancelProbe(*selection.host);
  timer_.emplace(owner_.loop_, [this] { Finish(/*failed=*/true); });
  timer_->Enable(timeout);
  cluster::ConnPool& pool = cluster.PoolFor(*selection.host, protocol);
  cluster::Cancellable* handle = pool.NewStream(*this, *this);
  if (!answered_) handle_ = handle;
}

void MirrorRequest::OnPoolReady(http::StreamEncoder& encoder, cluster::Host&) {
  answered_ = true;
  handle_ = nullptr;
  if (finished_) return;
  encoder_ = &encoder;
  encoder.GetStream().AddCallbacks(*this);
  const bool body = body_.length() > 0;
  const bool trailers = trailers_ != nullptr;
  // Each encode may end the stream at once (a refused HTTP/2 stream resets synchronously).
  request_complete_ = !body && !trailers;
  encoder.EncodeHeaders(*headers_, request_complete_);
  if (body && encoder_ != nullptr) {
    request_complete_ = !trailers;
    encoder_->EncodeData(body_, request_complete_);
  }
  if (trailers && encoder_ != nullptr) {
    request_complete_ = true;
    encoder_->EncodeTrailers(*trailers_);
  }
}

void MirrorRequest::OnPoolFailure(cluster::PoolFailureReason reason, absl::string_view details,
                                  cluster::Host& host) {
  answered_ = true;
  handle_ = nullptr;
  LOG(DEBUG) << "mirror to " << host.address().ToString()
             << ": no stream: " << cluster::PoolFailureReasonName(reason) << " " << details;
  Finish(/*failed=*/true);
}

void MirrorRequest::DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) {
  if (finished_) return;
  int status = 0;
  std::optional<absl::string_view> value = headers->Get(":status");
  if (!value.has_value() || !absl::SimpleAtoi(*value, &status) || status >= 500) failed_ = true;
  if (end_stream) ResponseEnded();
}

void MirrorRequest::DecodeData(net::Buffer& data, bool end_stream) {
  data.Drain(data.length());
  if (finished_) return;
  if (end_stream) ResponseEnded();
}

void MirrorRequest::DecodeTrailers(http::HeaderMapPtr) {
  if (finished_) return;
  ResponseEnded();
}

void MirrorRequest::OnResetStream(http::StreamResetReason reason, absl::string_view details) {
  if (encoder_ == nullptr) return;
  encoder_ = nullptr;
  LOG(DEBUG) << "mirror stream reset: " << http::ResetReasonName(reason) << " " << details;
  Finish(/*failed=*/true);
}

void MirrorRequest::ResponseEnded() {
  if (request_complete_) {
    // Both directions ended: the pool has the stream back.
    encoder_ = nullptr;
  }
  Finish(failed_);
}

void MirrorRequest::Finish(bool failed) {
  if (finished_) return;
  finished_ = true;
  if (failed && cluster_.stats != nullptr) cluster_.stats->rq_mirror_failed.Inc();
  Detach();
  owner_.Done(*this);
}

void MirrorRequest::Detach() {
  if (timer_.has_value()) timer_->Disable();
  if (handle_ != nullptr) {
    cluster::Cancellable* handle = handle_;
    handle_ = nullptr;
    handle->Cancel();
  }
  if (encoder_ != nullptr) {
    http::StreamEncoder* encoder = encoder_;
    encoder_ = nullptr;
    encoder->GetStream().RemoveCallbacks(*this);
    encoder->GetStream().ResetStream(http::StreamResetReason::kLocalReset);
  }
}

}  // namespace meshlet::sidecar::router

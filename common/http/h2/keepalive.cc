// Keepalive of the HTTP/2 codec: a PING after Http2Options::keepalive_interval of silence and the
// connection closed when its ACK is late, and on a client, after the server's GOAWAY, the closer
// watch of goaway_keepalive_interval while streams are still owed answers. Timers run on the
// connection's Loop; they exist only when a keepalive is configured or a GOAWAY arrived.

#include <algorithm>
#include <memory>

#include "common/http/h2/connection.h"

namespace meshlet::http::h2::codec_internal {

bool ConnectionImpl::GuardingStreamsAfterGoAway() const {
  return !server_ && goaway_received_ && options_.goaway_keepalive_interval.count() > 0 &&
         active_streams_ > 0;
}

Duration ConnectionImpl::KeepaliveInterval() const {
  if (!GuardingStreamsAfterGoAway()) return options_.keepalive_interval;
  if (options_.keepalive_interval.count() <= 0) return options_.goaway_keepalive_interval;
  return std::min(options_.keepalive_interval, options_.goaway_keepalive_interval);
}

Duration ConnectionImpl::KeepaliveTimeout() const {
  return GuardingStreamsAfterGoAway() ? options_.goaway_keepalive_timeout
                                      : options_.keepalive_timeout;
}

void ConnectionImpl::CreateKeepaliveTimers() {
  last_frame_received_ = loop_->Now();
  keepalive_timer_ = std::make_unique<event::Timer>(*loop_, [this] { OnKeepaliveTimer(); });
  keepalive_timeout_timer_ =
      std::make_unique<event::Timer>(*loop_, [this] { OnKeepaliveTimeout(); });
}

void ConnectionImpl::StartGoAwayKeepalive() {
  if (loop_ == nullptr || dead_ || !GuardingStreamsAfterGoAway()) return;
  // Made here, not with every connection: most never see a GOAWAY.
  if (keepalive_timer_ == nullptr) CreateKeepaliveTimers();
  // The GOAWAY itself was just received: the first PING follows one interval of silence (or
  // sooner, when a keepalive of the connection's own is due first).
  last_frame_received_ = loop_->Now();
  if (keepalive_timeout_timer_->enabled()) {
    // A keepalive PING is out already: its ACK now has the shorter wait.
    keepalive_timeout_timer_->Enable(KeepaliveTimeout());
    return;
  }
  keepalive_timer_->Enable(KeepaliveInterval());
}

void ConnectionImpl::OnKeepaliveTimer() {
  if (dead_ || keepalive_timeout_timer_->enabled()) return;
  const Duration interval = KeepaliveInterval();
  // After a GOAWAY whose streams have all ended, and without a keepalive of its own, nothing is
  // left to watch: the owner closes the connection.
  if (interval.count() <= 0) return;
  // Only idle connections are probed: anything received recently proves the peer alive.
  const Duration idle = loop_->Now() - last_frame_received_;
  if (idle < interval) {
    keepalive_timer_->Enable(interval - idle);
    return;
  }
  Entry entry(*this);
  nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, kKeepalivePing);
  keepalive_timeout_timer_->Enable(KeepaliveTimeout());
  keepalive_timer_->Enable(interval);
}

void ConnectionImpl::OnKeepaliveTimeout() {
  ++counters_.keepalive_timeouts;
  if (GuardingStreamsAfterGoAway()) {
    LOG_EVERY_N_SEC(INFO, 1) << "http2: the server went silent after its GOAWAY with "
                             << active_streams_ << " stream(s) in flight; closing the connection";
  } else {
    LOG(DEBUG) << "http2 keepalive timed out; closing";
  }
  keepalive_timer_->Disable();
  dead_ = true;
  io_.Close(/*flush=*/false);
}
}  // namespace meshlet::http::h2::codec_internal

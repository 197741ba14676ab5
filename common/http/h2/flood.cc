// Flood and abuse accounting of the HTTP/2 codec (Http2Options' flood limits): what the peer
// did past a limit, found inside nghttp2's callbacks (Abuse, CountEmptyFrame, ChargeReset,
// OnBeginFrame) or after a read (FindFlood), and how the connection then ends (EndFlood).

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/http/h2/connection.h"

namespace meshlet::http::h2 {

absl::string_view Http2FloodName(Http2Flood flood) {
  switch (flood) {
    case Http2Flood::kNone:
      return "none";
    case Http2Flood::kControlFrames:
      return "control_frames";
    case Http2Flood::kResets:
      return "resets";
    case Http2Flood::kPriority:
      return "priority";
    case Http2Flood::kEmptyFrames:
      return "empty_frames";
    case Http2Flood::kContinuation:
      return "continuation";
    case Http2Flood::kPingSettings:
      return "ping_settings";
  }
  return "none";
}

namespace codec_internal {

void ConnectionImpl::ForgetTakenControlFrames() {
  if (unsent_control_ends_.empty()) return;
  const uint64_t taken = bytes_out_ - std::min<uint64_t>(io_.UnsentBytes(), bytes_out_);
  auto first_unsent =
      std::upper_bound(unsent_control_ends_.begin(), unsent_control_ends_.end(), taken);
  unsent_control_ends_.erase(unsent_control_ends_.begin(), first_unsent);
}

std::pair<Http2Flood, absl::string_view> ConnectionImpl::FindFlood() {
  if (abuse_ != Http2Flood::kNone) return {abuse_, abuse_what_};
  ForgetTakenControlFrames();
  if (unsent_control_ends_.size() > options_.max_outbound_control_frames) {
    return {Http2Flood::kControlFrames, "control frames the peer does not read"};
  }
  const uint64_t allowed =
      5 + 2 * (headers_received_ +
               uint64_t{options_.max_inbound_window_update_frames_per_data_frame_sent} *
                   data_frames_sent_);
  if (window_updates_received_ > allowed) {
    return {Http2Flood::kControlFrames, "WINDOW_UPDATE frames without DATA sent"};
  }
  return {Http2Flood::kNone, {}};
}

bool ConnectionImpl::FloodFound(Http2Flood kind, const char* what, bool may_drain,
                                const StreamImpl* closing) {
  if (abuse_ != Http2Flood::kNone) return false;
  if (!flood_draining_ && may_drain && options_.drain_on_flood && !RequestHeadersInProgress()) {
    // Streams the user has and will still have once the frame being read is handled.
    size_t in_flight = active_streams_;
    if (closing != nullptr && closing->surfaced_ && !closing->done_) --in_flight;
    if (in_flight > 0) {
      StartFloodDrain(kind, what);
      return true;
    }
  }
  // Nothing worth draining for, or the client went on during the drain: ended by Dispatch.
  abuse_ = kind;
  abuse_what_ = what;
  return false;
}

int ConnectionImpl::Abuse(Http2Flood kind, const char* what, bool may_drain) {
  // Stops nghttp2 at once when the connection ends: nothing more of what the client sent is
  // processed. Draining, the read goes on: streams in flight may still send frames.
  return FloodFound(kind, what, may_drain) ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
}

void ConnectionImpl::StartFloodDrain(Http2Flood kind, const char* what) {
  ++counters_.floods;
  flood_ = kind;
  flood_draining_ = true;
  flood_drain_due_ = true;
  // Streams created before it are the ones accepted; OnBeginHeaders refuses those after it
  // until the GOAWAY is out, nghttp2 itself from then on. No other GOAWAY follows (GoAway()).
  flood_last_stream_ = max_client_stream_;
  goaway_started_ = true;
  goaway_final_sent_ = true;
  LOG_EVERY_N_SEC(INFO, 1) << "http2 flood (" << what
                           << "): GOAWAY ENHANCE_YOUR_CALM, draining the streams up to "
                           << flood_last_stream_;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, flood_last_stream_, NGHTTP2_ENHANCE_YOUR_CALM,
                        nullptr, 0);
}

int ConnectionImpl::RefuseAfterGoAway(int32_t id) {
  if (id <= refused_max_stream_) return 0;  // a later frame of a stream already refused
  refused_max_stream_ = id;
  if (refused_this_read_ == 0) refused_this_read_ = id;
  ++counters_.streams_refused_after_goaway;
  stats_.streams_refused_after_goaway.Inc();
  if (flood_draining_ && ++refused_in_flood_drain_ > options_.max_concurrent_streams) {
    // More than a client that respects the stream limit could have had open when it learned of
    // the GOAWAY: it keeps opening streams.
    return Abuse(flood_,
                 "new streams after GOAWAY(ENHANCE_YOUR_CALM) beyond max_concurrent_streams",
                 /*may_drain=*/false);
  }
  return 0;
}

int ConnectionImpl::CountEmptyFrame(bool has_payload, bool end_stream, bool in_header_block) {
  if (has_payload) {
    consecutive_empty_frames_ = 0;
  } else if (!end_stream &&
             ++consecutive_empty_frames_ > options_.max_consecutive_inbound_empty_frames) {
    return Abuse(Http2Flood::kEmptyFrames, "frames without payload, one after another",
                 !in_header_block);
  }
  return 0;
}

void ConnectionImpl::JudgeReset(const StreamImpl& s) {
  if (!server_) return;
  if (!s.tx_headers_ && Now() - s.opened_ < options_.stream_reset_min_lifetime) {
    PrematureReset(&s);
  } else {
    // It held its slot for a while, or was answered in part: what a caller's timeout looks like.
    ++counters_.late_resets;
    stats_.late_resets.Inc();
    resets_.Credit();
  }
}

void ConnectionImpl::PrematureReset(const StreamImpl* s) {
  ++counters_.premature_resets;
  stats_.premature_resets.Inc();
  ChargeReset(s);
}

void ConnectionImpl::ChargeReset(const StreamImpl* closing) {
  if (!server_ || abuse_ != Http2Flood::kNone || resets_.Take(Now())) return;
  // Seen while sending (a refusal) or receiving; either way the read stops and Dispatch ends the
  // connection, or it drains.
  FloodFound(Http2Flood::kResets, "streams reset prematurely or refused, beyond stream_reset_burst",
             /*may_drain=*/true, closing);
}

absl::Status ConnectionImpl::EndFlood(Http2Flood kind, absl::string_view what) {
  if (!flood_draining_) ++counters_.floods;  // a drain counted it when it began
  flood_ = kind;
  LOG_EVERY_N_SEC(INFO, 1) << "http2 flood (" << what << "): GOAWAY ENHANCE_YOUR_CALM"
                           << (flood_draining_ ? " during the drain" : "");
  {
    Entry entry(*this);
    // Nothing the peer sends is read any more; the GOAWAY goes behind what it has not read yet.
    nghttp2_session_terminate_session(session_, NGHTTP2_ENHANCE_YOUR_CALM);
  }  // flushed here
  Entry entry(*this);
  dead_ = true;
  std::string message = absl::StrCat("http2 flood: ", what);
  ResetAll(StreamResetReason::kProtocolError, message);
  return absl::ResourceExhaustedError(message);
}

int ConnectionImpl::OnBeginFrame(nghttp2_session*, const nghttp2_frame_hd* hd, void* user_data) {
  // Server only.
  auto* c = static_cast<ConnectionImpl*>(user_data);
  const Http2Options& o = c->options_;
  switch (hd->type) {
    case NGHTTP2_HEADERS:
      // HEADERS only: DATA on a stream nghttp2 no longer has is dropped without a callback, and
      // judged in Receive instead.
      if (c->ClientStreamGone(hd->stream_id)) c->OnFrameOnGoneStream(hd->stream_id);
      if (hd->stream_id > c->goaway_sent_last_stream_ && hd->stream_id > c->max_client_stream_ &&
          (hd->stream_id & 1) == 1) {
        // A new stream after the GOAWAY went out: nghttp2 ignores it (RFC 9113 6.8).
        if (int rv = c->RefuseAfterGoAway(hd->stream_id); rv != 0) return rv;
      }
      [[fallthrough]];
    case NGHTTP2_CONTINUATION:
      if (int rv = c->CountEmptyFrame(hd->length > 0, (hd->flags & NGHTTP2_FLAG_END_STREAM) != 0,
                                      /*in_header_block=*/true);
          rv != 0) {
        return rv;
      }
      break;
    case NGHTTP2_PING:
    case NGHTTP2_SETTINGS:
      if ((hd->flags & NGHTTP2_FLAG_ACK) == 0 && !c->control_frames_.Take(c->Now())) {
        // Draining, this one is still answered; the bucket is empty, so the next one ends it.
        if (int rv =
                c->Abuse(Http2Flood::kPingSettings, "PING or SETTINGS frames faster than allowed");
            rv != 0) {
          return rv;
        }
      }
      break;
    case NGHTTP2_PRIORITY:
      if (++c->priority_frames_received_ >
          uint64_t{o.max_inbound_priority_frames_per_stream} * (1 + c->client_streams_opened_)) {
        if (int rv =
                c->Abuse(Http2Flood::kPriority, "PRIORITY frames out of proportion to streams");
            rv != 0) {
          return rv;
        }
      }
      break;
    default:
      break;
  }
  return c->abuse_ != Http2Flood::kNone ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

}  // namespace codec_internal
}  // namespace meshlet::http::h2

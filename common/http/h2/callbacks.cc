// nghttp2's session callbacks for the HTTP/2 codec: bytes and DATA payloads to send, header
// fields and DATA received, frames received and sent, streams closed. They run inside
// nghttp2_session_mem_recv / nghttp2_session_send (ConnectionImpl::Dispatch / Flush), never call
// users from inside sending (events are queued for Flush), and return nghttp2's callback results.

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/http/h2/connection.h"

namespace meshlet::http::h2::codec_internal {

// ----- nghttp2 callbacks ----------------------------------------------------------------------

ssize_t ConnectionImpl::OnSend(nghttp2_session*, const uint8_t* data, size_t length, int,
                               void* user_data) {
  auto* c = static_cast<ConnectionImpl*>(user_data);
  c->out_.Append(data, length);
  return static_cast<ssize_t>(length);
}

int ConnectionImpl::OnSendData(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd,
                               size_t length, nghttp2_data_source*, void* user_data) {
  auto* c = static_cast<ConnectionImpl*>(user_data);
  StreamImpl* s = c->Find(frame->hd.stream_id);
  if (s == nullptr || s->tx_data_.length() < length) {
    LOG(ERROR) << "http2: DATA for stream " << frame->hd.stream_id << " has no source";
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  c->out_.Append(framehd, kFrameHeaderBytes);
  size_t padlen = frame->data.padlen;
  if (padlen > 0) {
    uint8_t pad_length = static_cast<uint8_t>(padlen - 1);
    c->out_.Append(&pad_length, 1);
  }
  // Payload blocks are relinked into the output, not copied.
  c->out_.Move(s->tx_data_, length);
  c->tx_buffered_ -= length;
  if (padlen > 1) {
    static constexpr char kZeros[256] = {};
    c->out_.Append(kZeros, padlen - 1);
  }
  if (s->tx_above_ && s->tx_data_.length() <= s->BufferLimit() / 2) {
    s->tx_above_ = false;
    s->low_pending_ = true;
    c->pending_events_.push_back({s, Event::kLowWatermark});
  }
  return 0;
}

ssize_t ConnectionImpl::OnReadData(nghttp2_session* session, int32_t stream_id, uint8_t*,
                                   size_t length, uint32_t* data_flags, nghttp2_data_source*,
                                   void* user_data) {
  auto* c = static_cast<ConnectionImpl*>(user_data);
  StreamImpl* s = c->Find(stream_id);
  if (s == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  size_t n = std::min(length, s->tx_data_.length());
  if (n == 0 && !s->tx_end_) {
    s->tx_deferred_ = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  *data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  if (n == s->tx_data_.length() && s->tx_end_) {
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    if (s->tx_trailers_ != nullptr) {
      NvArray nv;
      BuildNv(*s->tx_trailers_, false, "", nv, &c->varying_names_);
      if (nghttp2_submit_trailer(session, stream_id, nv.data(), nv.size()) == 0) {
        *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      }
      s->tx_trailers_.reset();
    }
  }
  return static_cast<ssize_t>(n);
}

int ConnectionImpl::OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  auto* c = static_cast<ConnectionImpl*>(user_data);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  StreamImpl* s = c->Find(frame->hd.stream_id);
  if (s == nullptr) {
    if (!c->server_ || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    const int32_t id = frame->hd.stream_id;
    // Above the last stream a flood's GOAWAY names (queued; nghttp2 ignores such streams only
    // once it is sent): never handed to the user. nghttp2 closes it when the GOAWAY goes out.
    if (c->flood_draining_) return c->RefuseAfterGoAway(id);
    if (id > c->max_client_stream_ + 2) {
      auto& skipped = c->skipped_client_streams_;
      if (skipped.size() == 16) skipped.erase(skipped.begin());
      skipped.emplace_back(c->max_client_stream_ + 2, id - 2);
    }
    c->max_client_stream_ = std::max(c->max_client_stream_, id);
    ++c->client_streams_opened_;
    s = &c->CreateStream(nullptr);
    s->opened_ = c->Now();
    c->Register(*s, frame->hd.stream_id);
    c->rx_request_headers_id_ = frame->hd.stream_id;
  }
  s->rx_headers_ = std::make_unique<HeaderMap>();
  s->rx_header_bytes_ = 0;
  s->rx_header_overflow_ = false;
  return 0;
}

int ConnectionImpl::OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                             size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                             void* user_data) {
  auto* c = static_cast<ConnectionImpl*>(user_data);
  StreamImpl* s = c->Find(frame->hd.stream_id);
  if (s == nullptr || s->done_ || s->rx_headers_ == nullptr || s->rx_header_overflow_) return 0;
  s->rx_header_bytes_ += namelen + valuelen + HeaderMap::kHttp2EntryOverhead;
  if (s->rx_header_bytes_ > c->options_.max_header_list_size) {
    // Keep decoding (HPACK state must stay in sync) but stop storing.
    s->rx_header_overflow_ = true;
    s->rx_headers_->Clear();
    return 0;
  }
  // nghttp2 has checked the field (HTTP messaging is never switched off): a lowercase token as
  // name, no CR, LF or NUL in the value; invalid regular fields never reach this callback.
  s->rx_headers_->AddChecked(absl::string_view(reinterpret_cast<const char*>(name), namelen),
                             absl::string_view(reinterpret_cast<const char*>(value), valuelen));
  return 0;
}

int ConnectionImpl::OnDataChunk(nghttp2_session* session, uint8_t, int32_t stream_id,
                                const uint8_t* data, size_t len, void* user_data) {
  auto* c = static_cast<ConnectionImpl*>(user_data);
  // The connection window comes back at once; only the stream's waits for its consumer.
  nghttp2_session_consume_connection(session, len);
  StreamImpl* s = c->Find(stream_id);
  if (s == nullptr || s->done_) return 0;
  s->rx_data_.Append(data, len);
  return 0;
}

int ConnectionImpl::OnFrameRecv(nghttp2_session* session, const nghttp2_frame* frame,
                                void* user_data) {
  auto* c = static_cast<ConnectionImpl*>(user_data);
  if (c->keepalive_timer_ != nullptr) c->last_frame_received_ = c->loop_->Now();
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS: {
      ++c->headers_received_;
      StreamImpl* s = c->Find(frame->hd.stream_id);
      if (s != nullptr && !s->done_) c->HandleHeadersFrame(*frame, *s);
      break;
    }
    case NGHTTP2_WINDOW_UPDATE:
      ++c->window_updates_received_;
      break;
    case NGHTTP2_DATA: {
      if (c->server_) {
        if (int rv = c->CountEmptyFrame(frame->hd.length > frame->data.padlen,
                                        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0);
            rv != 0) {
          return rv;
        }
      }
      StreamImpl* s = c->Find(frame->hd.stream_id);
      if (s == nullptr) break;
      if (s->done_) {
        // The rest of a request whose response is out: dropped, and its window kept.
        if (s->tx_end_sent_ && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) {
          c->DeclineRestOnceOutOfWindow(*s);
        }
        break;
      }
      if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) s->rx_end_ = true;
      s->DeliverPending();
      break;
    }
    case NGHTTP2_RST_STREAM: {
      const size_t slot = ErrorCodeSlot(frame->rst_stream.error_code);
      ++c->counters_.rst_stream_received[slot];
      c->stats_.rst_stream_received[slot].Inc();
      if (c->server_) c->reset_by_peer_.Add(frame->hd.stream_id);
      StreamImpl* s = c->Find(frame->hd.stream_id);
      if (s != nullptr) {
        s->rst_received_ = true;
        // Cancelled before its response was complete: the work it started is wasted, and a
        // premature reset frees the stream's slot for another at once (rapid reset).
        if (!s->tx_end_) c->JudgeReset(*s);
      } else if (c->flood_draining_ && c->refused_this_read_ != 0 &&
                 frame->hd.stream_id >= c->refused_this_read_) {
        // A stream opened after the flood's GOAWAY and reset in the same read, unanswered: the
        // client goes on with what the GOAWAY was for. (A client that read the GOAWAY may cancel
        // the streams it refused, as Go's transport does: those come in a later read.)
        c->PrematureReset(nullptr);
      }
      if (c->abuse_ != Http2Flood::kNone) return NGHTTP2_ERR_CALLBACK_FAILURE;
      break;
    }
    case NGHTTP2_GOAWAY: {
      c->CountGoAway(/*sent=*/false, frame->goaway.error_code);
      bool first = !c->goaway_received_;
      c->goaway_received_ = true;
      // Client streams above last_stream_id were never processed: nghttp2 closes them with
      // REFUSED_STREAM right after this callback (HandleStreamClose), so they may be retried.
      // The others are still owed answers by a server that is going away: watched from now on.
      if (first) {
        c->StartGoAwayKeepalive();
        c->callbacks_.OnGoAway();
      }
      break;
    }
    case NGHTTP2_PING: {
      if ((frame->hd.flags & NGHTTP2_FLAG_ACK) == 0) break;
      if (std::memcmp(frame->ping.opaque_data, kGoAwayPing, 8) == 0) {
        if (c->server_ && c->goaway_started_) c->goaway_final_due_ = true;
      } else if (std::memcmp(frame->ping.opaque_data, kKeepalivePing, 8) == 0) {
        if (c->keepalive_timeout_timer_ != nullptr) c->keepalive_timeout_timer_->Disable();
      }
      break;
    }
    default:
      break;
  }
  (void)session;
  return 0;
}

void ConnectionImpl::HandleHeadersFrame(const nghttp2_frame& frame, StreamImpl& s) {
  bool end_stream = (frame.hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  HeaderMapPtr headers = std::move(s.rx_headers_);
  if (headers == nullptr) return;
  if (s.rx_header_overflow_) {
    ++counters_.header_overflow;
    if (server_ && !s.surfaced_) {
      // The request never reaches the user: answer 431 and stop the rest of it (RFC 9113 8.1
      // allows a complete response before the request is complete).
      // OnFrameSend follows the response with RST_STREAM(NO_ERROR) if the request goes on.
      s.rx_end_ = end_stream;
      nghttp2_nv nv[] = {MakeNv(":status", "431")};
      nghttp2_submit_response(session_, s.id_, nv, 1, nullptr);
      stats_.requests_answered_431.Inc();
      MarkDone(s);
      return;
    }
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s.id_,
                              server_ ? NGHTTP2_INTERNAL_ERROR : NGHTTP2_PROTOCOL_ERROR);
    NotifyReset(s, StreamResetReason::kOverflow, "header list too large");
    return;
  }
  if (server_ && !s.surfaced_) {
    if (absl::string_view problem = MalformedRequest(*headers); !problem.empty()) {
      // A malformed request is a stream error (RFC 9113 8.1.1), counted like the ones nghttp2
      // finds itself; the request never reaches the user.
      ++counters_.stream_protocol_errors;
      nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s.id_, NGHTTP2_PROTOCOL_ERROR);
      NotifyReset(s, StreamResetReason::kProtocolError, problem);
      return;
    }
  }
  if (end_stream) s.rx_end_ = true;
  if (server_ && !s.surfaced_) {
    s.surfaced_ = true;
    ++active_streams_;
    ++counters_.streams_started;
    s.decoder_ = &server_callbacks_->NewStream(s);
    if (s.done_) return;
    if (buffered_above_) {
      // Born while the connection holds too much: its response waits like the others'.
      s.buffered_above_ = true;
      s.RaiseWatermark();
    }
    s.rx_final_headers_ = true;
    if (end_stream) s.rx_end_delivered_ = true;
    s.decoder_->DecodeHeaders(std::move(headers), end_stream);
    return;
  }
  if (!s.rx_final_headers_) {
    if (!server_ && Is1xx(*headers)) {
      s.decoder_->Decode1xxHeaders(std::move(headers));
      return;
    }
    s.rx_final_headers_ = true;
    if (end_stream) s.rx_end_delivered_ = true;
    s.decoder_->DecodeHeaders(std::move(headers), end_stream);
    if (end_stream) s.MaybeCompleteForUser();
    return;
  }
  // Trailers: they wait behind any data the decoder has not taken yet.
  s.rx_trailers_ = std::move(headers);
  s.rx_end_ = true;
  s.DeliverPending();
}

int ConnectionImpl::OnFrameSend(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  auto* c = static_cast<ConnectionImpl*>(user_data);
  switch (frame->hd.type) {
    case NGHTTP2_RST_STREAM:
      c->CountRstSent(frame->rst_stream.error_code);
      if (c->server_) c->reset_by_us_.Add(frame->hd.stream_id);
      // A stream refused (beyond max_concurrent_streams) costs like one the client reset.
      if (frame->rst_stream.error_code == NGHTTP2_REFUSED_STREAM && c->server_) {
        c->stats_.streams_refused_over_limit.Inc();
        c->ChargeReset();
      }
      c->unsent_control_ends_.push_back(c->bytes_out_ + c->out_.length());
      break;
    case NGHTTP2_PING:
    case NGHTTP2_SETTINGS:
      // The frame is in out_ already (nghttp2 reports a frame sent after handing its bytes over).
      if (frame->hd.flags & NGHTTP2_FLAG_ACK) {
        c->unsent_control_ends_.push_back(c->bytes_out_ + c->out_.length());
      }
      break;
    case NGHTTP2_GOAWAY:
      c->CountGoAway(/*sent=*/true, frame->goaway.error_code);
      // nghttp2 ignores new streams above it from now on (RFC 9113 6.8).
      c->goaway_sent_last_stream_ =
          std::min(c->goaway_sent_last_stream_, frame->goaway.last_stream_id);
      // A flood's drain goes on after its GOAWAY; any other error ends the connection.
      if (frame->goaway.error_code != NGHTTP2_NO_ERROR &&
          !(c->flood_draining_ && c->abuse_ == Http2Flood::kNone &&
            frame->goaway.error_code == NGHTTP2_ENHANCE_YOUR_CALM)) {
        c->sent_goaway_error_ = frame->goaway.error_code;
      }
      break;
    case NGHTTP2_DATA:
    case NGHTTP2_HEADERS: {
      if (frame->hd.type == NGHTTP2_DATA) ++c->data_frames_sent_;
      if (!c->server_ || (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) break;
      c->resets_.Credit();  // a response completed
      StreamImpl* s = c->Find(frame->hd.stream_id);
      if (s == nullptr) break;
      // The response is complete; the request may not be. The stream stays half-closed (local)
      // while the client may still send the rest: DATA or HEADERS after its END_STREAM, a
      // second HEADERS, a body longer or shorter than its content-length, pseudo-header fields
      // in trailers, a WINDOW_UPDATE past 2^31-1 are errors as on any stream (RFC 9113 5.1,
      // 6.9.1, 8.1.1), whether the response went out first or not.
      s->tx_end_sent_ = true;
      // A request the codec refused before its user saw it (431) is declined at once.
      c->DeclineRestOnceOutOfWindow(*s, /*at_once=*/!s->surfaced_);
      break;
    }
    default:
      break;
  }
  return 0;
}

int ConnectionImpl::OnFrameNotSend(nghttp2_session*, const nghttp2_frame* frame, int lib_error_code,
                                   void* user_data) {
  auto* c = static_cast<ConnectionImpl*>(user_data);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  StreamImpl* s = c->Find(frame->hd.stream_id);
  if (s == nullptr) return 0;
  // A request that never left: nghttp2 forgets the stream, so must we.
  s->closed_ = true;
  if (lib_error_code == NGHTTP2_ERR_START_STREAM_NOT_ALLOWED) {
    ++c->counters_.streams_refused_by_goaway;
    c->NotifyReset(*s, StreamResetReason::kRemoteRefusedStream,
                   "connection going away before the request was sent");
  } else {
    c->NotifyReset(*s, StreamResetReason::kLocalReset, nghttp2_strerror(lib_error_code));
  }
  c->MaybeRetire(*s);
  return 0;
}

int ConnectionImpl::OnInvalidFrameRecv(nghttp2_session*, const nghttp2_frame* frame,
                                       int lib_error_code, void* user_data) {
  auto* c = static_cast<ConnectionImpl*>(user_data);
  c->last_error_ = nghttp2_strerror(lib_error_code);
  (void)frame;
  return 0;
}

int ConnectionImpl::OnError(nghttp2_session*, int, const char* msg, size_t len, void* user_data) {
  auto* c = static_cast<ConnectionImpl*>(user_data);
  c->last_error_.assign(msg, len);
  return 0;
}

int ConnectionImpl::OnStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                                  void* user_data) {
  auto* c = static_cast<ConnectionImpl*>(user_data);
  if (c->destroying_) return 0;
  StreamImpl* s = c->Find(stream_id);
  if (s == nullptr) return 0;
  c->HandleStreamClose(*s, error_code);
  return 0;
}

void ConnectionImpl::HandleStreamClose(StreamImpl& s, uint32_t error_code) {
  s.closed_ = true;
  if (s.done_) {
    // The rest of a request whose response went out first, found malformed by nghttp2.
    if (server_ && s.tx_end_sent_ && !s.rst_received_ && error_code != NGHTTP2_NO_ERROR) {
      ++counters_.stream_protocol_errors;
    }
    MaybeRetire(s);
    return;
  }
  if (server_ && s.rst_no_error_sent_) {
    // The response completed first; the rest of the request was declined on purpose.
    MarkDone(s);
    return;
  }
  // A server stream the peer reset before our response ended was cancelled, whatever the code
  // (RST_STREAM(NO_ERROR) is only a normal end when the response is complete, RFC 9113 8.1).
  const bool cancelled = server_ && s.rst_received_ && !s.tx_end_;
  if (s.rx_end_ && error_code == NGHTTP2_NO_ERROR && !cancelled) {
    // Normal end; data still waiting for a read-disabled decoder is delivered later.
    if (s.rx_end_delivered_ || s.decoder_ == nullptr) {
      MarkDone(s);
    } else {
      s.DeliverPending();
    }
    return;
  }
  StreamResetReason reason;
  std::string details;
  if (s.rst_received_) {
    reason = error_code == NGHTTP2_REFUSED_STREAM ? StreamResetReason::kRemoteRefusedStream
                                                  : StreamResetReason::kRemoteReset;
    details = absl::StrCat("peer reset: ", ErrorCodeSlotName(ErrorCodeSlot(error_code)));
  } else if (error_code == NGHTTP2_REFUSED_STREAM) {
    reason = StreamResetReason::kRemoteRefusedStream;  // above the peer's GOAWAY last_stream_id
    details = "refused by GOAWAY";
    ++counters_.streams_refused_by_goaway;
  } else if (error_code == NGHTTP2_NO_ERROR || error_code == NGHTTP2_CANCEL) {
    reason = StreamResetReason::kConnectionTermination;
    details = "stream closed before completion";
  } else {
    reason = StreamResetReason::kProtocolError;
    ++counters_.stream_protocol_errors;
    details = absl::StrCat("stream error: ", ErrorCodeSlotName(ErrorCodeSlot(error_code)));
  }
  NotifyReset(s, reason, details);
  MaybeRetire(s);
}

void ConnectionImpl::DeclineRestOnceOutOfWindow(StreamImpl& s, bool at_once) {
  if (s.rst_no_error_sent_ || s.closed_ || s.rx_end_ ||
      nghttp2_session_get_stream_remote_close(session_, s.id_) != 0) {
    return;
  }
  if (!at_once && nghttp2_session_get_stream_local_window_size(session_, s.id_) > 0) return;
  s.rst_no_error_sent_ = true;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s.id_, NGHTTP2_NO_ERROR);
}

void ConnectionImpl::CountRstSent(uint32_t error_code) {
  const size_t slot = ErrorCodeSlot(error_code);
  ++counters_.rst_stream_sent[slot];
  stats_.rst_stream_sent[slot].Inc();
}

void ConnectionImpl::CountGoAway(bool sent, uint32_t error_code) {
  const size_t slot = ErrorCodeSlot(error_code);
  ++(sent ? counters_.goaway_sent : counters_.goaway_received);
  (sent ? stats_.goaway_sent : stats_.goaway_received)[slot].Inc();
}

}  // namespace meshlet::http::h2::codec_internal

// StreamImpl, one HTTP/2 stream of the codec: what its user encodes (HEADERS, DATA, trailers,
// RST_STREAM), its read-disable count, and delivery of what arrived to its decoder. Valid until
// it completes for its user or is reset (codec.h); the connection frees it afterwards.

#include <algorithm>
#include <memory>
#include <utility>

#include "common/http/h2/connection.h"

namespace meshlet::http::h2::codec_internal {

namespace {

uint32_t ResetReasonToErrorCode(StreamResetReason reason) {
  switch (reason) {
    case StreamResetReason::kRemoteRefusedStream:
      return NGHTTP2_REFUSED_STREAM;
    case StreamResetReason::kProtocolError:
      return NGHTTP2_PROTOCOL_ERROR;
    case StreamResetReason::kOverflow:
      return NGHTTP2_INTERNAL_ERROR;
    case StreamResetReason::kConnectionFailure:
      return NGHTTP2_CONNECT_ERROR;
    case StreamResetReason::kLocalReset:
    case StreamResetReason::kRemoteReset:
    case StreamResetReason::kConnectionTermination:
      return NGHTTP2_CANCEL;
  }
  return NGHTTP2_CANCEL;
}

}  // namespace

// ----- StreamImpl -----------------------------------------------------------------------------

void StreamImpl::Encode1xxHeaders(const HeaderMap& headers) {
  if (done_ || !c_.server_ || id_ == 0) return;
  ConnectionImpl::Entry entry(c_);
  BuildNv(headers, false, "", c_.nv_, &c_.varying_names_);
  nghttp2_submit_headers(c_.session_, NGHTTP2_FLAG_NONE, id_, nullptr, c_.nv_.data(), c_.nv_.size(),
                         nullptr);
}

void StreamImpl::EncodeHeaders(const HeaderMap& headers, bool end_stream) {
  CHECK(!tx_headers_) << "EncodeHeaders called twice";
  tx_headers_ = true;
  tx_end_ = end_stream;
  if (done_) return;
  ConnectionImpl::Entry entry(c_);
  nghttp2_data_provider provider;
  provider.source.ptr = nullptr;
  provider.read_callback = &ConnectionImpl::OnReadData;
  nghttp2_data_provider* prd = end_stream ? nullptr : &provider;
  if (c_.server_) {
    BuildNv(headers, false, "", c_.nv_, &c_.varying_names_);
    int rv = nghttp2_submit_response(c_.session_, id_, c_.nv_.data(), c_.nv_.size(), prd);
    if (rv != 0) LOG(DEBUG) << "http2 response on stream " << id_ << ": " << nghttp2_strerror(rv);
    MaybeCompleteForUser();
    return;
  }
  BuildNv(headers, true, c_.options_.default_scheme, c_.nv_, &c_.varying_names_);
  int32_t id =
      nghttp2_submit_request(c_.session_, nullptr, c_.nv_.data(), c_.nv_.size(), prd, nullptr);
  if (id < 0) {
    StreamResetReason reason = (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE || c_.goaway_received_)
                                   ? StreamResetReason::kRemoteRefusedStream
                                   : StreamResetReason::kLocalReset;
    c_.NotifyReset(*this, reason, nghttp2_strerror(id));
    return;
  }
  c_.Register(*this, id);
  MaybeCompleteForUser();
}

void StreamImpl::ResumeData() {
  if (id_ != 0 && tx_deferred_ && !closed_) {
    tx_deferred_ = false;
    nghttp2_session_resume_data(c_.session_, id_);
  }
}

void StreamImpl::EncodeData(net::Buffer& data, bool end_stream) {
  CHECK(tx_headers_ && !tx_end_) << "EncodeData outside a message";
  if (done_) {
    data.Drain(data.length());
    return;
  }
  // The entry spans the whole call: the stream may complete while flushing, and must stay
  // allocated until this call returns.
  ConnectionImpl::Entry entry(c_);
  c_.tx_buffered_ += data.length();
  tx_data_.Move(data);
  tx_end_ = end_stream;
  ResumeData();
  // Checked after a write attempt, so bytes the window takes at once never raise it.
  if (c_.depth_ == 1) c_.Flush();
  if (end_stream) MaybeCompleteForUser();
  if (!done_ && !tx_above_ && tx_data_.length() > BufferLimit()) {
    tx_above_ = true;
    RaiseWatermark();
  }
  if (!c_.buffered_above_ && c_.tx_buffered_ > c_.options_.connection_buffer_limit) {
    c_.CheckBufferedAbove();
  }
}

void StreamImpl::EncodeTrailers(const HeaderMap& trailers) {
  CHECK(tx_headers_ && !tx_end_) << "EncodeTrailers outside a message";
  if (trailers.empty()) {
    net::Buffer empty;
    EncodeData(empty, true);
    return;
  }
  tx_end_ = true;
  if (done_) return;
  ConnectionImpl::Entry entry(c_);
  tx_trailers_ = std::make_unique<HeaderMap>(trailers);
  ResumeData();
  MaybeCompleteForUser();
}

void StreamImpl::ResetStream(StreamResetReason reason) {
  if (done_) return;
  ConnectionImpl::Entry entry(c_);
  if (id_ != 0 && !closed_) {
    nghttp2_submit_rst_stream(c_.session_, NGHTTP2_FLAG_NONE, id_, ResetReasonToErrorCode(reason));
  }
  c_.NotifyReset(*this, reason, "local reset");
}

void StreamImpl::ReadDisable(bool disable) {
  if (disable) {
    ++read_disabled_;
    return;
  }
  CHECK(read_disabled_ > 0) << "unbalanced ReadDisable(false)";
  if (--read_disabled_ > 0 || done_) return;
  ConnectionImpl::Entry entry(c_);
  DeliverPending();
}

void StreamImpl::DeliverPending() {
  if (done_ || delivering_ || decoder_ == nullptr || !rx_final_headers_) return;
  delivering_ = true;
  while (read_disabled_ == 0 && !done_ && !rx_end_delivered_) {
    bool end = rx_end_ && rx_trailers_ == nullptr;
    if (!rx_data_.empty() || end) {
      size_t n = rx_data_.length();
      if (n > 0 && !closed_) nghttp2_session_consume_stream(c_.session_, id_, n);
      if (end) rx_end_delivered_ = true;
      decoder_->DecodeData(rx_data_, end);
      rx_data_.Clear();
      continue;
    }
    if (rx_trailers_ != nullptr) {
      rx_end_delivered_ = true;
      decoder_->DecodeTrailers(std::move(rx_trailers_));
      continue;
    }
    break;
  }
  delivering_ = false;
  if (!rx_end_delivered_) return;
  MaybeCompleteForUser();
  // nghttp2 may have closed the stream normally while data waited for this decoder.
  if (closed_ && !done_) c_.MarkDone(*this);
}
}  // namespace meshlet::http::h2::codec_internal

// The server's frame-boundary scanner: Receive() walks the client's bytes frame header by frame
// header before nghttp2 reads them, because nghttp2 drops DATA on a stream it no longer has
// without a callback. HEADERS and DATA on a client stream that is gone (RFC 9113 5.1) are judged
// here (and from OnBeginFrame for HEADERS): ignored, a stream error or a connection error.

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/http/h2/connection.h"

namespace meshlet::http::h2::codec_internal {

void ConnectionImpl::ConnectionError(uint32_t error_code, absl::string_view why) {
  if (last_error_.empty()) last_error_ = std::string(why);
  nghttp2_session_terminate_session2(session_, nghttp2_session_get_last_proc_stream_id(session_),
                                     error_code);
}

bool ConnectionImpl::ClientStreamGone(int32_t id) const {
  // New streams, the server's own ids, and streams nghttp2 still has are nghttp2's to judge.
  return server_ && id <= max_client_stream_ && (id & 1) == 1 &&
         nghttp2_session_find_stream(session_, id) == nullptr;
}

void ConnectionImpl::OnFrameOnGoneStream(int32_t id) {
  // A stream this side reset: the client may have sent these before it saw the RST_STREAM.
  if (reset_by_us_.Has(id)) return;
  for (const auto& [first, last] : skipped_client_streams_) {
    if (id >= first && id <= last) {
      ConnectionError(NGHTTP2_PROTOCOL_ERROR,
                      absl::StrCat("a frame on stream ", id,
                                   ", lower than a stream the client already opened"));
      return;
    }
  }
  if (reset_by_peer_.Has(id)) {
    // After receiving RST_STREAM: a stream error (RFC 9113 5.1, "closed").
    ++counters_.stream_protocol_errors;
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_STREAM_CLOSED);
    return;
  }
  // Closed after both ends' END_STREAM (or longer ago than the lists above remember).
  ConnectionError(NGHTTP2_STREAM_CLOSED, absl::StrCat("a frame on closed stream ", id));
}

int ConnectionImpl::Receive(absl::string_view bytes) {
  const auto feed = [this](absl::string_view part) -> int {
    if (part.empty()) return 0;
    const ssize_t rv = nghttp2_session_mem_recv(
        session_, reinterpret_cast<const uint8_t*>(part.data()), part.size());
    return rv < 0 ? static_cast<int>(rv) : 0;
  };
  if (!server_) return feed(bytes);
  size_t fed = 0;
  size_t i = 0;
  while (i < bytes.size()) {
    const size_t left = bytes.size() - i;
    if (preface_left_ > 0 || frame_payload_left_ > 0) {
      size_t& skip = preface_left_ > 0 ? preface_left_ : frame_payload_left_;
      const size_t n = std::min(skip, left);
      skip -= n;
      i += n;
      continue;
    }
    // A frame header, perhaps begun in an earlier piece (whose bytes nghttp2 already has).
    const size_t head_start = i;
    const uint8_t* h;
    if (frame_head_have_ == 0 && left >= kFrameHeaderBytes) {
      h = reinterpret_cast<const uint8_t*>(bytes.data()) + i;  // whole here: read in place
      i += kFrameHeaderBytes;
    } else {
      const size_t n = std::min(kFrameHeaderBytes - frame_head_have_, left);
      std::memcpy(frame_head_ + frame_head_have_, bytes.data() + i, n);
      frame_head_have_ += n;
      i += n;
      if (frame_head_have_ < kFrameHeaderBytes) break;
      frame_head_have_ = 0;
      h = frame_head_;
    }
    frame_payload_left_ = (size_t{h[0]} << 16) | (size_t{h[1]} << 8) | h[2];
    const int32_t id = static_cast<int32_t>(((uint32_t{h[5]} & 0x7f) << 24) |
                                            (uint32_t{h[6]} << 16) | (uint32_t{h[7]} << 8) | h[8]);
    if (h[3] != NGHTTP2_DATA) continue;
    // Everything before this frame first, so that nghttp2's view of the stream is current: a
    // HEADERS and a RST_STREAM earlier in these bytes may have opened and closed it (h2spec
    // http2/5.1/8 sends the three in one burst).
    if (int rv = feed(bytes.substr(fed, head_start - fed)); rv != 0) return rv;
    fed = head_start;
    if (id > max_client_stream_) continue;  // an idle stream: nghttp2's to judge
    if (ClientStreamGone(id)) {
      OnFrameOnGoneStream(id);
      // nghttp2 drops these without a callback (OnFrameRecv counts the others): empty ones on a
      // stream this side reset would otherwise be ignored forever.
      if (int rv = CountEmptyFrame(frame_payload_left_ > 0, (h[4] & NGHTTP2_FLAG_END_STREAM) != 0);
          rv != 0) {
        return rv;
      }
    }
  }
  return feed(bytes.substr(fed));
}

}  // namespace meshlet::http::h2::codec_internal

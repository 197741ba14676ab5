#pragma once

// gRPC message framing (the "Length-Prefixed-Message" of the gRPC HTTP/2 protocol): each message
// is a 1-byte compressed flag, a 4-byte big-endian length, then the message bytes. The encoder
// prefixes a message and relinks its bytes into the output; FrameDecoder cuts messages out of a
// byte stream that arrives in arbitrary pieces (DATA frames, TLS records) and enforces a maximum
// message size before buffering anything of an oversize message.
//
// Ownership: plain values; the decoder owns the bytes of the message it is assembling and hands
// each complete message to the caller. Not thread-safe; one decoder per stream direction.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/net/buffer.h"

namespace meshlet::http::grpc {

inline constexpr size_t kFrameHeaderSize = 5;
// gRPC's default receive limit.
inline constexpr size_t kDefaultMaxMessageSize = 4 * 1024 * 1024;

// Appends the 5-byte prefix of a message of `length` bytes.
void EncodeFrameHeader(uint32_t length, bool compressed, net::Buffer& out);
// Appends the prefix then all of `message` (moved, not copied; `message` ends up empty).
void EncodeMessage(net::Buffer& message, net::Buffer& out, bool compressed = false);
void EncodeMessage(absl::string_view message, net::Buffer& out, bool compressed = false);

struct Frame {
  bool compressed = false;
  net::Buffer message;
};

class FrameDecoder {
 public:
  explicit FrameDecoder(size_t max_message_size = kDefaultMaxMessageSize)
      : max_message_size_(max_message_size) {}

  // Consumes all of `input` and appends every message completed by it to `frames`. A message
  // larger than the limit, or a flag byte other than 0 or 1, is an error (RESOURCE_EXHAUSTED /
  // INTERNAL in gRPC terms: absl::ResourceExhaustedError / absl::InternalError), after which
  // the decoder refuses further input.
  absl::Status Decode(net::Buffer& input, std::vector<Frame>& frames);

  // True while part of a message has been read: at end of stream that means it was truncated.
  bool HasPartialFrame() const { return header_bytes_ > 0; }
  size_t max_message_size() const { return max_message_size_; }

 private:
  const size_t max_message_size_;
  uint8_t header_[kFrameHeaderSize] = {};
  size_t header_bytes_ = 0;  // 0..5; 5 means the header is complete and a body is expected
  size_t remaining_ = 0;     // body bytes still missing
  Frame current_;
  absl::Status error_;
};

}  // namespace meshlet::http::grpc

#include "common/http/grpc/framing.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace meshlet::http::grpc {

void EncodeFrameHeader(uint32_t length, bool compressed, net::Buffer& out) {
  const uint8_t header[kFrameHeaderSize] = {
      static_cast<uint8_t>(compressed ? 1 : 0), static_cast<uint8_t>(length >> 24),
      static_cast<uint8_t>(length >> 16), static_cast<uint8_t>(length >> 8),
      static_cast<uint8_t>(length)};
  out.Append(header, sizeof(header));
}

void EncodeMessage(net::Buffer& message, net::Buffer& out, bool compressed) {
  EncodeFrameHeader(static_cast<uint32_t>(message.length()), compressed, out);
  out.Move(message);
}

void EncodeMessage(absl::string_view message, net::Buffer& out, bool compressed) {
  EncodeFrameHeader(static_cast<uint32_t>(message.size()), compressed, out);
  out.Append(message);
}

absl::Status FrameDecoder::Decode(net::Buffer& input, std::vector<Frame>& frames) {
  if (!error_.ok()) {
    input.Drain(input.length());
    return error_;
  }
  while (!input.empty()) {
    if (header_bytes_ < kFrameHeaderSize) {
      size_t n = input.CopyOut(0, header_ + header_bytes_, kFrameHeaderSize - header_bytes_);
      input.Drain(n);
      header_bytes_ += n;
      if (header_bytes_ < kFrameHeaderSize) break;
      if (header_[0] > 1) {
        error_ = absl::InternalError(
            absl::StrCat("grpc: invalid compressed flag ", static_cast<int>(header_[0])));
        input.Drain(input.length());
        return error_;
      }
      remaining_ = (size_t{header_[1]} << 24) | (size_t{header_[2]} << 16) |
                   (size_t{header_[3]} << 8) | size_t{header_[4]};
      if (remaining_ > max_message_size_) {
        error_ = absl::ResourceExhaustedError(absl::StrCat(
            "grpc: message of ", remaining_, " bytes exceeds the limit of ", max_message_size_));
        input.Drain(input.length());
        return error_;
      }
      current_.compressed = header_[0] == 1;
    }
    size_t n = std::min(remaining_, input.length());
    current_.message.Move(input, n);
    remaining_ -= n;
    if (remaining_ == 0) {
      frames.push_back(std::move(current_));
      current_ = Frame();
      header_bytes_ = 0;
    }
  }
  return absl::OkStatus();
}

}  // namespace meshlet::http::grpc

#include "common/http/grpc/call_util.h"

#include <cstdint>

#include "absl/strings/str_cat.h"

namespace meshlet::http::grpc::grpc_internal {

std::string EncodeGrpcTimeout(Duration timeout) {
  int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count();
  if (ns <= 0) return "1n";
  // Smallest unit whose count fits the 8 digits the spec allows; rounding up.
  constexpr int64_t kMaxValue = 99999999;
  struct Unit {
    int64_t ns;
    char symbol;
  };
  static constexpr Unit kUnits[] = {{1, 'n'},
                                    {1000, 'u'},
                                    {1000000, 'm'},
                                    {1000000000, 'S'},
                                    {60LL * 1000000000, 'M'},
                                    {3600LL * 1000000000, 'H'}};
  for (const Unit& unit : kUnits) {
    int64_t value = (ns + unit.ns - 1) / unit.ns;
    if (value <= kMaxValue) return absl::StrCat(value, std::string(1, unit.symbol));
  }
  return absl::StrCat(kMaxValue, "H");
}

absl::Status InboundMessages::Decode(net::Buffer& data) {
  frames_.clear();
  absl::Status status = decoder_.Decode(data, frames_);
  for (Frame& frame : frames_) {
    if (frame.compressed) {
      frames_.clear();
      return absl::InternalError(
          "grpc: received a compressed message, but only the identity encoding is supported");
    }
    queue_.push_back(frame.message.ToString());
  }
  frames_.clear();
  return status;
}

}  // namespace meshlet::http::grpc::grpc_internal

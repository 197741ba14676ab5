#include "common/http/codec.h"

namespace meshlet::http {

absl::string_view ProtocolName(Protocol protocol) {
  switch (protocol) {
    case Protocol::kHttp10:
      return "HTTP/1.0";
    case Protocol::kHttp11:
      return "HTTP/1.1";
    case Protocol::kHttp2:
      return "HTTP/2";
  }
  return "unknown";
}

absl::string_view ResetReasonName(StreamResetReason reason) {
  switch (reason) {
    case StreamResetReason::kLocalReset:
      return "local_reset";
    case StreamResetReason::kRemoteReset:
      return "remote_reset";
    case StreamResetReason::kRemoteRefusedStream:
      return "remote_refused_stream";
    case StreamResetReason::kConnectionFailure:
      return "connection_failure";
    case StreamResetReason::kConnectionTermination:
      return "connection_termination";
    case StreamResetReason::kOverflow:
      return "overflow";
    case StreamResetReason::kProtocolError:
      return "protocol_error";
  }
  return "unknown";
}

}  // namespace meshlet::http

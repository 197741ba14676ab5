#include "sidecar/router/stream_info.h"

namespace meshlet::sidecar::router {

absl::string_view ResponseFlagShortName(ResponseFlag flag) {
  switch (flag) {
    case ResponseFlag::kNoRoute:
      return "NR";
    case ResponseFlag::kNoClusterFound:
      return "NC";
    case ResponseFlag::kNoHealthyUpstream:
      return "UH";
    case ResponseFlag::kUpstreamConnectFailure:
      return "UF";
    case ResponseFlag::kUpstreamOverflow:
      return "UO";
    case ResponseFlag::kUpstreamRequestTimeout:
      return "UT";
    case ResponseFlag::kUpstreamReset:
      return "UR";
    case ResponseFlag::kDownstreamClosed:
      return "DC";
    case ResponseFlag::kLocalReset:
      return "LR";
    case ResponseFlag::kStreamIdleTimeout:
      return "SI";
  }
  return "??";
}

void AppendResponseFlags(std::string* out, uint32_t flags) {
  if (flags == 0) {
    out->push_back('-');
    return;
  }
  bool first = true;
  for (size_t i = 0; i < kResponseFlagCount; ++i) {
    if ((flags & (1u << i)) == 0) continue;
    if (!first) out->push_back(',');
    first = false;
    const absl::string_view name = ResponseFlagShortName(ResponseFlagAt(i));
    out->append(name.data(), name.size());
  }
}

}  // namespace meshlet::sidecar::router

#include "sidecar/cluster/http2_stats.h"

#include <array>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"

namespace meshlet::sidecar::cluster {

absl::Status RegisterHttp2Stats(StatsShard& shard, Http2Side side, http::h2::Http2Stats& h2) {
  const bool down = side == Http2Side::kDownstream;
  const std::string prefix = down ? "meshlet_http2_downstream_" : "meshlet_http2_upstream_";
  // Whom the frames go to or come from, for the help texts.
  const char* const peers = down ? "HTTP/2 clients" : "upstream HTTP/2 servers";
  struct ByCode {
    std::array<Counter, http::h2::kErrorCodeSlots>* counters;
    const char* name;
    std::string help;
  };
  const ByCode by_code[] = {
      {&h2.rst_stream_sent, "rst_stream_sent_total",
       absl::StrCat("RST_STREAM frames sent to ", peers, ", by error code.")},
      {&h2.rst_stream_received, "rst_stream_received_total",
       absl::StrCat("RST_STREAM frames received from ", peers, ", by error code.")},
      {&h2.goaway_sent, "goaway_sent_total",
       absl::StrCat("GOAWAY frames sent to ", peers, ", by error code",
                    down ? " (a graceful drain sends two)." : ".")},
      {&h2.goaway_received, "goaway_received_total",
       absl::StrCat("GOAWAY frames received from ", peers, ", by error code.")},
  };
  for (const ByCode& metric : by_code) {
    for (size_t slot = 0; slot < http::h2::kErrorCodeSlots; ++slot) {
      ASSIGN_OR_RETURN(
          (*metric.counters)[slot],
          shard.RegisterCounter(absl::StrCat(prefix, metric.name), metric.help,
                                {{"code", std::string(http::h2::ErrorCodeSlotName(slot))}}));
    }
  }
  if (!down) return absl::OkStatus();
  constexpr absl::string_view kResetsHelp =
      "HTTP/2 client resets of streams whose response was not complete: premature (before any "
      "response headers and within http.stream_reset_min_lifetime of the request, or of a "
      "stream refused after a flood's GOAWAY; rapid reset) or late.";
  ASSIGN_OR_RETURN(h2.premature_resets,
                   shard.RegisterCounter("meshlet_http2_downstream_client_resets_total",
                                         kResetsHelp, {{"kind", "premature"}}));
  ASSIGN_OR_RETURN(h2.late_resets,
                   shard.RegisterCounter("meshlet_http2_downstream_client_resets_total",
                                         kResetsHelp, {{"kind", "late"}}));
  constexpr absl::string_view kRefusedHelp =
      "HTTP/2 streams refused: opened after the sidecar's GOAWAY (a drain, or a flood's), or "
      "beyond max_concurrent_streams (REFUSED_STREAM).";
  ASSIGN_OR_RETURN(h2.streams_refused_after_goaway,
                   shard.RegisterCounter("meshlet_http2_downstream_streams_refused_total",
                                         kRefusedHelp, {{"reason", "goaway"}}));
  ASSIGN_OR_RETURN(h2.streams_refused_over_limit,
                   shard.RegisterCounter("meshlet_http2_downstream_streams_refused_total",
                                         kRefusedHelp, {{"reason", "max_concurrent_streams"}}));
  return absl::OkStatus();
}

}  // namespace meshlet::sidecar::cluster

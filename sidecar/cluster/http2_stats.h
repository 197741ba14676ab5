#pragma once

// The HTTP/2 codec's counters (http::h2::Http2Stats) registered on a worker's StatsShard, for
// one side of the proxy: downstream connections (meshlet_http2_downstream_*, the connection
// manager's server codecs) or upstream ones (meshlet_http2_upstream_*, the connection pools'
// client codecs). Both sides count the RST_STREAM and GOAWAY frames sent and received by error
// code; only the downstream side has the server's counters (client resets by kind, refused
// streams), which a client codec never moves. docs/stats.md lists the series.
//
// Ownership: the handles point into the shard; they must not outlive it and are used only on the
// shard's thread. Registered once per worker, not per connection or per cluster.

#include "absl/status/status.h"
#include "common/http/h2/codec.h"
#include "common/stats/stats.h"

namespace meshlet::sidecar::cluster {

enum class Http2Side { kDownstream, kUpstream };

// Fills `h2`'s handles for `side`. Fails only when the shard refuses a series (its limit, or a
// name registered with other labels).
absl::Status RegisterHttp2Stats(StatsShard& shard, Http2Side side, http::h2::Http2Stats& h2);

}  // namespace meshlet::sidecar::cluster

#pragma once

// What a worker thread gives the HTTP connections it accepts: the services of the stream floor
// (sidecar/stream/stream_context.h: loop, randomness, clock, stats shard, tracer, access log), its
// clusters, and the configuration snapshot current for new requests. One per worker; everything
// in it is used only on that worker's thread (design.md §3), so nothing here takes a lock. The
// server (sidecar/server) owns it and replaces `snapshot` and updates `clusters` when
// configuration changes; a request keeps the snapshot it started with.

#include <memory>

#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/base/random.h"
#include "common/event/loop.h"
#include "sidecar/cluster/cluster_ref.h"
#include "sidecar/stream/stream_context.h"

namespace meshlet::sidecar::config {
struct Snapshot;
}

namespace meshlet::sidecar::router {
class Mirrors;
}

namespace meshlet::sidecar::listener {

class OnDemandWaiters;
using stream::AccessLogSink;

struct WorkerContext : stream::StreamContext {
  cluster::ClusterManager& clusters;
  std::shared_ptr<const config::Snapshot> snapshot;
  // The worker's request mirroring (router/mirror.h); null: mirror copies are skipped.
  router::Mirrors* mirrors = nullptr;
  // The worker's HTTP/2 connections draining after a flood now, across its listeners (each
  // compares it with its http.max_flood_drains; HttpConnectionManager keeps it).
  uint32_t flood_drains = 0;
  // The worker's requests and connections waiting for lookups (ADR 0086); null: no request waits.
  OnDemandWaiters* on_demand = nullptr;
};

}  // namespace meshlet::sidecar::listener

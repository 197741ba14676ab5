#pragma once

// Request mirroring (RouteAction::mirrors, Gateway API RequestMirror): a copy of a request sent to
// another cluster, whose answer is discarded. The router decides, per request and per mirror
// policy (its fraction, one draw of the worker's Random), which copies to make, reserves a slot
// for each here, copies the request's headers, body and trailers as they pass (the body bounded
// by the replay buffer limit, RetryBufferLimit(), as retries are) and, once the whole request has
// arrived, hands the copies over. From then on a MirrorRequest lives on its own: the original
// request never waits for it, never sees its failure, reset or slowness, and may end first.
//
// Bounded: at most `max_in_flight` copies per worker, counting those still being copied and those
// in flight (--mirror-max-in-flight); beyond that a copy is skipped and counted
// (meshlet_upstream_rq_mirror_skipped_total{reason="in_flight_limit"}). Each copy lives at most
// its route's timeout (15 s when the route has none). Stats in docs/stats.md.
//
// Ownership and threading: one Mirrors per worker, owned by the worker and reached through
// StreamContext::mirrors; it owns every MirrorRequest in flight, which keeps its cluster alive
// (ClusterRef) and is destroyed (its stream reset) with the Mirrors. Everything runs on the
// worker's loop thread.

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/codec.h"
#include "common/http/header_map.h"
#include "common/net/buffer.h"
#include "sidecar/cluster/cluster.h"
#include "sidecar/cluster/cluster_ref.h"

namespace meshlet::sidecar::router {

class MirrorRequest;

class Mirrors {
 public:
  // Copies in flight per worker when --mirror-max-in-flight is not given.
  static constexpr uint64_t kDefaultMaxInFlight = 64;

  // `loop` and `clusters` (the worker's, where mirror clusters are looked up) outlive it.
  Mirrors(event::Loop& loop, cluster::ClusterManager& clusters, uint64_t max_in_flight)
      : loop_(loop), clusters_(clusters), max_in_flight_(max_in_flight) {}
  ~Mirrors();  // resets every copy in flight
  Mirrors(const Mirrors&) = delete;
  Mirrors& operator=(const Mirrors&) = delete;

  // Takes a slot for one copy: false when the worker already has max_in_flight. A slot taken is
  // given back by Release() (the copy was dropped) or handed to Send().
  bool Reserve();
  void Release();
  // Sends a copy over a reserved slot: headers (with end of stream when there is no body and no
  // trailers), `body`, then `trailers` if not null, to a host of `cluster`. `protocol`: the
  // downstream request's, for the pool choice. `timeout`: the longest the copy may take.
  void Send(cluster::ClusterRef cluster, http::HeaderMapPtr headers, net::Buffer& body,
            http::HeaderMapPtr trailers, http::Protocol protocol, Duration timeout);

  cluster::ClusterManager& clusters() { return clusters_; }
  uint64_t in_flight() const { return in_flight_; }
  uint64_t max_in_flight() const { return max_in_flight_; }

 private:
  friend class MirrorRequest;
  // `request` is over: destroyed at the end of the loop turn, its slot given back.
  void Done(MirrorRequest& request);

  event::Loop& loop_;
  cluster::ClusterManager& clusters_;
  const uint64_t max_in_flight_;
  uint64_t in_flight_ = 0;  // reserved slots, copies being sent included
  absl::flat_hash_map<MirrorRequest*, std::unique_ptr<MirrorRequest>> active_;
};

// One copy in flight: a pooled stream to a host of the mirror cluster, the response drained.
class MirrorRequest final : public cluster::ConnPoolCallbacks,
                            public http::StreamDecoder,
                            public http::StreamCallbacks {
 public:
  MirrorRequest(Mirrors& owner, cluster::ClusterRef cluster, http::HeaderMapPtr headers,
                net::Buffer& body, http::HeaderMapPtr trailers);
  ~MirrorRequest() override;
  MirrorRequest(const MirrorRequest&) = delete;
  MirrorRequest& operator=(const MirrorRequest&) = delete;

  // Picks a host and asks its pool for a stream; may finish (fail) at once.
  void Start(http::Protocol protocol, Duration timeout);

  // cluster::ConnPoolCallbacks
  void OnPoolReady(http::StreamEncoder& encoder, cluster::Host& host) override;
  void OnPoolFailure(cluster::PoolFailureReason reason, absl::string_view details,
                     cluster::Host& host) override;
  // http::StreamDecoder: the answer, counted and dropped.
  void DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) override;
  void DecodeData(net::Buffer& data, bool end_stream) override;
  void DecodeTrailers(http::HeaderMapPtr trailers) override;
  // http::StreamCallbacks
  void OnResetStream(http::StreamResetReason reason, absl::string_view details) override;
  void OnAboveWriteBufferHighWatermark() override {}
  void OnBelowWriteBufferLowWatermark() override {}

 private:
  void ResponseEnded();
  // Over: counted as failed when `failed`, the stream let go (reset if still ours), then Done().
  void Finish(bool failed);
  void Detach();

  Mirrors& owner_;
  cluster::ClusterRef cluster_;
  http::HeaderMapPtr headers_;
  net::Buffer body_;
  http::HeaderMapPtr trailers_;
  cluster::Cancellable* handle_ = nullptr;
  http::StreamEncoder* encoder_ = nullptr;  // null once the stream is done or reset
  std::optional<event::Timer> timer_;
  bool request_complete_ = false;
  bool answered_ = false;  // the pool answered (inside NewStream, possibly)
  bool failed_ = false;    // a 5xx answer
  bool finished_ = false;
};

}  // namespace meshlet::sidecar::router

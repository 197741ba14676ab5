#pragma once

// Live tap (docs/xds.md "Live tap", ADR 0019 amendment): the requests of this sidecar that a
// control plane asked to watch, sampled at a rate and encoded as one JSON line each, in batches
// the server sends back on the discovery stream.
//
// TapSession: one tap — its filters, rate (a SharedTokenBucket, so the rate holds over all the
// workers together), end time, byte cap — shared by the workers and the main thread (the spec
// is immutable; the bucket and the drop counter are atomic). WorkerTap: the sessions one worker
// runs and each one's batch being filled. The connection manager calls WorkerTap::Record for each
// finished request only while its worker has one (StreamContext::tap is null otherwise: the
// request path without a tap pays that one test). Record matches the filters, takes a token,
// and appends the event to the session's batch unless that would pass the batch's byte cap;
// refusals are counted in the batch (rate, bytes), never queued. The server takes the batches
// every flush interval (TakeBatches) and when a tap ends (Remove).
//
// Threading: a TapSession's methods may be called from any thread. A WorkerTap is owned by its
// worker and used only on that worker's loop thread.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/http/header_map.h"
#include "sidecar/resilience/token_bucket.h"
#include "sidecar/stream/stream_info.h"

namespace meshlet::sidecar::stream {

enum class TapDirection : uint8_t { kAny, kInbound, kOutbound };

struct TapSpec {
  std::string id;
  TapDirection direction = TapDirection::kAny;
  std::string method;                  // exact; empty: any
  std::string authority;               // exact, case-insensitive; empty: any
  std::string path_prefix;             // empty: any
  uint32_t rate = 1;                   // events per second over every worker (at least 1)
  MonotonicTime end;                   // no event after this
  bool headers = false;                // request and response headers in each event
  size_t max_batch_bytes = 64 * 1024;  // a worker's batch, between two flushes
  // Outbound events name this sidecar's own identity as the caller (its SPIFFE id).
  std::string own_identity;
};

class TapSession {
 public:
  explicit TapSession(TapSpec spec);
  TapSession(const TapSession&) = delete;
  TapSession& operator=(const TapSession&) = delete;

  const TapSpec& spec() const { return spec_; }
  // Takes a token for one event at `now`; a refusal is counted (TakeRateDrops).
  bool Admit(MonotonicTime now);
  // The refusals counted since the last call.
  uint64_t TakeRateDrops() { return rate_drops_.exchange(0, std::memory_order_relaxed); }

 private:
  const TapSpec spec_;
  resilience::SharedTokenBucket bucket_;
  std::atomic<uint64_t> rate_drops_{0};
};

// One finished request as the tap reads it; the views are valid during Record only.
struct TapRequestView {
  bool inbound = false;
  const StreamInfo* info = nullptr;
  const http::HeaderMap* request_headers = nullptr;   // null: none decoded
  const http::HeaderMap* response_headers = nullptr;  // null: not kept (no tap wanted them)
  absl::string_view request_id;
  absl::string_view peer_identity;  // the caller's SPIFFE id (inbound, mTLS); empty otherwise
  absl::string_view error;          // the x-meshlet-error the response carried; empty: none
  bool reset = false;               // the stream was reset instead of answered
  uint64_t duration_us = 0;
  absl::Time wall;  // when the request ended
};

// Whether `request` passes `spec`'s filters.
bool TapMatches(const TapSpec& spec, const TapRequestView& request);
// Appends the event of `request` (a JSON object and a newline; docs/xds.md "Live tap").
void AppendTapEvent(const TapSpec& spec, const TapRequestView& request, std::string* out);

// What a worker gathered for one session since the last take.
struct TapBatch {
  std::shared_ptr<TapSession> session;
  std::string events_json;
  uint32_t events = 0;
  uint64_t dropped_cap = 0;
};

class WorkerTap {
 public:
  WorkerTap() = default;
  WorkerTap(const WorkerTap&) = delete;
  WorkerTap& operator=(const WorkerTap&) = delete;

  void Add(std::shared_ptr<TapSession> session);
  // Ends the session `id` on this worker and returns its last batch (no session: an empty one).
  TapBatch Remove(absl::string_view id);
  bool empty() const { return sessions_.empty(); }
  // Some session wants headers: the connection manager keeps the response headers for Record.
  bool wants_headers() const { return wants_headers_; }
  // A finished request, at `now`: matched against every session (ended ones skip it).
  void Record(const TapRequestView& request, MonotonicTime now);
  // The non-empty batches gathered since the last take (the sessions keep running).
  std::vector<TapBatch> TakeBatches();

 private:
  std::vector<TapBatch> sessions_;
  bool wants_headers_ = false;
};

}  // namespace meshlet::sidecar::stream

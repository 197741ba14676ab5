#pragma once

// What the files of AdsServer (ads_server.h) share and nobody else uses: the server's stat
// handles and the state of one sidecar stream. The server is split by concern:
//   ads_server.cc    streams: accept, authorize the node, certificate expiry, end; readiness
//   ads_requests.cc  requests of both variants: subscriptions, ACK/NACK accounting, dump answers
//   ads_push.cc      pushes: debounce, queue and throttling, the responses of both variants in
//                    make-before-break order
//   ads_status.cc    proxy-status, proxy-config and the sidecar's own view (config dump)
// Threading: the server's loop thread.

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/event/timer.h"
#include "common/http/grpc/server.h"
#include "common/stats/stats.h"
#include "control-plane/xds/ads_server.h"
#include "control-plane/xds/subscription.h"
#include "xds/discovery.pb.h"
#include "xds/node.pb.h"
#include "xds/protocol.h"

namespace meshlet::controlplane::ads {

// The results meshlet_xds_on_demand_lookups_total counts: KeyResult's (the generator's answers,
// and the server's own refusals as kMalformed and kOverLimit), then a key refused by the stream's
// token bucket.
inline constexpr size_t kRateLimited = static_cast<size_t>(KeyResult::kOverLimit) + 1;
inline constexpr size_t kLookupResults = kRateLimited + 1;
// The metric's label for `result` (< kLookupResults).
inline absl::string_view LookupResultName(size_t result) {
  return result == kRateLimited ? "rate_limited" : KeyResultName(static_cast<KeyResult>(result));
}

struct AdsServer::Metrics {
  std::array<Counter, kResourceTypeCount> pushes;
  std::array<Counter, kResourceTypeCount> nacks;
  std::array<Counter, kResourceTypeCount> acks;
  std::array<Counter, kResourceTypeCount> oversized_responses;
  std::array<Counter, kResourceTypeCount> response_chunks;
  Counter stale_nonces;
  Counter generate_errors;
  Counter push_timeouts;
  Counter refused_streams;
  Counter expired_streams;
  Counter push_rounds;
  std::array<Counter, 2> readiness_reports;  // [ready]
  Gauge connected;
  // notAfter of the soonest-expiring client certificate among the streams (Unix seconds; 0:
  // none carries one), refreshed every sweep.
  Gauge earliest_certificate_expiry;
  Gauge queued;
  Histogram convergence;
  // meshlet_xds_on_demand_lookups_total by result: KeyResult's, then kRateLimited.
  std::array<Counter, kLookupResults> lookups;
  Gauge on_demand_keys;
  Histogram on_demand_answer;

  Counter& lookup(KeyResult result) { return lookups[static_cast<size_t>(result)]; }

  explicit Metrics(StatsShard& shard);
};

// One sidecar stream.
class AdsServer::Stream {
 public:
  Stream(uint64_t id, std::shared_ptr<http::grpc::ServerCall> call, bool delta)
      : id(id), call(std::move(call)), delta(delta) {}

  const uint64_t id;
  std::shared_ptr<http::grpc::ServerCall> call;
  const bool delta;
  bool has_node = false;
  xds::Node node;
  // The largest response this stream's sidecar receives (its capabilities tell).
  size_t max_message_bytes = 0;
  StreamGrant grant;
  // When the grant expires, on the loop's clock.
  MonotonicTime expires = MonotonicTime::max();
  absl::Time connected_since = absl::InfinitePast();
  // Why its sidecar last said it is not ready (at most kMaxReadinessReason bytes); empty when it
  // said ready, or said nothing yet.
  std::string not_ready_reason;
  std::array<TypeSubscription, kResourceTypeCount> types;

  // Push bookkeeping.
  bool queued = false;
  bool in_flight = false;
  MonotonicTime push_started{};
  MonotonicTime push_changed_at{};
  bool push_saw_nack = false;
  std::optional<MonotonicTime> pending_change;  // earliest change not yet pushed
  uint64_t next_nonce = 0;
  bool served_types_sent = false;
  std::vector<std::string> warnings;
  // The set last generated for the stream when its generator can extend it
  // (NodeResourceSet::basis): handed back on the next push (GenerateRequest::previous), so a
  // lookup costs the generator what it adds rather than what the node holds.
  std::optional<NodeResourceSet> generated;
  // The first keys_settled lookup keys were last sent the answers `generated` gives them, while
  // keys_settled_removed keys had been removed (TypeSubscription::keys_removed): a push whose set
  // keeps their answers (NodeResourceSet::answers_kept) compares only the keys after them.
  size_t keys_settled = 0;
  uint64_t keys_settled_removed = 0;
  // Lookup keys (ADR 0086): refused ones owed their "missing" answer on the next push, whether
  // the stream waits on the on-demand queue, and its token bucket (tokens at `key_tokens_at`).
  std::vector<std::string> refused_keys;
  bool on_demand_queued = false;
  double key_tokens = 0;
  std::optional<MonotonicTime> key_tokens_at;
  // Until it fires, subscriptions gather (initial_subscription_window).
  std::unique_ptr<event::Timer> first_push_timer;
  // The sidecar's own view (RequestConfigDump): the nonce last asked with, and the latest
  // answer with the nonce it answered.
  std::string dump_nonce;
  std::optional<xds::SidecarConfigDump> dump;
  std::string dump_answer_nonce;
  std::string dump_received_at;
  // Live taps running on this stream's sidecar (AdsServer::StartTap), until it says ended.
  std::set<std::string> taps;

  // The keys the ServiceRoute subscription holds, as the generator takes them (views into it).
  std::vector<absl::string_view> LookupKeys() const {
    const std::vector<std::string>& keys = of(ResourceType::kServiceRoute).keys();
    return std::vector<absl::string_view>(keys.begin(), keys.end());
  }
  TypeSubscription& of(ResourceType type) { return types[static_cast<size_t>(type)]; }
  const TypeSubscription& of(ResourceType type) const { return types[static_cast<size_t>(type)]; }
  std::string NextNonce() { return absl::StrCat(absl::Hex(id), "-", ++next_nonce); }
  // The nonce of the next response of either variant; until one went out (Send), the response
  // also lists the types this control plane serves (served_types): a sidecar drops what it holds
  // of any other type when a stream's first response arrives.
  template <typename Response>
  void SetNextNonce(Response& response) {
    response.set_nonce(NextNonce());
    if (served_types_sent) return;
    for (const char* type_url : xds::kResourceTypeUrls) response.add_served_types(type_url);
  }
  template <typename Response>
  bool Send(const Response& response) {
    if (!call->SendProto(response)) return false;
    served_types_sent = true;
    return true;
  }
  bool AwaitingAnswers() const {
    for (const TypeSubscription& type : types) {
      if (type.awaiting_answer()) return true;
    }
    return false;
  }
};

}  // namespace meshlet::controlplane::ads

// AdsServer's streams: a stream opens (refused past max_streams), its first request's Node is
// checked and authorized (StreamAuthorizer) before anything is registered or sent, the
// observer hears of it, its grant's expiry ends it (UNAUTHENTICATED, so the sidecar reconnects
// with its renewed certificate), and it ends. Readiness reports reach the observer from here.
// Requests and pushes are in ads_requests.cc and ads_push.cc. Threading: the loop thread.

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/stats/must_stat.h"
#include "control-plane/xds/ads_server.h"
#include "control-plane/xds/ads_server_internal.h"
#include "xds/capabilities.h"
#include "xds/protocol.h"

namespace meshlet::controlplane::ads {
namespace {

using http::grpc::ServerCall;
using http::grpc::StatusCode;

}  // namespace

AdsServer::Metrics::Metrics(StatsShard& shard) {
  for (ResourceType type : kPushOrder) {
    const size_t i = static_cast<size_t>(type);
    const LabelSet labels = {{"type", std::string(TypeLabel(type))}};
    pushes[i] = MustStat(shard.RegisterCounter(
        "meshlet_xds_pushes_total", "Discovery responses sent to sidecars, by type.", labels));
    nacks[i] = MustStat(shard.RegisterCounter(
        "meshlet_xds_nacks_total", "Responses sidecars refused (NACK), by type.", labels));
    acks[i] = MustStat(shard.RegisterCounter("meshlet_xds_acks_total",
                                             "Responses sidecars applied (ACK), by type.", labels));
    oversized_responses[i] = MustStat(shard.RegisterCounter(
        "meshlet_xds_oversized_responses_total",
        "Responses (state of the world) or resources (delta) not sent because they are above the "
        "stream's message limit, by type; counted once per version.",
        labels));
    response_chunks[i] = MustStat(shard.RegisterCounter(
        "meshlet_xds_response_chunks_total",
        "Delta responses after the first of a push split under the response size budget, by "
        "type.",
        labels));
  }
  stale_nonces = MustStat(shard.RegisterCounter(
      "meshlet_xds_stale_nonces_total",
      "Requests answering a response the server no longer tracks (ignored)."));
  generate_errors = MustStat(
      shard.RegisterCounter("meshlet_xds_generate_errors_total",
                            "Pushes skipped because a node's resources could not be generated."));
  push_timeouts = MustStat(shard.RegisterCounter(
      "meshlet_xds_push_timeouts_total", "Pushes not fully answered within the push timeout."));
  refused_streams = MustStat(shard.RegisterCounter(
      "meshlet_xds_refused_streams_total",
      "Streams refused: no node id in the first request, or too many streams."));
  expired_streams = MustStat(shard.RegisterCounter(
      "meshlet_xds_expired_streams_total",
      "Streams ended because the client certificate they were opened with expired."));
  push_rounds = MustStat(shard.RegisterCounter("meshlet_xds_push_rounds_total",
                                               "Debounced change rounds that queued every node."));
  for (const bool ready : {false, true}) {
    readiness_reports[ready] = MustStat(shard.RegisterCounter(
        "meshlet_xds_readiness_reports_total",
        "Readiness reports from sidecars (first request of a stream, or a change), by readiness.",
        {{"ready", ready ? "true" : "false"}}));
  }
  earliest_certificate_expiry = MustStat(shard.RegisterGauge(
      "meshlet_xds_client_certificate_earliest_expiry_timestamp_seconds",
      "When the soonest-expiring workload certificate among the connected sidecars' streams "
      "expires (Unix seconds; 0 when none presented one); refreshed every second.",
      {}, GaugeMerge::kGlobal));
  connected = MustStat(shard.RegisterGauge("meshlet_xds_connected_proxies",
                                           "Sidecar streams that sent their Node.", {},
                                           GaugeMerge::kGlobal));
  queued = MustStat(shard.RegisterGauge("meshlet_xds_push_queue", "Nodes waiting for a push slot.",
                                        {}, GaugeMerge::kGlobal));
  for (size_t i = 0; i < kLookupResults; ++i) {
    const std::string result(LookupResultName(i));
    lookups[i] = MustStat(shard.RegisterCounter(
        "meshlet_xds_on_demand_lookups_total",
        "Lookup keys answered (ADR 0086), by result: found, not_found, refused (the node may not "
        "discover what answers it), malformed, over_limit (the stream's key limit or the node's "
        "discovered Services), rate_limited (the stream's key rate).",
        {{"result", result}}));
  }
  on_demand_keys = MustStat(shard.RegisterGauge("meshlet_xds_on_demand_keys",
                                                "Lookup keys held by all discovery streams.", {},
                                                GaugeMerge::kGlobal));
  on_demand_answer = MustStat(shard.RegisterHistogram(
      "meshlet_xds_on_demand_answer_seconds",
      "Time from a lookup key's arrival to its first answer handed to the stream.", {},
      HistogramOptions{.exposition_divisor = 1e6}));
  convergence = MustStat(shard.RegisterHistogram(
      "meshlet_xds_convergence_seconds",
      "Time from a change to the sidecar's ACK of every response carrying it.", {},
      HistogramOptions{.exposition_divisor = 1e6}));
}

AdsServer::AdsServer(event::Loop& loop, StatsRegistry& stats, ResourceGenerator generator,
                     AdsServerOptions options)
    : loop_(loop),
      options_(std::move(options)),
      generator_(std::move(generator)),
      metrics_(std::make_unique<Metrics>(stats.shared_shard())) {
  debounce_timer_ = std::make_unique<event::Timer>(loop_, [this] { OnDebounceFired(); });
  sweep_timer_ = std::make_unique<event::Timer>(loop_, [this] { SweepTimeouts(); });
  sweep_timer_->EnableRepeating(std::chrono::seconds(1));
}

AdsServer::~AdsServer() { Stop(); }

void AdsServer::Stop() {
  *alive_ = false;
  debounce_timer_.reset();
  sweep_timer_.reset();
  for (auto& [id, stream] : streams_) {
    stream->call->OnMessage(nullptr);
    stream->call->OnHalfClose(nullptr);
    stream->call->OnCancel(nullptr);
  }
  streams_.clear();
  push_queue_.clear();
  on_demand_queue_.clear();
  on_demand_keys_ = 0;
  metrics_->on_demand_keys.Set(0);
  pushes_in_flight_ = 0;
  metrics_->connected.Set(0);
  metrics_->queued.Set(0);
}

absl::Status AdsServer::Register(http::grpc::Server& server) {
  absl::Status status =
      server.RegisterMethod(xds::kStreamMethod, [this](std::shared_ptr<ServerCall> call) {
        OnStreamStarted(std::move(call), /*delta=*/false);
      });
  if (!status.ok()) return status;
  return server.RegisterMethod(xds::kDeltaMethod, [this](std::shared_ptr<ServerCall> call) {
    OnStreamStarted(std::move(call), /*delta=*/true);
  });
}

void AdsServer::OnStreamStarted(std::shared_ptr<ServerCall> call, bool delta) {
  if (streams_.size() >= options_.max_streams) {
    metrics_->refused_streams.Inc();
    call->Finish(StatusCode::kResourceExhausted,
                 absl::StrCat("too many discovery streams (limit ", options_.max_streams, ")"));
    return;
  }
  const uint64_t id = next_stream_id_++;
  auto owned = std::make_unique<Stream>(id, call, delta);
  Stream* stream = owned.get();
  streams_.emplace(id, std::move(owned));

  if (!delta) {
    call->OnProtoMessage<xds::DiscoveryRequest>(
        [this, stream](xds::DiscoveryRequest request) { OnRequest(*stream, request); });
  } else {
    call->OnProtoMessage<xds::DeltaDiscoveryRequest>(
        [this, stream](xds::DeltaDiscoveryRequest request) { OnDeltaRequest(*stream, request); });
  }
  call->OnHalfClose([this, id] {
    auto it = streams_.find(id);
    if (it != streams_.end()) it->second->call->Finish(StatusCode::kOk);
    OnStreamEnded(id);
  });
  call->OnCancel([this, id] { OnStreamEnded(id); });
}

bool AdsServer::AcceptNode(Stream& stream, const xds::Node& node) {
  if (stream.has_node) {
    if (observer_ != nullptr) observer_->OnProxyActivity(stream.node.id());
    return true;
  }
  if (node.id().empty()) {
    metrics_->refused_streams.Inc();
    EndStream(stream, StatusCode::kInvalidArgument,
              "the first request of a stream must carry node.id");
    return false;
  }
  if (authorizer_) {
    absl::StatusOr<StreamGrant> grant = authorizer_(*stream.call, node);
    if (!grant.ok()) {
      EndStream(stream, static_cast<StatusCode>(static_cast<int>(grant.status().code())),
                grant.status().message());
      return false;
    }
    stream.grant = *std::move(grant);
    if (stream.grant.expires != absl::InfiniteFuture()) {
      const absl::Duration left = stream.grant.expires - absl::Now();
      stream.expires =
          Now() + (left > absl::ZeroDuration()
                       ? std::chrono::duration_cast<Duration>(absl::ToChronoNanoseconds(left))
                       : Duration::zero());
    }
  }
  stream.has_node = true;
  stream.node = node;
  stream.max_message_bytes =
      xds::CapabilitiesOf(stream.node).Has(xds::Capability::kLargeXdsMessages)
          ? options_.max_large_message_bytes
          : options_.max_message_bytes;
  stream.first_push_timer = std::make_unique<event::Timer>(loop_, [this, &stream] {
    stream.first_push_timer->Disable();
    RequestPush(stream, stream.pending_change.value_or(Now()));
  });
  stream.first_push_timer->Enable(options_.initial_subscription_window);
  stream.connected_since = absl::Now();
  metrics_->connected.Set(static_cast<int64_t>(std::count_if(
      streams_.begin(), streams_.end(), [](const auto& s) { return s.second->has_node; })));
  LOG(INFO) << "xds: " << (stream.delta ? "delta" : "sotw") << " stream from " << node.id() << " ("
            << stream.call->peer_address().ToString() << ")";
  if (observer_ != nullptr) observer_->OnProxyConnected(node);
  return true;
}

void AdsServer::OnStreamEnded(uint64_t stream_id) {
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return;
  std::unique_ptr<Stream> stream = std::move(it->second);
  streams_.erase(it);
  // Taps running on it end with it (the sidecar ends them too when its stream ends).
  for (const std::string& id : stream->taps) {
    auto tap = taps_.find(id);
    if (tap == taps_.end()) continue;
    xds::TapEvents ended;
    ended.set_id(id);
    ended.set_ended(true);
    ended.set_error("the sidecar's discovery stream ended");
    TapSink sink = tap->second;
    sink(stream->node.id(), ended);
  }
  if (stream->in_flight) {
    --pushes_in_flight_;
    ScheduleDrain();
  }
  if (const size_t keys = stream->of(ResourceType::kServiceRoute).keys().size(); keys > 0) {
    on_demand_keys_ -= keys;
    metrics_->on_demand_keys.Set(static_cast<int64_t>(on_demand_keys_));
  }
  if (stream->has_node) {
    metrics_->connected.Set(static_cast<int64_t>(std::count_if(
        streams_.begin(), streams_.end(), [](const auto& s) { return s.second->has_node; })));
    LOG(INFO) << "xds: stream from " << stream->node.id() << " ended";
    if (observer_ != nullptr) observer_->OnProxyDisconnected(stream->node.id());
  }
  // Its callbacks capture the raw stream; the call may outlive it.
  stream->call->OnMessage(nullptr);
  stream->call->OnHalfClose(nullptr);
  stream->call->OnCancel(nullptr);
}

void AdsServer::SweepTimeouts() {
  const MonotonicTime now = Now();
  std::vector<Stream*> expired;
  std::vector<Stream*> unauthorized;
  absl::Time earliest = absl::InfiniteFuture();
  for (auto& [id, stream] : streams_) {
    if (stream->in_flight && now - stream->push_started >= options_.push_timeout) {
      expired.push_back(stream.get());
    }
    if (stream->has_node && now >= stream->expires) unauthorized.push_back(stream.get());
    if (stream->has_node) earliest = std::min(earliest, stream->grant.expires);
  }
  metrics_->earliest_certificate_expiry.Set(
      earliest == absl::InfiniteFuture() ? 0 : absl::ToUnixSeconds(earliest));
  for (Stream* stream : expired) FinishPush(*stream, /*timed_out=*/true);
  for (Stream* stream : unauthorized) {
    metrics_->expired_streams.Inc();
    LOG(INFO) << "xds: ending the stream of " << stream->node.id()
              << ": its client certificate expired";
    EndStream(*stream, StatusCode::kUnauthenticated,
              "the client certificate this stream was opened with has expired; reconnect with "
              "the current one");
  }
}

void AdsServer::EndStream(Stream& stream, StatusCode code, absl::string_view message) {
  stream.expires = MonotonicTime::max();
  stream.call->Finish(code, message);
  const uint64_t id = stream.id;
  loop_.Post([this, id, alive = std::weak_ptr<bool>(alive_)] {
    if (auto a = alive.lock(); a && *a) OnStreamEnded(id);
  });
}

void AdsServer::OnReadiness(Stream& stream, const xds::WorkloadReadiness& readiness) {
  metrics_->readiness_reports[readiness.ready()].Inc();
  const std::string reason(
      absl::string_view(readiness.reason()).substr(0, ProxyObserver::kMaxReadinessReason));
  stream.not_ready_reason = readiness.ready() ? "" : reason;
  if (observer_ == nullptr) return;
  observer_->OnProxyReadiness(stream.node.id(), readiness.ready(), reason);
}

}  // namespace meshlet::controlplane::ads

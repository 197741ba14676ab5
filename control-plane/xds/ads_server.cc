#include "control-plane/xds/ads_server.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/base/sync.h"
#include "google/protobuf/util/json_util.h"
#include "xds/resources.pb.h"

namespace meshlet::controlplane::ads {
namespace {

using http::grpc::ServerCall;
using http::grpc::StatusCode;

template <typename T>
T MustStat(absl::StatusOr<T> handle) {
  CHECK_OK(handle.status());
  return *handle;
}

uint64_t Micros(Duration d) { return d.count() <= 0 ? 0 : static_cast<uint64_t>(d.count() / 1000); }

std::string TimeText(absl::Time t) {
  if (t == absl::InfinitePast()) return "";
  return absl::FormatTime(absl::RFC3339_full, t, absl::UTCTimeZone());
}

// Resource JSON for proxy-config: the typed message, private keys redacted.
std::string ResourceJson(const google::protobuf::Any& any) {
  std::unique_ptr<google::protobuf::Message> message;
  if (any.type_url() == TypeUrl(ResourceType::kListener)) {
    message = std::make_unique<xds::Listener>();
  } else if (any.type_url() == TypeUrl(ResourceType::kRoute)) {
    message = std::make_unique<xds::RouteConfiguration>();
  } else if (any.type_url() == TypeUrl(ResourceType::kCluster)) {
    message = std::make_unique<xds::Cluster>();
  } else if (any.type_url() == TypeUrl(ResourceType::kEndpoint)) {
    message = std::make_unique<xds::ClusterLoadAssignment>();
  } else if (any.type_url() == TypeUrl(ResourceType::kSecret)) {
    message = std::make_unique<xds::Secret>();
  } else {
    return "null";
  }
  if (!message->ParseFromString(any.value())) return "null";
  if (auto* secret = dynamic_cast<xds::Secret*>(message.get());
      secret != nullptr && !secret->private_key_pem().empty()) {
    secret->set_private_key_pem("[redacted]");
  }
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(*message, &json, options).ok()) return "null";
  return json;
}

}  // namespace

struct AdsServer::Metrics {
  std::array<Counter, kResourceTypeCount> pushes;
  std::array<Counter, kResourceTypeCount> nacks;
  std::array<Counter, kResourceTypeCount> acks;
  Counter stale_nonces;
  Counter generate_errors;
  Counter push_timeouts;
  Counter refused_streams;
  Counter expired_streams;
  Counter push_rounds;
  std::array<Counter, 2> readiness_reports;  // [ready]
  Gauge connected;
  Gauge queued;
  Histogram convergence;

  explicit Metrics(StatsShard& shard) {
    for (ResourceType type : kPushOrder) {
      const size_t i = static_cast<size_t>(type);
      const LabelSet labels = {{"type", std::string(TypeLabel(type))}};
      pushes[i] = MustStat(shard.RegisterCounter(
          "meshlet_xds_pushes_total", "Discovery responses sent to sidecars, by type.", labels));
      nacks[i] = MustStat(shard.RegisterCounter(
          "meshlet_xds_nacks_total", "Responses sidecars refused (NACK), by type.", labels));
      acks[i] = MustStat(shard.RegisterCounter(
          "meshlet_xds_acks_total", "Responses sidecars applied (ACK), by type.", labels));
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
    push_rounds = MustStat(shard.RegisterCounter(
        "meshlet_xds_push_rounds_total", "Debounced change rounds that queued every node."));
    for (const bool ready : {false, true}) {
      readiness_reports[ready] = MustStat(shard.RegisterCounter(
          "meshlet_xds_readiness_reports_total",
          "Readiness reports from sidecars (first request of a stream, or a change), by readiness.",
          {{"ready", ready ? "true" : "false"}}));
    }
    connected = MustStat(shard.RegisterGauge("meshlet_xds_connected_proxies",
                                             "Sidecar streams that sent their Node.", {},
                                             GaugeMerge::kGlobal));
    queued = MustStat(shard.RegisterGauge(
        "meshlet_xds_push_queue", "Nodes waiting for a push slot.", {}, GaugeMerge::kGlobal));
    convergence = MustStat(shard.RegisterHistogram(
        "meshlet_xds_convergence_seconds",
        "Time from a change to the sidecar's ACK of every response carrying it.", {},
        HistogramOptions{.exposition_divisor = 1e6}));
  }
};

// One sidecar stream.
class AdsServer::Stream {
 public:
  Stream(uint64_t id, std::shared_ptr<ServerCall> call, bool delta)
      : id(id), call(std::move(call)), delta(delta) {}

  const uint64_t id;
  std::shared_ptr<ServerCall> call;
  const bool delta;
  bool has_node = false;
  xds::Node node;
  StreamGrant grant;
  // When the grant expires, on the loop's clock.
  MonotonicTime expires = MonotonicTime::max();
  absl::Time connected_since = absl::InfinitePast();
  std::array<TypeSubscription, kResourceTypeCount> types;

  // Push bookkeeping.
  bool queued = false;
  bool in_flight = false;
  MonotonicTime push_started{};
  MonotonicTime push_changed_at{};
  bool push_saw_nack = false;
  std::optional<MonotonicTime> pending_change;  // earliest change not yet pushed
  uint64_t next_nonce = 0;
  std::vector<std::string> warnings;
  // Until it fires, subscriptions gather (initial_subscription_window).
  std::unique_ptr<event::Timer> first_push_timer;
  // The sidecar's own view (RequestConfigDump): the nonce last asked with, and the latest
  // answer with the nonce it answered.
  std::string dump_nonce;
  std::optional<xds::SidecarConfigDump> dump;
  std::string dump_answer_nonce;
  std::string dump_received_at;

  TypeSubscription& of(ResourceType type) { return types[static_cast<size_t>(type)]; }
  const TypeSubscription& of(ResourceType type) const { return types[static_cast<size_t>(type)]; }
  std::string NextNonce() { return absl::StrCat(absl::Hex(id), "-", ++next_nonce); }
  bool AwaitingAnswers() const {
    for (const TypeSubscription& type : types) {
      if (type.awaiting_answer()) return true;
    }
    return false;
  }
};

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
  pushes_in_flight_ = 0;
  metrics_->connected.Set(0);
  metrics_->queued.Set(0);
}

absl::Status AdsServer::Register(http::grpc::Server& server) {
  absl::Status status =
      server.RegisterMethod(kStreamMethod, [this](std::shared_ptr<ServerCall> call) {
        OnStreamStarted(std::move(call), /*delta=*/false);
      });
  if (!status.ok()) return status;
  return server.RegisterMethod(kDeltaMethod, [this](std::shared_ptr<ServerCall> call) {
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

  // Registers the node on the first request; false (and the call is finished) without one.
  auto accept_node = [this, stream](const xds::Node& node) {
    if (stream->has_node) {
      if (observer_ != nullptr) observer_->OnProxyActivity(stream->node.id());
      return true;
    }
    if (node.id().empty()) {
      metrics_->refused_streams.Inc();
      EndStream(*stream, StatusCode::kInvalidArgument,
                "the first request of a stream must carry node.id");
      return false;
    }
    if (authorizer_) {
      absl::StatusOr<StreamGrant> grant = authorizer_(*stream->call, node);
      if (!grant.ok()) {
        EndStream(*stream, static_cast<StatusCode>(static_cast<int>(grant.status().code())),
                  grant.status().message());
        return false;
      }
      stream->grant = *std::move(grant);
      if (stream->grant.expires != absl::InfiniteFuture()) {
        const absl::Duration left = stream->grant.expires - absl::Now();
        stream->expires =
            Now() + (left > absl::ZeroDuration()
                         ? std::chrono::duration_cast<Duration>(absl::ToChronoNanoseconds(left))
                         : Duration::zero());
      }
    }
    stream->has_node = true;
    stream->node = node;
    stream->first_push_timer = std::make_unique<event::Timer>(loop_, [this, stream] {
      stream->first_push_timer->Disable();
      RequestPush(*stream, stream->pending_change.value_or(Now()));
    });
    stream->first_push_timer->Enable(options_.initial_subscription_window);
    stream->connected_since = absl::Now();
    metrics_->connected.Set(static_cast<int64_t>(std::count_if(
        streams_.begin(), streams_.end(), [](const auto& s) { return s.second->has_node; })));
    LOG(INFO) << "xds: " << (stream->delta ? "delta" : "sotw") << " stream from " << node.id()
              << " (" << stream->call->peer_address().ToString() << ")";
    if (observer_ != nullptr) observer_->OnProxyConnected(node);
    return true;
  };

  if (!delta) {
    call->OnProtoMessage<xds::DiscoveryRequest>(
        [this, stream, accept_node](xds::DiscoveryRequest request) {
          if (!accept_node(request.node())) return;
          if (request.has_readiness()) OnReadiness(*stream, request.readiness());
          if (request.type_url() == kReadinessTypeUrl) return;  // a report and nothing else
          if (request.type_url() == kConfigDumpTypeUrl) {
            return OnConfigDump(*stream, request.response_nonce(), request.config_dump());
          }
          std::optional<ResourceType> type = ParseTypeUrl(request.type_url());
          if (!type) {
            LOG_EVERY_N_SEC(WARN, 1)
                << "xds: " << stream->node.id() << " asked for unknown type " << request.type_url();
            return;
          }
          TypeSubscription& sub = stream->of(*type);
          const std::vector<std::string> names(request.resource_names().begin(),
                                               request.resource_names().end());
          if (request.response_nonce().empty()) {
            // A new subscription (or a reconnect): the sidecar says which version it runs.
            const bool first = !sub.subscribed();
            sub.Subscribe(names);
            if (first && !request.version_info().empty()) {
              sub.SetReportedVersion(request.version_info());
            }
            RequestPush(*stream, Now());
            return;
          }
          RecordAnswer(*stream, sub, *type, request.response_nonce(),
                       request.has_error_detail() ? &request.error_detail() : nullptr);
          if (!sub.SameNames(names)) {
            sub.Subscribe(names);
            RequestPush(*stream, Now());
          }
          OnPushMaybeDone(*stream);
        });
  } else {
    call->OnProtoMessage<xds::DeltaDiscoveryRequest>(
        [this, stream, accept_node](xds::DeltaDiscoveryRequest request) {
          if (!accept_node(request.node())) return;
          if (request.has_readiness()) OnReadiness(*stream, request.readiness());
          if (request.type_url() == kReadinessTypeUrl) return;  // a report and nothing else
          if (request.type_url() == kConfigDumpTypeUrl) {
            return OnConfigDump(*stream, request.response_nonce(), request.config_dump());
          }
          std::optional<ResourceType> type = ParseTypeUrl(request.type_url());
          if (!type) {
            LOG_EVERY_N_SEC(WARN, 1)
                << "xds: " << stream->node.id() << " asked for unknown type " << request.type_url();
            return;
          }
          TypeSubscription& sub = stream->of(*type);
          const bool first = !sub.subscribed();
          const std::vector<std::string> subscribe(request.resource_names_subscribe().begin(),
                                                   request.resource_names_subscribe().end());
          const std::vector<std::string> unsubscribe(request.resource_names_unsubscribe().begin(),
                                                     request.resource_names_unsubscribe().end());
          sub.UpdateDeltaSubscription(subscribe, unsubscribe);
          if (first && !request.initial_resource_versions().empty()) {
            ResourceMap held;
            for (const auto& [name, version] : request.initial_resource_versions()) {
              auto resource = std::make_shared<NamedResource>();
              resource->name = name;
              resource->version = version;
              held.emplace(name, std::move(resource));
            }
            sub.SetInitialVersions(held);
          }
          if (request.response_nonce().empty()) {
            RequestPush(*stream, Now());
            return;
          }
          RecordAnswer(*stream, sub, *type, request.response_nonce(),
                       request.has_error_detail() ? &request.error_detail() : nullptr);
          if (!subscribe.empty() || !unsubscribe.empty()) RequestPush(*stream, Now());
          OnPushMaybeDone(*stream);
        });
  }
  call->OnHalfClose([this, id] {
    auto it = streams_.find(id);
    if (it != streams_.end()) it->second->call->Finish(StatusCode::kOk);
    OnStreamEnded(id);
  });
  call->OnCancel([this, id] { OnStreamEnded(id); });
}

void AdsServer::OnStreamEnded(uint64_t stream_id) {
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return;
  std::unique_ptr<Stream> stream = std::move(it->second);
  streams_.erase(it);
  if (stream->in_flight) {
    --pushes_in_flight_;
    ScheduleDrain();
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

void AdsServer::NotifyChanged() {
  auto fire = [this] {
    const MonotonicTime now = Now();
    if (!burst_started_) burst_started_ = now;
    const MonotonicTime latest = *burst_started_ + options_.debounce_max_delay;
    const Duration wait = std::min<Duration>(options_.debounce_quiet, latest - now);
    debounce_timer_->Enable(std::max<Duration>(wait, Duration::zero()));
  };
  if (loop_.IsInLoopThread()) {
    fire();
    return;
  }
  loop_.Post([alive = std::weak_ptr<bool>(alive_), fire] {
    if (auto a = alive.lock(); a && *a) fire();
  });
}

void AdsServer::OnDebounceFired() {
  if (!burst_started_) return;
  const MonotonicTime changed_at = *burst_started_;
  burst_started_.reset();
  ++push_rounds_;
  metrics_->push_rounds.Inc();
  for (auto& [id, stream] : streams_) {
    if (stream->has_node) RequestPush(*stream, changed_at);
  }
}

void AdsServer::RequestPush(Stream& stream, MonotonicTime changed_at) {
  if (!stream.pending_change || changed_at < *stream.pending_change) {
    stream.pending_change = changed_at;
  }
  if (stream.first_push_timer != nullptr && stream.first_push_timer->enabled()) return;
  if (!stream.queued && !stream.in_flight) {
    stream.queued = true;
    push_queue_.push_back(stream.id);
    metrics_->queued.Set(static_cast<int64_t>(push_queue_.size()));
  }
  ScheduleDrain();
}

void AdsServer::ScheduleDrain() {
  // On a later turn, so the subscriptions a sidecar sends together are served in one push, in
  // dependency order, whatever order they arrived in.
  if (drain_posted_) return;
  drain_posted_ = true;
  loop_.Post([this, alive = std::weak_ptr<bool>(alive_)] {
    if (auto a = alive.lock(); !a || !*a) return;
    drain_posted_ = false;
    DrainQueue();
  });
}

void AdsServer::DrainQueue() {
  while (pushes_in_flight_ < options_.max_concurrent_pushes && !push_queue_.empty()) {
    const uint64_t id = push_queue_.front();
    push_queue_.pop_front();
    auto it = streams_.find(id);
    if (it == streams_.end()) continue;
    Stream& stream = *it->second;
    stream.queued = false;
    if (stream.in_flight) continue;  // re-queued when its push is answered
    Push(stream);
  }
  metrics_->queued.Set(static_cast<int64_t>(push_queue_.size()));
}

void AdsServer::Push(Stream& stream) {
  if (!stream.pending_change) return;
  const MonotonicTime changed_at = *stream.pending_change;
  stream.pending_change.reset();
  absl::StatusOr<NodeResourceSet> generated = generator_(stream.node);
  if (!generated.ok()) {
    metrics_->generate_errors.Inc();
    LOG_EVERY_N_SEC(ERROR, 1) << "xds: cannot generate resources for " << stream.node.id() << ": "
                              << generated.status().message();
    return;
  }
  stream.warnings = generated->warnings;
  size_t sent = 0;

  auto send_sotw = [&](ResourceType type, const ResourceMap& set) {
    TypeSubscription& sub = stream.of(type);
    const std::string version = TypeVersion(set);
    if (!sub.ShouldSend(version)) return;
    xds::DiscoveryResponse response;
    response.set_version_info(version);
    response.set_type_url(std::string(TypeUrl(type)));
    response.set_system_version_info(options_.system_version_info);
    std::string nonce = stream.NextNonce();
    response.set_nonce(nonce);
    for (const auto& [name, resource] : set) *response.add_resources() = resource->resource;
    if (!stream.call->SendProto(response)) return;
    sub.RecordSent(std::move(nonce), version, set, changed_at);
    metrics_->pushes[static_cast<size_t>(type)].Inc();
    ++sent;
  };
  auto send_delta = [&](ResourceType type, const ResourceMap& updates,
                        const std::vector<std::string>& removed, const ResourceMap& state_after) {
    TypeSubscription& sub = stream.of(type);
    // Nothing to say, except to a subscriber that holds nothing and heard nothing yet: it gets
    // an empty response, so it knows the type is empty rather than still coming (a sidecar is
    // not ready before its first complete configuration).
    const bool first_answer = sub.sent_version().empty() && sub.assumed_state().empty();
    if (updates.empty() && removed.empty() && !first_answer) return;
    const std::string version = TypeVersion(state_after);
    if (!sub.ShouldSend(version)) return;
    xds::DeltaDiscoveryResponse response;
    response.set_type_url(std::string(TypeUrl(type)));
    response.set_system_version_info(options_.system_version_info);
    std::string nonce = stream.NextNonce();
    response.set_nonce(nonce);
    for (const auto& [name, resource] : updates) {
      xds::Resource* out = response.add_resources();
      out->set_name(name);
      out->set_version(resource->version);
      *out->mutable_resource() = resource->resource;
    }
    for (const std::string& name : removed) response.add_removed_resources(name);
    if (!stream.call->SendProto(response)) return;
    sub.RecordSent(std::move(nonce), version, state_after, changed_at);
    metrics_->pushes[static_cast<size_t>(type)].Inc();
    ++sent;
  };

  // Pass 1, in dependency order: every type becomes new ∪ old (the last type, listeners, is
  // named by nothing and goes out exact), so nothing still in use disappears.
  std::array<ResourceMap, kResourceTypeCount> desired;
  std::array<bool, kResourceTypeCount> has_leftovers{};
  for (ResourceType type : kPushOrder) {
    const size_t t = static_cast<size_t>(type);
    TypeSubscription& sub = stream.of(type);
    if (!sub.subscribed()) continue;
    desired[t] = sub.Filter(generated->of(type));
    const bool keep_old = type != ResourceType::kListener;
    if (!stream.delta) {
      // A sidecar that reconnected running this very version holds this very set: what it
      // holds is known again (delta streams say it in initial_resource_versions).
      if (!sub.reported_version().empty() && sub.reported_version() == TypeVersion(desired[t])) {
        sub.SetReportedState(desired[t]);
      }
      ResourceMap set = desired[t];
      if (keep_old) {
        for (const ResourceMap* old : {&sub.assumed_state(), &sub.acked_state()}) {
          for (const auto& [name, resource] : *old) {
            if (!set.contains(name) && resource->resource.type_url() == TypeUrl(type)) {
              set.emplace(name, resource);
              has_leftovers[t] = true;
            }
          }
        }
      }
      send_sotw(type, set);
    } else {
      const ResourceMap& held = sub.assumed_state();
      ResourceMap updates;
      ResourceMap state_after = held;
      for (const auto& [name, resource] : desired[t]) {
        auto it = held.find(name);
        if (it == held.end() || it->second->version != resource->version) {
          updates.emplace(name, resource);
          state_after[name] = resource;
        }
      }
      std::vector<std::string> removed;
      for (const auto& [name, resource] : held) {
        if (!desired[t].contains(name)) {
          if (keep_old) {
            has_leftovers[t] = true;
          } else {
            removed.push_back(name);
            state_after.erase(name);
          }
        }
      }
      send_delta(type, updates, removed, state_after);
    }
  }
  // Pass 2, in reverse order: drop what nothing names any more.
  for (auto it = kPushOrder.rbegin(); it != kPushOrder.rend(); ++it) {
    const ResourceType type = *it;
    const size_t t = static_cast<size_t>(type);
    if (!has_leftovers[t]) continue;
    if (!stream.delta) {
      send_sotw(type, desired[t]);
    } else {
      std::vector<std::string> removed;
      for (const auto& [name, resource] : stream.of(type).assumed_state()) {
        if (!desired[t].contains(name)) removed.push_back(name);
      }
      ResourceMap state_after = stream.of(type).assumed_state();
      for (const std::string& name : removed) state_after.erase(name);
      send_delta(type, {}, removed, state_after);
    }
  }

  if (sent == 0) {
    // Nothing changed for this node; a change that arrived meanwhile gets its own push.
    if (stream.pending_change) RequestPush(stream, *stream.pending_change);
    return;
  }
  stream.in_flight = true;
  stream.push_started = Now();
  stream.push_changed_at = changed_at;
  stream.push_saw_nack = false;
  ++pushes_in_flight_;
}

// An ACK or NACK of a push (SotW and delta alike): counted, and a NACK is kept with its text.
void AdsServer::RecordAnswer(Stream& stream, TypeSubscription& sub, ResourceType type,
                             const std::string& nonce, const meshlet::xds::ErrorDetail* error) {
  std::optional<TypeSubscription::Nack> nack;
  if (error != nullptr) {
    nack = TypeSubscription::Nack{
        .message = error->message(), .code = error->code(), .at = absl::Now()};
  }
  const size_t t = static_cast<size_t>(type);
  switch (sub.OnAnswer(nonce, nack)) {
    case TypeSubscription::Answer::kStale:
      metrics_->stale_nonces.Inc();
      break;
    case TypeSubscription::Answer::kAck:
      metrics_->acks[t].Inc();
      break;
    case TypeSubscription::Answer::kNack:
      metrics_->nacks[t].Inc();
      stream.push_saw_nack = true;
      LOG(WARN) << "xds: " << stream.node.id() << " NACKed " << TypeLabel(type) << " version "
                << sub.last_nack()->version << ": " << nack->message;
      break;
  }
}

void AdsServer::OnPushMaybeDone(Stream& stream) {
  if (!stream.in_flight || stream.AwaitingAnswers()) return;
  FinishPush(stream, /*timed_out=*/false);
}

void AdsServer::FinishPush(Stream& stream, bool timed_out) {
  stream.in_flight = false;
  --pushes_in_flight_;
  if (timed_out) {
    metrics_->push_timeouts.Inc();
    LOG_EVERY_N_SEC(WARN, 1) << "xds: " << stream.node.id() << " did not answer a push within "
                             << absl::FormatDuration(absl::FromChrono(options_.push_timeout));
  } else if (!stream.push_saw_nack) {
    metrics_->convergence.Record(Micros(Now() - stream.push_changed_at));
  }
  if (stream.pending_change) {
    RequestPush(stream, *stream.pending_change);
  } else {
    ScheduleDrain();
  }
}

void AdsServer::SweepTimeouts() {
  const MonotonicTime now = Now();
  std::vector<Stream*> expired;
  std::vector<Stream*> unauthorized;
  for (auto& [id, stream] : streams_) {
    if (stream->in_flight && now - stream->push_started >= options_.push_timeout) {
      expired.push_back(stream.get());
    }
    if (stream->has_node && now >= stream->expires) unauthorized.push_back(stream.get());
  }
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

std::vector<ProxyStatus> AdsServer::ProxyStatuses() const {
  std::vector<ProxyStatus> out;
  for (const auto& [id, stream] : streams_) {
    if (!stream->has_node) continue;
    ProxyStatus status;
    status.id = stream->node.id();
    status.service = stream->node.service();
    status.namespace_ = stream->node.namespace_();
    status.sidecar_version = stream->node.sidecar_version();
    status.peer = stream->call->peer_address().ToString();
    status.identity = stream->grant.identity;
    status.mode = stream->delta ? "delta" : "sotw";
    status.connected_since = stream->connected_since;
    for (ResourceType type : kPushOrder) {
      const TypeSubscription& sub = stream->of(type);
      TypeStatus t;
      t.type = std::string(TypeLabel(type));
      t.type_url = std::string(TypeUrl(type));
      t.subscribed = sub.subscribed();
      t.sent_version = sub.sent_version();
      t.sent_nonce = sub.sent_nonce();
      t.acked_version = sub.acked_version();
      t.last_nack = sub.last_nack();
      t.resources = sub.assumed_state().size();
      t.acks = sub.acks();
      t.nacks = sub.nacks();
      if (!sub.subscribed()) {
        t.state = "UNSUBSCRIBED";
      } else if (sub.awaiting_answer()) {
        t.state = "PENDING";
      } else if (sub.nacked()) {
        t.state = "NACKED";
      } else if (sub.sent_version().empty()) {
        t.state = "NOT_SENT";
      } else {
        t.state = "ACKED";
      }
      status.types.push_back(std::move(t));
    }
    out.push_back(std::move(status));
  }
  std::sort(out.begin(), out.end(), [](const ProxyStatus& a, const ProxyStatus& b) {
    return std::tie(a.id, a.connected_since) < std::tie(b.id, b.connected_since);
  });
  return out;
}

AdsServer::Stream* AdsServer::NewestStream(absl::string_view node_id) const {
  Stream* newest = nullptr;
  for (const auto& [id, stream] : streams_) {
    if (stream->has_node && stream->node.id() == node_id &&
        (newest == nullptr || stream->id > newest->id)) {
      newest = stream.get();
    }
  }
  return newest;
}

absl::StatusOr<std::string> AdsServer::RequestConfigDump(absl::string_view node_id) {
  Stream* stream = NewestStream(node_id);
  if (stream == nullptr) {
    return absl::NotFoundError(absl::StrCat("no sidecar \"", node_id, "\" is connected"));
  }
  std::string nonce = stream->NextNonce();
  // A response without resources, of the debug type, in the stream's variant.
  auto ask = [&](auto response) {
    response.set_type_url(std::string(kConfigDumpTypeUrl));
    response.set_system_version_info(options_.system_version_info);
    response.set_nonce(nonce);
    return stream->call->SendProto(response);
  };
  const bool sent =
      stream->delta ? ask(xds::DeltaDiscoveryResponse()) : ask(xds::DiscoveryResponse());
  if (!sent) return absl::UnavailableError("the sidecar's stream is closing");
  stream->dump_nonce = nonce;
  return nonce;
}

void AdsServer::OnConfigDump(Stream& stream, const std::string& nonce,
                             const xds::SidecarConfigDump& dump) {
  if (nonce.empty() || nonce != stream.dump_nonce) {
    metrics_->stale_nonces.Inc();
    return;
  }
  stream.dump = dump;
  stream.dump_answer_nonce = nonce;
  stream.dump_received_at = TimeText(absl::Now());
}

void AdsServer::OnReadiness(Stream& stream, const xds::WorkloadReadiness& readiness) {
  metrics_->readiness_reports[readiness.ready()].Inc();
  if (observer_ == nullptr) return;
  const std::string reason(
      absl::string_view(readiness.reason()).substr(0, ProxyObserver::kMaxReadinessReason));
  observer_->OnProxyReadiness(stream.node.id(), readiness.ready(), reason);
}

std::string AdsServer::SidecarViewJson(const Stream& stream) const {
  const xds::SidecarConfigDump& dump = *stream.dump;
  std::string out = "{\"nonce\":";
  AppendJsonString(&out, stream.dump_answer_nonce);
  out += ",\"capturedAt\":";
  AppendJsonString(&out, dump.captured_at());
  out += ",\"receivedAt\":";
  AppendJsonString(&out, stream.dump_received_at);
  out += ",\"contentsOmitted\":";
  out += dump.contents_omitted() ? "true" : "false";
  out += ",\"types\":[";
  for (int i = 0; i < dump.types_size(); ++i) {
    const xds::SidecarConfigDump::TypeState& t = dump.types(i);
    std::optional<ResourceType> type = ParseTypeUrl(t.type_url());
    if (i > 0) out += ",";
    out += "{\"type\":";
    AppendJsonString(&out, type ? TypeLabel(*type) : t.type_url());
    out += ",\"version\":";
    AppendJsonString(&out, t.version());
    out += ",\"last_error\":";
    AppendJsonString(&out, t.last_error());
    out += ",\"resources\":[";
    for (int r = 0; r < t.resources_size(); ++r) {
      if (r > 0) out += ",";
      out += "{\"name\":";
      AppendJsonString(&out, t.resources(r).name());
      out += ",\"version\":";
      AppendJsonString(&out, t.resources(r).version());
      out += ",\"resource\":";
      out += ResourceJson(t.resources(r).resource());
      out += "}";
    }
    out += "]}";
  }
  out += "],\"configDump\":";
  // The sidecar's admin document, embedded as is when it is a JSON object.
  const std::string& admin = dump.config_dump_json();
  out += !admin.empty() && admin.front() == '{' ? admin : "null";
  out += "}";
  return out;
}

// What differs between what the control plane wants the sidecar to run now (generated afresh,
// as the next push would) and what the sidecar reported it runs: per type, the versions and the
// resources present on one side only or with different contents. Types that agree are left out.
std::string AdsServer::DiffJson(const Stream& stream) const {
  absl::StatusOr<NodeResourceSet> wanted = generator_(stream.node);
  std::string out = "[";
  bool first_type = true;
  for (ResourceType type : kPushOrder) {
    const TypeSubscription& sub = stream.of(type);
    if (!sub.subscribed()) continue;
    const xds::SidecarConfigDump::TypeState* held = nullptr;
    for (const auto& t : stream.dump->types()) {
      if (t.type_url() == TypeUrl(type)) held = &t;
    }
    std::map<std::string, std::string> sidecar;
    if (held != nullptr) {
      for (const auto& r : held->resources()) sidecar[r.name()] = r.version();
    }
    std::map<std::string, std::string> control_plane;
    if (wanted.ok()) {
      for (const auto& [name, r] : sub.Filter(wanted->of(type))) control_plane[name] = r->version;
    }
    std::vector<std::string> only_cp, only_sidecar, differ;
    for (const auto& [name, version] : control_plane) {
      auto it = sidecar.find(name);
      if (it == sidecar.end()) {
        only_cp.push_back(name);
      } else if (it->second != version) {
        differ.push_back(name);
      }
    }
    for (const auto& [name, version] : sidecar) {
      if (!control_plane.contains(name)) only_sidecar.push_back(name);
    }
    const std::string sidecar_version = held != nullptr ? held->version() : "";
    const std::string last_error = held != nullptr ? held->last_error() : "";
    if (only_cp.empty() && only_sidecar.empty() && differ.empty() &&
        sidecar_version == sub.sent_version() && last_error.empty()) {
      continue;
    }
    if (!first_type) out += ",";
    first_type = false;
    auto names = [&out](const std::vector<std::string>& list) {
      out += "[";
      for (size_t i = 0; i < list.size(); ++i) {
        if (i > 0) out += ",";
        AppendJsonString(&out, list[i]);
      }
      out += "]";
    };
    out += "{\"type\":";
    AppendJsonString(&out, TypeLabel(type));
    out += ",\"versionSent\":";
    AppendJsonString(&out, sub.sent_version());
    out += ",\"versionAcked\":";
    AppendJsonString(&out, sub.acked_version());
    out += ",\"versionSidecar\":";
    AppendJsonString(&out, sidecar_version);
    out += ",\"sidecarError\":";
    AppendJsonString(&out, last_error);
    out += ",\"onlyControlPlane\":";
    names(only_cp);
    out += ",\"onlySidecar\":";
    names(only_sidecar);
    out += ",\"differ\":";
    names(differ);
    out += "}";
  }
  out += "]";
  return out;
}

std::optional<std::string> AdsServer::ProxyConfigJson(absl::string_view node_id) const {
  const Stream* newest = NewestStream(node_id);
  if (newest == nullptr) return std::nullopt;
  std::string out = "{\"node\":";
  {
    std::string node_json;
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    (void)google::protobuf::util::MessageToJsonString(newest->node, &node_json, options);
    out += node_json.empty() ? "{}" : node_json;
  }
  out += ",\"warnings\":[";
  for (size_t i = 0; i < newest->warnings.size(); ++i) {
    if (i > 0) out += ",";
    AppendJsonString(&out, newest->warnings[i]);
  }
  out += "],\"types\":[";
  bool first_type = true;
  for (ResourceType type : kPushOrder) {
    const TypeSubscription& sub = newest->of(type);
    if (!sub.subscribed()) continue;
    if (!first_type) out += ",";
    first_type = false;
    out += "{\"type\":";
    AppendJsonString(&out, TypeLabel(type));
    out += ",\"version_sent\":";
    AppendJsonString(&out, sub.sent_version());
    out += ",\"version_acked\":";
    AppendJsonString(&out, sub.acked_version());
    out += ",\"resources\":[";
    bool first = true;
    for (const auto& [name, resource] : sub.assumed_state()) {
      if (!first) out += ",";
      first = false;
      out += "{\"name\":";
      AppendJsonString(&out, name);
      out += ",\"version\":";
      AppendJsonString(&out, resource->version);
      out += ",\"resource\":";
      out += resource->resource.type_url().empty() ? "null" : ResourceJson(resource->resource);
      out += "}";
    }
    out += "]}";
  }
  out += "],\"sidecar\":";
  out += newest->dump ? SidecarViewJson(*newest) : "null";
  out += ",\"sidecarRequest\":";
  if (newest->dump_nonce.empty()) {
    out += "null";
  } else {
    out += "{\"nonce\":";
    AppendJsonString(&out, newest->dump_nonce);
    out += ",\"answered\":";
    out += newest->dump_answer_nonce == newest->dump_nonce ? "true" : "false";
    out += "}";
  }
  out += ",\"diff\":";
  out += newest->dump ? DiffJson(*newest) : "null";
  out += "}";
  return out;
}

std::optional<std::vector<ProxyStatus>> AdsServer::ProxyStatusesAnyThread(Duration timeout) const {
  if (loop_.IsInLoopThread()) return ProxyStatuses();
  auto result = std::make_shared<std::vector<ProxyStatus>>();
  auto done = std::make_shared<Notification>();
  loop_.Post([this, result, done, alive = std::weak_ptr<bool>(alive_)] {
    if (auto a = alive.lock(); a && *a) *result = ProxyStatuses();
    done->Notify();
  });
  if (!done->WaitForNotificationWithTimeout(timeout)) return std::nullopt;
  return *result;
}

std::optional<std::optional<std::string>> AdsServer::ProxyConfigJsonAnyThread(
    std::string node_id, Duration timeout) const {
  if (loop_.IsInLoopThread()) return ProxyConfigJson(node_id);
  auto result = std::make_shared<std::optional<std::string>>();
  auto done = std::make_shared<Notification>();
  loop_.Post([this, result, done, node_id, alive = std::weak_ptr<bool>(alive_)] {
    if (auto a = alive.lock(); a && *a) *result = ProxyConfigJson(node_id);
    done->Notify();
  });
  if (!done->WaitForNotificationWithTimeout(timeout)) return std::nullopt;
  return *result;
}

std::string ProxyStatusJson(const std::vector<ProxyStatus>& statuses) {
  std::string out = "{\"proxies\":[";
  bool first = true;
  for (const ProxyStatus& status : statuses) {
    if (!first) out += ",";
    first = false;
    out += "{\"id\":";
    AppendJsonString(&out, status.id);
    out += ",\"service\":";
    AppendJsonString(&out, status.service);
    out += ",\"namespace\":";
    AppendJsonString(&out, status.namespace_);
    out += ",\"sidecar_version\":";
    AppendJsonString(&out, status.sidecar_version);
    out += ",\"peer\":";
    AppendJsonString(&out, status.peer);
    if (!status.identity.empty()) {
      out += ",\"identity\":";
      AppendJsonString(&out, status.identity);
    }
    out += ",\"mode\":";
    AppendJsonString(&out, status.mode);
    out += ",\"connected_since\":";
    AppendJsonString(&out, TimeText(status.connected_since));
    out += ",\"types\":[";
    bool first_type = true;
    for (const TypeStatus& type : status.types) {
      if (!first_type) out += ",";
      first_type = false;
      out += "{\"type\":";
      AppendJsonString(&out, type.type);
      out += ",\"type_url\":";
      AppendJsonString(&out, type.type_url);
      out += ",\"state\":";
      AppendJsonString(&out, type.state);
      out += ",\"version_sent\":";
      AppendJsonString(&out, type.sent_version);
      out += ",\"nonce_sent\":";
      AppendJsonString(&out, type.sent_nonce);
      out += ",\"version_acked\":";
      AppendJsonString(&out, type.acked_version);
      absl::StrAppend(&out, ",\"resources\":", type.resources, ",\"acks\":", type.acks,
                      ",\"nacks\":", type.nacks, ",\"last_nack\":");
      if (type.last_nack.has_value()) {
        out += "{\"version\":";
        AppendJsonString(&out, type.last_nack->version);
        absl::StrAppend(&out, ",\"code\":", type.last_nack->code, ",\"message\":");
        AppendJsonString(&out, type.last_nack->message);
        out += ",\"at\":";
        AppendJsonString(&out, TimeText(type.last_nack->at));
        out += "}";
      } else {
        out += "null";
      }
      out += "}";
    }
    out += "]}";
  }
  out += "]}";
  return out;
}

}  // namespace meshlet::controlplane::ads

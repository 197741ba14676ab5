// AdsServer's requests, in both variants of the stream. Every request first passes its stream's
// node check (ads_server.cc), may carry a readiness report, and is then a readiness report only,
// the answer to a config dump request, or about one resource type. For a resource type it is a
// subscription (no nonce: the first of a type, or a change) or the answer to a response (its
// nonce: ACK, or NACK with error_detail; TypeSubscription decides which response it answers).
// State of the world repeats the whole list of names and reports the version it runs on a new
// stream; delta adds and removes names and reports the version of each resource it holds.
// Threading: the loop thread.

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/base/time_text.h"
#include "control-plane/xds/ads_server.h"
#include "control-plane/xds/ads_server_internal.h"
#include "xds/protocol.h"

namespace meshlet::controlplane::ads {

template <typename Request>
std::optional<ResourceType> AdsServer::BeginRequest(Stream& stream, const Request& request) {
  if (!AcceptNode(stream, request.node())) return std::nullopt;
  if (request.has_readiness()) OnReadiness(stream, request.readiness());
  if (request.type_url() == xds::kReadinessTypeUrl) return std::nullopt;  // a report only
  if (request.type_url() == xds::kConfigDumpTypeUrl) {
    OnConfigDump(stream, request.response_nonce(), request.config_dump());
    return std::nullopt;
  }
  if (request.type_url() == xds::kTapTypeUrl) {
    OnTapEvents(stream, request.tap_events());
    return std::nullopt;
  }
  std::optional<ResourceType> type = ParseTypeUrl(request.type_url());
  if (!type) {
    LOG_EVERY_N_SEC(WARN, 1) << "xds: " << stream.node.id() << " asked for unknown type "
                             << request.type_url();
  }
  return type;
}

void AdsServer::OnRequest(Stream& stream, const xds::DiscoveryRequest& request) {
  std::optional<ResourceType> type = BeginRequest(stream, request);
  if (!type) return;
  TypeSubscription& sub = stream.of(*type);
  const std::vector<std::string> names(request.resource_names().begin(),
                                       request.resource_names().end());
  if (request.response_nonce().empty()) {
    // A new subscription (or a reconnect): the sidecar says which version it runs.
    const bool first = !sub.subscribed();
    RefuseMisplacedKeys(stream, request.resource_names(), "a state-of-the-world stream");
    sub.Subscribe(names);
    if (first && !request.version_info().empty()) {
      sub.SetReportedVersion(request.version_info());
    }
    RequestPush(stream, Now());
    return;
  }
  RecordAnswer(stream, sub, *type, request.response_nonce(),
               request.has_error_detail() ? &request.error_detail() : nullptr);
  if (!sub.SameNames(names)) {
    RefuseMisplacedKeys(stream, request.resource_names(), "a state-of-the-world stream");
    sub.Subscribe(names);
    RequestPush(stream, Now());
  }
  OnPushMaybeDone(stream);
}

void AdsServer::OnDeltaRequest(Stream& stream, const xds::DeltaDiscoveryRequest& request) {
  std::optional<ResourceType> type = BeginRequest(stream, request);
  if (!type) return;
  TypeSubscription& sub = stream.of(*type);
  const bool first = !sub.subscribed();
  const std::vector<std::string> subscribe(request.resource_names_subscribe().begin(),
                                           request.resource_names_subscribe().end());
  const std::vector<std::string> unsubscribe(request.resource_names_unsubscribe().begin(),
                                             request.resource_names_unsubscribe().end());
  // Lookup keys are held apart from the names (TypeSubscription skips them); only new keys on a
  // request that changes nothing else are left to the on-demand push alone.
  bool keys_owed = false;
  if (*type == ResourceType::kServiceRoute) {
    keys_owed = UpdateKeys(stream, request);
  } else {
    RefuseMisplacedKeys(stream, request.resource_names_subscribe(),
                        "a delta subscription of another type");
  }
  auto only_new_keys = [&] {
    if (first || !request.resource_names_unsubscribe().empty()) return false;
    for (const std::string& name : request.resource_names_subscribe()) {
      if (!xds::IsLookupKey(name)) return false;
    }
    return !request.resource_names_subscribe().empty();
  };
  const bool push = !only_new_keys();
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
  if (keys_owed) RequestOnDemandPush(stream);
  if (request.response_nonce().empty()) {
    if (push) RequestPush(stream, Now());
    return;
  }
  RecordAnswer(stream, sub, *type, request.response_nonce(),
               request.has_error_detail() ? &request.error_detail() : nullptr);
  if (push && (!subscribe.empty() || !unsubscribe.empty())) RequestPush(stream, Now());
  OnPushMaybeDone(stream);
}

bool AdsServer::UpdateKeys(Stream& stream, const xds::DeltaDiscoveryRequest& request) {
  TypeSubscription& sub = stream.of(ResourceType::kServiceRoute);
  const size_t held_before = sub.keys().size();
  bool owed = false;
  // Unsubscribed keys first: they make room for the new ones.
  for (const std::string& key : request.resource_names_unsubscribe()) {
    if (xds::IsLookupKey(key)) sub.RemoveKey(key);
  }
  // The answer-time histogram measures within a loop turn or two: the exact time, not the loop's
  // (cached per turn, millisecond resolution).
  const MonotonicTime arrived = std::chrono::steady_clock::now();
  auto refuse = [&](const std::string& key, size_t result) {
    metrics_->lookups[result].Inc();
    LOG_EVERY_N_SEC(WARN, 1) << "xds: " << stream.node.id() << ": lookup key \""
                             << absl::CEscape(absl::string_view(key).substr(0, 64))
                             << "\" answered missing: " << LookupResultName(result);
    // Owed its answer on the next push; past the stream's key limit it is counted only.
    if (stream.refused_keys.size() < options_.on_demand_max_keys) {
      stream.refused_keys.push_back(key);
    }
    owed = true;
  };
  for (const std::string& key : request.resource_names_subscribe()) {
    if (!xds::IsLookupKey(key) || sub.HasKey(key)) continue;
    if (key.size() > xds::kMaxLookupKeyBytes) {
      refuse(key, static_cast<size_t>(KeyResult::kMalformed));
      continue;
    }
    if (sub.keys().size() >= options_.on_demand_max_keys) {
      refuse(key, static_cast<size_t>(KeyResult::kOverLimit));
      continue;
    }
    // The token bucket: refilled at on_demand_rate a second up to on_demand_burst.
    const MonotonicTime now = Now();
    const double burst = static_cast<double>(options_.on_demand_burst);
    stream.key_tokens =
        stream.key_tokens_at
            ? std::min(burst,
                       stream.key_tokens +
                           static_cast<double>(options_.on_demand_rate) *
                               std::chrono::duration<double>(now - *stream.key_tokens_at).count())
            : burst;
    stream.key_tokens_at = now;
    if (stream.key_tokens < 1) {
      refuse(key, kRateLimited);
      continue;
    }
    stream.key_tokens -= 1;
    sub.AddKey(key, arrived);
    owed = true;
  }
  const size_t held_after = sub.keys().size();
  if (held_after != held_before) {
    on_demand_keys_ += held_after;
    on_demand_keys_ -= held_before;
    metrics_->on_demand_keys.Set(static_cast<int64_t>(on_demand_keys_));
  }
  return owed;
}

void AdsServer::RefuseMisplacedKeys(Stream& stream,
                                    const google::protobuf::RepeatedPtrField<std::string>& names,
                                    absl::string_view where) {
  for (const std::string& name : names) {
    if (!xds::IsLookupKey(name)) continue;
    metrics_->lookup(KeyResult::kMalformed).Inc();
    LOG_EVERY_N_SEC(WARN, 1) << "xds: " << stream.node.id() << ": lookup key \""
                             << absl::CEscape(absl::string_view(name).substr(0, 64))
                             << "\" ignored: keys belong to a delta ServiceRoute subscription, not "
                             << where;
  }
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

void AdsServer::OnConfigDump(Stream& stream, const std::string& nonce,
                             const xds::SidecarConfigDump& dump) {
  if (nonce.empty() || nonce != stream.dump_nonce) {
    metrics_->stale_nonces.Inc();
    return;
  }
  stream.dump = dump;
  stream.dump_answer_nonce = nonce;
  stream.dump_received_at = Rfc3339Text(absl::Now());
}

void AdsServer::OnTapEvents(Stream& stream, const xds::TapEvents& events) {
  // Only a tap this server sent this stream: a sidecar cannot feed another's tap.
  if (stream.taps.count(events.id()) == 0) {
    metrics_->stale_nonces.Inc();
    return;
  }
  if (events.ended()) stream.taps.erase(events.id());
  auto it = taps_.find(events.id());
  if (it == taps_.end()) return;
  // The sink may stop the tap (and so drop itself from taps_): called from a copy.
  TapSink sink = it->second;
  sink(stream.node.id(), events);
}

}  // namespace meshlet::controlplane::ads

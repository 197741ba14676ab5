// AdsServer's pushes. NotifyChanged starts a push round once changes are quiet (debounce); each
// node with a stream queues, and at most max_concurrent_pushes nodes have a push awaiting its
// answers (a push not answered within push_timeout frees its slot, ads_server.cc's sweep). A push
// generates the node's resources and sends, per subscribed type whose content changed, a
// state-of-the-world response (every resource) or a delta response (what changed and what went),
// in two passes so a sidecar never sees a name it cannot resolve: dependency order with each type
// as the union of new and old, then reverse order dropping what nothing names (docs/xds.md,
// "Ordering: make before break"). Lookup keys (ADR 0086) ride on the same pushes: a stream with
// new keys is pushed from the on-demand queue ahead of the others, outside the slots, and its
// delta ServiceRoute response carries the keys whose answer changed (aliases, removed_resources).
// Threading: the loop thread, except NotifyChanged.

#include <algorithm>
#include <array>
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "common/base/logging.h"
#include "control-plane/xds/ads_server.h"
#include "control-plane/xds/ads_server_internal.h"
#include "xds/protocol.h"

namespace meshlet::controlplane::ads {
namespace {

uint64_t Micros(Duration d) { return d.count() <= 0 ? 0 : static_cast<uint64_t>(d.count() / 1000); }

// What a delta response carries besides its resources: type URL, nonce, system version.
constexpr size_t kResponseOverhead = 256;

// Bytes a resource adds to a DeltaDiscoveryResponse: the Resource message (name, version, Any) and
// its field header; an upper bound of the protobuf framing, which is all the split needs.
size_t DeltaEntryBytes(const NamedResource& resource) {
  return resource.name.size() + resource.version.size() + resource.resource.type_url().size() +
         resource.resource.value().size() + 32;
}

}  // namespace

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

void AdsServer::RequestOnDemandPush(Stream& stream) {
  if (stream.first_push_timer != nullptr && stream.first_push_timer->enabled()) return;
  if (!stream.on_demand_queued) {
    stream.on_demand_queued = true;
    on_demand_queue_.push_back(stream.id);
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
  // Lookups first, whatever the slots and the queue: a sidecar holds a connection or a request
  // until its key is answered.
  while (!on_demand_queue_.empty()) {
    const uint64_t id = on_demand_queue_.front();
    on_demand_queue_.pop_front();
    auto it = streams_.find(id);
    if (it == streams_.end()) continue;
    it->second->on_demand_queued = false;
    Push(*it->second, /*on_demand=*/true);
  }
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

void AdsServer::Push(Stream& stream, bool on_demand) {
  if (!on_demand && !stream.pending_change) return;
  const MonotonicTime changed_at = on_demand ? Now() : *stream.pending_change;
  if (!on_demand) stream.pending_change.reset();
  std::optional<NodeResourceSet> previous = std::move(stream.generated);
  stream.generated.reset();
  absl::StatusOr<NodeResourceSet> generated = generator_(
      GenerateRequest{.node = stream.node,
                      .delta = stream.delta,
                      .keys = stream.LookupKeys(),
                      .keys_removed = stream.of(ResourceType::kServiceRoute).keys_removed(),
                      .previous = previous ? &*previous : nullptr});
  previous.reset();
  if (!generated.ok()) {
    metrics_->generate_errors.Inc();
    LOG_EVERY_N_SEC(ERROR, 1) << "xds: cannot generate resources for " << stream.node.id() << ": "
                              << generated.status().message();
    return;
  }
  stream.warnings = generated->warnings;
  size_t sent = 0;

  // Lookup keys (delta ServiceRoute subscription only): the answers that changed since last sent.
  // A found key goes out as an alias of its ServiceRoute (sent even when the sidecar holds its
  // version), a missing one in removed_resources, with the keys refused on arrival.
  struct KeyChange {
    absl::string_view key;
    std::string answer;  // "" for missing
    KeyResult result;
  };
  std::vector<KeyChange> key_changes;
  absl::flat_hash_map<std::string, std::vector<std::string>> aliases;
  std::vector<std::string> missing_keys = std::move(stream.refused_keys);
  stream.refused_keys.clear();
  absl::flat_hash_set<absl::string_view> answering;  // every ServiceRoute answering a key
  TypeSubscription& lookups = stream.of(ResourceType::kServiceRoute);
  const std::vector<std::string>& keys = lookups.keys();
  // The keys last sent the answers the set kept are skipped, unless the subscription names
  // ServiceRoutes (`answering` must then list every key's).
  size_t first_key = 0;
  if (lookups.wildcard() && stream.keys_settled_removed == lookups.keys_removed()) {
    first_key = std::min({generated->answers_kept, stream.keys_settled, keys.size()});
  }
  push_keys_compared_ += keys.size() - first_key;
  for (size_t k = first_key; k < keys.size(); ++k) {
    const std::string& key = keys[k];
    KeyChange change{.key = key, .result = KeyResult::kNotFound};
    if (auto it = generated->key_answers.find(key); it != generated->key_answers.end()) {
      change.result = it->second.result;
      if (change.result == KeyResult::kFound) {
        if (generated->of(ResourceType::kServiceRoute).contains(it->second.service_route)) {
          change.answer = it->second.service_route;
          answering.insert(it->second.service_route);
        } else {
          LOG_EVERY_N_SEC(ERROR, 1) << "xds: lookup key " << key << " of " << stream.node.id()
                                    << " answered by ServiceRoute " << it->second.service_route
                                    << ", which the node's resources lack; answered missing";
          change.result = KeyResult::kNotFound;
        }
      }
    }
    const std::string* last = lookups.LastAnswer(key);
    if (last != nullptr && *last == change.answer) continue;
    if (change.answer.empty()) {
      missing_keys.push_back(key);
    } else {
      aliases[change.answer].push_back(key);
    }
    key_changes.push_back(std::move(change));
  }
  const bool answers_keys = !aliases.empty() || !missing_keys.empty();
  bool answers_sent = false;

  auto send_sotw = [&](ResourceType type, const ResourceMap& set) {
    TypeSubscription& sub = stream.of(type);
    const std::string version = TypeVersion(set);
    if (!sub.ShouldSend(version)) return;
    xds::DiscoveryResponse response;
    response.set_version_info(version);
    response.set_type_url(std::string(TypeUrl(type)));
    response.set_system_version_info(options_.system_version_info);
    stream.SetNextNonce(response);
    std::string nonce = response.nonce();
    for (const auto& [name, resource] : set) *response.add_resources() = resource->resource;
    const size_t bytes = response.ByteSizeLong();
    if (bytes > stream.max_message_bytes) {
      Withhold(stream, type, version, bytes, "");
      return;
    }
    if (!stream.Send(response)) return;
    sub.RecordSent(std::move(nonce), version, set, changed_at);
    metrics_->pushes[static_cast<size_t>(type)].Inc();
    ++sent;
  };
  // Delta: one response, or several of at most max_response_bytes each (updates, then removals)
  // when the change is large. Every chunk gets its own nonce; only the last records the state the
  // sidecar holds afterwards (TypeSubscription::RecordPartSent).
  auto send_delta = [&](ResourceType type, const ResourceMap& updates,
                        const std::vector<std::string>& removed, ResourceMap state_after,
                        bool carries_answers = false) {
    TypeSubscription& sub = stream.of(type);
    // Nothing to say, except to a subscriber that holds nothing and heard nothing yet: it gets
    // an empty response, so it knows the type is empty rather than still coming (a sidecar is
    // not ready before its first complete configuration).
    const bool first_answer = sub.sent_version().empty() && sub.assumed_state().empty();
    if (updates.empty() && removed.empty() && !first_answer) return;
    // A resource the sidecar could not receive stays out of the push, and out of what it holds.
    std::vector<const NamedResource*> entries;
    entries.reserve(updates.size());
    std::string oversized;  // the largest one's name
    size_t oversized_bytes = 0;
    for (const auto& [name, resource] : updates) {
      const size_t bytes = DeltaEntryBytes(*resource);
      if (bytes + kResponseOverhead <= stream.max_message_bytes) {
        entries.push_back(resource.get());
        continue;
      }
      if (bytes > oversized_bytes) {
        oversized = name;
        oversized_bytes = bytes;
      }
      if (const ResourcePtr* held = sub.assumed_state().Get(name); held == nullptr) {
        state_after.erase(name);
      } else {
        state_after.insert_or_assign(name, *held);
      }
    }
    const std::string version = TypeVersion(state_after);
    if (!oversized.empty()) Withhold(stream, type, version, oversized_bytes, oversized);
    if (entries.empty() && removed.empty() && !first_answer) return;
    // Key answers go out even when the type's version is unchanged (a second key of a
    // ServiceRoute the sidecar holds).
    if (!carries_answers && !sub.ShouldSend(version)) return;
    size_t next_entry = 0;
    size_t next_removal = 0;
    bool first_chunk = true;
    bool last = false;
    // Split over several responses, a type others name sends its updates first (what they name
    // arrives before anything goes); a type named by nothing its removals first, so one that
    // hands a host name (or a listener its port) to a new one never runs beside it in between.
    const bool removals_first = !xds::kResourceTypeNamedByOthers[static_cast<size_t>(type)];
    while (!last) {
      xds::DeltaDiscoveryResponse response;
      response.set_type_url(std::string(TypeUrl(type)));
      response.set_system_version_info(options_.system_version_info);
      size_t bytes = 0;
      auto add_updates = [&] {
        for (; next_entry < entries.size(); ++next_entry) {
          const NamedResource& resource = *entries[next_entry];
          const std::vector<std::string>* keys = nullptr;
          if (carries_answers) {
            if (auto it = aliases.find(resource.name); it != aliases.end()) keys = &it->second;
          }
          size_t entry = DeltaEntryBytes(resource);
          if (keys != nullptr) {
            for (const std::string& key : *keys) entry += key.size() + 4;
          }
          if (bytes > 0 && bytes + entry > options_.max_response_bytes) break;
          bytes += entry;
          xds::Resource* out = response.add_resources();
          out->set_name(resource.name);
          out->set_version(resource.version);
          *out->mutable_resource() = resource.resource;
          if (keys != nullptr) {
            for (const std::string& key : *keys) out->add_aliases(key);
          }
        }
      };
      auto add_removals = [&] {
        for (; next_removal < removed.size(); ++next_removal) {
          const size_t entry = removed[next_removal].size() + 8;
          if (bytes > 0 && bytes + entry > options_.max_response_bytes) break;
          bytes += entry;
          response.add_removed_resources(removed[next_removal]);
        }
      };
      if (removals_first) {
        add_removals();
        if (next_removal == removed.size()) add_updates();
      } else {
        add_updates();
        if (next_entry == entries.size()) add_removals();
      }
      last = next_entry == entries.size() && next_removal == removed.size();
      stream.SetNextNonce(response);
      std::string nonce = response.nonce();
      if (!stream.Send(response)) return;
      if (last) {
        sub.RecordSent(std::move(nonce), version, std::move(state_after), changed_at);
      } else {
        sub.RecordPartSent(std::move(nonce), version, changed_at);
      }
      metrics_->pushes[static_cast<size_t>(type)].Inc();
      if (!first_chunk) metrics_->response_chunks[static_cast<size_t>(type)].Inc();
      first_chunk = false;
      ++sent;
    }
    if (carries_answers) answers_sent = true;
  };

  // Pass 1, in dependency order: every type that others name becomes new ∪ old, so nothing still
  // in use disappears; the types named by nothing (ServiceRoutes, listeners) go out exact.
  // What the node should hold of each type: the generated set itself for a wildcard subscription
  // (no copy), else the names asked for.
  std::array<ResourceMap, kResourceTypeCount> filtered;
  std::array<const ResourceMap*, kResourceTypeCount> desired{};
  std::array<bool, kResourceTypeCount> has_leftovers{};
  for (ResourceType type : kPushOrder) {
    const size_t t = static_cast<size_t>(type);
    TypeSubscription& sub = stream.of(type);
    if (!sub.subscribed()) continue;
    if (sub.wildcard()) {
      desired[t] = &generated->of(type);
    } else {
      filtered[t] = sub.Filter(generated->of(type));
      // The ServiceRoutes answering keys belong to what the sidecar asked for.
      if (type == ResourceType::kServiceRoute) {
        for (absl::string_view name : answering) {
          auto it = generated->of(type).find(name);
          filtered[t].emplace(it->first, it->second);
        }
      }
      desired[t] = &filtered[t];
    }
    const ResourceMap& want = *desired[t];
    // (A ServiceRoute kept beside the one taking over its host names would be refused for the
    // shared domain.)
    const bool keep_old = xds::kResourceTypeNamedByOthers[t];
    if (!stream.delta) {
      // A sidecar that reconnected running this very version holds this very set: what it
      // holds is known again (delta streams say it in initial_resource_versions).
      if (!sub.reported_version().empty() && sub.reported_version() == TypeVersion(want)) {
        sub.SetReportedState(want);
      }
      ResourceMap set = want;  // shares want's nodes
      if (keep_old) {
        for (const ResourceMap* old : {&sub.assumed_state(), &sub.acked_state()}) {
          push_entries_compared_ += ResourceMap::Diff(
              want, *old,
              [&](const std::string& name, const ResourcePtr* now, const ResourcePtr* held) {
                if (now != nullptr || held == nullptr) return;
                if ((*held)->resource.type_url() != TypeUrl(type)) return;
                if (set.emplace(name, *held)) has_leftovers[t] = true;
              });
        }
      }
      send_sotw(type, set);
    } else {
      // What is new, changed or gone since what the sidecar holds. The held state is derived
      // from earlier generated sets and the generated set from earlier ones (ResourceMap shares
      // nodes between a map and the maps made from it), so the diff visits only where they
      // differ. A resource that is the very object the sidecar holds, or of the same version, is
      // no update.
      const ResourceMap& held = sub.assumed_state();
      ResourceMap updates;
      std::vector<std::string> removed;
      // What the sidecar holds afterwards: what it should hold and, of a type others name, what
      // it keeps until nothing names it (pass 2). Made from `want`, so that the next push's diff
      // shares its subtrees.
      ResourceMap state_after = want;
      push_entries_compared_ += ResourceMap::Diff(
          held, want,
          [&](const std::string& name, const ResourcePtr* before, const ResourcePtr* after) {
            if (after == nullptr) {
              if (keep_old) {
                has_leftovers[t] = true;
                state_after.emplace(name, *before);
              } else {
                removed.push_back(name);
              }
            } else if (before == nullptr || (*before)->version != (*after)->version) {
              updates.emplace(name, *after);
            }
          });
      const bool carries_answers = type == ResourceType::kServiceRoute && answers_keys;
      if (carries_answers) {
        for (const auto& [name, keys] : aliases) {
          if (!updates.contains(name)) updates.emplace(name, want.at(name));
        }
      }
      // Keys are never resource names: they leave the state as it is.
      if (carries_answers) removed.insert(removed.end(), missing_keys.begin(), missing_keys.end());
      send_delta(type, updates, removed, std::move(state_after), carries_answers);
    }
  }
  // Pass 2, in reverse order: drop what nothing names any more.
  for (auto it = kPushOrder.rbegin(); it != kPushOrder.rend(); ++it) {
    const ResourceType type = *it;
    const size_t t = static_cast<size_t>(type);
    if (!has_leftovers[t]) continue;
    if (!stream.delta) {
      send_sotw(type, *desired[t]);
    } else {
      const ResourceMap& held = stream.of(type).assumed_state();
      std::vector<std::string> removed;
      push_entries_compared_ += ResourceMap::Diff(
          *desired[t], held,
          [&](const std::string& name, const ResourcePtr* wanted, const ResourcePtr* kept) {
            if (wanted == nullptr && kept != nullptr) removed.push_back(name);
          });
      ResourceMap state_after = held;
      for (const std::string& name : removed) state_after.erase(name);
      send_delta(type, {}, removed, std::move(state_after));
    }
  }

  // Kept for the next push to extend; a set that cannot be extended is not worth its memory.
  if (generated->basis != nullptr) stream.generated = std::move(*generated);

  // The answers handed to the stream: then every key's last answer is the set's.
  stream.keys_settled = answers_sent || key_changes.empty() ? keys.size() : first_key;
  stream.keys_settled_removed = lookups.keys_removed();
  if (answers_sent) {
    const MonotonicTime now = std::chrono::steady_clock::now();  // as UpdateKeys' arrival time
    for (KeyChange& change : key_changes) {
      metrics_->lookup(change.result).Inc();
      if (std::optional<MonotonicTime> asked =
              lookups.RecordKeyAnswer(change.key, std::move(change.answer))) {
        metrics_->on_demand_answer.Record(MicrosRoundedUp(now - *asked));
      }
    }
  }
  // Pushed for lookups: no slot, no convergence, and a pending change keeps its own push.
  if (on_demand) return;
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

void AdsServer::Withhold(Stream& stream, ResourceType type, const std::string& version,
                         size_t bytes, absl::string_view resource) {
  TypeSubscription& sub = stream.of(type);
  // Counted and logged once per version, not on every push that finds it unchanged.
  if (sub.withheld_version() == version) return;
  sub.RecordWithheld(version);
  metrics_->oversized_responses[static_cast<size_t>(type)].Inc();
  LOG_EVERY_N_SEC(ERROR, 1) << "xds: not sending " << TypeLabel(type) << " to " << stream.node.id()
                            << ": "
                            << (resource.empty() ? std::string("the response")
                                                 : absl::StrCat("resource \"", resource, "\""))
                            << " is " << bytes << " bytes, above the message limit of "
                            << stream.max_message_bytes << " bytes"
                            << (stream.delta ? "" : "; a delta stream (--xds-delta) splits pushes")
                            << "; the sidecar keeps what it runs";
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

}  // namespace meshlet::controlplane::ads

// XdsClient's responses, in both variants of the stream: a state-of-the-world response carries
// every resource of its type (the version is the response's version_info); a delta response
// carries the added or changed resources and the names removed (the version is computed from the
// per-resource versions, as the server computes it). Either becomes the type's complete set of
// entries, each resource parsed once (unchanged bytes reuse the held message), which TryApply
// accepts or refuses and SendAnswer ACKs or NACKs (xds_client_ack.cc). Threading: the client's
// loop thread.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/base/clock.h"
#include "common/base/logging.h"
#include "sidecar/config/xds_client.h"
#include "sidecar/config/xds_client_internal.h"
#include "xds/capabilities.h"
#include "xds/protocol.h"
#include "xds/version.h"

namespace meshlet::sidecar::config {

using xds_client_internal::ParsedResource;
using xds_client_internal::ReuseOrParse;

template <typename Response>
std::optional<size_t> XdsClient::BeginResponse(const Response& response) {
  if (!got_response_on_stream_) {
    got_response_on_stream_ = true;
    connected_since_ = absl::Now();
    connected_gauge_.Set(1);
    LOG(INFO) << "xds: connected to " << CurrentServer().ToString()
              << (xds::kIsDelta<Response> ? " (delta)" : "");
    DropUnservedTypes(response.served_types());
  }
  if (response.type_url() == xds::kConfigDumpTypeUrl) {
    SendConfigDump(response.nonce());
    return std::nullopt;
  }
  if (response.type_url() == xds::kTapTypeUrl) {
    OnTapCommand(response.tap());
    return std::nullopt;
  }
  std::optional<size_t> index = xds::ResourceTypeIndex(response.type_url());
  if (!index) {
    LOG_EVERY_N_SEC(WARN, 1) << "xds: ignoring a response of unknown type " << response.type_url();
  }
  return index;
}

void XdsClient::DropUnservedTypes(const google::protobuf::RepeatedPtrField<std::string>& served) {
  for (size_t index = 0; index < xds::kResourceTypeCount; ++index) {
    const absl::string_view type_url = xds::kResourceTypeUrls[index];
    // A control plane that does not list them serves what every supported release reads.
    const bool is_served = served.empty() ? !xds::CapabilityOfType(type_url).has_value()
                                          : absl::c_linear_search(served, type_url);
    if (is_served || types_[index].entries.empty()) continue;
    LOG(WARN) << "xds: the control plane does not serve " << xds::kResourceTypeLabels[index]
              << " (a release from before them): dropping the " << types_[index].entries.size()
              << " held";
    // Nothing names resources of such a type, so the configuration without them is valid.
    (void)TryApply(index, EntryMap(), 0, "");
  }
}

void XdsClient::RecordApplyTime(size_t type_index, MonotonicTime started) {
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(RealClock::Get().Now() - started);
  apply_seconds_[type_index].Record(static_cast<uint64_t>(std::max<int64_t>(0, micros.count())));
}

void XdsClient::OnResponse(const xds::DiscoveryResponse& response) {
  const MonotonicTime started = RealClock::Get().Now();
  std::optional<size_t> index = BeginResponse(response);
  if (!index) return;
  TypeState& type = types_[*index];
  // A resource whose bytes hash as a held one's did is that resource: its name and parsed message
  // are reused, so only what changed is parsed (the response carries every resource of the type).
  absl::flat_hash_map<uint64_t, const EntryMap::value_type*> held;
  held.reserve(type.entries.size() + plan_.retained[*index].size());
  for (const EntryMap* own : {&type.entries, &plan_.retained[*index]}) {
    for (const auto& item : *own) held.emplace(item.second.version.content_hash(), &item);
  }
  EntryMap entries;
  absl::Status status;
  for (int i = 0; i < response.resources_size() && status.ok(); ++i) {
    const google::protobuf::Any& any = response.resources(i);
    const uint64_t hash = xds::Fnv1a64(any.value());
    auto same = held.find(hash);
    absl::StatusOr<ParsedResource> parsed = ReuseOrParse(
        *index, any, hash, same == held.end() ? nullptr : same->second, i, &resources_parsed_);
    if (!parsed.ok()) {
      status = parsed.status();
      break;
    }
    const std::string& name = parsed->name;
    if (entries.count(name) > 0) {
      status = absl::InvalidArgumentError(
          absl::StrCat("resources[", i, "]: name \"", name, "\" appears twice"));
      break;
    }
    entries.emplace(name, Entry{.version = same == held.end() ? ResourceVersion("", hash)
                                                              : same->second->second.version,
                                .held = std::move(parsed->held)});
  }
  if (status.ok()) {
    const uint64_t sum = EntrySum(entries);
    status = TryApply(*index, std::move(entries), sum, response.version_info());
  }
  SendAnswer(*index, response.nonce(), status);
  RecordApplyTime(*index, started);
}

void XdsClient::OnDeltaResponse(const xds::DeltaDiscoveryResponse& response) {
  const MonotonicTime started = RealClock::Get().Now();
  std::optional<size_t> index = BeginResponse(response);
  if (!index) return;
  TypeState& type = types_[*index];
  EntryMap entries = type.entries;
  absl::Status status;
  for (const std::string& name : response.removed_resources()) entries.erase(name);
  for (int i = 0; i < response.resources_size() && status.ok(); ++i) {
    const xds::Resource& resource = response.resources(i);
    const google::protobuf::Any& any = resource.resource();
    // The wrapper names the resource: unchanged bytes under that name reuse the parsed message.
    const EntryMap::value_type* held = nullptr;
    for (const EntryMap* own : {&type.entries, &plan_.retained[*index]}) {
      if (auto it = own->find(resource.name()); it != own->end()) {
        held = &*it;
        break;
      }
    }
    const uint64_t hash = xds::Fnv1a64(any.value());
    absl::StatusOr<ParsedResource> parsed =
        ReuseOrParse(*index, any, hash, held, i, &resources_parsed_);
    if (!parsed.ok()) {
      status = parsed.status();
      break;
    }
    if (parsed->name != resource.name()) {
      status =
          absl::InvalidArgumentError(absl::StrCat("resources[", i, "]: name \"", resource.name(),
                                                  "\" but the resource is \"", parsed->name, "\""));
      break;
    }
    entries.insert_or_assign(resource.name(),
                             Entry{.version = ResourceVersion(resource.version(), hash),
                                   .held = std::move(parsed->held)});
  }
  // What the response changes, from the names it touches alone: the type's version moves by
  // their entries, and a response that changes none is only key answers.
  uint64_t entry_sum = type.entry_sum;
  bool changes = false;
  if (status.ok()) {
    absl::flat_hash_set<absl::string_view> touched;
    touched.reserve(response.removed_resources_size() + response.resources_size());
    auto touch = [&](const std::string& name) {
      if (!touched.insert(name).second) return;
      const Entry* before = type.entries.Get(name);
      const Entry* after = entries.Get(name);
      if (before != nullptr) entry_sum -= EntryVersion::Of(name, *before);
      if (after != nullptr) entry_sum += EntryVersion::Of(name, *after);
      const bool same = before == nullptr ? after == nullptr
                                          : after != nullptr && after->version == before->version;
      changes = changes || !same;
    };
    for (const std::string& name : response.removed_resources()) touch(name);
    for (const xds::Resource& resource : response.resources()) touch(resource.name());
  }
  const bool answers_keys = *index == xds_client_internal::kServiceRoutes && !lookups_.empty();
  std::vector<LookupAnswer> answers;
  if (status.ok() && answers_keys && type.applied && !changes) {
    // Only key answers: the configuration is the one running.
    answers = AnswerLookups(response, entries, /*applied=*/true);
    if (!answers.empty()) Persist();
  } else if (status.ok()) {
    // The type's version as the server computes it, from the same per-resource versions.
    xds::TypeVersionHash hash;
    hash.AddEntries(entry_sum);
    const std::string version = hash.Hex();
    // The answers are recorded first, so the configuration TryApply saves holds them, and taken
    // back if it is refused (the keys' answers they replaced, in the order replaced).
    std::vector<std::pair<std::string, std::string>> replaced;
    if (answers_keys) answers = AnswerLookups(response, entries, /*applied=*/true, &replaced);
    status = TryApply(*index, std::move(entries), entry_sum, version);
    if (answers_keys && !status.ok()) {
      for (auto it = replaced.rbegin(); it != replaced.rend(); ++it) {
        lookups_[it->first] = std::move(it->second);
      }
      answers = AnswerLookups(response, type.entries, /*applied=*/false);
    }
  } else if (answers_keys) {
    answers = AnswerLookups(response, type.entries, /*applied=*/false);
  }
  SendAnswer(*index, response.nonce(), status);
  // After the configuration that carries them was published: whoever learns a key was found
  // finds its ServiceRoute.
  if (!answers.empty() && options_.on_lookup_answers) {
    options_.on_lookup_answers(std::move(answers));
  }
  RecordApplyTime(*index, started);
}

std::vector<LookupAnswer> XdsClient::AnswerLookups(
    const xds::DeltaDiscoveryResponse& response, const EntryMap& entries, bool applied,
    std::vector<std::pair<std::string, std::string>>* replaced) {
  // Key → outcome, in key order; the last mention in the response wins.
  std::map<std::string, LookupOutcome> outcomes;
  std::map<std::string, std::string> found;
  for (const xds::Resource& resource : response.resources()) {
    for (const std::string& alias : resource.aliases()) {
      if (lookups_.count(alias) == 0) continue;
      outcomes[alias] = LookupOutcome::kFound;
      found[alias] = resource.name();
    }
  }
  for (const std::string& name : response.removed_resources()) {
    if (xds::IsLookupKey(name) && lookups_.count(name) > 0) {
      outcomes[name] = LookupOutcome::kNotFound;
      found.erase(name);
    }
  }
  if (applied) {
    // A key whose ServiceRoute went without another answering it is no longer found. Every
    // key's answer is a held ServiceRoute (recorded with the response that brought it, or
    // loaded with it), and one goes only by a removal the response names: the keys are looked
    // at only then.
    const bool removes_routes =
        absl::c_any_of(response.removed_resources(),
                       [](const std::string& name) { return !xds::IsLookupKey(name); });
    if (removes_routes) {
      entries_visited_ += lookups_.size();
      for (auto& [key, resource] : lookups_) {
        if (resource.empty() || outcomes.count(key) > 0 || entries.count(resource) > 0) continue;
        outcomes[key] = LookupOutcome::kNotFound;
        if (replaced != nullptr) replaced->emplace_back(key, resource);
        resource.clear();
      }
    }
    for (const auto& [key, outcome] : outcomes) {
      auto it = found.find(key);
      std::string& resource = lookups_[key];
      if (replaced != nullptr) replaced->emplace_back(key, resource);
      resource = it == found.end() ? std::string() : it->second;
    }
  }
  std::vector<LookupAnswer> answers;
  answers.reserve(outcomes.size());
  for (const auto& [key, outcome] : outcomes) {
    answers.push_back(
        LookupAnswer{.key = key, .outcome = applied ? outcome : LookupOutcome::kRefused});
  }
  return answers;
}

}  // namespace meshlet::sidecar::config

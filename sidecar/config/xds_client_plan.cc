// XdsClient's resources: what it holds of the control plane's (per type, each parsed once), what
// runs besides or instead (the run plan: resources the control plane removed that the
// configuration still names are retained; load assignments naming no cluster are left out), and
// the configuration assembled from the static resources, the held ones and the plan — kept, so an
// update rebuilds only the lists it changes (ApplyUpdate). Threading: the client's loop thread.

#include <array>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/logging.h"
#include "common/config/yaml_proto.h"
#include "sidecar/config/references.h"
#include "sidecar/config/xds_client.h"
#include "sidecar/config/xds_client_internal.h"
#include "xds/protocol.h"
#include "xds/resources.pb.h"
#include "xds/version.h"

namespace meshlet::sidecar::config {

using xds_client_internal::kClusters;
using xds_client_internal::kEndpoints;
using xds_client_internal::kListeners;
using xds_client_internal::kRoutes;
using xds_client_internal::kSecrets;
using xds_client_internal::kServiceRoutes;
using xds_client_internal::ParsedResource;
using xds_client_internal::WithTypeList;

namespace xds_client_internal {

absl::StatusOr<ParsedResource> ParseResource(size_t index, const google::protobuf::Any& any,
                                             uint64_t* parses) {
  if (any.type_url() != xds::kResourceTypeUrls[index]) {
    return absl::InvalidArgumentError(absl::StrCat(
        "type_url \"", any.type_url(), "\" in a response of ", xds::kResourceTypeUrls[index]));
  }
  ++*parses;
  auto parse = [&](auto message, auto name_of) -> absl::StatusOr<ParsedResource> {
    using Message = decltype(message);
    auto parsed = std::make_shared<Message>();
    if (!parsed->ParseFromString(any.value())) {
      return absl::InvalidArgumentError(
          absl::StrCat("a ", parsed->GetTypeName(), " that does not parse"));
    }
    std::string name = name_of(*parsed);
    if (index == kEndpoints || index == kClusters || index == kServiceRoutes) {
      // Held as its bytes (ADR 0086, amended): the translation parses it again, once, and keeps
      // what it translates; the run plan reads the few facts kept beside the bytes.
      return ParsedResource{
          .name = std::move(name),
          .held = std::make_shared<const HeldMessage<Message>>(*parsed, any.value())};
    }
    return ParsedResource{.name = std::move(name),
                          .held = std::make_shared<const HeldMessage<Message>>(
                              std::shared_ptr<const Message>(std::move(parsed)))};
  };
  switch (index) {
    case kSecrets:
      return parse(xds::Secret(), [](const xds::Secret& m) { return m.name(); });
    case kClusters:
      return parse(xds::Cluster(), [](const xds::Cluster& m) { return m.name(); });
    case kEndpoints:
      return parse(xds::ClusterLoadAssignment(),
                   [](const xds::ClusterLoadAssignment& m) { return m.cluster_name(); });
    case kRoutes:
      return parse(xds::RouteConfiguration(),
                   [](const xds::RouteConfiguration& m) { return m.name(); });
    case kServiceRoutes:
      return parse(xds::ServiceRoute(), [](const xds::ServiceRoute& m) { return m.name(); });
    default:
      return parse(xds::Listener(), [](const xds::Listener& m) { return m.name(); });
  }
}

void PackResource(size_t index, const google::protobuf::Message& message,
                  google::protobuf::Any& out) {
  out.set_type_url(std::string(xds::kResourceTypeUrls[index]));
  out.set_value(::meshlet::config::DeterministicBytes(message));
}

void PackResource(size_t index, const HeldResource& held, google::protobuf::Any& out) {
  if (const HeldBytes* bytes = held.bytes()) {
    out.set_type_url(std::string(xds::kResourceTypeUrls[index]));
    out.set_value(bytes->Expand(held.name()));
    return;
  }
  PackResource(index, *held.ParseUntyped(), out);
}

}  // namespace xds_client_internal

namespace {

const std::set<std::string>& NoNames() {
  static const auto* const kNone = new std::set<std::string>();
  return *kNone;
}

// Calls `f(item)` for every item of `a` whose name `b` lacks; both are maps ordered by name.
template <typename A, typename B, typename F>
void ForEachMissing(const A& a, const B& b, F f) {
  auto it = b.begin();
  for (const auto& item : a) {
    while (it != b.end() && it->first < item.first) ++it;
    if (it == b.end() || it->first != item.first) f(item);
  }
}

// Whether every name of `from` is in `to` (maps ordered by name).
template <typename Map>
bool KeepsEveryName(const Map& from, const Map& to) {
  bool every = true;
  ForEachMissing(from, to, [&](const auto&) { every = false; });
  return every;
}

template <typename Map>
bool SameNames(const Map& a, const Map& b) {
  return a.size() == b.size() && KeepsEveryName(a, b);
}

}  // namespace

absl::Status XdsClient::ApplyUpdate(size_t type_index, const EntryMap& entries,
                                    const std::string& version, std::optional<RunPlan>* next) {
  TypeState& type = types_[type_index];
  std::array<const EntryMap*, xds::kResourceTypeCount> held = HeldEntries();
  held[type_index] = &entries;
  absl::Status status;
  if (!assembled_) {
    absl::StatusOr<ResourceSet> running = Assemble(HeldEntries(), plan_, CombinedVersion());
    if (running.ok()) {
      assembled_ = std::move(*running);
    } else {
      status = running.status();
    }
  }
  // Usually nothing is retained or left out, before or after: the plan stays empty unseen.
  if (status.ok() && MayChangePlan(type_index, entries)) {
    absl::StatusOr<RunPlan> planned = PlanRun(held, type_index != kEndpoints);
    if (planned.ok()) {
      *next = *std::move(planned);
    } else {
      status = planned.status();
    }
  }
  const RunPlan& plan = *next ? **next : plan_;
  // Only the lists that change are built (the updated type's, and those whose retained or
  // left-out resources change); the others of the running configuration are reused as they
  // are, and the whole configuration is still validated as one unit.
  // The updated type's list is patched per changed name when its layout allows.
  const bool patch = status.ok() && CanPatch(type_index, plan);
  ResourceSet candidate;
  std::vector<size_t> changed;
  for (size_t i = 0; i < xds::kResourceTypeCount && status.ok(); ++i) {
    if ((i != type_index || patch) && SameNames(plan.retained[i], plan_.retained[i]) &&
        (i != kEndpoints || plan.unmatched == plan_.unmatched)) {
      continue;
    }
    status = FillType(i, *held[i], plan.retained[i], i == kEndpoints ? plan.unmatched : NoNames(),
                      candidate);
    changed.push_back(i);
  }
  const std::string previous_version = type.version;
  if (status.ok() && patch) status = PatchType(type_index, type.entries, entries, *assembled_);
  if (status.ok()) {
    type.version = version;  // so the combined version names the candidate
    for (size_t i : changed) SwapType(i, *assembled_, candidate);
    const std::string running_version = std::move(assembled_->version);
    assembled_->version = CombinedVersion();
    status = apply_(*assembled_);
    if (!status.ok()) {
      for (size_t i : changed) SwapType(i, *assembled_, candidate);
      // Back as it ran: the names it had were accepted, so the reverse patch cannot fail.
      if (patch) CHECK_OK(PatchType(type_index, entries, type.entries, *assembled_));
      assembled_->version = running_version;
    }
  }
  if (!status.ok()) type.version = previous_version;
  return status;
}

bool XdsClient::MayChangePlan(size_t type_index, const EntryMap& entries) const {
  for (const EntryMap& retained : plan_.retained) {
    if (!retained.empty()) return true;
  }
  if (!plan_.unmatched.empty() || type_index == kEndpoints) return true;
  // Listeners are named by nothing.
  if (type_index == kListeners) return false;
  // Whether a name goes: found where the two maps differ, shared subtrees unvisited.
  bool removes = false;
  entries_visited_ += EntryMap::Diff(types_[type_index].entries, entries,
                                     [&](const std::string&, const Entry*, const Entry* after) {
                                       removes = removes || after == nullptr;
                                     });
  return removes;
}

absl::StatusOr<XdsClient::RunPlan> XdsClient::PlanRun(
    const std::array<const EntryMap*, xds::kResourceTypeCount>& held,
    bool references_changed) const {
  RunPlan plan;
  // A resource named that the control plane no longer sends stays as it ran, if it did.
  auto retain = [&](size_t index, const std::string& name) {
    if (static_names_[index].contains(name) || held[index]->contains(name)) return;
    for (const EntryMap* ran : {&types_[index].entries, &plan_.retained[index]}) {
      if (auto it = ran->find(name); it != ran->end()) {
        plan.retained[index].emplace(name, it->second);
        return;
      }
    }
  };
  if (references_changed) {
    // What names what, in the order kinds name each other: listeners and ServiceRoutes name
    // route configurations, those three name clusters, clusters and listeners name secrets.
    References names;
    auto add = [&](size_t index, const auto& statics) {
      using Message = typename std::decay_t<decltype(statics)>::const_iterator::value_type;
      for (const Message& m : statics) AddReferences(m, names);
      for (const EntryMap* dynamic : {held[index], &std::as_const(plan.retained[index])}) {
        for (const auto& [name, entry] : *dynamic) {
          AddReferences(xds_client_internal::HeldAs<Message>(*entry.held), names);
        }
      }
    };
    add(kListeners, static_resources_.listeners);
    add(kServiceRoutes, static_resources_.service_routes);
    for (const std::string& name : names.routes) retain(kRoutes, name);
    add(kRoutes, static_resources_.routes);
    for (const std::string& name : names.clusters) retain(kClusters, name);
    add(kClusters, static_resources_.clusters);
    for (const std::string& name : names.secrets) retain(kSecrets, name);
  } else {
    // Only endpoints changed: what they do not name is retained as before.
    for (size_t i : {kSecrets, kClusters, kRoutes}) plan.retained[i] = plan_.retained[i];
  }

  // The EDS clusters that run name their load assignments: one that ran and is no longer sent
  // stays while its cluster runs.
  auto eds_cluster_runs = [&](const std::string& name) {
    const HeldFacts<xds::Cluster>* cluster = nullptr;
    for (const EntryMap* dynamic : {held[kClusters], &std::as_const(plan.retained[kClusters])}) {
      if (auto it = dynamic->find(name); it != dynamic->end()) {
        cluster = &xds_client_internal::HeldAs<xds::Cluster>(*it->second.held).facts();
      }
    }
    for (size_t i = 0; i < static_resources_.clusters.size(); ++i) {
      if (static_resources_.clusters.name(i) == name) {
        cluster = &static_resources_.clusters.shared(i)->facts();
      }
    }
    return cluster != nullptr && cluster->eds;
  };
  if (!references_changed) {
    // Only load assignments differ from what runs (every other type is the running one, with
    // the running plan's retained resources), so the plan follows the names that changed, as
    // the full pass below would find it: a running assignment gone is retained while its
    // cluster runs, an added or changed one is left out (and checked) when no cluster of its
    // name runs. The running plan's left-out assignments that did not change stay left out and
    // passed their check when they were left out; errors come in name order either way.
    plan.retained[kEndpoints] = plan_.retained[kEndpoints];
    plan.unmatched = plan_.unmatched;
    std::vector<std::string> errors;
    entries_visited_ += EntryMap::Diff(
        types_[kEndpoints].entries, *held[kEndpoints],
        [&](const std::string& name, const Entry* before, const Entry* after) {
          if (after == nullptr) {
            if (!plan_.unmatched.contains(name) && eds_cluster_runs(name)) {
              plan.retained[kEndpoints].emplace(name, *before);
            }
            plan.unmatched.erase(name);
            return;
          }
          if (static_names_[kClusters].contains(name) || held[kClusters]->contains(name) ||
              plan.retained[kClusters].contains(name)) {
            return;
          }
          plan.unmatched.insert(name);
          absl::Status checked = CheckLoadAssignment(
              *xds_client_internal::HeldAs<xds::ClusterLoadAssignment>(*after->held).Parse());
          if (!checked.ok()) errors.emplace_back(checked.message());
        });
    // Retained assignments the control plane sends again run as sent; the others stay while
    // their cluster runs.
    entries_visited_ += plan_.retained[kEndpoints].size();
    for (const auto& [name, entry] : plan_.retained[kEndpoints]) {
      if (held[kEndpoints]->contains(name) || !eds_cluster_runs(name)) {
        plan.retained[kEndpoints].erase(name);
      }
    }
    if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
    return plan;
  }
  for (const EntryMap* ran : {&types_[kEndpoints].entries, &plan_.retained[kEndpoints]}) {
    entries_visited_ += ran->size() + held[kEndpoints]->size();
    ForEachMissing(*ran, *held[kEndpoints], [&](const EntryMap::value_type& item) {
      if (!plan_.unmatched.contains(item.first) && eds_cluster_runs(item.first)) {
        plan.retained[kEndpoints].insert(item);
      }
    });
  }
  // Load assignments for clusters that do not run are left out, once checked on their own.
  std::vector<std::string> errors;
  entries_visited_ += held[kEndpoints]->size() + held[kClusters]->size();
  ForEachMissing(*held[kEndpoints], *held[kClusters], [&](const EntryMap::value_type& item) {
    const std::string& name = item.first;
    if (static_names_[kClusters].contains(name) || plan.retained[kClusters].contains(name)) {
      return;
    }
    plan.unmatched.insert(name);
    absl::Status checked = CheckLoadAssignment(
        *xds_client_internal::HeldAs<xds::ClusterLoadAssignment>(*item.second.held).Parse());
    if (!checked.ok()) errors.emplace_back(checked.message());
  });
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  return plan;
}

void XdsClient::LogPlanChanges(const RunPlan& next) const {
  for (size_t i = 0; i < xds::kResourceTypeCount; ++i) {
    for (const auto& [name, entry] : next.retained[i]) {
      if (!plan_.retained[i].contains(name)) {
        LOG(INFO) << "xds: keeping " << xds::kResourceTypeLabels[i] << " \"" << name
                  << "\", which the control plane removed: the configuration still names it";
      }
    }
    for (const auto& [name, entry] : plan_.retained[i]) {
      if (!next.retained[i].contains(name) && !types_[i].entries.contains(name)) {
        LOG(INFO) << "xds: dropped " << xds::kResourceTypeLabels[i] << " \"" << name
                  << "\" kept after the control plane removed it: nothing names it any more";
      }
    }
  }
  for (const std::string& name : next.unmatched) {
    if (!plan_.unmatched.contains(name)) {
      LOG(INFO) << "xds: holding endpoints \"" << name
                << "\" aside: no cluster of that name (used once it arrives)";
    }
  }
}

void XdsClient::SetPlanGauges() {
  for (size_t i = 0; i < xds::kResourceTypeCount; ++i) {
    retained_gauges_[i].Set(static_cast<int64_t>(plan_.retained[i].size()));
  }
  unmatched_gauge_.Set(static_cast<int64_t>(plan_.unmatched.size()));
}

std::vector<std::string> XdsClient::retained(size_t type_index) const {
  std::vector<std::string> names;
  for (const auto& [name, entry] : plan_.retained[type_index]) names.push_back(name);
  return names;
}

std::vector<std::string> XdsClient::unmatched_assignments() const {
  return std::vector<std::string>(plan_.unmatched.begin(), plan_.unmatched.end());
}

bool XdsClient::CanPatch(size_t index, const RunPlan& plan) const {
  return assembled_.has_value() && plan.retained[index].empty() && plan_.retained[index].empty() &&
         (index != kEndpoints || (plan.unmatched.empty() && plan_.unmatched.empty()));
}

absl::Status XdsClient::PatchType(size_t index, const EntryMap& from, const EntryMap& to,
                                  ResourceSet& out) const {
  // The names that differ, with what they become (null: removed); both maps outlive this call.
  std::vector<std::pair<const std::string*, const Entry*>> changes;
  std::vector<std::string> errors;
  entries_visited_ +=
      EntryMap::Diff(from, to, [&](const std::string& name, const Entry*, const Entry* after) {
        if (after != nullptr && static_names_[index].contains(name)) {
          errors.push_back(absl::StrCat(xds::kResourceTypeLabels[index], " \"", name,
                                        "\": also defined in the bootstrap file's "
                                        "static_resources (names must not collide)"));
        }
        changes.emplace_back(&name, after);
      });
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  WithTypeList(index, [&](auto member, auto) {
    auto& list = out.*member;
    using Message = typename std::decay_t<decltype(list)>::const_iterator::value_type;
    for (const auto& [name, after] : changes) {
      ++entries_visited_;
      // The held entries follow the static resources, in name order: where `name` is or goes.
      size_t low = (static_resources_.*member).size(), high = list.size();
      while (low < high) {
        const size_t middle = low + (high - low) / 2;
        if (list.name(middle) < *name) {
          low = middle + 1;
        } else {
          high = middle;
        }
      }
      const bool held = low < list.size() && list.name(low) == *name;
      if (after == nullptr) {
        if (held) list.Erase(low);
        continue;
      }
      auto resource = std::static_pointer_cast<const HeldMessage<Message>>(after->held);
      if (held) {
        list.Set(low, std::move(resource));
      } else {
        list.Insert(low, std::move(resource));
      }
    }
  });
  return absl::OkStatus();
}

absl::Status XdsClient::FillType(size_t index, const EntryMap& entries, const EntryMap& retained,
                                 const std::set<std::string>& left_out, ResourceSet& out) const {
  std::vector<std::string> errors;
  WithTypeList(index, [&](auto member, auto) {
    auto& list = out.*member;
    const auto& statics = static_resources_.*member;
    using Message = typename std::decay_t<decltype(list)>::const_iterator::value_type;
    list = statics;
    list.reserve(statics.size() + entries.size() + retained.size());
    entries_visited_ += entries.size() + retained.size();
    for (const EntryMap* dynamic : {&entries, &retained}) {
      for (const auto& [name, entry] : *dynamic) {
        if (static_names_[index].contains(name)) {
          errors.push_back(absl::StrCat(xds::kResourceTypeLabels[index], " \"", name,
                                        "\": also defined in the bootstrap file's "
                                        "static_resources (names must not collide)"));
          continue;
        }
        if (left_out.contains(name)) continue;
        // Made when received (ParseResource): a HeldMessage<Message>. Shared, not copied: the
        // same resource as long as it is unchanged (BuildSnapshot relies on that to reuse what
        // it translated).
        list.push_back(std::static_pointer_cast<const HeldMessage<Message>>(entry.held));
      }
    }
  });
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  return absl::OkStatus();
}

void XdsClient::SwapType(size_t index, ResourceSet& a, ResourceSet& b) {
  WithTypeList(index, [&](auto member, auto) { (a.*member).swap(b.*member); });
}

absl::StatusOr<ResourceSet> XdsClient::Assemble(
    const std::array<const EntryMap*, xds::kResourceTypeCount>& dynamic, const RunPlan& plan,
    absl::string_view version) const {
  ResourceSet out;
  out.version = std::string(version);
  std::vector<std::string> errors;
  for (size_t i = 0; i < xds::kResourceTypeCount; ++i) {
    absl::Status status = FillType(i, *dynamic[i], plan.retained[i],
                                   i == kEndpoints ? plan.unmatched : NoNames(), out);
    if (!status.ok()) errors.emplace_back(status.message());
  }
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  return out;
}

std::string XdsClient::CombinedVersion() const {
  uint64_t hash = xds::kFnv1aOffset;
  for (const TypeState& type : types_) {
    hash = xds::Fnv1a64(type.version, hash);
    hash = xds::Fnv1a64("\n", hash);
  }
  return absl::StrCat("xds-", xds::Hex16(hash));
}

std::array<const XdsClient::EntryMap*, xds::kResourceTypeCount> XdsClient::HeldEntries() const {
  std::array<const EntryMap*, xds::kResourceTypeCount> held;
  for (size_t i = 0; i < xds::kResourceTypeCount; ++i) held[i] = &types_[i].entries;
  return held;
}

ResourceSet XdsClient::CurrentResources() const {
  if (assembled_) return *assembled_;
  absl::StatusOr<ResourceSet> set = Assemble(HeldEntries(), plan_, CombinedVersion());
  return set.ok() ? *std::move(set) : static_resources_;
}

absl::Status XdsClient::UpdateStaticResources(ResourceSet static_resources) {
  ResourceSet previous = std::move(static_resources_);
  SetStaticResources(std::move(static_resources));
  absl::StatusOr<RunPlan> plan = PlanRun(HeldEntries(), /*references_changed=*/true);
  absl::StatusOr<ResourceSet> set =
      plan.ok() ? Assemble(HeldEntries(), *plan, CombinedVersion()) : plan.status();
  absl::Status status = set.ok() ? apply_(*set) : set.status();
  if (!status.ok()) {
    SetStaticResources(std::move(previous));
    return status;
  }
  LogPlanChanges(*plan);
  plan_ = *std::move(plan);
  SetPlanGauges();
  assembled_ = *std::move(set);
  return status;
}

}  // namespace meshlet::sidecar::config

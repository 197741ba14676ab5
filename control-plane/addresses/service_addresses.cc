#include "control-plane/addresses/service_addresses.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/net/ip_prefix.h"
#include "control-plane/addresses/allocation.pb.h"
#include "control-plane/policy/codec.h"
#include "control-plane/policy/kinds.h"
#include "google/protobuf/util/json_util.h"

namespace meshlet::controlplane::addresses {
namespace {

namespace pb = ::meshlet::policy;
using net::IpAddress;
using net::IpPrefix;

const ResourceKey& AllocationKey() {
  static const auto* key = new ResourceKey{kAllocationKind, "", kAllocationName};
  return *key;
}

std::string NamespaceOf(const pb::Service& service) {
  return service.metadata().namespace_().empty() ? std::string(policy::kDefaultNamespace)
                                                 : service.metadata().namespace_();
}

// The configured ranges: IPv4 always (the default when unset), IPv6 when set. A stored
// MeshConfig was validated when written; a range that does not parse all the same is skipped.
std::vector<IpPrefix> ConfiguredRanges(const Store& store) {
  pb::MeshConfigSpec spec;
  absl::StatusOr<StoredResource> stored =
      store.Get({"MeshConfig", "", std::string(policy::kMeshConfigName)});
  if (stored.ok()) {
    absl::StatusOr<policy::ParsedResource> parsed =
        policy::ParseStoredResource("MeshConfig", stored->body);
    if (parsed.ok()) spec = static_cast<const pb::MeshConfig&>(*parsed->message).spec();
  }
  std::vector<IpPrefix> ranges;
  for (const std::string& text :
       {spec.service_address_range().empty() ? std::string(kDefaultServiceAddressRange)
                                             : spec.service_address_range(),
        spec.service_address_range_v6()}) {
    if (text.empty()) continue;
    absl::StatusOr<IpPrefix> range = IpPrefix::Parse(text);
    if (!range.ok()) {
      LOG_EVERY_N_SEC(WARN, 60) << "service addresses: ignoring the stored MeshConfig's range: "
                                << range.status().message();
      continue;
    }
    ranges.push_back(*range);
  }
  return ranges;
}

// The offsets of `range` that may be handed out: IPv4 leaves out the first and last address
// (network and broadcast), IPv6 the first (subnet-router anycast).
std::pair<uint64_t, uint64_t> UsableOffsets(const IpPrefix& range) {
  const uint64_t size = range.Size();
  const uint64_t end = range.network().is_v4() && size > 1 ? size - 1 : size;
  return {std::min<uint64_t>(1, end), end};
}

// The next address of `range` not in `used`: past `next` (the cursor, moved past it) while
// there are any, then the lowest free one. Each loop steps over used addresses only, so it ends
// after at most used.size() + 1 steps (or at the end of the range).
std::optional<IpAddress> Take(const IpPrefix& range, const std::set<IpAddress>& used,
                              uint64_t& next) {
  const auto [first, end] = UsableOffsets(range);
  for (uint64_t offset = std::max(next, first); offset < end; ++offset) {
    IpAddress address = *range.At(offset);
    if (!used.count(address)) {
      next = offset + 1;
      return address;
    }
  }
  next = end;
  for (uint64_t offset = first; offset < end; ++offset) {
    IpAddress address = *range.At(offset);
    if (!used.count(address)) return address;
  }
  return std::nullopt;
}

void AddParsed(const google::protobuf::RepeatedPtrField<std::string>& texts,
               std::set<IpAddress>& out) {
  for (const std::string& text : texts) {
    absl::StatusOr<IpAddress> address = IpAddress::Parse(text);
    if (address.ok()) out.insert(*address);
  }
}

}  // namespace

ServiceAddresses::ServiceAddresses(Store& store, StatsRegistry* stats) : store_(store) {
  if (stats == nullptr) return;
  auto counter = [stats](absl::string_view name, absl::string_view help) {
    absl::StatusOr<CounterId> id = stats->RegisterCounter(name, help);
    CHECK(id.ok()) << id.status().message();
    return stats->shared_shard().Get(*id);
  };
  allocated_ = counter("meshlet_cp_service_addresses_allocated_total",
                       "Virtual addresses allocated to Services from the MeshConfig ranges.");
  exhausted_ = counter("meshlet_cp_service_addresses_exhausted_total",
                       "Services stored without an address from a range because the range had "
                       "none left.");
}

absl::Status ServiceAddresses::Assign(pb::Service& service, const pb::Service* previous,
                                      bool dry_run, std::vector<std::string>& warnings) {
  service.clear_status();
  if (!service.spec().addresses().empty()) return absl::OkStatus();
  if (previous != nullptr) *service.mutable_status() = previous->status();
  std::set<IpAddress> own;
  AddParsed(service.status().addresses(), own);
  std::vector<IpPrefix> missing;
  for (const IpPrefix& range : ConfiguredRanges(store_)) {
    const bool has = std::any_of(own.begin(), own.end(), [&](const IpAddress& a) {
      return a.family() == range.network().family();
    });
    if (!has) missing.push_back(range);
  }
  if (missing.empty()) return absl::OkStatus();

  reserved_.clear();
  const bool had_status = service.has_status();
  const pb::ServiceStatus status_before = service.status();
  // Read the cursors, then the Services, take, write the cursors (compare-and-swap). Another
  // replica's allocation is in one of them: reserved in the record until its Service is stored;
  // one made after the record was read makes the write fail, and the next attempt sees it.
  for (int attempt = 1;; ++attempt) {
    if (had_status) {
      *service.mutable_status() = status_before;
    } else {
      service.clear_status();
    }
    std::vector<std::string> attempt_warnings;
    AddressAllocation cursors;
    int64_t cursors_revision = kMustNotExist;
    absl::StatusOr<StoredResource> record = store_.Get(AllocationKey());
    if (record.ok()) {
      cursors_revision = record->revision;
      auto parsed = google::protobuf::util::JsonStringToMessage(record->body, &cursors);
      if (!parsed.ok()) {
        // Nothing in use is given twice without the cursors either; only released addresses may
        // come back sooner.
        LOG_EVERY_N_SEC(WARN, 60) << "service addresses: " << AllocationKey().ToString()
                                  << " is damaged (" << parsed.ToString()
                                  << "); allocating from the start of each range";
        cursors.Clear();
      }
    } else if (!absl::IsNotFound(record.status())) {
      return Annotate(record.status(), "reading the service address cursors");
    }
    std::set<IpAddress> used = own;
    AddParsed(cursors.reserved(), used);
    RETURN_IF_ERROR(RefreshStoredAddresses());
    const std::string own_key = absl::StrCat(NamespaceOf(service), "/", service.metadata().name());
    for (const auto& [key, stored_service] : stored_addresses_) {
      if (key == own_key) continue;
      used.insert(stored_service.addresses.begin(), stored_service.addresses.end());
    }

    size_t taken = 0, exhausted = 0;
    for (const IpPrefix& range : missing) {
      uint64_t& next = (*cursors.mutable_next())[range.ToString()];
      std::optional<IpAddress> address = Take(range, used, next);
      if (!address.has_value()) {
        attempt_warnings.push_back(absl::StrCat(
            "Service ", NamespaceOf(service), "/", service.metadata().name(),
            " gets no address from ", range.ToString(), ": every address of the range is in use; ",
            "set spec.addresses, or widen the range in MeshConfig (the Service gets one then)"));
        ++exhausted;
        continue;
      }
      service.mutable_status()->add_addresses(address->ToString());
      cursors.add_reserved(address->ToString());
      used.insert(*address);
      ++taken;
    }
    auto done = [&] {
      warnings.insert(warnings.end(), attempt_warnings.begin(), attempt_warnings.end());
      if (!dry_run) {
        allocated_.Inc(taken);
        exhausted_.Inc(exhausted);
      }
      return absl::OkStatus();
    };
    if (dry_run || taken == 0) return done();
    const int excess = cursors.reserved_size() - static_cast<int>(kReservedAddresses);
    if (excess > 0) cursors.mutable_reserved()->DeleteSubrange(0, excess);
    std::string body;
    auto printed = google::protobuf::util::MessageToJsonString(cursors, &body);
    if (!printed.ok()) return absl::InternalError(printed.ToString());
    absl::StatusOr<int64_t> written = store_.Put(AllocationKey(), body, cursors_revision);
    if (written.ok()) {
      reserved_.assign(service.status().addresses().begin() + status_before.addresses_size(),
                       service.status().addresses().end());
      return done();
    }
    const bool raced =
        absl::IsFailedPrecondition(written.status()) || absl::IsAlreadyExists(written.status());
    if (!raced || attempt == kAllocationAttempts) {
      return Annotate(written.status(), "saving the service address cursors");
    }
  }
}

absl::Status ServiceAddresses::RefreshStoredAddresses() {
  ASSIGN_OR_RETURN(std::vector<StoredResource> stored, store_.List("Service", ""));
  absl::flat_hash_map<std::string, StoredAddresses> fresh;
  fresh.reserve(stored.size());
  for (StoredResource& s : stored) {
    std::string key = absl::StrCat(
        s.key.namespace_.empty() ? policy::kDefaultNamespace : absl::string_view(s.key.namespace_),
        "/", s.key.name);
    auto known = stored_addresses_.find(key);
    if (known != stored_addresses_.end() && known->second.revision == s.revision) {
      fresh.emplace(std::move(key), std::move(known->second));
      continue;
    }
    ++services_parsed_;
    StoredAddresses entry{.revision = s.revision};
    absl::StatusOr<policy::ParsedResource> parsed = policy::ParseStoredResource("Service", s.body);
    if (parsed.ok()) {
      const auto& other = static_cast<const pb::Service&>(*parsed->message);
      std::set<IpAddress> addresses;
      AddParsed(other.spec().addresses(), addresses);
      AddParsed(other.status().addresses(), addresses);
      entry.addresses.assign(addresses.begin(), addresses.end());
    }
    fresh.emplace(std::move(key), std::move(entry));
  }
  stored_addresses_ = std::move(fresh);
  return absl::OkStatus();
}

void ServiceAddresses::Settle() {
  if (reserved_.empty()) return;
  const std::set<std::string> settled(reserved_.begin(), reserved_.end());
  reserved_.clear();
  for (int attempt = 1; attempt <= kAllocationAttempts; ++attempt) {
    absl::StatusOr<StoredResource> record = store_.Get(AllocationKey());
    AddressAllocation cursors;
    if (!record.ok() || !google::protobuf::util::JsonStringToMessage(record->body, &cursors).ok()) {
      break;
    }
    const int before = cursors.reserved_size();
    auto* reserved = cursors.mutable_reserved();
    reserved->erase(std::remove_if(reserved->begin(), reserved->end(),
                                   [&](const std::string& a) { return settled.count(a) > 0; }),
                    reserved->end());
    if (cursors.reserved_size() == before) return;
    std::string body;
    if (!google::protobuf::util::MessageToJsonString(cursors, &body).ok()) break;
    absl::StatusOr<int64_t> written = store_.Put(AllocationKey(), body, record->revision);
    if (written.ok()) return;
    if (!absl::IsFailedPrecondition(written.status())) {
      LOG_EVERY_N_SEC(WARN, 60) << "service addresses: lifting the reservation of "
                                << absl::StrJoin(settled, ", ") << ": " << written.status();
      return;
    }
  }
  LOG_EVERY_N_SEC(WARN, 60) << "service addresses: the reservation of "
                            << absl::StrJoin(settled, ", ")
                            << " stays (it lapses after later allocations)";
}

absl::StatusOr<ServiceAddresses::Backfill> ServiceAddresses::AssignMissing() {
  Backfill result;
  ASSIGN_OR_RETURN(std::vector<StoredResource> stored, store_.List("Service", ""));
  std::vector<pb::Service> services;
  std::vector<int64_t> revisions;
  for (const StoredResource& s : stored) {
    absl::StatusOr<policy::ParsedResource> parsed = policy::ParseStoredResource(s.key.kind, s.body);
    if (!parsed.ok()) continue;  // LoadPolicySnapshot skips it too, with a warning
    services.push_back(static_cast<pb::Service&>(*parsed->message));
    revisions.push_back(s.revision);
  }
  for (size_t i = 0; i < services.size(); ++i) {
    pb::Service updated = services[i];
    RETURN_IF_ERROR(Assign(updated, &services[i], /*dry_run=*/false, result.warnings));
    if (updated.status().addresses_size() == services[i].status().addresses_size()) continue;
    const ResourceKey key{"Service", NamespaceOf(updated), updated.metadata().name()};
    absl::StatusOr<int64_t> written = store_.Put(key, policy::ToJson(updated), revisions[i]);
    Settle();
    if (absl::IsFailedPrecondition(written.status())) continue;  // written meanwhile, and assigned
    if (!written.ok()) return Annotate(written.status(), absl::StrCat("writing ", key.ToString()));
    services[i] = std::move(updated);
    ++result.assigned;
  }
  return result;
}

}  // namespace meshlet::controlplane::addresses

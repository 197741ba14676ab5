// XdsClient's last good configuration on disk: every accepted configuration is saved to
// <cache_dir>/xds-cache.pb (an xds::CachedConfiguration: the node, per type the control plane's
// resources and version, what was retained, and the held lookup keys with their answers), at
// once or, once a complete configuration is saved, at most once per cache_write_interval
// (xds_client.h), written atomically (common/base/atomic_file.h: temp file, fsync, rename, fsync of
// the directory) so a crash leaves the old file or the new one, never a torn one. LoadCache applies
// it at start, so a sidecar restarted while the control plane is away serves what it ran. A write
// error is counted (meshlet_xds_client_cache_write_errors_total) and logged, and the sidecar runs
// on. Threading: the client's loop thread.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/atomic_file.h"
#include "common/base/clock.h"
#include "common/base/file.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/base/time_text.h"
#include "sidecar/config/xds_client.h"
#include "sidecar/config/xds_client_internal.h"
#include "xds/protocol.h"
#include "xds/version.h"

namespace meshlet::sidecar::config {

using xds_client_internal::PackResource;
using xds_client_internal::ParsedResource;
using xds_client_internal::ParseResource;

namespace {

constexpr char kCacheFile[] = "xds-cache.pb";

}  // namespace

void XdsClient::Persist() {
  if (options_.cache_dir.empty()) return;
  const MonotonicTime now = RealClock::Get().Now();
  const MonotonicTime due = last_save_ + options_.cache_write_interval;
  if (!saved_complete_ || options_.cache_write_interval <= Duration::zero() || now >= due) {
    WriteCache();
    return;
  }
  // Saved with whatever else arrives until the interval has passed.
  save_pending_ = true;
  if (save_timer_ == nullptr) {
    save_timer_ = std::make_unique<event::Timer>(loop_, [this] { FlushPersist(); });
  }
  if (!save_timer_->enabled()) {
    save_timer_->Enable(std::chrono::duration_cast<Duration>(due - now));
  }
}

void XdsClient::FlushPersist() {
  if (save_pending_) WriteCache();
}

void XdsClient::WriteCache() {
  if (save_timer_ != nullptr) save_timer_->Disable();
  save_pending_ = false;
  last_save_ = RealClock::Get().Now();
  saved_complete_ = saved_complete_ || complete_config_;
  ++cache_writes_;
  cache_writes_counter_.Inc();
  absl::Status status = WriteFileAtomically(absl::StrCat(options_.cache_dir, "/", kCacheFile),
                                            SavedConfiguration(), {.create_directory_mode = 0700});
  if (!status.ok()) {
    persist_errors_.Inc();
    LOG_EVERY_N_SEC(ERROR, 10) << "xds: cannot save the configuration: " << status.message();
  }
}

std::string XdsClient::SavedConfiguration() const {
  xds::CachedConfiguration cache;
  *cache.mutable_node() = options_.node;
  cache.set_saved_at(Rfc3339Text(absl::Now()));
  for (size_t i = 0; i < xds::kResourceTypeCount; ++i) {
    xds::DiscoveryResponse* type = cache.add_types();
    type->set_type_url(xds::kResourceTypeUrls[i]);
    type->set_version_info(types_[i].version);
    for (const auto& [name, entry] : types_[i].entries) {
      PackResource(i, *entry.held, *type->add_resources());
    }
    if (plan_.retained[i].empty()) continue;
    xds::DiscoveryResponse* retained = cache.add_retained();
    retained->set_type_url(xds::kResourceTypeUrls[i]);
    for (const auto& [name, entry] : plan_.retained[i]) {
      PackResource(i, *entry.held, *retained->add_resources());
    }
  }
  for (const auto& [key, resource] : lookups_) {
    xds::LookupKey* lookup = cache.add_lookups();
    lookup->set_key(key);
    lookup->set_resource(resource);
  }
  return cache.SerializeAsString();
}

absl::Status XdsClient::LoadCache() {
  if (options_.cache_dir.empty()) return absl::NotFoundError("no cache directory");
  const std::string path = absl::StrCat(options_.cache_dir, "/", kCacheFile);
  absl::StatusOr<std::string> content = ReadFile(path);
  if (absl::IsNotFound(content.status())) {
    return absl::NotFoundError(absl::StrCat("no saved configuration at \"", path, "\""));
  }
  if (!content.ok()) return content.status();
  return LoadSavedConfiguration(*content, path);
}

absl::Status XdsClient::LoadSavedConfiguration(const std::string& content,
                                               const std::string& path) {
  xds::CachedConfiguration cache;
  if (!cache.ParseFromString(content)) {
    return absl::DataLossError(absl::StrCat("\"", path, "\" does not parse"));
  }
  std::array<TypeState, xds::kResourceTypeCount> loaded;
  RunPlan loaded_plan;
  // Reads one type's saved resources into what is held of it, or into what is retained.
  auto load = [&](const xds::DiscoveryResponse& type, bool retained) -> absl::Status {
    std::optional<size_t> index = xds::ResourceTypeIndex(type.type_url());
    if (!index) return absl::OkStatus();
    if (!retained) loaded[*index].version = type.version_info();
    EntryMap& entries = retained ? loaded_plan.retained[*index] : loaded[*index].entries;
    for (const google::protobuf::Any& any : type.resources()) {
      absl::StatusOr<ParsedResource> parsed = ParseResource(*index, any, &resources_parsed_);
      if (!parsed.ok()) {
        return absl::DataLossError(absl::StrCat("\"", path, "\": ", parsed.status().message()));
      }
      const uint64_t hash = xds::Fnv1a64(any.value());
      entries.emplace(std::move(parsed->name),
                      Entry{.version = ResourceVersion("", hash), .held = std::move(parsed->held)});
    }
    return absl::OkStatus();
  };
  for (const xds::DiscoveryResponse& type : cache.types()) RETURN_IF_ERROR(load(type, false));
  for (const xds::DiscoveryResponse& type : cache.retained()) RETURN_IF_ERROR(load(type, true));
  std::array<TypeState, xds::kResourceTypeCount> previous = std::move(types_);
  RunPlan previous_plan = std::move(plan_);
  for (TypeState& type : loaded) type.entry_sum = EntrySum(type.entries);
  types_ = std::move(loaded);
  // What was retained when it was saved stays only as long as something names it.
  plan_ = std::move(loaded_plan);
  absl::StatusOr<RunPlan> plan = PlanRun(HeldEntries(), /*references_changed=*/true);
  absl::StatusOr<ResourceSet> set =
      plan.ok() ? Assemble(HeldEntries(), *plan, CombinedVersion()) : plan.status();
  absl::Status status = set.ok() ? apply_(*set) : set.status();
  if (!status.ok()) {
    types_ = std::move(previous);
    plan_ = std::move(previous_plan);
    return absl::Status(status.code(),
                        absl::StrCat("saved configuration \"", path, "\": ", status.message()));
  }
  plan_ = *std::move(plan);
  SetPlanGauges();
  // Subscribed again on the first stream, with the answers they had meanwhile.
  lookups_.clear();
  for (const xds::LookupKey& lookup : cache.lookups()) {
    if (!xds::IsLookupKey(lookup.key())) continue;
    lookups_[lookup.key()] =
        types_[xds_client_internal::kServiceRoutes].entries.count(lookup.resource()) > 0
            ? lookup.resource()
            : std::string();
  }
  assembled_ = *std::move(set);
  has_dynamic_config_ = true;
  complete_config_ = true;
  LOG(INFO) << "xds: started from the configuration saved at " << cache.saved_at() << " (" << path
            << ")";
  return absl::OkStatus();
}

}  // namespace meshlet::sidecar::config

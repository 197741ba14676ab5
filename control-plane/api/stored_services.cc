#include "control-plane/api/stored_services.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "control-plane/policy/codec.h"

namespace meshlet::controlplane::api {

const policy::PolicySnapshot& StoredServices::Current(const Store& store) {
  absl::StatusOr<std::vector<StoredResource>> stored = store.List("Service", "");
  if (!stored.ok()) {
    snapshot_.services.clear();
    parsed_.clear();
    return snapshot_;
  }
  // Unchanged since the last call (the same Services at the same revisions): as they are.
  bool unchanged = stored->size() == parsed_.size();
  for (size_t i = 0; unchanged && i < stored->size(); ++i) {
    const StoredResource& s = (*stored)[i];
    auto it = parsed_.find(absl::StrCat(s.key.namespace_, "/", s.key.name));
    unchanged = it != parsed_.end() && it->second.revision == s.revision;
  }
  if (unchanged) return snapshot_;

  std::vector<meshlet::policy::Service> services;
  services.reserve(stored->size());
  absl::flat_hash_map<std::string, Parsed> parsed;
  parsed.reserve(stored->size());
  for (const StoredResource& s : *stored) {
    std::string key = absl::StrCat(s.key.namespace_, "/", s.key.name);
    Parsed entry{.revision = s.revision};
    auto old = parsed_.find(key);
    if (old != parsed_.end() && old->second.revision == s.revision) {
      if (old->second.index >= 0) {
        entry.index = static_cast<int>(services.size());
        services.push_back(std::move(snapshot_.services[old->second.index]));
      }
    } else if (absl::StatusOr<policy::ParsedResource> p =
                   policy::ParseStoredResource(s.key.kind, s.body);
               p.ok()) {
      entry.index = static_cast<int>(services.size());
      services.push_back(std::move(static_cast<meshlet::policy::Service&>(*p->message)));
    }
    parsed.insert_or_assign(std::move(key), entry);
  }
  snapshot_.services = std::move(services);
  parsed_ = std::move(parsed);
  return snapshot_;
}

}  // namespace meshlet::controlplane::api

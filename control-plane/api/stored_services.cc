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

  policy::ResourceList<meshlet::policy::Service> services;
  services.reserve(stored->size());
  absl::flat_hash_map<std::string, Parsed> parsed;
  parsed.reserve(stored->size());
  for (const StoredResource& s : *stored) {
    std::string key = absl::StrCat(s.key.namespace_, "/", s.key.name);
    Parsed entry{.revision = s.revision};
    auto old = parsed_.find(key);
    if (old != parsed_.end() && old->second.revision == s.revision) {
      entry.service = std::move(old->second.service);
    } else if (absl::StatusOr<policy::ParsedResource> p =
                   policy::ParseStoredResource(s.key.kind, s.body);
               p.ok()) {
      entry.service = std::shared_ptr<meshlet::policy::Service>(
          static_cast<meshlet::policy::Service*>(p->message.release()));
    }
    if (entry.service != nullptr) services.push_back(entry.service);
    parsed.insert_or_assign(std::move(key), std::move(entry));
  }
  snapshot_.services = std::move(services);
  parsed_ = std::move(parsed);
  return snapshot_;
}

}  // namespace meshlet::controlplane::api

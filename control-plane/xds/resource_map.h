#pragma once

// ResourceMap: one type's resources by name, in name order, persistent (common/base/
// persistent_map.h): a copy shares every entry with the original, and a change copies only the
// nodes on the path to the changed name, so a node's set taken from the shared outbound part, a
// stream's state after a push and a generation's maps derived from the previous one cost per
// changed name, not per resource (ADR 0088, amended). Diff() visits only where two maps differ.
// Sum() is the sum of the entries' type-version hashes (xds/version.h), so TypeVersion() is
// O(1). Threading and ownership: PersistentMap's.

#include <cstdint>
#include <memory>
#include <string>

#include "common/base/persistent_map.h"

namespace meshlet::controlplane::ads {

struct NamedResource;
using ResourcePtr = std::shared_ptr<const NamedResource>;

// A resource's xds::TypeVersionEntry(name, version).
struct TypeVersionSummary {
  static uint64_t Of(const std::string& name, const ResourcePtr& resource);
};

using ResourceMap = PersistentMap<ResourcePtr, TypeVersionSummary>;

}  // namespace meshlet::controlplane::ads

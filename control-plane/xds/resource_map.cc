#include "control-plane/xds/resource_map.h"

#include "control-plane/xds/resource_set.h"
#include "xds/version.h"

namespace meshlet::controlplane::ads {

uint64_t TypeVersionSummary::Of(const std::string& name, const ResourcePtr& resource) {
  return xds::TypeVersionEntry(name, resource->version);
}

}  // namespace meshlet::controlplane::ads

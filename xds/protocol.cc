#include "xds/protocol.h"

namespace meshlet::xds {

std::optional<size_t> ResourceTypeIndex(absl::string_view type_url) {
  for (size_t i = 0; i < kResourceTypeCount; ++i) {
    if (type_url == kResourceTypeUrls[i]) return i;
  }
  return std::nullopt;
}

}  // namespace meshlet::xds

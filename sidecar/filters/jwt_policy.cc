#include "sidecar/filters/jwt_policy.h"

namespace meshlet::sidecar::filters {

std::vector<JwtTokenLocation> DefaultJwtTokenLocations() {
  return {{.name = "authorization", .prefix = "Bearer "},
          {.query_parameter = true, .name = "access_token"}};
}

}  // namespace meshlet::sidecar::filters

#include "sidecar/config/lookup.h"

namespace meshlet::sidecar::config {

absl::string_view LookupOutcomeName(LookupOutcome outcome) {
  switch (outcome) {
    case LookupOutcome::kFound:
      return "found";
    case LookupOutcome::kNotFound:
      return "not_found";
    case LookupOutcome::kRefused:
      return "refused";
    case LookupOutcome::kTimeout:
      return "timeout";
    case LookupOutcome::kDisconnected:
      return "disconnected";
    case LookupOutcome::kOverflow:
      return "overflow";
    case LookupOutcome::kLimit:
      return "limit";
  }
  return "unknown";
}

}  // namespace meshlet::sidecar::config

#include "sidecar/config/lookup.h"

#include "absl/strings/match.h"
#include "xds/protocol.h"

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

LookupKind LookupKindOf(absl::string_view key) {
  return absl::StartsWith(key, xds::kLookupHostPrefix) ? LookupKind::kHost : LookupKind::kAddress;
}

absl::string_view LookupKindName(LookupKind kind) {
  return kind == LookupKind::kHost ? "host" : "address";
}

}  // namespace meshlet::sidecar::config

// Discovery modes, and lookup keys resolved by the mesh index's owner tables (lookup.h).

#include "control-plane/translate/lookup.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "control-plane/translate/translation.h"
#include "xds/protocol.h"

namespace meshlet::controlplane::translate {
namespace {

std::optional<DiscoveryMode> DiscoveryModeOfConfig(absl::string_view value) {
  for (DiscoveryMode mode :
       {DiscoveryMode::kWholeMesh, DiscoveryMode::kDeclared, DiscoveryMode::kOnDemand}) {
    if (value == DiscoveryModeName(mode)) return mode;
  }
  return std::nullopt;
}

// `host` (no port) and its port part (":9080", or empty) as a request's authority carries them:
// the port follows the last ':' after a bracketed IPv6 literal's ']'.
std::pair<absl::string_view, absl::string_view> SplitPort(absl::string_view host) {
  const size_t colon = host.rfind(':');
  const size_t bracket = host.rfind(']');
  if (colon == absl::string_view::npos || (bracket != absl::string_view::npos && colon < bracket)) {
    return {host, {}};
  }
  return {host.substr(0, colon), host.substr(colon)};
}

// The owner of a normalised host (lower case, no trailing dot, port as sent), matched as the
// sidecar matches a virtual host (route::RouteTable::MatchVirtualHost): exact with the port,
// exact without it, then wildcards ("*.example.com", HTTPRoute hostnames, never with a port)
// longest suffix first, a wildcard standing for at least one character.
const ServicePortRef* HostOwner(const HostOwners& owners, absl::string_view host) {
  if (auto it = owners.find(host); it != owners.end()) return &it->second;
  const absl::string_view name = SplitPort(host).first;
  if (name.size() != host.size()) {
    if (auto it = owners.find(name); it != owners.end()) return &it->second;
  }
  std::string wildcard;
  for (size_t dot = name.find('.', 1); dot != absl::string_view::npos;
       dot = name.find('.', dot + 1)) {
    wildcard = absl::StrCat("*", name.substr(dot));
    if (auto it = owners.find(wildcard); it != owners.end()) return &it->second;
  }
  return nullptr;
}

// `rest` of an `addr:` key ("10.96.0.5:80", "[fd00::5]:80") as xds::LookupKeyForAddress writes
// it; nullopt when it is not an address and port (an IPv6 address must be in brackets).
std::optional<std::string> NormalAddressKey(absl::string_view rest) {
  const auto [ip, port] = SplitPort(rest);
  if (port.size() < 2 || port.size() > 6) return std::nullopt;
  const absl::string_view digits = port.substr(1);
  uint32_t number = 0;
  if (!std::all_of(digits.begin(), digits.end(), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(digits, &number)) {
    return std::nullopt;
  }
  const bool bracketed = absl::StartsWith(ip, "[") && absl::EndsWith(ip, "]");
  if (!bracketed && absl::StrContains(ip, ':')) return std::nullopt;
  return xds::LookupKeyForAddress(ip, number);
}

AddressOwners BuildAddressOwners(const MeshIndex& index) {
  AddressOwners owners;
  for (uint32_t i = 0; i < index.ordered.size(); ++i) {
    const ServiceView& view = *index.ordered[i];
    for (const std::string& address : view.addresses) {
      for (const pb::ServicePort& port : view.ports) {
        if (std::optional<std::string> lookup = xds::LookupKeyForAddress(address, port.port())) {
          owners.try_emplace(std::move(*lookup), ServicePortRef{i, port.port()});
        }
      }
    }
  }
  return owners;
}

}  // namespace

absl::string_view DiscoveryModeName(DiscoveryMode mode) {
  switch (mode) {
    case DiscoveryMode::kWholeMesh:
      return "WholeMesh";
    case DiscoveryMode::kDeclared:
      return "Declared";
    case DiscoveryMode::kOnDemand:
      return "OnDemand";
  }
  return "WholeMesh";
}

std::optional<DiscoveryMode> DiscoveryModeOfLabel(absl::string_view value) {
  if (value == "whole-mesh") return DiscoveryMode::kWholeMesh;
  if (value == "declared") return DiscoveryMode::kDeclared;
  if (value == "on-demand") return DiscoveryMode::kOnDemand;
  return std::nullopt;
}

namespace {

// MeshConfig's mode, without the node's label.
DiscoveryMode MeshMode(const ::meshlet::policy::MeshConfigSpec& mesh) {
  if (std::optional<DiscoveryMode> mode = DiscoveryModeOfConfig(mesh.discovery().mode())) {
    return *mode;
  }
  return mesh.scope_to_dependencies() ? DiscoveryMode::kDeclared : DiscoveryMode::kOnDemand;
}

}  // namespace

DiscoveryMode ConfiguredMode(const registry::Workload& node,
                             const ::meshlet::policy::MeshConfigSpec& mesh) {
  if (auto label = node.labels.find(std::string(kDiscoveryLabel)); label != node.labels.end()) {
    if (std::optional<DiscoveryMode> mode = DiscoveryModeOfLabel(label->second)) return *mode;
  }
  return MeshMode(mesh);
}

DiscoveryMode EffectiveMode(const registry::Workload& node,
                            const ::meshlet::policy::MeshConfigSpec& mesh, bool looks_up) {
  const DiscoveryMode mode = ConfiguredMode(node, mesh);
  if (mode != DiscoveryMode::kOnDemand || looks_up) return mode;
  // What the node got before it asked for OnDemand.
  const DiscoveryMode fallback = MeshMode(mesh);
  return fallback == DiscoveryMode::kOnDemand ? DiscoveryMode::kWholeMesh : fallback;
}

absl::string_view LookupReasonName(LookupReason reason) {
  switch (reason) {
    case LookupReason::kFound:
      return "found";
    case LookupReason::kMalformed:
      return "malformed";
    case LookupReason::kUnknown:
      return "unknown";
    case LookupReason::kNotVisible:
      return "not_visible";
  }
  return "unknown";
}

const AddressOwners& OwnAddresses(const TranslationContext& ctx) {
  return ctx.index.host_owners->Addresses([&ctx] { return BuildAddressOwners(ctx.index); });
}

LookupResult Resolve(const TranslationContext& ctx, absl::string_view key) {
  LookupResult result;
  const ServicePortRef* owner = nullptr;
  if (key.size() > xds::kMaxLookupKeyBytes + 1) {
    // Longer than any key a sidecar builds (one trailing dot is dropped from what it counts).
    result.reason = LookupReason::kMalformed;
    return result;
  }
  if (absl::ConsumePrefix(&key, xds::kLookupAddressPrefix)) {
    std::optional<std::string> normal = NormalAddressKey(key);
    if (!normal) {
      result.reason = LookupReason::kMalformed;
      return result;
    }
    // Only a captured node's ServiceRoutes carry capture destinations to answer an address.
    if (ctx.self.capture) {
      const AddressOwners& owners = OwnAddresses(ctx);
      if (auto it = owners.find(*normal); it != owners.end()) owner = &it->second;
    }
  } else if (absl::ConsumePrefix(&key, xds::kLookupHostPrefix)) {
    std::optional<std::string> normal = xds::LookupKeyForHost(key);
    if (!normal) {
      result.reason = LookupReason::kMalformed;
      return result;
    }
    owner = HostOwner(OwnHostNames(ctx),
                      absl::string_view(*normal).substr(xds::kLookupHostPrefix.size()));
  } else {
    result.reason = LookupReason::kMalformed;
    return result;
  }
  if (owner == nullptr) {
    result.reason = LookupReason::kUnknown;
    return result;
  }
  const ServiceView& service = ctx.index.service(*owner);
  result.service = {service.namespace_, service.name};
  result.port = owner->port;
  result.service_route = ctx.index.Name(*owner);
  result.reason = ctx.MayDiscover(service) ? LookupReason::kFound : LookupReason::kNotVisible;
  return result;
}

}  // namespace meshlet::controlplane::translate

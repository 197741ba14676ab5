#include "xds/capabilities.h"

#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace meshlet::xds {

namespace {

constexpr std::array<CapabilityInfo, kCapabilityCount> kCapabilities = {{
    {Capability::kMeshHttp2, "mesh-http2", "0.1.0"},
    {Capability::kEndpointPlaintext, "endpoint-plaintext", "0.1.0"},
    {Capability::kVirtualHostDestinations, "virtual-host-destinations", "0.1.0"},
    {Capability::kOverload, "overload", "0.2.0"},
    {Capability::kPolicySource, "policy-source", "0.2.0"},
    {Capability::kStreamResetLifetime, "stream-reset-lifetime", "0.2.0"},
    {Capability::kFloodDrain, "flood-drain", "0.2.0"},
    {Capability::kLargeXdsMessages, "large-xds-messages", "0.2.0"},
    {Capability::kServiceRoutes, "service-routes", "0.2.0"},
    {Capability::kOnDemand, "on-demand", "0.2.0"},
    {Capability::kJwt, "jwt", "0.2.0"},
    {Capability::kCaRotation, "ca-rotation", "0.2.0"},
    {Capability::kFederation, "federation", "0.2.0"},
    {Capability::kGateway, "gateway", "0.2.0"},
    {Capability::kLocality, "locality", "0.2.0"},
    {Capability::kBackendTls, "backend-tls", "0.2.0"},
    {Capability::kCors, "cors", "0.2.0"},
    {Capability::kServerNames, "server-names", "0.2.0"},
    {Capability::kExternalServices, "external-services", "0.2.0"},
}};

bool ParseNumber(absl::string_view text, int* out) {
  if (text.empty() || text.size() > 6) return false;
  for (char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return absl::SimpleAtoi(text, out);
}

}  // namespace

std::optional<Capability> CapabilityOfType(absl::string_view type_url) {
  if (type_url == "type.googleapis.com/meshlet.xds.ServiceRoute") return Capability::kServiceRoutes;
  return std::nullopt;
}

std::optional<Release> Release::Parse(absl::string_view text) {
  Release release;
  const size_t dash = text.find('-');
  if (dash != absl::string_view::npos) {
    if (dash + 1 == text.size()) return std::nullopt;
    release.prerelease = true;
    text = text.substr(0, dash);
  }
  std::vector<absl::string_view> parts = absl::StrSplit(text, '.');
  if (parts.size() != 3 || !ParseNumber(parts[0], &release.major) ||
      !ParseNumber(parts[1], &release.minor) || !ParseNumber(parts[2], &release.patch)) {
    return std::nullopt;
  }
  return release;
}

bool operator<(const Release& a, const Release& b) {
  // A pre-release comes before its release.
  return std::make_tuple(a.major, a.minor, a.patch, !a.prerelease) <
         std::make_tuple(b.major, b.minor, b.patch, !b.prerelease);
}

bool operator==(const Release& a, const Release& b) {
  return a.major == b.major && a.minor == b.minor && a.patch == b.patch &&
         a.prerelease == b.prerelease;
}

const std::array<CapabilityInfo, kCapabilityCount>& Capabilities() { return kCapabilities; }

const CapabilityInfo& Info(Capability capability) {
  return kCapabilities[static_cast<size_t>(capability)];
}

std::optional<Capability> CapabilityNamed(absl::string_view name) {
  for (const CapabilityInfo& info : kCapabilities) {
    if (info.name == name) return info.capability;
  }
  return std::nullopt;
}

CapabilitySet CapabilitySet::All() {
  CapabilitySet set;
  set.bits_.set();
  return set;
}

CapabilitySet CapabilitySet::OfRelease(const Release& release) {
  CapabilitySet set;
  for (const CapabilityInfo& info : kCapabilities) {
    std::optional<Release> since = Release::Parse(info.since);
    if (since.has_value() && !(release < *since)) set.Add(info.capability);
  }
  return set;
}

CapabilitySet CapabilitySet::Minus(const CapabilitySet& other) const {
  CapabilitySet set;
  set.bits_ = bits_ & ~other.bits_;
  return set;
}

std::vector<std::string> CapabilitySet::Names() const {
  std::vector<std::string> names;
  for (const CapabilityInfo& info : kCapabilities) {
    if (Has(info.capability)) names.emplace_back(info.name);
  }
  return names;
}

std::optional<Release> SidecarRelease(absl::string_view sidecar_version) {
  if (!absl::ConsumePrefix(&sidecar_version, kSidecarVersionPrefix)) return std::nullopt;
  return Release::Parse(sidecar_version);
}

CapabilitySet CapabilitiesOf(const Node& node) {
  if (node.capabilities_size() > 0) {
    CapabilitySet set;
    for (const std::string& name : node.capabilities()) {
      // Names of later releases mean nothing to this one.
      if (std::optional<Capability> c = CapabilityNamed(name)) set.Add(*c);
    }
    return set;
  }
  std::optional<Release> release = SidecarRelease(node.sidecar_version());
  if (!release.has_value()) release = Release::Parse(kOldestSupportedRelease);
  return CapabilitySet::OfRelease(*release);
}

bool CapabilitiesAssumed(const Node& node) {
  return node.capabilities_size() == 0 && !SidecarRelease(node.sidecar_version()).has_value();
}

}  // namespace meshlet::xds

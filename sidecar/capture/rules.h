#pragma once

// The traffic-capture rules of a pod (docs/operations.md#traffic-capture), as pure functions:
// CaptureOptions → the iptables-restore input that installs them in one family's nat table, or
// removes them again. Nothing here runs a program or touches the kernel (sidecar/capture/
// iptables.h does), so every rule, its order and every option is unit-tested as text.
//
// The rules live in four chains of their own in the nat table:
//   PREROUTING -p tcp → MESHLET_INBOUND: TCP arriving at the pod, minus excluded ports,
//                       → MESHLET_IN_REDIRECT: REDIRECT to the inbound listener (15006).
//   OUTPUT -p tcp     → MESHLET_OUTPUT: TCP the pod sends, minus the proxy's own traffic (its
//                       UID or GID), loopback, excluded CIDRs and ports,
//                       → MESHLET_REDIRECT: REDIRECT to the outbound listener (15001).
// The proxy's own connections to the pod's address over loopback (an app calling its own
// service through the mesh) go through MESHLET_INBOUND, so they reach the inbound listener.
//
// Every rule is written the way iptables-save prints it (iptables 1.8, nft and legacy), so the
// text `sidecar init --dry-run` prints is the text iptables-save shows afterwards.
//
// Values only; no threads, no callbacks.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshlet::sidecar::capture {

enum class Family { kIpv4, kIpv6 };

// "IPv4", "IPv6".
absl::string_view FamilyName(Family family);

// The chains the rules live in, and the built-in chains that jump to them.
inline constexpr absl::string_view kInboundChain = "MESHLET_INBOUND";
inline constexpr absl::string_view kInboundRedirectChain = "MESHLET_IN_REDIRECT";
inline constexpr absl::string_view kOutputChain = "MESHLET_OUTPUT";
inline constexpr absl::string_view kOutboundRedirectChain = "MESHLET_REDIRECT";

// Inbound ports never captured, whatever the options say: the sidecar's admin (15000),
// Prometheus and readiness (15020) and health (15021) ports, so probes and scrapes reach the
// sidecar itself.
inline constexpr uint16_t kAlwaysExcludedInboundPorts[] = {15000, 15020, 15021};

// An address range of one family, kept as iptables-save prints it: the network address with the
// host bits cleared, then the prefix length ("10.0.0.0/8", "10.1.2.3/32", "fd00::/8").
struct Cidr {
  Family family = Family::kIpv4;
  std::string text;
  int prefix_length = 0;

  bool operator==(const Cidr& other) const { return text == other.text; }
};

// "10.0.0.0/8", "10.1.2.3" (a single address, /32), "fd00::/8", "::1". Host bits are cleared
// ("10.1.2.3/8" is 10.0.0.0/8).
absl::StatusOr<Cidr> ParseCidr(absl::string_view text);

// "*" (every item) or exactly these items (an empty list: none).
template <typename T>
struct Selection {
  bool all = true;
  std::vector<T> items;
};

enum class Ipv6Mode {
  kAuto,  // when the pod has a global IPv6 address
  kOn,
  kOff,
};

struct CaptureOptions {
  // Traffic of processes running with this UID or this GID is never captured: the proxy's own
  // upstream connections, and its inbound forwarding to the app.
  uint32_t proxy_uid = 1337;
  uint32_t proxy_gid = 1337;
  // Where captured connections go: the sidecar's capture listeners.
  uint16_t outbound_port = 15001;
  uint16_t inbound_port = 15006;
  // Inbound TCP destination ports to capture ("*": all but the excluded ones).
  Selection<uint16_t> include_inbound_ports;
  // Inbound ports left alone, besides kAlwaysExcludedInboundPorts. Exclusion wins over
  // inclusion.
  std::vector<uint16_t> exclude_inbound_ports;
  // Outbound TCP destination ports left alone.
  std::vector<uint16_t> exclude_outbound_ports;
  // Outbound destinations to capture ("*": all but the excluded ones). A family with none of
  // the listed ranges captures no outbound traffic.
  Selection<Cidr> include_outbound_cidrs;
  // Outbound destinations left alone; exclusion wins over inclusion.
  std::vector<Cidr> exclude_outbound_cidrs;
  Ipv6Mode ipv6 = Ipv6Mode::kAuto;
};

// The capture rules of one family.
struct Ruleset {
  Family family = Family::kIpv4;
  // The chains of their own, in the order they are declared.
  std::vector<std::string> chains;
  // "-A MESHLET_... ..." lines, grouped by chain in `chains` order, each chain's in order.
  std::vector<std::string> rules;
  // "-A PREROUTING -p tcp -j MESHLET_INBOUND" and "-A OUTPUT -p tcp -j MESHLET_OUTPUT": the
  // only rules outside the chains above.
  std::vector<std::string> jumps;
};

Ruleset BuildRules(const CaptureOptions& options, Family family);

// One family's nat table as iptables-save prints it (`iptables-save -t nat`): its chains and its
// "-A ..." rule lines, in order.
struct NatTable {
  std::vector<std::string> chains;
  std::vector<std::string> rules;

  bool HasChain(absl::string_view chain) const;
  bool HasRule(absl::string_view rule) const;
  // The rule lines of `chain`, in order.
  std::vector<std::string> RulesOf(absl::string_view chain) const;
};

// Reads the "*nat" section of iptables-save output; an output without one is an empty table.
absl::StatusOr<NatTable> ParseNatTable(absl::string_view save_output);

// The iptables-restore input (for `--noflush`) that installs `ruleset` in one atomic batch:
// declaring a chain creates it, or empties it when it exists, so a second run replaces the rules
// of the first instead of adding to them. A jump already in `current` is not added again; with
// `current` null (a dry run), every jump is.
std::string ApplyText(const Ruleset& ruleset, const NatTable* current);

// The iptables-restore input (for `--noflush`) that removes exactly what ApplyText adds: every
// copy of the two jumps, then the four chains. Only what `current` holds is removed; with
// `current` null (a dry run), everything is. Empty when there is nothing to remove.
std::string CleanupText(const NatTable* current);

// Whether `after` (the nat table read back after applying) holds `ruleset`: each chain with as
// many rules as written, each jump at least once. Rules the tool printed differently from how
// they were written (another iptables version) are not errors: they are listed in `*reworded`.
absl::Status CheckApplied(const Ruleset& ruleset, const NatTable& after,
                          std::vector<std::string>* reworded);

// Whether /proc/net/if_inet6 (`if_inet6`) lists an address of global scope on an interface
// other than loopback: what --ipv6=auto looks for.
bool HasGlobalIpv6Address(absl::string_view if_inet6);

}  // namespace meshlet::sidecar::capture

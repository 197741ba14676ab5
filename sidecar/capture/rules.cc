#include "sidecar/capture/rules.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace meshlet::sidecar::capture {
namespace {

constexpr absl::string_view kPrerouting = "PREROUTING";
constexpr absl::string_view kOutput = "OUTPUT";

std::string JumpRule(absl::string_view from, absl::string_view to) {
  return absl::StrCat("-A ", from, " -p tcp -j ", to);
}

std::vector<std::string> Jumps() {
  return {JumpRule(kPrerouting, kInboundChain), JumpRule(kOutput, kOutputChain)};
}

std::vector<std::string> OwnChains() {
  return {std::string(kInboundChain), std::string(kInboundRedirectChain), std::string(kOutputChain),
          std::string(kOutboundRedirectChain)};
}

// "-d 10.0.0.0/8 "; nothing for a /0, which iptables-save leaves out as it matches everything.
std::string Destination(const Cidr& cidr) {
  return cidr.prefix_length == 0 ? "" : absl::StrCat("-d ", cidr.text, " ");
}

// `items` without repeats, first occurrence kept.
template <typename T>
std::vector<T> Unique(const std::vector<T>& items) {
  std::vector<T> out;
  for (const T& item : items) {
    if (std::find(out.begin(), out.end(), item) == out.end()) out.push_back(item);
  }
  return out;
}

std::vector<Cidr> OfFamily(const std::vector<Cidr>& cidrs, Family family) {
  std::vector<Cidr> out;
  for (const Cidr& cidr : Unique(cidrs)) {
    if (cidr.family == family) out.push_back(cidr);
  }
  return out;
}

// The chain a "-A CHAIN ..." line appends to.
absl::string_view ChainOf(absl::string_view rule) {
  if (!absl::ConsumePrefix(&rule, "-A ")) return {};
  return rule.substr(0, rule.find(' '));
}

}  // namespace

absl::string_view FamilyName(Family family) { return family == Family::kIpv4 ? "IPv4" : "IPv6"; }

absl::StatusOr<Cidr> ParseCidr(absl::string_view text) {
  const std::string input(absl::StripAsciiWhitespace(text));
  const size_t slash = input.find('/');
  const std::string address = input.substr(0, slash);
  Cidr cidr;
  unsigned char bytes[16] = {};
  int max_prefix = 0;
  int af = 0;
  if (inet_pton(AF_INET, address.c_str(), bytes) == 1) {
    cidr.family = Family::kIpv4;
    max_prefix = 32;
    af = AF_INET;
  } else if (inet_pton(AF_INET6, address.c_str(), bytes) == 1) {
    cidr.family = Family::kIpv6;
    max_prefix = 128;
    af = AF_INET6;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", input, "\" is not an address range (10.0.0.0/8, 10.1.2.3, fd00::/8)"));
  }
  cidr.prefix_length = max_prefix;
  if (slash != std::string::npos) {
    const std::string prefix = input.substr(slash + 1);
    if (prefix.empty() || !absl::SimpleAtoi(prefix, &cidr.prefix_length) ||
        cidr.prefix_length < 0 || cidr.prefix_length > max_prefix) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", input, "\": the prefix length must be 0 to ", max_prefix));
    }
  }
  for (int bit = cidr.prefix_length; bit < max_prefix; ++bit) {
    bytes[bit / 8] &= static_cast<unsigned char>(~(0x80u >> (bit % 8)));
  }
  char printed[INET6_ADDRSTRLEN] = {};
  inet_ntop(af, bytes, printed, sizeof(printed));
  cidr.text = absl::StrCat(printed, "/", cidr.prefix_length);
  return cidr;
}

Ruleset BuildRules(const CaptureOptions& options, Family family) {
  Ruleset set;
  set.family = family;
  set.chains = OwnChains();
  set.jumps = Jumps();
  const absl::string_view loopback = family == Family::kIpv4 ? "127.0.0.1/32" : "::1/128";
  auto add = [&set](absl::string_view chain, absl::string_view spec) {
    set.rules.push_back(absl::StrCat("-A ", chain, " ", spec));
  };

  // Inbound: exclusions first, so they win over any inclusion.
  std::vector<uint16_t> excluded_inbound(std::begin(kAlwaysExcludedInboundPorts),
                                         std::end(kAlwaysExcludedInboundPorts));
  excluded_inbound.insert(excluded_inbound.end(), options.exclude_inbound_ports.begin(),
                          options.exclude_inbound_ports.end());
  excluded_inbound = Unique(excluded_inbound);
  for (uint16_t port : excluded_inbound) {
    add(kInboundChain, absl::StrCat("-p tcp -m tcp --dport ", port, " -j RETURN"));
  }
  if (options.include_inbound_ports.all) {
    add(kInboundChain, absl::StrCat("-p tcp -j ", kInboundRedirectChain));
  } else {
    for (uint16_t port : Unique(options.include_inbound_ports.items)) {
      if (std::find(excluded_inbound.begin(), excluded_inbound.end(), port) !=
          excluded_inbound.end()) {
        continue;  // returned above; a rule here could never match
      }
      add(kInboundChain,
          absl::StrCat("-p tcp -m tcp --dport ", port, " -j ", kInboundRedirectChain));
    }
  }
  add(kInboundRedirectChain, absl::StrCat("-p tcp -j REDIRECT --to-ports ", options.inbound_port));

  // Outbound. Order matters: the proxy's own connections to the pod's address over loopback
  // first (they go inbound), then everything else on loopback, then the rest of the proxy's
  // traffic, then the exclusions, then what is captured.
  const std::string uid = absl::StrCat("--uid-owner ", options.proxy_uid);
  const std::string gid = absl::StrCat("--gid-owner ", options.proxy_gid);
  for (const std::string& owner : {uid, gid}) {
    add(kOutputChain,
        absl::StrCat("! -d ", loopback, " -o lo -m owner ", owner, " -j ", kInboundChain));
  }
  add(kOutputChain, "-o lo -j RETURN");
  for (const std::string& owner : {uid, gid}) {
    add(kOutputChain, absl::StrCat("-m owner ", owner, " -j RETURN"));
  }
  const std::vector<Cidr> excluded_cidrs = OfFamily(options.exclude_outbound_cidrs, family);
  for (const Cidr& cidr : excluded_cidrs) {
    add(kOutputChain, absl::StrCat(Destination(cidr), "-j RETURN"));
  }
  for (uint16_t port : Unique(options.exclude_outbound_ports)) {
    add(kOutputChain, absl::StrCat("-p tcp -m tcp --dport ", port, " -j RETURN"));
  }
  if (options.include_outbound_cidrs.all) {
    add(kOutputChain, absl::StrCat("-j ", kOutboundRedirectChain));
  } else {
    for (const Cidr& cidr : OfFamily(options.include_outbound_cidrs.items, family)) {
      if (std::find(excluded_cidrs.begin(), excluded_cidrs.end(), cidr) != excluded_cidrs.end()) {
        continue;  // returned above
      }
      add(kOutputChain, absl::StrCat(Destination(cidr), "-j ", kOutboundRedirectChain));
    }
  }
  add(kOutboundRedirectChain,
      absl::StrCat("-p tcp -j REDIRECT --to-ports ", options.outbound_port));

  return set;
}

bool NatTable::HasChain(absl::string_view chain) const {
  return std::find(chains.begin(), chains.end(), chain) != chains.end();
}

bool NatTable::HasRule(absl::string_view rule) const {
  return std::find(rules.begin(), rules.end(), rule) != rules.end();
}

std::vector<std::string> NatTable::RulesOf(absl::string_view chain) const {
  std::vector<std::string> out;
  for (const std::string& rule : rules) {
    if (ChainOf(rule) == chain) out.push_back(rule);
  }
  return out;
}

absl::StatusOr<NatTable> ParseNatTable(absl::string_view save_output) {
  NatTable table;
  bool in_nat = false;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(save_output, '\n')) {
    ++line_number;
    line = absl::StripTrailingAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    if (line[0] == '*') {
      in_nat = line == "*nat";
      continue;
    }
    if (!in_nat) continue;
    if (line == "COMMIT") {
      in_nat = false;
    } else if (line[0] == ':') {
      table.chains.emplace_back(line.substr(1, line.find(' ') - 1));
    } else if (absl::StartsWith(line, "-A ")) {
      table.rules.emplace_back(line);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "line ", line_number, " of the iptables-save output is not a chain or a rule: ", line));
    }
  }
  return table;
}

std::string ApplyText(const Ruleset& ruleset, const NatTable* current) {
  std::string out = "*nat\n";
  for (const std::string& chain : ruleset.chains) absl::StrAppend(&out, ":", chain, " - [0:0]\n");
  for (const std::string& rule : ruleset.rules) absl::StrAppend(&out, rule, "\n");
  for (const std::string& jump : ruleset.jumps) {
    if (current == nullptr || !current->HasRule(jump)) absl::StrAppend(&out, jump, "\n");
  }
  absl::StrAppend(&out, "COMMIT\n");
  return out;
}

std::string CleanupText(const NatTable* current) {
  std::string body;
  for (const std::string& jump : Jumps()) {
    // "-A OUTPUT ..." → "-D OUTPUT ...", once per copy.
    const size_t copies =
        current == nullptr ? 1 : std::count(current->rules.begin(), current->rules.end(), jump);
    for (size_t i = 0; i < copies; ++i) absl::StrAppend(&body, "-D", jump.substr(2), "\n");
  }
  // Flush every chain before deleting any: MESHLET_OUTPUT refers to MESHLET_INBOUND.
  std::vector<std::string> present;
  for (const std::string& chain : OwnChains()) {
    if (current == nullptr || current->HasChain(chain)) present.push_back(chain);
  }
  for (const std::string& chain : present) absl::StrAppend(&body, "-F ", chain, "\n");
  for (const std::string& chain : present) absl::StrAppend(&body, "-X ", chain, "\n");
  if (body.empty()) return "";
  return absl::StrCat("*nat\n", body, "COMMIT\n");
}

absl::Status CheckApplied(const Ruleset& ruleset, const NatTable& after,
                          std::vector<std::string>* reworded) {
  std::vector<std::string> problems;
  for (const std::string& chain : ruleset.chains) {
    std::vector<std::string> wanted;
    for (const std::string& rule : ruleset.rules) {
      if (ChainOf(rule) == chain) wanted.push_back(rule);
    }
    if (!after.HasChain(chain)) {
      problems.push_back(absl::StrCat("chain ", chain, " is missing"));
      continue;
    }
    const std::vector<std::string> found = after.RulesOf(chain);
    if (found.size() != wanted.size()) {
      problems.push_back(absl::StrCat("chain ", chain, " has ", found.size(), " rules instead of ",
                                      wanted.size()));
      continue;
    }
    for (size_t i = 0; i < found.size(); ++i) {
      if (found[i] != wanted[i] && reworded != nullptr) {
        reworded->push_back(absl::StrCat(wanted[i], "  (reads back as: ", found[i], ")"));
      }
    }
  }
  for (const std::string& jump : ruleset.jumps) {
    if (!after.HasRule(jump))
      problems.push_back(absl::StrCat("the jump \"", jump, "\" is missing"));
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(
      "the ", FamilyName(ruleset.family),
      " nat table does not hold the rules just applied: ", absl::StrJoin(problems, "; ")));
}

bool HasGlobalIpv6Address(absl::string_view if_inet6) {
  // Each line: address, interface index, prefix length, scope, flags, interface name (hex
  // fields). Scope 00 is global (unique local addresses, fd00::/8, included).
  for (absl::string_view line : absl::StrSplit(if_inet6, '\n', absl::SkipWhitespace())) {
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.size() < 6) continue;
    if (fields[3] == "00" && fields[5] != "lo") return true;
  }
  return false;
}

}  // namespace meshlet::sidecar::capture

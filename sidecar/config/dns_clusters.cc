#include "sidecar/config/dns_clusters.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/base/logging.h"
#include "common/net/address.h"
#include "common/stats/must_stat.h"

namespace meshlet::sidecar::config {

namespace {

Duration Or(bool has, const google::protobuf::Duration& d, Duration fallback) {
  if (!has) return fallback;
  return std::chrono::seconds(d.seconds()) + std::chrono::nanoseconds(d.nanos());
}

}  // namespace

struct DnsClusters::Target {
  Target(event::Loop& loop, DnsClusters* owner)
      : timer(loop, [this, owner] { owner->Resolve(*this); }) {}
  std::string cluster;
  std::string hostname;
  uint32_t port = 0;
  Duration min_refresh{}, max_refresh{}, failure_refresh{};
  std::unique_ptr<net::DnsLookup> lookup;
  event::Timer timer;
  std::vector<std::string> addresses;                            // "ip:port", as last resolved
  ResourceList<xds::ClusterLoadAssignment>::Pointer assignment;  // null: none yet
  Counter success, no_such_name, failure;
};

DnsClusters::DnsClusters(event::Loop& loop, StatsShard& stats, net::DnsLookupOptions lookup,
                         absl::AnyInvocable<void()> changed)
    : loop_(loop), stats_(stats), lookup_(std::move(lookup)), changed_(std::move(changed)) {}

DnsClusters::~DnsClusters() = default;

bool DnsClusters::Any(const ResourceList<xds::Cluster>& clusters) {
  for (size_t i = 0; i < clusters.size(); ++i) {
    if (clusters.shared(i)->facts().dns) return true;
  }
  return false;
}

void DnsClusters::Follow(const ResourceList<xds::Cluster>& clusters) {
  std::map<std::string, std::unique_ptr<Target>> next;
  for (size_t i = 0; i < clusters.size(); ++i) {
    if (!clusters.shared(i)->facts().dns) continue;
    std::shared_ptr<const xds::Cluster> cluster = clusters.Parse(i);
    const xds::DnsResolution& dns = cluster->dns();
    auto old = targets_.find(cluster->name());
    std::unique_ptr<Target> target;
    if (old != targets_.end() && old->second->hostname == dns.hostname() &&
        old->second->port == dns.port()) {
      target = std::move(old->second);
    } else {
      target = std::make_unique<Target>(loop_, this);
      target->cluster = cluster->name();
      target->hostname = dns.hostname();
      target->port = dns.port();
      auto counter = [&](absl::string_view result) {
        return MustStat(stats_.RegisterCounter(
            "meshlet_dns_lookups_total",
            "Lookups of DNS clusters' names, by cluster and result (success, no_such_name, "
            "failure: no answer, a server failure, or no address).",
            {{"cluster", cluster->name()}, {"result", std::string(result)}}));
      };
      target->success = counter("success");
      target->no_such_name = counter("no_such_name");
      target->failure = counter("failure");
      target->timer.Enable(Duration::zero());  // resolved on the next turn, never from here
    }
    target->min_refresh = Or(dns.has_min_refresh(), dns.min_refresh(), kDnsMinRefresh);
    target->max_refresh = Or(dns.has_max_refresh(), dns.max_refresh(), kDnsMaxRefresh);
    target->failure_refresh =
        Or(dns.has_failure_refresh(), dns.failure_refresh(), kDnsFailureRefresh);
    next[cluster->name()] = std::move(target);
  }
  // What is left in targets_ is gone: its timer and lookup go with it.
  targets_.swap(next);
}

void DnsClusters::Resolve(Target& target) {
  Target* raw = &target;
  target.lookup = net::DnsLookup::Start(
      loop_, target.hostname, lookup_,
      [this, raw](absl::StatusOr<net::DnsAnswer> answer) { OnAnswer(*raw, std::move(answer)); });
}

void DnsClusters::OnAnswer(Target& target, absl::StatusOr<net::DnsAnswer> answer) {
  // The lookup ends here; destroyed at the end of the turn, not inside its own callback.
  loop_.DeferDelete(std::move(target.lookup));
  if (!answer.ok()) {
    (answer.status().code() == absl::StatusCode::kNotFound ? target.no_such_name : target.failure)
        .Inc();
    LOG(WARN) << "DNS cluster " << target.cluster << ": " << answer.status().message()
              << (target.addresses.empty()
                      ? "; no endpoint yet"
                      : absl::StrCat("; keeping its ", target.addresses.size(), " addresses"))
              << ", again in " << absl::FormatDuration(absl::FromChrono(target.failure_refresh));
    target.timer.Enable(target.failure_refresh);
    return;
  }
  target.success.Inc();
  std::vector<std::string> addresses;
  for (const net::IpAddress& ip : answer->addresses) {
    absl::StatusOr<net::Address> address =
        net::Address::FromIp(ip.ToString(), static_cast<uint16_t>(target.port));
    if (address.ok()) addresses.push_back(address->ToString());
  }
  std::sort(addresses.begin(), addresses.end());
  addresses.erase(std::unique(addresses.begin(), addresses.end()), addresses.end());
  target.timer.Enable(std::clamp(answer->ttl, target.min_refresh,
                                 std::max(target.min_refresh, target.max_refresh)));
  if (addresses == target.addresses) return;
  LOG(INFO) << "DNS cluster " << target.cluster << ": " << target.hostname << " is "
            << absl::StrJoin(addresses, ", ") << " (TTL "
            << absl::FormatDuration(absl::FromChrono(answer->ttl)) << ")";
  target.addresses = std::move(addresses);
  xds::ClusterLoadAssignment assignment;
  assignment.set_cluster_name(target.cluster);
  for (const std::string& address : target.addresses) {
    assignment.add_endpoints()->set_address(address);
  }
  target.assignment =
      std::make_shared<const ResourceList<xds::ClusterLoadAssignment>::Held>(std::move(assignment));
  if (changed_) changed_();
}

void DnsClusters::AddEndpoints(ResourceSet& set) const {
  for (const auto& [name, target] : targets_) {
    if (target->assignment == nullptr) continue;
    // Where it goes in name order (the position BuildSnapshot's reuse expects of a sorted list).
    size_t low = 0, high = set.endpoints.size();
    while (low < high) {
      const size_t middle = low + (high - low) / 2;
      if (set.endpoints.name(middle) < name) {
        low = middle + 1;
      } else {
        high = middle;
      }
    }
    set.endpoints.Insert(low, target->assignment);
  }
}

const ResourceSet& DnsClusters::WithEndpoints(const ResourceSet& resources,
                                              ResourceSet& scratch) const {
  if (!Any(resources.clusters)) return resources;
  scratch = resources;
  AddEndpoints(scratch);
  return scratch;
}

std::vector<std::string> DnsClusters::Addresses(const std::string& cluster) const {
  auto it = targets_.find(cluster);
  return it == targets_.end() ? std::vector<std::string>() : it->second->addresses;
}

}  // namespace meshlet::sidecar::config

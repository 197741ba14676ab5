#include "sidecar/admin/admin_json.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/base/json.h"
#include "common/tls/certificate.h"

namespace meshlet::sidecar::admin {

using cluster::AppendHealthCheckJson;
using cluster::ClusterConfig;
using cluster::HealthCheckManager;
using cluster::Host;
using cluster::HostStats;
using cluster::SharedClusterLimits;
using cluster::SharedHostHealth;

namespace {

absl::string_view DirectionName(config::TrafficDirection direction) {
  return direction == config::TrafficDirection::kInbound ? "INBOUND" : "OUTBOUND";
}

absl::string_view ProtocolName(config::ListenerProtocol protocol) {
  switch (protocol) {
    case config::ListenerProtocol::kAuto:
      return "AUTO";
    case config::ListenerProtocol::kHttp1:
      return "HTTP1";
    case config::ListenerProtocol::kHttp2:
      return "HTTP2";
    case config::ListenerProtocol::kHttp:
      return "HTTP";
    case config::ListenerProtocol::kTcp:
      return "TCP";
  }
  return "UNKNOWN";
}

std::vector<std::string> HealthFlagNames(uint32_t flags) {
  std::vector<std::string> names;
  if (flags & Host::kFailedEds) names.push_back("eds_unhealthy");
  if (flags & Host::kDraining) names.push_back("eds_draining");
  if (flags & Host::kFailedActiveHealthCheck) names.push_back("failed_active_health_check");
  if (flags & Host::kOutlierEjected) names.push_back("outlier_ejected");
  if (flags & Host::kOverloadEjected) names.push_back("overload_ejected");
  return names;
}

}  // namespace

ClusterStatus UnbuiltClusterStatus(const ClusterConfig& config, const SharedHostHealth& health) {
  ClusterStatus status{.name = config.name};
  const absl::flat_hash_set<net::Address> unhealthy = health.Unhealthy(config.name);
  absl::flat_hash_set<net::Address> seen;
  for (const cluster::EndpointConfig& endpoint : config.endpoints) {
    if (!seen.insert(endpoint.address).second) continue;  // as HostSet keeps the first
    uint32_t flags = Host::EdsHealthFlags(endpoint.health);
    if (unhealthy.contains(endpoint.address)) flags |= Host::kFailedActiveHealthCheck;
    status.hosts.push_back(HostStatus{.address = endpoint.address.ToString(),
                                      .weight = std::max<uint32_t>(endpoint.weight, 1),
                                      .health_flags = flags,
                                      .tls = cluster::UsesTls(config, endpoint.tls),
                                      .identity = endpoint.tls.identity});
  }
  return status;
}

std::string ClustersJson(const std::vector<std::optional<std::vector<ClusterStatus>>>& workers,
                         SharedClusterLimits& limits, const HealthCheckManager* health_checks) {
  struct Merged {
    uint32_t weight = 1;
    uint32_t health_flags = 0;
    uint64_t active_requests = 0;
    bool tls = false;
    std::string identity;
    HostStats stats;
  };
  // cluster → address → merged view, in name order; host order as the first worker lists it.
  struct MergedCluster {
    int workers_built = 0;
    std::vector<std::pair<std::string, Merged>> hosts;
  };
  std::map<std::string, MergedCluster> clusters;
  int answered = 0;
  for (const std::optional<std::vector<ClusterStatus>>& status : workers) {
    if (!status) continue;
    ++answered;
    for (const ClusterStatus& cluster : *status) {
      MergedCluster& merged = clusters[cluster.name];
      merged.workers_built += cluster.built;
      auto& hosts = merged.hosts;
      for (const HostStatus& host : cluster.hosts) {
        auto it = std::find_if(hosts.begin(), hosts.end(),
                               [&](const auto& h) { return h.first == host.address; });
        if (it == hosts.end()) {
          hosts.emplace_back(
              host.address,
              Merged{.weight = host.weight, .tls = host.tls, .identity = host.identity});
          it = hosts.end() - 1;
        }
        Merged& m = it->second;
        m.health_flags |= host.health_flags;
        m.active_requests += host.active_requests;
        m.stats.rq_total += host.stats.rq_total;
        m.stats.rq_success += host.stats.rq_success;
        m.stats.rq_error += host.stats.rq_error;
        m.stats.cx_connect_fail += host.stats.cx_connect_fail;
        m.stats.outlier_ejections += host.stats.outlier_ejections;
        m.stats.overload_responses += host.stats.overload_responses;
        m.stats.overload_ejections += host.stats.overload_ejections;
      }
    }
  }
  std::string out = absl::StrCat("{\"workers\":", workers.size(),
                                 ",\"workers_answered\":", answered, ",\"clusters\":[");
  bool first_cluster = true;
  for (const auto& [name, merged] : clusters) {
    if (!first_cluster) out += ",";
    first_cluster = false;
    out += "{\"name\":";
    AppendJsonString(&out, name);
    absl::StrAppend(&out, ",\"workers_built\":", merged.workers_built, ",");
    limits.AppendJson(out, name);
    out += ",";
    AppendHealthCheckJson(out, health_checks == nullptr ? nullptr : health_checks->Find(name));
    out += ",\"hosts\":[";
    bool first_host = true;
    for (const auto& [address, m] : merged.hosts) {
      if (!first_host) out += ",";
      first_host = false;
      out += "{\"address\":";
      AppendJsonString(&out, address);
      absl::StrAppend(&out, ",\"weight\":", m.weight,
                      ",\"healthy\":", m.health_flags == 0 ? "true" : "false",
                      ",\"health_flags\":[");
      bool first_flag = true;
      for (const std::string& flag : HealthFlagNames(m.health_flags)) {
        if (!first_flag) out += ",";
        first_flag = false;
        AppendJsonString(&out, flag);
      }
      absl::StrAppend(&out, "],\"active_requests\":", m.active_requests,
                      ",\"rq_total\":", m.stats.rq_total, ",\"rq_success\":", m.stats.rq_success,
                      ",\"rq_error\":", m.stats.rq_error,
                      ",\"cx_connect_fail\":", m.stats.cx_connect_fail,
                      ",\"outlier_ejections\":", m.stats.outlier_ejections,
                      ",\"overload_responses\":", m.stats.overload_responses,
                      ",\"overload_ejections\":", m.stats.overload_ejections,
                      ",\"tls\":", m.tls ? "true" : "false", ",\"identity\":");
      AppendJsonString(&out, m.identity);
      out += "}";
    }
    out += "]}";
  }
  out += "]}";
  return out;
}

std::string ListenersJson(bool draining, const config::Snapshot* snapshot,
                          const std::vector<std::vector<ListenerStatus>>& workers) {
  // Bound addresses and accepting state by listener name, over every worker.
  std::map<std::string, std::pair<std::set<std::string>, bool>> runtime;
  for (const std::vector<ListenerStatus>& worker : workers) {
    for (const ListenerStatus& status : worker) {
      auto& [addresses, accepting] = runtime[status.name];
      addresses.insert(status.address.ToString());
      accepting = accepting || status.accepting;
    }
  }
  std::string out = absl::StrCat("{\"draining\":", draining ? "true" : "false", ",\"version\":");
  AppendJsonString(&out, snapshot == nullptr ? "" : snapshot->version);
  out += ",\"listeners\":[";
  bool first = true;
  if (snapshot != nullptr) {
    for (const config::ListenerConfig& listener : snapshot->listeners) {
      if (!first) out += ",";
      first = false;
      out += "{\"name\":";
      AppendJsonString(&out, listener.name);
      out += ",\"address\":";
      AppendJsonString(&out, listener.address.ToString());
      absl::StrAppend(&out, ",\"direction\":\"", DirectionName(listener.direction),
                      "\",\"protocol\":\"", ProtocolName(listener.protocol),
                      "\",\"route_config_name\":");
      AppendJsonString(&out, listener.route_config_name);
      out += ",\"tcp_cluster\":";
      AppendJsonString(&out, listener.tcp_cluster);
      out += ",\"bound_addresses\":[";
      auto it = runtime.find(listener.name);
      bool first_address = true;
      if (it != runtime.end()) {
        for (const std::string& address : it->second.first) {
          if (!first_address) out += ",";
          first_address = false;
          AppendJsonString(&out, address);
        }
      }
      absl::StrAppend(&out, "],\"accepting\":",
                      it != runtime.end() && it->second.second ? "true" : "false", "}");
    }
  }
  out += "]}";
  return out;
}

std::string CertsJson(
    const identity::CertificateManager* manager, absl::string_view apply_error,
    const config::Snapshot* snapshot,
    const std::function<uint64_t(absl::string_view kind, const std::string& name)>& generation) {
  const identity::WorkloadCertificate* current = manager == nullptr ? nullptr : manager->current();
  if (current == nullptr) return "{\"workload_certificate\":null}";
  auto time_json = [](std::string& out, absl::Time t) {
    if (t == absl::InfinitePast()) {
      out += "null";
      return;
    }
    AppendJsonString(&out, absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone()));
  };
  auto describe = [&](std::string& out, const tls::CertificateInfo& info) {
    out += "{\"subject\":";
    AppendJsonString(&out, info.subject);
    out += ",\"issuer\":";
    AppendJsonString(&out, info.issuer);
    out += ",\"serial\":";
    AppendJsonString(&out, info.serial_hex);
    out += ",\"not_before\":";
    time_json(out, info.not_before);
    out += ",\"not_after\":";
    time_json(out, info.not_after);
    absl::StrAppend(
        &out, ",\"seconds_to_expiry\":", absl::ToInt64Seconds(info.not_after - absl::Now()), "}");
  };
  const absl::Time now = absl::Now();
  std::string out = "{\"workload_certificate\":{\"identity\":";
  AppendJsonString(&out, current->spiffe_id);
  out += ",\"serial\":";
  AppendJsonString(&out, current->serial_hex);
  absl::Time not_before = absl::InfinitePast();
  std::string chain_json = "[";
  if (absl::StatusOr<tls::CertificateChain> chain =
          tls::ParsePemCertificates(current->certificate_chain_pem);
      chain.ok()) {
    not_before = tls::NotBefore(*chain->front());
    for (size_t i = 0; i < chain->size(); ++i) {
      if (i > 0) chain_json += ",";
      describe(chain_json, tls::DescribeCertificate(*(*chain)[i]));
    }
  }
  chain_json += "]";
  out += ",\"not_before\":";
  time_json(out, not_before);
  out += ",\"not_after\":";
  time_json(out, current->not_after);
  absl::StrAppend(&out, ",\"seconds_to_expiry\":", absl::ToInt64Seconds(current->not_after - now),
                  ",\"chain\":", chain_json, ",\"trust_bundle\":[");
  if (absl::StatusOr<tls::CertificateChain> roots =
          tls::ParsePemCertificates(current->trust_bundle_pem);
      roots.ok()) {
    for (size_t i = 0; i < roots->size(); ++i) {
      if (i > 0) out += ",";
      describe(out, tls::DescribeCertificate(*(*roots)[i]));
    }
  }
  const identity::CertificateRotation& rotation = manager->rotation();
  out += "]},\"rotation\":{\"state\":";
  AppendJsonString(&out, identity::CertificateRotation::StateName(rotation.state()));
  absl::StrAppend(&out, ",\"rotations\":", manager->rotations(),
                  ",\"consecutive_failures\":", rotation.consecutive_failures(),
                  ",\"last_rotation\":");
  time_json(out, manager->last_rotation_time());
  out += ",\"last_error\":";
  AppendJsonString(&out, manager->last_error());
  out += ",\"last_error_time\":";
  time_json(out, manager->last_error().empty() ? absl::InfinitePast() : manager->last_error_time());
  out += ",\"last_apply_error\":";
  AppendJsonString(&out, apply_error);
  // Who presents it, and how many contexts each has had (one more per applied rotation).
  out += "},\"used_by\":[";
  bool first = true;
  auto user = [&](absl::string_view kind, const std::string& name) {
    if (!first) out += ",";
    first = false;
    absl::StrAppend(&out, "{\"", kind, "\":");
    AppendJsonString(&out, name);
    absl::StrAppend(&out, ",\"context_generation\":", generation(kind, name), "}");
  };
  if (snapshot != nullptr) {
    for (const config::ListenerConfig& listener : snapshot->listeners) {
      if (listener.tls.mode != config::DownstreamTlsConfig::Mode::kDisable &&
          listener.tls.workload_certificate) {
        user("listener", listener.name);
      }
    }
    for (const auto& [name, cluster] : snapshot->clusters) {
      if (cluster != nullptr && cluster->tls.enabled && cluster->tls.workload_certificate) {
        user("cluster", name);
      }
    }
  }
  out += "]}";
  return out;
}

}  // namespace meshlet::sidecar::admin

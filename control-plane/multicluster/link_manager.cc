#include "control-plane/multicluster/link_manager.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/logging.h"
#include "common/base/time_text.h"
#include "common/net/address.h"
#include "common/net/ip_prefix.h"
#include "common/stats/or_discard.h"
#include "common/tls/spiffe.h"
#include "common/tls/tls_context.h"
#include "common/tls/tls_transport.h"
#include "control-plane/multicluster/link_records.h"
#include "google/protobuf/util/json_util.h"

namespace meshlet::controlplane::multicluster {

using meshlet::multicluster::ClusterExports;
using meshlet::multicluster::ClusterLink;

namespace {

constexpr char kExportsPath[] = "/api/v1/multicluster/exports";

}  // namespace

struct LinkManager::Link {
  ClusterLink spec;
  std::string spec_bytes;  // to tell a changed link from the same one
  std::shared_ptr<const tls::TlsContextProvider> tls;
  net::HostPort server;
  std::string config_error;  // why the link cannot be read at all (bad server, CA or identity)
  std::unique_ptr<event::Timer> timer;
  std::unique_ptr<net::HostLookup> lookup;
  std::unique_ptr<http::HttpFetch> fetch;
  std::optional<ClusterExports> last;  // the last exports read
  std::string state = "pending";
  std::optional<absl::Time> last_sync;
  std::string last_error;
  uint64_t reads = 0;
  uint64_t failures = 0;
  Counter ok;
  Counter failed;
  Gauge up;
};

absl::StatusOr<ClusterExports> ParseExports(absl::string_view json, absl::string_view cluster) {
  ClusterExports exports;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  if (auto status = google::protobuf::util::JsonStringToMessage(
          google::protobuf::StringPiece(json.data(), json.size()), &exports, options);
      !status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the answer is not ClusterExports JSON: ", status.ToString()));
  }
  if (exports.cluster() != cluster) {
    return absl::InvalidArgumentError(absl::StrCat("the answer is cluster \"", exports.cluster(),
                                                   "\"'s, not \"", cluster, "\"'s"));
  }
  for (int i = 0; i < exports.gateways_size(); ++i) {
    const auto& g = exports.gateways(i);
    if (!net::IpAddress::Parse(g.address()).ok() || g.port() == 0 || g.port() > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("gateways[", i, "]: \"", g.address(),
                                                     "\" port ", g.port(),
                                                     " is not an IP address and port"));
    }
  }
  for (int i = 0; i < exports.services_size(); ++i) {
    const auto& s = exports.services(i);
    if (s.namespace_().empty() || s.name().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("services[", i, "]: needs namespace and name"));
    }
    for (const std::string& id : s.identities()) {
      if (!tls::SpiffeId::Parse(id).ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("services[", i, "]: identity \"", id, "\" is not a SPIFFE id"));
      }
    }
  }
  return exports;
}

void AddRemoteEndpoints(const ClusterExports& exports, bool stale, registry::RemoteServices& out) {
  for (const auto& s : exports.services()) {
    if (s.members() == 0) continue;
    auto& endpoints = out.services[{s.namespace_(), s.name()}];
    for (const auto& g : exports.gateways()) {
      auto e = std::make_shared<registry::RemoteEndpoint>();
      e->cluster = exports.cluster();
      e->host = g.address();
      e->port = g.port();
      e->locality.set_region(g.region());
      e->locality.set_zone(g.zone());
      e->locality.set_cluster(exports.cluster());
      e->identities.assign(s.identities().begin(), s.identities().end());
      std::sort(e->identities.begin(), e->identities.end());
      e->members = s.members();
      e->stale = stale;
      endpoints.push_back(std::move(e));
    }
    std::sort(endpoints.begin(), endpoints.end(), [](const auto& a, const auto& b) {
      return std::tie(a->cluster, a->host, a->port) < std::tie(b->cluster, b->host, b->port);
    });
  }
}

LinkManager::LinkManager(event::Loop& loop, const Clock& clock, registry::Registry& registry,
                         StatsRegistry& stats, LinkManagerOptions options)
    : loop_(loop),
      clock_(clock),
      registry_(registry),
      stats_(stats),
      options_(std::move(options)) {}

LinkManager::~LinkManager() = default;

void LinkManager::SetLinks(std::vector<ClusterLink> links) {
  std::map<std::string, std::unique_ptr<Link>> next;
  for (ClusterLink& spec : links) {
    const std::string name = spec.cluster();
    std::string bytes = spec.SerializeAsString();
    auto it = links_.find(name);
    if (it != links_.end() && it->second->spec_bytes == bytes) {
      next[name] = std::move(it->second);
      continue;
    }
    auto link = std::make_unique<Link>();
    link->spec = std::move(spec);
    link->spec_bytes = std::move(bytes);
    auto counter = [&](const char* result) {
      return OrDiscard(stats_.shared_shard().RegisterCounter(
                           "meshlet_cp_multicluster_reads_total",
                           "Reads of a linked cluster's exports by result: ok, or failed (the "
                           "link's last endpoints stay, marked stale).",
                           {{"cluster", name}, {"result", result}}),
                       "meshlet_cp_multicluster_reads_total");
    };
    link->ok = counter("ok");
    link->failed = counter("failed");
    link->up = OrDiscard(
        stats_.shared_shard().RegisterGauge(
            "meshlet_cp_multicluster_link_up",
            "1 while a linked cluster's last read succeeded, else 0.", {{"cluster", name}}),
        "meshlet_cp_multicluster_link_up");
    link->up.Set(0);
    if (it != links_.end() && it->second->last.has_value()) {
      // The same cluster with other credentials: its endpoints stay until the next read.
      link->last = std::move(it->second->last);
      link->last_sync = it->second->last_sync;
    }
    // The first of the API's addresses (replicas share what they serve).
    const std::vector<std::string> servers = absl::StrSplit(link->spec.server(), ',');
    absl::StatusOr<net::HostPort> server = net::SplitHostPort(servers.front());
    tls::TlsContextConfig config;
    config.trust_bundle_pem = link->spec.ca_pem();
    config.alpn_protocols = {"http/1.1"};
    absl::StatusOr<tls::SpiffeIdMatcher> identity =
        tls::SpiffeIdMatcher::FromPatterns({link->spec.server_identity()});
    if (!server.ok()) {
      link->config_error = absl::StrCat("server: ", server.status().message());
    } else if (!identity.ok()) {
      link->config_error = absl::StrCat("server identity: ", identity.status().message());
    } else {
      link->server = *server;
      config.peer_identity = *std::move(identity);
      absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
          tls::TlsContext::CreateClient(config);
      if (!context.ok()) {
        link->config_error = absl::StrCat("CA certificates: ", context.status().message());
      } else {
        link->tls = std::make_shared<tls::TlsContextProvider>(*std::move(context));
      }
    }
    Link* raw = link.get();
    link->timer = std::make_unique<event::Timer>(loop_, [this, raw] { Read(*raw); });
    link->timer->Enable(Duration::zero());
    next[name] = std::move(link);
  }
  links_ = std::move(next);
  Publish();
}

std::vector<ClusterLink> LinkManager::SpecsBut(const std::string& cluster) const {
  std::vector<ClusterLink> links;
  for (const auto& [name, link] : links_) {
    if (name != cluster) links.push_back(link->spec);
  }
  return links;
}

void LinkManager::PutLink(ClusterLink link) {
  std::vector<ClusterLink> links = SpecsBut(link.cluster());
  links.push_back(std::move(link));
  SetLinks(std::move(links));
}

void LinkManager::RemoveLink(const std::string& cluster) { SetLinks(SpecsBut(cluster)); }

void LinkManager::Read(Link& link) {
  link.timer->Enable(options_.poll_interval);
  if (link.lookup != nullptr || link.fetch != nullptr) return;  // the last read is still going
  if (!link.config_error.empty()) {
    Failed(link, "stale", link.config_error);
    return;
  }
  Link* raw = &link;
  link.lookup =
      net::HostLookup::Start(loop_, link.server.host, link.server.port,
                             [this, raw](absl::StatusOr<std::vector<net::Address>> addresses) {
                               raw->lookup.reset();
                               if (!addresses.ok()) {
                                 Failed(*raw, "stale", std::string(addresses.status().message()));
                                 return;
                               }
                               Fetch(*raw, *std::move(addresses));
                             });
}

void LinkManager::Fetch(Link& link, std::vector<net::Address> addresses) {
  const bool v6 = link.server.host.find(':') != std::string::npos;
  http::ClientRequest request{.method = "GET",
                              .path = kExportsPath,
                              .authority = absl::StrCat(v6 ? "[" : "", link.server.host,
                                                        v6 ? "]" : "", ":", link.server.port)};
  request.headers.Add("accept", "application/json");
  request.headers.Add("authorization", absl::StrCat("Bearer ", link.spec.token()));
  request.headers.Add("user-agent", "meshlet-control-plane");
  http::ClientOptions options{.timeout = options_.timeout,
                              .max_response_bytes = options_.max_answer_bytes,
                              .transport_factory = tls::TlsTransport::Factory(link.tls)};
  Link* raw = &link;
  link.fetch = http::HttpFetch::Start(
      loop_, std::move(addresses), std::move(request), std::move(options),
      [this, raw](http::ClientResult result) { Finish(*raw, std::move(result)); });
}

void LinkManager::Finish(Link& link, http::ClientResult result) {
  // Destroyed on a later turn: this runs inside its callback.
  loop_.DeferDelete(std::move(link.fetch));
  if (!result.ok()) {
    Failed(link, "stale", absl::StrCat(http::ClientErrorName(result.error), ": ", result.detail));
    return;
  }
  if (result.status == 401 || result.status == 403) {
    Failed(link, "unauthorized",
           absl::StrCat("the linked cluster answered ", result.status, ": ", result.body));
    return;
  }
  if (result.status != 200) {
    Failed(link, "stale", absl::StrCat("the linked cluster answered ", result.status));
    return;
  }
  absl::StatusOr<ClusterExports> exports = ParseExports(result.body, link.spec.cluster());
  if (!exports.ok()) {
    Failed(link, "stale", std::string(exports.status().message()));
    return;
  }
  ++link.reads;
  link.ok.Inc();
  link.up.Set(1);
  const bool recovered = link.state != "up" && link.state != "pending";
  if (recovered) LOG(INFO) << "multicluster link " << link.spec.cluster() << " is up again";
  link.state = "up";
  link.last_error.clear();
  link.last_sync = clock_.WallNow();
  link.last = *std::move(exports);
  Publish();
}

void LinkManager::Failed(Link& link, absl::string_view state, std::string error) {
  ++link.failures;
  link.failed.Inc();
  link.up.Set(0);
  if (link.state != state || link.last_error != error) {
    LOG(WARN) << "multicluster link " << link.spec.cluster() << " (" << link.spec.server()
              << "): " << error
              << (link.last.has_value() ? "; its last endpoints are kept, marked stale" : "");
  }
  const bool changed = link.state != state;
  link.state = std::string(state);
  link.last_error = std::move(error);
  if (changed) Publish();
}

void LinkManager::Publish() {
  auto remote = std::make_shared<registry::RemoteServices>();
  for (const auto& [name, link] : links_) {
    if (link->last.has_value()) AddRemoteEndpoints(*link->last, link->state != "up", *remote);
  }
  registry_.SetRemoteServices(std::move(remote));
}

std::string LinkManager::StatusJson() const {
  meshlet::multicluster::LinkList list;
  list.set_kind("ClusterLinkList");
  list.set_cluster(options_.cluster);
  const absl::Time now = clock_.WallNow();
  for (const auto& [name, link] : links_) {
    meshlet::multicluster::LinkStatus* s = list.add_items();
    s->set_cluster(name);
    s->set_server(link->spec.server());
    s->set_state(link->state);
    if (link->last_sync.has_value()) {
      s->set_last_sync(Rfc3339Text(*link->last_sync));
      s->set_lag_seconds(absl::ToDoubleSeconds(now - *link->last_sync));
    }
    s->set_last_error(link->last_error);
    s->set_reads(link->reads);
    s->set_failures(link->failures);
    if (link->last.has_value()) {
      uint32_t members = 0;
      for (const auto& service : link->last->services()) {
        s->add_services(absl::StrCat(service.namespace_(), "/", service.name()));
        members += service.members();
      }
      s->set_members(members);
      *s->mutable_gateways() = link->last->gateways();
      s->set_trust_domain(link->last->trust_domain());
    }
  }
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(list, &json, options);
  return json;
}

}  // namespace meshlet::controlplane::multicluster

// The snapshot's route tables: each RouteConfiguration translated (translate_routes.cc) and
// joined by the ServiceRoutes that name it, a table derived from the one it replaces where it
// can be (ADR 0086's amendments), with the same result and messages as a build from nothing.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "sidecar/config/translate_internal.h"

namespace meshlet::sidecar::config::translate_internal {
namespace {

// Who holds a domain, destination or virtual host name of a route table being joined, for the
// message that names both holders.
struct Holder {
  const std::string* service_route = nullptr;  // null: the route configuration's own
  size_t index = 0;                            // own: its position in virtual_hosts
};

std::string HolderText(const Holder& holder, const std::string& route_config) {
  if (holder.service_route != nullptr) {
    return absl::StrCat("service_route ", Quote(*holder.service_route));
  }
  return absl::StrCat("route_config ", Quote(route_config), " ",
                      Index("virtual_hosts", static_cast<int>(holder.index)));
}

// The ServiceRoutes `joined` (in name order, entries of memo.service_routes) joining `config` (a
// route configuration's own virtual hosts), checked: a virtual host name a ServiceRoute's host
// shares with another host of the table is refused under the ServiceRoute, naming the other
// holder; with `hosts`, so is a domain or a destination. The joined hosts' names go to `names`
// (empty on entry). Returns whether nothing was refused.
//
// RouteTable::Create refuses a domain or destination two hosts share as well, indexing them
// anyway, so AddRouteTables joins without `hosts` and, only when Create fails, joins again with
// them for the messages that name the ServiceRoute: a table of many ServiceRoutes is indexed once
// per build, not three times. Duplicates among the own hosts are left to Create.
bool JoinServiceRoutes(SnapshotBuild& build,
                       const std::vector<const TranslationMemo::ServiceRoute*>& joined,
                       const route::RouteConfig& config, bool hosts,
                       TranslationMemo::JoinedNames& names) {
  // Keys view the hosts' strings, which outlive the join.
  absl::flat_hash_map<absl::string_view, Holder> domains, destinations, own_names;
  if (hosts) domains.reserve(config.virtual_hosts.size() + joined.size());
  own_names.reserve(config.virtual_hosts.size());
  for (size_t v = 0; v < config.virtual_hosts.size(); ++v) {
    const route::VirtualHostConfig& vhost = config.virtual_hosts[v];
    own_names.emplace(vhost.name, Holder{nullptr, v});
    if (!hosts) continue;
    // (TranslateVirtualHost lower-cased them.)
    for (const std::string& domain : vhost.domains) domains.emplace(domain, Holder{nullptr, v});
    for (const std::string& destination : vhost.destinations) {
      destinations.emplace(destination, Holder{nullptr, v});
    }
  }
  bool ok = true;
  for (const TranslationMemo::ServiceRoute* joining : joined) {
    const TranslationMemo::ServiceRoute& service_route = *joining;
    if (service_route.virtual_host == nullptr) continue;
    const std::string& name = service_route.source->name();
    const route::VirtualHostConfig& vhost = *service_route.virtual_host;
    // `field` of the host, its item `d` when it is a list (-1: not), is already `what` of
    // `other`; the path is spelt only for an error.
    auto refuse = [&](const std::string& key, absl::string_view field, int d,
                      absl::string_view what, const Holder& other) {
      const std::string path = absl::StrCat("virtual_host.", field);
      Errors::Scope scope(build.errors, absl::StrCat("service_route ", Quote(name)));
      scope.Add(
          d < 0 ? path : Index(path, d),
          absl::StrCat(Quote(key), " is already ", what, " of ", HolderText(other, config.name)));
      ok = false;
    };
    auto claim = [&](absl::flat_hash_map<absl::string_view, Holder>& held, const std::string& key,
                     absl::string_view field, int d, absl::string_view what) {
      auto [it, inserted] = held.emplace(key, Holder{&name, 0});
      if (!inserted) refuse(key, field, d, what, it->second);
    };
    static constexpr absl::string_view kName = "the name of a virtual host";
    ++build.memo->joined_names_indexed;
    if (auto own = own_names.find(vhost.name); own != own_names.end()) {
      refuse(vhost.name, "name", -1, kName, own->second);
    } else if (const std::string* const* other = names.Insert(vhost.name, &name)) {
      refuse(vhost.name, "name", -1, kName, Holder{*other, 0});
    }
    if (hosts) {
      for (size_t d = 0; d < vhost.domains.size(); ++d) {
        claim(domains, vhost.domains[d], "domains", static_cast<int>(d), "a domain");
      }
      for (size_t d = 0; d < vhost.destinations.size(); ++d) {
        claim(destinations, vhost.destinations[d], "destinations", static_cast<int>(d),
              "a destination");
      }
    }
  }
  return ok;
}

// JoinServiceRoutes' names (without `hosts`) for `joined` joining `config`, derived from
// `replaced`'s (the record of the table this one replaces, of the same route configuration
// resource, in `before`): a merge of the two name-ordered lists by pointer, the names of the
// ServiceRoutes gone or changed taken out, those added or changed put in. Null when it cannot be
// done that way: a name is taken (the full join then reports it as it always does, so the
// messages do not depend on the path), or `replaced` does not match `before`'s ServiceRoutes.
std::shared_ptr<TranslationMemo::JoinedNames> DeriveJoinedNames(
    SnapshotBuild& build, const TranslationMemo::RouteTable& replaced,
    const std::vector<const TranslationMemo::ServiceRoute*>& joined,
    const route::RouteConfig& config) {
  const TranslationMemo& before = *build.before;
  auto names = std::make_shared<TranslationMemo::JoinedNames>(*replaced.joined_names);
  std::vector<const TranslationMemo::ServiceRoute*> added;
  // Takes out the name of `gone`, which `replaced` joined.
  auto take_out = [&](const ResourceList<xds::ServiceRoute>::Pointer& gone) {
    const auto* held = before.service_routes.Get(gone->name());
    if (held == nullptr || (*held)->source != gone) return false;
    if ((*held)->virtual_host == nullptr) return true;
    const std::string* const* holder = names->Find((*held)->virtual_host->name);
    if (holder == nullptr || *holder != &gone->name()) return false;
    names->Erase((*held)->virtual_host->name);
    return true;
  };
  const std::vector<ResourceList<xds::ServiceRoute>::Pointer>& old = *replaced.joined;
  size_t i = 0, j = 0;
  while (i < old.size() || j < joined.size()) {
    if (i < old.size() && j < joined.size() && old[i] == joined[j]->source) {
      ++i, ++j;
      continue;
    }
    const bool gone =
        j == joined.size() || (i < old.size() && old[i]->name() <= joined[j]->source->name());
    const bool come =
        i == old.size() || (j < joined.size() && joined[j]->source->name() <= old[i]->name());
    if (gone && !take_out(old[i++])) return nullptr;
    if (come) added.push_back(joined[j++]);
  }
  if (added.empty()) return names;
  absl::flat_hash_set<absl::string_view> own_names;
  own_names.reserve(config.virtual_hosts.size());
  for (const route::VirtualHostConfig& vhost : config.virtual_hosts) own_names.insert(vhost.name);
  for (const TranslationMemo::ServiceRoute* joining : added) {
    if (joining->virtual_host == nullptr) continue;
    const std::string& name = joining->virtual_host->name;
    ++build.memo->joined_names_indexed;
    if (own_names.contains(name) || names->Insert(name, &joining->source->name()) != nullptr) {
      return nullptr;
    }
  }
  return names;
}

// The virtual hosts of the ServiceRoutes `joined`, for RouteTable::Create's `attached`.
std::vector<std::shared_ptr<const route::VirtualHostConfig>> AttachedHosts(
    const std::vector<const TranslationMemo::ServiceRoute*>& joined) {
  std::vector<std::shared_ptr<const route::VirtualHostConfig>> attached;
  attached.reserve(joined.size());
  for (const TranslationMemo::ServiceRoute* joining : joined) {
    if (joining->virtual_host != nullptr) attached.push_back(joining->virtual_host);
  }
  return attached;
}

}  // namespace

void AddRouteTables(SnapshotBuild& build, const ResourceList<xds::RouteConfiguration>& routes) {
  TranslationMemo& memo = *build.memo;
  const TranslationMemo* before = build.before;
  // A route table depends on its resource, the ServiceRoutes joining it and which clusters exist
  // (only that none it names went: NoNameGone).
  const bool cluster_names_as_before =
      before != nullptr &&
      (build.cluster_names_kept || NoNameGone(before->cluster_names, memo.cluster_names));
  static const std::vector<const TranslationMemo::ServiceRoute*> kNone;
  absl::flat_hash_map<absl::string_view, size_t> seen;
  for (size_t i = 0; i < routes.size(); ++i) {
    const xds::RouteConfiguration& route_config = routes[i];
    if (!build.Named("route_config", "routes", i, route_config.name(), seen)) continue;
    build.route_names.insert(route_config.name());
    const ResourceList<xds::RouteConfiguration>::Pointer& source = routes.shared(i);
    auto joined_entries = memo.joined.find(route_config.name());
    const std::vector<const TranslationMemo::ServiceRoute*>& joined_here =
        joined_entries == memo.joined.end() ? kNone : joined_entries->second;
    // Compared with the previous table's record in place: a reused table copies none of it.
    auto joined_as_before = [&](const TranslationMemo::RouteTable& table) {
      return std::equal(
          table.joined->begin(), table.joined->end(), joined_here.begin(), joined_here.end(),
          [](const ResourceList<xds::ServiceRoute>::Pointer& source,
             const TranslationMemo::ServiceRoute* joining) { return source == joining->source; });
    };
    if (cluster_names_as_before) {
      auto it = before->route_tables.find(route_config.name());
      if (it != before->route_tables.end() && it->second.source == source &&
          joined_as_before(it->second)) {
        memo.route_tables.emplace(source->name(), it->second);
        build.snapshot->route_tables.emplace(route_config.name(), it->second.table);
        ++memo.route_tables_reused;
        continue;
      }
    }
    Errors::Scope scope(build.errors, Label("route_config", route_config.name()));
    std::optional<route::RouteConfig> out =
        TranslateRouteConfig(scope, route_config, memo.cluster_names, *memo.source_names);
    if (!out.has_value()) continue;
    // The table it replaces lends its index, and its joined names when of the same resource:
    // only the hosts that differ are indexed.
    const TranslationMemo::RouteTable* replaced = nullptr;
    if (before != nullptr) {
      auto it = before->route_tables.find(route_config.name());
      if (it != before->route_tables.end()) replaced = &it->second;
    }
    std::shared_ptr<TranslationMemo::JoinedNames> names;
    if (replaced != nullptr && replaced->source == source) {
      names = DeriveJoinedNames(build, *replaced, joined_here, *out);
    }
    if (names == nullptr) {
      names = std::make_shared<TranslationMemo::JoinedNames>();
      if (!JoinServiceRoutes(build, joined_here, *out, /*hosts=*/false, *names)) continue;
    }
    absl::StatusOr<std::unique_ptr<route::RouteTable>> table =
        route::RouteTable::Create(*std::move(out), AttachedHosts(joined_here),
                                  replaced != nullptr ? replaced->table.get() : nullptr);
    if (!table.ok()) {
      // A domain or destination a ServiceRoute shares is refused under the ServiceRoute (the
      // configuration translated again, errors already reported); anything else as Create says.
      Errors ignored;
      Errors::Scope again_scope(ignored, "");
      std::optional<route::RouteConfig> again =
          TranslateRouteConfig(again_scope, route_config, memo.cluster_names, *memo.source_names);
      TranslationMemo::JoinedNames unused;
      if (!again.has_value() ||
          JoinServiceRoutes(build, joined_here, *again, /*hosts=*/true, unused)) {
        scope.Add("", table.status());
      }
      continue;
    }
    std::shared_ptr<const route::RouteTable> shared_table = std::move(table).value();
    auto joined = std::make_shared<std::vector<ResourceList<xds::ServiceRoute>::Pointer>>();
    joined->reserve(joined_here.size());
    for (const TranslationMemo::ServiceRoute* joining : joined_here) {
      joined->push_back(joining->source);
    }
    memo.joined_recorded += joined->size();
    memo.route_tables.emplace(
        source->name(),
        TranslationMemo::RouteTable{source, std::move(joined), shared_table, std::move(names)});
    build.snapshot->route_tables.emplace(route_config.name(), std::move(shared_table));
  }
}

}  // namespace meshlet::sidecar::config::translate_internal

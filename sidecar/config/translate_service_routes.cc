// ServiceRoutes (docs/xds.md, "Service routes"): one Service port's virtual host and capture
// destination, joining the route configuration it names. Checked and translated here, once per
// resource while it and the names it depends on stay the same; AddRouteTables
// (translate_routes.cc) appends the virtual hosts to their table and AddListeners
// (translate_listeners.cc) the destinations to the capture listeners of that table.

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "sidecar/config/translate_internal.h"

namespace meshlet::sidecar::config::translate_internal {
namespace {

// Notes in memo.config_headers the header mutations of every route configuration that has
// some: the previous build's object while equal, so that the shared hosts built under them stay
// reusable. Errors are AddRouteTables' to report.
void NoteConfigHeaders(SnapshotBuild& build, const ResourceList<xds::RouteConfiguration>& routes) {
  TranslationMemo& memo = *build.memo;
  for (const xds::RouteConfiguration& route_config : routes) {
    Errors ignored;
    Errors::Scope scope(ignored, "");
    route::HeaderMutations headers = TranslateConfigHeaders(scope, "", route_config);
    if (headers.empty()) continue;
    std::shared_ptr<const route::HeaderMutations>& slot = memo.config_headers[route_config.name()];
    if (build.before != nullptr) {
      auto it = build.before->config_headers.find(route_config.name());
      if (it != build.before->config_headers.end() && *it->second == headers) {
        slot = it->second;
        continue;
      }
    }
    slot = std::make_shared<const route::HeaderMutations>(std::move(headers));
  }
}

// The header mutations config_headers holds for `route_config_name`; null: none.
std::shared_ptr<const route::HeaderMutations> ConfigHeadersOf(
    const TranslationMemo& memo, const std::string& route_config_name) {
  auto it = memo.config_headers.find(route_config_name);
  return it == memo.config_headers.end() ? nullptr : it->second;
}

// `source` checked (but for its name) and translated; null when it has errors, added to
// `errors`. Keeps the usage of the ServiceRoute of the same name in `before`.
std::shared_ptr<const TranslationMemo::ServiceRoute> TranslateServiceRoute(
    Errors& errors, const TranslationMemo& memo, const TranslationMemo* before,
    const ResourceList<xds::ServiceRoute>::Pointer& source,
    std::shared_ptr<const route::HeaderMutations> config_headers) {
  // Parsed for the translation, not kept: the resource stays held as its bytes.
  const std::shared_ptr<const xds::ServiceRoute> parsed = source->Parse();
  const xds::ServiceRoute& in = *parsed;
  Errors::Scope scope(errors, Label("service_route", in.name()));
  const size_t count = scope.count();
  if (in.route_config_name().empty()) {
    scope.Add("route_config_name", "must not be empty");
  } else if (!memo.route_config_names.contains(in.route_config_name())) {
    scope.Add("", absl::StrCat("route_config_name ", Quote(in.route_config_name()),
                               " names no RouteConfiguration"));
  }
  if (!in.has_virtual_host() && !in.has_destination()) {
    scope.Add("", "needs a virtual_host, a destination or both");
  }
  TranslationMemo::ServiceRoute out{.source = source,
                                    .route_config_name = in.route_config_name(),
                                    .config_headers = std::move(config_headers)};
  // A changed ServiceRoute keeps its use: the one it replaces had the same name.
  if (before != nullptr) {
    if (const auto* held = before->service_routes.Get(in.name())) out.usage = (*held)->usage;
  }
  if (out.usage == nullptr) out.usage = std::make_shared<route::UsageCell>();
  if (in.has_virtual_host()) {
    route::VirtualHostConfig vhost = TranslateVirtualHost(scope, "virtual_host", in.virtual_host(),
                                                          memo.cluster_names, *memo.source_names);
    vhost.usage = out.usage;
    out.virtual_host = route::ShareVirtualHost(std::move(vhost), out.config_headers);
  }
  if (in.has_destination()) {
    out.destination = TranslateListenerDestination(scope, "destination", in.destination(),
                                                   memo.route_config_names, memo.cluster_names);
    out.destination->usage = out.usage;
  }
  if (scope.count() != count) return nullptr;
  return std::make_shared<const TranslationMemo::ServiceRoute>(std::move(out));
}

// Where `name` goes in `joined` (name order).
std::vector<const TranslationMemo::ServiceRoute*>::iterator JoinedPosition(
    std::vector<const TranslationMemo::ServiceRoute*>& joined, const std::string& name) {
  return std::lower_bound(joined.begin(), joined.end(), name,
                          [](const TranslationMemo::ServiceRoute* held, const std::string& key) {
                            return held->source->name() < key;
                          });
}

// The ServiceRoutes taken from the previous build by what changed since (as
// ApplyClusterChanges takes the clusters): the list is compared with the previous one by
// pointer, only the ServiceRoutes added or changed are translated, and the memo's
// service_routes and joined are the previous ones with those names changed. False, with the
// memo's ServiceRoutes untouched, when it cannot be done that way: a name of `before` gone (a
// cluster, a route configuration, a ServiceRoute), a list out of name order, a route
// configuration's header mutations changed, or any error (the full pass then reports every
// error as it always does).
bool ApplyServiceRouteChanges(SnapshotBuild& build,
                              const ResourceList<xds::ServiceRoute>& service_routes) {
  TranslationMemo& memo = *build.memo;
  const TranslationMemo& before = *build.before;
  if (!before.service_routes_sorted) return false;
  // The entries kept hold the header mutations of their route configuration: the same objects.
  if (memo.config_headers.size() != before.config_headers.size()) return false;
  for (const auto& [name, headers] : memo.config_headers) {
    auto it = before.config_headers.find(name);
    if (it == before.config_headers.end() || it->second != headers) return false;
  }
  std::vector<size_t> changed;
  if (!ChangedSince(before.service_route_list, service_routes, changed)) return false;
  Errors errors;
  std::vector<std::shared_ptr<const TranslationMemo::ServiceRoute>> entries;
  entries.reserve(changed.size());
  for (size_t i : changed) {
    const ResourceList<xds::ServiceRoute>::Pointer& source = service_routes.shared(i);
    if (!ValidName(source->name())) return false;
    std::shared_ptr<const TranslationMemo::ServiceRoute> entry = TranslateServiceRoute(
        errors, memo, &before, source, ConfigHeadersOf(memo, source->facts().route_config_name));
    if (entry == nullptr) return false;
    entries.push_back(std::move(entry));
  }
  memo.service_routes = before.service_routes;
  memo.joined = before.joined;
  for (std::shared_ptr<const TranslationMemo::ServiceRoute>& entry : entries) {
    const std::string& name = entry->source->name();
    if (const auto* held = before.service_routes.Get(name)) {
      auto list = memo.joined.find((*held)->route_config_name);
      auto at = JoinedPosition(list->second, name);
      list->second.erase(at);
      if (list->second.empty()) memo.joined.erase(list);
    }
    std::vector<const TranslationMemo::ServiceRoute*>& list = memo.joined[entry->route_config_name];
    list.insert(JoinedPosition(list, name), entry.get());
    memo.service_routes.insert_or_assign(name, std::move(entry));
  }
  memo.service_route_list = service_routes;
  memo.service_routes_sorted = true;
  memo.service_routes_examined = changed.size();
  return true;
}

}  // namespace

void AddServiceRoutes(SnapshotBuild& build, const ResourceList<xds::ServiceRoute>& service_routes,
                      const ResourceList<xds::RouteConfiguration>& routes) {
  TranslationMemo& memo = *build.memo;
  const TranslationMemo* before = build.before;
  for (const xds::RouteConfiguration& route_config : routes) {
    memo.route_config_names.insert(route_config.name());
  }
  NoteConfigHeaders(build, routes);
  // A ServiceRoute depends on its resource, the clusters it may name and the route
  // configurations it may join: while none of those names went, the translation stands.
  const bool names_as_before =
      before != nullptr &&
      (build.cluster_names_kept || NoNameGone(before->cluster_names, memo.cluster_names)) &&
      NoNameGone(before->route_config_names, memo.route_config_names);
  if (names_as_before && ApplyServiceRouteChanges(build, service_routes)) return;
  // In name order, which is the order they join their tables and listeners in.
  std::vector<size_t> order(service_routes.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  // The xDS client lists them in name order already: then no sort.
  auto by_name = [&](size_t a, size_t b) {
    return service_routes.name(a) < service_routes.name(b);
  };
  const bool sorted = std::is_sorted(order.begin(), order.end(), by_name);
  if (!sorted) std::sort(order.begin(), order.end(), by_name);
  absl::flat_hash_map<absl::string_view, size_t> seen;
  seen.reserve(service_routes.size());
  for (size_t i : order) {
    const ResourceList<xds::ServiceRoute>::Pointer& source = service_routes.shared(i);
    if (!build.Named("service_route", "service_routes", i, source->name(), seen)) continue;
    const std::string& route_config_name = source->facts().route_config_name;
    std::shared_ptr<const route::HeaderMutations> config_headers =
        ConfigHeadersOf(memo, route_config_name);
    std::shared_ptr<const TranslationMemo::ServiceRoute> entry;
    if (names_as_before) {
      const auto* held = before->service_routes.Get(source->name());
      if (held != nullptr && (*held)->source == source &&
          (*held)->config_headers == config_headers) {
        entry = *held;  // shared, not copied
      }
    }
    if (entry == nullptr) {
      entry = TranslateServiceRoute(build.errors, memo, before, source, std::move(config_headers));
      if (entry == nullptr) continue;
    }
    memo.joined[route_config_name].push_back(entry.get());
    memo.service_routes.emplace(source->name(), std::move(entry));
  }
  memo.service_route_list = service_routes;
  // Strictly: equal names are refused above, and the build then keeps no memo.
  memo.service_routes_sorted = sorted;
  memo.service_routes_examined = service_routes.size();
}

}  // namespace meshlet::sidecar::config::translate_internal

namespace meshlet::sidecar::config {

const route::UsageCell* ServiceRouteUsage(const Snapshot& snapshot, absl::string_view name) {
  if (snapshot.translation_memo == nullptr) return nullptr;
  const auto* held = snapshot.translation_memo->service_routes.Get(name);
  return held == nullptr ? nullptr : (*held)->usage.get();
}

}  // namespace meshlet::sidecar::config

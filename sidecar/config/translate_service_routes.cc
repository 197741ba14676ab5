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
  // In name order, which is the order they join their tables and listeners in.
  std::vector<size_t> order(service_routes.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  // The xDS client lists them in name order already: then no sort.
  auto by_name = [&](size_t a, size_t b) {
    return service_routes[a].name() < service_routes[b].name();
  };
  if (!std::is_sorted(order.begin(), order.end(), by_name)) {
    std::sort(order.begin(), order.end(), by_name);
  }
  absl::flat_hash_map<absl::string_view, size_t> seen;
  seen.reserve(service_routes.size());
  memo.service_routes.reserve(service_routes.size());
  for (size_t i : order) {
    const xds::ServiceRoute& in = service_routes[i];
    if (!build.Named("service_route", "service_routes", i, in.name(), seen)) continue;
    const ResourceList<xds::ServiceRoute>::Pointer& source = service_routes.shared(i);
    auto headers_it = memo.config_headers.find(in.route_config_name());
    const std::shared_ptr<const route::HeaderMutations> config_headers =
        headers_it == memo.config_headers.end() ? nullptr : headers_it->second;
    if (names_as_before) {
      auto it = before->service_routes.find(in.name());
      if (it != before->service_routes.end() && it->second->source == source &&
          it->second->config_headers == config_headers) {
        // Shared, not copied; the key views the name in its own resource.
        memo.service_routes.emplace(source->name(), it->second);
        build.joined[in.route_config_name()].push_back(in.name());
        continue;
      }
    }
    Errors::Scope scope(build.errors, Label("service_route", in.name()));
    const size_t errors = scope.count();
    if (in.route_config_name().empty()) {
      scope.Add("route_config_name", "must not be empty");
    } else if (!memo.route_config_names.contains(in.route_config_name())) {
      scope.Add("", absl::StrCat("route_config_name ", Quote(in.route_config_name()),
                                 " names no RouteConfiguration"));
    }
    if (!in.has_virtual_host() && !in.has_destination()) {
      scope.Add("", "needs a virtual_host, a destination or both");
    }
    TranslationMemo::ServiceRoute out{.source = source, .config_headers = config_headers};
    // A changed ServiceRoute keeps its use: the one it replaces had the same name.
    if (before != nullptr) {
      auto it = before->service_routes.find(in.name());
      if (it != before->service_routes.end()) out.usage = it->second->usage;
    }
    if (out.usage == nullptr) out.usage = std::make_shared<route::UsageCell>();
    if (in.has_virtual_host()) {
      route::VirtualHostConfig vhost =
          TranslateVirtualHost(scope, "virtual_host", in.virtual_host(), memo.cluster_names);
      vhost.usage = out.usage;
      out.virtual_host = route::ShareVirtualHost(std::move(vhost), config_headers);
    }
    if (in.has_destination()) {
      out.destination = TranslateListenerDestination(scope, "destination", in.destination(),
                                                     memo.route_config_names, memo.cluster_names);
      out.destination->usage = out.usage;
    }
    if (scope.count() != errors) continue;
    memo.service_routes.emplace(
        source->name(), std::make_shared<const TranslationMemo::ServiceRoute>(std::move(out)));
    build.joined[in.route_config_name()].push_back(in.name());
  }
}

}  // namespace meshlet::sidecar::config::translate_internal

namespace meshlet::sidecar::config {

const route::UsageCell* ServiceRouteUsage(const Snapshot& snapshot, absl::string_view name) {
  if (snapshot.translation_memo == nullptr) return nullptr;
  const auto& routes = snapshot.translation_memo->service_routes;
  auto it = routes.find(name);
  return it == routes.end() ? nullptr : it->second->usage.get();
}

}  // namespace meshlet::sidecar::config

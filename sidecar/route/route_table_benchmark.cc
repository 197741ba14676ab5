// RouteTable matching cost on a table of 100 virtual hosts x 10 routes (a mix of exact domains,
// suffix wildcards, prefix and exact paths, header and method matchers). Reports ns per match.
//
//   bazel run --config=opt //sidecar/route:route_table_benchmark

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "common/http/header_map.h"
#include "sidecar/route/route_table.h"

namespace meshlet::sidecar::route {
namespace {

constexpr int kVirtualHosts = 100;
constexpr int kRoutesPerHost = 10;

std::unique_ptr<RouteTable> BuildTable() {
  RouteConfig config;
  config.name = "bench";
  for (int v = 0; v < kVirtualHosts; ++v) {
    VirtualHostConfig vhost;
    vhost.name = absl::StrCat("vh", v);
    vhost.domains = {absl::StrCat("svc", v, ".ns.svc.cluster.local"), absl::StrCat("svc", v),
                     absl::StrCat("*.svc", v, ".example.com")};
    for (int r = 0; r < kRoutesPerHost; ++r) {
      RouteEntry route;
      route.name = absl::StrCat("vh", v, "-r", r);
      if (r % 3 == 0) {
        route.match.path_kind = RouteMatch::PathKind::kExact;
        route.match.path = absl::StrCat("/api/v", r, "/status");
      } else {
        route.match.path = absl::StrCat("/api/v", r, "/");
      }
      if (r % 4 == 1) {
        route.match.headers = {
            {.name = "x-canary", .kind = HeaderMatcher::Kind::kExact, .value = "1"}};
      }
      if (r % 5 == 2) route.match.methods = {"POST", "PUT"};
      RouteAction action;
      action.cluster = absl::StrCat("cluster", v, "-", r);
      route.action = action;
      vhost.routes.push_back(std::move(route));
    }
    config.virtual_hosts.push_back(std::move(vhost));
  }
  auto table = RouteTable::Create(std::move(config));
  if (!table.ok()) std::abort();
  return std::move(table).value();
}

http::HeaderMap MakeRequest(absl::string_view host, absl::string_view path) {
  return http::HeaderMap{{":method", "GET"},
                         {":scheme", "http"},
                         {":authority", host},
                         {":path", path},
                         {"user-agent", "bench/1.0"},
                         {"accept", "*/*"},
                         {"x-request-id", "8d2c4a1e-5b7f-4c39-9d0e-3f6a2b1c0d9e"}};
}

void Run(benchmark::State& state, const http::HeaderMap& request) {
  static const RouteTable* table = BuildTable().release();
  if (table->Match(request) == nullptr) std::abort();
  for (auto _ : state) {
    benchmark::DoNotOptimize(table->Match(request));
  }
  state.SetItemsProcessed(state.iterations());
}

// Exact domain with a port; the ninth of ten routes matches, after eight path comparisons.
void BM_MatchExactDomainLateRoute(benchmark::State& state) {
  Run(state, MakeRequest("svc57.ns.svc.cluster.local:8080", "/api/v8/items?page=2"));
}
BENCHMARK(BM_MatchExactDomainLateRoute);

// No route in the host matches: every route is tried (a 404).
void BM_MatchNoRoute(benchmark::State& state) {
  static const RouteTable* table = BuildTable().release();
  http::HeaderMap request = MakeRequest("svc57", "/other");
  for (auto _ : state) {
    benchmark::DoNotOptimize(table->Match(request));
  }
}
BENCHMARK(BM_MatchNoRoute);

// Exact domain, first route.
void BM_MatchExactDomainFirstRoute(benchmark::State& state) {
  Run(state, MakeRequest("svc3", "/api/v0/status"));
}
BENCHMARK(BM_MatchExactDomainFirstRoute);

// Suffix wildcard, mixed-case host, a middle route.
void BM_MatchWildcardDomain(benchmark::State& state) {
  Run(state, MakeRequest("Pod-7.SVC88.example.com", "/api/v4/x"));
}
BENCHMARK(BM_MatchWildcardDomain);

}  // namespace
}  // namespace meshlet::sidecar::route

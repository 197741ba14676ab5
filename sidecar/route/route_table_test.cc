#include "sidecar/route/route_table.h"

#include <map>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/allocation_counter.h"
#include "common/base/fake_random.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::route {
namespace {

using ::testing::HasSubstr;

RouteEntry Prefix(std::string name, std::string prefix, std::string cluster) {
  RouteEntry route;
  route.name = std::move(name);
  route.match.path_kind = RouteMatch::PathKind::kPrefix;
  route.match.path = std::move(prefix);
  RouteAction action;
  action.cluster = std::move(cluster);
  route.action = action;
  return route;
}

RouteEntry Exact(std::string name, std::string path, std::string cluster) {
  RouteEntry route = Prefix(std::move(name), std::move(path), std::move(cluster));
  route.match.path_kind = RouteMatch::PathKind::kExact;
  return route;
}

VirtualHostConfig VHost(std::string name, std::vector<std::string> domains,
                        std::vector<RouteEntry> routes = {}) {
  VirtualHostConfig vhost;
  vhost.name = name;
  vhost.domains = std::move(domains);
  if (routes.empty()) routes.push_back(Prefix(name + "-all", "/", name));
  vhost.routes = std::move(routes);
  return vhost;
}

std::unique_ptr<RouteTable> MakeTable(std::vector<VirtualHostConfig> vhosts) {
  RouteConfig config;
  config.name = "test";
  config.virtual_hosts = std::move(vhosts);
  auto table = RouteTable::Create(std::move(config));
  EXPECT_TRUE(table.ok()) << table.status();
  return std::move(table).value();
}

http::HeaderMap Request(absl::string_view host, absl::string_view path,
                        absl::string_view method = "GET") {
  return http::HeaderMap{
      {":method", method}, {":scheme", "http"}, {":authority", host}, {":path", path}};
}

std::string MatchedName(const RouteTable& table, const http::HeaderMap& request) {
  const RouteEntry* route = table.Match(request);
  return route == nullptr ? "<none>" : route->name;
}

std::string VHostName(const RouteTable& table, absl::string_view host) {
  const VirtualHostConfig* vhost = table.MatchVirtualHost(host);
  return vhost == nullptr ? "<none>" : vhost->name;
}

TEST(RouteTableTest, DomainPrecedenceExactThenLongestSuffixThenCatchAll) {
  auto table = MakeTable({
      VHost("any", {"*"}),
      VHost("example", {"*.example.com"}),
      VHost("api-example", {"*.api.example.com"}),
      VHost("www", {"www.example.com"}),
      VHost("dash", {"*-svc.example.com"}),
  });
  EXPECT_EQ(VHostName(*table, "www.example.com"), "www");
  EXPECT_EQ(VHostName(*table, "v1.api.example.com"), "api-example");
  EXPECT_EQ(VHostName(*table, "api.example.com"), "example");
  EXPECT_EQ(VHostName(*table, "foo-svc.example.com"), "dash");
  // The wildcard stands for at least one character.
  EXPECT_EQ(VHostName(*table, "example.com"), "any");
  EXPECT_EQ(VHostName(*table, ".example.com"), "any");
  EXPECT_EQ(VHostName(*table, "other.org"), "any");
  EXPECT_EQ(VHostName(*table, ""), "any");
}

TEST(RouteTableTest, DomainsIgnoreCase) {
  auto table = MakeTable({VHost("www", {"WWW.Example.com"}), VHost("wild", {"*.Example.ORG"})});
  EXPECT_EQ(VHostName(*table, "www.EXAMPLE.com"), "www");
  EXPECT_EQ(VHostName(*table, "A.example.org"), "wild");
  EXPECT_EQ(VHostName(*table, "nothing"), "<none>");
}

TEST(RouteTableTest, PortStrippedUnlessDomainNamesOne) {
  auto table = MakeTable({
      VHost("plain", {"api.local"}),
      VHost("port", {"api.local:8080"}),
      VHost("v6", {"[::1]"}),
      VHost("wild-port", {"*.svc:9090"}),
      VHost("wild", {"*.svc"}),
  });
  EXPECT_EQ(VHostName(*table, "api.local"), "plain");
  EXPECT_EQ(VHostName(*table, "api.local:80"), "plain");
  EXPECT_EQ(VHostName(*table, "api.local:8080"), "port");
  EXPECT_EQ(VHostName(*table, "[::1]:15001"), "v6");
  EXPECT_EQ(VHostName(*table, "[::1]"), "v6");
  EXPECT_EQ(VHostName(*table, "a.svc:9090"), "wild-port");
  EXPECT_EQ(VHostName(*table, "a.svc:9091"), "wild");
}

TEST(RouteTableTest, StripPort) {
  EXPECT_EQ(StripPort("a:80"), "a");
  EXPECT_EQ(StripPort("a"), "a");
  EXPECT_EQ(StripPort("[::1]:443"), "[::1]");
  EXPECT_EQ(StripPort("[::1]"), "[::1]");
  EXPECT_EQ(StripPort("::1"), "::1");
  EXPECT_EQ(StripPort("a:"), "a:");
  EXPECT_EQ(StripPort("a:http"), "a:http");
  EXPECT_EQ(StripPort(""), "");
}

TEST(RouteTableTest, HostHeaderUsedWithoutAuthority) {
  auto table = MakeTable({VHost("www", {"www.example.com"})});
  http::HeaderMap request{{":method", "GET"}, {":path", "/"}, {"host", "www.example.com:80"}};
  EXPECT_EQ(MatchedName(*table, request), "www-all");
}

TEST(RouteTableTest, DuplicateDomainAcrossVirtualHostsFails) {
  RouteConfig config;
  config.virtual_hosts = {VHost("a", {"x.com", "y.com"}), VHost("b", {"z.com", "Y.com"})};
  auto table = RouteTable::Create(std::move(config));
  ASSERT_FALSE(table.ok());
  EXPECT_EQ(table.status().message(),
            "virtual_hosts[1].domains[1]: \"y.com\" is already a domain of virtual host \"a\" "
            "(virtual_hosts[0])");
}

TEST(RouteTableTest, DestinationsSelectTheirVirtualHost) {
  VirtualHostConfig v1 = VHost("v1", {"echo-v1"});
  v1.destinations = {"198.18.0.1:80", "[fd00::1]:80"};
  VirtualHostConfig v2 = VHost("v2", {"echo-v2", "*"});
  v2.destinations = {"198.18.0.2:80"};
  auto table = MakeTable({v1, v2});
  ASSERT_NE(table->MatchDestination("198.18.0.1:80"), nullptr);
  EXPECT_EQ(table->MatchDestination("198.18.0.1:80")->name, "v1");
  EXPECT_EQ(table->MatchDestination("[fd00::1]:80")->name, "v1");
  EXPECT_EQ(table->MatchDestination("198.18.0.2:80")->name, "v2");
  // Another port or address is not bound, even with the catch-all domain.
  EXPECT_EQ(table->MatchDestination("198.18.0.1:81"), nullptr);
  EXPECT_EQ(table->MatchDestination("198.18.0.3:80"), nullptr);
  EXPECT_EQ(MakeTable({VHost("a", {"a"})})->MatchDestination("198.18.0.1:80"), nullptr);
}

TEST(RouteTableTest, DuplicateDestinationAcrossVirtualHostsFails) {
  VirtualHostConfig a = VHost("a", {"a"});
  a.destinations = {"198.18.0.1:80"};
  VirtualHostConfig b = VHost("b", {"b"});
  b.destinations = {"198.18.0.1:80"};
  RouteConfig config;
  config.virtual_hosts = {a, b};
  auto table = RouteTable::Create(std::move(config));
  ASSERT_FALSE(table.ok());
  EXPECT_THAT(table.status().message(),
              HasSubstr("virtual_hosts[1].destinations[0]: \"198.18.0.1:80\" is already a "
                        "destination of virtual host \"a\""));
}

TEST(RouteTableTest, MalformedDomainsFail) {
  for (const auto& [domain, fragment] : std::vector<std::pair<std::string, std::string>>{
           {"", "domains[0]: must not be empty"},
           {"a.*.com", "'*' is allowed only as the first character"},
           {"a b", "invalid character"},
           {"*", ""}}) {
    RouteConfig config;
    config.virtual_hosts = {VHost("a", {domain})};
    auto table = RouteTable::Create(std::move(config));
    if (fragment.empty()) {
      EXPECT_TRUE(table.ok()) << domain;
    } else {
      ASSERT_FALSE(table.ok()) << domain;
      EXPECT_THAT(std::string(table.status().message()), HasSubstr(fragment));
    }
  }
}

TEST(RouteTableTest, RoutesMatchInOrder) {
  auto table = MakeTable({VHost("h", {"*"},
                                {Prefix("api-prefix", "/api", "a"), Exact("api-exact", "/api", "b"),
                                 Exact("health", "/healthz", "c"), Prefix("root", "/", "d")})});
  // The prefix route comes first, so it shadows the exact one for /api.
  EXPECT_EQ(MatchedName(*table, Request("h", "/api")), "api-prefix");
  EXPECT_EQ(MatchedName(*table, Request("h", "/api/v1/users")), "api-prefix");
  EXPECT_EQ(MatchedName(*table, Request("h", "/healthz")), "health");
  EXPECT_EQ(MatchedName(*table, Request("h", "/healthz?full=1")), "health");
  EXPECT_EQ(MatchedName(*table, Request("h", "/healthz/x")), "root");
  EXPECT_EQ(MatchedName(*table, Request("h", "/other")), "root");
}

TEST(RouteTableTest, ExactBeforePrefixWhenListedFirst) {
  auto table = MakeTable(
      {VHost("h", {"*"}, {Exact("api-exact", "/api", "b"), Prefix("api-prefix", "/api", "a")})});
  EXPECT_EQ(MatchedName(*table, Request("h", "/api")), "api-exact");
  EXPECT_EQ(MatchedName(*table, Request("h", "/api/")), "api-prefix");
  EXPECT_EQ(MatchedName(*table, Request("h", "/API")), "<none>");
}

TEST(RouteTableTest, CaseInsensitivePaths) {
  RouteEntry prefix = Prefix("p", "/Static/", "s");
  prefix.match.case_insensitive = true;
  RouteEntry exact = Exact("e", "/Login", "l");
  exact.match.case_insensitive = true;
  auto table = MakeTable({VHost("h", {"*"}, {prefix, exact})});
  EXPECT_EQ(MatchedName(*table, Request("h", "/static/app.js")), "p");
  EXPECT_EQ(MatchedName(*table, Request("h", "/STATIC/app.js")), "p");
  EXPECT_EQ(MatchedName(*table, Request("h", "/LOGIN")), "e");
  EXPECT_EQ(MatchedName(*table, Request("h", "/login/x")), "<none>");
}

TEST(RouteTableTest, NoPathMatchesNothing) {
  auto table = MakeTable({VHost("h", {"*"})});
  http::HeaderMap request{{":method", "CONNECT"}, {":authority", "h:443"}};
  EXPECT_EQ(MatchedName(*table, request), "<none>");
}

TEST(RouteTableTest, HeaderMatchers) {
  RouteEntry exact = Prefix("exact", "/", "a");
  exact.match.headers = {{.name = "x-version", .kind = HeaderMatcher::Kind::kExact, .value = "v2"}};
  RouteEntry prefix = Prefix("prefix", "/", "b");
  prefix.match.headers = {
      {.name = "user-agent", .kind = HeaderMatcher::Kind::kPrefix, .value = "curl/"}};
  RouteEntry present_and_inverted = Prefix("present-not-debug", "/", "c");
  present_and_inverted.match.headers = {
      {.name = "x-tenant", .kind = HeaderMatcher::Kind::kPresent, .present = true},
      {.name = "x-debug", .kind = HeaderMatcher::Kind::kExact, .value = "1", .invert = true}};
  RouteEntry absent = Prefix("absent", "/", "d");
  absent.match.headers = {
      {.name = "x-tenant", .kind = HeaderMatcher::Kind::kPresent, .present = false}};
  auto table = MakeTable({VHost("h", {"*"}, {exact, prefix, present_and_inverted, absent})});

  auto with = [](std::vector<std::pair<absl::string_view, absl::string_view>> extra) {
    http::HeaderMap request = Request("h", "/");
    for (auto& [n, v] : extra) request.Add(n, v);
    return request;
  };
  EXPECT_EQ(MatchedName(*table, with({{"X-Version", "v2"}})), "exact");
  // Any value of a repeated header may match.
  EXPECT_EQ(MatchedName(*table, with({{"x-version", "v1"}, {"x-version", "v2"}})), "exact");
  EXPECT_EQ(MatchedName(*table, with({{"x-version", "V2"}, {"x-tenant", "t"}})),
            "present-not-debug");
  EXPECT_EQ(MatchedName(*table, with({{"user-agent", "curl/8.0"}})), "prefix");
  EXPECT_EQ(MatchedName(*table, with({{"x-tenant", "t"}, {"x-debug", "0"}})), "present-not-debug");
  EXPECT_EQ(MatchedName(*table, with({{"x-tenant", "t"}, {"x-debug", "1"}})), "<none>");
  EXPECT_EQ(MatchedName(*table, with({})), "absent");
}

TEST(RouteTableTest, Methods) {
  RouteEntry writes = Prefix("writes", "/", "w");
  writes.match.methods = {"POST", "PUT"};
  auto table = MakeTable({VHost("h", {"*"}, {writes, Prefix("reads", "/", "r")})});
  EXPECT_EQ(MatchedName(*table, Request("h", "/x", "POST")), "writes");
  EXPECT_EQ(MatchedName(*table, Request("h", "/x", "PUT")), "writes");
  EXPECT_EQ(MatchedName(*table, Request("h", "/x", "GET")), "reads");
  // Methods are case-sensitive.
  EXPECT_EQ(MatchedName(*table, Request("h", "/x", "post")), "reads");
}

TEST(RouteTableTest, WeightedClustersExactProportions) {
  RouteAction action;
  action.weighted_clusters = {{"a", 1}, {"b", 3}, {"c", 6}};
  action.total_weight = 10;
  FakeRandom random;
  std::map<std::string, int> counts;
  for (int i = 0; i < 1000; ++i) random.PushDouble(i / 1000.0);
  for (int i = 0; i < 1000; ++i) ++counts[PickCluster(action, random)];
  EXPECT_EQ(counts["a"], 100);
  EXPECT_EQ(counts["b"], 300);
  EXPECT_EQ(counts["c"], 600);

  // Boundaries: [0, 1) → a, [1, 4) → b, [4, 10) → c.
  random.PushDouble(0.0999);
  EXPECT_EQ(PickCluster(action, random), "a");
  random.PushDouble(0.1);
  EXPECT_EQ(PickCluster(action, random), "b");
  random.PushDouble(0.3999);
  EXPECT_EQ(PickCluster(action, random), "b");
  random.PushDouble(0.4);
  EXPECT_EQ(PickCluster(action, random), "c");
  random.PushDouble(0.999999);
  EXPECT_EQ(PickCluster(action, random), "c");
}

TEST(RouteTableTest, ZeroWeightClusterNeverPicked) {
  RouteAction action;
  action.weighted_clusters = {{"canary", 0}, {"stable", 5}};
  action.total_weight = 5;
  FakeRandom random;
  for (int i = 0; i < 5; ++i) random.PushDouble(i / 5.0);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(PickCluster(action, random), "stable");
}

TEST(RouteTableTest, SingleClusterPick) {
  RouteAction action;
  action.cluster = "only";
  FakeRandom random;
  EXPECT_EQ(PickCluster(action, random), "only");
}

TEST(RouteTableTest, HeaderMutationOrderGeneralToSpecific) {
  RouteConfig config;
  config.headers.request_headers_to_add = {{"x-level", "config", false},
                                           {"x-trail", "config", true}};
  config.headers.request_headers_to_remove = {"x-internal"};
  config.headers.response_headers_to_add = {{"server", "meshlet", false}};
  VirtualHostConfig vhost = VHost("h", {"*"});
  vhost.extras.mut().headers.request_headers_to_add = {{"x-level", "vhost", false},
                                                       {"x-trail", "vhost", true}};
  vhost.extras.mut().headers.response_headers_to_remove = {"x-powered-by"};
  RouteEntry& route = vhost.routes[0];
  route.extras.mut().headers.request_headers_to_add = {{"x-level", "route", false},
                                                       {"x-trail", "route", true}};
  // Removal comes before addition within a level: this replaces what outer levels appended.
  route.extras.mut().headers.request_headers_to_remove = {"x-replaced"};
  route.extras.mut().headers.request_headers_to_add.push_back({"x-replaced", "route", true});
  route.extras.mut().headers.response_headers_to_add = {{"server", "route", false}};
  config.virtual_hosts = {vhost};
  auto table = RouteTable::Create(std::move(config));
  ASSERT_TRUE(table.ok());

  http::HeaderMap request = Request("h", "/");
  request.Add("x-internal", "secret");
  request.Add("x-trail", "client");
  request.Add("x-replaced", "client");
  const RouteEntry* matched = (*table)->Match(request);
  ASSERT_NE(matched, nullptr);
  ApplyRequestHeaderMutations(*matched, request);
  EXPECT_FALSE(request.Has("x-internal"));
  EXPECT_EQ(request.GetAll("x-level"), (absl::InlinedVector<absl::string_view, 4>{"route"}));
  EXPECT_EQ(request.GetAll("x-trail"),
            (absl::InlinedVector<absl::string_view, 4>{"client", "config", "vhost", "route"}));
  EXPECT_EQ(request.GetAll("x-replaced"), (absl::InlinedVector<absl::string_view, 4>{"route"}));

  http::HeaderMap response{{":status", "200"}, {"x-powered-by", "php"}, {"server", "nginx"}};
  ApplyResponseHeaderMutations(*matched, response);
  EXPECT_FALSE(response.Has("x-powered-by"));
  EXPECT_EQ(response.GetAll("server"), (absl::InlinedVector<absl::string_view, 4>{"route"}));
}

TEST(RouteTableTest, ConfigHeaderEditsApplyThroughSharedVirtualHosts) {
  HeaderMutations edits;
  edits.request_headers_to_add = {{"x-config", "mesh", false}};
  edits.request_headers_to_remove = {"x-internal"};
  edits.response_headers_to_add = {{"x-served-by", "config", false}};
  VirtualHostConfig own_host{.name = "own", .domains = {"own"}};
  own_host.routes.push_back(Prefix("own", "/", "c"));
  VirtualHostConfig host{.name = "shared", .domains = {"shared"}};
  host.routes.push_back(Prefix("r", "/", "c"));
  host.extras.mut().headers.request_headers_to_add = {{"x-config", "vhost", true}};
  std::shared_ptr<const VirtualHostConfig> shared =
      ShareVirtualHost(host, std::make_shared<const HeaderMutations>(edits));

  // Two tables (two snapshots) with the same edits: one host object, the edits applied by both.
  std::vector<std::unique_ptr<RouteTable>> tables;
  for (const char* name : {"first", "second"}) {
    RouteConfig config{.name = name, .virtual_hosts = {own_host}, .headers = edits};
    auto table = RouteTable::Create(std::move(config), {shared});
    ASSERT_TRUE(table.ok()) << table.status();
    tables.push_back(*std::move(table));
  }
  for (const std::unique_ptr<RouteTable>& table : tables) {
    EXPECT_EQ(table->virtual_hosts().back(), shared.get());
    for (const char* name : {"shared", "own"}) {
      http::HeaderMap request = Request(name, "/");
      request.Add("x-internal", "secret");
      const RouteEntry* matched = table->Match(request);
      ASSERT_NE(matched, nullptr) << name;
      ApplyRequestHeaderMutations(*matched, request);
      EXPECT_FALSE(request.Has("x-internal")) << name;
      // The host's own level (an appended value on the shared one) follows the table's.
      const absl::InlinedVector<absl::string_view, 4> expected =
          std::string(name) == "shared" ? absl::InlinedVector<absl::string_view, 4>{"mesh", "vhost"}
                                        : absl::InlinedVector<absl::string_view, 4>{"mesh"};
      EXPECT_EQ(request.GetAll("x-config"), expected) << name;
      http::HeaderMap response{{":status", "200"}};
      ApplyResponseHeaderMutations(*matched, response);
      EXPECT_EQ(response.Get("x-served-by"), "config") << name;
    }
  }
  // A table whose edits differ from those the host was built under refuses it, naming it.
  HeaderMutations other = edits;
  other.request_headers_to_add[0].value = "other";
  auto refused = RouteTable::Create(RouteConfig{.name = "third", .headers = other}, {shared});
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(),
              ::testing::HasSubstr("attached[0]: virtual host \"shared\" was built under other"));
  // A host built under none fits only a table with none.
  std::shared_ptr<const VirtualHostConfig> bare = ShareVirtualHost(host, nullptr);
  EXPECT_TRUE(RouteTable::Create(RouteConfig{.name = "plain"}, {bare}).ok());
  EXPECT_FALSE(RouteTable::Create(RouteConfig{.name = "edited", .headers = edits}, {bare}).ok());
}

TEST(RouteTableTest, AttachedHostsShareDomainChecksWithOwnHosts) {
  VirtualHostConfig own{.name = "own", .domains = {"api"}};
  VirtualHostConfig host{.name = "shared", .domains = {"api"}};
  auto table = RouteTable::Create(RouteConfig{.name = "t", .virtual_hosts = {own}},
                                  {ShareVirtualHost(host, nullptr)});
  ASSERT_FALSE(table.ok());
  EXPECT_EQ(table.status().message(),
            "attached[0].domains[0]: \"api\" is already a domain of virtual host \"own\" "
            "(virtual_hosts[0])");
  host.domains = {"API"};
  table = RouteTable::Create(RouteConfig{.name = "t"}, {ShareVirtualHost(host, nullptr)});
  ASSERT_FALSE(table.ok());
  EXPECT_EQ(table.status().message(), "attached[0].domains[0]: \"API\" is not lower-case");
}

// Attached hosts "s<i>" with domain "s<i>.ns", destination "10.0.<i/256>.<i%256>:80".
std::shared_ptr<const VirtualHostConfig> Service(int i) {
  VirtualHostConfig vhost = VHost(absl::StrCat("s", i), {absl::StrCat("s", i, ".ns")});
  vhost.destinations = {absl::StrCat("10.0.", i / 256, ".", i % 256, ":80")};
  return ShareVirtualHost(std::move(vhost), nullptr);
}

// What a table answers for every name of hosts 0..n and a few more.
std::vector<std::string> Answers(const RouteTable& table, int n) {
  std::vector<std::string> answers;
  for (int i = 0; i <= n + 2; ++i) {
    answers.push_back(VHostName(table, absl::StrCat("s", i, ".ns")));
    answers.push_back(VHostName(table, absl::StrCat("S", i, ".NS:80")));
    answers.push_back(VHostName(table, absl::StrCat("x.w", i, ".example")));
    const VirtualHostConfig* bound =
        table.MatchDestination(absl::StrCat("10.0.", i / 256, ".", i % 256, ":80"));
    answers.push_back(bound == nullptr ? "<none>" : bound->name);
  }
  answers.push_back(VHostName(table, "elsewhere"));
  return answers;
}

TEST(RouteTableTest, TableFromPreviousIndexesOnlyWhatDiffers) {
  std::vector<std::shared_ptr<const VirtualHostConfig>> hosts;
  for (int i = 0; i < 1000; ++i) hosts.push_back(Service(i));
  auto first =
      RouteTable::Create(RouteConfig{.name = "t", .virtual_hosts = {VHost("own", {"own"})}}, hosts);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*first)->hosts_indexed(), 1001u);
  const std::vector<std::string> first_answers = Answers(**first, 1000);

  // One host added in the middle, one removed, one replaced by a host with a wildcard and a
  // catch-all; the own host changes its domain.
  std::vector<std::shared_ptr<const VirtualHostConfig>> next = hosts;
  next.insert(next.begin() + 500, Service(1000));
  next.erase(next.begin() + 10);
  VirtualHostConfig wild = VHost("wild", {"*.w7.example", "*"});
  next[20] = ShareVirtualHost(std::move(wild), nullptr);
  auto derived = RouteTable::Create(
      RouteConfig{.name = "t", .virtual_hosts = {VHost("own2", {"own2"})}}, next, first->get());
  ASSERT_TRUE(derived.ok()) << derived.status();
  EXPECT_EQ((*derived)->hosts_indexed(), 3u);  // own2, s1000, wild
  auto scratch = RouteTable::Create(
      RouteConfig{.name = "t", .virtual_hosts = {VHost("own2", {"own2"})}}, next);
  ASSERT_TRUE(scratch.ok()) << scratch.status();
  EXPECT_EQ(Answers(**derived, 1000), Answers(**scratch, 1000));
  EXPECT_EQ(VHostName(**derived, "s10.ns"), "wild");  // removed: the catch-all answers
  EXPECT_EQ(VHostName(**derived, "s21.ns"), "wild");  // replaced by "wild"
  EXPECT_EQ(VHostName(**derived, "s20.ns"), "s20");
  EXPECT_EQ(VHostName(**derived, "a.w7.example"), "wild");
  EXPECT_EQ(VHostName(**derived, "s1000.ns"), "s1000");
  EXPECT_EQ(VHostName(**derived, "own"), "wild");
  EXPECT_EQ(VHostName(**derived, "own2"), "own2");
  EXPECT_EQ((*derived)->MatchDestination("10.0.0.10:80"), nullptr);
  // The previous table answers as before: what it shares was copied before being changed.
  EXPECT_EQ(Answers(**first, 1000), first_answers);
  EXPECT_EQ(VHostName(**first, "own"), "own");

  // Back again, from the derived table: the wildcard, the catch-all and the hosts go.
  auto back = RouteTable::Create(RouteConfig{.name = "t", .virtual_hosts = {VHost("own", {"own"})}},
                                 hosts, derived->get());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(Answers(**back, 1000), first_answers);
  EXPECT_EQ(VHostName(**back, "x.w7.example"), "<none>");
}

TEST(RouteTableTest, TableFromPreviousReportsErrorsAsFromScratch) {
  std::vector<std::shared_ptr<const VirtualHostConfig>> hosts = {Service(1), Service(2)};
  auto first = RouteTable::Create(RouteConfig{.name = "t"}, hosts);
  ASSERT_TRUE(first.ok()) << first.status();
  // A new host with a domain a kept one holds, and another with a destination one holds.
  VirtualHostConfig clash = VHost("clash", {"s1.ns"});
  VirtualHostConfig bound = VHost("bound", {"bound"});
  bound.destinations = {"10.0.0.2:80"};
  for (auto& next : std::vector<std::vector<std::shared_ptr<const VirtualHostConfig>>>{
           {ShareVirtualHost(clash, nullptr), hosts[0], hosts[1]},
           {hosts[0], hosts[1], ShareVirtualHost(clash, nullptr)},
           {hosts[0], ShareVirtualHost(bound, nullptr), hosts[1]},
           {hosts[0], hosts[0]}}) {
    auto derived = RouteTable::Create(RouteConfig{.name = "t"}, next, first->get());
    auto scratch = RouteTable::Create(RouteConfig{.name = "t"}, next);
    ASSERT_FALSE(scratch.ok());
    ASSERT_FALSE(derived.ok());
    EXPECT_EQ(derived.status(), scratch.status());
  }
  // An own host taking a domain an attached host holds; header mutations that differ.
  auto own = RouteTable::Create(RouteConfig{.name = "t", .virtual_hosts = {VHost("o", {"s2.ns"})}},
                                hosts, first->get());
  ASSERT_FALSE(own.ok());
  EXPECT_EQ(own.status().message(),
            "attached[1].domains[0]: \"s2.ns\" is already a domain of virtual host \"o\" "
            "(virtual_hosts[0])");
  HeaderMutations edits;
  edits.response_headers_to_add = {{"x-mesh", "1", false}};
  auto edited = RouteTable::Create(RouteConfig{.name = "t", .headers = edits}, hosts, first->get());
  ASSERT_FALSE(edited.ok());
  EXPECT_THAT(edited.status().message(), HasSubstr("other route configuration header mutations"));
}

TEST(RouteTableTest, RedirectLocation) {
  http::HeaderMap request = Request("shop.example.com", "/cart?id=7");
  EXPECT_EQ(RedirectLocation({.scheme = "https"}, request), "https://shop.example.com/cart?id=7");
  EXPECT_EQ(RedirectLocation({.host = "new.example.com"}, request),
            "http://new.example.com/cart?id=7");
  EXPECT_EQ(RedirectLocation({.path = "/basket"}, request), "http://shop.example.com/basket?id=7");
  EXPECT_EQ(RedirectLocation({.path = "/basket?x=1"}, request),
            "http://shop.example.com/basket?x=1");
  EXPECT_EQ(RedirectLocation({.port = 8443}, request), "http://shop.example.com:8443/cart?id=7");
  EXPECT_EQ(RedirectLocation({.scheme = "https", .port = 443}, request),
            "https://shop.example.com/cart?id=7");

  http::HeaderMap with_port = Request("shop.example.com:80", "/");
  // Moving to https drops http's default port; another port is kept.
  EXPECT_EQ(RedirectLocation({.scheme = "https"}, with_port), "https://shop.example.com/");
  http::HeaderMap odd_port = Request("shop.example.com:8080", "/");
  // A scheme without a port means that scheme's default port (Gateway API RequestRedirect).
  EXPECT_EQ(RedirectLocation({.scheme = "https"}, odd_port), "https://shop.example.com/");
  EXPECT_EQ(RedirectLocation({.port = 9000}, odd_port), "http://shop.example.com:9000/");
  EXPECT_EQ(RedirectLocation({.scheme = "https", .port = 8443}, odd_port),
            "https://shop.example.com:8443/");
}

TEST(RouteTableTest, RedirectPortsFollowGatewayApi) {
  http::HeaderMap plain = Request("shop.example.com", "/a");
  // Default ports are left out, others kept, for either scheme.
  EXPECT_EQ(RedirectLocation({.port = 80}, plain), "http://shop.example.com/a");
  EXPECT_EQ(RedirectLocation({.port = 443}, plain), "http://shop.example.com:443/a");
  EXPECT_EQ(RedirectLocation({.scheme = "https", .port = 80}, plain),
            "https://shop.example.com:80/a");
  EXPECT_EQ(RedirectLocation({.scheme = "http"}, plain), "http://shop.example.com/a");
  // Without a scheme or port, a new host keeps the request's (listener's) port.
  http::HeaderMap odd_port = Request("shop.example.com:8080", "/a");
  EXPECT_EQ(RedirectLocation({.host = "new.example.com"}, odd_port),
            "http://new.example.com:8080/a");
  EXPECT_EQ(RedirectLocation({.host = "new.example.com:9090"}, odd_port),
            "http://new.example.com:9090/a");
  EXPECT_EQ(RedirectLocation({.path = "/b"}, odd_port), "http://shop.example.com:8080/b");
  http::HeaderMap default_port = Request("shop.example.com:80", "/a");
  EXPECT_EQ(RedirectLocation({.path = "/b"}, default_port), "http://shop.example.com/b");
  http::HeaderMap https = Request("shop.example.com:443", "/a");
  https.Set(":scheme", "https");
  EXPECT_EQ(RedirectLocation({.host = "new.example.com"}, https), "https://new.example.com/a");
  EXPECT_EQ(RedirectLocation({.scheme = "http"}, https), "http://shop.example.com/a");
}

TEST(RouteTableTest, RedirectPrefixRewrite) {
  RouteMatch segment{.path_kind = RouteMatch::PathKind::kSegmentPrefix, .path = "/foo"};
  http::HeaderMap request = Request("shop.example.com", "/foo/bar?x=1");
  EXPECT_EQ(RedirectLocation({.prefix_rewrite = "/xyz"}, request, &segment),
            "http://shop.example.com/xyz/bar?x=1");
  EXPECT_EQ(RedirectLocation({.prefix_rewrite = "/"}, request, &segment),
            "http://shop.example.com/bar?x=1");
  EXPECT_EQ(RedirectLocation({.prefix_rewrite = "/xyz/"}, Request("h", "/foo"), &segment),
            "http://h/xyz");
  RouteMatch prefix{.path_kind = RouteMatch::PathKind::kPrefix, .path = "/foo/"};
  EXPECT_EQ(RedirectLocation({.scheme = "https", .prefix_rewrite = "/v2/"}, request, &prefix),
            "https://shop.example.com/v2/bar?x=1");
}

Regex Compile(absl::string_view pattern, bool case_sensitive = true) {
  re2::RE2::Options options;
  options.set_case_sensitive(case_sensitive);
  auto regex =
      std::make_shared<const re2::RE2>(re2::StringPiece(pattern.data(), pattern.size()), options);
  EXPECT_TRUE(regex->ok()) << regex->error();
  return regex;
}

TEST(RouteTableTest, RegexPathMatchesTheWholePathWithoutQuery) {
  RouteEntry regex = Prefix("re", "", "a");
  regex.match.path_kind = RouteMatch::PathKind::kRegex;
  regex.match.regex = Compile("/api/v[0-9]+/users");
  auto table = MakeTable({VHost("h", {"*"}, {regex, Prefix("rest", "/", "b")})});
  EXPECT_EQ(MatchedName(*table, Request("h", "/api/v2/users")), "re");
  EXPECT_EQ(MatchedName(*table, Request("h", "/api/v10/users?page=2")), "re");
  EXPECT_EQ(MatchedName(*table, Request("h", "/api/v2/users/7")), "rest");  // not a full match
  EXPECT_EQ(MatchedName(*table, Request("h", "/x/api/v2/users")), "rest");
  EXPECT_EQ(MatchedName(*table, Request("h", "/API/v2/users")), "rest");

  RouteEntry folded = regex;
  folded.match.regex = Compile("/api/v[0-9]+/users", /*case_sensitive=*/false);
  auto ci = MakeTable({VHost("h", {"*"}, {folded})});
  EXPECT_EQ(MatchedName(*ci, Request("h", "/API/V2/Users")), "re");
}

TEST(RouteTableTest, SegmentPrefixMatchesWholeSegments) {
  RouteEntry v2 = Prefix("v2", "/v2", "a");
  v2.match.path_kind = RouteMatch::PathKind::kSegmentPrefix;
  auto table = MakeTable({VHost("h", {"*"}, {v2, Prefix("rest", "/", "b")})});
  EXPECT_EQ(MatchedName(*table, Request("h", "/v2")), "v2");
  EXPECT_EQ(MatchedName(*table, Request("h", "/v2/")), "v2");
  EXPECT_EQ(MatchedName(*table, Request("h", "/v2/x/y")), "v2");
  EXPECT_EQ(MatchedName(*table, Request("h", "/v2?q=1")), "v2");
  EXPECT_EQ(MatchedName(*table, Request("h", "/v2example")), "rest");
  EXPECT_EQ(MatchedName(*table, Request("h", "/v")), "rest");
  EXPECT_EQ(MatchedName(*table, Request("h", "/V2/x")), "rest");

  RouteEntry root = Prefix("root", "", "a");  // the value "/", stored without its '/'
  root.match.path_kind = RouteMatch::PathKind::kSegmentPrefix;
  auto all = MakeTable({VHost("h", {"*"}, {root})});
  EXPECT_EQ(MatchedName(*all, Request("h", "/")), "root");
  EXPECT_EQ(MatchedName(*all, Request("h", "/anything/at/all")), "root");
  EXPECT_EQ(MatchedName(*all, Request("h", "*", "OPTIONS")), "root");

  RouteEntry folded = v2;
  folded.match.case_insensitive = true;
  auto ci = MakeTable({VHost("h", {"*"}, {folded})});
  EXPECT_EQ(MatchedName(*ci, Request("h", "/V2/x")), "v2");
  EXPECT_EQ(MatchedName(*ci, Request("h", "/V2x")), "<none>");
}

TEST(RouteTableTest, QueryParameterMatchers) {
  RouteEntry exact = Prefix("exact", "/", "a");
  exact.match.query_parameters = {
      {.name = "env", .kind = QueryParameterMatcher::Kind::kExact, .value = "canary blue"}};
  RouteEntry regex = Prefix("regex", "/", "a");
  regex.match.query_parameters = {
      {.name = "id", .kind = QueryParameterMatcher::Kind::kRegex, .regex = Compile("[0-9]{3}")}};
  RouteEntry both = Prefix("both", "/", "a");
  both.match.query_parameters = {{.name = "debug"}, {.name = "Trace"}};
  auto table = MakeTable({VHost("h", {"*"}, {exact, regex, both, Prefix("rest", "/", "b")})});
  // Values are percent-decoded before they are compared; names compare case-sensitively.
  EXPECT_EQ(MatchedName(*table, Request("h", "/p?env=canary%20blue")), "exact");
  EXPECT_EQ(MatchedName(*table, Request("h", "/p?x=1&env=canary%20blue&y")), "exact");
  EXPECT_EQ(MatchedName(*table, Request("h", "/p?e%6Ev=canary%20blue")), "exact");
  EXPECT_EQ(MatchedName(*table, Request("h", "/p?env=canary+blue")), "rest");
  EXPECT_EQ(MatchedName(*table, Request("h", "/p?ENV=canary%20blue")), "rest");
  EXPECT_EQ(MatchedName(*table, Request("h", "/p?env=canary%20blue%")), "rest");
  // With a name repeated, its first value is the one compared.
  EXPECT_EQ(MatchedName(*table, Request("h", "/p?id=123&id=x")), "regex");
  EXPECT_EQ(MatchedName(*table, Request("h", "/p?id=x&id=123")), "rest");
  EXPECT_EQ(MatchedName(*table, Request("h", "/p?id=1234")), "rest");  // whole value
  EXPECT_EQ(MatchedName(*table, Request("h", "/p?id=%31%32%33")), "regex");
  // Present, with or without a value; every matcher must match.
  EXPECT_EQ(MatchedName(*table, Request("h", "/p?debug&Trace=0")), "both");
  EXPECT_EQ(MatchedName(*table, Request("h", "/p?debug=1&trace=0")), "rest");
  EXPECT_EQ(MatchedName(*table, Request("h", "/p?debug=1")), "rest");
  // No query, an empty one, a fragment.
  EXPECT_EQ(MatchedName(*table, Request("h", "/p")), "rest");
  EXPECT_EQ(MatchedName(*table, Request("h", "/p?")), "rest");
  EXPECT_EQ(MatchedName(*table, Request("h", "/p?&&debug&Trace#x")), "both");
  EXPECT_EQ(MatchedName(*table, Request("h", "/p?debug#&Trace")), "rest");
}

TEST(RouteTableTest, HeaderRegexMatchesAnyValueAsAWhole) {
  RouteEntry route = Prefix("re", "/", "a");
  route.match.headers = {
      {.name = "x-version", .kind = HeaderMatcher::Kind::kRegex, .regex = Compile("v[0-9]+")}};
  RouteEntry inverted = Prefix("inv", "/", "b");
  inverted.match.headers = {{.name = "x-version",
                             .kind = HeaderMatcher::Kind::kRegex,
                             .regex = Compile("v[0-9]+"),
                             .invert = true}};
  auto table = MakeTable({VHost("h", {"*"}, {route, inverted})});
  http::HeaderMap one = Request("h", "/");
  one.Add("x-version", "v12");
  EXPECT_EQ(MatchedName(*table, one), "re");
  http::HeaderMap second = Request("h", "/");
  second.Add("x-version", "beta");
  second.Add("x-version", "v3");
  EXPECT_EQ(MatchedName(*table, second), "re");
  http::HeaderMap partial = Request("h", "/");
  partial.Add("x-version", "v3-beta");
  EXPECT_EQ(MatchedName(*table, partial), "inv");
  EXPECT_EQ(MatchedName(*table, Request("h", "/")), "inv");  // absent: inverted matches
}

TEST(SourceNameTest, OneAllocationPerNameSharedByItsCopies) {
  std::optional<SourceName> name;
  {
    AllocationScope making;
    name.emplace("HTTPRoute/default/reviews");
    EXPECT_EQ(making.count(), 1u);  // the count and the text together
  }
  EXPECT_EQ(*name, "HTTPRoute/default/reviews");
  EXPECT_TRUE(name->unique());
  AllocationScope copying;
  SourceName copy = *name;
  EXPECT_TRUE(copy.SharesWith(*name));
  EXPECT_FALSE(name->unique());
  SourceName moved = std::move(copy);
  EXPECT_TRUE(moved.SharesWith(*name));
  copy = moved;  // assigned after the move
  EXPECT_EQ(copy.view(), "HTTPRoute/default/reviews");
  EXPECT_EQ(copying.count(), 0u);
  name.reset();  // the copies keep the text
  EXPECT_EQ(moved.view(), "HTTPRoute/default/reviews");
  EXPECT_TRUE(SourceName("").empty());
  EXPECT_TRUE(SourceName().view().empty());
}

TEST(RarePartTest, AnAbsentPartReadsEmptyAndCopiesAreDeep) {
  RouteEntry route = Prefix("p", "/", "a");
  EXPECT_FALSE(route.extras.present());
  {
    AllocationScope reading;
    EXPECT_TRUE(route.extras->headers.empty());
    EXPECT_FALSE(route.extras->fault.has_value());
    EXPECT_EQ(route.extras->rate_limiter, nullptr);
    EXPECT_EQ(reading.count(), 0u);
  }
  route.extras.mut().headers.request_headers_to_remove = {"x-a"};
  ASSERT_TRUE(route.extras.present());
  RouteEntry copy = route;
  copy.extras.mut().headers.request_headers_to_remove = {"x-b"};
  EXPECT_EQ(route.extras->headers.request_headers_to_remove, std::vector<std::string>{"x-a"});
  EXPECT_EQ(copy.extras->headers.request_headers_to_remove, std::vector<std::string>{"x-b"});
  RouteEntry moved = std::move(copy);
  EXPECT_EQ(moved.extras->headers.request_headers_to_remove, std::vector<std::string>{"x-b"});
  copy = route;  // assigned after the move
  EXPECT_EQ(copy.extras->headers.request_headers_to_remove, std::vector<std::string>{"x-a"});
  // The shared empty part is never written: another route still reads it empty.
  EXPECT_TRUE(Prefix("q", "/", "a").extras->headers.empty());
}

TEST(RouteTableTest, RewritePath) {
  RouteEntry prefix = Prefix("p", "/api/", "a");
  std::get<RouteAction>(prefix.action).extras.mut().prefix_rewrite = "/v2/";
  EXPECT_EQ(RewritePath(prefix, "/api/users?limit=1"), "/v2/users?limit=1");
  EXPECT_EQ(RewritePath(prefix, "/api/"), "/v2/");
  RouteEntry exact = Exact("e", "/old", "a");
  std::get<RouteAction>(exact.action).extras.mut().prefix_rewrite = "/new";
  EXPECT_EQ(RewritePath(exact, "/old?q"), "/new?q");
  RouteEntry none = Prefix("n", "/", "a");
  EXPECT_EQ(RewritePath(none, "/x?y"), "/x?y");
}

TEST(RouteTableTest, FullPathRewriteKeepsTheQuery) {
  RouteEntry route = Prefix("p", "/api/", "a");
  std::get<RouteAction>(route.action).extras.mut().path_rewrite = "/v2/index";
  EXPECT_EQ(RewritePath(route, "/api/users?limit=1&x"), "/v2/index?limit=1&x");
  EXPECT_EQ(RewritePath(route, "/api/"), "/v2/index");
  route.match.path_kind = RouteMatch::PathKind::kRegex;
  EXPECT_EQ(RewritePath(route, "/anything?q"), "/v2/index?q");
}

TEST(RouteTableTest, SegmentPrefixRewriteFollowsReplacePrefixMatch) {
  RouteEntry route = Prefix("p", "/foo", "a");
  route.match.path_kind = RouteMatch::PathKind::kSegmentPrefix;
  auto rewrite = [&](absl::string_view replacement, absl::string_view path) {
    std::get<RouteAction>(route.action).extras.mut().prefix_rewrite = std::string(replacement);
    return RewritePath(route, path);
  };
  EXPECT_EQ(rewrite("/", "/foo/bar"), "/bar");
  EXPECT_EQ(rewrite("/xyz", "/foo/bar"), "/xyz/bar");
  EXPECT_EQ(rewrite("/xyz/", "/foo/bar"), "/xyz/bar");
  EXPECT_EQ(rewrite("/xyz", "/foo"), "/xyz");
  EXPECT_EQ(rewrite("/xyz/", "/foo"), "/xyz");
  EXPECT_EQ(rewrite("/", "/foo"), "/");
  EXPECT_EQ(rewrite("/", "/foo/"), "/");
  EXPECT_EQ(rewrite("/xyz", "/foo/"), "/xyz/");
  EXPECT_EQ(rewrite("/xyz", "/foo/bar/baz?q=1"), "/xyz/bar/baz?q=1");
  EXPECT_EQ(rewrite("/", "/foo?q=1"), "/?q=1");
  // A root match ("/", stored empty) prefixes the whole path.
  route.match.path = "";
  EXPECT_EQ(rewrite("/xyz", "/a/b"), "/xyz/a/b");
  EXPECT_EQ(rewrite("/", "/a/b"), "/a/b");
  EXPECT_EQ(rewrite("/xyz/", "/"), "/xyz/");
}

TEST(RouteTableTest, MatchingDoesNotAllocate) {
  RouteEntry with_headers = Prefix("h", "/api", "a");
  with_headers.match.headers = {
      {.name = "x-version", .kind = HeaderMatcher::Kind::kPrefix, .value = "v"}};
  with_headers.match.methods = {"GET"};
  RouteEntry ci = Prefix("ci", "/STATIC", "b");
  ci.match.case_insensitive = true;
  auto table = MakeTable({VHost("exact", {"www.example.com"}, {with_headers, ci}),
                          VHost("wild", {"*.example.com"}), VHost("any", {"*"})});
  http::HeaderMap a = Request("WWW.Example.COM:8080", "/api/x?y=1");
  a.Add("x-version", "v2");
  http::HeaderMap b = Request("pod.example.com", "/static/x");
  http::HeaderMap c = Request("other", "/");
  http::HeaderMap d = Request("www.example.com", "/static/app.js");
  AllocationScope allocations;
  const RouteEntry* ra = table->Match(a);
  const RouteEntry* rb = table->Match(b);
  const RouteEntry* rc = table->Match(c);
  const RouteEntry* rd = table->Match(d);
  EXPECT_EQ(allocations.count(), 0u);
  ASSERT_NE(ra, nullptr);
  EXPECT_EQ(ra->name, "h");
  ASSERT_NE(rb, nullptr);
  EXPECT_EQ(rb->name, "wild-all");
  ASSERT_NE(rc, nullptr);
  EXPECT_EQ(rc->name, "any-all");
  ASSERT_NE(rd, nullptr);
  EXPECT_EQ(rd->name, "ci");
}

TEST(RouteTableTest, QueryParametersAllocateNothingWithoutEscapes) {
  RouteEntry query = Prefix("q", "/", "a");
  query.match.query_parameters = {
      {.name = "env", .kind = QueryParameterMatcher::Kind::kExact, .value = "canary"}};
  RouteEntry segment = Prefix("s", "/v2", "b");
  segment.match.path_kind = RouteMatch::PathKind::kSegmentPrefix;
  auto table = MakeTable({VHost("h", {"*"}, {query, segment})});
  http::HeaderMap a = Request("h", "/x?a=1&env=canary");
  http::HeaderMap b = Request("h", "/v2/x?env=blue");
  AllocationScope allocations;
  const RouteEntry* ra = table->Match(a);
  const RouteEntry* rb = table->Match(b);
  EXPECT_EQ(allocations.count(), 0u);
  ASSERT_NE(ra, nullptr);
  EXPECT_EQ(ra->name, "q");
  ASSERT_NE(rb, nullptr);
  EXPECT_EQ(rb->name, "s");
}

TEST(RouteTableTest, RoutesPointBackAtTheirLevels) {
  auto table = MakeTable({VHost("a", {"a"}), VHost("b", {"b"})});
  const RouteEntry* route = table->Match(Request("b", "/"));
  ASSERT_NE(route, nullptr);
  EXPECT_EQ(route->virtual_host, &table->config().virtual_hosts[1]);
  EXPECT_EQ(route->config_headers, &table->config().headers);
}

}  // namespace
}  // namespace meshlet::sidecar::route

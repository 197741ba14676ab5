// Routes: retry policies inherited from the virtual host, faults and rate limits, the Gateway API
// features (RE2 and segment matches, query parameters, rewrites, redirects by prefix, request
// mirroring) with what each refuses, and ServiceRoutes joining their route table.
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sidecar/cluster/session_key.h"
#include "sidecar/config/translate.h"
#include "sidecar/config/translate_test_util.h"
#include "sidecar/route/route_table.h"

namespace meshlet::sidecar::config {
namespace {

using namespace ::meshlet::sidecar::config::translate_testing;  // NOLINT: the fixtures
using namespace std::chrono_literals;
using ::testing::HasSubstr;

// A ServiceRoute joining "local" whose virtual host sends every request for `domains` (and the
// captured connections to `destination`, when given) to `cluster`.
xds::ServiceRoute JoiningLocal(const std::string& name, const std::string& domains,
                               const std::string& cluster, const std::string& destination = "") {
  return Parse<xds::ServiceRoute>(absl::StrCat(
      "name: \"", name, "\"\nroute_config_name: local\nvirtual_host:\n  name: \"", name,
      "\"\n  domains: ", domains, "\n",
      destination.empty() ? "" : absl::StrCat("  destinations: [\"", destination, "\"]\n"),
      "  routes:\n  - match: {prefix: /}\n    route: {cluster: ", cluster, "}\n"));
}

// The name of the cluster `table` sends a GET of `path` on `host` to; "" when no route.
std::string ClusterFor(const route::RouteTable& table, absl::string_view host,
                       absl::string_view path = "/") {
  const route::RouteEntry* entry = table.Match(Request(host, path));
  if (entry == nullptr || entry->route_action() == nullptr) return "";
  return entry->route_action()->cluster;
}

TEST(ServiceRouteTest, ServiceRouteVirtualHostAnswersItsDomainsAndDestinations) {
  ResourceSet set = Base();
  // "local" keeps only its catch-all, which answers /a with backend and /z with nothing.
  set.routes.Mutable(0).mutable_virtual_hosts(0)->mutable_routes()->DeleteSubrange(1, 2);
  set.service_routes.push_back(
      JoiningLocal("reviews.shop:80", "[reviews, \"reviews.shop:80\"]", "other", "10.96.0.5:80"));
  set.service_routes.push_back(JoiningLocal("ratings.shop:80", "[Ratings.Shop]", "eds-cluster"));
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const route::RouteTable* table = (*snapshot)->FindRouteTable("local");
  ASSERT_NE(table, nullptr);
  EXPECT_EQ(ClusterFor(*table, "reviews", "/z"), "other");
  EXPECT_EQ(ClusterFor(*table, "reviews.shop:80", "/z"), "other");
  EXPECT_EQ(ClusterFor(*table, "ratings.shop", "/z"), "eds-cluster");  // lower-cased
  EXPECT_EQ(ClusterFor(*table, "ratings.shop:8080", "/z"), "eds-cluster");
  EXPECT_EQ(ClusterFor(*table, "details", "/a"), "backend");  // the table's own "*"
  EXPECT_EQ(ClusterFor(*table, "details", "/z"), "");
  const route::VirtualHostConfig* captured = table->MatchDestination("10.96.0.5:80");
  ASSERT_NE(captured, nullptr);
  EXPECT_EQ(captured->name, "reviews.shop:80");
  // The table's own hosts first, then the ServiceRoutes' in name order.
  std::vector<std::string> hosts;
  for (const route::VirtualHostConfig* vhost : table->virtual_hosts()) hosts.push_back(vhost->name);
  EXPECT_EQ(hosts, (std::vector<std::string>{"default", "ratings.shop:80", "reviews.shop:80"}));

  // Unchanged, the table is taken from the running snapshot; a changed ServiceRoute rebuilds it.
  auto same = BuildSnapshot(set, snapshot->get());
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(TranslationReuseOf(**same).route_tables, 1u);
  EXPECT_EQ((*same)->FindRouteTable("local"), table);
  set.service_routes.Mutable(1)
      .mutable_virtual_host()
      ->mutable_routes(0)
      ->mutable_route()
      ->set_cluster("backend");
  auto changed = BuildSnapshot(set, same->get());
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_EQ(TranslationReuseOf(**changed).route_tables, 0u);
  EXPECT_EQ(ClusterFor(*(*changed)->FindRouteTable("local"), "ratings.shop", "/z"), "backend");
  // One gone: its host goes with it.
  ResourceSet fewer = set;
  fewer.service_routes.clear();
  fewer.service_routes.push_back(set.service_routes.shared(0));
  auto without = BuildSnapshot(fewer, changed->get());
  ASSERT_TRUE(without.ok()) << without.status();
  EXPECT_EQ(ClusterFor(*(*without)->FindRouteTable("local"), "ratings.shop", "/z"), "");
  EXPECT_EQ(ClusterFor(*(*without)->FindRouteTable("local"), "reviews", "/z"), "other");
}

// A ServiceRoute's virtual host is held for as long as its Service is called: its lists hold
// no more room than their items.
TEST(ServiceRouteTest, ServiceRouteVirtualHostListsHoldNoSpareRoom) {
  ResourceSet set = Base();
  xds::ServiceRoute service_route =
      JoiningLocal("reviews.shop:80",
                   "[reviews, \"reviews:80\", reviews.shop, \"reviews.shop:80\", reviews.shop.svc]",
                   "other", "10.96.0.5:80");
  xds::VirtualHost* vh = service_route.mutable_virtual_host();
  for (const char* prefix : {"/a", "/b"}) {
    xds::Route* route = vh->add_routes();
    route->mutable_match()->set_prefix(prefix);
    route->mutable_route()->set_cluster("eds-cluster");
  }
  set.service_routes.push_back(std::move(service_route));
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const route::RouteTable* table = (*snapshot)->FindRouteTable("local");
  ASSERT_NE(table, nullptr);
  const route::VirtualHostConfig* vhost = table->MatchDestination("10.96.0.5:80");
  ASSERT_NE(vhost, nullptr);
  ASSERT_EQ(vhost->domains.size(), 5u);
  ASSERT_EQ(vhost->routes.size(), 3u);
  EXPECT_EQ(vhost->domains.capacity(), vhost->domains.size());
  EXPECT_EQ(vhost->routes.capacity(), vhost->routes.size());
  EXPECT_EQ(vhost->destinations.capacity(), vhost->destinations.size());
}

// A sidecar holds the routes of every Service its pod calls: a route without header mutations,
// fault, rate limit, rewrites or mirrors holds no extras (RouteEntry::extras), one with some
// holds them; so for a virtual host's header mutations.
TEST(ServiceRouteTest, RoutesHoldOnlyTheExtrasTheyUse) {
  ResourceSet set = Base();
  xds::ServiceRoute service_route = JoiningLocal("reviews.shop:80", "[reviews]", "other");
  xds::VirtualHost* vh = service_route.mutable_virtual_host();
  xds::Route* canary = vh->add_routes();  // what a header-matched subset route looks like
  canary->mutable_match()->set_prefix("/");
  xds::HeaderMatcher* header = canary->mutable_match()->add_headers();
  header->set_name("x-canary");
  header->set_exact("always");
  canary->mutable_route()->set_cluster("eds-cluster");
  canary->mutable_route()->mutable_timeout()->set_seconds(3);
  canary->mutable_route()->mutable_retry_policy()->mutable_num_retries()->set_value(3);
  xds::Route* mutated = vh->add_routes();
  mutated->mutable_match()->set_prefix("/m");
  mutated->mutable_route()->set_cluster("eds-cluster");
  mutated->add_request_headers_to_remove("x-internal");
  xds::Route* rewritten = vh->add_routes();
  rewritten->mutable_match()->set_prefix("/r");
  rewritten->mutable_route()->set_cluster("eds-cluster");
  rewritten->mutable_route()->set_host_rewrite("backend");
  set.service_routes.push_back(std::move(service_route));
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const route::RouteTable* table = (*snapshot)->FindRouteTable("local");
  ASSERT_NE(table, nullptr);
  const route::VirtualHostConfig* vhost = table->MatchVirtualHost("reviews");
  ASSERT_NE(vhost, nullptr);
  ASSERT_EQ(vhost->routes.size(), 4u);
  EXPECT_FALSE(vhost->extras.present());
  for (size_t r : {0u, 1u}) {
    SCOPED_TRACE(r);
    const route::RouteEntry& plain = vhost->routes[r];
    EXPECT_FALSE(plain.extras.present());
    ASSERT_NE(plain.route_action(), nullptr);
    EXPECT_FALSE(plain.route_action()->extras.present());
  }
  EXPECT_TRUE(vhost->routes[2].extras.present());
  EXPECT_EQ(vhost->routes[2].extras->headers.request_headers_to_remove,
            std::vector<std::string>{"x-internal"});
  EXPECT_FALSE(vhost->routes[2].route_action()->extras.present());
  EXPECT_FALSE(vhost->routes[3].extras.present());
  EXPECT_EQ(vhost->routes[3].route_action()->extras->host_rewrite, "backend");
}

// A gateway proxy's host names the Gateway listener that took it, for its decision records.
TEST(RouteTableTest, AGatewayHostKeepsItsListenerName) {
  ResourceSet set = Base();
  set.routes.Mutable(0).mutable_virtual_hosts(0)->set_gateway_listener("https");
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const route::RouteTable* table = (*snapshot)->FindRouteTable("local");
  ASSERT_NE(table, nullptr);
  ASSERT_FALSE(table->config().virtual_hosts.empty());
  const route::VirtualHostConfig& vhost = table->config().virtual_hosts[0];
  ASSERT_TRUE(vhost.extras.present());
  EXPECT_EQ(vhost.extras->gateway_listener.view(), "https");
  EXPECT_TRUE(vhost.extras->headers.empty());
}

TEST(ServiceRouteTest, AddingOneServiceRouteReusesTheOthers) {
  constexpr int kServiceRoutes = 2000;
  ResourceSet set = Base();
  xds::HeaderValueOption* edit = set.routes.Mutable(0).add_request_headers_to_add();
  edit->set_name("x-table");
  edit->set_value("local");
  for (int i = 0; i < kServiceRoutes; ++i) {
    const std::string name = absl::StrCat("svc", i, ".shop:80");
    set.service_routes.push_back(JoiningLocal(name, absl::StrCat("[\"", name, "\"]"), "other"));
  }
  auto first = BuildSnapshot(set);
  ASSERT_TRUE(first.ok()) << first.status();
  const std::vector<const route::VirtualHostConfig*> before =
      (*first)->FindRouteTable("local")->virtual_hosts();
  ASSERT_EQ(before.size(), kServiceRoutes + 1u);  // the own "default" first

  set.service_routes.push_back(JoiningLocal("added.shop:80", "[\"added.shop:80\"]", "backend"));
  auto second = BuildSnapshot(set, first->get());
  ASSERT_TRUE(second.ok()) << second.status();
  const route::RouteTable& table = *(*second)->FindRouteTable("local");
  EXPECT_NE(&table, (*first)->FindRouteTable("local"));
  std::map<std::string, const route::VirtualHostConfig*> after;
  for (const route::VirtualHostConfig* vhost : table.virtual_hosts()) after[vhost->name] = vhost;
  ASSERT_EQ(after.size(), kServiceRoutes + 2u);
  size_t reused = 0;
  for (size_t v = 1; v < before.size(); ++v) reused += after.at(before[v]->name) == before[v];
  EXPECT_EQ(reused, static_cast<size_t>(kServiceRoutes));
  EXPECT_EQ(ClusterFor(table, "added.shop:80"), "backend");
  EXPECT_EQ(ClusterFor(table, "svc1999.shop:80"), "other");
  // The table's own header edits reach requests through the reused hosts.
  const route::RouteEntry* entry = table.Match(Request("svc7.shop:80", "/"));
  ASSERT_NE(entry, nullptr);
  http::HeaderMap upstream = Request("svc7.shop:80", "/");
  route::ApplyRequestHeaderMutations(*entry, upstream);
  EXPECT_EQ(upstream.Get("x-table"), "local");

  // Other header edits of the table: the hosts are built again under them.
  set.routes.Mutable(0).mutable_request_headers_to_add(0)->set_value("edited");
  auto third = BuildSnapshot(set, second->get());
  ASSERT_TRUE(third.ok()) << third.status();
  entry = (*third)->FindRouteTable("local")->Match(Request("svc7.shop:80", "/"));
  ASSERT_NE(entry, nullptr);
  EXPECT_NE(entry->virtual_host, after.at("svc7.shop:80"));
  upstream = Request("svc7.shop:80", "/");
  route::ApplyRequestHeaderMutations(*entry, upstream);
  EXPECT_EQ(upstream.Get("x-table"), "edited");
}

// What an answered lookup brings: a ServiceRoute and the clusters it names. The other
// ServiceRoutes are not translated again (only names added); a cluster gone that one names
// translates it again, and the update is refused naming it.
TEST(ServiceRouteTest, ANewServiceRouteWithItsOwnClustersReusesTheOthers) {
  constexpr int kServiceRoutes = 1000;
  ResourceSet set = Base();
  auto add_cluster = [&set](const std::string& name) {
    xds::Cluster cluster = set.clusters[1];  // "other", static
    cluster.set_name(name);
    set.clusters.push_back(std::move(cluster));
  };
  for (int i = 0; i < kServiceRoutes; ++i) {
    const std::string name = absl::StrCat("svc", i, ".shop:80");
    add_cluster(absl::StrCat("outbound|svc", i));
    set.service_routes.push_back(
        JoiningLocal(name, absl::StrCat("[\"", name, "\"]"), absl::StrCat("outbound|svc", i)));
  }
  auto first = BuildSnapshot(set);
  ASSERT_TRUE(first.ok()) << first.status();
  const std::vector<const route::VirtualHostConfig*> before =
      (*first)->FindRouteTable("local")->virtual_hosts();
  ASSERT_EQ(before.size(), kServiceRoutes + 1u);

  add_cluster("outbound|added");
  set.service_routes.push_back(
      JoiningLocal("added.shop:80", "[\"added.shop:80\"]", "outbound|added"));
  auto second = BuildSnapshot(set, first->get());
  ASSERT_TRUE(second.ok()) << second.status();
  const route::RouteTable& table = *(*second)->FindRouteTable("local");
  std::map<std::string, const route::VirtualHostConfig*> after;
  for (const route::VirtualHostConfig* vhost : table.virtual_hosts()) after[vhost->name] = vhost;
  ASSERT_EQ(after.size(), kServiceRoutes + 2u);
  size_t reused = 0;
  for (size_t v = 1; v < before.size(); ++v) reused += after.at(before[v]->name) == before[v];
  EXPECT_EQ(reused, static_cast<size_t>(kServiceRoutes));
  EXPECT_EQ(ClusterFor(table, "added.shop:80"), "outbound|added");
  EXPECT_EQ(ClusterFor(table, "svc999.shop:80"), "outbound|svc999");

  // A cluster a kept ServiceRoute names goes: it is checked again, and the update refused.
  ResourceSet gone = set;
  gone.clusters.clear();
  for (size_t c = 0; c < set.clusters.size(); ++c) {
    if (set.clusters[c].name() != "outbound|svc7") gone.clusters.push_back(set.clusters.shared(c));
  }
  auto refused = BuildSnapshot(gone, second->get());
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("svc7.shop:80"));
  EXPECT_THAT(refused.status().message(), HasSubstr("outbound|svc7"));
}

// An answered lookup adds one ServiceRoute among those held (the xDS client lists them in name
// order): only that one is looked at, not every one held, and the snapshot is the one a build
// from nothing gives. So is a changed one, even moved to another route configuration; an error
// is reported as a build from nothing reports it.
TEST(ServiceRouteTest, AddedServiceRoutesCostWhatIsAddedNotWhatIsHeld) {
  constexpr int kHeld = 1000;
  ResourceSet set = Base();
  // "local" keeps only its catch-all, which answers /z with nothing.
  set.routes.Mutable(0).mutable_virtual_hosts(0)->mutable_routes()->DeleteSubrange(1, 2);
  xds::RouteConfiguration second_config = set.routes[0];
  second_config.set_name("second");
  set.routes.push_back(std::move(second_config));
  auto name_of = [](int i) { return absl::StrCat("svc", 10000 + i, ".shop:80"); };
  auto joining = [](const std::string& name, const std::string& cluster) {
    return std::make_shared<const ResourceList<xds::ServiceRoute>::Held>(
        JoiningLocal(name, absl::StrCat("[\"", name, "\"]"), cluster));
  };
  // Even numbers: an odd one goes between two held.
  for (int i = 0; i < 2 * kHeld; i += 2) set.service_routes.push_back(joining(name_of(i), "other"));
  auto first = BuildSnapshot(set);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(TranslationReuseOf(**first).service_routes_examined, static_cast<size_t>(kHeld));

  ResourceSet added = set;
  added.service_routes.Insert(5, joining(name_of(9), "backend"));  // after name_of(8)
  auto second = BuildSnapshot(added, first->get());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(TranslationReuseOf(**second).service_routes_examined, 1u);
  EXPECT_EQ(ClusterFor(*(*second)->FindRouteTable("local"), name_of(9), "/z"), "backend");
  EXPECT_EQ(ClusterFor(*(*second)->FindRouteTable("local"), name_of(8), "/z"), "other");
  ASSERT_NE(ServiceRouteUsage(**second, name_of(8)), nullptr);
  EXPECT_EQ(ServiceRouteUsage(**second, name_of(8)), ServiceRouteUsage(**first, name_of(8)));
  // "local" rebuilt records its 1 001 joining ServiceRoutes; "second" (none joining) is reused.
  EXPECT_EQ(TranslationReuseOf(**second).joined_recorded, static_cast<size_t>(kHeld + 1));
  // Its joined hosts' names are the previous table's with the one added: one indexed, not 1 001.
  EXPECT_EQ(TranslationReuseOf(**first).joined_names_indexed, static_cast<size_t>(kHeld));
  EXPECT_EQ(TranslationReuseOf(**second).joined_names_indexed, 1u);
  // Nothing joining changed (a response of another type): both tables are the previous build's,
  // their records shared, not copied.
  auto again = BuildSnapshot(added, second->get());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(TranslationReuseOf(**again).route_tables, 2u);
  EXPECT_EQ(TranslationReuseOf(**again).joined_recorded, 0u);

  ResourceSet moved = added;
  xds::ServiceRoute& changed = moved.service_routes.Mutable(5);
  changed.set_route_config_name("second");
  changed.mutable_virtual_host()->mutable_routes(0)->mutable_route()->set_cluster("other");
  auto third = BuildSnapshot(moved, second->get());
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(TranslationReuseOf(**third).service_routes_examined, 1u);
  // Out of "local"'s names, into "second"'s.
  EXPECT_EQ(TranslationReuseOf(**third).joined_names_indexed, 1u);
  EXPECT_EQ(ClusterFor(*(*third)->FindRouteTable("local"), name_of(9), "/z"), "");
  EXPECT_EQ(ClusterFor(*(*third)->FindRouteTable("second"), name_of(9), "/z"), "other");
  EXPECT_EQ(ServiceRouteUsage(**third, name_of(9)), ServiceRouteUsage(**second, name_of(9)));
  auto fresh = BuildSnapshot(moved);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  for (const char* table : {"local", "second"}) {
    SCOPED_TRACE(table);
    std::vector<std::string> derived, whole;
    for (const auto* vhost : (*third)->FindRouteTable(table)->virtual_hosts()) {
      derived.push_back(vhost->name);
    }
    for (const auto* vhost : (*fresh)->FindRouteTable(table)->virtual_hosts()) {
      whole.push_back(vhost->name);
    }
    EXPECT_EQ(derived, whole);
  }

  ResourceSet broken = moved;
  broken.service_routes.Mutable(6).set_route_config_name("missing");
  auto refused = BuildSnapshot(broken, third->get());
  auto refused_whole = BuildSnapshot(broken);
  ASSERT_FALSE(refused.ok());
  ASSERT_FALSE(refused_whole.ok());
  EXPECT_EQ(refused.status().message(), refused_whole.status().message());
  EXPECT_THAT(refused.status().message(), HasSubstr("names no RouteConfiguration"));

  // One gone: every one is looked at again, and the next build follows what changed again.
  ResourceSet fewer = moved;
  fewer.service_routes.Erase(0);
  auto fourth = BuildSnapshot(fewer, third->get());
  ASSERT_TRUE(fourth.ok()) << fourth.status();
  EXPECT_EQ(TranslationReuseOf(**fourth).service_routes_examined, static_cast<size_t>(kHeld));
  EXPECT_EQ(ServiceRouteUsage(**fourth, name_of(0)), nullptr);
  EXPECT_EQ(ClusterFor(*(*fourth)->FindRouteTable("local"), name_of(0), "/z"), "");
  fewer.service_routes.Insert(0, joining(name_of(1), "backend"));
  auto fifth = BuildSnapshot(fewer, fourth->get());
  ASSERT_TRUE(fifth.ok()) << fifth.status();
  EXPECT_EQ(TranslationReuseOf(**fifth).service_routes_examined, 1u);
  EXPECT_EQ(ClusterFor(*(*fifth)->FindRouteTable("local"), name_of(1), "/z"), "backend");
}

// The joined hosts' names derived from the replaced table's check what the full join checks,
// with the same messages: a host renamed frees its old name; a name taken is refused naming the
// holder the full join names (the first in name order), whichever ServiceRoute changed.
TEST(ServiceRouteTest, DerivedJoinedNamesRefuseAsTheFullJoin) {
  ResourceSet set = Base();
  auto joining = [](const std::string& name, const std::string& vhost_name) {
    xds::ServiceRoute route = JoiningLocal(name, absl::StrCat("[\"", name, "\"]"), "other");
    route.mutable_virtual_host()->set_name(vhost_name);
    return std::make_shared<const ResourceList<xds::ServiceRoute>::Held>(std::move(route));
  };
  set.service_routes.push_back(joining("a.shop:80", "a"));
  set.service_routes.push_back(joining("c.shop:80", "c"));
  auto first = BuildSnapshot(set);
  ASSERT_TRUE(first.ok()) << first.status();

  // "c.shop:80" renames its host to "b", then "b.shop:80" comes with "c": both names free.
  ResourceSet renamed = set;
  renamed.service_routes.Set(1, joining("c.shop:80", "b"));
  auto second = BuildSnapshot(renamed, first->get());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(TranslationReuseOf(**second).joined_names_indexed, 1u);
  renamed.service_routes.Insert(1, joining("b.shop:80", "c"));
  auto third = BuildSnapshot(renamed, second->get());
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(TranslationReuseOf(**third).joined_names_indexed, 1u);

  // A name taken by one added before its holder in name order (the full join names the added
  // one as the holder), after it, and a name of the table's own host.
  for (const auto& [added, vhost_name] : {std::pair<std::string, std::string>{"0.shop:80", "b"},
                                          {"z.shop:80", "a"},
                                          {"y.shop:80", "default"}}) {
    SCOPED_TRACE(added);
    ResourceSet taken = renamed;
    if (added == "0.shop:80") {
      taken.service_routes.Insert(0, joining(added, vhost_name));
    } else {
      taken.service_routes.push_back(joining(added, vhost_name));
    }
    auto derived = BuildSnapshot(taken, third->get());
    auto whole = BuildSnapshot(taken);
    ASSERT_FALSE(derived.ok());
    ASSERT_FALSE(whole.ok());
    EXPECT_EQ(derived.status().message(), whole.status().message());
    EXPECT_THAT(derived.status().message(), HasSubstr("is already the name of a virtual host"));
  }
}

TEST(ServiceRouteTest, DuplicateDomainAcrossServiceRoutesRefusedNamingBoth) {
  ResourceSet set = Base();
  set.service_routes.push_back(JoiningLocal("a.shop:80", "[reviews]", "other", "10.96.0.5:80"));
  set.service_routes.push_back(
      JoiningLocal("reviews.shop:80", "[Reviews, \"*\"]", "other", "10.96.0.5:80"));
  auto snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  const std::string message(snapshot.status().message());
  EXPECT_THAT(message, HasSubstr("service_route \"reviews.shop:80\": virtual_host.domains[0]: "
                                 "\"reviews\" is already a domain of service_route \"a.shop:80\""));
  EXPECT_THAT(message,
              HasSubstr("service_route \"reviews.shop:80\": virtual_host.domains[1]: \"*\" is "
                        "already a domain of route_config \"local\" virtual_hosts[0]"));
  EXPECT_THAT(message, HasSubstr("service_route \"reviews.shop:80\": virtual_host.destinations[0]: "
                                 "\"10.96.0.5:80\" is already a destination of service_route "
                                 "\"a.shop:80\""));
  // A host of the table's own with a ServiceRoute's name.
  ResourceSet named = Base();
  named.service_routes.push_back(JoiningLocal("default", "[reviews]", "other"));
  auto refused = BuildSnapshot(named);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(),
              HasSubstr("service_route \"default\": virtual_host.name: \"default\" is already the "
                        "name of a virtual host of route_config \"local\" virtual_hosts[0]"));
}

TEST(ServiceRouteTest, ServiceRouteNamingUnknownRouteConfigurationRefused) {
  ResourceSet set = Base();
  xds::ServiceRoute elsewhere = JoiningLocal("reviews.shop:80", "[reviews]", "other");
  elsewhere.set_route_config_name("outbound");
  set.service_routes.push_back(elsewhere);
  xds::ServiceRoute broken = JoiningLocal("ratings.shop:80", "[ratings]", "missing");
  set.service_routes.push_back(broken);
  xds::ServiceRoute empty;
  empty.set_name("details.shop:80");
  empty.set_route_config_name("local");
  set.service_routes.push_back(empty);
  set.service_routes.push_back(JoiningLocal("bad name", "[x]", "other"));
  auto snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  const std::string message(snapshot.status().message());
  EXPECT_THAT(message, HasSubstr("service_route \"reviews.shop:80\": route_config_name "
                                 "\"outbound\" names no RouteConfiguration"));
  EXPECT_THAT(message, HasSubstr("service_route \"ratings.shop:80\": virtual_host.routes[0].route."
                                 "cluster \"missing\" names no Cluster"));
  EXPECT_THAT(message, HasSubstr("service_route \"details.shop:80\": needs a virtual_host, a "
                                 "destination or both"));
  EXPECT_THAT(message, HasSubstr("service_routes[3]: name: must not contain spaces"));
}

TEST(TranslateTest, RetryPolicyInheritanceAndOverrides) {
  ResourceSet set = Base();
  xds::VirtualHost* vh = set.routes.Mutable(0).mutable_virtual_hosts(0);
  vh->mutable_retry_policy()->mutable_num_retries()->set_value(5);
  vh->mutable_retry_policy()->add_retry_on("5xx");
  vh->mutable_retry_policy()->mutable_base_interval()->set_nanos(50'000'000);
  xds::RetryPolicy* own = RouteAt(set, 1).mutable_route()->mutable_retry_policy();
  own->mutable_num_retries()->set_value(0);
  own->add_retriable_status_codes(502);
  own->add_retriable_status_codes(504);
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const route::RouteTable* table = (*snapshot)->FindRouteTable("local");

  const route::RouteAction* inherited = table->Match(Request("x", "/a"))->route_action();
  EXPECT_EQ(inherited->retry_policy.num_retries, 5u);
  EXPECT_EQ(inherited->retry_policy.retry_on, resilience::RetryOn::k5xx);
  EXPECT_EQ(inherited->retry_policy.backoff.base, 50ms);
  EXPECT_EQ(inherited->retry_policy.backoff.cap, 500ms);  // 10x an explicit base

  const route::RouteAction* overridden = table->Match(Request("x", "/b"))->route_action();
  EXPECT_EQ(overridden->retry_policy.num_retries, 0u);
  EXPECT_EQ(overridden->retry_policy.retry_on, resilience::RetryOn::kDefault);
  EXPECT_EQ(overridden->retry_policy.retriable_status_codes, (std::vector<uint32_t>{502, 504}));
}

// Decision records: the policy objects a route, a cluster and an authorization policy came from
// reach the running configuration as "Kind/namespace/name"; malformed ones are refused.
TEST(TranslateTest, PolicySourcesOfRoutesClustersAndAuthorization) {
  ResourceSet set = Base();
  const auto source = [](xds::PolicySource* s, const char* kind, const char* name, int rule,
                         int match) {
    s->set_kind(kind);
    s->set_namespace_("shop");
    s->set_name(name);
    s->set_rule(rule);
    s->set_match(match);
  };
  source(RouteAt(set, 0).mutable_source(), "HTTPRoute", "reviews", 1, -1);
  source(set.clusters.Mutable(0).mutable_traffic_policy(), "TrafficPolicy", "reviews", -1, -1);
  set.clusters.Mutable(0).set_subset("version=v2");
  xds::AuthorizationPolicy* allow =
      set.listeners.Mutable(0).mutable_authorization()->add_policies();
  allow->set_name("shop/all");
  allow->add_rules();
  source(allow->mutable_source(), "AuthorizationPolicy", "all", -1, -1);
  source(RouteAt(set, 0).mutable_route()->mutable_timeout_source(), "HTTPRoute", "reviews", -1, -1);
  RouteAt(set, 0).mutable_route()->mutable_per_try_timeout_source()->set_kind("MeshConfig");
  RouteAt(set, 0).mutable_route()->mutable_per_try_timeout_source()->set_name("mesh");
  RouteAt(set, 0).mutable_rate_limit()->set_requests_per_second(5);
  source(RouteAt(set, 0).mutable_rate_limit()->mutable_source(), "TrafficPolicy", "reviews", -1,
         -1);
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const route::RouteEntry* route = (*snapshot)->FindRouteTable("local")->Match(Request("x", "/a"));
  ASSERT_NE(route, nullptr);
  EXPECT_EQ(route->source, "HTTPRoute/shop/reviews");
  EXPECT_EQ(route->source_rule, 1);
  EXPECT_EQ(route->source_match, -1);
  EXPECT_EQ(route->route_action()->timeout_source, "HTTPRoute/shop/reviews");
  EXPECT_EQ(route->route_action()->per_try_timeout_source, "MeshConfig/mesh");
  ASSERT_NE(route->extras->rate_limiter, nullptr);
  EXPECT_EQ(route->extras->rate_limiter->source(), "TrafficPolicy/shop/reviews");
  const cluster::ClusterConfig* cluster = (*snapshot)->FindCluster(set.clusters[0].name());
  ASSERT_NE(cluster, nullptr);
  EXPECT_EQ(cluster->traffic_policy, "TrafficPolicy/shop/reviews");
  EXPECT_EQ(cluster->subset, "version=v2");
  ASSERT_EQ((*snapshot)->listeners[0].authorization.policies.size(), 1u);
  EXPECT_EQ((*snapshot)->listeners[0].authorization.policies[0].source,
            "AuthorizationPolicy/shop/all");
  // Without sources: empty, and -1 indexes.
  const route::RouteEntry* other = (*snapshot)->FindRouteTable("local")->Match(Request("x", "/b"));
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(other->source, "");
  EXPECT_EQ(other->source_rule, -1);

  source(RouteAt(set, 0).mutable_source(), "HTTPRoute", "a/b", -2, 0);
  set.clusters.Mutable(0).mutable_traffic_policy()->set_namespace_("a b");
  RouteAt(set, 0).mutable_route()->mutable_timeout_source()->set_name("");
  snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  const std::string message(snapshot.status().message());
  EXPECT_THAT(message, ::testing::HasSubstr("source.name: must be a name"));
  EXPECT_THAT(message, ::testing::HasSubstr("source: rule and match must be -1"));
  EXPECT_THAT(message, ::testing::HasSubstr("traffic_policy.namespace: must be a name"));
  EXPECT_THAT(message, ::testing::HasSubstr("timeout_source.name: must be a name"));
}

// The routes of every Service a policy covers name it: the snapshot holds each name once, shared
// by the routes and actions naming it, in one build and in the builds derived from it.
TEST(TranslateTest, PolicySourceNamesAreSharedWithinAndAcrossBuilds) {
  ResourceSet set = Base();
  const auto covered = [](const std::string& name) {
    xds::ServiceRoute out = JoiningLocal(name, absl::StrCat("[\"", name, "\"]"), "other");
    xds::Route* route = out.mutable_virtual_host()->mutable_routes(0);
    for (xds::PolicySource* source :
         {route->mutable_source(), route->mutable_route()->mutable_timeout_source(),
          route->mutable_route()->mutable_per_try_timeout_source()}) {
      source->set_kind("TrafficPolicy");
      source->set_namespace_("shop");
      source->set_name("all");
    }
    return out;
  };
  set.service_routes.push_back(covered("ratings.shop:80"));
  set.service_routes.push_back(covered("reviews.shop:80"));
  auto first = BuildSnapshot(set);
  ASSERT_TRUE(first.ok()) << first.status();
  const route::RouteTable& table = *(*first)->FindRouteTable("local");
  const route::RouteEntry* ratings = table.Match(Request("ratings.shop:80", "/"));
  const route::RouteEntry* reviews = table.Match(Request("reviews.shop:80", "/"));
  ASSERT_NE(ratings, nullptr);
  ASSERT_NE(reviews, nullptr);
  EXPECT_EQ(ratings->source, "TrafficPolicy/shop/all");
  EXPECT_EQ(reviews->route_action()->per_try_timeout_source, "TrafficPolicy/shop/all");
  EXPECT_TRUE(ratings->source.SharesWith(reviews->source));
  EXPECT_TRUE(ratings->source.SharesWith(ratings->route_action()->timeout_source));
  EXPECT_TRUE(ratings->source.SharesWith(reviews->route_action()->per_try_timeout_source));
  // A Service added later (an answered lookup) names the string already held.
  set.service_routes.push_back(covered("details.shop:80"));
  auto second = BuildSnapshot(set, first->get());
  ASSERT_TRUE(second.ok()) << second.status();
  const route::RouteEntry* details =
      (*second)->FindRouteTable("local")->Match(Request("details.shop:80", "/"));
  ASSERT_NE(details, nullptr);
  EXPECT_EQ(details->route_action()->timeout_source, "TrafficPolicy/shop/all");
  EXPECT_TRUE(details->source.SharesWith(ratings->source));
  EXPECT_TRUE(details->route_action()->timeout_source.SharesWith(ratings->source));
}

TEST(TranslateTest, FaultAndRateLimit) {
  ResourceSet set = Base();
  RouteAt(set, 0).mutable_fault()->mutable_delay()->mutable_fixed_delay()->set_seconds(2);
  RouteAt(set, 0).mutable_fault()->mutable_delay()->set_percentage(12.5);
  RouteAt(set, 0).mutable_fault()->mutable_abort()->set_grpc_status(14);
  RouteAt(set, 0).mutable_fault()->mutable_abort()->set_percentage(1);
  RouteAt(set, 0).mutable_fault()->set_header_triggered(true);
  RouteAt(set, 0).mutable_rate_limit()->set_requests_per_second(50);
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const route::RouteEntry* route = (*snapshot)->FindRouteTable("local")->Match(Request("x", "/a"));
  ASSERT_TRUE(route->extras->fault.has_value());
  ASSERT_TRUE(route->extras->fault->delay.has_value());
  EXPECT_EQ(route->extras->fault->delay->fixed_delay, 2s);
  EXPECT_EQ(route->extras->fault->delay->percentage, 12.5);
  ASSERT_TRUE(route->extras->fault->abort.has_value());
  EXPECT_EQ(route->extras->fault->abort->grpc_status, 14u);
  EXPECT_TRUE(route->extras->fault_header_triggered);
  ASSERT_TRUE(route->extras->rate_limit.has_value());
  EXPECT_EQ(route->extras->rate_limit->requests_per_second, 50u);
  EXPECT_EQ(route->extras->rate_limit->burst, 0u);
  // One bucket for the route, shared by every worker; burst defaults to a second's worth.
  ASSERT_NE(route->extras->rate_limiter, nullptr);
  EXPECT_EQ(route->extras->rate_limiter->burst(), 50u);
}

TEST(TranslateTest, GatewayApiMatchesRewritesAndMirrors) {
  ResourceSet set = Base();
  set.routes.Mutable(0) = Parse<xds::RouteConfiguration>(R"yaml(
name: local
virtual_hosts:
- name: default
  domains: ["*"]
  routes:
  - name: users
    match:
      safe_regex: "/users/[0-9]+"
      case_insensitive: true
      headers: [{name: x-Version, safe_regex: "v[12]"}]
    route: {cluster: backend, path_rewrite: /user}
  - name: search
    match:
      prefix: /
      query_parameters:
      - {name: q, safe_regex: "[a-z]+"}
      - {name: lang, exact: en}
      - {name: debug, present: true}
    route:
      cluster: backend
      request_mirror_policies:
      - {cluster: other}
      - {cluster: backend, percent: 12.5}
  - name: v2
    match: {path_separated_prefix: /v2/}
    route: {cluster: other, prefix_rewrite: /}
  - name: old
    match: {path_separated_prefix: /old}
    redirect: {prefix_rewrite: /new, scheme: https}
)yaml");
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const route::RouteTable* table = (*snapshot)->FindRouteTable("local");

  http::HeaderMap user = Request("x", "/USERS/42?full=1");
  user.Add("x-version", "v2");
  const route::RouteEntry* users = table->Match(user);
  ASSERT_NE(users, nullptr);
  EXPECT_EQ(users->name, "users");
  EXPECT_EQ(route::RewritePath(*users, "/USERS/42?full=1"), "/user?full=1");
  user.Set("x-version", "v3");
  EXPECT_EQ(table->Match(user), nullptr);

  const route::RouteEntry* search = table->Match(Request("x", "/s?q=abc&lang=en&debug"));
  ASSERT_NE(search, nullptr);
  EXPECT_EQ(search->name, "search");
  const route::RouteAction* action = search->route_action();
  ASSERT_EQ(action->extras->mirrors.size(), 2u);
  EXPECT_EQ(action->extras->mirrors[0].cluster, "other");
  EXPECT_EQ(action->extras->mirrors[0].fraction, 1.0);
  EXPECT_EQ(action->extras->mirrors[1].cluster, "backend");
  EXPECT_EQ(action->extras->mirrors[1].fraction, 0.125);
  EXPECT_EQ(table->Match(Request("x", "/s?q=ABC&lang=en&debug")), nullptr);

  const route::RouteEntry* v2 = table->Match(Request("x", "/v2/items"));
  ASSERT_NE(v2, nullptr);
  EXPECT_EQ(v2->name, "v2");
  EXPECT_EQ(v2->match.path, "/v2");  // the trailing '/' is not part of the segment prefix
  EXPECT_EQ(route::RewritePath(*v2, "/v2/items"), "/items");
  EXPECT_EQ(table->Match(Request("x", "/v2items")), nullptr);

  http::HeaderMap old = Request("x:8080", "/old/page?id=1");
  const route::RouteEntry* redirect = table->Match(old);
  ASSERT_NE(redirect, nullptr);
  ASSERT_NE(redirect->redirect(), nullptr);
  EXPECT_EQ(route::RedirectLocation(*redirect->redirect(), old, &redirect->match),
            "https://x/new/page?id=1");
}

// A route's CORS policy: origins compiled, values joined (header names lower-cased), the max age
// defaulted; "*" with credentials in expose_headers makes responses list their own names.
TEST(TranslateTest, CorsPolicy) {
  ResourceSet set = Base();
  set.routes.Mutable(0) = Parse<xds::RouteConfiguration>(R"yaml(
name: local
virtual_hosts:
- name: default
  domains: ["*"]
  routes:
  - name: api
    match: {path_separated_prefix: /api}
    route: {cluster: backend}
    cors:
      allow_origins: ["https://www.foo.com", "https://*.bar.com:8443"]
      allow_methods: [GET, OPTIONS]
      allow_headers: [X-Header-1, x-header-2]
      expose_headers: ["*", X-Total]
      allow_credentials: true
      max_age_seconds: 3600
  - name: any
    match: {prefix: /}
    route: {cluster: backend}
    cors: {allow_origins: ["*"], allow_methods: ["*"], allow_headers: ["*"]}
)yaml");
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const route::RouteTable* table = (*snapshot)->FindRouteTable("local");
  ASSERT_NE(table, nullptr);
  const route::RouteEntry* api = table->Match(Request("x", "/api/v1"));
  ASSERT_NE(api, nullptr);
  const route::CorsPolicy* cors = api->extras->cors.get();
  ASSERT_NE(cors, nullptr);
  EXPECT_TRUE(route::CorsOriginAllowed(*cors, "https://www.foo.com"));
  EXPECT_TRUE(route::CorsOriginAllowed(*cors, "https://a.b.bar.com:8443"));
  EXPECT_FALSE(route::CorsOriginAllowed(*cors, "https://a.bar.com"));  // port 443
  EXPECT_EQ(cors->allow_methods, "GET, OPTIONS");
  EXPECT_FALSE(cors->any_method);
  EXPECT_EQ(cors->allow_headers, "x-header-1, x-header-2");
  EXPECT_EQ(cors->expose_headers, "x-total");
  EXPECT_TRUE(cors->expose_response_names);
  EXPECT_TRUE(cors->allow_credentials);
  EXPECT_EQ(cors->max_age, "3600");
  const route::RouteEntry* any = table->Match(Request("x", "/other"));
  ASSERT_NE(any, nullptr);
  ASSERT_NE(any->extras->cors, nullptr);
  EXPECT_TRUE(any->extras->cors->any_method);
  EXPECT_TRUE(any->extras->cors->any_header);
  EXPECT_EQ(any->extras->cors->max_age, "5");
  EXPECT_TRUE(route::CorsOriginAllowed(*any->extras->cors, "null"));
}

TEST(TranslateTest, SessionPersistence) {
  ResourceSet set = Base();
  set.routes.Mutable(0) = Parse<xds::RouteConfiguration>(R"yaml(
name: local
virtual_hosts:
- name: default
  domains: ["*"]
  routes:
  - name: cart
    match: {path_separated_prefix: /cart/}
    route:
      weighted_clusters: {clusters: [{name: backend, weight: 1}, {name: other, weight: 1}]}
      session_persistence:
        absolute_timeout: 3600s
        idle_timeout: 600s
        cookie_lifetime: PERMANENT
  - name: api
    match: {safe_regex: "/api/.*"}
    route:
      cluster: backend
      session_persistence: {type: HEADER, name: X-Session, cookie_path: /ignored}
  - name: plain
    match: {prefix: /}
    route: {cluster: backend}
)yaml");
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const route::RouteTable* table = (*snapshot)->FindRouteTable("local");

  const route::RouteAction* cart = table->Match(Request("x", "/cart/1"))->route_action();
  ASSERT_NE(cart->session, nullptr);
  const route::SessionPersistence& cookie = *cart->session;
  EXPECT_EQ(cookie.type, route::SessionPersistence::Type::kCookie);
  EXPECT_EQ(cookie.name, "meshlet-session");
  EXPECT_EQ(cookie.absolute_timeout, 1h);
  EXPECT_EQ(cookie.idle_timeout, 10min);
  EXPECT_TRUE(cookie.permanent_cookie);
  EXPECT_EQ(cookie.cookie_path, "/cart");
  EXPECT_EQ(cookie.cluster_keys,
            (std::vector<uint64_t>{cluster::SessionKey("backend"), cluster::SessionKey("other")}));

  const route::RouteAction* api = table->Match(Request("x", "/api/v1"))->route_action();
  ASSERT_NE(api->session, nullptr);
  EXPECT_EQ(api->session->type, route::SessionPersistence::Type::kHeader);
  EXPECT_EQ(api->session->name, "x-session");
  EXPECT_EQ(api->session->cookie_path, "/ignored");
  EXPECT_EQ(api->session->absolute_timeout, Duration::zero());
  EXPECT_EQ(api->session->cluster_keys, (std::vector<uint64_t>{cluster::SessionKey("backend")}));

  EXPECT_EQ(table->Match(Request("x", "/other"))->route_action()->session, nullptr);
}

struct Nack {
  std::string name;
  std::function<void(ResourceSet&)> mutate;
  std::string expected;
};

class GatewayApiNackTest : public ::testing::TestWithParam<Nack> {};

TEST_P(GatewayApiNackTest, NamesRouteFieldAndReason) {
  ResourceSet set = Base();
  RouteAt(set, 0).set_name("api");
  GetParam().mutate(set);
  auto snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  EXPECT_EQ(snapshot.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(snapshot.status().message()), ::testing::HasSubstr(GetParam().expected));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, GatewayApiNackTest,
    ::testing::Values(
        Nack{"path_regex",
             [](ResourceSet& s) { RouteAt(s, 0).mutable_match()->set_safe_regex("/a(b"); },
             "route_config \"local\": virtual_hosts[0].routes[0].match.safe_regex: route \"api\": "
             "\"/a(b\" is not a valid RE2 pattern: missing ): /a(b"},
        Nack{"empty_path_regex",
             [](ResourceSet& s) { RouteAt(s, 0).mutable_match()->set_safe_regex(""); },
             "virtual_hosts[0].routes[0].match.safe_regex: route \"api\": must not be empty"},
        Nack{"header_regex",
             [](ResourceSet& s) {
               auto* header = RouteAt(s, 0).mutable_match()->add_headers();
               header->set_name("x-v");
               header->set_safe_regex("[z-a]");
             },
             "virtual_hosts[0].routes[0].match.headers[0].safe_regex: route \"api\": \"[z-a]\" "
             "is not a valid RE2 pattern: invalid character class range: z-a"},
        Nack{"query_regex",
             [](ResourceSet& s) {
               auto* query = RouteAt(s, 0).mutable_match()->add_query_parameters();
               query->set_name("id");
               query->set_safe_regex("*");
             },
             "virtual_hosts[0].routes[0].match.query_parameters[0].safe_regex: route \"api\": "
             "\"*\" is not a valid RE2 pattern: no argument for repetition operator: *"},
        Nack{"query_without_name",
             [](ResourceSet& s) {
               RouteAt(s, 0).mutable_match()->add_query_parameters()->set_exact("1");
             },
             "virtual_hosts[0].routes[0].match.query_parameters[0].name: must not be empty"},
        Nack{"query_without_match",
             [](ResourceSet& s) {
               RouteAt(s, 0).mutable_match()->add_query_parameters()->set_name("id");
             },
             "virtual_hosts[0].routes[0].match.query_parameters[0]: needs exact, safe_regex or "
             "present"},
        Nack{"destination_without_port",
             [](ResourceSet& s) {
               s.routes.Mutable(0).mutable_virtual_hosts(0)->add_destinations("10.96.0.5");
             },
             "virtual_hosts[0].destinations[0]: \"10.96.0.5\" is not an address with a port"},
        Nack{"gateway_listener_with_slash",
             [](ResourceSet& s) {
               s.routes.Mutable(0).mutable_virtual_hosts(0)->set_gateway_listener("a/b");
             },
             "virtual_hosts[0].gateway_listener: must be a name: not empty, without spaces, "
             "control characters or '/'"},
        Nack{"segment_prefix_without_slash",
             [](ResourceSet& s) { RouteAt(s, 0).mutable_match()->set_path_separated_prefix("v2"); },
             "virtual_hosts[0].routes[0].match.path_separated_prefix: must start with '/'"},
        Nack{"path_rewrite_with_prefix_rewrite",
             [](ResourceSet& s) {
               RouteAt(s, 0).mutable_route()->set_path_rewrite("/x");
               RouteAt(s, 0).mutable_route()->set_prefix_rewrite("/y");
             },
             "virtual_hosts[0].routes[0].route.path_rewrite: excludes prefix_rewrite"},
        Nack{"path_rewrite_with_query",
             [](ResourceSet& s) { RouteAt(s, 0).mutable_route()->set_path_rewrite("/x?y"); },
             "virtual_hosts[0].routes[0].route.path_rewrite: must not contain a query string"},
        Nack{"prefix_rewrite_after_regex",
             [](ResourceSet& s) {
               RouteAt(s, 0).mutable_match()->set_safe_regex("/a.*");
               RouteAt(s, 0).mutable_route()->set_prefix_rewrite("/y");
             },
             "virtual_hosts[0].routes[0].route.prefix_rewrite: needs a prefix, path or "
             "path_separated_prefix match"},
        Nack{"redirect_path_with_prefix_rewrite",
             [](ResourceSet& s) {
               RouteAt(s, 0).mutable_redirect()->set_path("/x");
               RouteAt(s, 0).mutable_redirect()->set_prefix_rewrite("/y");
             },
             "virtual_hosts[0].routes[0].redirect.prefix_rewrite: excludes path"},
        Nack{"redirect_prefix_rewrite_without_slash",
             [](ResourceSet& s) { RouteAt(s, 0).mutable_redirect()->set_prefix_rewrite("y"); },
             "virtual_hosts[0].routes[0].redirect.prefix_rewrite: must start with '/'"},
        Nack{"mirror_unknown_cluster",
             [](ResourceSet& s) {
               RouteAt(s, 0).mutable_route()->add_request_mirror_policies()->set_cluster("ghost");
             },
             "route_config \"local\": virtual_hosts[0].routes[0].route.request_mirror_policies[0]."
             "cluster \"ghost\" names no Cluster"},
        Nack{"mirror_without_cluster",
             [](ResourceSet& s) { RouteAt(s, 0).mutable_route()->add_request_mirror_policies(); },
             "virtual_hosts[0].routes[0].route.request_mirror_policies[0].cluster: must not be "
             "empty"},
        Nack{"mirror_percent",
             [](ResourceSet& s) {
               auto* mirror = RouteAt(s, 0).mutable_route()->add_request_mirror_policies();
               mirror->set_cluster("other");
               mirror->mutable_percent()->set_value(150);
             },
             "virtual_hosts[0].routes[0].route.request_mirror_policies[0].percent: must be in "
             "[0, 100]"},
        Nack{"cors_origin_pattern",
             [](ResourceSet& s) {
               RouteAt(s, 0).mutable_cors()->add_allow_origins("https://www.*.com");
             },
             "virtual_hosts[0].routes[0].cors.allow_origins[0]: \"https://www.*.com\" is not an "
             "origin pattern (a wildcard may only be the whole host or its first label"},
        Nack{"cors_origin_scheme",
             [](ResourceSet& s) { RouteAt(s, 0).mutable_cors()->add_allow_origins("ftp://a.b"); },
             "cors.allow_origins[0]: \"ftp://a.b\" is not an origin pattern (the scheme must be "
             "http or https"},
        Nack{"cors_star_with_others",
             [](ResourceSet& s) {
               RouteAt(s, 0).mutable_cors()->add_allow_origins("https://a.b");
               RouteAt(s, 0).mutable_cors()->add_allow_origins("*");
             },
             "cors.allow_origins[1]: \"*\" excludes every other origin"},
        Nack{"cors_method",
             [](ResourceSet& s) { RouteAt(s, 0).mutable_cors()->add_allow_methods("GE T"); },
             "cors.allow_methods[0]: \"GE T\" is not a method"},
        Nack{"cors_header_star_with_others",
             [](ResourceSet& s) {
               RouteAt(s, 0).mutable_cors()->add_allow_headers("*");
               RouteAt(s, 0).mutable_cors()->add_allow_headers("x-a");
             },
             "cors.allow_headers[0]: \"*\" excludes every other value"},
        Nack{"session_name",
             [](ResourceSet& s) {
               RouteAt(s, 0).mutable_route()->mutable_session_persistence()->set_name("a b");
             },
             "virtual_hosts[0].routes[0].route.session_persistence.name: \"a b\" is not a cookie "
             "name (a token of at most 128 characters)"},
        Nack{"session_permanent_without_timeout",
             [](ResourceSet& s) {
               RouteAt(s, 0).mutable_route()->mutable_session_persistence()->set_cookie_lifetime(
                   xds::SessionPersistence::PERMANENT);
             },
             "virtual_hosts[0].routes[0].route.session_persistence.absolute_timeout: required "
             "with cookie_lifetime PERMANENT"},
        Nack{"session_cookie_path",
             [](ResourceSet& s) {
               RouteAt(s, 0).mutable_route()->mutable_session_persistence()->set_cookie_path(
                   "/a;b");
             },
             "virtual_hosts[0].routes[0].route.session_persistence.cookie_path: \"/a;b\" must "
             "start with '/' and hold no spaces, control characters or ';'"},
        Nack{"session_negative_timeout",
             [](ResourceSet& s) {
               RouteAt(s, 0)
                   .mutable_route()
                   ->mutable_session_persistence()
                   ->mutable_idle_timeout()
                   ->set_seconds(-1);
             },
             "virtual_hosts[0].routes[0].route.session_persistence.idle_timeout"}),
    [](const ::testing::TestParamInfo<Nack>& info) { return info.param.name; });

}  // namespace
}  // namespace meshlet::sidecar::config

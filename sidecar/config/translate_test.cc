// BuildSnapshot as a whole: every kind's errors named by resource and field, all of them at
// once, reuse of an earlier snapshot's translations, defaults, versions and the config dump.
#include "sidecar/config/translate.h"

#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/net/address.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sidecar/config/translate_internal.h"
#include "sidecar/config/translate_test_util.h"
#include "sidecar/listener/destination_matcher.h"
#include "sidecar/route/route_table.h"

namespace meshlet::sidecar::config {
namespace {

using namespace ::meshlet::sidecar::config::translate_testing;  // NOLINT: the fixtures
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

TEST(TranslateTest, BaseIsValid) {
  absl::StatusOr<std::shared_ptr<const Snapshot>> snapshot = BuildSnapshot(Base());
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_EQ((*snapshot)->listeners.size(), 3u);
  ASSERT_NE((*snapshot)->FindCluster("eds-cluster"), nullptr);
  ASSERT_EQ((*snapshot)->FindCluster("eds-cluster")->endpoints.size(), 1u);
  EXPECT_EQ((*snapshot)->FindCluster("eds-cluster")->endpoints[0].address.ToString(),
            "127.0.0.1:9090");
}

struct InvalidCase {
  std::string name;
  std::function<void(ResourceSet&)> mutate;
  std::string expected;  // a fragment of the message: resource + field path + reason
};

std::string AddressError(absl::string_view text) {
  absl::StatusOr<net::Address> address = net::Address::Parse(text);
  EXPECT_FALSE(address.ok());
  return std::string(address.status().message());
}

std::vector<InvalidCase> InvalidCases() {
  return {
      {"connect_timeout_zero",
       [](ResourceSet& s) { s.clusters.Mutable(0).mutable_connect_timeout()->set_seconds(0); },
       "cluster \"backend\": connect_timeout: must be greater than 0"},
      {"weights_sum_to_zero",
       [](ResourceSet& s) {
         auto* wc = RouteAt(s, 1).mutable_route()->mutable_weighted_clusters();
         wc->mutable_clusters(0)->set_weight(0);
         wc->mutable_clusters(1)->set_weight(0);
       },
       "route_config \"local\": virtual_hosts[0].routes[1].route.weighted_clusters: weights sum "
       "to 0"},
      {"unknown_route_config",
       [](ResourceSet& s) { s.listeners.Mutable(0).set_route_config_name("x"); },
       "listener \"outbound\": route_config_name \"x\" names no RouteConfiguration"},
      {"duplicate_cluster", [](ResourceSet& s) { s.clusters.push_back(s.clusters[0]); },
       "cluster \"backend\": duplicate name (clusters[0] and clusters[3])"},
      {"duplicate_listener_name",
       [](ResourceSet& s) { s.listeners.Mutable(2).set_name("outbound"); },
       "listener \"outbound\": duplicate name (listeners[0] and listeners[2])"},
      {"bad_listener_address",
       [](ResourceSet& s) { s.listeners.Mutable(0).set_address("127.0.0.1"); },
       "listener \"outbound\": address: " + AddressError("127.0.0.1")},
      {"bad_endpoint_address",
       [](ResourceSet& s) {
         s.clusters.Mutable(0).mutable_load_assignment()->mutable_endpoints(0)->set_address(
             "10.0.0.300:80");
       },
       "cluster \"backend\": load_assignment.endpoints[0].address: " +
           AddressError("10.0.0.300:80")},
      {"endpoint_without_port",
       [](ResourceSet& s) {
         s.clusters.Mutable(0).mutable_load_assignment()->mutable_endpoints(0)->set_address(
             "10.0.0.1:0");
       },
       "cluster \"backend\": load_assignment.endpoints[0].address: \"10.0.0.1:0\": needs a port"},
      {"endpoint_identity_not_spiffe",
       [](ResourceSet& s) {
         s.endpoints.Mutable(0).mutable_endpoints(0)->set_identity("spiffe://Cluster.Local/ns/a");
       },
       "cluster_load_assignment \"eds-cluster\": endpoints[0].identity: "
       "\"spiffe://Cluster.Local/ns/a\" is not "
       "a SPIFFE id (spiffe://...)"},
      {"plaintext_endpoint_with_identity",
       [](ResourceSet& s) {
         xds::Endpoint* e = s.endpoints.Mutable(0).mutable_endpoints(0);
         e->set_plaintext(true);
         e->set_identity("spiffe://cluster.local/ns/a/sa/b");
       },
       "cluster_load_assignment \"eds-cluster\": endpoints[0].plaintext: excludes identity: a "
       "plaintext "
       "endpoint presents no identity to check"},
      {"duplicate_domain_across_vhosts",
       [](ResourceSet& s) {
         xds::VirtualHost* vh = s.routes.Mutable(0).add_virtual_hosts();
         vh->set_name("second");
         vh->add_domains("*");
       },
       "route_config \"local\": virtual_hosts[1].domains[0]: \"*\" is already a domain of "
       "virtual host \"default\" (virtual_hosts[0])"},
      {"unknown_retry_on",
       [](ResourceSet& s) {
         s.routes.Mutable(0).mutable_virtual_hosts(0)->mutable_retry_policy()->add_retry_on(
             "sometimes");
       },
       "route_config \"local\": virtual_hosts[0].retry_policy.retry_on[0]: unknown value "
       "\"sometimes\"; valid values: connect-failure, refused-stream, reset, 5xx, gateway-error, "
       "retriable-status-codes, cancelled, deadline-exceeded, internal, resource-exhausted, "
       "unavailable"},
      {"fault_percentage_out_of_range",
       [](ResourceSet& s) {
         auto* abort = RouteAt(s, 0).mutable_fault()->mutable_abort();
         abort->set_http_status(503);
         abort->set_percentage(150);
       },
       "route_config \"local\": virtual_hosts[0].routes[0].fault.abort.percentage: must be in "
       "[0, 100]"},
      {"route_names_unknown_cluster",
       [](ResourceSet& s) { RouteAt(s, 0).mutable_route()->set_cluster("nope"); },
       "route_config \"local\": virtual_hosts[0].routes[0].route.cluster \"nope\" names no "
       "Cluster"},
      {"weighted_cluster_unknown",
       [](ResourceSet& s) {
         RouteAt(s, 1).mutable_route()->mutable_weighted_clusters()->mutable_clusters(1)->set_name(
             "gone");
       },
       "route_config \"local\": virtual_hosts[0].routes[1].route.weighted_clusters.clusters[1]."
       "name \"gone\" names no Cluster"},
      {"weighted_cluster_pseudo_header",
       [](ResourceSet& s) {
         auto* add = RouteAt(s, 1)
                         .mutable_route()
                         ->mutable_weighted_clusters()
                         ->mutable_clusters(0)
                         ->add_request_headers_to_add();
         add->set_name(":path");
         add->set_value("/x");
       },
       "route_config \"local\": virtual_hosts[0].routes[1].route.weighted_clusters.clusters[0]."
       "request_headers_to_add[0].name: \":path\": pseudo-headers cannot be changed this way"},
      {"strict_tls_without_secret",
       [](ResourceSet& s) { s.listeners.Mutable(1).mutable_tls()->clear_secret_name(); },
       "listener \"inbound\": tls.secret_name: required when mode is STRICT"},
      {"tls_unknown_secret",
       [](ResourceSet& s) { s.listeners.Mutable(1).mutable_tls()->set_secret_name("nope"); },
       "listener \"inbound\": tls.secret_name \"nope\" names no Secret"},
      {"workload_certificate_and_secret",
       [](ResourceSet& s) { s.listeners.Mutable(1).mutable_tls()->set_workload_certificate(true); },
       "listener \"inbound\": tls.workload_certificate: excludes tls.secret_name"},
      {"upstream_workload_certificate_and_ca_file",
       [](ResourceSet& s) {
         s.clusters.Mutable(0).mutable_tls()->set_enabled(true);
         s.clusters.Mutable(0).mutable_tls()->set_workload_certificate(true);
         s.clusters.Mutable(0).mutable_tls()->set_ca_file("ca.pem");
       },
       "cluster \"backend\": tls.workload_certificate: excludes tls.ca_file"},
      {"tls_bad_peer_id",
       [](ResourceSet& s) {
         s.listeners.Mutable(1).mutable_tls()->add_allowed_peer_ids("frontend");
       },
       "listener \"inbound\": tls.allowed_peer_ids[0]: \"frontend\" is not a SPIFFE id"},
      {"empty_listener_name", [](ResourceSet& s) { s.listeners.Mutable(0).clear_name(); },
       "listeners[0]: name: must not be empty"},
      {"static_cluster_without_endpoints",
       [](ResourceSet& s) { s.clusters.Mutable(0).clear_load_assignment(); },
       "cluster \"backend\": load_assignment.endpoints: a STATIC cluster needs at least one "
       "endpoint"},
      {"eds_cluster_with_inline_endpoints",
       [](ResourceSet& s) {
         s.clusters.Mutable(2).mutable_load_assignment()->add_endpoints()->set_address(
             "127.0.0.1:1");
       },
       "cluster \"eds-cluster\": load_assignment: not used with type EDS"},
      {"dns_cluster_bad_hostname",
       [](ResourceSet& s) {
         s.clusters.Mutable(2).set_type(xds::Cluster::DNS);
         s.clusters.Mutable(2).mutable_dns()->set_hostname("api partner.example");
         s.clusters.Mutable(2).mutable_dns()->set_port(443);
       },
       "cluster \"eds-cluster\": dns.hostname: \"api partner.example\" is not a DNS name"},
      {"dns_cluster_port_out_of_range",
       [](ResourceSet& s) {
         s.clusters.Mutable(2).set_type(xds::Cluster::DNS);
         s.clusters.Mutable(2).mutable_dns()->set_hostname("api.partner.example.");
         s.clusters.Mutable(2).mutable_dns()->set_port(70000);
       },
       "cluster \"eds-cluster\": dns.port: 70000 is not a port from 1 to 65535"},
      {"dns_cluster_refresh_bounds_reversed",
       [](ResourceSet& s) {
         s.clusters.Mutable(2).set_type(xds::Cluster::DNS);
         auto* dns = s.clusters.Mutable(2).mutable_dns();
         dns->set_hostname("api.partner.example");
         dns->set_port(443);
         dns->mutable_min_refresh()->set_seconds(60);
         dns->mutable_max_refresh()->set_seconds(10);
       },
       "cluster \"eds-cluster\": dns.max_refresh: is shorter than dns.min_refresh"},
      {"dns_without_type_dns",
       [](ResourceSet& s) { s.clusters.Mutable(0).mutable_dns()->set_hostname("a.example"); },
       "cluster \"backend\": dns: only with type DNS"},
      {"assignment_for_unknown_cluster",
       [](ResourceSet& s) { s.endpoints.Mutable(0).set_cluster_name("ghost"); },
       "cluster_load_assignment \"ghost\": cluster_name \"ghost\" names no Cluster"},
      {"assignment_for_static_cluster",
       [](ResourceSet& s) { s.endpoints.Mutable(0).set_cluster_name("backend"); },
       "cluster_load_assignment \"backend\": cluster_name \"backend\" names a STATIC cluster"},
      {"tcp_listener_without_cluster",
       [](ResourceSet& s) { s.listeners.Mutable(2).clear_tcp_cluster(); },
       "listener \"tcp\": tcp_cluster: required with protocol TCP"},
      {"tcp_listener_unknown_cluster",
       [](ResourceSet& s) { s.listeners.Mutable(2).set_tcp_cluster("nope"); },
       "listener \"tcp\": tcp_cluster \"nope\" names no Cluster"},
      {"http_listener_without_routes",
       [](ResourceSet& s) { s.listeners.Mutable(0).clear_route_config_name(); },
       "listener \"outbound\": route_config_name: required with protocol HTTP"},
      {"duplicate_listener_address",
       [](ResourceSet& s) { s.listeners.Mutable(1).set_address("127.0.0.1:15001"); },
       "listener \"inbound\": address: \"127.0.0.1:15001\" is already used by listener "
       "\"outbound\""},
      {"match_without_path",
       [](ResourceSet& s) { RouteAt(s, 0).mutable_match()->clear_path_specifier(); },
       "route_config \"local\": virtual_hosts[0].routes[0].match: needs prefix, path, safe_regex "
       "or "
       "path_separated_prefix"},
      {"prefix_without_slash",
       [](ResourceSet& s) { RouteAt(s, 0).mutable_match()->set_prefix("api"); },
       "route_config \"local\": virtual_hosts[0].routes[0].match.prefix: must start with '/'"},
      {"route_without_action", [](ResourceSet& s) { RouteAt(s, 0).clear_route(); },
       "route_config \"local\": virtual_hosts[0].routes[0]: needs one of route, redirect, "
       "direct_response"},
      {"redirect_bad_code",
       [](ResourceSet& s) {
         auto* redirect = RouteAt(s, 0).mutable_redirect();
         redirect->set_scheme("https");
         redirect->set_response_code(200);
       },
       "route_config \"local\": virtual_hosts[0].routes[0].redirect.response_code: must be 301, "
       "302, 303, 307 or 308"},
      {"redirect_to_itself", [](ResourceSet& s) { RouteAt(s, 0).mutable_redirect(); },
       "route_config \"local\": virtual_hosts[0].routes[0].redirect: needs at least one of host, "
       "path, prefix_rewrite, scheme, port"},
      {"direct_response_bad_status",
       [](ResourceSet& s) { RouteAt(s, 0).mutable_direct_response()->set_status(42); },
       "route_config \"local\": virtual_hosts[0].routes[0].direct_response.status: must be in "
       "[200, 599]"},
      {"pseudo_header_mutation",
       [](ResourceSet& s) {
         auto* h = s.routes.Mutable(0).mutable_virtual_hosts(0)->add_request_headers_to_add();
         h->set_name(":path");
         h->set_value("/x");
       },
       "route_config \"local\": virtual_hosts[0].request_headers_to_add[0].name: \":path\": "
       "pseudo-headers cannot be changed this way"},
      {"header_value_with_newline",
       [](ResourceSet& s) {
         auto* h = RouteAt(s, 2).add_response_headers_to_add();
         h->set_name("x-a");
         h->set_value("a\r\nb");
       },
       "route_config \"local\": virtual_hosts[0].routes[2].response_headers_to_add[0].value: must "
       "not contain CR, LF or NUL"},
      {"header_matcher_without_kind",
       [](ResourceSet& s) { RouteAt(s, 0).mutable_match()->add_headers()->set_name("x-a"); },
       "route_config \"local\": virtual_hosts[0].routes[0].match.headers[0]: needs exact, prefix, "
       "safe_regex or present"},
      {"bad_method", [](ResourceSet& s) { RouteAt(s, 0).mutable_match()->add_methods("GE T"); },
       "route_config \"local\": virtual_hosts[0].routes[0].match.methods[0]: \"GE T\" is not a "
       "method"},
      {"vhost_without_domains",
       [](ResourceSet& s) { s.routes.Mutable(0).mutable_virtual_hosts(0)->clear_domains(); },
       "route_config \"local\": virtual_hosts[0].domains: must not be empty"},
      {"negative_route_timeout",
       [](ResourceSet& s) { RouteAt(s, 0).mutable_route()->mutable_timeout()->set_seconds(-1); },
       "route_config \"local\": virtual_hosts[0].routes[0].route.timeout: must not be negative"},
      {"backoff_cap_below_base",
       [](ResourceSet& s) {
         auto* policy = RouteAt(s, 0).mutable_route()->mutable_retry_policy();
         policy->mutable_base_interval()->set_seconds(1);
         policy->mutable_max_interval()->set_nanos(100'000'000);
       },
       "route_config \"local\": virtual_hosts[0].routes[0].route.retry_policy: max_interval: "
       "must be at least base_interval"},
      {"rate_limit_empty", [](ResourceSet& s) { RouteAt(s, 0).mutable_rate_limit(); },
       "route_config \"local\": virtual_hosts[0].routes[0].rate_limit: needs requests_per_second "
       "or burst"},
      {"fault_delay_without_duration",
       [](ResourceSet& s) { RouteAt(s, 0).mutable_fault()->mutable_delay()->set_percentage(5); },
       "route_config \"local\": virtual_hosts[0].routes[0].fault.delay.fixed_delay: required"},
      {"outlier_percent_out_of_range",
       [](ResourceSet& s) {
         s.clusters.Mutable(0)
             .mutable_outlier_detection()
             ->mutable_max_ejection_percent()
             ->set_value(150);
       },
       "cluster \"backend\": outlier_detection: max_ejection_percent: must be in [0, 100]"},
      {"retry_budget_percent_out_of_range",
       [](ResourceSet& s) {
         s.clusters.Mutable(0)
             .mutable_circuit_breakers()
             ->mutable_retry_budget()
             ->set_budget_percent(250);
       },
       "cluster \"backend\": circuit_breakers.retry_budget.budget_percent: must be in [0, 100]"},
      {"zero_max_connections",
       [](ResourceSet& s) {
         s.clusters.Mutable(0).mutable_circuit_breakers()->mutable_max_connections()->set_value(0);
       },
       "cluster \"backend\": circuit_breakers.max_connections: must be greater than 0"},
      {"health_check_without_kind",
       [](ResourceSet& s) { s.clusters.Mutable(0).mutable_health_check(); },
       "cluster \"backend\": health_check: needs http or tcp"},
      {"upstream_tls_unknown_secret",
       [](ResourceSet& s) {
         s.clusters.Mutable(0).mutable_tls()->set_enabled(true);
         s.clusters.Mutable(0).mutable_tls()->set_secret_name("nope");
       },
       "cluster \"backend\": tls.secret_name \"nope\" names no Secret"},
      {"upstream_tls_subject_alt_name_not_a_host",
       [](ResourceSet& s) {
         xds::UpstreamTls* tls = s.clusters.Mutable(0).mutable_tls();
         tls->set_enabled(true);
         tls->set_secret_name("mesh-cert");
         tls->set_sni("abc.example.com");
         tls->add_subject_alt_names()->set_dns("a b.example.com");
       },
       "cluster \"backend\": tls.subject_alt_names[0].dns: \"a b.example.com\" is not a host name"},
      {"upstream_tls_subject_alt_name_not_a_uri",
       [](ResourceSet& s) {
         xds::UpstreamTls* tls = s.clusters.Mutable(0).mutable_tls();
         tls->set_enabled(true);
         tls->set_secret_name("mesh-cert");
         tls->add_subject_alt_names()->set_dns("*.example.com");
         tls->add_subject_alt_names()->set_uri("no-scheme");
       },
       "cluster \"backend\": tls.subject_alt_names[1].uri: \"no-scheme\" is not a URI"},
      {"upstream_tls_subject_alt_name_empty",
       [](ResourceSet& s) {
         xds::UpstreamTls* tls = s.clusters.Mutable(0).mutable_tls();
         tls->set_enabled(true);
         tls->set_secret_name("mesh-cert");
         tls->set_sni("abc.example.com");
         tls->add_subject_alt_names();
       },
       "cluster \"backend\": tls.subject_alt_names[0]: sets neither dns nor uri"},
      {"upstream_tls_subject_alt_names_of_a_mesh_upstream",
       [](ResourceSet& s) {
         xds::UpstreamTls* tls = s.clusters.Mutable(0).mutable_tls();
         tls->set_enabled(true);
         tls->set_secret_name("mesh-cert");
         tls->add_expected_peer_ids("spiffe://cluster.local/ns/default/sa/backend");
         tls->add_subject_alt_names()->set_dns("abc.example.com");
       },
       "cluster \"backend\": tls.subject_alt_names: applies to non-mesh upstreams only"},
      {"cluster_alpn_without_its_protocol",
       [](ResourceSet& s) {
         xds::Cluster& c = s.clusters.Mutable(0);
         c.set_protocol(xds::UPSTREAM_HTTP2);
         c.mutable_tls()->set_enabled(true);
         c.mutable_tls()->set_secret_name("mesh-cert");
         c.mutable_tls()->add_alpn("http/1.1");
       },
       "cluster \"backend\": tls.alpn: must contain \"h2\" for protocol UPSTREAM_HTTP2"},
      {"secret_cert_without_key",
       [](ResourceSet& s) { s.secrets.Mutable(0).clear_private_key_pem(); },
       "secret \"mesh-cert\": private_key_pem: required with a certificate chain"},
      {"secret_inline_and_file",
       [](ResourceSet& s) { s.secrets.Mutable(0).set_trust_bundle_file("ca.pem"); },
       "secret \"mesh-cert\": trust_bundle_pem and trust_bundle_file: set only one"},
      {"secret_file_missing",
       [](ResourceSet& s) {
         s.secrets.Mutable(0).clear_trust_bundle_pem();
         s.secrets.Mutable(0).set_trust_bundle_file("/nonexistent/ca.pem");
       },
       "secret \"mesh-cert\": trust_bundle_file: cannot read \"/nonexistent/ca.pem\""},
      {"secret_not_pem", [](ResourceSet& s) { s.secrets.Mutable(0).set_trust_bundle_pem("hello"); },
       "secret \"mesh-cert\": trust_bundle_pem: holds no PEM block"},
      {"http_option_too_large",
       [](ResourceSet& s) {
         s.listeners.Mutable(0).mutable_http()->set_max_request_headers_kb(100000);
       },
       "listener \"outbound\": http.max_request_headers_kb: must be at most 8192"},
      {"detect_timeout_zero",
       [](ResourceSet& s) { s.listeners.Mutable(0).mutable_detect_timeout()->set_seconds(0); },
       "listener \"outbound\": detect_timeout: must be greater than 0"},
      {"tls_handshake_timeout_negative",
       [](ResourceSet& s) {
         s.listeners.Mutable(0).mutable_tls_handshake_timeout()->set_seconds(-1);
       },
       "listener \"outbound\": tls_handshake_timeout: must be greater than 0"},
      {"tcp_idle_timeout_negative",
       [](ResourceSet& s) { s.listeners.Mutable(0).mutable_tcp_idle_timeout()->set_seconds(-5); },
       "listener \"outbound\": tcp_idle_timeout: must not be negative"},
      {"unknown_enum_value",
       [](ResourceSet& s) { s.clusters.Mutable(0).set_lb_policy(static_cast<xds::LbPolicy>(42)); },
       "cluster \"backend\": lb_policy: unknown value 42"},
  };
}

class InvalidConfigTest : public ::testing::TestWithParam<InvalidCase> {};

TEST_P(InvalidConfigTest, NamesResourceFieldAndReason) {
  ResourceSet set = Base();
  GetParam().mutate(set);
  absl::StatusOr<std::shared_ptr<const Snapshot>> snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  EXPECT_EQ(snapshot.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(snapshot.status().message()), HasSubstr(GetParam().expected));
}

// Reuse of the previous snapshot must never hide an error: the same change, built on top of a
// valid snapshot of the base set, is refused with the same message.
TEST_P(InvalidConfigTest, RefusedTheSameOnTopOfAValidSnapshot) {
  ResourceSet set = Base();
  absl::StatusOr<std::shared_ptr<const Snapshot>> running = BuildSnapshot(set);
  ASSERT_TRUE(running.ok()) << running.status();
  GetParam().mutate(set);
  absl::StatusOr<std::shared_ptr<const Snapshot>> fresh = BuildSnapshot(set);
  absl::StatusOr<std::shared_ptr<const Snapshot>> on_top = BuildSnapshot(set, running->get());
  ASSERT_FALSE(on_top.ok());
  EXPECT_EQ(on_top.status(), fresh.status());
}

INSTANTIATE_TEST_SUITE_P(Cases, InvalidConfigTest, ::testing::ValuesIn(InvalidCases()),
                         [](const auto& info) { return info.param.name; });

TEST(TranslateTest, ReportsEveryErrorOnePerLine) {
  ResourceSet set = Base();
  set.clusters.Mutable(0).mutable_connect_timeout()->set_seconds(0);
  set.listeners.Mutable(0).set_route_config_name("x");
  absl::StatusOr<std::shared_ptr<const Snapshot>> snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  EXPECT_EQ(snapshot.status().message(),
            "cluster \"backend\": connect_timeout: must be greater than 0\n"
            "listener \"outbound\": route_config_name \"x\" names no RouteConfiguration");
}

TEST(TranslateTest, ManyErrorsAreCapped) {
  ResourceSet set = Base();
  for (int i = 0; i < 30; ++i) {
    xds::Cluster cluster;
    cluster.set_name(absl::StrCat("c", i));
    set.clusters.push_back(cluster);  // STATIC without endpoints: one error each
  }
  absl::StatusOr<std::shared_ptr<const Snapshot>> snapshot = BuildSnapshot(set);
  ASSERT_FALSE(snapshot.ok());
  EXPECT_THAT(std::string(snapshot.status().message()), HasSubstr("\n(and 10 more errors)"));
}

TEST(TranslateReuseTest, UnchangedClustersAndRouteTablesAreTakenFromThePreviousSnapshot) {
  ResourceSet set = Base();
  absl::StatusOr<std::shared_ptr<const Snapshot>> first = BuildSnapshot(set);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(TranslationReuseOf(**first).clusters, 0u);

  // Only the route changes (an xDS route update): every cluster is the one translated before.
  RouteAt(set, 0).mutable_match()->set_prefix("/changed");
  absl::StatusOr<std::shared_ptr<const Snapshot>> second = BuildSnapshot(set, first->get());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(TranslationReuseOf(**second).clusters, 3u);
  EXPECT_EQ(TranslationReuseOf(**second).route_tables, 0u);
  for (const char* name : {"backend", "other", "eds-cluster"}) {
    EXPECT_EQ((*second)->clusters.at(name), (*first)->clusters.at(name)) << name;
  }
  EXPECT_NE((*second)->route_tables.at("local"), (*first)->route_tables.at("local"));
  EXPECT_NE((*second)->route_tables.at("local")->Match(Request("x", "/changed")), nullptr);
  EXPECT_EQ((*first)->route_tables.at("local")->Match(Request("x", "/changed")),
            (*first)->route_tables.at("local")->Match(Request("x", "/other")));  // the catch-all

  // Nothing changed: the route table is reused too.
  absl::StatusOr<std::shared_ptr<const Snapshot>> third = BuildSnapshot(set, second->get());
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(TranslationReuseOf(**third).route_tables, 1u);
  EXPECT_EQ((*third)->route_tables.at("local"), (*second)->route_tables.at("local"));
}

// Clusters svc-00000, svc-00002, ... (EDS, even numbers, so others fit between) with their load
// assignments, in name order as the xDS client lists them.
xds::Cluster EdsCluster(int i) {
  return Parse<xds::Cluster>(absl::StrFormat("name: svc-%05d\ntype: EDS\n", i));
}
xds::ClusterLoadAssignment AssignmentOf(int i, int port) {
  return Parse<xds::ClusterLoadAssignment>(
      absl::StrFormat("cluster_name: svc-%05d\nendpoints:\n- address: 127.0.0.1:%d\n", i, port));
}
ResourceSet EdsSet(int count) {
  ResourceSet set;
  for (int i = 0; i < count; ++i) {
    set.clusters.push_back(EdsCluster(2 * i));
    set.endpoints.push_back(AssignmentOf(2 * i, 8000));
  }
  return set;
}
// `list` with `message` at position `at`, the others shared.
template <typename Message>
ResourceList<Message> InsertedAt(const ResourceList<Message>& list, size_t at, Message message) {
  ResourceList<Message> out;
  for (size_t i = 0; i < list.size(); ++i) {
    if (i == at) out.push_back(std::move(message));
    out.push_back(list.shared(i));
  }
  if (at >= list.size()) out.push_back(std::move(message));
  return out;
}

// An answered lookup adds a Service's clusters and assignments: the build looks at those, not at
// every cluster the sidecar holds, and takes the others from the running snapshot.
TEST(TranslateReuseTest, AddedClustersCostWhatIsAddedNotWhatIsHeld) {
  for (int held : {10, 1000}) {
    SCOPED_TRACE(held);
    const ResourceSet set = EdsSet(held);
    absl::StatusOr<std::shared_ptr<const Snapshot>> first = BuildSnapshot(set);
    ASSERT_TRUE(first.ok()) << first.status();
    EXPECT_EQ(TranslationReuseOf(**first).clusters_examined, static_cast<size_t>(held));

    // A cluster in the middle, then its assignment (two responses, two builds).
    ResourceSet added = set;
    added.clusters = InsertedAt(set.clusters, 5, EdsCluster(9));
    absl::StatusOr<std::shared_ptr<const Snapshot>> second = BuildSnapshot(added, first->get());
    ASSERT_TRUE(second.ok()) << second.status();
    EXPECT_EQ(TranslationReuseOf(**second).clusters_examined, 1u);
    EXPECT_EQ(TranslationReuseOf(**second).clusters, static_cast<size_t>(held));
    EXPECT_EQ(ChangedClusters(**first), nullptr);  // built whole
    ASSERT_NE(ChangedClusters(**second), nullptr);
    EXPECT_THAT(*ChangedClusters(**second), ElementsAre("svc-00009"));
    // The snapshot's set is derived from the running one: comparing the two visits the path to
    // the added name (a treap's depth), not every cluster held.
    std::vector<std::string> differ;
    const size_t compared = cluster::ClusterSet::Diff(
        (*first)->clusters, (*second)->clusters,
        [&](const std::string& name, const auto*, const auto*) { differ.push_back(name); });
    EXPECT_THAT(differ, ElementsAre("svc-00009"));
    EXPECT_LT(compared, 80u);
    // So are the memo's clusters and cluster names: the build shares every entry it did not
    // change with the previous memo instead of copying them.
    const TranslationMemo& memo_before = *(*first)->translation_memo;
    const TranslationMemo& memo_after = *(*second)->translation_memo;
    std::vector<std::string> memo_differ;
    EXPECT_LT(PersistentMap<TranslationMemo::Cluster>::Diff(
                  memo_before.clusters, memo_after.clusters,
                  [&](const std::string& name, const auto*, const auto*) {
                    memo_differ.push_back(name);
                  }),
              80u);
    EXPECT_THAT(memo_differ, ElementsAre("svc-00009"));
    memo_differ.clear();
    EXPECT_LT(NameSet::Diff(memo_before.cluster_names, memo_after.cluster_names,
                            [&](const std::string& name, const NameOnly*, const NameOnly*) {
                              memo_differ.push_back(name);
                            }),
              80u);
    EXPECT_THAT(memo_differ, ElementsAre("svc-00009"));
    // For a holder of the snapshot they changed from, and no other.
    EXPECT_EQ(ChangedClustersSince(**second, first->get()), ChangedClusters(**second));
    EXPECT_EQ(ChangedClustersSince(**second, second->get()), nullptr);
    EXPECT_EQ(ChangedClustersSince(**second, nullptr), nullptr);
    EXPECT_EQ(ChangedClustersSince(**first, nullptr), nullptr);
    added.endpoints = InsertedAt(set.endpoints, 5, AssignmentOf(9, 9009));
    absl::StatusOr<std::shared_ptr<const Snapshot>> third = BuildSnapshot(added, second->get());
    ASSERT_TRUE(third.ok()) << third.status();
    EXPECT_EQ(TranslationReuseOf(**third).clusters_examined, 1u);

    // The same snapshot as a build from nothing, sharing every cluster it did not change.
    absl::StatusOr<std::shared_ptr<const Snapshot>> fresh = BuildSnapshot(added);
    ASSERT_TRUE(fresh.ok()) << fresh.status();
    ASSERT_EQ((*third)->clusters.size(), (*fresh)->clusters.size());
    for (const auto& [name, config] : (*fresh)->clusters) {
      const std::shared_ptr<const cluster::ClusterConfig>& kept = (*third)->clusters.at(name);
      ASSERT_EQ(kept->endpoints.size(), config->endpoints.size()) << name;
      EXPECT_EQ(kept->endpoints[0].address.port(), config->endpoints[0].address.port()) << name;
      if (name != "svc-00009") {
        EXPECT_EQ(kept, (*first)->clusters.at(name)) << name;
      }
    }
    EXPECT_EQ((*third)->clusters.at("svc-00009")->endpoints[0].address.port(), 9009);

    // Nothing changed (another type's response): nothing is looked at.
    absl::StatusOr<std::shared_ptr<const Snapshot>> again = BuildSnapshot(added, third->get());
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(TranslationReuseOf(**again).clusters_examined, 0u);
    EXPECT_EQ((*again)->clusters.at("svc-00009"), (*third)->clusters.at("svc-00009"));
  }
}

// What the changes alone cannot settle takes the whole pass, with its errors.
TEST(TranslateReuseTest, RemovalsAndErrorsTakeTheWholePass) {
  const ResourceSet set = EdsSet(10);
  absl::StatusOr<std::shared_ptr<const Snapshot>> first = BuildSnapshot(set);
  ASSERT_TRUE(first.ok()) << first.status();

  // An assignment naming no cluster.
  ResourceSet orphan = set;
  orphan.endpoints = InsertedAt(set.endpoints, 1, AssignmentOf(1, 9001));
  absl::StatusOr<std::shared_ptr<const Snapshot>> refused = BuildSnapshot(orphan, first->get());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().message(), BuildSnapshot(orphan).status().message());
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("names no Cluster"));

  // A cluster turned STATIC while its assignment stays.
  ResourceSet static_now = set;
  static_now.clusters.Mutable(3).set_type(xds::Cluster::STATIC);
  refused = BuildSnapshot(static_now, first->get());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().message(), BuildSnapshot(static_now).status().message());

  // A cluster and its assignment removed (a destination aged out).
  ResourceSet removed;
  for (size_t i = 0; i < set.clusters.size(); ++i) {
    if (i == 4) continue;
    removed.clusters.push_back(set.clusters.shared(i));
    removed.endpoints.push_back(set.endpoints.shared(i));
  }
  absl::StatusOr<std::shared_ptr<const Snapshot>> smaller = BuildSnapshot(removed, first->get());
  ASSERT_TRUE(smaller.ok()) << smaller.status();
  EXPECT_EQ((*smaller)->clusters.size(), 9u);
  EXPECT_EQ((*smaller)->FindCluster("svc-00008"), nullptr);
  EXPECT_EQ(TranslationReuseOf(**smaller).clusters, 9u);
  EXPECT_EQ(ChangedClusters(**smaller), nullptr);

  // An assignment whose endpoints are wrong.
  ResourceSet bad = set;
  bad.endpoints.Mutable(2).mutable_endpoints(0)->set_address("not an address");
  refused = BuildSnapshot(bad, first->get());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().message(), BuildSnapshot(bad).status().message());
}

TEST(TranslateReuseTest, ChangedEndpointsAreTranslatedAgain) {
  ResourceSet set = Base();
  absl::StatusOr<std::shared_ptr<const Snapshot>> first = BuildSnapshot(set);
  ASSERT_TRUE(first.ok()) << first.status();
  set.endpoints.Mutable(0).mutable_endpoints(0)->set_address("127.0.0.1:9091");
  absl::StatusOr<std::shared_ptr<const Snapshot>> second = BuildSnapshot(set, first->get());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(TranslationReuseOf(**second).clusters, 2u);
  const auto& endpoints = (*second)->clusters.at("eds-cluster")->endpoints;
  ASSERT_EQ(endpoints.size(), 1u);
  EXPECT_EQ(endpoints[0].address.port(), 9091);
  EXPECT_EQ((*second)->clusters.at("backend"), (*first)->clusters.at("backend"));

  // Its load assignment removed: the EDS cluster is there, without endpoints.
  ResourceSet without = set;
  without.endpoints.clear();
  absl::StatusOr<std::shared_ptr<const Snapshot>> third = BuildSnapshot(without, second->get());
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_TRUE((*third)->clusters.at("eds-cluster")->endpoints.empty());
}

TEST(TranslateReuseTest, ASecretLosingItsTrustBundleIsCheckedByUnchangedClusters) {
  ResourceSet set = Base();
  xds::UpstreamTls* tls = set.clusters.Mutable(0).mutable_tls();
  tls->set_enabled(true);
  tls->set_secret_name("mesh-cert");
  absl::StatusOr<std::shared_ptr<const Snapshot>> first = BuildSnapshot(set);
  ASSERT_TRUE(first.ok()) << first.status();
  set.secrets.Mutable(0).clear_trust_bundle_pem();
  set.listeners.Mutable(1).mutable_tls()->set_mode(xds::DownstreamTls::DISABLE);
  absl::StatusOr<std::shared_ptr<const Snapshot>> second = BuildSnapshot(set, first->get());
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()),
              HasSubstr("cluster \"backend\": tls.secret_name: secret \"mesh-cert\" has no trust "
                        "bundle"));
}

TEST(TranslateTest, SubjectAltNamesReachTheCluster) {
  ResourceSet set = Base();
  xds::UpstreamTls* tls = set.clusters.Mutable(0).mutable_tls();
  tls->set_enabled(true);
  tls->set_secret_name("mesh-cert");
  tls->set_sni("abc.example.com");
  tls->add_subject_alt_names()->set_dns("*.example.com");
  tls->add_subject_alt_names()->set_uri("spiffe://example/backend");
  absl::StatusOr<std::shared_ptr<const Snapshot>> snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_THAT(*(*snapshot)->FindCluster("backend")->tls.subject_alt_names,
              ElementsAre("dns:*.example.com", "uri:spiffe://example/backend"));
}

TEST(TranslateTest, EmptySetIsValid) {
  absl::StatusOr<std::shared_ptr<const Snapshot>> snapshot = BuildSnapshot(ResourceSet{});
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_TRUE((*snapshot)->listeners.empty());
  EXPECT_THAT((*snapshot)->version, HasSubstr("static-"));
}

TEST(TranslateTest, DefaultsApplied) {
  auto snapshot = BuildSnapshot(Base());
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const Snapshot& s = **snapshot;

  const cluster::ClusterConfig* cluster = s.FindCluster("backend");
  ASSERT_NE(cluster, nullptr);
  EXPECT_FALSE(cluster->eds);
  EXPECT_EQ(cluster->lb_policy, cluster::LbPolicy::kLeastRequest);
  EXPECT_EQ(cluster->protocol, cluster::UpstreamProtocol::kHttp1);
  EXPECT_EQ(cluster->connect_timeout, 1s);
  EXPECT_EQ(cluster->circuit_breakers.max_connections, 1024u);
  EXPECT_EQ(cluster->circuit_breakers.max_pending_requests, 1024u);
  EXPECT_EQ(cluster->circuit_breakers.max_requests, 1024u);
  // The enabled retry budget governs retries: no concurrent-retry limit unless one is set.
  EXPECT_EQ(cluster->circuit_breakers.max_retries, resilience::kUnlimitedRetries);
  EXPECT_TRUE(cluster->retry_budget.enabled);
  EXPECT_EQ(cluster->retry_budget.budget_percent, 20.0);
  EXPECT_EQ(cluster->retry_budget.min_retries_per_second, 10u);
  EXPECT_EQ(cluster->retry_budget.window, 10s);
  EXPECT_FALSE(cluster->consecutive_failure_breaker.has_value());
  ASSERT_TRUE(cluster->outlier_detection.has_value());
  EXPECT_EQ(cluster->outlier_detection->consecutive_5xx, 5u);
  EXPECT_EQ(cluster->outlier_detection->consecutive_gateway_failure, 5u);
  EXPECT_EQ(cluster->outlier_detection->base_ejection_time, 30s);
  EXPECT_EQ(cluster->outlier_detection->max_ejection_time, 300s);
  EXPECT_EQ(cluster->outlier_detection->max_ejection_percent, 10u);
  EXPECT_EQ(cluster->health_check->kind, cluster::HealthCheckConfig::Kind::kNone);
  EXPECT_EQ(cluster->pool.idle_timeout, 55s);
  EXPECT_EQ(cluster->pool.max_concurrent_streams, 100u);
  ASSERT_EQ(cluster->endpoints.size(), 1u);
  EXPECT_EQ(cluster->endpoints[0].weight, 1u);
  EXPECT_EQ(cluster->endpoints[0].health, cluster::EndpointHealth::kHealthy);

  const ListenerConfig* listener = s.FindListener("outbound");
  ASSERT_NE(listener, nullptr);
  EXPECT_EQ(listener->address.ToString(), "127.0.0.1:15001");
  EXPECT_EQ(listener->direction, TrafficDirection::kOutbound);
  EXPECT_EQ(listener->protocol, ListenerProtocol::kHttp);
  EXPECT_EQ(listener->tls.mode, DownstreamTlsConfig::Mode::kDisable);
  EXPECT_EQ(listener->http.max_request_headers_kb, 60u);
  EXPECT_EQ(listener->http.max_headers_count, 100u);
  EXPECT_EQ(listener->http.max_request_line_bytes, 8192u);
  EXPECT_EQ(listener->http.max_concurrent_streams, 1024u);
  EXPECT_EQ(listener->http.request_headers_timeout, 10s);
  EXPECT_EQ(listener->http.stream_idle_timeout, 300s);
  EXPECT_EQ(listener->http.idle_timeout, 3600s);
  EXPECT_FALSE(listener->http.allow_connect);
  EXPECT_TRUE(listener->http.generate_request_id);
  EXPECT_EQ(listener->http.max_request_body_buffer_bytes, 64u * 1024);
  EXPECT_EQ(listener->http.max_outbound_control_frames, 1000u);
  EXPECT_EQ(listener->http.max_inbound_window_update_frames_per_data_frame_sent, 10u);
  EXPECT_EQ(listener->detect_timeout, 1s);
  EXPECT_EQ(listener->max_connections, 0u);
  EXPECT_EQ(listener->access_log_path, "");

  const ListenerConfig* inbound = s.FindListener("inbound");
  ASSERT_NE(inbound, nullptr);
  EXPECT_EQ(inbound->tls.mode, DownstreamTlsConfig::Mode::kStrict);
  EXPECT_TRUE(inbound->tls.require_client_certificate);
  EXPECT_EQ(inbound->tls.alpn, (std::vector<std::string>{"h2", "http/1.1"}));

  const route::RouteTable* table = s.FindRouteTable("local");
  ASSERT_NE(table, nullptr);
  const route::RouteEntry* route = table->Match(Request("x", "/a"));
  ASSERT_NE(route, nullptr);
  const route::RouteAction* action = route->route_action();
  ASSERT_NE(action, nullptr);
  EXPECT_EQ(action->timeout, 15s);
  EXPECT_EQ(action->retry_policy.num_retries, 2u);
  EXPECT_EQ(action->retry_policy.retry_on, resilience::RetryOn::kDefault);
  EXPECT_EQ(action->retry_policy.retriable_status_codes, (std::vector<uint32_t>{503}));
  EXPECT_EQ(action->retry_policy.backoff.base, 25ms);
  EXPECT_EQ(action->retry_policy.backoff.cap, 250ms);
  EXPECT_EQ(action->retry_policy.per_try_timeout, Duration::zero());
  EXPECT_FALSE(route->extras->fault.has_value());
  EXPECT_FALSE(route->extras->rate_limit.has_value());

  const SecretConfig* secret = s.FindSecret("mesh-cert");
  ASSERT_NE(secret, nullptr);
  EXPECT_EQ(secret->certificate_chain_pem, kPem);
  EXPECT_EQ(secret->private_key_pem, kKeyPem);
}

TEST(TranslateTest, ExplicitVersionAndStableDerivedVersion) {
  ResourceSet set = Base();
  auto a = BuildSnapshot(set);
  auto b = BuildSnapshot(set);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ((*a)->version, (*b)->version);
  set.clusters.Mutable(0).mutable_connect_timeout()->set_seconds(2);
  auto c = BuildSnapshot(set);
  ASSERT_TRUE(c.ok());
  EXPECT_NE((*a)->version, (*c)->version);
  set.version = "v42";
  auto d = BuildSnapshot(set);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ((*d)->version, "v42");
}

TEST(TranslateTest, ConfigDumpRedactsPrivateKeys) {
  ResourceSet set = Base();
  set.version = "v7";
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok());
  const std::string& dump = (*snapshot)->ConfigDumpJson();
  EXPECT_THAT(dump, HasSubstr("\"version\": \"v7\""));
  EXPECT_THAT(dump, HasSubstr("\"route_config_name\": \"local\""));
  EXPECT_THAT(dump, HasSubstr("\"private_key_pem\": \"[redacted]\""));
  EXPECT_THAT(dump, Not(HasSubstr("MIIE")));
  EXPECT_THAT(dump, HasSubstr("MIIB"));  // certificates are public
}
// The split table as a captured sidecar runs it (ADR 0086): the route configuration "outbound"
// holds only the catch-all (404), and each Service port comes as a ServiceRoute. A request is
// routed by its Host to the Service's cluster, and a captured connection by its original
// destination: the capture listener's destination, then the virtual host bound to the address.
TEST(TranslateTest, RequestsAndCapturedConnectionsRouteThroughServiceRoutes) {
  const ResourceSet set = ToSet(Parse<xds::Bootstrap::StaticResources>(R"yaml(
clusters:
- {name: "outbound|9080||reviews.shop", load_assignment: {endpoints: [{address: 127.0.0.1:9080}]}}
- {name: "outbound|9080||ratings.shop", load_assignment: {endpoints: [{address: 127.0.0.1:9081}]}}
- {name: "outbound|5432||db.shop", load_assignment: {endpoints: [{address: 127.0.0.1:5432}]}}
routes:
- name: outbound
  virtual_hosts:
  - name: catch-all
    domains: ["*"]
    routes: [{match: {prefix: /}, direct_response: {status: 404}}]
service_routes:
- name: reviews.shop:9080
  route_config_name: outbound
  virtual_host:
    name: reviews.shop:9080
    domains: [reviews, "reviews:9080", reviews.shop, "reviews.shop:9080"]
    destinations: ["10.96.0.5:9080"]
    routes: [{match: {prefix: /}, route: {cluster: "outbound|9080||reviews.shop"}}]
  destination: {name: reviews.shop:9080, addresses: [10.96.0.5], port: 9080,
                protocol: PROTOCOL_AUTO, route_config_name: outbound}
- name: ratings.shop:9080
  route_config_name: outbound
  virtual_host:
    name: ratings.shop:9080
    domains: [ratings, "ratings:9080", ratings.shop, "ratings.shop:9080"]
    destinations: ["10.96.0.6:9080"]
    routes: [{match: {prefix: /}, route: {cluster: "outbound|9080||ratings.shop"}}]
  destination: {name: ratings.shop:9080, addresses: [10.96.0.6], port: 9080,
                protocol: PROTOCOL_AUTO, route_config_name: outbound}
- name: db.shop:5432
  route_config_name: outbound
  destination: {name: db.shop:5432, addresses: [10.96.0.7], port: 5432, protocol: PROTOCOL_TCP,
                tcp_cluster: "outbound|5432||db.shop"}
listeners:
- name: outbound
  address: 127.0.0.1:15001
  protocol: PROTOCOL_HTTP
  route_config_name: outbound
  use_original_destination: true
)yaml"));
  auto snapshot = BuildSnapshot(set);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const route::RouteTable* table = (*snapshot)->FindRouteTable("outbound");
  ASSERT_NE(table, nullptr);
  auto cluster_of = [](const route::RouteEntry* entry) -> std::string {
    if (entry == nullptr) return "(no route)";
    if (entry->direct_response() != nullptr) {
      return absl::StrCat("(", entry->direct_response()->status, ")");
    }
    return entry->route_action()->cluster;
  };
  // By Host.
  EXPECT_EQ(cluster_of(table->Match(Request("ratings:9080", "/"))), "outbound|9080||ratings.shop");
  EXPECT_EQ(cluster_of(table->Match(Request("reviews.shop", "/"))), "outbound|9080||reviews.shop");
  EXPECT_EQ(cluster_of(table->Match(Request("details", "/"))), "(404)");

  // By original destination, whatever the requests' Host says.
  const ListenerConfig& listener = (*snapshot)->listeners[0];
  const listener::DestinationMatcher matcher(listener);
  auto captured = [&](const char* original) -> std::string {
    const net::Address address = *net::Address::Parse(original);
    const listener::CaptureDecision decision = matcher.Match(address, 15001);
    if (decision.action != listener::CaptureDecision::Action::kDestination) {
      return listener::CaptureActionName(decision.action);
    }
    if (!decision.destination->is_http()) return decision.destination->tcp_cluster;
    const route::RouteTable* routes =
        (*snapshot)->FindRouteTable(decision.destination->route_config_name);
    const route::VirtualHostConfig* vhost = routes->MatchDestination(address.ToString());
    if (vhost == nullptr) return "(no virtual host)";
    return cluster_of(route::RouteTable::MatchRoute(*vhost, Request("reviews", "/")));
  };
  EXPECT_EQ(captured("10.96.0.6:9080"), "outbound|9080||ratings.shop");
  EXPECT_EQ(captured("10.96.0.5:9080"), "outbound|9080||reviews.shop");
  EXPECT_EQ(captured("10.96.0.7:5432"), "outbound|5432||db.shop");
  EXPECT_EQ(captured("10.96.0.9:9080"), std::string("passthrough"));
}

}  // namespace
}  // namespace meshlet::sidecar::config

// What each kind of resource names, and a load assignment checked on its own.
#include "sidecar/config/references.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sidecar/config/translate_test_util.h"

namespace meshlet::sidecar::config {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;
using translate_testing::Parse;

TEST(ReferencesTest, ListenersRoutesAndClustersNameWhatTheyUse) {
  References names;
  AddReferences(Parse<xds::Listener>(R"yaml(
name: outbound
protocol: PROTOCOL_AUTO
route_config_name: outbound
tcp_cluster: passthrough-ish
tls: {mode: PERMISSIVE, workload_certificate: true, trust_bundle_secret: bundle}
use_original_destination: true
destinations:
- {name: db, port: 3306, protocol: PROTOCOL_TCP, tcp_cluster: "outbound|3306||db"}
- {name: web, port: 80, protocol: PROTOCOL_HTTP, route_config_name: web}
)yaml"),
                names);
  AddReferences(Parse<xds::RouteConfiguration>(R"yaml(
name: outbound
virtual_hosts:
- name: reviews
  domains: ["*"]
  routes:
  - match: {prefix: /canary}
    route:
      weighted_clusters:
        clusters: [{name: v1, weight: 9}, {name: v2, weight: 1}]
  - match: {prefix: /old}
    redirect: {path: /new}
  - match: {prefix: /}
    route:
      cluster: all
      request_mirror_policies: [{cluster: shadow}]
)yaml"),
                names);
  AddReferences(Parse<xds::Cluster>(R"yaml(
name: all
tls: {enabled: true, secret_name: mesh-cert}
)yaml"),
                names);
  EXPECT_THAT(names.routes, UnorderedElementsAre("outbound", "web"));
  EXPECT_THAT(names.clusters, UnorderedElementsAre("passthrough-ish", "outbound|3306||db", "v1",
                                                   "v2", "all", "shadow"));
  EXPECT_THAT(names.secrets, UnorderedElementsAre("bundle", "mesh-cert"));
}

TEST(ReferencesTest, ALoadAssignmentIsCheckedAsBuildSnapshotChecksOne) {
  EXPECT_TRUE(CheckLoadAssignment(Parse<xds::ClusterLoadAssignment>(R"yaml(
cluster_name: eds
endpoints: [{address: "127.0.0.1:80"}, {address: "127.0.0.2:80"}]
)yaml"))
                  .ok());
  const absl::Status bad = CheckLoadAssignment(Parse<xds::ClusterLoadAssignment>(R"yaml(
cluster_name: eds
endpoints: [{address: "127.0.0.1:80"}, {address: "127.0.0.1:80"}, {address: "nowhere"}]
)yaml"));
  EXPECT_THAT(std::string(bad.message()),
              HasSubstr("cluster_load_assignment \"eds\": endpoints[1].address: "
                        "\"127.0.0.1:80\" duplicates endpoints[0]"));
  EXPECT_THAT(std::string(bad.message()),
              HasSubstr("cluster_load_assignment \"eds\": endpoints[2].address"));
  EXPECT_THAT(std::string(CheckLoadAssignment({}).message()),
              HasSubstr("cluster_load_assignment \"\": cluster_name: must not be empty"));
}

}  // namespace
}  // namespace meshlet::sidecar::config

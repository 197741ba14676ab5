#include "common/config/yaml_proto.h"

#include <gtest/gtest.h>

#include "xds/resources.pb.h"

namespace meshlet::config {
namespace {

using ::meshlet::xds::Bootstrap;
using ::meshlet::xds::Cluster;
using ::meshlet::xds::Listener;
using ::meshlet::xds::RouteConfiguration;

TEST(YamlProtoTest, ReadsNestedMessagesEnumsDurationsWrappersAndMaps) {
  Bootstrap bootstrap;
  absl::Status s = YamlToProto(R"(
node:
  id: frontend-1
  labels: {app: frontend, version: v1}
static_resources:
  listeners:
  - name: outbound
    address: 127.0.0.1:15001
    protocol: PROTOCOL_HTTP
    routeConfigName: local        # JSON-style names work too
    detect_timeout: 250ms
  clusters:
  - name: backend
    lb_policy: round_robin        # enum names are case-insensitive
    connect_timeout: 1.5s
    circuit_breakers:
      max_connections: 10
    load_assignment:
      endpoints:
      - address: 127.0.0.1:8080
        weight: 3
)",
                               bootstrap);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(bootstrap.node().labels().at("version"), "v1");
  const Listener& l = bootstrap.static_resources().listeners(0);
  EXPECT_EQ(l.route_config_name(), "local");
  EXPECT_EQ(l.protocol(), xds::PROTOCOL_HTTP);
  EXPECT_EQ(l.detect_timeout().nanos(), 250000000);
  const Cluster& c = bootstrap.static_resources().clusters(0);
  EXPECT_EQ(c.lb_policy(), xds::ROUND_ROBIN);
  EXPECT_EQ(c.connect_timeout().seconds(), 1);
  EXPECT_EQ(c.connect_timeout().nanos(), 500000000);
  ASSERT_TRUE(c.circuit_breakers().has_max_connections());
  EXPECT_EQ(c.circuit_breakers().max_connections().value(), 10u);
  EXPECT_FALSE(c.circuit_breakers().has_max_requests());
  EXPECT_EQ(c.load_assignment().endpoints(0).weight(), 3u);
}

TEST(YamlProtoTest, UnknownFieldNamesPositionPathAndKnownFields) {
  Bootstrap bootstrap;
  absl::Status s = YamlToProto("static_resources:\n  listeners:\n  - name: a\n    adress: x\n",
                               bootstrap, {.source_name = "sidecar.yaml"});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("sidecar.yaml:4:5: static_resources.listeners[0].adress: unknown "
                             "field"),
            std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("address"), std::string::npos);
}

// Found by yaml_proto_fuzz: a string that is not UTF-8 was accepted, so the message could not be
// serialized for an xDS push or written back as YAML that reads the same.
TEST(YamlProtoTest, StringsMustBeUtf8) {
  Listener l;
  absl::Status s = YamlToProto("name: \"caf\xe9\"\n", l);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("1:7: name: not valid UTF-8"), std::string::npos) << s.message();
  Bootstrap bootstrap;
  s = YamlToProto("node:\n  labels: {app: \"\xff\"}\n", bootstrap);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(YamlToProto("name: \"caf\xc3\xa9\"\n", l).ok());
  EXPECT_EQ(l.name(), "caf\xc3\xa9");
}

TEST(YamlProtoTest, UnknownFieldsCanBeIgnored) {
  Listener l;
  EXPECT_TRUE(YamlToProto("name: a\nfuture_field: 1\n", l, {.ignore_unknown_fields = true}).ok());
  EXPECT_EQ(l.name(), "a");
}

struct BadCase {
  const char* yaml;
  const char* expected;
};

class YamlProtoErrorTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(YamlProtoErrorTest, RejectsWithFieldPathAndReason) {
  Cluster c;
  absl::Status s = YamlToProto(GetParam().yaml, c);
  ASSERT_FALSE(s.ok()) << GetParam().yaml;
  EXPECT_NE(s.message().find(GetParam().expected), std::string::npos) << s.message();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, YamlProtoErrorTest,
    ::testing::Values(
        BadCase{"connect_timeout: soon\n", "connect_timeout: expected a duration"},
        BadCase{"connect_timeout: -1s\n", "connect_timeout: duration must not be negative"},
        BadCase{"lb_policy: FASTEST\n", "lb_policy: unknown value \"FASTEST\"; expected one of"},
        BadCase{"circuit_breakers: {max_connections: -3}\n",
                "circuit_breakers.max_connections: expected an integer in [0, 4294967295]"},
        BadCase{"circuit_breakers: {max_connections: 5000000000}\n", "expected an integer"},
        BadCase{"load_assignment: {endpoints: {address: x}}\n",
                "load_assignment.endpoints: expected a list, got a mapping"},
        BadCase{"name: [a, b]\n", "name: expected a scalar, got a list"},
        BadCase{"- a\n- b\n", "(document): expected a mapping"},
        BadCase{"tls: {enabled: maybe}\n", "tls.enabled: expected true or false"},
        BadCase{"name: a\n  bad indent: [\n", "invalid YAML"}));

TEST(YamlProtoTest, OneofAcceptsOnlyOneMember) {
  RouteConfiguration rc;
  absl::Status s = YamlToProto(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /, path: /exact}
)",
                               rc);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("virtual_hosts[0].routes[0].match.path: only one of prefix, path"),
            std::string::npos)
      << s.message();
}

TEST(YamlProtoTest, JsonIsAcceptedToo) {
  Listener l;
  ASSERT_TRUE(
      YamlToProto(R"({"name": "in", "direction": "INBOUND", "maxConnections": 7})", l).ok());
  EXPECT_EQ(l.direction(), xds::INBOUND);
  EXPECT_EQ(l.max_connections(), 7u);
}

TEST(YamlProtoTest, SplitsDocumentsKeepingLinesAndKinds) {
  auto docs = SplitYamlDocuments(R"(# leading comment
---
kind: Service
metadata: {name: a}
---
# only a comment
---
kind: HTTPRoute
spec:
  x: 1
)");
  ASSERT_TRUE(docs.ok()) << docs.status();
  ASSERT_EQ(docs->size(), 2u);
  EXPECT_EQ((*docs)[0].kind, "Service");
  EXPECT_EQ((*docs)[0].first_line, 3);
  EXPECT_EQ((*docs)[1].kind, "HTTPRoute");
  EXPECT_EQ((*docs)[1].first_line, 8);
  EXPECT_EQ((*docs)[1].index, 1);

  // An error inside the second document points at the line in the whole stream.
  Listener l;
  absl::Status s = YamlToProto(
      (*docs)[1].yaml, l, {.source_name = "policy.yaml", .line_offset = (*docs)[1].first_line - 1});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("policy.yaml:8:1: kind: unknown field"), std::string::npos)
      << s.message();
}

TEST(YamlProtoTest, ProtoToYamlRoundTrips) {
  Cluster c;
  c.set_name("backend");
  c.set_lb_policy(xds::PEAK_EWMA);
  c.mutable_connect_timeout()->set_nanos(250000000);
  c.mutable_circuit_breakers()->mutable_max_requests()->set_value(9);
  auto* e = c.mutable_load_assignment()->add_endpoints();
  e->set_address("127.0.0.1:1");
  (*e->mutable_labels())["zone"] = "a";
  std::string yaml = ProtoToYaml(c);
  EXPECT_NE(yaml.find("lb_policy: PEAK_EWMA"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("connect_timeout: 250ms"), std::string::npos) << yaml;
  Cluster back;
  ASSERT_TRUE(YamlToProto(yaml, back).ok()) << yaml;
  EXPECT_EQ(back.SerializeAsString(), c.SerializeAsString());
}

TEST(YamlProtoTest, StringsWithControlCharactersRoundTrip) {
  // yaml-cpp alone writes "stream\r" as a plain scalar, which reads back as "stream".
  Cluster c;
  c.set_name("stream\r");
  auto* e = c.mutable_load_assignment()->add_endpoints();
  e->set_address("a\tb\x01c\x7f");
  (*e->mutable_labels())["k\r"] = "v\n";
  const std::string yaml = ProtoToYaml(c);
  Cluster back;
  ASSERT_TRUE(YamlToProto(yaml, back).ok()) << yaml;
  EXPECT_EQ(back.SerializeAsString(), c.SerializeAsString()) << yaml;
}

TEST(YamlProtoTest, RefusesTheNoncharactersYamlDoesNotAllow) {
  // Found by yaml_proto_fuzz: yaml-cpp reads U+FFFF raw but writes it back as U+FFFD.
  for (const char* yaml : {"name: \"a\\uFFFFb\"\n",
                           "name: a\xEF\xBF\xBF"
                           "b\n",
                           "name: \"\\uFFFE\"\n"}) {
    Cluster c;
    absl::Status s = YamlToProto(yaml, c);
    EXPECT_FALSE(s.ok()) << yaml;
    EXPECT_NE(s.message().find("U+FFFE or U+FFFF"), absl::string_view::npos) << s;
  }
  // Other characters past U+FFFF and noncharacters inside YAML's printable range round-trip.
  Cluster c;
  c.set_name("a\xEF\xBF\xBD\xEF\xB7\x90\xF0\x9F\x98\x80z");  // U+FFFD, U+FDD0, U+1F600
  Cluster back;
  const std::string yaml = ProtoToYaml(c);
  ASSERT_TRUE(YamlToProto(yaml, back).ok()) << yaml;
  EXPECT_EQ(back.name(), c.name()) << yaml;
}

TEST(YamlProtoTest, ParseDurationText) {
  EXPECT_EQ(*ParseDurationText("0"), absl::ZeroDuration());
  EXPECT_EQ(*ParseDurationText("1h30m"), absl::Minutes(90));
  EXPECT_EQ(*ParseDurationText(" 100us "), absl::Microseconds(100));
  EXPECT_FALSE(ParseDurationText("10").ok());
  EXPECT_FALSE(ParseDurationText("inf").ok());
}

}  // namespace
}  // namespace meshlet::config

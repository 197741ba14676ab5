// Configuration from a later release (docs/upgrades.md): a field this release does not know is
// kept and ignored; an enum value it does not know is refused, naming the field and the value —
// never read as the enum's default. Every enum field of every resource type is checked, so a new
// enum field whose translation forgets the check fails here.

#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "gtest/gtest.h"
#include "sidecar/config/snapshot.h"
#include "sidecar/config/translate.h"
#include "sidecar/config/translate_test_util.h"
#include "xds/resources.pb.h"

namespace meshlet::sidecar::config {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using translate_testing::Parse;
using translate_testing::ToSet;

// Every message type holding an enum field appears, each enum field set to a valid value.
constexpr char kEveryEnum[] = R"yaml(
secrets:
- name: mesh-cert
  certificate_chain_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
  private_key_pem: "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
  trust_bundle_pem: "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n"
clusters:
- name: backend
  lb_policy: ROUND_ROBIN
  protocol: UPSTREAM_HTTP2
  load_assignment:
    endpoints:
    - {address: "127.0.0.1:8080", health: DRAINING}
    - {address: "127.0.0.1:8081"}
- name: eds
  type: EDS
endpoints:
- cluster_name: eds
  endpoints:
  - {address: "127.0.0.1:9090", health: UNHEALTHY}
routes:
- name: local
  virtual_hosts:
  - name: default
    domains: ["*"]
    routes:
    - match: {prefix: /}
      route:
        cluster: backend
        session_persistence: {type: HEADER, name: x-session, cookie_lifetime: SESSION}
listeners:
- name: outbound
  address: "127.0.0.1:15001"
  protocol: PROTOCOL_HTTP
  route_config_name: local
  use_original_destination: true
  unmatched_destination: REFUSE
  destinations:
  - {name: web, port: 80, protocol: PROTOCOL_HTTP1, route_config_name: local}
- name: inbound
  address: "127.0.0.1:15006"
  direction: INBOUND
  protocol: PROTOCOL_HTTP
  route_config_name: local
  tls: {mode: STRICT, secret_name: mesh-cert}
  authorization:
    policies:
    - {name: deny-none, action: DENY, rules: []}
)yaml";

ResourceSet EveryEnum() {
  ResourceSet set = ToSet(Parse<xds::Bootstrap::StaticResources>(kEveryEnum));
  set.version = "v";
  return set;
}

// The messages of a resource set (top-level resources and every message set inside them).
template <typename F>
void ForEachMessage(Message& message, const std::string& path, F f) {
  f(message, path);
  const google::protobuf::Reflection* reflection = message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  for (const FieldDescriptor* field : fields) {
    if (field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE || field->is_map()) continue;
    if (field->is_repeated()) {
      for (int i = 0; i < reflection->FieldSize(message, field); ++i) {
        ForEachMessage(*reflection->MutableRepeatedMessage(&message, field, i),
                       absl::StrCat(path, ".", field->name(), "[", i, "]"), f);
      }
    } else {
      ForEachMessage(*reflection->MutableMessage(&message, field),
                     absl::StrCat(path, ".", field->name()), f);
    }
  }
}

template <typename F>
void ForEachResource(ResourceSet& set, F f) {
  auto each = [&](auto& list, absl::string_view type) {
    for (size_t i = 0; i < list.size(); ++i) f(list.Mutable(i), absl::StrCat(type, "[", i, "]"));
  };
  each(set.listeners, "listeners");
  each(set.routes, "routes");
  each(set.clusters, "clusters");
  each(set.endpoints, "endpoints");
  each(set.secrets, "secrets");
}

// Every enum field of the message types reachable from the five resource types.
void EnumFields(const Descriptor* d, std::set<const Descriptor*>& seen,
                std::set<const FieldDescriptor*>& out) {
  if (!seen.insert(d).second) return;
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_ENUM) out.insert(f);
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) EnumFields(f->message_type(), seen, out);
  }
}

TEST(UnknownValuesTest, TheFixtureIsValid) {
  absl::StatusOr<std::shared_ptr<const Snapshot>> snapshot = BuildSnapshot(EveryEnum());
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
}

TEST(UnknownValuesTest, EveryEnumFieldRefusesAValueItDoesNotKnow) {
  std::set<const Descriptor*> seen;
  std::set<const FieldDescriptor*> all;
  for (const Descriptor* root :
       {xds::Listener::descriptor(), xds::RouteConfiguration::descriptor(),
        xds::Cluster::descriptor(), xds::ClusterLoadAssignment::descriptor(),
        xds::Secret::descriptor()}) {
    EnumFields(root, seen, all);
  }
  // Count the occurrences first, then break each one alone.
  std::vector<std::pair<std::string, const FieldDescriptor*>> occurrences;
  ResourceSet counting = EveryEnum();
  ForEachResource(counting, [&](Message& resource, const std::string& where) {
    ForEachMessage(resource, where, [&](Message& m, const std::string& path) {
      for (int i = 0; i < m.GetDescriptor()->field_count(); ++i) {
        const FieldDescriptor* f = m.GetDescriptor()->field(i);
        if (f->cpp_type() == FieldDescriptor::CPPTYPE_ENUM && !f->is_repeated()) {
          occurrences.emplace_back(path, f);
        }
      }
    });
  });
  std::set<const FieldDescriptor*> checked;
  for (size_t n = 0; n < occurrences.size(); ++n) {
    const auto& [target_path, target] = occurrences[n];
    ResourceSet broken = EveryEnum();
    ForEachResource(broken, [&](Message& resource, const std::string& where) {
      ForEachMessage(resource, where, [&](Message& m, const std::string& path) {
        if (path == target_path) m.GetReflection()->SetEnumValue(&m, target, 1000 + n);
      });
    });
    absl::StatusOr<std::shared_ptr<const Snapshot>> snapshot = BuildSnapshot(broken);
    const std::string what = absl::StrCat(target_path, ".", target->name(), " = ", 1000 + n);
    ASSERT_FALSE(snapshot.ok()) << what << " was accepted";
    const std::string message(snapshot.status().message());
    EXPECT_NE(message.find(target->name()), std::string::npos) << what << ": " << message;
    // Where the field is read, the value itself is refused (elsewhere another rule may refuse
    // the field first, such as unmatched_destination without use_original_destination).
    if (message.find(absl::StrCat("unknown value ", 1000 + n)) != std::string::npos) {
      checked.insert(target);
    }
  }
  for (const FieldDescriptor* f : all) {
    EXPECT_TRUE(checked.contains(f))
        << f->full_name() << ": no occurrence in the fixture refused as \"unknown value\"";
  }
}

TEST(UnknownValuesTest, FieldsOfALaterReleaseAreIgnored) {
  ResourceSet extended = EveryEnum();
  int added = 0;
  ForEachResource(extended, [&](Message& resource, const std::string& where) {
    ForEachMessage(resource, where, [&](Message& m, const std::string&) {
      m.GetReflection()->MutableUnknownFields(&m)->AddVarint(1000, 7);
      m.GetReflection()->MutableUnknownFields(&m)->AddLengthDelimited(1001, "later");
      ++added;
    });
  });
  ASSERT_GE(added, 20);
  absl::StatusOr<std::shared_ptr<const Snapshot>> plain = BuildSnapshot(EveryEnum());
  absl::StatusOr<std::shared_ptr<const Snapshot>> snapshot = BuildSnapshot(extended);
  ASSERT_TRUE(plain.ok()) << plain.status();
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_EQ((*snapshot)->listeners.size(), (*plain)->listeners.size());
  EXPECT_EQ((*snapshot)->clusters.size(), (*plain)->clusters.size());
  EXPECT_EQ((*snapshot)->route_tables.size(), (*plain)->route_tables.size());
}

}  // namespace
}  // namespace meshlet::sidecar::config

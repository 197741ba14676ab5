// The stream's shared names: every resource type's URL maps back to its position, each type names
// only types pushed before it, lookup keys are written in one form, and the variant helpers hand
// over the message type of the variant asked for.

#include "xds/protocol.h"

#include <map>
#include <set>
#include <string>

#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"
#include "xds/resources.pb.h"

namespace meshlet::xds {
namespace {

static_assert(kIsDelta<DeltaDiscoveryRequest> && kIsDelta<DeltaDiscoveryResponse>);
static_assert(!kIsDelta<DiscoveryRequest> && !kIsDelta<DiscoveryResponse>);

TEST(ResourceTypeIndexTest, FindsEveryTypeAndNothingElse) {
  for (size_t i = 0; i < kResourceTypeCount; ++i) {
    EXPECT_EQ(ResourceTypeIndex(kResourceTypeUrls[i]), i) << kResourceTypeLabels[i];
  }
  EXPECT_EQ(ResourceTypeIndex(kResourceTypeUrls[1]), 1u);
  EXPECT_FALSE(ResourceTypeIndex("type.googleapis.com/envoy.config.cluster.v3.Cluster"));
  EXPECT_FALSE(ResourceTypeIndex(kConfigDumpTypeUrl));
  EXPECT_FALSE(ResourceTypeIndex(kReadinessTypeUrl));
  EXPECT_FALSE(ResourceTypeIndex(""));
}

// The fields by which one resource names another, and the type it names (configuration.md).
const std::map<std::string, std::string>& ReferenceFields() {
  static const auto* fields = new std::map<std::string, std::string>{
      {"meshlet.xds.Listener.route_config_name", "routes"},
      {"meshlet.xds.Listener.tcp_cluster", "clusters"},
      {"meshlet.xds.ListenerDestination.route_config_name", "routes"},
      {"meshlet.xds.ListenerDestination.tcp_cluster", "clusters"},
      {"meshlet.xds.DownstreamTls.secret_name", "secrets"},
      {"meshlet.xds.DownstreamTls.trust_bundle_secret", "secrets"},
      {"meshlet.xds.UpstreamTls.secret_name", "secrets"},
      {"meshlet.xds.UpstreamTls.trust_bundle_secret", "secrets"},
      {"meshlet.xds.RouteAction.cluster", "clusters"},
      {"meshlet.xds.WeightedClusters.ClusterWeight.name", "clusters"},
      {"meshlet.xds.RequestMirrorPolicy.cluster", "clusters"},
      {"meshlet.xds.ClusterLoadAssignment.cluster_name", "clusters"},
      {"meshlet.xds.ServiceRoute.route_config_name", "routes"},
  };
  return *fields;
}

// The labels of the types `message` (and every message inside it) names.
void NamedTypes(const google::protobuf::Descriptor* message, std::set<std::string>& out,
                std::set<const google::protobuf::Descriptor*>& seen) {
  if (!seen.insert(message).second) return;
  for (int i = 0; i < message->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* field = message->field(i);
    auto it = ReferenceFields().find(field->full_name());
    if (it != ReferenceFields().end()) out.insert(it->second);
    if (field->message_type() != nullptr) NamedTypes(field->message_type(), out, seen);
  }
}

TEST(ResourceTypeOrderTest, EveryTypeNamesOnlyEarlierTypes) {
  // The generated pool knows the file once one of its messages was used.
  ASSERT_NE(ServiceRoute::descriptor(), nullptr);
  std::map<std::string, size_t> position;
  for (size_t i = 0; i < kResourceTypeCount; ++i) position[kResourceTypeLabels[i]] = i;
  for (const auto& [field, label] : ReferenceFields()) {
    ASSERT_NE(google::protobuf::DescriptorPool::generated_pool()->FindFieldByName(field), nullptr)
        << field;
    ASSERT_TRUE(position.contains(label)) << label;
  }
  std::map<std::string, std::set<std::string>> named;
  for (size_t i = 0; i < kResourceTypeCount; ++i) {
    const std::string url = kResourceTypeUrls[i];
    const google::protobuf::Descriptor* message =
        google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(
            url.substr(url.rfind('/') + 1));
    ASSERT_NE(message, nullptr) << url;
    std::set<const google::protobuf::Descriptor*> seen;
    NamedTypes(message, named[kResourceTypeLabels[i]], seen);
    // A cluster's inline load assignment names the cluster itself.
    named[kResourceTypeLabels[i]].erase(kResourceTypeLabels[i]);
    for (const std::string& other : named[kResourceTypeLabels[i]]) {
      EXPECT_LT(position[other], i) << kResourceTypeLabels[i] << " names " << other;
    }
  }
  for (size_t i = 0; i < kResourceTypeCount; ++i) {
    bool named_by_others = false;
    for (const auto& [type, names] : named) {
      named_by_others |= names.contains(kResourceTypeLabels[i]);
    }
    // A cluster runs with the load assignment of its own name.
    named_by_others |= std::string(kResourceTypeLabels[i]) == "endpoints";
    EXPECT_EQ(kResourceTypeNamedByOthers[i], named_by_others) << kResourceTypeLabels[i];
  }
  EXPECT_EQ(named["service_routes"], (std::set<std::string>{"clusters", "routes"}));
  EXPECT_EQ(named["listeners"], (std::set<std::string>{"clusters", "routes", "secrets"}));
  // Readiness: the last type pushed is the one a complete configuration ends with.
  EXPECT_EQ(std::string(kResourceTypeLabels[kResourceTypeCount - 1]), "listeners");
}

TEST(LookupKeyTest, LookupKeysAreNormalisedOnce) {
  EXPECT_EQ(LookupKeyForAddress("10.96.0.5", 80), "addr:10.96.0.5:80");
  EXPECT_EQ(LookupKeyForAddress("FD00:0:0::5", 80), "addr:[fd00::5]:80");
  EXPECT_EQ(LookupKeyForAddress("[fd00::5]", 8080), "addr:[fd00::5]:8080");
  EXPECT_EQ(LookupKeyForAddress("::ffff:10.96.0.5", 80), "addr:10.96.0.5:80");
  EXPECT_EQ(LookupKeyForAddress("10.96.0.5", 0), std::nullopt);
  EXPECT_EQ(LookupKeyForAddress("10.96.0.5", 65536), std::nullopt);
  EXPECT_EQ(LookupKeyForAddress("reviews", 80), std::nullopt);
  EXPECT_EQ(LookupKeyForAddress("10.96.0.5:80", 80), std::nullopt);
  EXPECT_EQ(LookupKeyForAddress("", 80), std::nullopt);

  EXPECT_EQ(LookupKeyForHost("reviews"), "host:reviews");
  EXPECT_EQ(LookupKeyForHost("Reviews.Shop.:9080"), "host:reviews.shop:9080");
  EXPECT_EQ(LookupKeyForHost("reviews.shop.svc.cluster.local."),
            "host:reviews.shop.svc.cluster.local");
  EXPECT_EQ(LookupKeyForHost("[FD00::5]:80"), "host:[fd00::5]:80");
  EXPECT_EQ(LookupKeyForHost("10.96.0.5"), "host:10.96.0.5");
  EXPECT_EQ(LookupKeyForHost(""), std::nullopt);
  EXPECT_EQ(LookupKeyForHost("."), std::nullopt);
  EXPECT_EQ(LookupKeyForHost("reviews:"), std::nullopt);
  EXPECT_EQ(LookupKeyForHost("reviews:80a"), std::nullopt);
  EXPECT_EQ(LookupKeyForHost("fd00::5"), std::nullopt);
  EXPECT_EQ(LookupKeyForHost("re views"), std::nullopt);
  EXPECT_EQ(LookupKeyForHost("reviews/x"), std::nullopt);
  // Ports 1..65535 only; brackets only around a whole IPv6 literal.
  EXPECT_EQ(LookupKeyForHost("reviews:0"), std::nullopt);
  EXPECT_EQ(LookupKeyForHost("reviews:99999"), std::nullopt);
  EXPECT_EQ(LookupKeyForHost("reviews:65535"), "host:reviews:65535");
  EXPECT_EQ(LookupKeyForHost("re[views]"), std::nullopt);
  EXPECT_EQ(LookupKeyForHost("[reviews]:80"), std::nullopt);
  EXPECT_EQ(LookupKeyForHost("[10.0.0.1"), std::nullopt);
  // The length is that of the key built: a trailing dot does not count.
  EXPECT_EQ(LookupKeyForHost(std::string(kMaxLookupKeyBytes - kLookupHostPrefix.size(), 'a') + ".")
                ->size(),
            kMaxLookupKeyBytes);
  EXPECT_EQ(
      LookupKeyForHost(std::string(kMaxLookupKeyBytes - kLookupHostPrefix.size(), 'a'))->size(),
      kMaxLookupKeyBytes);
  EXPECT_EQ(LookupKeyForHost(std::string(kMaxLookupKeyBytes, 'a')), std::nullopt);

  for (absl::string_view key : {"addr:10.0.0.1:80", "host:reviews"}) EXPECT_TRUE(IsLookupKey(key));
  for (absl::string_view name : {"reviews.shop:80", "outbound", "address:x", ""}) {
    EXPECT_FALSE(IsLookupKey(name)) << name;
  }
}

TEST(VariantTest, HandsOverTheVariantAskedFor) {
  auto name = [](auto& message) { return message.GetTypeName(); };
  EXPECT_EQ(WithRequest(true, name), "meshlet.xds.DeltaDiscoveryRequest");
  EXPECT_EQ(WithRequest(false, name), "meshlet.xds.DiscoveryRequest");
  EXPECT_EQ(WithResponse(true, name), "meshlet.xds.DeltaDiscoveryResponse");
  EXPECT_EQ(WithResponse(false, name), "meshlet.xds.DiscoveryResponse");
}

}  // namespace
TEST(GatewayProxyServiceTest, NamesTheGatewayOrNothing) {
  std::string service, ns;
  ASSERT_TRUE(GatewayProxyService("default/bookinfo", &service, &ns));
  EXPECT_EQ(service, "gateway:bookinfo");
  EXPECT_EQ(ns, "default");
  for (absl::string_view bad : {"", "bookinfo", "/bookinfo", "default/", "a/b/c"}) {
    std::string s = "kept", n = "kept";
    EXPECT_FALSE(GatewayProxyService(bad, &s, &n)) << bad;
    EXPECT_EQ(s, "kept");
    EXPECT_EQ(n, "kept");
  }
}

}  // namespace meshlet::xds

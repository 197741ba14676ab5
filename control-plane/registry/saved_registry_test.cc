#include "control-plane/registry/saved_registry.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "common/base/fake_clock.h"

namespace meshlet::controlplane::registry {
namespace {

TEST(SavedRegistryTest, RoundTripKeepsRegistrationAndReadiness) {
  FakeClock clock;
  Registry registry(clock);
  xds::Node node;
  node.set_id("reviews-0");
  node.set_service("reviews");
  node.set_namespace_("shop");
  node.set_service_account("reviews-sa");
  (*node.mutable_labels())["version"] = "v2";
  (*node.mutable_labels())[kInboundPortLabel] = "26006";
  (*node.mutable_labels())[kWorkloadCertificateLabel] = "true";
  node.add_addresses("10.0.0.7");
  node.add_ports(9080);
  node.set_sidecar_version("0.1.0");
  node.mutable_locality()->set_region("eu");
  node.mutable_locality()->set_zone("eu-a");
  node.mutable_locality()->set_node("node-1");
  ASSERT_TRUE(registry.Connect(WorkloadFromNode(node)));
  ASSERT_EQ(registry.SetReady("reviews-0", false), Registry::ReadyChange::kChanged);
  Workload other;
  other.id = "ratings-0";
  other.service = "ratings";
  ASSERT_TRUE(registry.Connect(other));
  ASSERT_TRUE(registry.Disconnect("ratings-0"));  // waiting out its grace: saved too

  absl::StatusOr<std::vector<Workload>> loaded =
      ParseSavedRegistry(SerializeRegistry(*registry.Snapshot()));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->size(), 2u);
  const Workload& w = (*loaded)[1];
  EXPECT_EQ(w.id, "reviews-0");
  EXPECT_EQ(w.namespace_, "shop");
  EXPECT_EQ(w.service_account, "reviews-sa");
  EXPECT_EQ(w.labels.at("version"), "v2");
  EXPECT_EQ(w.inbound_port, 26006u);
  EXPECT_TRUE(w.workload_certificate);
  EXPECT_EQ(w.addresses, std::vector<std::string>{"10.0.0.7"});
  EXPECT_EQ(w.ports, std::vector<uint32_t>{9080});
  EXPECT_EQ(w.sidecar_version, "0.1.0");
  // Where it runs, for its callers' locality-aware balancing.
  EXPECT_EQ(w.locality.region(), "eu");
  EXPECT_EQ(w.locality.zone(), "eu-a");
  EXPECT_EQ(w.locality.node(), "node-1");
  EXPECT_FALSE(w.ready);
  EXPECT_EQ((*loaded)[0].id, "ratings-0");
  EXPECT_TRUE((*loaded)[0].ready);
  // The node a restored workload came from is the one its sidecar sent.
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(NodeFromWorkload(w), node))
      << NodeFromWorkload(w).DebugString();
}

TEST(SavedRegistryTest, KeepsWhenASidecarLeftUnlessTheControlPlaneWasStopping) {
  FakeClock clock;
  Registry registry(clock);
  Workload gone;
  gone.id = "gone-0";
  ASSERT_TRUE(registry.Connect(gone));
  ASSERT_TRUE(registry.Disconnect("gone-0"));
  const absl::Time left = clock.WallNow();
  clock.Advance(std::chrono::seconds(5));
  Workload live;
  live.id = "live-0";
  ASSERT_TRUE(registry.Connect(live));
  // The control plane stops: its own streams close from then on.
  const absl::Time stopping = clock.WallNow();
  clock.Advance(std::chrono::milliseconds(10));
  ASSERT_TRUE(registry.Disconnect("live-0"));

  absl::StatusOr<std::vector<Workload>> loaded =
      ParseSavedRegistry(SerializeRegistry(*registry.Snapshot(), stopping));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->size(), 2u);
  for (const Workload& w : *loaded) {
    if (w.id == "gone-0") {
      EXPECT_FALSE(w.connected);
      EXPECT_EQ(w.disconnected_at, left);
    } else {
      EXPECT_TRUE(w.connected) << w.id;  // closed by the stop: saved as connected
    }
  }
  // Without a stop, both are saved as disconnected.
  loaded = ParseSavedRegistry(SerializeRegistry(*registry.Snapshot()));
  ASSERT_TRUE(loaded.ok());
  for (const Workload& w : *loaded) EXPECT_FALSE(w.connected) << w.id;
}

TEST(SavedRegistryTest, EqualRegistriesGiveEqualBytes) {
  // The control plane skips a write when the bytes did not change: labels (a map) must not come
  // out in a different order each time.
  FakeClock clock;
  Workload w;
  w.id = "web-0";
  for (int i = 0; i < 16; ++i) w.labels[absl::StrCat("label-", i)] = absl::StrCat("value-", i);
  std::string first;
  for (int round = 0; round < 20; ++round) {
    Registry registry(clock);
    ASSERT_TRUE(registry.Connect(w));
    const std::string bytes = SerializeRegistry(*registry.Snapshot());
    if (round == 0) first = bytes;
    EXPECT_EQ(bytes, first) << "round " << round;
  }
}

TEST(SavedRegistryTest, GarbageIsRefused) {
  EXPECT_FALSE(ParseSavedRegistry("\xff\xff\xff").ok());
  absl::StatusOr<std::vector<Workload>> empty = ParseSavedRegistry("");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

}  // namespace
}  // namespace meshlet::controlplane::registry

#include "control-plane/registry/registry.h"

#include <gtest/gtest.h>

#include "common/base/fake_clock.h"

namespace meshlet::controlplane::registry {
namespace {

using std::chrono::seconds;

Workload Make(std::string id, std::string service = "reviews") {
  Workload w;
  w.id = std::move(id);
  w.service = std::move(service);
  w.addresses = {"10.0.0.1"};
  w.ports = {9080};
  return w;
}

class RegistryTest : public ::testing::Test {
 protected:
  RegistryTest() : registry_(clock_, RegistryOptions{.deregister_grace = seconds(30)}) {
    watch_ = registry_.Watch([this](uint64_t version) { versions_.push_back(version); });
  }
  FakeClock clock_;
  Registry registry_;
  std::vector<uint64_t> versions_;
  std::unique_ptr<Registry::WatchHandle> watch_;
};

TEST_F(RegistryTest, RegisterDisconnectGraceThenRemove) {
  ASSERT_TRUE(registry_.Connect(Make("r-0")));
  EXPECT_EQ(versions_.size(), 1u);
  auto snapshot = registry_.Snapshot();
  ASSERT_EQ(snapshot->workloads.size(), 1u);
  EXPECT_EQ(snapshot->workloads[0].namespace_, "default");
  EXPECT_TRUE(snapshot->workloads[0].connected);
  EXPECT_EQ(snapshot->ForService("default", "reviews").size(), 1u);

  EXPECT_FALSE(registry_.NextExpiry().has_value());
  ASSERT_TRUE(registry_.Disconnect("r-0"));
  EXPECT_EQ(versions_.size(), 2u);
  EXPECT_EQ(registry_.connected(), 0u);
  ASSERT_TRUE(registry_.NextExpiry().has_value());
  EXPECT_EQ(*registry_.NextExpiry(), clock_.Now() + seconds(30));
  // Still registered (endpoints kept) during the grace period.
  clock_.Advance(seconds(29));
  EXPECT_EQ(registry_.ExpireDisconnected(), 0u);
  EXPECT_EQ(registry_.size(), 1u);
  EXPECT_FALSE(registry_.Snapshot()->workloads[0].connected);
  clock_.Advance(seconds(1));
  EXPECT_EQ(registry_.ExpireDisconnected(), 1u);
  EXPECT_EQ(registry_.size(), 0u);
  EXPECT_EQ(versions_.size(), 3u);
  EXPECT_FALSE(registry_.NextExpiry().has_value());
}

TEST_F(RegistryTest, ReconnectWithinGraceKeepsTheWorkload) {
  registry_.Connect(Make("r-0"));
  registry_.Disconnect("r-0");
  clock_.Advance(seconds(20));
  ASSERT_TRUE(registry_.Connect(Make("r-0")));
  clock_.Advance(seconds(60));
  EXPECT_EQ(registry_.ExpireDisconnected(), 0u);
  EXPECT_TRUE(registry_.Snapshot()->workloads[0].connected);
}

TEST_F(RegistryTest, OverlappingStreamsOfOneSidecar) {
  // A reconnect racing the old stream's close: the workload stays connected until both close.
  registry_.Connect(Make("r-0"));
  registry_.Connect(Make("r-0"));
  EXPECT_EQ(versions_.size(), 1u);  // same registration: no change to announce
  registry_.Disconnect("r-0");
  EXPECT_TRUE(registry_.Snapshot()->workloads[0].connected);
  EXPECT_EQ(registry_.Snapshot()->workloads[0].open_streams, 1);
  registry_.Disconnect("r-0");
  EXPECT_FALSE(registry_.Snapshot()->workloads[0].connected);
  EXPECT_FALSE(registry_.Disconnect("r-0"));  // no stream left to close
}

TEST_F(RegistryTest, ReadinessAndHeartbeats) {
  registry_.Connect(Make("r-0"));
  const size_t before = versions_.size();
  // Unchanged: no notification.
  EXPECT_EQ(registry_.SetReady("r-0", true), Registry::ReadyChange::kUnchanged);
  EXPECT_EQ(versions_.size(), before);
  EXPECT_EQ(registry_.SetReady("r-0", false), Registry::ReadyChange::kChanged);
  EXPECT_EQ(versions_.size(), before + 1);
  EXPECT_FALSE(registry_.Snapshot()->workloads[0].ready);
  EXPECT_EQ(registry_.SetReady("r-0", false), Registry::ReadyChange::kUnchanged);
  EXPECT_EQ(versions_.size(), before + 1);
  // Readiness survives a reconnect until the new stream reports it.
  registry_.Disconnect("r-0");
  registry_.Connect(Make("r-0"));
  EXPECT_FALSE(registry_.Snapshot()->workloads[0].ready);
  EXPECT_EQ(registry_.SetReady("r-0", true), Registry::ReadyChange::kChanged);
  EXPECT_TRUE(registry_.Snapshot()->workloads[0].ready);

  const absl::Time first = registry_.Snapshot()->workloads[0].last_heartbeat;
  clock_.Advance(seconds(5));
  const size_t versions = versions_.size();
  EXPECT_TRUE(registry_.Heartbeat("r-0"));
  EXPECT_EQ(versions_.size(), versions);  // heartbeats change no translation input
  EXPECT_EQ(registry_.CurrentWorkloads().workloads[0].last_heartbeat - first, absl::Seconds(5));
  EXPECT_EQ(registry_.Snapshot()->workloads[0].last_heartbeat, first);  // cached until a change
  EXPECT_FALSE(registry_.Heartbeat("nobody"));
  EXPECT_EQ(registry_.SetReady("nobody", true), Registry::ReadyChange::kUnknownWorkload);
}

TEST_F(RegistryTest, ChangedRegistrationNotifies) {
  registry_.Connect(Make("r-0"));
  Workload moved = Make("r-0");
  moved.addresses = {"10.0.0.2"};
  const size_t before = versions_.size();
  registry_.Connect(moved);
  EXPECT_EQ(versions_.size(), before + 1);
  EXPECT_EQ(registry_.Snapshot()->workloads[0].addresses[0], "10.0.0.2");
}

TEST_F(RegistryTest, SnapshotsAreImmutableAndOrdered) {
  registry_.Connect(Make("b"));
  registry_.Connect(Make("a"));
  auto snapshot = registry_.Snapshot();
  registry_.Connect(Make("c"));
  EXPECT_EQ(snapshot->workloads.size(), 2u);
  EXPECT_EQ(snapshot->workloads[0].id, "a");
  EXPECT_NE(snapshot->Find("b"), nullptr);
  EXPECT_EQ(snapshot->Find("c"), nullptr);
  EXPECT_EQ(registry_.Snapshot()->workloads.size(), 3u);
  EXPECT_GT(registry_.Snapshot()->version, snapshot->version);
}

TEST_F(RegistryTest, LimitsAndBadInput) {
  Registry small(clock_, RegistryOptions{.max_workloads = 1});
  EXPECT_TRUE(small.Connect(Make("a")));
  EXPECT_FALSE(small.Connect(Make("b")));
  EXPECT_TRUE(small.Connect(Make("a")));  // an existing one may reconnect
  EXPECT_FALSE(registry_.Connect(Make("")));
}

TEST_F(RegistryTest, RestoredWorkloadKeepsItsEndpointsUntilItReconnectsOrTheGraceEnds) {
  Workload saved = Make("r-0");
  saved.ready = false;
  ASSERT_TRUE(registry_.Restore(saved));
  EXPECT_EQ(versions_.size(), 1u);
  auto snapshot = registry_.Snapshot();
  ASSERT_EQ(snapshot->ForService("default", "reviews").size(), 1u);
  EXPECT_FALSE(snapshot->workloads[0].connected);
  EXPECT_FALSE(snapshot->workloads[0].ready);
  EXPECT_EQ(snapshot->workloads[0].addresses, saved.addresses);
  EXPECT_EQ(registry_.connected(), 0u);
  EXPECT_EQ(*registry_.NextExpiry(), clock_.Now() + seconds(30));
  // Already registered: a restore never overrides what a stream said.
  EXPECT_FALSE(registry_.Restore(Make("r-0", "other")));
  EXPECT_FALSE(registry_.Restore(Make("")));

  // Its sidecar reconnects: connected, no expiry, readiness kept.
  clock_.Advance(seconds(10));
  ASSERT_TRUE(registry_.Connect(Make("r-0")));
  EXPECT_EQ(registry_.connected(), 1u);
  EXPECT_FALSE(registry_.NextExpiry().has_value());
  EXPECT_FALSE(registry_.Snapshot()->workloads[0].ready);
  clock_.Advance(seconds(30));
  EXPECT_EQ(registry_.ExpireDisconnected(), 0u);

  // One whose sidecar never comes back leaves after the grace period.
  ASSERT_TRUE(registry_.Restore(Make("gone")));
  clock_.Advance(seconds(30));
  EXPECT_EQ(registry_.ExpireDisconnected(), 1u);
  EXPECT_EQ(registry_.size(), 1u);

  Registry small(clock_, RegistryOptions{.max_workloads = 1});
  EXPECT_TRUE(small.Restore(Make("a")));
  EXPECT_FALSE(small.Restore(Make("b")));
}

TEST_F(RegistryTest, WorkloadGoneBeforeTheRestartKeepsOnlyTheRestOfItsGrace) {
  Workload left = Make("left-20s-ago");
  left.connected = false;
  left.disconnected_at = clock_.WallNow() - absl::Seconds(20);
  ASSERT_TRUE(registry_.Restore(left));
  EXPECT_EQ(*registry_.NextExpiry(), clock_.Now() + seconds(10));
  // Saved again, it still says when it left (a further restart counts from there too).
  EXPECT_EQ(registry_.Snapshot()->workloads[0].disconnected_at, left.disconnected_at);

  Workload long_gone = Make("left-40s-ago");
  long_gone.connected = false;
  long_gone.disconnected_at = clock_.WallNow() - absl::Seconds(40);
  EXPECT_FALSE(registry_.Restore(long_gone));
  EXPECT_EQ(registry_.size(), 1u);

  // A time in the future (the wall clock stepped back): a whole grace period, no more.
  Workload skewed = Make("skewed");
  skewed.connected = false;
  skewed.disconnected_at = clock_.WallNow() + absl::Seconds(100);
  ASSERT_TRUE(registry_.Restore(skewed));
  for (const Workload& w : registry_.Snapshot()->workloads) {
    if (w.id == "skewed") {
      EXPECT_EQ(w.disconnected_at, clock_.WallNow());
    }
  }
  clock_.Advance(seconds(30));
  EXPECT_EQ(registry_.ExpireDisconnected(), 2u);
  EXPECT_EQ(registry_.size(), 0u);
}

TEST_F(RegistryTest, WatchStopsWhenTheHandleGoes) {
  watch_.reset();
  registry_.Connect(Make("a"));
  EXPECT_TRUE(versions_.empty());
}

TEST(WorkloadFromNodeTest, CopiesTheRegistrationFields) {
  xds::Node node;
  node.set_id("n");
  node.set_service("s");
  node.set_service_account("sa");
  (*node.mutable_labels())["version"] = "v1";
  node.add_addresses("10.0.0.9");
  node.add_ports(80);
  Workload w = WorkloadFromNode(node);
  EXPECT_EQ(w.id, "n");
  EXPECT_EQ(w.namespace_, "default");
  EXPECT_EQ(w.labels.at("version"), "v1");
  EXPECT_EQ(w.addresses, std::vector<std::string>{"10.0.0.9"});
  EXPECT_EQ(w.ports, std::vector<uint32_t>{80});
  EXPECT_EQ(w.inbound_port, 0u);

  (*node.mutable_labels())["meshlet.io/inbound-port"] = "26006";
  (*node.mutable_labels())["meshlet.io/outbound-port"] = "99999";
  w = WorkloadFromNode(node);
  EXPECT_EQ(w.inbound_port, 26006u);
  EXPECT_EQ(w.outbound_port, 0u);  // out of range: the default
}

}  // namespace
}  // namespace meshlet::controlplane::registry

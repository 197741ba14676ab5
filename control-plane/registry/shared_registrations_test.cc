#include "control-plane/registry/shared_registrations.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/base/fake_clock.h"
#include "common/event/loop.h"
#include "control-plane/store/fake_leased_keys.h"

namespace meshlet::controlplane::registry {
namespace {

using std::chrono::seconds;

Workload Make(std::string id, std::string service = "reviews") {
  Workload w;
  w.id = std::move(id);
  w.service = std::move(service);
  w.addresses = {"198.18.0.1"};
  w.ports = {9080};
  w.labels = {{"version", "v1"}};
  return w;
}

// One control-plane replica: its registry and what shares it.
struct Replica {
  Replica(event::Loop& loop, FakeClock& clock, FakeLeasedKeys& keys, const std::string& name)
      : registry(clock, RegistryOptions{.deregister_grace = seconds(30),
                                        .replica = name,
                                        .track_local_changes = true}),
        leased(keys, "lease-" + name),
        shared(std::make_unique<SharedRegistrations>(loop, registry, leased)) {}
  Registry registry;
  FakeLeasedKeys::Replica leased;
  std::unique_ptr<SharedRegistrations> shared;
};

class SharedRegistrationsTest : public ::testing::Test {
 protected:
  std::unique_ptr<Replica> Start(const std::string& name) {
    auto replica = std::make_unique<Replica>(loop_, clock_, keys_, name);
    loop_.RunUntilIdle();
    return replica;
  }
  // The workload `id` as `replica` sees it (merged), or null.
  static const Workload* Find(Replica& replica, const std::string& id) {
    snapshot_ = replica.registry.Snapshot();
    return snapshot_->Find(id);
  }

  event::Loop loop_;
  FakeClock clock_;
  FakeLeasedKeys keys_;
  static inline std::shared_ptr<const RegistrySnapshot> snapshot_;
};

TEST_F(SharedRegistrationsTest, EncodingRoundTripsAndRefusesGarbage) {
  Workload w = Make("reviews-1");
  w.ready = false;
  w.connected = false;
  w.registered_at = absl::FromUnixMillis(1767225600123);
  w.disconnected_at = absl::FromUnixMillis(1767225700456);
  w.replica = "a";
  w.namespace_ = "default";
  w.labels[kInboundPortLabel] = "16006";
  w.locality.set_region("eu");
  w.locality.set_zone("eu-b");
  absl::StatusOr<Workload> back = DecodeRegistration(EncodeRegistration(w));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->id, "reviews-1");
  EXPECT_EQ(back->service, "reviews");
  EXPECT_EQ(back->labels.at("version"), "v1");
  EXPECT_EQ(back->inbound_port, 16006u);
  EXPECT_FALSE(back->ready);
  EXPECT_FALSE(back->connected);
  EXPECT_EQ(back->registered_at, w.registered_at);
  EXPECT_EQ(back->disconnected_at, w.disconnected_at);
  EXPECT_EQ(back->replica, "a");
  // Other replicas balance by its locality too.
  EXPECT_EQ(back->locality.region(), "eu");
  EXPECT_EQ(back->locality.zone(), "eu-b");
  EXPECT_EQ(EncodeRegistration(*back), EncodeRegistration(w));
  EXPECT_FALSE(DecodeRegistration("\xff\xff garbage").ok());
  EXPECT_FALSE(DecodeRegistration("").ok());  // no node id
}

TEST_F(SharedRegistrationsTest, EveryReplicaSeesEveryWorkloadWithItsState) {
  auto a = Start("a");
  auto b = Start("b");
  ASSERT_TRUE(a->registry.Connect(Make("reviews-1")));
  loop_.RunUntilIdle();

  const Workload* seen = Find(*b, "reviews-1");
  ASSERT_NE(seen, nullptr);
  EXPECT_TRUE(seen->connected);
  EXPECT_TRUE(seen->ready);
  EXPECT_EQ(seen->replica, "a");
  EXPECT_EQ(seen->addresses, std::vector<std::string>{"198.18.0.1"});
  EXPECT_EQ(b->registry.size(), 0u);  // nothing connected to b itself
  EXPECT_EQ(b->registry.peer_only(), 1u);
  EXPECT_EQ(b->registry.CurrentWorkloads().workloads.size(), 1u);
  EXPECT_EQ(b->registry.Snapshot()->ForService("default", "reviews").size(), 1u);

  // Readiness, then the stream closing, travel too.
  a->registry.SetReady("reviews-1", false);
  loop_.RunUntilIdle();
  EXPECT_FALSE(Find(*b, "reviews-1")->ready);
  a->registry.Disconnect("reviews-1");
  loop_.RunUntilIdle();
  EXPECT_FALSE(Find(*b, "reviews-1")->connected);
  // a removes it after its grace period; b follows.
  clock_.Advance(seconds(30));
  EXPECT_EQ(a->registry.ExpireDisconnected(), 1u);
  loop_.RunUntilIdle();
  EXPECT_EQ(Find(*b, "reviews-1"), nullptr);
  EXPECT_EQ(keys_.size(), 0u);
}

TEST_F(SharedRegistrationsTest, WorkloadsRegisteredBeforeSharingStartsArePublished) {
  Replica a(loop_, clock_, keys_, "a");
  a.shared.reset();
  ASSERT_TRUE(a.registry.Connect(Make("early")));
  a.shared = std::make_unique<SharedRegistrations>(loop_, a.registry, a.leased);
  auto b = Start("b");
  ASSERT_NE(Find(*b, "early"), nullptr);
  // A replica started later gets what exists first.
  EXPECT_TRUE(keys_.Has("lease-a", RegistrationKey("early")));
}

TEST_F(SharedRegistrationsTest, ADeadReplicasWorkloadsStayForTheGracePeriodUnlessTheyReconnect) {
  auto a = Start("a");
  auto b = Start("b");
  a->registry.Connect(Make("reviews-1"));
  a->registry.Connect(Make("ratings-1", "ratings"));
  loop_.RunUntilIdle();
  ASSERT_EQ(b->registry.Snapshot()->workloads.size(), 2u);

  // a dies: its lease runs out. b keeps both as disconnected: their endpoints stay.
  a->shared.reset();
  keys_.Expire("lease-a");
  loop_.RunUntilIdle();
  ASSERT_EQ(b->registry.Snapshot()->workloads.size(), 2u);
  EXPECT_FALSE(Find(*b, "reviews-1")->connected);
  ASSERT_TRUE(b->registry.NextExpiry().has_value());
  EXPECT_EQ(*b->registry.NextExpiry(), clock_.Now() + seconds(30));

  // reviews-1's sidecar reconnects to b; ratings-1's never comes back.
  clock_.Advance(seconds(1));
  ASSERT_TRUE(b->registry.Connect(Make("reviews-1")));
  loop_.RunUntilIdle();
  EXPECT_TRUE(Find(*b, "reviews-1")->connected);
  EXPECT_EQ(Find(*b, "reviews-1")->replica, "b");
  clock_.Advance(seconds(29));
  EXPECT_EQ(b->registry.ExpireDisconnected(), 2u);  // both of a's ghosts
  EXPECT_NE(Find(*b, "reviews-1"), nullptr);
  EXPECT_EQ(Find(*b, "ratings-1"), nullptr);
  // Published by b now, for every other replica.
  EXPECT_TRUE(keys_.Has("lease-b", RegistrationKey("reviews-1")));
}

TEST_F(SharedRegistrationsTest, AConnectedEntryWinsOverADisconnectedOneAndLocalOverPeer) {
  auto a = Start("a");
  auto b = Start("b");
  auto c = Start("c");
  a->registry.Connect(Make("reviews-1"));
  loop_.RunUntilIdle();
  // The sidecar reconnects to b before a noticed its old stream closing: both connected. Each
  // replica prefers its own entry; a third takes the later registration.
  clock_.Advance(seconds(1));
  b->registry.Connect(Make("reviews-1"));
  loop_.RunUntilIdle();
  EXPECT_EQ(Find(*a, "reviews-1")->replica, "a");
  EXPECT_EQ(Find(*b, "reviews-1")->replica, "b");
  EXPECT_EQ(Find(*c, "reviews-1")->replica, "b");
  // a's stream closes: everyone, a too, takes b's connected entry.
  a->registry.Disconnect("reviews-1");
  loop_.RunUntilIdle();
  for (Replica* r : {a.get(), b.get(), c.get()}) {
    const Workload* w = Find(*r, "reviews-1");
    ASSERT_NE(w, nullptr);
    EXPECT_TRUE(w->connected);
    EXPECT_EQ(w->replica, "b");
  }
  // a's grace ends: its key goes, b's stays.
  clock_.Advance(seconds(30));
  a->registry.ExpireDisconnected();
  loop_.RunUntilIdle();
  EXPECT_FALSE(keys_.Has("lease-a", RegistrationKey("reviews-1")));
  EXPECT_TRUE(keys_.Has("lease-b", RegistrationKey("reviews-1")));
  EXPECT_TRUE(Find(*c, "reviews-1")->connected);
}

TEST_F(SharedRegistrationsTest, ValuesThatAreNotRegistrationsAreSkippedAndCounted) {
  auto b = Start("b");
  keys_.Put("lease-x", RegistrationKey("reviews-1"), "not a registration");
  Workload other = Make("ratings-1");
  keys_.Put("lease-x", RegistrationKey("reviews-2"), EncodeRegistration(other));  // wrong id
  keys_.Put("lease-x", "something/else", "ignored: not a workload key");
  loop_.RunUntilIdle();
  EXPECT_EQ(b->registry.Snapshot()->workloads.size(), 0u);
  EXPECT_EQ(b->shared->undecodable(), 2u);
}

TEST_F(SharedRegistrationsTest, HeartbeatsAreNotPublished) {
  auto a = Start("a");
  a->registry.Connect(Make("reviews-1"));
  loop_.RunUntilIdle();
  const uint64_t published = a->shared->published();
  a->registry.Heartbeat("reviews-1");
  a->registry.SetReady("reviews-1", true);  // unchanged
  loop_.RunUntilIdle();
  EXPECT_EQ(a->shared->published(), published);
}

}  // namespace
}  // namespace meshlet::controlplane::registry

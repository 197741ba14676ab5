#include "sidecar/listener/listener_context.h"

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/base/logging.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::listener {
namespace {

net::Address Addr(const std::string& text) {
  absl::StatusOr<net::Address> address = net::Address::Parse(text);
  CHECK(address.ok()) << address.status();
  return *address;
}

// A snapshot holding one capture listener with `destinations` destinations (one per port).
std::shared_ptr<const config::Snapshot> CaptureSnapshot(int destinations) {
  auto snapshot = std::make_shared<config::Snapshot>();
  config::ListenerConfig l;
  l.name = "outbound";
  l.address = Addr("0.0.0.0:15001");
  l.use_original_destination = true;
  for (int i = 0; i < destinations; ++i) {
    config::ListenerDestinationConfig d;
    d.name = "svc-" + std::to_string(i);
    d.port = static_cast<uint16_t>(20000 + i);
    l.destinations.push_back(std::move(d));
  }
  snapshot->listeners.push_back(std::move(l));
  return snapshot;
}

TEST(ListenerContextTest, EveryWorkersContextReadsTheSnapshotsOwnConfig) {
  // What each worker builds per listener and snapshot: no copy of the listener's config (a
  // capture listener's destinations grow with the mesh).
  std::shared_ptr<const config::Snapshot> snapshot = CaptureSnapshot(1000);
  const config::ListenerConfig& own = snapshot->listeners[0];
  StatsRegistry registry;
  std::unique_ptr<StatsShard> first_shard = registry.CreateShard();
  std::unique_ptr<StatsShard> second_shard = registry.CreateShard();
  std::shared_ptr<ListenerContext> first =
      ListenerContext::Create(own, snapshot, *first_shard, nullptr, nullptr);
  std::shared_ptr<ListenerContext> second =
      ListenerContext::Create(own, snapshot, *second_shard, nullptr, nullptr);
  EXPECT_EQ(&first->config, &own);
  EXPECT_EQ(&second->config, &own);
  EXPECT_EQ(first->snapshot.get(), snapshot.get());
  // The matcher's answers point into that same config.
  ASSERT_TRUE(first->matcher.has_value());
  CaptureDecision decision = first->matcher->Match(Addr("10.0.0.7:20999"), 15001);
  ASSERT_EQ(decision.action, CaptureDecision::Action::kDestination);
  EXPECT_EQ(decision.destination, &own.destinations[999]);
  // The context keeps the snapshot, so the config outlives every other holder.
  snapshot.reset();
  EXPECT_EQ(first->config.destinations.size(), 1000u);
  EXPECT_EQ(first->config.name, "outbound");
}

TEST(ListenerContextDeathTest, AConfigOutsideItsSnapshotIsRefused) {
  std::shared_ptr<const config::Snapshot> snapshot = CaptureSnapshot(1);
  const config::ListenerConfig copy = snapshot->listeners[0];
  StatsRegistry registry;
  std::unique_ptr<StatsShard> shard = registry.CreateShard();
  EXPECT_DEATH(ListenerContext::Create(copy, snapshot, *shard, nullptr, nullptr),
               "must be made from its snapshot's config");
}

}  // namespace
}  // namespace meshlet::sidecar::listener

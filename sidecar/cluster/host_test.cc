#include "sidecar/cluster/host.h"

#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/allocation_counter.h"
#include "common/base/logging.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::cluster {
namespace {

EndpointConfig Endpoint(absl::string_view address, uint32_t weight = 1,
                        EndpointHealth health = EndpointHealth::kHealthy) {
  EndpointConfig e;
  auto parsed = net::Address::Parse(address);
  CHECK_OK(parsed);
  e.address = *parsed;
  e.weight = weight;
  e.health = health;
  return e;
}

// The snapshot holds an EndpointConfig per endpoint of every cluster the sidecar knows, and each
// worker a Host per endpoint of every cluster it built: their addresses are held inline, 48
// bytes, not in a 128-byte sockaddr_storage, and a Host points at its EndpointConfig instead of
// copying it, and keeps no address text (ADR 0091).
TEST(HostSetTest, EndpointsCostLittleMemory) {
  EXPECT_LE(sizeof(EndpointConfig), 120u);
  // Counters, latency and overload state are made on a host's first use, not inline, the
  // holders' count is a field, the set keeps the configuration alive for its hosts (not each
  // host), and the weight is read from the endpoint: 40 bytes, one 48-byte glibc chunk (56 in a
  // 64-byte chunk before; the 152-byte Host and its std::shared_ptr control block took 176), and
  // 8 bytes per holder (16 with std::shared_ptr).
  EXPECT_LE(sizeof(Host), 40u);
  EXPECT_EQ(sizeof(HostSharedPtr), sizeof(void*));
}

// A host lives while any holder does, and its last holder destroys it.
TEST(HostSetTest, HoldersKeepARemovedHostAlive) {
  auto config = std::make_shared<std::vector<EndpointConfig>>();
  config->push_back(Endpoint("10.0.0.1:80"));
  config->push_back(Endpoint("10.0.0.2:80"));
  auto next = std::make_shared<std::vector<EndpointConfig>>();
  next->push_back(Endpoint("10.0.0.2:80"));
  std::weak_ptr<std::vector<EndpointConfig>> weak = config;
  HostSet set;
  set.Update(*config, config);
  HostSharedPtr held = set.hosts()[0];
  HostSharedPtr copy = held;
  HostSharedPtr moved = std::move(copy);
  EXPECT_EQ(copy, nullptr);
  EXPECT_EQ(moved, held);
  {
    std::vector<HostSharedPtr> removed = set.Update(*next, next);
    ASSERT_EQ(removed.size(), 1u);
    EXPECT_EQ(removed[0], held);
  }
  config.reset();
  // Removed, still held twice: alive, with its endpoint's configuration.
  EXPECT_FALSE(held->in_set());
  EXPECT_EQ(held->address().ToString(), "10.0.0.1:80");
  ++held->mutable_stats().rq_total;
  held = nullptr;
  EXPECT_FALSE(weak.expired());
  EXPECT_EQ(moved->stats().rq_total, 1u);
  moved = held;  // the last holder lets go: the host and the configuration it kept go
  EXPECT_TRUE(weak.expired());
  EXPECT_EQ(set.size(), 1u);
}

// Most hosts of a built cluster never get a request: building the set allocates one block per
// host, and reading a host's counters, latency or penalty allocates nothing. The first count
// allocates the host's counters once; latency and overload state come with their first use.
TEST(HostSetTest, UnusedHostsAllocateNothingButThemselves) {
  constexpr int kHosts = 100;
  auto config = std::make_shared<std::vector<EndpointConfig>>();
  for (int i = 0; i < kHosts; ++i) {
    config->push_back(Endpoint(absl::StrCat("10.0.", i / 200, ".", i % 200 + 1, ":80")));
  }
  HostSet set;
  {
    AllocationScope scope;
    set.Update(*config, config);
    // One per host, plus the set's vector and Update's scratch maps.
    EXPECT_LE(scope.count(), static_cast<uint64_t>(kHosts) + 8);
  }
  Host& host = *set.hosts()[0];
  {
    AllocationScope scope;
    for (const HostSharedPtr& h : set.hosts()) {
      EXPECT_EQ(h->stats().rq_total, 0u);
      EXPECT_EQ(h->ewma_latency_ns(), 0);
      EXPECT_FALSE(h->penalized());
      EXPECT_EQ(h->PenaltyAt(MonotonicTime{}), 1);
      EXPECT_EQ(h->overload_until(), MonotonicTime{});
      h->Penalize(0, MonotonicTime{}, Duration::zero());
    }
    EXPECT_EQ(scope.count(), 0u);
  }
  {
    AllocationScope scope;
    ++host.mutable_stats().rq_total;
    EXPECT_EQ(scope.count(), 1u);
    ++host.mutable_stats().rq_success;
    EXPECT_EQ(scope.count(), 1u);
  }
  EXPECT_EQ(host.stats().rq_total, 1u);
  EXPECT_EQ(host.stats().rq_success, 1u);
  {
    AllocationScope scope;
    host.RecordLatency(std::chrono::milliseconds(5), MonotonicTime{}, std::chrono::seconds(1));
    host.Penalize(3, MonotonicTime{}, std::chrono::seconds(1));
    host.set_overload_until(MonotonicTime{} + std::chrono::seconds(2));
    EXPECT_EQ(scope.count(), 1u);
  }
  EXPECT_EQ(host.ewma_latency_ns(), 5e6);
  EXPECT_TRUE(host.penalized());
  EXPECT_EQ(host.overload_until(), MonotonicTime{} + std::chrono::seconds(2));
  // The state survives an update that keeps the host.
  set.Update(*config, config);
  EXPECT_EQ(set.hosts()[0].get(), &host);
  EXPECT_EQ(host.stats().rq_total, 1u);
  EXPECT_TRUE(host.penalized());
}

// Every worker's Host of an endpoint refers to the one EndpointConfig of the shared configuration,
// which stays alive while any of them (a removed host still draining, too) does.
TEST(HostSetTest, HostsShareTheConfigurationsEndpoints) {
  auto config = std::make_shared<std::vector<EndpointConfig>>();
  config->push_back(Endpoint("10.0.0.1:80", 2));
  config->push_back(Endpoint("10.0.0.2:80"));
  std::weak_ptr<std::vector<EndpointConfig>> weak = config;
  HostSet worker1;
  HostSet worker2;
  worker1.Update(*config, config);
  worker2.Update(*config, config);
  for (const HostSet* set : {&worker1, &worker2}) {
    ASSERT_EQ(set->size(), 2u);
    EXPECT_EQ(&set->hosts()[0]->address(), &(*config)[0].address);
    EXPECT_EQ(&set->hosts()[1]->tls(), &(*config)[1].tls);
    EXPECT_EQ(set->hosts()[0]->weight(), 2u);
  }

  // A newer configuration: the host that stays moves to its entry, the removed one keeps the old
  // configuration alive until it is released.
  auto next = std::make_shared<std::vector<EndpointConfig>>();
  next->push_back(Endpoint("10.0.0.2:80", 5));
  const net::Address* const old_address = &(*config)[0].address;
  config.reset();
  std::vector<HostSharedPtr> removed = worker1.Update(*next, next);
  worker2.Update(*next, next);
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(&worker1.hosts()[0]->address(), &(*next)[0].address);
  EXPECT_EQ(worker1.hosts()[0]->weight(), 5u);
  EXPECT_FALSE(weak.expired());
  EXPECT_EQ(&removed[0]->address(), old_address);
  EXPECT_EQ(removed[0]->address().ToString(), "10.0.0.1:80");
  removed.clear();
  EXPECT_TRUE(weak.expired());
}

TEST(HostSetTest, UpdateKeepsHostsThatRemain) {
  HostSet set;
  set.Update({Endpoint("10.0.0.1:80"), Endpoint("10.0.0.2:80")});
  HostSharedPtr kept = set.hosts()[1];
  Host::RequestGuard guard(*kept);
  set.SetHealthFlag(*kept, Host::kOutlierEjected, true);
  const uint64_t version = set.version();

  auto removed = set.Update({Endpoint("10.0.0.2:80", 3), Endpoint("10.0.0.3:80")});
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0]->address().ToString(), "10.0.0.1:80");
  EXPECT_FALSE(removed[0]->in_set());
  ASSERT_EQ(set.size(), 2u);
  EXPECT_EQ(set.hosts()[0].get(), kept.get());
  EXPECT_EQ(kept->weight(), 3u);
  EXPECT_EQ(kept->active_requests(), 1u);
  EXPECT_TRUE(kept->has_health_flag(Host::kOutlierEjected));
  EXPECT_NE(set.hosts()[1]->id(), removed[0]->id());
  EXPECT_GT(set.version(), version);
  EXPECT_EQ(set.healthy_count(), 1u);
}

TEST(HostSetTest, EdsHealthAndOtherFlagsCombine) {
  HostSet set;
  set.Update({Endpoint("10.0.0.1:80", 1, EndpointHealth::kUnhealthy),
              Endpoint("10.0.0.2:80", 0, EndpointHealth::kDraining)});
  Host& a = *set.hosts()[0];
  Host& b = *set.hosts()[1];
  EXPECT_TRUE(a.has_health_flag(Host::kFailedEds));
  EXPECT_TRUE(b.has_health_flag(Host::kDraining));
  EXPECT_EQ(b.weight(), 1u);  // weight 0 is treated as 1
  EXPECT_EQ(set.healthy_count(), 0u);
  set.SetHealthFlag(a, Host::kFailedActiveHealthCheck, true);
  // EDS says healthy again; the health check still says no.
  set.Update({Endpoint("10.0.0.1:80"), Endpoint("10.0.0.2:80")});
  EXPECT_FALSE(a.has_health_flag(Host::kFailedEds));
  EXPECT_FALSE(a.healthy());
  EXPECT_TRUE(b.healthy());
  set.SetHealthFlag(a, Host::kFailedActiveHealthCheck, false);
  EXPECT_TRUE(a.healthy());
  EXPECT_EQ(set.healthy_count(), 2u);
}

TEST(HostSetTest, DuplicateAddressesKeepTheFirst) {
  HostSet set;
  set.Update({Endpoint("10.0.0.1:80", 2), Endpoint("10.0.0.1:80", 5)});
  ASSERT_EQ(set.size(), 1u);
  EXPECT_EQ(set.hosts()[0]->weight(), 2u);
}

TEST(HostSetTest, FlagChangeOnRemovedHostDoesNotBumpVersion) {
  HostSet set;
  set.Update({Endpoint("10.0.0.1:80")});
  auto removed = set.Update({});
  const uint64_t version = set.version();
  set.SetHealthFlag(*removed[0], Host::kOutlierEjected, true);
  EXPECT_EQ(set.version(), version);
}

TEST(HostTest, RequestGuardBalances) {
  HostSet set;
  set.Update({Endpoint("10.0.0.1:80")});
  Host& host = *set.hosts()[0];
  {
    Host::RequestGuard a(host);
    Host::RequestGuard b(host);
    EXPECT_EQ(host.active_requests(), 2u);
    Host::RequestGuard c = std::move(a);
    EXPECT_EQ(host.active_requests(), 2u);
    b.Release();
    EXPECT_EQ(host.active_requests(), 1u);
  }
  EXPECT_EQ(host.active_requests(), 0u);
}

TEST(SessionKeyTest, StableFnv1aOfTheAddressText) {
  // FNV-1a 64 test vectors: the same value in every process, so tokens outlive restarts.
  EXPECT_EQ(SessionKey("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(SessionKey("foobar"), 0x85944171f73967e8ull);
  EXPECT_NE(SessionKey(""), 0u);

  HostSet set;
  set.Update({Endpoint("10.0.0.1:80"), Endpoint("10.0.0.2:80")});
  Host* second = set.hosts()[1].get();
  EXPECT_EQ(second->session_key(), SessionKey("10.0.0.2:80"));
  EXPECT_EQ(set.FindBySessionKey(SessionKey("10.0.0.2:80")), second);
  EXPECT_EQ(set.FindBySessionKey(SessionKey("10.0.0.3:80")), nullptr);
  set.Update({Endpoint("10.0.0.1:80")});
  EXPECT_EQ(set.FindBySessionKey(SessionKey("10.0.0.2:80")), nullptr);
}

}  // namespace
}  // namespace meshlet::sidecar::cluster

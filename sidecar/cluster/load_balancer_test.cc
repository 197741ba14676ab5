#include "sidecar/cluster/load_balancer.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/allocation_counter.h"
#include "common/base/fake_clock.h"
#include "common/base/fake_random.h"
#include "common/base/logging.h"
#include "common/base/random.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::cluster {
namespace {

EndpointConfig Endpoint(int port, uint32_t weight = 1) {
  EndpointConfig e;
  auto address = net::Address::FromIp("10.0.0.1", static_cast<uint16_t>(port));
  CHECK_OK(address);
  e.address = *address;
  e.weight = weight;
  return e;
}

// Hosts named by port (1, 2, 3...) with the given weights.
std::vector<EndpointConfig> Endpoints(std::vector<uint32_t> weights) {
  std::vector<EndpointConfig> out;
  for (size_t i = 0; i < weights.size(); ++i)
    out.push_back(Endpoint(static_cast<int>(i + 1), weights[i]));
  return out;
}

int Port(const Host* host) { return host == nullptr ? 0 : host->address().port(); }

std::string Sequence(LoadBalancer& lb, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += static_cast<char>('a' + Port(lb.Choose()) - 1);
  return out;
}

TEST(RoundRobinTest, EqualWeightsRotate) {
  HostSet hosts;
  hosts.Update(Endpoints({1, 1, 1}));
  FakeRandom random;
  RoundRobinLoadBalancer lb(hosts, random, 50);
  EXPECT_EQ(Sequence(lb, 7), "abcabca");
}

// Every built cluster keeps its balancer's view: with equal weights and every host healthy (the
// common case) that is nothing of its own, the set's hosts are read in place. With a host out the
// healthy ones are listed, sized once. Growing the list by push_back and keeping cumulative
// weights and smooth-WRR state for equal weights cost 11 allocations here, a list of every host
// 1 (ADR 0091).
TEST(LoadBalancerMemoryTest, EqualWeightsAndEveryHostHealthyKeepNoList) {
  HostSet hosts;
  hosts.Update(Endpoints({1, 1, 1, 1, 1, 1, 1, 1, 1, 1}));
  RealRandom random(3);
  for (LbPolicy policy :
       {LbPolicy::kRoundRobin, LbPolicy::kRandom, LbPolicy::kLeastRequest, LbPolicy::kPeakEwma}) {
    std::unique_ptr<LoadBalancer> lb = CreateLoadBalancer(policy, hosts, random, 50);
    {
      AllocationScope scope;
      EXPECT_NE(lb->Choose(), nullptr);
      EXPECT_EQ(scope.count(), 0u) << static_cast<int>(policy);
    }
    Host& out = *hosts.hosts()[3];
    hosts.SetHealthFlag(out, Host::kOutlierEjected, true);
    {
      AllocationScope scope;
      for (int i = 0; i < 50; ++i) EXPECT_NE(lb->Choose(), &out) << static_cast<int>(policy);
      EXPECT_EQ(scope.count(), 1u) << static_cast<int>(policy);  // the 9 healthy hosts
    }
    hosts.SetHealthFlag(out, Host::kOutlierEjected, false);
    bool picked_again = false;
    for (int i = 0; i < 200 && !picked_again; ++i) picked_again = lb->Choose() == &out;
    EXPECT_TRUE(picked_again) << static_cast<int>(policy);
  }
}

// Every built cluster has a balancer: its lists are sized arrays (8 bytes each where a vector took
// 24) and its flags share a word with the panic threshold. 96 bytes, one 112-byte chunk (128 in
// a 144-byte chunk before).
static_assert(sizeof(LeastRequestLoadBalancer) <= 96, "every built cluster has a balancer");

TEST(RoundRobinTest, WeightsInterleaveSmoothly) {
  HostSet hosts;
  hosts.Update(Endpoints({5, 1, 1}));
  FakeRandom random;
  RoundRobinLoadBalancer lb(hosts, random, 50);
  EXPECT_EQ(Sequence(lb, 14), "aabacaaaabacaa");
}

TEST(RoundRobinTest, WeightsTwoToOne) {
  HostSet hosts;
  hosts.Update(Endpoints({2, 1}));
  FakeRandom random;
  RoundRobinLoadBalancer lb(hosts, random, 50);
  EXPECT_EQ(Sequence(lb, 6), "abaaba");
}

TEST(RoundRobinTest, SkipsUnhealthyAndEjected) {
  HostSet hosts;
  hosts.Update(Endpoints({1, 1, 1, 1}));
  FakeRandom random;
  RoundRobinLoadBalancer lb(hosts, random, 50);
  hosts.SetHealthFlag(*hosts.hosts()[1], Host::kOutlierEjected, true);
  std::string seq = Sequence(lb, 6);
  EXPECT_EQ(seq.find('b'), std::string::npos) << seq;
  EXPECT_EQ(hosts.healthy_count(), 3u);
  hosts.SetHealthFlag(*hosts.hosts()[1], Host::kOutlierEjected, false);
  seq = Sequence(lb, 8);
  EXPECT_NE(seq.find('b'), std::string::npos) << seq;
}

TEST(LeastRequestTest, PicksTheLessLoadedOfTwo) {
  HostSet hosts;
  hosts.Update(Endpoints({1, 1, 1, 1}));
  FakeRandom random;
  LeastRequestLoadBalancer lb(hosts, random, 50);
  std::vector<Host::RequestGuard> guards;
  for (int i = 0; i < 5; ++i) guards.emplace_back(*hosts.hosts()[0]);  // a: 5 active
  guards.emplace_back(*hosts.hosts()[2]);                              // c: 1 active
  // First pick a (index 0), second pick c (index 2): c is less loaded.
  random.PushDouble(0.0);
  random.PushDouble(0.5);
  EXPECT_EQ(Port(lb.Choose()), 3);
  // c vs d: d has none.
  random.PushDouble(0.5);
  random.PushDouble(0.75);
  EXPECT_EQ(Port(lb.Choose()), 4);
  guards.clear();
  EXPECT_EQ(hosts.hosts()[0]->active_requests(), 0u);
}

TEST(LeastRequestTest, LoadIsPerUnitOfWeight) {
  HostSet hosts;
  hosts.Update(Endpoints({4, 1}));
  FakeRandom random;
  LeastRequestLoadBalancer lb(hosts, random, 50);
  std::vector<Host::RequestGuard> guards;
  for (int i = 0; i < 3; ++i) guards.emplace_back(*hosts.hosts()[0]);  // a: 3/4
  guards.emplace_back(*hosts.hosts()[1]);                              // b: 1/1
  random.PushDouble(0.9);                                              // b (cumulative 4, 5)
  random.PushDouble(0.1);                                              // a
  EXPECT_EQ(Port(lb.Choose()), 1);
}

TEST(LeastRequestTest, SpreadsLoadEvenlyWithRealRandomness) {
  HostSet hosts;
  hosts.Update(Endpoints({1, 1, 1, 1}));
  RealRandom random(42);
  LeastRequestLoadBalancer lb(hosts, random, 50);
  std::vector<Host::RequestGuard> guards;
  for (int i = 0; i < 400; ++i) guards.emplace_back(*lb.Choose());
  for (const HostSharedPtr& host : hosts.hosts()) {
    EXPECT_GE(host->active_requests(), 90u);
    EXPECT_LE(host->active_requests(), 110u);
  }
}

TEST(RandomTest, WeightedProportions) {
  HostSet hosts;
  hosts.Update(Endpoints({1, 3}));
  RealRandom random(7);
  RandomLoadBalancer lb(hosts, random, 50);
  std::map<int, int> counts;
  constexpr int kPicks = 40000;
  for (int i = 0; i < kPicks; ++i) ++counts[Port(lb.Choose())];
  EXPECT_NEAR(counts[2] / static_cast<double>(kPicks), 0.75, 0.02);
  EXPECT_NEAR(counts[1] / static_cast<double>(kPicks), 0.25, 0.02);
}

TEST(RandomTest, ScriptedPicksFollowCumulativeWeights) {
  HostSet hosts;
  hosts.Update(Endpoints({1, 3}));
  FakeRandom random;
  RandomLoadBalancer lb(hosts, random, 50);
  random.PushDouble(0.2);  // 0.8 of 4 → 0 → a
  EXPECT_EQ(Port(lb.Choose()), 1);
  random.PushDouble(0.3);  // 1.2 → 1 → b
  EXPECT_EQ(Port(lb.Choose()), 2);
}

TEST(PeakEwmaTest, PrefersLowerLatencyTimesLoad) {
  HostSet hosts;
  hosts.Update(Endpoints({1, 1}));
  FakeRandom random;
  PeakEwmaLoadBalancer lb(hosts, random, 50);
  Host& a = *hosts.hosts()[0];
  Host& b = *hosts.hosts()[1];
  const MonotonicTime now{};
  a.RecordLatency(std::chrono::milliseconds(10), now, std::chrono::seconds(10));
  b.RecordLatency(std::chrono::milliseconds(50), now, std::chrono::seconds(10));
  random.PushDouble(0.0);
  random.PushDouble(0.5);
  EXPECT_EQ(Port(lb.Choose()), 1);
  // a: 10 ms x 6 = 60 > b: 50 ms x 1.
  std::vector<Host::RequestGuard> guards;
  for (int i = 0; i < 5; ++i) guards.emplace_back(a);
  random.PushDouble(0.0);
  random.PushDouble(0.5);
  EXPECT_EQ(Port(lb.Choose()), 2);
}

TEST(PeakEwmaTest, PeakIsImmediateAndDecaysSlowly) {
  HostSet hosts;
  hosts.Update(Endpoints({1}));
  Host& a = *hosts.hosts()[0];
  MonotonicTime now{};
  a.RecordLatency(std::chrono::milliseconds(10), now, std::chrono::seconds(10));
  a.RecordLatency(std::chrono::milliseconds(100), now, std::chrono::seconds(10));
  EXPECT_DOUBLE_EQ(a.ewma_latency_ns(), 100e6);
  now += std::chrono::seconds(10);
  a.RecordLatency(std::chrono::milliseconds(10), now, std::chrono::seconds(10));
  // One time constant later the old value keeps weight e^-1.
  EXPECT_NEAR(a.ewma_latency_ns(), 100e6 * 0.3679 + 10e6 * 0.6321, 1e5);
}

TEST(PanicTest, BelowThresholdUsesAllHosts) {
  HostSet hosts;
  hosts.Update(Endpoints({1, 1, 1, 1}));
  FakeRandom random;
  RoundRobinLoadBalancer lb(hosts, random, 50);
  hosts.SetHealthFlag(*hosts.hosts()[0], Host::kFailedActiveHealthCheck, true);
  hosts.SetHealthFlag(*hosts.hosts()[1], Host::kFailedEds, true);
  // 2 of 4 healthy: exactly at the threshold, not panic.
  EXPECT_EQ(Sequence(lb, 4), "cdcd");
  EXPECT_FALSE(lb.panic());
  hosts.SetHealthFlag(*hosts.hosts()[2], Host::kOutlierEjected, true);
  // 1 of 4 healthy: panic, every host is used.
  EXPECT_EQ(Sequence(lb, 4).size(), 4u);
  std::string seq = Sequence(lb, 8);
  for (char c : std::string("abcd")) EXPECT_NE(seq.find(c), std::string::npos) << seq;
  EXPECT_TRUE(lb.panic());
  EXPECT_GT(lb.panic_picks(), 0u);
}

TEST(PanicTest, AllUnhealthyWithPanicOffReturnsNull) {
  HostSet hosts;
  hosts.Update(Endpoints({1, 1}));
  FakeRandom random;
  LeastRequestLoadBalancer lb(hosts, random, 0);
  for (const HostSharedPtr& host : hosts.hosts()) {
    hosts.SetHealthFlag(*host, Host::kFailedEds, true);
  }
  EXPECT_EQ(lb.Choose(), nullptr);
  LeastRequestLoadBalancer panicky(hosts, random, 50);
  EXPECT_NE(panicky.Choose(), nullptr);
}

TEST(LoadBalancerTest, EmptySetReturnsNull) {
  HostSet hosts;
  FakeRandom random;
  for (LbPolicy policy :
       {LbPolicy::kRoundRobin, LbPolicy::kLeastRequest, LbPolicy::kRandom, LbPolicy::kPeakEwma}) {
    auto lb = CreateLoadBalancer(policy, hosts, random, 50);
    EXPECT_EQ(lb->Choose(), nullptr);
  }
}

TEST(LoadBalancerTest, AvoidListPrefersAnotherHost) {
  HostSet hosts;
  hosts.Update(Endpoints({1, 1, 1}));
  FakeRandom random;
  RandomLoadBalancer lb(hosts, random, 50);
  const Host* tried[] = {hosts.hosts()[0].get()};
  random.PushDouble(0.0);  // a: avoided
  random.PushDouble(0.1);  // a again
  random.PushDouble(0.5);  // b
  EXPECT_EQ(Port(lb.Choose({.hosts_to_avoid = tried})), 2);
}

TEST(LoadBalancerTest, AvoidListGivesUpRatherThanFail) {
  HostSet hosts;
  hosts.Update(Endpoints({1}));
  FakeRandom random;
  RoundRobinLoadBalancer lb(hosts, random, 50);
  const Host* tried[] = {hosts.hosts()[0].get()};
  EXPECT_EQ(Port(lb.Choose({.hosts_to_avoid = tried})), 1);
}

TEST(LoadBalancerTest, LeastRequestRetryLeavesAHostThatFailsFast) {
  // a refuses connections at once (a draining sidecar), so it never has requests in flight; b is
  // busy. Two choices prefer a three times in four, re-picks included; a retry avoiding a must
  // still get b every time.
  HostSet hosts;
  hosts.Update(Endpoints({1, 1}));
  RealRandom random(3);
  LeastRequestLoadBalancer lb(hosts, random, 50);
  Host::RequestGuard busy(*hosts.hosts()[1]);
  const Host* tried[] = {hosts.hosts()[0].get()};
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(Port(lb.Choose({.hosts_to_avoid = tried})), 2) << i;
  // Every host tried: one of them rather than none.
  const Host* all[] = {hosts.hosts()[0].get(), hosts.hosts()[1].get()};
  EXPECT_NE(lb.Choose({.hosts_to_avoid = all}), nullptr);
}

TEST(LoadBalancerTest, RoundRobinAvoidsTriedHost) {
  HostSet hosts;
  hosts.Update(Endpoints({1, 1}));
  FakeRandom random;
  RoundRobinLoadBalancer lb(hosts, random, 50);
  const Host* tried[] = {hosts.hosts()[0].get()};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(Port(lb.Choose({.hosts_to_avoid = tried})), 2);
}

TEST(OverloadPenaltyTest, LeastRequestAvoidsAPenalizedHostUntilThePenaltyFades) {
  HostSet hosts;
  hosts.Update(Endpoints({1, 1}));
  FakeRandom random;
  FakeClock clock;
  LeastRequestLoadBalancer lb(hosts, random, 50, &clock);
  Host& a = *hosts.hosts()[0];
  Host& b = *hosts.hosts()[1];
  std::vector<Host::RequestGuard> busy;
  for (int i = 0; i < 3; ++i) busy.emplace_back(b);  // b: 3 in flight, a: idle
  auto pick = [&] {
    random.PushDouble(0.0);  // a
    random.PushDouble(0.5);  // b
    return lb.Choose();
  };
  EXPECT_EQ(pick(), &a);
  a.Penalize(10, clock.Now(), std::chrono::seconds(10));
  EXPECT_EQ(pick(), &b);  // a costs (0 + 1) x 10 against b's 3 + 1
  clock.Advance(std::chrono::seconds(5));
  EXPECT_EQ(pick(), &b);  // 5.5 against 4
  clock.Advance(std::chrono::seconds(3));
  EXPECT_EQ(pick(), &a);  // 2.8 against 4
  clock.Advance(std::chrono::seconds(2));
  EXPECT_EQ(pick(), &a);
  EXPECT_FALSE(a.penalized());  // forgotten once over
}

TEST(OverloadPenaltyTest, PeakEwmaMultipliesThePenalizedHostsCost) {
  HostSet hosts;
  hosts.Update(Endpoints({1, 1}));
  FakeRandom random;
  FakeClock clock;
  PeakEwmaLoadBalancer lb(hosts, random, 50, &clock);
  Host& a = *hosts.hosts()[0];
  Host& b = *hosts.hosts()[1];
  a.RecordLatency(std::chrono::milliseconds(1), clock.Now(), std::chrono::seconds(10));
  b.RecordLatency(std::chrono::milliseconds(5), clock.Now(), std::chrono::seconds(10));
  auto pick = [&] {
    random.PushDouble(0.0);
    random.PushDouble(0.5);
    return lb.Choose();
  };
  EXPECT_EQ(pick(), &a);
  a.Penalize(10, clock.Now(), std::chrono::seconds(10));
  EXPECT_EQ(pick(), &b);
  // Without a clock the balancer ignores penalties.
  PeakEwmaLoadBalancer clockless(hosts, random, 50);
  random.PushDouble(0.0);
  random.PushDouble(0.5);
  EXPECT_EQ(clockless.Choose(), &a);
}

namespace locality {

// Hosts by port; `levels[i]` is host i+1's locality level.
std::vector<EndpointConfig> LevelEndpoints(std::vector<uint8_t> levels,
                                           std::vector<uint32_t> weights = {}) {
  std::vector<EndpointConfig> out;
  for (size_t i = 0; i < levels.size(); ++i) {
    EndpointConfig e = Endpoint(static_cast<int>(i + 1), weights.empty() ? 1 : weights[i]);
    e.locality_level = levels[i];
    out.push_back(e);
  }
  return out;
}

LocalityLbConfig On(uint32_t max_inflight_per_host = 0, Duration max_latency = Duration(0)) {
  return {.enabled = true,
          .overprovisioning_percent = 140,
          .max_inflight_per_host = max_inflight_per_host,
          .max_latency = max_latency};
}

// Picks per port over n picks.
std::map<int, int> Counts(LoadBalancer& lb, int n) {
  std::map<int, int> out;
  for (int i = 0; i < n; ++i) ++out[Port(lb.Choose())];
  return out;
}

constexpr LbPolicy kPolicies[] = {LbPolicy::kRoundRobin, LbPolicy::kRandom, LbPolicy::kLeastRequest,
                                  LbPolicy::kPeakEwma};

TEST(LocalityLoadBalancerTest, AllHealthyStaysInZoneWithEvenLoad) {
  HostSet hosts;
  hosts.Update(LevelEndpoints({0, 0, 1, 1, 2, 2}));
  RealRandom random(7);
  for (LbPolicy policy : kPolicies) {
    std::unique_ptr<LoadBalancer> lb = CreateLoadBalancer(policy, hosts, random, 50);
    lb->EnableLocality(On());
    std::map<int, int> counts = Counts(*lb, 2000);
    EXPECT_EQ(counts[1] + counts[2], 2000) << static_cast<int>(policy);
    EXPECT_NEAR(counts[1], 1000, 150) << static_cast<int>(policy);
    EXPECT_EQ(lb->locality_picks(LocalityDecision::kLocal), 2000u);
    EXPECT_EQ(lb->locality_picks(LocalityDecision::kFailover), 0u);
    ASSERT_TRUE(lb->last_locality().has_value());
    EXPECT_EQ(lb->last_locality()->decision, LocalityDecision::kLocal);
  }
}

TEST(LocalityLoadBalancerTest, DisabledIgnoresLevels) {
  HostSet hosts;
  hosts.Update(LevelEndpoints({0, 1, 2}));
  FakeRandom random;
  RoundRobinLoadBalancer lb(hosts, random, 50);
  EXPECT_EQ(Sequence(lb, 6), "abcabc");
  lb.EnableLocality(On());
  EXPECT_EQ(Sequence(lb, 3), "aaa");
  lb.EnableLocality(LocalityLbConfig{});
  EXPECT_FALSE(lb.locality_enabled());
  EXPECT_FALSE(lb.last_locality().has_value());
  EXPECT_EQ(Sequence(lb, 3), "abc");
}

// Zone with half its hosts healthy keeps 50% x 1.4 = 70% of requests; the rest fails over to the
// region. Outlier ejection, active health checks and overload ejection all count.
TEST(LocalityLoadBalancerTest, PartialLossFailsOverTheShareAbove) {
  for (Host::HealthFlag flag :
       {Host::kOutlierEjected, Host::kFailedActiveHealthCheck, Host::kOverloadEjected}) {
    HostSet hosts;
    hosts.Update(LevelEndpoints({0, 0, 1, 1, 2, 2}));
    RealRandom random(11);
    RandomLoadBalancer lb(hosts, random, 50);
    lb.EnableLocality(On());
    hosts.SetHealthFlag(*hosts.hosts()[0], flag, true);
    std::map<int, int> counts = Counts(lb, 10000);
    EXPECT_EQ(counts[1], 0) << flag;
    EXPECT_NEAR(counts[2], 7000, 300) << flag;
    EXPECT_NEAR(counts[3] + counts[4], 3000, 300) << flag;
    EXPECT_EQ(counts[5] + counts[6], 0) << flag;
    EXPECT_EQ(lb.locality_load(), (LocalityLoad{70, 30, 0}));
    EXPECT_EQ(lb.locality_picks(LocalityDecision::kFailover),
              static_cast<uint64_t>(counts[3] + counts[4]));
  }
}

TEST(LocalityLoadBalancerTest, OverprovisioningAbsorbsSmallLoss) {
  HostSet hosts;
  hosts.Update(LevelEndpoints({0, 0, 0, 0, 1}));
  RealRandom random(5);
  LeastRequestLoadBalancer lb(hosts, random, 50);
  lb.EnableLocality(On());
  hosts.SetHealthFlag(*hosts.hosts()[0], Host::kOutlierEjected, true);  // 75% x 1.4 > 100
  std::map<int, int> counts = Counts(lb, 1000);
  EXPECT_EQ(counts[5], 0);
  EXPECT_EQ(counts[1], 0);
  // A lower factor passes the share on.
  LocalityLbConfig strict = On();
  strict.overprovisioning_percent = 100;
  lb.EnableLocality(strict);
  counts = Counts(lb, 4000);
  EXPECT_NEAR(counts[5], 1000, 150);
}

TEST(LocalityLoadBalancerTest, WholeZoneLostFailsOverToRegionThenElsewhere) {
  HostSet hosts;
  hosts.Update(LevelEndpoints({0, 0, 1, 1, 2, 2}));
  RealRandom random(3);
  RoundRobinLoadBalancer lb(hosts, random, 50);
  lb.EnableLocality(On());
  hosts.SetHealthFlag(*hosts.hosts()[0], Host::kOutlierEjected, true);
  hosts.SetHealthFlag(*hosts.hosts()[1], Host::kOutlierEjected, true);
  std::map<int, int> counts = Counts(lb, 1000);
  EXPECT_EQ(counts[3], 500);  // even over the region
  EXPECT_EQ(counts[4], 500);
  EXPECT_EQ(lb.locality_picks(LocalityDecision::kFailover), 1000u);
  EXPECT_EQ(lb.last_locality()->level, 1);
  // The region lost too: everything elsewhere.
  hosts.SetHealthFlag(*hosts.hosts()[2], Host::kFailedActiveHealthCheck, true);
  hosts.SetHealthFlag(*hosts.hosts()[3], Host::kFailedActiveHealthCheck, true);
  counts = Counts(lb, 1000);
  EXPECT_EQ(counts[5] + counts[6], 1000);
  EXPECT_EQ(lb.last_locality()->level, 2);
  // The zone back: everything local again.
  hosts.SetHealthFlag(*hosts.hosts()[0], Host::kOutlierEjected, false);
  hosts.SetHealthFlag(*hosts.hosts()[1], Host::kOutlierEjected, false);
  counts = Counts(lb, 1000);
  EXPECT_EQ(counts[1] + counts[2], 1000);
}

TEST(LocalityLoadBalancerTest, EmptyLocalLevelGoesToTheNextAsFailover) {
  HostSet hosts;
  hosts.Update(LevelEndpoints({1, 2}));
  FakeRandom random;
  RoundRobinLoadBalancer lb(hosts, random, 50);
  lb.EnableLocality(On());
  EXPECT_EQ(Sequence(lb, 3), "aaa");
  EXPECT_EQ(lb.last_locality()->decision, LocalityDecision::kFailover);
}

TEST(LocalityLoadBalancerTest, PanicOnlyWhenNothingIsHealthy) {
  HostSet hosts;
  hosts.Update(LevelEndpoints({0, 1, 2, 2}));
  RealRandom random(9);
  RandomLoadBalancer lb(hosts, random, 50);
  lb.EnableLocality(On());
  // 1 of 4 healthy is below the 50% panic threshold, but the levels decide: all to the region.
  hosts.SetHealthFlag(*hosts.hosts()[0], Host::kOutlierEjected, true);
  hosts.SetHealthFlag(*hosts.hosts()[2], Host::kOutlierEjected, true);
  hosts.SetHealthFlag(*hosts.hosts()[3], Host::kOutlierEjected, true);
  std::map<int, int> counts = Counts(lb, 500);
  EXPECT_EQ(counts[2], 500);
  EXPECT_FALSE(lb.panic());
  // None healthy: spread by host count over every host.
  hosts.SetHealthFlag(*hosts.hosts()[1], Host::kOutlierEjected, true);
  counts = Counts(lb, 8000);
  EXPECT_TRUE(lb.panic());
  EXPECT_NEAR(counts[1], 2000, 250);
  EXPECT_NEAR(counts[2], 2000, 250);
  EXPECT_NEAR(counts[3] + counts[4], 4000, 300);
  EXPECT_EQ(counts[0], 0);
}

TEST(LocalityLoadBalancerTest, SpillsOverWhileInFlightPerHostIsAboveTheThreshold) {
  HostSet hosts;
  hosts.Update(LevelEndpoints({0, 0, 1, 2}));
  RealRandom random(1);
  LeastRequestLoadBalancer lb(hosts, random, 50);
  lb.EnableLocality(On(/*max_inflight_per_host=*/2));
  std::vector<Host::RequestGuard> guards;
  // 4 in flight on 2 local hosts: at the threshold, not above.
  for (int i = 0; i < 4; ++i) guards.emplace_back(*hosts.hosts()[i % 2]);
  EXPECT_EQ(Port(lb.Choose()) <= 2, true);
  EXPECT_EQ(lb.last_locality()->decision, LocalityDecision::kLocal);
  guards.emplace_back(*hosts.hosts()[0]);
  Host* spilled = lb.Choose();
  EXPECT_EQ(Port(spilled), 3);  // the region, the next level with healthy hosts
  EXPECT_EQ(lb.last_locality()->decision, LocalityDecision::kSpillover);
  EXPECT_EQ(lb.locality_picks(LocalityDecision::kSpillover), 1u);
  // The region gone: spills elsewhere.
  hosts.SetHealthFlag(*hosts.hosts()[2], Host::kOutlierEjected, true);
  EXPECT_EQ(Port(lb.Choose()), 4);
  EXPECT_EQ(lb.last_locality()->decision, LocalityDecision::kSpillover);
  // Load back down: local again.
  guards.pop_back();
  EXPECT_LE(Port(lb.Choose()), 2);
  EXPECT_EQ(lb.last_locality()->decision, LocalityDecision::kLocal);
}

TEST(LocalityLoadBalancerTest, NowhereToSpillStaysLocal) {
  HostSet hosts;
  hosts.Update(LevelEndpoints({0, 1}));
  FakeRandom random;
  RoundRobinLoadBalancer lb(hosts, random, 50);
  lb.EnableLocality(On(/*max_inflight_per_host=*/1));
  hosts.SetHealthFlag(*hosts.hosts()[1], Host::kOutlierEjected, true);
  Host::RequestGuard a(*hosts.hosts()[0]), b(*hosts.hosts()[0]);
  EXPECT_EQ(Port(lb.Choose()), 1);
  EXPECT_EQ(lb.last_locality()->decision, LocalityDecision::kLocal);
}

TEST(LocalityLoadBalancerTest, SpillsOverWhileLocalLatencyIsAboveTheThreshold) {
  HostSet hosts;
  hosts.Update(LevelEndpoints({0, 1}));
  FakeRandom random;
  FakeClock clock;
  RoundRobinLoadBalancer lb(hosts, random, 50, &clock);
  lb.EnableLocality(On(0, std::chrono::milliseconds(100)), std::chrono::seconds(2));
  lb.RecordLocalityLatency(0, std::chrono::milliseconds(50), clock.Now());
  EXPECT_EQ(Port(lb.Choose()), 1);
  // A slow region does not matter; a slow zone does.
  lb.RecordLocalityLatency(1, std::chrono::milliseconds(500), clock.Now());
  EXPECT_EQ(Port(lb.Choose()), 1);
  clock.Advance(std::chrono::seconds(1));
  lb.RecordLocalityLatency(0, std::chrono::milliseconds(400), clock.Now());
  EXPECT_EQ(Port(lb.Choose()), 2);
  EXPECT_EQ(lb.last_locality()->decision, LocalityDecision::kSpillover);
  // No fresh sample within the EWMA's time constant: the zone reads as recovered.
  clock.Advance(std::chrono::milliseconds(2500));
  EXPECT_EQ(Port(lb.Choose()), 1);
  EXPECT_EQ(lb.last_locality()->decision, LocalityDecision::kLocal);
}

TEST(LocalityLoadBalancerTest, RetryAvoidingTheOnlyLocalHostGoesToAnotherLevel) {
  HostSet hosts;
  hosts.Update(LevelEndpoints({0, 1}));
  FakeRandom random;
  for (LbPolicy policy : kPolicies) {
    std::unique_ptr<LoadBalancer> lb = CreateLoadBalancer(policy, hosts, random, 50);
    lb->EnableLocality(On());
    const Host* tried[] = {hosts.hosts()[0].get()};
    EXPECT_EQ(Port(lb->Choose({.hosts_to_avoid = tried})), 2) << static_cast<int>(policy);
  }
}

TEST(LocalityLoadBalancerTest, WeightsApplyWithinTheLevel) {
  HostSet hosts;
  hosts.Update(LevelEndpoints({1, 0, 0, 2}, {9, 3, 1, 9}));
  RealRandom random(2);
  for (LbPolicy policy : {LbPolicy::kRoundRobin, LbPolicy::kRandom}) {
    std::unique_ptr<LoadBalancer> lb = CreateLoadBalancer(policy, hosts, random, 50);
    lb->EnableLocality(On());
    std::map<int, int> counts = Counts(*lb, 4000);
    EXPECT_EQ(counts[2] + counts[3], 4000) << static_cast<int>(policy);
    EXPECT_NEAR(counts[2], 3000, 150) << static_cast<int>(policy);
  }
}

TEST(LocalityLoadBalancerTest, PicksDoNotAllocate) {
  HostSet hosts;
  hosts.Update(LevelEndpoints({0, 0, 1, 1, 2, 2}));
  RealRandom random(3);
  FakeClock clock;
  for (LbPolicy policy : kPolicies) {
    std::unique_ptr<LoadBalancer> lb = CreateLoadBalancer(policy, hosts, random, 50, &clock);
    lb->EnableLocality(On(4, std::chrono::milliseconds(100)));
    hosts.SetHealthFlag(*hosts.hosts()[0], Host::kOutlierEjected, true);
    EXPECT_NE(lb->Choose(), nullptr);  // the refresh builds the levels
    AllocationScope scope;
    for (int i = 0; i < 100; ++i) {
      EXPECT_NE(lb->Choose(), nullptr);
      lb->RecordLocalityLatency(0, std::chrono::milliseconds(5), clock.Now());
    }
    EXPECT_EQ(scope.count(), 0u) << static_cast<int>(policy);
    hosts.SetHealthFlag(*hosts.hosts()[0], Host::kOutlierEjected, false);
  }
}

}  // namespace locality
}  // namespace
}  // namespace meshlet::sidecar::cluster

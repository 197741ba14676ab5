// The cost of one policy write as the store grows, for the control plane's copy of the policy:
// a file store in a temporary directory holds `range(0)` resources (a third each Services,
// TrafficPolicies and HTTPRoutes); each iteration writes one TrafficPolicy (alternating two
// bodies, so every write is a change) and then brings the policy up to date:
//   BM_PutThenReload  reads and parses the whole store again (LoadPolicySnapshot), as every write
//                     did before LivePolicy;
//   BM_PutApplied     LivePolicy applies the change (the write's watch callback parses the one
//                     resource and swaps it into a copy of the snapshot);
//   BM_Put            the store write alone (write, fsync, rename), for reference.

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "control-plane/policy/live_policy.h"
#include "control-plane/policy/snapshot.h"
#include "control-plane/store/file_store.h"

namespace meshlet::controlplane::policy {
namespace {

std::string ServiceBody(int i) {
  return absl::StrCat(R"({"apiVersion":"meshlet.io/v1","kind":"Service","metadata":{"name":"svc-)",
                      i,
                      R"(","namespace":"default"},"spec":{"ports":[{"name":"http","port":8080}]},)",
                      R"("status":{"addresses":["240.240.)", i / 250, ".", i % 250 + 1, R"("]}})");
}

std::string PolicyBody(int i, int attempts) {
  return absl::StrCat(
      R"({"apiVersion":"meshlet.io/v1","kind":"TrafficPolicy","metadata":{"name":"svc-)", i,
      R"(","namespace":"default"},"spec":{"target":"svc-)", i, R"(","retries":{"attempts":)",
      attempts, R"(},"loadBalancer":"ROUND_ROBIN"}})");
}

std::string RouteBody(int i) {
  return absl::StrCat(
      R"({"apiVersion":"meshlet.io/v1","kind":"HTTPRoute","metadata":{"name":"svc-)", i,
      R"(","namespace":"default"},"spec":{"target":"svc-)", i,
      R"(","rules":[{"matches":[{"path":{"value":"/v2"},"headers":[{"name":"x-canary",)",
      R"("value":"1"}]}],"backends":[{"service":"svc-)", i, R"(","weight":100}]}]}})");
}

class Fixture {
 public:
  explicit Fixture(int resources) {
    char pattern[] = "/tmp/live_policy_benchmark.XXXXXX";
    CHECK(::mkdtemp(pattern) != nullptr);
    dir_ = pattern;
    absl::StatusOr<std::unique_ptr<FileStore>> store = FileStore::Open(dir_);
    CHECK(store.ok()) << store.status().message();
    store_ = std::move(*store);
    for (int i = 0; i < resources / 3; ++i) {
      const std::string name = absl::StrCat("svc-", i);
      for (const auto& [kind, body] :
           {std::pair<const char*, std::string>{"Service", ServiceBody(i)},
            {"TrafficPolicy", PolicyBody(i, 2)},
            {"HTTPRoute", RouteBody(i)}}) {
        CHECK(store_->Put({kind, "default", name}, body, kAnyRevision).ok());
      }
    }
  }
  ~Fixture() { std::filesystem::remove_all(dir_); }

  Store& store() { return *store_; }
  // Writes svc-0's TrafficPolicy with a body other than the last one.
  void Write() {
    absl::StatusOr<int64_t> put = store_->Put({"TrafficPolicy", "default", "svc-0"},
                                              PolicyBody(0, 3 + (writes_++ % 2)), kAnyRevision);
    CHECK(put.ok()) << put.status().message();
  }

 private:
  std::string dir_;
  std::unique_ptr<FileStore> store_;
  int writes_ = 0;
};

void BM_Put(benchmark::State& state) {
  Fixture fixture(static_cast<int>(state.range(0)));
  for (auto _ : state) fixture.Write();
}
BENCHMARK(BM_Put)->Arg(30)->Arg(1500)->Arg(15000)->Unit(benchmark::kMillisecond);

void BM_PutThenReload(benchmark::State& state) {
  Fixture fixture(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    fixture.Write();
    absl::StatusOr<PolicySnapshot> loaded = LoadPolicySnapshot(fixture.store());
    CHECK(loaded.ok());
    benchmark::DoNotOptimize(loaded);
  }
}
BENCHMARK(BM_PutThenReload)->Arg(30)->Arg(1500)->Arg(15000)->Unit(benchmark::kMillisecond);

void BM_PutApplied(benchmark::State& state) {
  Fixture fixture(static_cast<int>(state.range(0)));
  LivePolicy live(fixture.store(), nullptr, {}, nullptr);
  CHECK(live.Load().ok());
  for (auto _ : state) {
    fixture.Write();
    benchmark::DoNotOptimize(live.Current());
  }
  CHECK(live.loads() == 1u);
  CHECK(live.changes_applied() == static_cast<uint64_t>(state.iterations()));
}
BENCHMARK(BM_PutApplied)->Arg(30)->Arg(1500)->Arg(15000)->Unit(benchmark::kMillisecond);

// The change alone, without the store write: what the write's watch callback adds to it.
void BM_ApplyChange(benchmark::State& state) {
  Fixture fixture(static_cast<int>(state.range(0)));
  absl::StatusOr<PolicySnapshot> loaded = LoadPolicySnapshot(fixture.store());
  CHECK(loaded.ok());
  const size_t each = static_cast<size_t>(state.range(0) / 3);
  CHECK(loaded->services.size() == each && loaded->traffic_policies.size() == each &&
        loaded->http_routes.size() == each)
      << "a stored resource does not parse";
  auto current = std::make_shared<const PolicySnapshot>(*std::move(loaded));
  int64_t revision = current->revision;
  int attempts = 3;
  for (auto _ : state) {
    StoredResource changed{.key = {"TrafficPolicy", "default", "svc-0"},
                           .body = PolicyBody(0, attempts ^= 7),
                           .revision = ++revision};
    std::optional<PolicyChange> change =
        PreparePolicyChange({.type = WatchEvent::Type::kPut, .resource = std::move(changed)});
    auto next = std::make_shared<PolicySnapshot>(*current);
    ApplyPolicyChange(*change, *next);
    current = std::move(next);
  }
}
BENCHMARK(BM_ApplyChange)->Arg(30)->Arg(1500)->Arg(15000)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace meshlet::controlplane::policy

// The cost of a policy write as the number of stored Services grows: every write checks its
// references (and a Service its addresses) against the stored Services. A file store in a
// temporary directory holds `range(0)` Services (written to it directly); each iteration PUTs a
// TrafficPolicy that names one of them, as a dry run (validation, no store write) and unchanged
// (the same body again: read and compared, not written), so that fsync does not hide the work that
// grows with the Services.
//
// Also: a new Service, as a dry run (its address assigned against the stored Services' addresses),
// and a GET of a Gateway API HTTPRoute (its status computed from the policy), reading the whole
// store (no live policy) or the live policy (policy/live_policy.h) as the control plane does.

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/base/fake_clock.h"
#include "common/base/logging.h"
#include "common/stats/stats.h"
#include "control-plane/api/api_server.h"
#include "control-plane/policy/live_policy.h"
#include "control-plane/store/file_store.h"

namespace meshlet::controlplane::api {
namespace {

constexpr char kPolicy[] = R"({"apiVersion":"meshlet.io/v1","kind":"TrafficPolicy",
  "metadata":{"name":"reviews"},"spec":{"target":"svc-0","retries":{"attempts":3}}})";

class Fixture {
 public:
  explicit Fixture(int services) {
    char pattern[] = "/tmp/api_write_benchmark.XXXXXX";
    CHECK(::mkdtemp(pattern) != nullptr);
    dir_ = pattern;
    absl::StatusOr<std::unique_ptr<FileStore>> store = FileStore::Open(dir_);
    CHECK(store.ok()) << store.status().message();
    store_ = std::move(*store);
    api_ = std::make_unique<PolicyApi>(*store_, nullptr, clock_, ApiOptions{}, nullptr);
    // Stored directly (as the API stores a Service without addresses): quick to set up.
    for (int i = 0; i < services; ++i) {
      const std::string name = absl::StrCat("svc-", i);
      absl::StatusOr<int64_t> put = store_->Put(
          ResourceKey{"Service", "default", name},
          absl::StrCat(R"({"apiVersion":"meshlet.io/v1","kind":"Service","metadata":{"name":")",
                       name, R"(","namespace":"default"},"spec":{"ports":[{"name":"http","port":)",
                       R"(8080}]}})"),
          kMustNotExist);
      CHECK(put.ok()) << put.status().message();
    }
  }
  ~Fixture() { std::filesystem::remove_all(dir_); }

  http::ServerResponse Put(const std::string& path, const std::string& body) {
    return Call("PUT", path, body);
  }
  http::ServerResponse Call(const std::string& method, const std::string& path,
                            const std::string& body = "") {
    http::ServerRequest request;
    request.headers.Add(":method", method);
    request.headers.Add(":path", path);
    request.body = body;
    return api_->Handle(request);
  }
  Store& store() { return *store_; }
  PolicyApi& api() { return *api_; }

 private:
  std::string dir_;
  FakeClock clock_;
  std::unique_ptr<FileStore> store_;
  std::unique_ptr<PolicyApi> api_;
};

void BM_DryRunWrite(benchmark::State& state) {
  Fixture fixture(static_cast<int>(state.range(0)));
  const std::string path =
      "/apis/meshlet.io/v1/namespaces/default/trafficpolicies/reviews?dryRun=All";
  for (auto _ : state) {
    http::ServerResponse r = fixture.Put(path, kPolicy);
    if (r.status != 201) state.SkipWithError(r.body.c_str());
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_DryRunWrite)->Arg(10)->Arg(100)->Arg(1000);

void BM_UnchangedWrite(benchmark::State& state) {
  Fixture fixture(static_cast<int>(state.range(0)));
  const std::string path = "/apis/meshlet.io/v1/namespaces/default/trafficpolicies/reviews";
  CHECK(fixture.Put(path, kPolicy).status == 201);
  for (auto _ : state) {
    http::ServerResponse r = fixture.Put(path, kPolicy);
    if (r.status != 200) state.SkipWithError(r.body.c_str());
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_UnchangedWrite)->Arg(10)->Arg(100)->Arg(1000);

void BM_ServiceDryRunCreate(benchmark::State& state) {
  Fixture fixture(static_cast<int>(state.range(0)));
  const std::string path = "/apis/meshlet.io/v1/namespaces/default/services/new?dryRun=All";
  const std::string body =
      R"({"apiVersion":"meshlet.io/v1","kind":"Service","metadata":{"name":"new"},)"
      R"("spec":{"ports":[{"name":"http","port":8080}]}})";
  for (auto _ : state) {
    http::ServerResponse r = fixture.Put(path, body);
    if (r.status != 201) state.SkipWithError(r.body.c_str());
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_ServiceDryRunCreate)->Arg(10)->Arg(1000)->Arg(5000);

// range(1): 1 with the live policy, 0 reading the store.
void BM_GatewayRouteGet(benchmark::State& state) {
  Fixture fixture(static_cast<int>(state.range(0)));
  const std::string path = "/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/r";
  http::ServerResponse put = fixture.Put(
      path, R"({"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute",)"
            R"("metadata":{"name":"r"},"spec":{"parentRefs":[{"kind":"Service","name":"svc-0",)"
            R"("port":8080}],"rules":[{"backendRefs":[{"name":"svc-0","port":8080}]}]}})");
  CHECK(put.status == 201) << put.body;
  if (state.range(1) == 1) {
    auto live = std::make_shared<policy::LivePolicy>(fixture.store(), nullptr,
                                                     policy::LivePolicyOptions{}, nullptr);
    CHECK(live->Load().ok());
    fixture.api().SetLivePolicy(live);
  }
  for (auto _ : state) {
    http::ServerResponse r = fixture.Call("GET", path);
    if (r.status != 200 || r.body.find("\"Accepted\"") == std::string::npos) {
      state.SkipWithError(r.body.c_str());
    }
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_GatewayRouteGet)->ArgsProduct({{10, 1000, 5000}, {0, 1}});

}  // namespace
}  // namespace meshlet::controlplane::api

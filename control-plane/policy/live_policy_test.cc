#include "control-plane/policy/live_policy.h"

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "control-plane/policy/codec.h"
#include "control-plane/store/file_store.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::policy {
namespace {

// A FileStore that counts the listings made of it and can be told to fail them.
class CountingStore final : public Store {
 public:
  explicit CountingStore(std::unique_ptr<FileStore> inner) : inner_(std::move(inner)) {}

  absl::StatusOr<StoredResource> Get(const ResourceKey& key) const override {
    return inner_->Get(key);
  }
  absl::StatusOr<std::vector<StoredResource>> List(absl::string_view kind,
                                                   absl::string_view namespace_) const override {
    ++lists_;
    if (fail_lists_) return absl::UnavailableError("no quorum");
    absl::StatusOr<std::vector<StoredResource>> listed = inner_->List(kind, namespace_);
    // Once: writes made while the listing is under way.
    if (std::function<void()> hook = std::exchange(during_list_, nullptr)) hook();
    return listed;
  }
  absl::StatusOr<int64_t> Put(const ResourceKey& key, absl::string_view body,
                              int64_t expected_revision) override {
    return inner_->Put(key, body, expected_revision);
  }
  absl::StatusOr<int64_t> Delete(const ResourceKey& key, int64_t expected_revision) override {
    return inner_->Delete(key, expected_revision);
  }
  int64_t Revision() const override { return inner_->Revision(); }
  std::unique_ptr<WatchHandle> Watch(WatchCallback callback) override {
    return inner_->Watch(std::move(callback));
  }

  mutable std::atomic<int> lists_{0};
  std::atomic<bool> fail_lists_{false};
  mutable std::function<void()> during_list_;

 private:
  std::unique_ptr<FileStore> inner_;
};

class LivePolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/live_policy_test");
    std::filesystem::remove_all(dir_);
    absl::StatusOr<std::unique_ptr<FileStore>> store = FileStore::Open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::make_unique<CountingStore>(*std::move(store));
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Writes `yaml` as the API stores it; returns the revision.
  int64_t Put(absl::string_view yaml) {
    absl::StatusOr<ParsedResource> parsed = ParseResource(yaml);
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    if (!parsed.ok()) return 0;
    const meshlet::policy::ObjectMeta& meta = Metadata(*parsed->message);
    absl::StatusOr<int64_t> put =
        store_->Put({std::string(parsed->info->store_kind), meta.namespace_(), meta.name()},
                    ToJson(*parsed->message), kAnyRevision);
    EXPECT_TRUE(put.ok()) << put.status();
    return put.value_or(0);
  }

  // Everything `snapshot` holds, as text, for comparison with a snapshot read afresh (without
  // the revision: a later write that is not policy moves the store's, not the policy's).
  static std::string Dump(const PolicySnapshot& snapshot) {
    std::string out;
    auto dump = [&out](absl::string_view what, const auto& list) {
      for (const auto& item : list) absl::StrAppend(&out, what, " ", ToJson(item), "\n");
    };
    dump("Service", snapshot.services);
    dump("TrafficPolicy", snapshot.traffic_policies);
    dump("HTTPRoute", snapshot.http_routes);
    dump("AuthorizationPolicy", snapshot.authorization_policies);
    dump("GatewayHTTPRoute", snapshot.gateway_http_routes);
    dump("GRPCRoute", snapshot.grpc_routes);
    dump("ReferenceGrant", snapshot.reference_grants);
    if (snapshot.mesh_config.has_value()) {
      absl::StrAppend(&out, "MeshConfig ", ToJson(*snapshot.mesh_config), "\n");
    }
    return out;
  }

  std::string Fresh() {
    absl::StatusOr<PolicySnapshot> loaded = LoadPolicySnapshot(*store_);
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    return loaded.ok() ? Dump(*loaded) : "";
  }

  std::string dir_;
  std::unique_ptr<CountingStore> store_;
};

// 1 000 writes of every kind (creates, updates, deletes, a body that no longer parses, records
// that are not policy) cost one listing of the store, at the first load; the policy then equals
// a fresh read of the store (compared every 50 writes).
TEST_F(LivePolicyTest, WritesAreAppliedOneAtATimeWithoutReadingTheStoreAgain) {
  Put("apiVersion: meshlet.io/v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\n"
      "spec: {ports: [{name: http, port: 9080}]}\n");
  std::atomic<int> notified{0};
  LivePolicy live(*store_, nullptr, {}, [&] { ++notified; });
  EXPECT_EQ(live.Current(), nullptr);
  ASSERT_TRUE(live.Load().ok());
  EXPECT_EQ(store_->lists_.load(), 1);
  EXPECT_EQ(notified.load(), 1);
  EXPECT_EQ(Dump(*live.Current()), Fresh());
  const int lists_after_load = store_->lists_.load();

  std::mt19937 random(52);
  int changes = 0;
  int fresh_reads = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::string name = absl::StrCat("s", random() % 40);
    const std::string ns = random() % 2 ? "default" : "shop";
    std::shared_ptr<const PolicySnapshot> before = live.Current();
    bool policy_change = true;
    switch (random() % 8) {
      case 0:
      case 1:
        Put(absl::StrCat("apiVersion: meshlet.io/v1\nkind: Service\nmetadata: {name: ", name,
                         ", namespace: ", ns,
                         "}\nspec: {ports: [{name: http, port: ", 8000 + random() % 100, "}]}\n"));
        break;
      case 2:
        Put(absl::StrCat("apiVersion: meshlet.io/v1\nkind: TrafficPolicy\nmetadata: {name: ", name,
                         ", namespace: ", ns, "}\nspec: {target: ", name,
                         ", retries: {attempts: ", random() % 5 + 1, "}}\n"));
        break;
      case 3:
        Put(absl::StrCat("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n",
                         "metadata: {name: ", name, ", namespace: ", ns, "}\n"));
        break;
      case 4:
        Put(absl::StrCat("apiVersion: meshlet.io/v1\nkind: MeshConfig\nmetadata: {name: ",
                         random() % 2 ? "mesh" : "other", "}\nspec: {serviceAddressRange: ",
                         "240.240.0.0/", 16 + random() % 4, "}\n"));
        break;
      case 5: {
        // Deletes whichever of the kinds above is stored under that name.
        bool deleted = false;
        for (const char* kind : {"Service", "TrafficPolicy", "GatewayHTTPRoute"}) {
          deleted = deleted || store_->Delete({kind, ns, name}, kAnyRevision).ok();
        }
        policy_change = deleted;
        break;
      }
      case 6:
        // A stored body that no longer parses: left out, as a fresh read leaves it out.
        ASSERT_TRUE(store_->Put({"TrafficPolicy", ns, name}, "{not json", kAnyRevision).ok());
        break;
      case 7:
        // Not policy (an address allocation record): no change to the policy.
        ASSERT_TRUE(store_
                        ->Put({"AddressAllocation", "", "services"},
                              absl::StrCat("{\"n\":", i, "}"), kAnyRevision)
                        .ok());
        policy_change = false;
        break;
    }
    if (policy_change) {
      ++changes;
      EXPECT_EQ(live.Current()->revision, store_->Revision()) << "write " << i;
      EXPECT_NE(live.Current(), before) << "write " << i;
    } else {
      EXPECT_EQ(live.Current(), before) << "write " << i;
    }
    if (i % 50 == 49) {
      ASSERT_EQ(Dump(*live.Current()), Fresh()) << "after write " << i;
      ++fresh_reads;
    }
  }
  // Fresh() listed the store; LivePolicy itself never did again.
  EXPECT_EQ(store_->lists_.load(), lists_after_load + fresh_reads);
  EXPECT_EQ(live.loads(), 1u);
  EXPECT_EQ(live.changes_applied(), static_cast<uint64_t>(changes));
  EXPECT_EQ(notified.load(), 1 + changes);
}

// An unchanged resource is shared between the snapshots before and after a write: a write
// copies pointers, not resources.
TEST_F(LivePolicyTest, SnapshotsShareTheResourcesAWriteDidNotChange) {
  for (const char* name : {"a", "b"}) {
    Put(absl::StrCat("apiVersion: meshlet.io/v1\nkind: Service\nmetadata: {name: ", name,
                     ", namespace: default}\nspec: {ports: [{name: http, port: 80}]}\n"));
  }
  LivePolicy live(*store_, nullptr, {}, nullptr);
  ASSERT_TRUE(live.Load().ok());
  std::shared_ptr<const PolicySnapshot> before = live.Current();
  Put("apiVersion: meshlet.io/v1\nkind: Service\nmetadata: {name: b, namespace: default}\n"
      "spec: {ports: [{name: http, port: 81}]}\n");
  std::shared_ptr<const PolicySnapshot> after = live.Current();
  ASSERT_EQ(after->services.size(), 2u);
  EXPECT_EQ(&after->services[0], &before->services[0]);  // "a": the same object
  EXPECT_NE(&after->services[1], &before->services[1]);
  EXPECT_EQ(before->services[1].spec().ports(0).port(), 80u);  // the old snapshot is unchanged
  EXPECT_EQ(after->services[1].spec().ports(0).port(), 81u);
  EXPECT_GT(after->revision, before->revision);
}

// Writes made while the store cannot be listed are in the policy the next load gives.
TEST_F(LivePolicyTest, ALoadAfterAFailedOneHasTheWritesMadeMeanwhile) {
  LivePolicy live(*store_, nullptr, {}, nullptr);
  store_->fail_lists_ = true;
  EXPECT_FALSE(live.Load().ok());
  EXPECT_EQ(live.Current(), nullptr);
  Put("apiVersion: meshlet.io/v1\nkind: Service\nmetadata: {name: a, namespace: default}\n");
  EXPECT_EQ(live.Current(), nullptr);
  store_->fail_lists_ = false;
  ASSERT_TRUE(live.Load().ok());
  Put("apiVersion: meshlet.io/v1\nkind: Service\nmetadata: {name: b, namespace: default}\n");
  ASSERT_NE(live.Current(), nullptr);
  EXPECT_EQ(live.Current()->services.size(), 2u);
  EXPECT_EQ(Dump(*live.Current()), Fresh());
}

// Changes reported while the store is being listed are kept up to a bound; past it, that load
// fails (the caller loads again) rather than give a policy missing some of them.
TEST_F(LivePolicyTest, MoreChangesDuringAListingThanTheBoundFailThatLoad) {
  LivePolicy live(*store_, nullptr, {.max_pending_changes = 2}, nullptr);
  store_->during_list_ = [this] {
    for (const char* name : {"a", "b", "c"}) {
      Put(absl::StrCat("apiVersion: meshlet.io/v1\nkind: Service\nmetadata: {name: ", name,
                       ", namespace: default}\n"));
    }
  };
  absl::Status loaded = live.Load();
  EXPECT_TRUE(absl::IsUnavailable(loaded)) << loaded;
  EXPECT_NE(loaded.message().find("more than 2 policy changes"), absl::string_view::npos) << loaded;
  ASSERT_TRUE(live.Load().ok());
  EXPECT_EQ(live.Current()->services.size(), 3u);
  EXPECT_EQ(Dump(*live.Current()), Fresh());
}

}  // namespace
}  // namespace meshlet::controlplane::policy

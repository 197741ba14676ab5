#include "control-plane/addresses/service_addresses.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "control-plane/policy/codec.h"
#include "control-plane/store/file_store.h"
#include "control-plane/store/forwarding_store.h"

namespace meshlet::controlplane::addresses {
namespace {

namespace pb = ::meshlet::policy;

class ServiceAddressesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           absl::StrCat("addresses_test_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    Restart();
  }

  // A new store and allocator over the same directory, as a restarted control plane has.
  void Restart() {
    addresses_.reset();
    store_.reset();
    auto store = FileStore::Open(dir_.string());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    stats_ = std::make_unique<StatsRegistry>();
    addresses_ = std::make_unique<ServiceAddresses>(*store_, stats_.get());
  }

  std::optional<pb::Service> Find(const std::string& name) {
    absl::StatusOr<StoredResource> s = store_->Get({"Service", "default", name});
    if (!s.ok()) return std::nullopt;
    return static_cast<pb::Service&>(*policy::ParseStoredResource("Service", s->body)->message);
  }

  // Writes a Service as the API does; returns its addresses (status), comma-separated.
  std::string Apply(const std::string& name, const std::string& spec_addresses = "",
                    bool dry_run = false) {
    pb::Service service;
    service.mutable_metadata()->set_name(name);
    service.mutable_metadata()->set_namespace_("default");
    service.mutable_spec()->add_ports()->set_port(80);
    if (!spec_addresses.empty()) service.mutable_spec()->add_addresses(spec_addresses);
    std::optional<pb::Service> previous = Find(name);
    warnings_.clear();
    absl::Status s =
        addresses_->Assign(service, previous ? &*previous : nullptr, dry_run, warnings_);
    EXPECT_TRUE(s.ok()) << s;
    if (!dry_run) {
      EXPECT_TRUE(
          store_->Put({"Service", "default", name}, policy::ToJson(service), kAnyRevision).ok());
      addresses_->Settle();
    }
    return absl::StrJoin(service.status().addresses(), ",");
  }

  void Delete(const std::string& name) {
    ASSERT_TRUE(store_->Delete({"Service", "default", name}, kAnyRevision).ok());
  }

  void SetRanges(const std::string& v4, const std::string& v6 = "") {
    pb::MeshConfig mc;
    mc.mutable_metadata()->set_name("mesh");
    mc.mutable_spec()->set_service_address_range(v4);
    mc.mutable_spec()->set_service_address_range_v6(v6);
    ASSERT_TRUE(store_->Put({"MeshConfig", "", "mesh"}, policy::ToJson(mc), kAnyRevision).ok());
  }

  uint64_t Counter(const std::string& name) {
    const StatsSnapshot snapshot = stats_->Snapshot();
    const SeriesSnapshot* series = snapshot.Find(name);
    return series == nullptr ? 0 : series->counter;
  }

  std::filesystem::path dir_;
  std::unique_ptr<FileStore> store_;
  std::unique_ptr<StatsRegistry> stats_;
  std::unique_ptr<ServiceAddresses> addresses_;
  std::vector<std::string> warnings_;
};

// The store as two replicas share it: before this replica's first write of the cursor record,
// `before_first_cursor_write` runs (another replica allocating in between).
class RacingStore final : public ForwardingStore {
 public:
  RacingStore(Store& store, std::function<void()> before_first_cursor_write)
      : ForwardingStore(store), hook_(std::move(before_first_cursor_write)) {}
  absl::StatusOr<int64_t> Put(const ResourceKey& key, absl::string_view body,
                              int64_t expected) override {
    if (key.kind == kAllocationKind && hook_ != nullptr) std::exchange(hook_, nullptr)();
    return inner().Put(key, body, expected);
  }

 private:
  std::function<void()> hook_;
};

TEST_F(ServiceAddressesTest, TwoReplicasAllocatingAtOnceNeverShareAnAddress) {
  SetRanges("10.200.0.0/29");  // .1 to .6 usable
  EXPECT_EQ(Apply("a"), "10.200.0.1");
  // This replica is about to write the cursor when the other replica allocates .2 for b and
  // stores b.
  RacingStore racing(*store_, [&] { EXPECT_EQ(Apply("b"), "10.200.0.2"); });
  ServiceAddresses replica(racing, nullptr);
  pb::Service c;
  c.mutable_metadata()->set_name("c");
  c.mutable_metadata()->set_namespace_("default");
  std::vector<std::string> warnings;
  ASSERT_TRUE(replica.Assign(c, nullptr, false, warnings).ok());
  EXPECT_EQ(absl::StrJoin(c.status().addresses(), ","), "10.200.0.3");
  ASSERT_TRUE(store_->Put({"Service", "default", "c"}, policy::ToJson(c), kAnyRevision).ok());
  replica.Settle();

  // The same once the range is full and released addresses come back (no cursor to move), with
  // the other replica between allocating .1 for d and storing d: the lowest free address goes to
  // exactly one of them.
  for (int i = 4; i <= 6; ++i) Apply(absl::StrCat("s", i));
  Delete("a");
  Delete("b");
  pb::Service d;
  d.mutable_metadata()->set_name("d");
  d.mutable_metadata()->set_namespace_("default");
  RacingStore racing_again(*store_, [&] {
    ASSERT_TRUE(addresses_->Assign(d, nullptr, false, warnings).ok());
    EXPECT_EQ(absl::StrJoin(d.status().addresses(), ","), "10.200.0.1");
  });
  ServiceAddresses replica_again(racing_again, nullptr);
  pb::Service e;
  e.mutable_metadata()->set_name("e");
  e.mutable_metadata()->set_namespace_("default");
  ASSERT_TRUE(replica_again.Assign(e, nullptr, false, warnings).ok());
  EXPECT_EQ(absl::StrJoin(e.status().addresses(), ","), "10.200.0.2");
  ASSERT_TRUE(store_->Put({"Service", "default", "d"}, policy::ToJson(d), kAnyRevision).ok());
  addresses_->Settle();
  ASSERT_TRUE(store_->Put({"Service", "default", "e"}, policy::ToJson(e), kAnyRevision).ok());
  replica_again.Settle();
  // Every reservation lifted: the record holds none.
  absl::StatusOr<StoredResource> record = store_->Get({kAllocationKind, "", kAllocationName});
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->body.find("reserved"), std::string::npos) << record->body;
}

TEST_F(ServiceAddressesTest, AllocatesFromTheDefaultRangeAndKeepsAddressesAcrossUpdates) {
  EXPECT_EQ(Apply("reviews"), "240.240.0.1");
  EXPECT_EQ(Apply("ratings"), "240.240.0.2");
  EXPECT_EQ(Apply("reviews"), "240.240.0.1");  // an update keeps it
  EXPECT_EQ(Apply("ratings"), "240.240.0.2");
  EXPECT_TRUE(warnings_.empty());
  EXPECT_EQ(Counter("meshlet_cp_service_addresses_allocated_total"), 2u);
}

TEST_F(ServiceAddressesTest, StableAcrossRestartsAndReleasedAddressesWaitForTheRangeToFill) {
  EXPECT_EQ(Apply("a"), "240.240.0.1");
  EXPECT_EQ(Apply("b"), "240.240.0.2");
  Delete("a");
  Restart();
  EXPECT_EQ(Find("b")->status().addresses(0), "240.240.0.2");
  EXPECT_EQ(Apply("b"), "240.240.0.2");
  // a's address is not given to the next Service, even after a restart.
  EXPECT_EQ(Apply("c"), "240.240.0.3");
}

TEST_F(ServiceAddressesTest, FullRangeWarnsAndReusesOnlyOnceEveryAddressWasHandedOut) {
  SetRanges("10.200.0.0/29");  // .1 to .6 usable
  for (int i = 1; i <= 6; ++i) {
    EXPECT_EQ(Apply(absl::StrCat("s", i)), absl::StrCat("10.200.0.", i));
  }
  EXPECT_EQ(Apply("late"), "");
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_EQ(warnings_[0],
            "Service default/late gets no address from 10.200.0.0/29: every address of the range "
            "is in use; set spec.addresses, or widen the range in MeshConfig (the Service gets "
            "one then)");
  EXPECT_EQ(Counter("meshlet_cp_service_addresses_exhausted_total"), 1u);
  // Stored without one; a freed address goes to it at its next write, now that the range was
  // handed out whole.
  Delete("s4");
  Delete("s2");
  EXPECT_EQ(Apply("late"), "10.200.0.2");
  EXPECT_EQ(Apply("later"), "10.200.0.4");
}

TEST_F(ServiceAddressesTest, DeclaredAddressesReleaseAllocationsAndAreNeverAllocated) {
  EXPECT_EQ(Apply("a"), "240.240.0.1");
  // Declaring addresses gives the allocated one back (not reused early, though).
  EXPECT_EQ(Apply("a", "10.96.0.10"), "");
  EXPECT_EQ(Apply("fixed", "240.240.0.2"), "");  // declared inside the range
  EXPECT_EQ(Apply("b"), "240.240.0.3");
  // Back to no declared addresses: a new allocation.
  EXPECT_EQ(Apply("a"), "240.240.0.4");
}

TEST_F(ServiceAddressesTest, DryRunMovesNoCursor) {
  EXPECT_EQ(Apply("a", "", /*dry_run=*/true), "240.240.0.1");
  EXPECT_FALSE(store_->Get({kAllocationKind, "", kAllocationName}).ok());
  EXPECT_EQ(Apply("a"), "240.240.0.1");
  EXPECT_EQ(Counter("meshlet_cp_service_addresses_allocated_total"), 1u);
}

TEST_F(ServiceAddressesTest, OneAddressPerConfiguredFamily) {
  SetRanges("240.240.0.0/16", "fd00:240::/112");
  EXPECT_EQ(Apply("a"), "240.240.0.1,fd00:240::1");
  EXPECT_EQ(Apply("a"), "240.240.0.1,fd00:240::1");
  // A changed range does not renumber what exists; new Services come from it.
  SetRanges("10.200.0.0/24", "fd00:240::/112");
  EXPECT_EQ(Apply("a"), "240.240.0.1,fd00:240::1");
  EXPECT_EQ(Apply("b"), "10.200.0.1,fd00:240::2");
}

TEST_F(ServiceAddressesTest, AssignMissingBackfillsStoredServices) {
  // Stored before allocation existed.
  for (const char* name : {"old-a", "old-b"}) {
    pb::Service s;
    s.mutable_metadata()->set_name(name);
    s.mutable_metadata()->set_namespace_("default");
    s.mutable_spec()->add_ports()->set_port(80);
    ASSERT_TRUE(store_->Put({"Service", "default", name}, policy::ToJson(s), kMustNotExist).ok());
  }
  EXPECT_EQ(Apply("new", "10.96.0.1"), "");
  absl::StatusOr<ServiceAddresses::Backfill> backfill = addresses_->AssignMissing();
  ASSERT_TRUE(backfill.ok()) << backfill.status();
  EXPECT_EQ(backfill->assigned, 2u);
  EXPECT_EQ(Find("old-a")->status().addresses(0), "240.240.0.1");
  EXPECT_EQ(Find("old-b")->status().addresses(0), "240.240.0.2");
  EXPECT_EQ(Find("new")->status().addresses_size(), 0);
  // Nothing more to do; an IPv6 range configured later adds IPv6 addresses.
  EXPECT_EQ(addresses_->AssignMissing()->assigned, 0u);
  SetRanges("", "fd00::/120");
  EXPECT_EQ(addresses_->AssignMissing()->assigned, 2u);
  EXPECT_EQ(absl::StrJoin(Find("old-b")->status().addresses(), ","), "240.240.0.2,fd00::2");
}

// A bulk load parses each stored Service once, not every stored Service again at every write
// (which made loading N Services cost N^2/2 parses).
TEST_F(ServiceAddressesTest, EachWriteParsesOnlyTheServicesWrittenSinceTheLastOne) {
  constexpr int kServices = 200;
  for (int i = 0; i < kServices; ++i) {
    EXPECT_EQ(Apply(absl::StrCat("s", i)),
              absl::StrCat("240.240.", (i + 1) / 256, ".", (i + 1) % 256));
  }
  // Each write's listing parses the one Service written since the one before.
  EXPECT_LE(addresses_->services_parsed(), static_cast<uint64_t>(kServices));
}

// A Service whose addresses changed since the last listing is parsed again: its new address is
// in use, its old one no longer.
TEST_F(ServiceAddressesTest, AServiceChangedSinceTheLastListingIsReadAgain) {
  SetRanges("10.200.0.0/29");  // .1 to .6 usable
  EXPECT_EQ(Apply("a"), "10.200.0.1");
  // Written by hand (or another replica) with .2, the next address the cursor gives.
  pb::Service moved = *Find("a");
  moved.mutable_status()->set_addresses(0, "10.200.0.2");
  ASSERT_TRUE(store_->Put({"Service", "default", "a"}, policy::ToJson(moved), kAnyRevision).ok());
  EXPECT_EQ(Apply("b"), "10.200.0.3");  // .2 is a's now
  // Past the end of the range the lowest free address comes back: .1, which a gave up.
  EXPECT_EQ(Apply("c"), "10.200.0.4");
  EXPECT_EQ(Apply("d"), "10.200.0.5");
  EXPECT_EQ(Apply("e"), "10.200.0.6");
  EXPECT_EQ(Apply("f"), "10.200.0.1");
}

}  // namespace
}  // namespace meshlet::controlplane::addresses

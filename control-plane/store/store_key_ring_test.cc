#include "control-plane/store/store_key_ring.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/stats/stats.h"
#include "control-plane/store/file_store.h"

namespace meshlet::controlplane {
namespace {

namespace fs = std::filesystem;

// A directory laid out as the kubelet mounts a Secret: `store-key` is a symlink to
// `..data/store-key`, `..data` a symlink to a timestamped directory, and an update writes a new
// directory and swaps `..data` to it with one rename.
class MountedSecret {
 public:
  explicit MountedSecret(std::string dir) : dir_(std::move(dir)) {
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~MountedSecret() { fs::remove_all(dir_); }

  std::string path() const { return dir_ + "/store-key"; }

  void Write(const std::string& text) {
    const std::string version = absl::StrCat("..version_", ++versions_);
    fs::create_directories(absl::StrCat(dir_, "/", version));
    std::ofstream(absl::StrCat(dir_, "/", version, "/store-key")) << text;
    fs::create_symlink(version, dir_ + "/..data_tmp");
    fs::rename(dir_ + "/..data_tmp", dir_ + "/..data");
    if (!fs::is_symlink(path())) fs::create_symlink("..data/store-key", path());
  }

 private:
  const std::string dir_;
  int versions_ = 0;
};

std::string TmpDir(absl::string_view name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  return absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", name);
}

std::string IdOf(const std::string& key_text) {
  return StoreKeys::Parse(key_text, "test")->current_key_id();
}

class StoreKeyRingTest : public ::testing::Test {
 protected:
  uint64_t Counter(absl::string_view name, const LabelSet& labels = {}) {
    StatsSnapshot snapshot = stats_.Snapshot();
    const SeriesSnapshot* series = snapshot.Find(name, labels);
    return series == nullptr ? 0 : series->counter;
  }
  std::optional<int64_t> Gauge(absl::string_view name, const LabelSet& labels = {}) {
    StatsSnapshot snapshot = stats_.Snapshot();
    const SeriesSnapshot* series = snapshot.Find(name, labels);
    if (series == nullptr) return std::nullopt;
    return series->gauge;
  }

  // A file store in directory `name` holding ControlPlaneSecret/api-token sealed with `ring`'s
  // keys, checked once (the sealed-records gauge set); removed with the test.
  std::unique_ptr<FileStore> StoreWithApiToken(const std::string& name, StoreKeyRing& ring) {
    store_dir_ = TmpDir(name);
    fs::remove_all(store_dir_);
    absl::StatusOr<std::unique_ptr<FileStore>> store = FileStore::Open(store_dir_);
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return nullptr;
    EXPECT_TRUE(LoadOrCreateSharedValue(**store, *ring.keys(), "api-token", [] {
                  return absl::StatusOr<std::string>("token");
                }).ok());
    EXPECT_TRUE(ring.ResealAndCount(**store).ok());
    return *std::move(store);
  }
  void TearDown() override {
    if (!store_dir_.empty()) fs::remove_all(store_dir_);
  }

  StatsRegistry stats_;
  std::string store_dir_;
  MountedSecret secret_{TmpDir("store_key_ring_test")};
  const std::string old_key_ = StoreKeys::GenerateKeyText();
};

TEST_F(StoreKeyRingTest, ASwappedSecretIsTakenWithoutRestartAndRecordsAreSealedAgain) {
  secret_.Write(absl::StrCat(old_key_, "\n"));
  absl::StatusOr<std::unique_ptr<StoreKeyRing>> ring = StoreKeyRing::Open(secret_.path(), &stats_);
  ASSERT_TRUE(ring.ok()) << ring.status();
  std::unique_ptr<FileStore> store = StoreWithApiToken("store_key_ring_test_store", **ring);
  ASSERT_NE(store, nullptr);
  const LabelSet under_old = {{"record", "ControlPlaneSecret/api-token"},
                              {"key_id", IdOf(old_key_)}};
  EXPECT_EQ(Gauge("meshlet_cp_store_sealed_records", under_old), 1);

  // Unchanged: nothing to take.
  EXPECT_FALSE((*ring)->Reload());
  // The rotation: a new first key, the old one kept, written as the kubelet does.
  const std::shared_ptr<const StoreKeys> held = (*ring)->keys();
  secret_.Write(*StoreKeys::WithNewFirstKey(absl::StrCat(old_key_, "\n"), "key"));
  EXPECT_TRUE((*ring)->Reload());
  const std::string new_id = (*ring)->keys()->current_key_id();
  EXPECT_NE(new_id, IdOf(old_key_));
  EXPECT_EQ((*ring)->keys()->size(), 2u);
  EXPECT_EQ(held->size(), 1u);  // a holder of the old keys keeps them
  EXPECT_EQ(Counter("meshlet_cp_store_key_reloads_total", {{"result", "ok"}}), 1u);
  EXPECT_EQ(Gauge("meshlet_cp_store_keys"), 2);

  absl::StatusOr<std::vector<SealedRecord>> records = (*ring)->ResealAndCount(*store);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(*records, (std::vector<SealedRecord>{{"api-token", new_id}}));
  EXPECT_EQ(StoreKeys::KeyIdOf(store->Get({kSharedValueKind, "", "api-token"})->body), new_id);
  EXPECT_EQ(Counter("meshlet_cp_store_resealed_records_total"), 1u);
  EXPECT_EQ(Gauge("meshlet_cp_store_sealed_records", under_old), 0);
  EXPECT_EQ(Gauge("meshlet_cp_store_sealed_records",
                  {{"record", "ControlPlaneSecret/api-token"}, {"key_id", new_id}}),
            1);
}

TEST_F(StoreKeyRingTest, ABadOrMissingFileIsRefusedOnceAndTheKeysInUseStay) {
  secret_.Write(absl::StrCat(old_key_, "\n"));
  absl::StatusOr<std::unique_ptr<StoreKeyRing>> ring = StoreKeyRing::Open(secret_.path(), &stats_);
  ASSERT_TRUE(ring.ok()) << ring.status();
  const std::string id = (*ring)->keys()->current_key_id();
  for (const std::string& bad :
       {absl::StrCat(StoreKeys::GenerateKeyText(), "\nnot a key\n", old_key_, "\n"),
        std::string("# emptied\n"), old_key_.substr(0, 20)}) {
    secret_.Write(bad);
    EXPECT_FALSE((*ring)->Reload());
    EXPECT_FALSE((*ring)->Reload());  // the same file again: neither taken nor counted again
    EXPECT_EQ((*ring)->keys()->current_key_id(), id);
    EXPECT_EQ((*ring)->keys()->size(), 1u);
  }
  EXPECT_EQ(Counter("meshlet_cp_store_key_reloads_total", {{"result", "failed"}}), 3u);
  EXPECT_EQ(Counter("meshlet_cp_store_key_reloads_total", {{"result", "ok"}}), 0u);
  // Gone altogether (the Secret deleted): refused the same way.
  fs::remove(fs::path(secret_.path()));
  EXPECT_FALSE((*ring)->Reload());
  EXPECT_EQ((*ring)->keys()->current_key_id(), id);
  EXPECT_EQ(Counter("meshlet_cp_store_key_reloads_total", {{"result", "failed"}}), 4u);
  // A good file again is taken.
  secret_.Write(*StoreKeys::WithNewFirstKey(old_key_, "key"));
  EXPECT_TRUE((*ring)->Reload());
  EXPECT_EQ((*ring)->keys()->size(), 2u);
}

TEST_F(StoreKeyRingTest, AFileWithoutTheKeyThatStillSealsARecordIsRefused) {
  secret_.Write(absl::StrCat(old_key_, "\n"));
  absl::StatusOr<std::unique_ptr<StoreKeyRing>> ring = StoreKeyRing::Open(secret_.path(), &stats_);
  ASSERT_TRUE(ring.ok()) << ring.status();
  std::unique_ptr<FileStore> store = StoreWithApiToken("store_key_ring_test_drop", **ring);
  ASSERT_NE(store, nullptr);
  // The old key dropped by hand before the record was sealed with the new one: refused, the
  // old key stays in use, and the same file is looked at again at each check.
  const std::string new_key = StoreKeys::GenerateKeyText();
  secret_.Write(absl::StrCat(new_key, "\n"));
  EXPECT_FALSE((*ring)->Reload());
  EXPECT_FALSE((*ring)->Reload());
  EXPECT_EQ((*ring)->keys()->current_key_id(), IdOf(old_key_));
  EXPECT_EQ(Counter("meshlet_cp_store_key_reloads_total", {{"result", "failed"}}), 1u);
  // The rotation done as it should be: both keys, the record sealed again, then the old key
  // dropped.
  secret_.Write(absl::StrCat(new_key, "\n", old_key_, "\n"));
  EXPECT_TRUE((*ring)->Reload());
  ASSERT_TRUE((*ring)->ResealAndCount(*store).ok());
  secret_.Write(absl::StrCat(new_key, "\n"));
  EXPECT_TRUE((*ring)->Reload());
  EXPECT_EQ((*ring)->keys()->size(), 1u);
  EXPECT_EQ((*ring)->keys()->current_key_id(), IdOf(new_key));
}

}  // namespace
}  // namespace meshlet::controlplane

#include "control-plane/install/store_key_rotation.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "control-plane/store/store_keys.h"

namespace meshlet::controlplane::install {
namespace {

namespace fs = std::filesystem;

std::string IdOf(absl::string_view text) {
  return StoreKeys::Parse(text, "test")->current_key_id();
}

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class StoreKeyRotationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/store_key_rotation_test");
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = dir_ + "/store-key";
    std::ofstream(path_) << "# the mesh's store key\n" << old_key_ << "\n";
    ::chmod(path_.c_str(), 0640);
  }
  void TearDown() override { fs::remove_all(dir_); }

  mode_t Mode() {
    struct stat st {};
    ::stat(path_.c_str(), &st);
    return st.st_mode & 07777;
  }

  std::string dir_, path_;
  const std::string old_key_ = StoreKeys::GenerateKeyText();
};

TEST_F(StoreKeyRotationTest, RotateThenFinishOnceEveryRecordIsUnderTheNewKey) {
  absl::StatusOr<std::string> new_id = RotateKeyFile(path_);
  ASSERT_TRUE(new_id.ok()) << new_id.status();
  const std::string rotated = Read(path_);
  EXPECT_EQ(IdOf(rotated), *new_id);
  EXPECT_EQ(StoreKeys::Parse(rotated, "k")->key_ids(),
            (std::vector<std::string>{*new_id, IdOf(old_key_)}));
  EXPECT_TRUE(absl::EndsWith(rotated, absl::StrCat("# the mesh's store key\n", old_key_, "\n")));
  EXPECT_EQ(Mode(), 0640u);  // kept, whatever the umask
  EXPECT_FALSE(fs::exists(path_ + ".tmp"));

  // One record still under the old key: refused, naming it; the file is unchanged.
  const std::string metrics = absl::StrCat(
      "# TYPE meshlet_cp_store_sealed_records gauge\n",
      "meshlet_cp_store_sealed_records{record=\"ControlPlaneSecret/api-token\",key_id=\"", *new_id,
      "\"} 1\n", "meshlet_cp_store_sealed_records{record=\"ControlPlaneSecret/ca-root\",key_id=\"",
      IdOf(old_key_), "\"} 1\n",
      "meshlet_cp_store_sealed_records{record=\"ControlPlaneSecret/api-token\",key_id=\"",
      IdOf(old_key_), "\"} 0\n");
  std::map<std::string, std::string> sealed = SealedRecordsFromMetrics(metrics);
  EXPECT_EQ(sealed,
            (std::map<std::string, std::string>{{"ControlPlaneSecret/api-token", *new_id},
                                                {"ControlPlaneSecret/ca-root", IdOf(old_key_)}}));
  absl::Status early = FinishKeyFile(path_, sealed);
  EXPECT_TRUE(absl::IsFailedPrecondition(early)) << early;
  EXPECT_TRUE(absl::StrContains(
      early.message(),
      absl::StrCat("not finishing: ControlPlaneSecret/ca-root (key ", IdOf(old_key_),
                   ") is not "
                   "sealed with the first key of ",
                   path_, " (", *new_id, ")")))
      << early;
  EXPECT_EQ(Read(path_), rotated);
  // Nothing reported (no control plane on etcd): refused too.
  EXPECT_TRUE(absl::IsFailedPrecondition(FinishKeyFile(path_, {})));
  EXPECT_EQ(Read(path_), rotated);

  // Every record under the new key: the old key goes, the comment stays.
  sealed["ControlPlaneSecret/ca-root"] = *new_id;
  ASSERT_TRUE(FinishKeyFile(path_, sealed).ok());
  const std::string finished = Read(path_);
  EXPECT_EQ(StoreKeys::Parse(finished, "k")->key_ids(), (std::vector<std::string>{*new_id}));
  EXPECT_TRUE(absl::StrContains(finished, "# the mesh's store key"));
  EXPECT_EQ(Mode(), 0640u);
}

TEST_F(StoreKeyRotationTest, ASymlinkedFileIsWrittenWhereItPoints) {
  const std::string link = dir_ + "/link";
  fs::create_symlink("store-key", link);
  ASSERT_TRUE(RotateKeyFile(link).ok());
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_EQ(StoreKeys::Parse(Read(path_), "k")->size(), 2u);
}

TEST_F(StoreKeyRotationTest, RootRotatingAnotherUsersFileKeepsItsOwnerAndGroup) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give the file to another user";
  // The control plane's user (65532, as in the images) owns the file; an operator rotates it
  // with sudo: the rewritten file must stay readable by the control plane.
  ASSERT_EQ(::chown(path_.c_str(), 65532, 65533), 0) << std::strerror(errno);
  ASSERT_TRUE(RotateKeyFile(path_).ok());
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 65532u);
  EXPECT_EQ(st.st_gid, 65533u);
  EXPECT_EQ(Mode(), 0640u);
}

TEST_F(StoreKeyRotationTest, AMalformedFileIsRefusedAndLeftAsItWas) {
  const std::string bad = absl::StrCat(old_key_, "\nAAAA\n");
  std::ofstream(path_) << bad;
  absl::StatusOr<std::string> rotated = RotateKeyFile(path_);
  EXPECT_TRUE(absl::IsInvalidArgument(rotated.status()));
  EXPECT_TRUE(
      absl::StartsWith(rotated.status().message(), absl::StrCat(path_, ": line 2: not a key")))
      << rotated.status();
  EXPECT_EQ(Read(path_), bad);
  EXPECT_TRUE(absl::IsInvalidArgument(FinishKeyFile(path_, {{"ControlPlaneSecret/x", "y"}})));
  EXPECT_EQ(Read(path_), bad);
  EXPECT_TRUE(absl::IsNotFound(RotateKeyFile(dir_ + "/missing").status()));
}

}  // namespace
}  // namespace meshlet::controlplane::install

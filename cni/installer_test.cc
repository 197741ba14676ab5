#include "cni/installer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "cni/conflist.h"
#include "common/base/atomic_file.h"
#include "common/base/file.h"

namespace meshlet::cni {
namespace {

constexpr char kPlugin[] = R"({"type":"meshlet-cni"})";
constexpr char kBridge[] =
    "{\n  \"cniVersion\": \"1.0.0\",\n  \"name\": \"pods\",\n  \"plugins\": [\n"
    "    {\"type\": \"bridge\", \"bridge\": \"cni0\"}\n  ]\n}\n";

class InstallerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string base = absl::StrCat(::testing::TempDir(), "/installer.XXXXXX");
    ASSERT_NE(::mkdtemp(base.data()), nullptr);
    dir_ = base;
    conf_dir_ = dir_ + "/net.d";
    ASSERT_EQ(::mkdir(conf_dir_.c_str(), 0755), 0);
  }
  void TearDown() override { std::system(absl::StrCat("rm -rf '", dir_, "'").c_str()); }

  Installer Make() {
    return Installer({.conf_dir = conf_dir_, .state_file = dir_ + "/state", .plugin = kPlugin});
  }
  void Write(const std::string& name, const std::string& content) {
    ASSERT_TRUE(WriteFileAtomically(conf_dir_ + "/" + name, content, {.mode = 0644}).ok());
  }
  std::string Read(const std::string& name) {
    absl::StatusOr<std::string> content = ReadFile(conf_dir_ + "/" + name);
    return content.ok() ? *content : "<" + std::string(content.status().message()) + ">";
  }
  bool Exists(const std::string& name) {
    return ::access((conf_dir_ + "/" + name).c_str(), F_OK) == 0;
  }

  std::string dir_, conf_dir_;
};

TEST_F(InstallerTest, InsertsOnceAndUninstallRestoresTheBytes) {
  Write("10-pods.conflist", kBridge);
  Write("20-other.conflist", kBridge);  // not the one the runtime uses: never touched
  Installer installer = Make();
  EXPECT_EQ(installer.Ensure().value(), EnsureOutcome::kInserted);
  EXPECT_EQ(FindPlugin("10-pods.conflist", Read("10-pods.conflist")).value(), PluginPlace::kLast);
  EXPECT_EQ(installer.Ensure().value(), EnsureOutcome::kInChain);
  // A restarted agent (a new Installer, the same state) finds itself in the chain.
  EXPECT_EQ(Make().Ensure().value(), EnsureOutcome::kInChain);
  ASSERT_TRUE(installer.Uninstall().ok());
  EXPECT_EQ(Read("10-pods.conflist"), kBridge);
  EXPECT_EQ(Read("20-other.conflist"), kBridge);
  EXPECT_FALSE(::access((dir_ + "/state").c_str(), F_OK) == 0);
  EXPECT_TRUE(installer.Uninstall().ok());  // nothing left to remove
}

TEST_F(InstallerTest, RepairsAFileRewrittenWithoutIt) {
  Write("10-pods.conflist", kBridge);
  Installer installer = Make();
  ASSERT_EQ(installer.Ensure().value(), EnsureOutcome::kInserted);
  // Another agent rewrites its configuration (new content, no meshlet-cni).
  const std::string rewritten =
      std::string(kBridge).replace(std::string(kBridge).find("cni0"), 4, "cni1");
  Write("10-pods.conflist", rewritten);
  EXPECT_EQ(installer.Ensure().value(), EnsureOutcome::kRepaired);
  EXPECT_EQ(FindPlugin("x.conflist", Read("10-pods.conflist")).value(), PluginPlace::kLast);
  EXPECT_NE(Read("10-pods.conflist").find("cni1"), std::string::npos);
  // Another agent writes a file that sorts first: the runtime uses it, so the agent moves there.
  Write("05-new.conflist", kBridge);
  EXPECT_EQ(installer.Ensure().value(), EnsureOutcome::kRepaired);
  EXPECT_EQ(FindPlugin("x.conflist", Read("05-new.conflist")).value(), PluginPlace::kLast);
  // Uninstall leaves the rewritten file as its writer meant it.
  ASSERT_TRUE(installer.Uninstall().ok());
  EXPECT_EQ(Read("05-new.conflist"), kBridge);
}

TEST_F(InstallerTest, ConvertsAConfAndRestoresIt) {
  const std::string conf = "{\"cniVersion\":\"0.4.0\",\"name\":\"b\",\"type\":\"bridge\"}";
  Write("10-bridge.conf", conf);
  ASSERT_TRUE(::chmod((conf_dir_ + "/10-bridge.conf").c_str(), 0600) == 0);
  Installer installer = Make();
  EXPECT_EQ(installer.Ensure().value(), EnsureOutcome::kInserted);
  EXPECT_FALSE(Exists("10-bridge.conf"));
  EXPECT_EQ(FindPlugin("10-bridge.conflist", Read("10-bridge.conflist")).value(),
            PluginPlace::kLast);
  EXPECT_EQ(installer.Ensure().value(), EnsureOutcome::kInChain);
  ASSERT_TRUE(installer.Uninstall().ok());
  EXPECT_EQ(Read("10-bridge.conf"), conf);
  EXPECT_FALSE(Exists("10-bridge.conflist"));
  struct stat st;
  ASSERT_EQ(::stat((conf_dir_ + "/10-bridge.conf").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(InstallerTest, AChangedEntryIsReplacedAndTheOriginalKept) {
  Write("10-pods.conflist", kBridge);
  ASSERT_EQ(Make().Ensure().value(), EnsureOutcome::kInserted);
  Installer changed({.conf_dir = conf_dir_,
                     .state_file = dir_ + "/state",
                     .plugin = R"({"type":"meshlet-cni","logFile":"/x"})"});
  EXPECT_EQ(changed.Ensure().value(), EnsureOutcome::kRepaired);
  EXPECT_NE(Read("10-pods.conflist").find("/x"), std::string::npos);
  ASSERT_TRUE(changed.Uninstall().ok());
  EXPECT_EQ(Read("10-pods.conflist"), kBridge);
}

TEST_F(InstallerTest, BadInputsAreReportedAndNothingIsWritten) {
  Installer installer = Make();
  EXPECT_EQ(installer.Ensure().value(), EnsureOutcome::kNoConfig);
  Write("10-broken.conflist", "{\"plugins\": [");
  absl::StatusOr<EnsureOutcome> outcome = installer.Ensure();
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(outcome.status().message().find("10-broken.conflist"), std::string::npos);
  EXPECT_EQ(Read("10-broken.conflist"), "{\"plugins\": [");
  EXPECT_FALSE(installer.Uninstall().ok());
  EXPECT_EQ(Read("10-broken.conflist"), "{\"plugins\": [");

  Installer missing({.conf_dir = dir_ + "/absent", .state_file = dir_ + "/s", .plugin = kPlugin});
  EXPECT_EQ(missing.Ensure().status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(WriteFileAtomically(dir_ + "/state", "garbage").ok());
  Write("10-broken.conflist", kBridge);
  EXPECT_EQ(installer.Ensure().status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(Read("10-broken.conflist"), kBridge);
}

}  // namespace
}  // namespace meshlet::cni

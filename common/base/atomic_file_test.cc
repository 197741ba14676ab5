#include "common/base/atomic_file.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/base/file.h"
#include "gtest/gtest.h"

namespace meshlet {
namespace {

class WriteFileAtomicallyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    std::string base = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/write.XXXXXX");
    ASSERT_NE(::mkdtemp(base.data()), nullptr);
    dir_ = base;
  }
  void TearDown() override {
    ::chmod(dir_.c_str(), 0700);
    for (const std::string& name : Names()) ::unlink(absl::StrCat(dir_, "/", name).c_str());
    ::rmdir(absl::StrCat(dir_, "/sub").c_str());
    ::rmdir(dir_.c_str());
  }
  // The names in the test's directory, sorted.
  std::vector<std::string> Names() {
    std::vector<std::string> names;
    DIR* d = ::opendir(dir_.c_str());
    if (d == nullptr) return names;
    while (dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(name);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    return names;
  }
  mode_t Mode(const std::string& path) {
    struct stat st;
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
  }
  std::string dir_;
};

TEST_F(WriteFileAtomicallyTest, ReplacesTheFileWithExactlyTheModeAskedAndLeavesNoTemporary) {
  const std::string path = absl::StrCat(dir_, "/ca.crt");
  const mode_t old_umask = ::umask(0077);  // would narrow 0644 to 0600 without fchmod
  ASSERT_TRUE(WriteFileAtomically(path, "first", {.mode = 0644}).ok());
  ::umask(old_umask);
  EXPECT_EQ(ReadFile(path).value(), "first");
  EXPECT_EQ(Mode(path), 0644u);
  ASSERT_TRUE(WriteFileAtomically(path, std::string(100000, 'x')).ok());
  EXPECT_EQ(ReadFile(path).value(), std::string(100000, 'x'));
  EXPECT_EQ(Mode(path), 0600u);  // the default: private
  EXPECT_EQ(Names(), std::vector<std::string>{"ca.crt"});
}

TEST_F(WriteFileAtomicallyTest, AStaleTemporaryFromACrashIsReplacedNotFollowed) {
  const std::string path = absl::StrCat(dir_, "/state");
  const std::string target = absl::StrCat(dir_, "/elsewhere");
  ASSERT_EQ(::symlink(target.c_str(), absl::StrCat(path, ".tmp").c_str()), 0);
  ASSERT_TRUE(WriteFileAtomically(path, "new").ok());
  EXPECT_EQ(ReadFile(path).value(), "new");
  EXPECT_EQ(Names(), std::vector<std::string>{"state"});  // nothing written through the link
}

TEST_F(WriteFileAtomicallyTest, AMissingDirectoryIsNotFoundUnlessAskedToCreateIt) {
  const std::string path = absl::StrCat(dir_, "/sub/cache.pb");
  absl::Status missing = WriteFileAtomically(path, "x");
  EXPECT_TRUE(absl::IsNotFound(missing)) << missing;
  EXPECT_EQ(missing.message(), absl::StrCat("cannot write \"", path, "\": creating \"", path,
                                            ".tmp\": No such file or directory"));
  ASSERT_TRUE(WriteFileAtomically(path, "x", {.create_directory_mode = 0700}).ok());
  EXPECT_EQ(Mode(absl::StrCat(dir_, "/sub")), 0700u);
  EXPECT_EQ(ReadFile(path).value(), "x");
  // An existing directory is used as it is.
  EXPECT_TRUE(WriteFileAtomically(path, "y", {.create_directory_mode = 0700}).ok());
  EXPECT_EQ(ReadFile(path).value(), "y");
  ::unlink(path.c_str());
}

TEST_F(WriteFileAtomicallyTest, WithoutReplaceAnExistingFileIsAlreadyExistsAndKept) {
  const std::string path = absl::StrCat(dir_, "/token");
  ASSERT_TRUE(WriteFileAtomically(path, "first", {.replace = false}).ok());
  absl::Status again = WriteFileAtomically(path, "second", {.replace = false});
  EXPECT_TRUE(absl::IsAlreadyExists(again)) << again;
  EXPECT_EQ(again.message(),
            absl::StrCat("cannot write \"", path, "\": linking \"", path, ".tmp\": File exists"));
  EXPECT_EQ(ReadFile(path).value(), "first");
  EXPECT_EQ(Names(), std::vector<std::string>{"token"});
}

TEST_F(WriteFileAtomicallyTest, ADirectoryInTheWayFailsAndKeepsNoTemporary) {
  const std::string path = absl::StrCat(dir_, "/sub");
  ASSERT_EQ(::mkdir(path.c_str(), 0700), 0);
  absl::Status blocked = WriteFileAtomically(path, "x");
  EXPECT_FALSE(blocked.ok());
  EXPECT_EQ(blocked.message(), absl::StrCat("cannot write \"", path, "\": renaming \"", path,
                                            ".tmp\": Is a directory"));
  EXPECT_EQ(Names(), std::vector<std::string>{"sub"});
}

// A read-only directory: run as an unprivileged user, since root writes anywhere. The child
// process makes its own directory under /tmp (TEST_TMPDIR may not be reachable by that user).
TEST_F(WriteFileAtomicallyTest, AReadOnlyDirectoryIsPermissionDeniedAndKeepsTheOldFile) {
  EXPECT_EXIT(
      {
        if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) std::_Exit(2);
        char base[] = "/tmp/write_readonly.XXXXXX";
        if (::mkdtemp(base) == nullptr) std::_Exit(3);
        const std::string path = absl::StrCat(base, "/key");
        const bool written = WriteFileAtomically(path, "old").ok();
        ::chmod(base, 0500);
        absl::Status denied = WriteFileAtomically(path, "new");
        const bool kept = ReadFile(path).value_or("") == "old";
        ::chmod(base, 0700);
        ::unlink(path.c_str());
        ::rmdir(base);
        std::fprintf(stderr, "%s\n", denied.ToString().c_str());
        std::_Exit(written && kept && absl::IsPermissionDenied(denied) ? 0 : 1);
      },
      ::testing::ExitedWithCode(0),
      "PERMISSION_DENIED: cannot write \"/tmp/write_readonly.*/key\": creating "
      "\"/tmp/write_readonly.*/key.tmp\": Permission denied");
}

}  // namespace
}  // namespace meshlet

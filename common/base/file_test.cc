#include "common/base/file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace meshlet {
namespace {

class ReadFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = tmp != nullptr ? tmp : "/tmp";
  }
  std::string Write(const std::string& name, const std::string& content) {
    const std::string path = absl::StrCat(dir_, "/", name);
    FILE* f = std::fopen(path.c_str(), "wb");
    EXPECT_NE(f, nullptr);
    std::fwrite(content.data(), 1, content.size(), f);
    std::fclose(f);
    return path;
  }
  std::string dir_;
};

TEST_F(ReadFileTest, ReadsTheWholeFileBytesAsTheyAre) {
  std::string content(100 * 1024 + 7, '\0');
  for (size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>(i * 31);
  EXPECT_EQ(ReadFile(Write("big", content)).value(), content);
  EXPECT_EQ(ReadFile(Write("empty", "")).value(), "");
}

TEST_F(ReadFileTest, AMissingFileNamesThePathAndTheReason) {
  absl::StatusOr<std::string> missing = ReadFile("/nonexistent/ca.pem");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(absl::IsNotFound(missing.status())) << missing.status();
  EXPECT_EQ(missing.status().message(),
            "cannot read \"/nonexistent/ca.pem\": No such file or directory");
}

TEST_F(ReadFileTest, ADirectoryIsRefused) {
  absl::StatusOr<std::string> directory = ReadFile(dir_);
  ASSERT_FALSE(directory.ok());
  EXPECT_EQ(directory.status().message(),
            absl::StrCat("cannot read \"", dir_, "\": Is a directory"));
}

TEST_F(ReadFileTest, AnUnreadableFileIsPermissionDenied) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads every file";
  const std::string path = Write("secret", "x");
  ASSERT_EQ(::chmod(path.c_str(), 0), 0);
  absl::StatusOr<std::string> denied = ReadFile(path);
  EXPECT_TRUE(absl::IsPermissionDenied(denied.status())) << denied.status();
}

TEST_F(ReadFileTest, AFileOverTheLimitIsRefused) {
  const std::string path = Write("limit", std::string(40000, 'x'));
  EXPECT_EQ(ReadFile(path, 40000).value().size(), 40000u);
  absl::StatusOr<std::string> over = ReadFile(path, 39999);
  ASSERT_FALSE(over.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(over.status()));
  EXPECT_EQ(over.status().message(),
            absl::StrCat("cannot read \"", path, "\": larger than 39999 bytes"));
  const std::string mib = Write("mib", std::string((1 << 20) + 1, 'x'));
  EXPECT_EQ(ReadFile(mib, 1 << 20).status().message(),
            absl::StrCat("cannot read \"", mib, "\": larger than 1 MiB"));
  EXPECT_EQ(ReadFile(mib, 64 << 10).status().message(),
            absl::StrCat("cannot read \"", mib, "\": larger than 64 KiB"));
  // Files that are not regular (no size to trust) are bounded too.
  absl::StatusOr<std::string> zero = ReadFile("/dev/zero", 1000);
  EXPECT_TRUE(absl::IsInvalidArgument(zero.status())) << zero.status();
}

}  // namespace
}  // namespace meshlet

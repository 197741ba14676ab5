#include "control-plane/cli/context.h"

#include <sys/stat.h>

#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace meshlet::controlplane::cli {
namespace {

class ContextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    ::mkdir(dir_.c_str(), 0700);
    ::mkdir((dir_ + "/.meshlet").c_str(), 0700);
  }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  std::string dir_;
};

TEST_F(ContextTest, WithoutAContextFileTheDefaults) {
  absl::StatusOr<Connection> connection = LoadConnection({}, {.home = dir_});
  ASSERT_TRUE(connection.ok()) << connection.status();
  EXPECT_EQ(connection->server, "127.0.0.1:15014");
  EXPECT_EQ(connection->token, "");
  EXPECT_EQ(connection->namespace_, "");
}

TEST_F(ContextTest, TheDefaultFileUnderHome) {
  Write(".meshlet/api-token", "s3cret\n");
  Write(".meshlet/meshctl.yaml", "server: cp:15014\ntokenFile: api-token\nnamespace: shop\n");
  absl::StatusOr<Connection> connection = LoadConnection({}, {.home = dir_});
  ASSERT_TRUE(connection.ok()) << connection.status();
  EXPECT_EQ(connection->server, "cp:15014");
  EXPECT_EQ(connection->token, "s3cret");  // relative to the context file, whitespace stripped
  EXPECT_EQ(connection->namespace_, "shop");
}

TEST_F(ContextTest, FlagsOverTheEnvironmentOverTheDefaultFile) {
  Write(".meshlet/meshctl.yaml", "server: home:1\ntoken: from-home\n");
  const std::string env_file = Write("env.yaml", "server: env:1\ntoken: from-env\n");
  const std::string flag_file = Write("flag.yaml", "server: flag:1\ntoken: from-flag-file\n");
  const std::string token_file = Write("token", "from-token-file");

  absl::StatusOr<Connection> connection =
      LoadConnection({}, {.meshctl_config = env_file, .home = dir_});
  ASSERT_TRUE(connection.ok()) << connection.status();
  EXPECT_EQ(connection->server, "env:1");
  EXPECT_EQ(connection->token, "from-env");

  connection =
      LoadConnection({.context_file = flag_file}, {.meshctl_config = env_file, .home = dir_});
  ASSERT_TRUE(connection.ok()) << connection.status();
  EXPECT_EQ(connection->server, "flag:1");
  EXPECT_EQ(connection->token, "from-flag-file");

  // --token-file replaces the file's token; --token wins over both.
  connection = LoadConnection({.server = "s:2", .token_file = token_file}, {.home = dir_});
  ASSERT_TRUE(connection.ok()) << connection.status();
  EXPECT_EQ(connection->server, "s:2");
  EXPECT_EQ(connection->token, "from-token-file");
  connection = LoadConnection({.token = "t", .token_file = token_file}, {.home = dir_});
  ASSERT_TRUE(connection.ok()) << connection.status();
  EXPECT_EQ(connection->token, "t");
}

TEST_F(ContextTest, ErrorsNameTheFile) {
  const std::string missing = dir_ + "/missing.yaml";
  EXPECT_EQ(LoadConnection({.context_file = missing}, {}).status().message(),
            "cannot read context file " + missing);
  EXPECT_EQ(LoadConnection({}, {.meshctl_config = missing}).status().message(),
            "cannot read context file " + missing);
  const std::string typo = Write("typo.yaml", "server: cp:1\ntoken_file: t\n");
  absl::Status status = LoadConnection({.context_file = typo}, {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(status.message())
                .rfind("context file " + typo +
                           ":2:1: token_file: "
                           "unknown field",
                       0),
            0u)
      << status;
  EXPECT_NE(status.message().find("server, token, tokenFile, namespace"), std::string::npos);
  const std::string no_token = Write("no-token.yaml", "tokenFile: /nonexistent/token\n");
  EXPECT_EQ(LoadConnection({.context_file = no_token}, {}).status().message(),
            "cannot read token file /nonexistent/token");
}

TEST(ConnectionFlagTableTest, TimeoutIsAPositiveDuration) {
  ConnectionFlags connection;
  std::vector<flags::Flag> table = ConnectionFlagTable(connection);
  std::vector<std::string> args = {"get", "--timeout=1500ms"};
  ASSERT_TRUE(flags::Extract(table, args).ok());
  EXPECT_EQ(connection.timeout, std::chrono::milliseconds(1500));
  args = {"--timeout", "0s"};
  EXPECT_EQ(flags::Extract(table, args).message(), "--timeout=\"0s\": not a duration");
}

}  // namespace
}  // namespace meshlet::controlplane::cli

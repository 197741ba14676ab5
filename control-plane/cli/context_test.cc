#include "control-plane/cli/context.h"

#include <sys/stat.h>

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/tls/test_certificates.h"
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
  EXPECT_NE(status.message().find("server, token, tokenFile, namespace, certificateAuthority, "
                                  "certificateAuthorityData, serverIdentity"),
            std::string::npos);
  const std::string no_token = Write("no-token.yaml", "tokenFile: /nonexistent/token\n");
  EXPECT_EQ(LoadConnection({.context_file = no_token}, {}).status().message(),
            "cannot read token file /nonexistent/token");
}

TEST_F(ContextTest, TheCaComesFromTheFileItNamesItsDataOrTheFlag) {
  absl::StatusOr<tls::testing::TestCa> ca = tls::testing::TestCa::Create("context test CA");
  ASSERT_TRUE(ca.ok()) << ca.status();
  absl::StatusOr<tls::testing::TestCa> other = tls::testing::TestCa::Create("other CA");
  ASSERT_TRUE(other.ok()) << other.status();
  Write(".meshlet/ca.pem", ca->cert_pem());
  const std::string other_file = Write("other.pem", other->cert_pem());

  // Without any: no CA, the default identity.
  absl::StatusOr<Connection> connection = LoadConnection({}, {.home = dir_});
  ASSERT_TRUE(connection.ok()) << connection.status();
  EXPECT_EQ(connection->ca_pem, "");
  EXPECT_EQ(connection->server_identity, kDefaultServerIdentity);

  // A relative certificateAuthority is relative to the context file.
  const std::string context = Write(".meshlet/meshctl.yaml",
                                    "server: cp:1\ncertificateAuthority: ca.pem\n"
                                    "serverIdentity: spiffe://prod.example/ns/mesh/sa/cp\n");
  connection = LoadConnection({}, {.home = dir_});
  ASSERT_TRUE(connection.ok()) << connection.status();
  EXPECT_EQ(connection->ca_pem, ca->cert_pem());
  EXPECT_NE(connection->ca_source.find(dir_ + "/.meshlet/ca.pem"), std::string::npos)
      << connection->ca_source;
  EXPECT_EQ(connection->server_identity, "spiffe://prod.example/ns/mesh/sa/cp");

  // --ca-file and --server-identity win.
  connection =
      LoadConnection({.ca_file = other_file, .server_identity = "spiffe://cluster.local/ns/a/sa/b"},
                     {.home = dir_});
  ASSERT_TRUE(connection.ok()) << connection.status();
  EXPECT_EQ(connection->ca_pem, other->cert_pem());
  EXPECT_NE(connection->ca_source.find("--ca-file"), std::string::npos);
  EXPECT_EQ(connection->server_identity, "spiffe://cluster.local/ns/a/sa/b");

  // The PEM pinned in the file.
  Write(".meshlet/meshctl.yaml",
        absl::StrCat("certificateAuthorityData: |\n  ",
                     absl::StrReplaceAll(absl::StripTrailingAsciiWhitespace(ca->cert_pem()),
                                         {{"\n", "\n  "}}),
                     "\n"));
  connection = LoadConnection({}, {.home = dir_});
  ASSERT_TRUE(connection.ok()) << connection.status();
  EXPECT_EQ(connection->ca_pem, ca->cert_pem());
  EXPECT_NE(connection->ca_source.find("the CA pinned in context file"), std::string::npos);
  (void)context;
}

TEST_F(ContextTest, ABadCaOrIdentityIsAnErrorNamingWhere) {
  const std::string garbage = Write("garbage.pem", "not a certificate\n");
  absl::Status status = LoadConnection({.ca_file = garbage}, {.home = dir_}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("CA file " + garbage + ": not PEM CA certificates"),
            std::string::npos)
      << status;
  EXPECT_EQ(LoadConnection({.ca_file = dir_ + "/none.pem"}, {.home = dir_}).status().message(),
            "cannot read CA file " + dir_ + "/none.pem");
  const std::string both =
      Write("both.yaml", "certificateAuthority: a.pem\ncertificateAuthorityData: x\n");
  EXPECT_NE(LoadConnection({.context_file = both}, {})
                .status()
                .message()
                .find("certificateAuthority and certificateAuthorityData exclude each other"),
            std::string::npos);
  const std::string data = Write("data.yaml", "certificateAuthorityData: nope\n");
  EXPECT_NE(
      LoadConnection({.context_file = data}, {})
          .status()
          .message()
          .find("context file " + data + ": certificateAuthorityData: not PEM CA certificates"),
      std::string::npos);
  const std::string identity = Write("identity.yaml", "serverIdentity: cp.example\n");
  status = LoadConnection({.context_file = identity}, {}).status();
  EXPECT_NE(status.message().find("context file " + identity + ": serverIdentity \"cp.example\""),
            std::string::npos)
      << status;
  status = LoadConnection({.server_identity = "x"}, {.home = dir_}).status();
  EXPECT_NE(status.message().find("--server-identity \"x\""), std::string::npos) << status;
}

// --revision NAME (or the context's revision) stands for the identity of that revision's API,
// the service account its install gives it; --server-identity still wins.
TEST_F(ContextTest, ARevisionImpliesTheIdentityOfItsApi) {
  constexpr char kCanary[] =
      "spiffe://cluster.local/ns/meshlet-system/sa/meshlet-control-plane-canary";
  ConnectionFlags flags;
  std::vector<flags::Flag> table = ConnectionFlagTable(flags);
  std::vector<std::string> args = {"version", "--revision", "canary"};
  ASSERT_TRUE(flags::Extract(table, args).ok());
  EXPECT_EQ(args, std::vector<std::string>{"version"});
  absl::StatusOr<Connection> connection = LoadConnection(flags, {.home = dir_});
  ASSERT_TRUE(connection.ok()) << connection.status();
  EXPECT_EQ(connection->server_identity, kCanary);
  EXPECT_EQ(connection->revision, "canary");
  // "default": the control plane installed without a revision.
  connection = LoadConnection({.revision = ""}, {.home = dir_});
  ASSERT_TRUE(connection.ok()) << connection.status();
  EXPECT_EQ(connection->server_identity, kDefaultServerIdentity);
  EXPECT_EQ(connection->revision, "default");
  // Not a revision name: refused by the flag, naming what a name may be.
  args = {"--revision", "Canary!"};
  const absl::Status bad = flags::Extract(table, args);
  EXPECT_NE(bad.message().find("is not a revision name"), std::string::npos) << bad;

  // In the context file.
  const std::string file = Write("rev.yaml", "server: cp:1\nrevision: canary\n");
  connection = LoadConnection({.context_file = file}, {});
  ASSERT_TRUE(connection.ok()) << connection.status();
  EXPECT_EQ(connection->server_identity, kCanary);
  // The flag over the file.
  connection = LoadConnection({.revision = "0-2-0", .context_file = file}, {});
  ASSERT_TRUE(connection.ok()) << connection.status();
  EXPECT_EQ(connection->server_identity,
            "spiffe://cluster.local/ns/meshlet-system/sa/meshlet-control-plane-0-2-0");
  // --server-identity over both.
  connection = LoadConnection({.server_identity = "spiffe://cluster.local/ns/a/sa/b",
                               .revision = "0-2-0",
                               .context_file = file},
                              {});
  ASSERT_TRUE(connection.ok()) << connection.status();
  EXPECT_EQ(connection->server_identity, "spiffe://cluster.local/ns/a/sa/b");
  EXPECT_EQ(connection->revision, "");
  // --revision keeps the trust domain and namespace of the context's identity.
  const std::string other =
      Write("other.yaml", "serverIdentity: spiffe://prod.example/ns/mesh/sa/cp\n");
  connection = LoadConnection({.revision = "canary", .context_file = other}, {});
  ASSERT_TRUE(connection.ok()) << connection.status();
  EXPECT_EQ(connection->server_identity,
            "spiffe://prod.example/ns/mesh/sa/meshlet-control-plane-canary");
  // Both in one file, or a bad name there: errors naming the file.
  const std::string both =
      Write("both.yaml", "serverIdentity: " + std::string(kCanary) + "\nrevision: canary\n");
  EXPECT_EQ(LoadConnection({.context_file = both}, {}).status().message(),
            "context file " + both +
                ": serverIdentity and revision exclude each other (revision implies the "
                "identity spiffe://.../sa/meshlet-control-plane-<revision>)");
  const std::string bad_name = Write("bad.yaml", "revision: Canary\n");
  EXPECT_NE(LoadConnection({.context_file = bad_name}, {})
                .status()
                .message()
                .find("context file " + bad_name + ": revision: \"Canary\" is not a revision name"),
            std::string::npos);
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

// Kubeconfig users with an exec credential plugin (kubernetes_client.h, exec_credential.h): the
// kubeconfig's `exec` read and checked, the plugin run (shell scripts written here play it) with
// its request, arguments, environment and limits, its answer read, and the client's requests to
// an HTTPS server on 127.0.0.1 with the credential, refreshed when it expired and on an HTTP 401.

#include "control-plane/cli/kubernetes_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/base/file.h"
#include "common/http/server.h"
#include "common/tls/test_certificates.h"
#include "common/tls/tls_context_provider.h"
#include "common/tls/tls_transport.h"
#include "control-plane/cli/server_on_thread.h"

namespace meshlet::controlplane::cli {
namespace {

using ::testing::HasSubstr;

std::string TestDir() {
  static int n = 0;
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/exec-", ++n);
  ::mkdir(dir.c_str(), 0700);
  return dir;
}

// Writes an executable /bin/sh script.
void Script(const std::string& path, const std::string& body) {
  std::ofstream(path) << "#!/bin/sh\n" << body;
  ::chmod(path.c_str(), 0755);
}

std::string Read(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  return text.ok() ? *text : "";
}

std::string Kubeconfig(const std::string& exec, const std::string& cluster_extra = "") {
  return absl::StrCat(R"(apiVersion: v1
kind: Config
current-context: c
contexts:
- {name: c, context: {cluster: k, user: u}}
clusters:
- name: k
  cluster:
    server: "https://127.0.0.1:6443"
    certificate-authority-data: Q0EgUEVN
)",
                      cluster_extra, R"(
users:
- name: u
  user:
)",
                      exec);
}

std::string ReadError(const std::string& exec) {
  return std::string(ReadKubeconfig(Kubeconfig(exec), "", "/home/me/.kube").status().message());
}

TEST(ExecConfigTest, ReadFromTheKubeconfig) {
  absl::StatusOr<KubeconfigCredentials> c = ReadKubeconfig(Kubeconfig(R"(    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: aws
      args: [--region, eu-west-1, eks, get-token, --cluster-name, mesh]
      env: [{name: AWS_PROFILE, value: ops}]
      installHint: "install the AWS CLI"
      provideClusterInfo: true
      interactiveMode: IfAvailable
)",
                                                                      R"(    extensions:
    - name: other
      extension: {x: 1}
    - name: client.authentication.k8s.io/exec
      extension: {audience: mesh, scopes: [a, b]})"),
                                                           "", "/home/me/.kube");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->exec.has_value());
  const ExecPluginConfig& p = *c->exec;
  EXPECT_EQ(p.user, "u");
  EXPECT_EQ(p.api_version, "client.authentication.k8s.io/v1");
  EXPECT_EQ(p.command, "aws");
  EXPECT_EQ(p.directory, "/home/me/.kube");
  EXPECT_EQ(p.args, (std::vector<std::string>{"--region", "eu-west-1", "eks", "get-token",
                                              "--cluster-name", "mesh"}));
  ASSERT_EQ(p.env.size(), 1u);
  EXPECT_EQ(p.env[0], (std::pair<std::string, std::string>{"AWS_PROFILE", "ops"}));
  EXPECT_EQ(p.install_hint, "install the AWS CLI");
  EXPECT_TRUE(p.provide_cluster_info);
  EXPECT_EQ(p.cluster_config_json, R"({"audience":"mesh","scopes":["a","b"]})");
  // v1beta1 may leave interactiveMode out (IfAvailable).
  c = ReadKubeconfig(
      Kubeconfig(
          R"(    exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: ./get-token}
)"),
      "", "/k");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->exec->provide_cluster_info);
}

TEST(ExecConfigTest, WhatIsNotSupportedIsAClearError) {
  EXPECT_THAT(
      ReadError(
          R"(    exec: {apiVersion: client.authentication.k8s.io/v1, command: x, interactiveMode: Always}
)"),
      HasSubstr("user u: exec: interactiveMode Always: the plugin needs a terminal"));
  EXPECT_THAT(ReadError(R"(    exec: {apiVersion: client.authentication.k8s.io/v1, command: x}
)"),
              HasSubstr("user u: exec: interactiveMode must be given with "
                        "client.authentication.k8s.io/v1"));
  EXPECT_THAT(
      ReadError(
          R"(    exec: {apiVersion: client.authentication.k8s.io/v1, command: x, interactiveMode: Sometimes}
)"),
      HasSubstr("interactiveMode \"Sometimes\" is not Never, IfAvailable or Always"));
  EXPECT_THAT(ReadError(R"(    exec: {apiVersion: client.authentication.k8s.io/v1alpha1, command: x}
)"),
              HasSubstr("apiVersion \"client.authentication.k8s.io/v1alpha1\" is not"));
  EXPECT_THAT(ReadError(R"(    exec: {apiVersion: client.authentication.k8s.io/v1beta1}
)"),
              HasSubstr("user u: exec: no command"));
  EXPECT_THAT(
      ReadError(
          R"(    exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: x, env: [{name: "A=B", value: c}]}
)"),
      HasSubstr("env[0].name \"A=B\" is not a variable name"));
  EXPECT_THAT(
      ReadError(
          R"(    exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: x, args: {a: 1}}
)"),
      HasSubstr("args: not a list"));
  EXPECT_THAT(ReadError(R"(    token: abc
    exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: x}
)"),
              HasSubstr("exec and a token or client certificate"));
  EXPECT_THAT(ReadError(R"(    auth-provider: {name: gcp}
)"),
              HasSubstr("auth-provider (the removed gcp, azure and oidc plugins) is not "
                        "supported; use its exec credential plugin instead (GKE: "
                        "gke-gcloud-auth-plugin"));
}

TEST(ExecCredentialTest, TheRequest) {
  ExecPluginConfig p{.api_version = kExecCredentialV1beta1, .command = "x"};
  EXPECT_EQ(ExecCredentialRequest(p, "https://k:6443", "CA PEM"),
            R"({"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential",)"
            R"("spec":{"interactive":false}})");
  p.provide_cluster_info = true;
  p.cluster_config_json = R"({"a":1})";
  EXPECT_EQ(ExecCredentialRequest(p, "https://k:6443", "CA PEM"),
            R"({"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential",)"
            R"("spec":{"cluster":{"server":"https://k:6443","certificate-authority-data":)"
            R"("Q0EgUEVN","config":{"a":1}},"interactive":false}})");
}

TEST(ExecCredentialTest, TheAnswer) {
  absl::StatusOr<ExecCredential> c = ParseExecCredential(
      R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",
          "status":{"token":"t0k","expirationTimestamp":"2030-01-02T03:04:05Z"}})",
      kExecCredentialV1);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->token, "t0k");
  EXPECT_EQ(c->expiry, absl::FromUnixSeconds(1893553445));
  c = ParseExecCredential(
      R"({"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential",
          "status":{"clientCertificateData":"CERT\n","clientKeyData":"KEY\n",
                    "expirationTimestamp":"2030-01-02T03:04:05.5+01:00"}})",
      kExecCredentialV1beta1);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->token, "");
  EXPECT_EQ(c->cert_pem, "CERT\n");
  EXPECT_EQ(c->key_pem, "KEY\n");
  EXPECT_EQ(c->expiry, absl::FromUnixMillis(1893549845500));
  c = ParseExecCredential(
      R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"t"}})",
      kExecCredentialV1);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->expiry.has_value());

  auto error = [](const std::string& output) {
    return std::string(ParseExecCredential(output, kExecCredentialV1).status().message());
  };
  EXPECT_THAT(error("{"), HasSubstr("its output is not JSON"));
  EXPECT_THAT(error("[1]"), HasSubstr("not an ExecCredential (a JSON object)"));
  EXPECT_THAT(error(R"({"kind":"Status"})"), HasSubstr("not an ExecCredential (kind \"Status\")"));
  EXPECT_THAT(
      error(R"({"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential"})"),
      HasSubstr("it answered apiVersion \"client.authentication.k8s.io/v1beta1\", the kubeconfig "
                "asks for \"client.authentication.k8s.io/v1\""));
  const std::string head =
      R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential")";
  EXPECT_THAT(error(head + "}"), HasSubstr("its ExecCredential has no status"));
  EXPECT_THAT(error(head + R"(,"status":{}})"),
              HasSubstr("its status has neither a token nor clientCertificateData and "
                        "clientKeyData"));
  EXPECT_THAT(error(head + R"(,"status":{"clientCertificateData":"C"}})"),
              HasSubstr("status.clientCertificateData and status.clientKeyData go together"));
  EXPECT_THAT(error(head + R"(,"status":{"token":"t","expirationTimestamp":"tomorrow"}})"),
              HasSubstr("status.expirationTimestamp \"tomorrow\" is not an RFC 3339 time"));
}

constexpr char kV1Token[] =
    R"(echo '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",)"
    R"("status":{"token":"from-plugin"}}'
)";

class ExecPluginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TestDir();
    config_ = {.user = "ops",
               .api_version = kExecCredentialV1,
               .command = absl::StrCat(dir_, "/plugin"),
               .directory = dir_};
  }
  absl::StatusOr<ExecCredential> Run(const std::string& script, ExecPluginLimits limits = {}) {
    Script(dir_ + "/plugin", script);
    return RunExecPlugin(config_, "https://127.0.0.1:6443", "CA PEM", limits);
  }
  std::string Error(const std::string& script, ExecPluginLimits limits = {}) {
    return std::string(Run(script, limits).status().message());
  }

  std::string dir_;
  ExecPluginConfig config_;
};

TEST_F(ExecPluginTest, RunsTheCommandWithItsArgumentsEnvironmentAndRequest) {
  config_.args = {"get-token", "--cluster", "a b"};
  config_.env = {{"PLUGIN_PROFILE", "ops"}, {"HOME", "/elsewhere"}};
  config_.provide_cluster_info = true;
  config_.cluster_config_json = R"({"audience":"mesh"})";
  ::setenv("MESHCTL_TEST_INHERITED", "yes", 1);
  absl::StatusOr<ExecCredential> c = Run(absl::StrCat("D=", dir_, R"(
printf '%s|' "$@" > "$D/args"
echo "$PLUGIN_PROFILE $HOME $MESHCTL_TEST_INHERITED" > "$D/env"
printf '%s' "$KUBERNETES_EXEC_INFO" > "$D/info"
if [ -t 0 ]; then echo terminal > "$D/stdin"; else cat > "$D/stdin"; echo done >> "$D/stdin"; fi
)",
                                                      kV1Token));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->token, "from-plugin");
  EXPECT_EQ(Read(dir_ + "/args"), "get-token|--cluster|a b|");
  EXPECT_EQ(Read(dir_ + "/env"), "ops /elsewhere yes\n");
  EXPECT_EQ(Read(dir_ + "/info"),
            R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",)"
            R"("spec":{"cluster":{"server":"https://127.0.0.1:6443","certificate-authority-data":)"
            R"("Q0EgUEVN","config":{"audience":"mesh"}},"interactive":false}})");
  // Not a terminal, and nothing to read.
  EXPECT_EQ(Read(dir_ + "/stdin"), "done\n");
}

TEST_F(ExecPluginTest, ARelativeCommandIsTheKubeconfigsDirectorysAndABareNameIsLookedUpInPath) {
  ::mkdir((dir_ + "/bin").c_str(), 0700);
  Script(dir_ + "/bin/kube-token", kV1Token);
  config_.command = "bin/kube-token";
  absl::StatusOr<ExecCredential> c = RunExecPlugin(config_, "https://k", "");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->token, "from-plugin");
  config_.command = "kube-token";
  const std::string path = std::getenv("PATH") != nullptr ? std::getenv("PATH") : "";
  ::setenv("PATH", absl::StrCat(dir_, "/none:", dir_, "/bin").c_str(), 1);
  c = RunExecPlugin(config_, "https://k", "");
  ::setenv("PATH", path.c_str(), 1);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->token, "from-plugin");
}

TEST_F(ExecPluginTest, ACommandNotFoundGivesTheInstallHint) {
  config_.command = "no-such-plugin-here";
  config_.install_hint = "aws-iam-authenticator is needed: see https://example.invalid/install";
  absl::StatusOr<ExecCredential> c = RunExecPlugin(config_, "https://k", "");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c.status().message(),
            "user ops: exec plugin no-such-plugin-here: not found in PATH "
            "(aws-iam-authenticator is needed: see https://example.invalid/install)");
  config_.command = "./missing";
  EXPECT_THAT(std::string(RunExecPlugin(config_, "https://k", "").status().message()),
              HasSubstr("exec plugin ./missing: no such executable file (aws-iam"));
}

TEST_F(ExecPluginTest, FailuresNameTheUserTheCommandAndWhatWasWrong) {
  const std::string who = absl::StrCat("user ops: exec plugin ", dir_, "/plugin: ");
  absl::StatusOr<ExecCredential> c =
      Run("echo 'error: SSO session expired, run login' >&2\nexit 3\n");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(c.status().message(),
            who + "exited with status 3; its stderr: \"error: SSO session expired, run login\"");
  EXPECT_THAT(Error("echo '{not json'\n"), HasSubstr(who + "its output is not JSON"));
  EXPECT_EQ(
      Error(
          R"(echo '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"t"}}')"),
      who +
          "it answered apiVersion \"client.authentication.k8s.io/v1beta1\", the kubeconfig "
          "asks for \"client.authentication.k8s.io/v1\"");
  EXPECT_EQ(
      Error(
          R"(echo '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{}}'; echo warn >&2)"),
      who +
          "its status has neither a token nor clientCertificateData and clientKeyData; its "
          "stderr: \"warn\"");
  EXPECT_EQ(Error("kill -TERM $$\n"), who + "was killed by signal 15");
  // Stderr is bounded.
  EXPECT_THAT(Error("head -c 100000 /dev/zero | tr '\\0' e >&2; exit 1\n"),
              HasSubstr(absl::StrCat("; its stderr: \"", std::string(4096, 'e'), "...\" (cut)")));
}

TEST_F(ExecPluginTest, BoundedInTimeAndOutput) {
  // The script's own child (sleep) holds the pipes too: the whole process group goes.
  const absl::Time start = absl::Now();
  absl::StatusOr<ExecCredential> c =
      Run("echo waiting for a browser >&2\nsleep 30\n", {.timeout = absl::Milliseconds(300)});
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(c.status().message(),
            absl::StrCat("user ops: exec plugin ", dir_,
                         "/plugin: did not finish within 300ms (--kubernetes-exec-timeout); its "
                         "stderr: \"waiting for a browser\""));
  c = Run("head -c 3000000 /dev/zero\n", {.max_stdout_bytes = 1 << 20});
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("printed more than 1048576 bytes on stdout"));
}

// A plugin that leaves a process of its own behind holding its stdout and stderr (a credential
// cache agent, a helper it started in the background): the run ends when the plugin exits, with
// what it printed, not when the pipes close.
TEST_F(ExecPluginTest, EndsWhenThePluginExitsThoughItsChildHoldsItsOutput) {
  const std::string pid_file = dir_ + "/child.pid";
  const absl::Time start = absl::Now();
  absl::StatusOr<ExecCredential> c =
      Run(absl::StrCat(kV1Token, "echo a warning >&2\nsleep 30 &\necho $! > ", pid_file, "\n"),
          {.timeout = absl::Seconds(10)});
  const absl::Duration took = absl::Now() - start;
  // The child is the test's to end (it is in the plugin's process group, which outlived it).
  int child = 0;
  if (absl::SimpleAtoi(absl::StripAsciiWhitespace(Read(pid_file)), &child) && child > 0) {
    ::kill(child, SIGKILL);
  }
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->token, "from-plugin");
  EXPECT_LT(took, absl::Seconds(2));
  ASSERT_GT(child, 0);
  // A failing plugin with such a child: its exit status and stderr, as promptly.
  const absl::Time again = absl::Now();
  c = Run(absl::StrCat("echo 'token expired' >&2\nsleep 30 &\necho $! > ", pid_file, "\nexit 4\n"),
          {.timeout = absl::Seconds(10)});
  if (absl::SimpleAtoi(absl::StripAsciiWhitespace(Read(pid_file)), &child) && child > 0) {
    ::kill(child, SIGKILL);
  }
  EXPECT_LT(absl::Now() - again, absl::Seconds(2));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("exited with status 4; its stderr: \"token expired\""));
}

// An API server on 127.0.0.1 that accepts the tokens in `valid_`, recording what it was sent.
class ExecClientTest : public ExecPluginTest {
 protected:
  void SetUp() override {
    ExecPluginTest::SetUp();
    ::signal(SIGPIPE, SIG_IGN);
    absl::StatusOr<tls::testing::TestCa> ca = tls::testing::TestCa::Create("cluster CA");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_pem_ = ca->cert_pem();
    absl::StatusOr<tls::testing::TestCertificate> leaf = ca->Issue({.ip_addresses = {"127.0.0.1"}});
    ASSERT_TRUE(leaf.ok()) << leaf.status();
    client_ = ca->Issue({.common_name = "ops"});
    ASSERT_TRUE(client_.ok()) << client_.status();
    // Client certificates are asked for, not required: a token is enough.
    absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
        tls::TlsContext::CreateServer({.certificate_chain_pem = leaf->chain_pem,
                                       .private_key_pem = leaf->key_pem,
                                       .trust_bundle_pem = ca_pem_,
                                       .alpn_protocols = {"http/1.1"},
                                       .client_certificate = tls::ClientCertificateMode::kRequest});
    ASSERT_TRUE(context.ok()) << context.status();
    http::HttpServerOptions options;
    options.transport_factory =
        tls::TlsTransport::Factory(std::make_shared<tls::TlsContextProvider>(*context));
    server_ =
        std::make_unique<ServerOnThread>(std::move(options), [this](const http::ServerRequest& r) {
          std::lock_guard<std::mutex> lock(mu_);
          const std::string authorization(r.headers.Get("authorization").value_or(""));
          seen_.push_back(authorization);
          const bool ok = valid_.count(authorization) > 0;
          return http::ServerResponse::Json(
              ok ? 200 : 401, ok ? R"({"kind":"Namespace"})" : R"({"message":"Unauthorized"})");
        });
  }

  // A plugin answering token-N on its Nth run, expiring at `expiry` (none when empty).
  void CountingPlugin(const std::string& expiry) {
    Script(dir_ + "/plugin",
           absl::StrCat(
               "D=", dir_, R"(
n=$(cat "$D/runs" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$D/runs"
echo '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"token-'$n'")",
               expiry.empty() ? "" : absl::StrCat(R"(,"expirationTimestamp":")", expiry, "\""),
               "}}'\n"));
  }
  int Runs() { return std::atoi(Read(dir_ + "/runs").c_str()); }
  std::vector<std::string> Seen() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }

  absl::StatusOr<KubernetesClient> Client() {
    KubeconfigCredentials c;
    c.server = absl::StrCat("https://", server_->address());
    c.ca_pem = ca_pem_;
    c.exec = config_;
    return KubernetesClient::Create(std::move(c), "kubeconfig test");
  }

  std::string ca_pem_;
  absl::StatusOr<tls::testing::TestCertificate> client_;
  std::mutex mu_;
  std::set<std::string> valid_ = {"Bearer token-1"};
  std::vector<std::string> seen_;
  std::unique_ptr<ServerOnThread> server_;
};

TEST_F(ExecClientTest, ThePluginsTokenIsSentAndKeptUntilA401) {
  CountingPlugin("2099-01-01T00:00:00Z");
  absl::StatusOr<KubernetesClient> client = Client();
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ(Runs(), 0);  // not before the first request
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<std::string> body = client->Fetch("GET", "/api/v1/namespaces/shop");
    ASSERT_TRUE(body.ok()) << body.status();
  }
  EXPECT_EQ(Runs(), 1);
  // The API server stops accepting token-1 (revoked, or expired before its time): the 401 runs
  // the plugin again and the request goes once more, with token-2.
  {
    std::lock_guard<std::mutex> lock(mu_);
    valid_ = {"Bearer token-2"};
  }
  absl::StatusOr<std::string> body = client->Fetch("GET", "/api/v1/namespaces/shop");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(Runs(), 2);
  EXPECT_EQ(Seen(), (std::vector<std::string>{"Bearer token-1", "Bearer token-1", "Bearer token-1",
                                              "Bearer token-2"}));
  // A token the API server refuses again: one retry only, and its 401 is the answer.
  {
    std::lock_guard<std::mutex> lock(mu_);
    valid_ = {};
  }
  absl::StatusOr<HttpResponse> refused = client->Call("GET", "/api/v1/namespaces/shop");
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_EQ(refused->status, 401);
  EXPECT_EQ(Runs(), 3);
  EXPECT_EQ(Seen().size(), 6u);
}

TEST_F(ExecClientTest, AnExpiredCredentialIsReplacedBeforeTheRequest) {
  // Expired as soon as it is given: each request runs the plugin first.
  CountingPlugin("2001-01-01T00:00:00Z");
  valid_ = {"Bearer token-1", "Bearer token-2", "Bearer token-3"};
  absl::StatusOr<KubernetesClient> client = Client();
  ASSERT_TRUE(client.ok()) << client.status();
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<std::string> body = client->Fetch("GET", "/api/v1/namespaces/shop");
    ASSERT_TRUE(body.ok()) << body.status();
  }
  EXPECT_EQ(Runs(), 3);
  EXPECT_EQ(Seen(),
            (std::vector<std::string>{"Bearer token-1", "Bearer token-2", "Bearer token-3"}));
}

TEST_F(ExecClientTest, APluginsFailureIsTheRequestsError) {
  Script(dir_ + "/plugin", "echo 'token expired: run aws sso login' >&2; exit 1\n");
  absl::StatusOr<KubernetesClient> client = Client();
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<std::string> body = client->Fetch("GET", "/api/v1/namespaces/shop");
  EXPECT_EQ(body.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(body.status().message()),
              HasSubstr("user ops: exec plugin " + dir_ +
                        "/plugin: exited with status 1; its stderr: \"token expired: run aws sso "
                        "login\""));
  EXPECT_TRUE(Seen().empty());
}

TEST_F(ExecClientTest, AClientCertificateFromThePluginIsPresented) {
  // The server records the peer's certificate indirectly: a valid token is not given, so only a
  // handshake with the plugin's certificate and key can succeed with a certificate the server
  // verified; a bad certificate fails the handshake (kRequest verifies what is presented).
  ASSERT_TRUE(client_.ok());
  const std::string json = absl::StrCat(
      R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{)",
      R"("clientCertificateData":")", absl::CEscape(client_->chain_pem), R"(",)",
      R"("clientKeyData":")", absl::CEscape(client_->key_pem), R"("}})");
  std::ofstream(dir_ + "/answer") << json;
  Script(dir_ + "/plugin", absl::StrCat("cat ", dir_, "/answer\n"));
  valid_ = {""};  // no authorization header: the certificate is the credential
  absl::StatusOr<KubernetesClient> client = Client();
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<std::string> body = client->Fetch("GET", "/api/v1/namespaces/shop");
  ASSERT_TRUE(body.ok()) << body.status();
  // A certificate from another CA: the API server refuses the handshake.
  absl::StatusOr<tls::testing::TestCa> other = tls::testing::TestCa::Create("other CA");
  ASSERT_TRUE(other.ok());
  absl::StatusOr<tls::testing::TestCertificate> stranger = other->Issue({.common_name = "x"});
  ASSERT_TRUE(stranger.ok());
  std::ofstream(dir_ + "/answer") << absl::StrCat(
      R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{)",
      R"("clientCertificateData":")", absl::CEscape(stranger->chain_pem), R"(",)",
      R"("clientKeyData":")", absl::CEscape(stranger->key_pem), R"("}})");
  absl::StatusOr<KubernetesClient> refused = Client();
  ASSERT_TRUE(refused.ok());
  EXPECT_FALSE(refused->Fetch("GET", "/api/v1/namespaces/shop").ok());
  // Not PEM at all: an error naming the plugin.
  std::ofstream(dir_ + "/answer")
      << R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"clientCertificateData":"C","clientKeyData":"K"}})";
  absl::StatusOr<KubernetesClient> bad = Client();
  ASSERT_TRUE(bad.ok());
  EXPECT_THAT(std::string(bad->Fetch("GET", "/").status().message()),
              HasSubstr("exec plugin " + dir_ + "/plugin: its client certificate and key: "));
}

}  // namespace
}  // namespace meshlet::controlplane::cli

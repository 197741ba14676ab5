// Interoperability with real gRPC (Debian's python3-grpcio): the proof that meshlet's framing,
// status trailers, deadlines and encodings are gRPC on the wire.
//
//   PythonClientAgainstCppServer  a grpcio client runs the ADS exchange (request with a node,
//                                 ACK, NACK) against our Server, plus error status, unknown
//                                 method, gzip refusal and deadline checks.
//   CppClientAgainstPythonServer  our Channel drives a grpcio server: a bidi ADS exchange, a
//                                 unary-style delta exchange, and an error status.
//
// Stubs are generated at test time from xds/*.proto with `/usr/bin/python3 -m
// grpc_tools.protoc` into TEST_TMPDIR. Debian's Python packages belong to /usr/bin/python3 (the
// python3 first on PATH may be another interpreter), so it is called by that path.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/grpc/client.h"
#include "common/http/grpc/server.h"
#include "common/net/address.h"
#include "gtest/gtest.h"
#include "xds/discovery.pb.h"

namespace meshlet::http::grpc {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kPython[] = "/usr/bin/python3";
constexpr char kPeerScript[] = "common/http/grpc/testdata/grpc_peer.py";
constexpr absl::string_view kAds =
    "/meshlet.xds.AggregatedDiscoveryService/StreamAggregatedResources";
constexpr absl::string_view kDelta =
    "/meshlet.xds.AggregatedDiscoveryService/DeltaAggregatedResources";
constexpr absl::string_view kTypeUrl = "type.meshlet.dev/meshlet.xds.Cluster";

// A child process with its stdout on a pipe.
struct Child {
  pid_t pid = -1;
  int stdout_fd = -1;
};

Child Spawn(const std::vector<std::string>& args, const std::string& pythonpath) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    setenv("PYTHONPATH", pythonpath.c_str(), 1);
    setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(fds[1]);
  return Child{pid, fds[0]};
}

// Reads one line (without the newline), waiting at most `timeout_ms`.
std::optional<std::string> ReadLine(int fd, int timeout_ms) {
  std::string line;
  char c;
  while (true) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return std::nullopt;
    if (read(fd, &c, 1) != 1) return std::nullopt;
    if (c == '\n') return line;
    line.push_back(c);
  }
}

std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

class GrpcInteropTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A missing package is a broken test environment, not a reason to skip: fail loudly.
    std::string check = absl::StrCat(
        kPython, " -c 'import grpc, grpc_tools.protoc, google.protobuf' >/dev/null 2>&1");
    ASSERT_EQ(std::system(check.c_str()), 0)
        << kPython << " cannot import grpc, grpc_tools and google.protobuf. Install the "
        << "python3-grpcio, python3-grpc-tools and python3-protobuf Debian packages: run "
           "`./dev deps`.";
    stubs_ = absl::StrCat(::testing::TempDir(), "grpc_interop_stubs");
    // Well-known types (google/protobuf/any.proto) come with grpc_tools.
    std::string protoc = absl::StrCat(
        "mkdir -p ", stubs_, " && ", kPython, " -m grpc_tools.protoc -I. -I\"$(", kPython,
        " -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "
        "\"_proto\"))')\" --python_out=",
        stubs_, " --grpc_python_out=", stubs_, " xds/discovery.proto xds/node.proto");
    ASSERT_EQ(std::system(protoc.c_str()), 0) << "stub generation failed: " << protoc;
    // Keeps the loop turning while the peer runs in another process.
    ticker_ = std::make_unique<event::Timer>(loop_, [] {});
    ticker_->EnableRepeating(milliseconds(10));
  }

  void TearDown() override {
    channel_.reset();
    server_.reset();
    ticker_.reset();
    loop_.RunUntilIdle();
  }

  bool RunUntil(const std::function<bool()>& done, Duration timeout = seconds(20)) {
    return loop_.RunUntil(done, timeout);
  }

  event::Loop loop_;
  std::string stubs_;
  std::unique_ptr<event::Timer> ticker_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<Channel> channel_;
};

TEST_F(GrpcInteropTest, PythonClientAgainstCppServer) {
  server_ = std::make_unique<Server>(loop_);
  std::vector<xds::DiscoveryRequest> requests;
  bool ads_half_closed = false;
  int hang_cancels = 0;
  ASSERT_TRUE(server_
                  ->RegisterMethod(kAds,
                                   [&](std::shared_ptr<ServerCall> call) {
                                     call->OnProtoMessage<xds::DiscoveryRequest>(
                                         [&, call](xds::DiscoveryRequest request) {
                                           requests.push_back(request);
                                           if (requests.size() > 1) return;
                                           xds::DiscoveryResponse response;
                                           response.set_version_info("v1");
                                           response.set_nonce("n1");
                                           response.set_type_url(request.type_url());
                                           response.add_resources()->set_type_url(
                                               request.type_url());
                                           call->SendProto(response);
                                         });
                                     call->OnHalfClose([&, call] {
                                       ads_half_closed = true;
                                       call->Finish(StatusCode::kOk);
                                     });
                                   })
                  .ok());
  ASSERT_TRUE(server_
                  ->RegisterMethod("/meshlet.test.Interop/Fail",
                                   [](std::shared_ptr<ServerCall> call) {
                                     call->OnMessage([](std::string) {});
                                     call->OnHalfClose([call] {
                                       call->Finish(StatusCode::kFailedPrecondition,
                                                    "bad state: 100% sure, caf\xc3\xa9");
                                     });
                                   })
                  .ok());
  ASSERT_TRUE(server_
                  ->RegisterMethod("/meshlet.test.Interop/Echo",
                                   [](std::shared_ptr<ServerCall> call) {
                                     call->OnMessage([call](std::string m) { call->Send(m); });
                                     call->OnHalfClose([call] { call->Finish(StatusCode::kOk); });
                                   })
                  .ok());
  ASSERT_TRUE(server_
                  ->RegisterMethod("/meshlet.test.Interop/Hang",
                                   [&](std::shared_ptr<ServerCall> call) {
                                     call->OnMessage([](std::string) {});
                                     call->OnCancel([&] { ++hang_cancels; });
                                   })
                  .ok());
  ASSERT_TRUE(server_->Start(*net::Address::Parse("127.0.0.1:0")).ok());

  Child child =
      Spawn({kPython, kPeerScript, "client", absl::StrCat(server_->address().port())}, stubs_);
  ASSERT_GT(child.pid, 0);
  int wait_status = 0;
  // Latched: RunUntil evaluates the predicate again before returning, and a child is reaped
  // only once.
  bool exited = false;
  RunUntil([&] {
    if (!exited) exited = waitpid(child.pid, &wait_status, WNOHANG) == child.pid;
    return exited;
  });
  if (!exited) {
    kill(child.pid, SIGKILL);
    waitpid(child.pid, &wait_status, 0);
  }
  std::string output = ReadAll(child.stdout_fd);
  close(child.stdout_fd);
  ASSERT_TRUE(exited) << "python client did not finish; output so far:\n" << output;
  ASSERT_TRUE(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0) << output;

  std::vector<std::string> lines = absl::StrSplit(output, '\n', absl::SkipEmpty());
  EXPECT_EQ(lines, (std::vector<std::string>{
                       absl::StrCat("ADS_RESPONSE v1 n1 ", kTypeUrl, " 1"),
                       "ADS_STATUS OK 0",
                       "FAIL_STATUS FAILED_PRECONDITION 'bad state: 100% sure, caf\\xe9'",
                       "UNKNOWN_STATUS UNIMPLEMENTED",
                       "ECHO plain",
                       "GZIP_STATUS UNIMPLEMENTED",
                       "HANG_STATUS DEADLINE_EXCEEDED",
                       "DONE",
                   }));

  // What the C++ handler saw: the request with the node, the ACK, the NACK.
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[0].node().id(), "python-sidecar");
  EXPECT_EQ(requests[0].node().labels().at("app"), "interop");
  EXPECT_EQ(requests[0].resource_names_size(), 1);
  EXPECT_EQ(requests[0].type_url(), kTypeUrl);
  EXPECT_EQ(requests[1].version_info(), "v1");
  EXPECT_EQ(requests[1].response_nonce(), "n1");
  EXPECT_FALSE(requests[1].has_error_detail());
  EXPECT_EQ(requests[2].response_nonce(), "n1");
  ASSERT_TRUE(requests[2].has_error_detail());
  EXPECT_EQ(requests[2].error_detail().code(), 3);
  EXPECT_EQ(requests[2].error_detail().message(), "cluster backend: unknown load balancer");
  EXPECT_TRUE(ads_half_closed);
  EXPECT_TRUE(RunUntil([&] { return hang_cancels == 1; }));
  EXPECT_EQ(server_->counters().calls_unimplemented, 1u);
}

TEST_F(GrpcInteropTest, CppClientAgainstPythonServer) {
  Child child = Spawn({kPython, kPeerScript, "server"}, stubs_);
  ASSERT_GT(child.pid, 0);
  std::optional<std::string> line = ReadLine(child.stdout_fd, 20000);
  int port = 0;
  bool started = line.has_value() && absl::StartsWith(*line, "PORT ") &&
                 absl::SimpleAtoi(line->substr(5), &port) && port > 0;
  if (!started) {
    kill(child.pid, SIGKILL);
    waitpid(child.pid, nullptr, 0);
    close(child.stdout_fd);
    FAIL() << "python server did not start: " << line.value_or("(no output)");
  }
  channel_ = std::make_unique<Channel>(loop_, *net::Address::FromIp("127.0.0.1", port));

  // Bidi: request, ACK, NACK; one response each, describing what the server received.
  std::vector<xds::DiscoveryResponse> responses;
  std::optional<StatusCode> code;
  std::string message;
  auto call = channel_->StartCall(kAds, {.timeout = seconds(10)});
  call->OnProtoMessage<xds::DiscoveryResponse>(
      [&](xds::DiscoveryResponse r) { responses.push_back(std::move(r)); });
  call->OnFinish([&](StatusCode c, const std::string& m, const HeaderMap&) {
    code = c;
    message = m;
  });
  xds::DiscoveryRequest request;
  request.mutable_node()->set_id("cpp-sidecar");
  request.set_type_url(std::string(kTypeUrl));
  ASSERT_TRUE(call->SendProto(request));
  ASSERT_TRUE(RunUntil([&] { return responses.size() == 1 || code.has_value(); })) << message;
  ASSERT_EQ(responses.size(), 1u) << message;
  EXPECT_EQ(responses[0].version_info(), "v1");
  EXPECT_EQ(responses[0].nonce(), "n1");
  EXPECT_EQ(responses[0].system_version_info(), "node=cpp-sidecar nonce= nack=");
  ASSERT_EQ(responses[0].resources_size(), 1);
  EXPECT_EQ(responses[0].resources(0).type_url(), kTypeUrl);

  xds::DiscoveryRequest ack;
  ack.set_type_url(std::string(kTypeUrl));
  ack.set_version_info("v1");
  ack.set_response_nonce("n1");
  ASSERT_TRUE(call->SendProto(ack));
  xds::DiscoveryRequest nack = ack;
  nack.mutable_error_detail()->set_code(3);
  nack.mutable_error_detail()->set_message("bad cluster");
  ASSERT_TRUE(call->SendProto(nack));
  call->HalfClose();
  ASSERT_TRUE(RunUntil([&] { return code.has_value(); }));
  EXPECT_EQ(*code, StatusCode::kOk) << message;
  ASSERT_EQ(responses.size(), 3u);
  EXPECT_EQ(responses[1].system_version_info(), "node= nonce=n1 nack=");
  EXPECT_EQ(responses[2].system_version_info(), "node= nonce=n1 nack=bad cluster");

  // Unary-style: one delta request, one response.
  xds::DeltaDiscoveryRequest delta;
  delta.mutable_node()->set_id("cpp-sidecar");
  delta.set_type_url(std::string(kTypeUrl));
  delta.add_resource_names_subscribe("a");
  delta.add_resource_names_subscribe("b");
  delta.add_resource_names_unsubscribe("c");
  std::optional<StatusCode> delta_code;
  std::string delta_bytes;
  channel_->Unary(kDelta, delta.SerializeAsString(), {.timeout = seconds(10)},
                  [&](StatusCode c, const std::string&, std::string response) {
                    delta_code = c;
                    delta_bytes = std::move(response);
                  });
  ASSERT_TRUE(RunUntil([&] { return delta_code.has_value(); }));
  EXPECT_EQ(*delta_code, StatusCode::kOk);
  xds::DeltaDiscoveryResponse delta_response;
  ASSERT_TRUE(delta_response.ParseFromString(delta_bytes));
  EXPECT_EQ(delta_response.nonce(), "delta-1");
  EXPECT_EQ(delta_response.system_version_info(), "node=cpp-sidecar");
  ASSERT_EQ(delta_response.resources_size(), 2);
  EXPECT_EQ(delta_response.resources(1).name(), "b");
  ASSERT_EQ(delta_response.removed_resources_size(), 1);
  EXPECT_EQ(delta_response.removed_resources(0), "c");

  // An error status with a message that needs percent-encoding, from real gRPC.
  code.reset();
  auto rejected = channel_->StartCall(kAds, {.timeout = seconds(10)});
  rejected->OnMessage([](std::string) {});
  rejected->OnFinish([&](StatusCode c, const std::string& m, const HeaderMap&) {
    code = c;
    message = m;
  });
  request.mutable_node()->set_id("reject-me");
  rejected->SendProto(request);
  rejected->HalfClose();
  ASSERT_TRUE(RunUntil([&] { return code.has_value(); }));
  EXPECT_EQ(*code, StatusCode::kPermissionDenied);
  EXPECT_EQ(message,
            "denied: 100% \xc3\xbcn\xc3\xaf"
            "code");
  EXPECT_EQ(channel_->connection_attempts(), 1u);

  kill(child.pid, SIGTERM);
  waitpid(child.pid, nullptr, 0);
  close(child.stdout_fd);
}

}  // namespace
}  // namespace meshlet::http::grpc

// The hand-over's two sides against each other in one process (hand_over.h): what goes across
// (a listening socket that then accepts, the configuration, the certificate), the running side
// told to stop, a refusal, nobody serving, a file left behind, a live server keeping its path, a
// successor that goes away before it is ready, and stopping while one prepares.

#include "sidecar/server/hand_over.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/event/loop.h"
#include "common/net/listener.h"
#include "common/net/test_util.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::server {
namespace {

using namespace std::chrono_literals;

class HandOverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = net::testing::TestSocketPath(
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    unlink(path_.c_str());
    absl::StatusOr<std::unique_ptr<net::Listener>> listener = net::Listener::Create(
        loop_, *net::Address::Parse("127.0.0.1:0"), {}, [](std::unique_ptr<net::Connection>) {});
    ASSERT_TRUE(listener.ok()) << listener.status();
    listener_ = *std::move(listener);
  }
  void TearDown() override {
    server_.reset();
    listener_.reset();
    loop_.RunUntilIdle();
    unlink(path_.c_str());
  }

  // Serves path_ as a running sidecar whose listening sockets (this process's) go across with
  // `configuration` and a certificate; `refusal` non-empty: it refuses.
  void Serve(std::string refusal = "") {
    absl::StatusOr<std::unique_ptr<HandOverServer>> server = HandOverServer::Start(
        loop_, path_,
        {.offer = [this, refusal]() -> absl::StatusOr<HandedOver> {
           ++offers_;
           if (!refusal.empty()) return absl::FailedPreconditionError(refusal);
           HandedOver handed;
           handed.pid = getpid();
           handed.release = "9.9.9";
           absl::StatusOr<std::vector<net::ListeningSocket>> sockets =
               net::DuplicateListeningSockets();
           if (!sockets.ok()) return sockets.status();
           handed.sockets = *std::move(sockets);
           handed.configuration = "the configuration";
           handed.certificate = identity::WorkloadCertificate{
               .spiffe_id = "spiffe://cluster.local/ns/default/sa/web",
               .certificate_chain_pem = "chain",
               .private_key_pem = "key",
               .trust_bundle_pem = "bundle",
               .serial_hex = "0a",
               .not_after = absl::FromUnixSeconds(2000000000)};
           return handed;
         },
         .handed_over =
             [this] {
               handed_over_ = true;
               return HandOverServer::Drained{.connections = 3, .requests = 2};
             }});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  // Runs `f` on another thread while this one runs the loop (the server's callbacks need it).
  template <typename F>
  auto WithLoop(F f) {
    std::atomic<bool> done{false};
    decltype(f()) result = decltype(f())();
    std::thread thread([&] {
      result = f();
      done = true;
      loop_.Post([] {});  // wakes the loop to see it
    });
    loop_.RunUntil([&] { return done.load(); }, 20s);
    thread.join();
    return result;
  }

  absl::StatusOr<std::unique_ptr<HandOverClient>> Connect() {
    return WithLoop([this] { return HandOverClient::Connect(path_, 5s); });
  }

  event::Loop loop_;
  std::string path_;
  std::unique_ptr<net::Listener> listener_;
  std::unique_ptr<HandOverServer> server_;
  int offers_ = 0;
  bool handed_over_ = false;
};

TEST_F(HandOverTest, SocketsConfigurationAndCertificateGoAcrossThenTheRunningOneStops) {
  Serve();
  absl::StatusOr<std::unique_ptr<HandOverClient>> client = Connect();
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_NE(*client, nullptr);
  HandedOver& handed = (*client)->handed();
  EXPECT_EQ(handed.pid, getpid());
  EXPECT_EQ(handed.release, "9.9.9");
  EXPECT_EQ(handed.configuration, "the configuration");
  ASSERT_TRUE(handed.certificate.has_value());
  EXPECT_EQ(handed.certificate->private_key_pem, "key");
  EXPECT_EQ(handed.certificate->not_after, absl::FromUnixSeconds(2000000000));
  ASSERT_EQ(handed.sockets.size(), 1u);
  EXPECT_EQ(handed.sockets[0].address, listener_->address());
  EXPECT_FALSE(handed.sockets[0].reuse_port);
  EXPECT_NE(handed.sockets[0].fd, -1);

  // The descriptor that came across is the listening socket itself: a connection to the
  // listener's port is accepted on it.
  const int client_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in to = {};
  to.sin_family = AF_INET;
  to.sin_port = htons(listener_->address().port());
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(client_fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)), 0);
  pollfd ready = {handed.sockets[0].fd, POLLIN, 0};
  ASSERT_EQ(poll(&ready, 1, 5000), 1);
  const int accepted = accept4(handed.sockets[0].fd, nullptr, nullptr, SOCK_CLOEXEC);
  EXPECT_GE(accepted, 0);
  close(accepted);
  close(client_fd);

  EXPECT_FALSE(handed_over_);
  absl::StatusOr<HandOverServer::Drained> drained = WithLoop([&] { return (*client)->Finish(5s); });
  ASSERT_TRUE(drained.ok()) << drained.status();
  EXPECT_EQ(drained->connections, 3);
  EXPECT_EQ(drained->requests, 2);
  EXPECT_TRUE(handed_over_);
  // The path is the successor's now: the old server leaves it, and a new one serves it.
  client->reset();
  server_.reset();
  EXPECT_EQ(access(path_.c_str(), F_OK), 0);
  Serve();
  EXPECT_NE(server_, nullptr);
}

TEST_F(HandOverTest, NobodyServingMeansStartingAnew) {
  absl::StatusOr<std::unique_ptr<HandOverClient>> client = Connect();
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ(*client, nullptr);
  // A socket file left by a process that is gone: the same.
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path_.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  close(fd);
  client = Connect();
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ(*client, nullptr);
  // And a server replaces the file.
  Serve();
}

TEST_F(HandOverTest, ARefusalIsAnErrorGivingTheReason) {
  Serve("this sidecar is draining");
  absl::StatusOr<std::unique_ptr<HandOverClient>> client = Connect();
  ASSERT_FALSE(client.ok());
  EXPECT_NE(client.status().message().find(absl::StrCat("(pid ", getpid(), ")")), std::string::npos)
      << client.status();
  EXPECT_NE(client.status().message().find("refused: this sidecar is draining"), std::string::npos)
      << client.status();
  EXPECT_FALSE(handed_over_);
}

TEST_F(HandOverTest, ALiveServerKeepsItsPath) {
  Serve();
  absl::StatusOr<std::unique_ptr<HandOverServer>> second = HandOverServer::Start(loop_, path_, {});
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("another process (pid"), std::string::npos)
      << second.status();
  // A file that is not a socket is left alone.
  const std::string file = path_ + ".file";
  FILE* f = std::fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
  absl::StatusOr<std::unique_ptr<HandOverServer>> on_file = HandOverServer::Start(loop_, file, {});
  ASSERT_FALSE(on_file.ok());
  EXPECT_NE(on_file.status().message().find("not a socket"), std::string::npos) << on_file.status();
  EXPECT_EQ(access(file.c_str(), F_OK), 0);
  unlink(file.c_str());
  // Too long for a unix socket: said so.
  absl::StatusOr<std::unique_ptr<HandOverServer>> long_path =
      HandOverServer::Start(loop_, std::string(200, 'x'), {});
  ASSERT_FALSE(long_path.ok());
  EXPECT_NE(long_path.status().message().find("a path of 1 to"), std::string::npos);
}

TEST_F(HandOverTest, ASuccessorThatGoesAwayBeforeItIsReadyChangesNothing) {
  Serve();
  {
    absl::StatusOr<std::unique_ptr<HandOverClient>> client = Connect();
    ASSERT_TRUE(client.ok()) << client.status();
    ASSERT_NE(*client, nullptr);
  }  // gone without Finish
  loop_.RunUntil([] { return false; }, 200ms);
  EXPECT_FALSE(handed_over_);
  // The running one still serves the path for the next successor.
  absl::StatusOr<std::unique_ptr<HandOverClient>> again = Connect();
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_NE(*again, nullptr);
  EXPECT_EQ(offers_, 2);
}

TEST_F(HandOverTest, StoppingWhileASuccessorPreparesEndsPromptly) {
  Serve();
  absl::StatusOr<std::unique_ptr<HandOverClient>> client = Connect();
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_NE(*client, nullptr);
  // The server's thread waits for Ready; stopping it does not wait for the successor.
  const auto start = std::chrono::steady_clock::now();
  server_.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_NE(access(path_.c_str(), F_OK), 0);  // removed: nobody took over
  absl::StatusOr<HandOverServer::Drained> drained = (*client)->Finish(2s);
  EXPECT_FALSE(drained.ok());
  EXPECT_FALSE(handed_over_);
}

}  // namespace
}  // namespace meshlet::sidecar::server

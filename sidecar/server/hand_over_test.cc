// The hand-over's two sides against each other in one process (hand_over.h): what goes across
// (a listening socket that then accepts, the configuration, the certificate), the running side
// told to stop, a refusal, nobody serving, a file left behind, a live server keeping its path, a
// successor that goes away before it is ready, stopping while one prepares or while an offer is
// built, a second successor refused at once, a socket whose queue is full; and the attacks: a
// peer of another user on either end, descriptors that are not what the offer says, oversized
// messages, a path another process took over meanwhile.

#include "sidecar/server/hand_over.h"

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cerrno>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/event/loop.h"
#include "common/net/listener.h"
#include "common/net/test_util.h"
#include "gtest/gtest.h"
#include "xds/hand_over.pb.h"

namespace meshlet::sidecar::server {
namespace {

using namespace std::chrono_literals;

// An unprivileged user for the tests that need another user than this (root) process's.
constexpr uid_t kNobody = 65534;

std::string Frame(const google::protobuf::Message& message) {
  const std::string body = message.SerializeAsString();
  const uint32_t size = static_cast<uint32_t>(body.size());
  std::string frame = {static_cast<char>(size >> 24), static_cast<char>(size >> 16),
                       static_cast<char>(size >> 8), static_cast<char>(size)};
  return frame + body;
}

int OpenDescriptors() {
  int n = 0;
  DIR* dir = opendir("/proc/self/fd");
  while (readdir(dir) != nullptr) ++n;
  closedir(dir);
  return n;
}

int ConnectUnix(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// A unix socket listening at `path` (-1 on failure). Only system calls: used in forked children.
int ListenUnix(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.data(), std::min(path.size(), sizeof(address.sun_path) - 1));
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 || listen(fd, 4) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Reads until the peer closes or `timeout` passes: the bytes read, or nullopt on the timeout.
std::optional<std::string> ReadUntilClosed(int fd, std::chrono::milliseconds timeout) {
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p = {fd, POLLIN, 0};
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) != 1) return std::nullopt;
    char buffer[4096];
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) return got;
    got.append(buffer, static_cast<size_t>(n));
  }
}

// Sends one byte carrying `fd` (SCM_RIGHTS).
bool SendDescriptor(int over, int fd) {
  char byte = 'S';
  iovec iov = {&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
  return sendmsg(over, &msg, MSG_NOSIGNAL) == 1;
}

// A child process that runs `body` as uid kNobody (only system calls: the parent has threads) and
// exits with its result; waited for (killed if still running) when this goes.
class AsNobody {
 public:
  template <typename F>
  explicit AsNobody(F body) {
    pid_ = fork();
    if (pid_ == 0) {
      if (syscall(SYS_setresgid, kNobody, kNobody, kNobody) != 0 ||
          syscall(SYS_setresuid, kNobody, kNobody, kNobody) != 0) {
        _exit(100);
      }
      _exit(body());
    }
  }
  ~AsNobody() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  // The child's exit code (-1: killed after `timeout`).
  int Wait(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) return -1;
      std::this_thread::sleep_for(10ms);
    }
    exited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
};

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
           handed.configuration = configuration_;
           if (after_offer_) after_offer_();
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
               if (on_handed_over_) on_handed_over_();
               return HandOverServer::Drained{.connections = 3, .requests = 2};
             },
         .failed = [this](absl::string_view why) { failures_.emplace_back(why); },
         .refused = [this](absl::string_view why) { refusals_.emplace_back(why); }});
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
  std::string configuration_ = "the configuration";  // what the offers carry
  int offers_ = 0;
  bool handed_over_ = false;
  std::vector<std::string> failures_;     // callbacks.failed
  std::vector<std::string> refusals_;     // callbacks.refused
  std::function<void()> after_offer_;     // run by the offer once it holds the sockets
  std::function<void()> on_handed_over_;  // run by callbacks.handed_over
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
  // Counted as a failed exchange.
  ASSERT_EQ(failures_.size(), 1u);
  EXPECT_NE(failures_[0].find("abandoned, still serving"), std::string::npos) << failures_[0];
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

namespace meshlet::sidecar::server {
namespace {

// A sidecar running as root hands nothing to a process of another user, even one that reached the
// socket (a mode or directory mistake): its key and listening sockets would go to a lesser user.
TEST_F(HandOverTest, ARootSidecarRefusesASuccessorOfAnotherUser) {
  if (geteuid() != 0) GTEST_SKIP() << "SKIP: needs root (a peer of another user)";
  Serve();
  ASSERT_EQ(chmod(path_.c_str(), 0666), 0);  // the mistake: anyone may connect
  xds::HandOverRequest request;
  request.set_release("9.9.9");
  const std::string frame = Frame(request);
  const std::string path = path_;
  // Exit 0: the server closed without an offer; 1: an offer came; 2: no connection.
  AsNobody child([&] {
    const int fd = ConnectUnix(path);
    if (fd < 0) return 2;
    // The server checks the peer's uid when it accepts, before reading: it may have closed
    // already, and the send then fails as closed.
    if (send(fd, frame.data(), frame.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(frame.size())) {
      return errno == EPIPE || errno == ECONNRESET ? 0 : 2;
    }
    char byte;
    pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 5000) != 1) return 1;
    // Closed (with the request unread: reset) rather than answered.
    return recv(fd, &byte, 1, 0) <= 0 ? 0 : 1;
  });
  EXPECT_EQ(WithLoop([&] { return child.Wait(10s); }), 0);
  EXPECT_EQ(offers_, 0);
  loop_.RunUntil([&] { return !failures_.empty(); }, 2s);
  ASSERT_EQ(failures_.size(), 1u);
  EXPECT_NE(failures_[0].find("runs as uid 65534"), std::string::npos) << failures_[0];
}

// And a sidecar started as root takes nothing from a process of another user serving the path
// (one that put its socket there first, in a directory others can write): not its sockets, not
// its configuration.
TEST_F(HandOverTest, ARootSuccessorRefusesAPredecessorOfAnotherUser) {
  if (geteuid() != 0) GTEST_SKIP() << "SKIP: needs root (a peer of another user)";
  char dir[] = "/tmp/hand-over-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  ASSERT_EQ(chmod(dir, 0777), 0);
  const std::string path = absl::StrCat(dir, "/socket");
  xds::HandOverOffer offer;
  offer.set_pid(1);
  offer.set_release("9.9.9");
  offer.set_configuration("the attacker's configuration");
  const std::string frame = Frame(offer);
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  AsNobody attacker([&] {
    const int fd = ListenUnix(path);
    if (fd < 0) return 2;
    (void)!write(ready[1], "r", 1);
    const int peer = accept(fd, nullptr, nullptr);
    if (peer < 0) return 2;
    (void)!send(peer, frame.data(), frame.size(), MSG_NOSIGNAL);
    char byte;
    while (recv(peer, &byte, 1, 0) > 0) {
    }
    return 0;
  });
  char byte;
  pollfd p = {ready[0], POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 5000), 1);
  ASSERT_EQ(read(ready[0], &byte, 1), 1);
  close(ready[0]);
  close(ready[1]);
  {
    absl::StatusOr<std::unique_ptr<HandOverClient>> client = HandOverClient::Connect(path, 5s);
    EXPECT_FALSE(client.ok());
    EXPECT_EQ(client.status().code(), absl::StatusCode::kPermissionDenied) << client.status();
    EXPECT_NE(client.status().message().find("runs as uid 65534"), std::string::npos)
        << client.status();
  }  // closes the connection (were it taken)
  EXPECT_EQ(attacker.Wait(5s), 0);
  unlink(path.c_str());
  rmdir(dir);
}

// A predecessor's offer whose descriptors are not what it says: each refused with the socket
// named, nothing taken, no descriptor left open.
TEST_F(HandOverTest, DescriptorsThatAreNotTheListeningSocketsOfferedAreRefused) {
  const std::string address = listener_->address().ToString();
  struct Case {
    std::string name;
    std::function<int()> make;  // the descriptor handed over for `address`
    bool reuse_port = false;
    std::string error;
  };
  std::vector<Case> cases = {
      {"a pipe",
       [] {
         int p[2];
         (void)!pipe(p);
         close(p[1]);
         return p[0];
       },
       false, "not a socket"},
      {"a UDP socket", [] { return socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0); }, false,
       "not a TCP socket"},
      {"a TCP socket that does not listen (listen() would bind it to any port)",
       [] { return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); }, false, "not listening"},
      {"a socket listening on another port",
       [] {
         const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
         sockaddr_in any = {};
         any.sin_family = AF_INET;
         any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
         (void)!bind(fd, reinterpret_cast<sockaddr*>(&any), sizeof(any));
         (void)!listen(fd, 1);
         return fd;
       },
       false, "bound to 127.0.0.1:"},
      {"the listening socket, said to be in a SO_REUSEPORT group",
       [] {
         absl::StatusOr<std::vector<net::ListeningSocket>> own = net::DuplicateListeningSockets();
         return own.ok() && own->size() == 1 ? own->front().fd : -1;
       },
       true, "not in a SO_REUSEPORT group"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    unlink(path_.c_str());
    const int listen_fd = ListenUnix(path_);
    ASSERT_GE(listen_fd, 0);
    const int handed = c.make();
    ASSERT_GE(handed, 0);
    const int before = OpenDescriptors();
    std::thread predecessor([&] {
      const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
      xds::HandOverOffer offer;
      offer.set_pid(1);
      xds::HandedSocket* socket = offer.add_sockets();
      socket->set_address(address);
      socket->set_reuse_port(c.reuse_port);
      const std::string frame = Frame(offer);
      (void)!send(fd, frame.data(), frame.size(), MSG_NOSIGNAL);
      SendDescriptor(fd, handed);
      ReadUntilClosed(fd, 5000ms);
      close(fd);
    });
    absl::StatusOr<std::unique_ptr<HandOverClient>> client = HandOverClient::Connect(path_, 5s);
    const absl::Status status = client.ok() ? absl::OkStatus() : client.status();
    client = absl::CancelledError("closed");  // (were it taken)
    predecessor.join();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_NE(status.message().find(absl::StrCat("socket 1 of 1 (\"", address, "\"): ", c.error)),
              std::string::npos)
        << status;
    // The successor closed its connection and the descriptor it received.
    EXPECT_EQ(OpenDescriptors(), before);
    close(listen_fd);
    close(handed);
  }
}

// Messages that are never more than a few bytes are refused by their size before anything is
// allocated or waited for; an offer of more sockets than any sidecar has likewise.
TEST_F(HandOverTest, OversizedMessagesAreRefusedAtOnce) {
  Serve();
  const int fd = ConnectUnix(path_);
  ASSERT_GE(fd, 0);
  const char header[4] = {0x0f, 0, 0, 0};  // a request of 240 MiB
  ASSERT_EQ(send(fd, header, 4, MSG_NOSIGNAL), 4);
  // Closed without waiting for the rest (the exchange's timeout is 10 s).
  std::optional<std::string> got = WithLoop([&] { return ReadUntilClosed(fd, 3000ms); });
  ASSERT_TRUE(got.has_value()) << "the server waited for the body";
  EXPECT_EQ(*got, "");
  close(fd);
  EXPECT_EQ(offers_, 0);
  loop_.RunUntil([&] { return !failures_.empty(); }, 2s);
  ASSERT_EQ(failures_.size(), 1u);
  EXPECT_NE(failures_[0].find("a HandOverRequest of 251658240 bytes (at most 65536)"),
            std::string::npos)
      << failures_[0];

  // An offer of 10 000 sockets: refused by the successor without waiting for descriptors.
  server_.reset();
  unlink(path_.c_str());
  const int listen_fd = ListenUnix(path_);
  ASSERT_GE(listen_fd, 0);
  std::thread predecessor([&] {
    const int peer = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    xds::HandOverOffer offer;
    for (int i = 0; i < 10000; ++i) offer.add_sockets()->set_address("127.0.0.1:1");
    const std::string frame = Frame(offer);
    (void)!send(peer, frame.data(), frame.size(), MSG_NOSIGNAL);
    ReadUntilClosed(peer, 10000ms);
    close(peer);
  });
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<HandOverClient>> client = HandOverClient::Connect(path_, 5s);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  const absl::Status status = client.ok() ? absl::OkStatus() : client.status();
  client = absl::CancelledError("closed");
  predecessor.join();
  EXPECT_NE(status.message().find("an offer of 10000 sockets (at most"), std::string::npos)
      << status;
  close(listen_fd);
}

// A server stopping while a successor took over the path meanwhile (its confirmation was lost)
// leaves the successor's socket file: only the file it made itself is removed.
TEST_F(HandOverTest, AServerRemovesOnlyTheSocketFileItMade) {
  Serve();
  // The successor's: the path now names another socket.
  ASSERT_EQ(unlink(path_.c_str()), 0);
  const int successor = ListenUnix(path_);
  ASSERT_GE(successor, 0);
  server_.reset();
  EXPECT_EQ(access(path_.c_str(), F_OK), 0) << "the successor's socket file was removed";
  const int probe = ConnectUnix(path_);
  EXPECT_GE(probe, 0);
  if (probe >= 0) close(probe);
  close(successor);
  // Its own file it removes.
  unlink(path_.c_str());
  Serve();
  server_.reset();
  EXPECT_NE(access(path_.c_str(), F_OK), 0);
}

}  // namespace
}  // namespace meshlet::sidecar::server

namespace meshlet::sidecar::server {
namespace {

// A successor that asks and then reads nothing (its offer, 32 MiB of configuration, fills the
// socket's buffer) does not hold up stopping: the server's thread is not stuck in a write.
TEST_F(HandOverTest, StoppingWhileAnOfferIsNotReadEndsPromptly) {
  configuration_ = std::string(32 << 20, 'c');
  Serve();
  const int fd = ConnectUnix(path_);
  ASSERT_GE(fd, 0);
  xds::HandOverRequest request;
  const std::string frame = Frame(request);
  ASSERT_EQ(send(fd, frame.data(), frame.size(), MSG_NOSIGNAL), static_cast<ssize_t>(frame.size()));
  ASSERT_TRUE(loop_.RunUntil([&] { return offers_ == 1; }, 5s));
  std::this_thread::sleep_for(100ms);  // the thread writes until the buffer is full
  const auto start = std::chrono::steady_clock::now();
  server_.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  close(fd);
}

}  // namespace
}  // namespace meshlet::sidecar::server

namespace meshlet::sidecar::server {
namespace {

double CpuSeconds() {
  rusage usage = {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

// Out of descriptors, a successor queued on the socket cannot be accepted: the server's thread
// tries again after a pause instead of spinning on the readable socket, and serves it once
// descriptors are free.
TEST_F(HandOverTest, OutOfDescriptorsTheServerWaitsInsteadOfSpinning) {
  Serve();
  rlimit limit = {};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  const int client = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(client, 0);
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path_.c_str());
  // No descriptor number is free below the new limit: accept fails with EMFILE.
  const int lowest_free = dup(client);
  close(lowest_free);
  rlimit lowered = limit;
  lowered.rlim_cur = static_cast<rlim_t>(lowest_free);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lowered), 0);
  const double cpu_before = CpuSeconds();
  const int connected = connect(client, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  std::this_thread::sleep_for(500ms);
  const double busy = CpuSeconds() - cpu_before;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &limit), 0);
  ASSERT_EQ(connected, 0) << std::strerror(errno);
  // Waiting, the process uses well under 1 ms of CPU in the half second; spinning, 45-65 ms on the
  // loaded 2-core machine (500 ms on an idle one).
  EXPECT_LT(busy, 0.02) << "the server's thread spun on accept";
  // Descriptors free again: the successor is served.
  xds::HandOverRequest request;
  const std::string frame = Frame(request);
  ASSERT_EQ(send(client, frame.data(), frame.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(frame.size()));
  EXPECT_TRUE(loop_.RunUntil([&] { return offers_ == 1; }, 5s));
  close(client);
}

}  // namespace
}  // namespace meshlet::sidecar::server

namespace meshlet::sidecar::server {
namespace {

// The offer a refused would-be successor reads on `fd` (it sent its request), or nullopt.
std::optional<xds::HandOverOffer> ReadOffer(int fd) {
  std::optional<std::string> got = ReadUntilClosed(fd, 5000ms);
  if (!got.has_value() || got->size() < 4) return std::nullopt;
  xds::HandOverOffer offer;
  if (!offer.ParseFromString(got->substr(4))) return std::nullopt;
  return offer;
}

// While one successor takes over, another that asks is refused at once, saying why (it waited
// for the exchange's 10 s and got no answer); the first still takes over.
TEST_F(HandOverTest, ASecondSuccessorIsRefusedAtOnceWhileOneTakesOver) {
  Serve();
  absl::StatusOr<std::unique_ptr<HandOverClient>> first = Connect();
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_NE(*first, nullptr);
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<HandOverClient>> second = Connect();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition) << second.status();
  EXPECT_NE(second.status().message().find(
                absl::StrCat("refused: handing over to another process: pid ", getpid(), " (")),
            std::string::npos)
      << second.status();
  EXPECT_EQ(offers_, 1);
  loop_.RunUntil([&] { return !refusals_.empty(); }, 2s);
  ASSERT_EQ(refusals_.size(), 1u);
  EXPECT_NE(refusals_[0].find("handing over to another process"), std::string::npos);
  EXPECT_TRUE(failures_.empty());

  // One that queued while the first is taking over is refused too, not reset when the socket
  // closes.
  int queued = -1;
  on_handed_over_ = [&] {
    queued = ConnectUnix(path_);
    xds::HandOverRequest request;
    request.set_pid(4242);
    const std::string frame = Frame(request);
    (void)!send(queued, frame.data(), frame.size(), MSG_NOSIGNAL);
  };
  absl::StatusOr<HandOverServer::Drained> drained = WithLoop([&] { return (*first)->Finish(5s); });
  ASSERT_TRUE(drained.ok()) << drained.status();
  EXPECT_TRUE(handed_over_);
  ASSERT_GE(queued, 0);
  std::optional<xds::HandOverOffer> refusal = ReadOffer(queued);
  close(queued);
  ASSERT_TRUE(refusal.has_value()) << "the queued successor got no answer";
  EXPECT_NE(refusal->refused().find("handed over to another process already: pid"),
            std::string::npos)
      << refusal->refused();
  EXPECT_EQ(refusal->sockets_size(), 0);
  EXPECT_EQ(offers_, 1);
}

// A process listening at the path that accepts nobody, its queue of connections full: the connect
// of a would-be successor gives up within its timeout, saying so (it waited for ever), and a
// server that would start there says the path is served (it waited for ever too).
TEST_F(HandOverTest, AFullQueueOfConnectionsDoesNotHoldUpTheConnect) {
  const int listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path_.c_str());
  ASSERT_EQ(bind(listen_fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(listen(listen_fd, 0), 0);
  std::vector<int> queued;
  while (true) {
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      EXPECT_EQ(errno, EAGAIN) << std::strerror(errno);
      close(fd);
      break;
    }
    queued.push_back(fd);
    ASSERT_LT(queued.size(), 64u);
  }
  // Runs `f` on a thread; one stuck in connect is released by closing the listener.
  bool released = false;
  auto bounded = [&](auto f) {
    std::atomic<bool> done{false};
    std::thread thread([&] {
      f();
      done = true;
    });
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!done && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
    if (!done && !released) {
      released = true;
      close(listen_fd);
    }
    thread.join();
  };

  absl::Status connected;
  auto start = std::chrono::steady_clock::now();
  bounded([&] {
    absl::StatusOr<std::unique_ptr<HandOverClient>> client = HandOverClient::Connect(path_, 1s);
    connected = !client.ok()         ? client.status()
                : *client == nullptr ? absl::NotFoundError("nobody serves it")
                                     : absl::OkStatus();
  });
  ASSERT_FALSE(released) << "the connect waited for the full queue";
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  EXPECT_EQ(connected.code(), absl::StatusCode::kDeadlineExceeded) << connected;
  EXPECT_NE(connected.message().find("accepts no connection"), std::string::npos) << connected;

  absl::Status started;
  start = std::chrono::steady_clock::now();
  bounded([&] {
    absl::StatusOr<std::unique_ptr<HandOverServer>> server =
        HandOverServer::Start(loop_, path_, {});
    started = server.ok() ? absl::OkStatus() : server.status();
  });
  ASSERT_FALSE(released) << "the server's start waited for the full queue";
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  EXPECT_EQ(started.code(), absl::StatusCode::kAlreadyExists) << started;
  EXPECT_NE(started.message().find("another process serves it"), std::string::npos) << started;
  for (int fd : queued) close(fd);
  close(listen_fd);
}

// A server stopped while its offer is being built (here from inside the offer itself, the latest
// moment): the exchange is abandoned and the sockets duplicated for the offer are closed.
TEST_F(HandOverTest, StoppedWhileItsOfferIsBuiltTheDuplicatedSocketsAreClosed) {
  const int before = OpenDescriptors();
  after_offer_ = [this] { server_.reset(); };
  Serve();
  const int fd = ConnectUnix(path_);
  ASSERT_GE(fd, 0);
  xds::HandOverRequest request;
  const std::string frame = Frame(request);
  ASSERT_EQ(send(fd, frame.data(), frame.size(), MSG_NOSIGNAL), static_cast<ssize_t>(frame.size()));
  ASSERT_TRUE(loop_.RunUntil([&] { return offers_ == 1 && server_ == nullptr; }, 5s));
  loop_.RunUntilIdle();
  // No offer was sent: the connection closes without one.
  std::optional<std::string> got = ReadUntilClosed(fd, 2000ms);
  close(fd);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, "");
  EXPECT_EQ(OpenDescriptors(), before) << "the offer's duplicated socket leaked";
}

}  // namespace
}  // namespace meshlet::sidecar::server

// ReadOriginalDestination against the kernel. The redirect tests need root: each runs on a thread
// of its own that moves into a new, empty network namespace (unshare(CLONE_NEWNET) moves only the
// calling thread), brings its loopback up and adds iptables/ip6tables nat REDIRECT rules there.
// The namespace, its rules and its sockets go away when the thread's sockets are closed and the
// thread ends, whether the test passed or not; nothing outside it changes. Without root, or
// without the tools or the kernel's NAT, those tests are skipped saying why.
#include "common/net/original_destination.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <spawn.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/event/loop.h"
#include "common/net/listener.h"
#include "common/net/network_namespace_test_util.h"
#include "common/net/test_util.h"
#include "gtest/gtest.h"

namespace meshlet::net {
namespace {

using testing::InNewNetworkNamespace;

// The port the rules redirect; nothing listens on it.
constexpr uint16_t kCapturedPort = 4321;

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(Fd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Fd& operator=(Fd&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

Address Parse(absl::string_view text) {
  absl::StatusOr<Address> address = Address::Parse(text);
  EXPECT_TRUE(address.ok()) << address.status();
  return address.ok() ? *address : Address();
}

// A blocking listening socket on `address` (port 0: any); `dual_stack` for "[::]:0" that takes
// IPv4 too.
Fd Listen(const Address& address, bool dual_stack = false) {
  Fd fd(socket(address.as_sockaddr()->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_GE(fd.get(), 0) << strerror(errno);
  if (address.family() == Address::Family::kIPv6) {
    int v6only = dual_stack ? 0 : 1;
    setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
  }
  EXPECT_EQ(bind(fd.get(), address.as_sockaddr(), address.sockaddr_len()), 0) << strerror(errno);
  EXPECT_EQ(listen(fd.get(), 8), 0) << strerror(errno);
  return fd;
}

uint16_t PortOf(const Fd& listener) {
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  EXPECT_EQ(getsockname(listener.get(), reinterpret_cast<sockaddr*>(&ss), &len), 0);
  absl::StatusOr<Address> address = Address::FromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  return address.ok() ? address->port() : 0;
}

// Connects to `to` (a blocking connect: loopback completes it from the listen queue) and
// accepts on `listener`; returns {client, accepted}.
std::pair<Fd, Fd> ConnectAndAccept(const Fd& listener, const Address& to) {
  Fd client(socket(to.as_sockaddr()->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(connect(client.get(), to.as_sockaddr(), to.sockaddr_len()), 0)
      << to.ToString() << ": " << strerror(errno);
  Fd accepted(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_GE(accepted.get(), 0) << strerror(errno);
  return {std::move(client), std::move(accepted)};
}

std::optional<Address> Redirected(const Fd& fd) {
  absl::StatusOr<std::optional<Address>> original = ReadOriginalDestination(fd.get());
  EXPECT_TRUE(original.ok()) << original.status();
  return original.ok() ? *original : std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Without privilege

TEST(OriginalDestinationTest, ALoopbackConnectionIsNotRedirected) {
  Fd listener = Listen(Parse("127.0.0.1:0"));
  auto [client, accepted] =
      ConnectAndAccept(listener, Parse(absl::StrCat("127.0.0.1:", PortOf(listener))));
  EXPECT_EQ(Redirected(accepted), std::nullopt);
}

TEST(OriginalDestinationTest, UnixSocketsAreNeverRedirected) {
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  Fd a(pair[0]), b(pair[1]);
  EXPECT_EQ(Redirected(a), std::nullopt);
}

TEST(OriginalDestinationTest, WhatIsNotASocketIsAnError) {
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  Fd r(pipe_fds[0]), w(pipe_fds[1]);
  absl::StatusOr<std::optional<Address>> original = ReadOriginalDestination(r.get());
  ASSERT_FALSE(original.ok());
  EXPECT_EQ(original.status().message(), absl::StrCat("getsockname: ", strerror(ENOTSOCK)));
}

// A Listener on `loop` that keeps the connection it accepts.
struct AcceptingListener {
  AcceptingListener(event::Loop& loop, const Address& address) : loop(loop) {
    auto created = Listener::Create(
        loop, address, {}, [this](std::unique_ptr<Connection> c) { accepted = std::move(c); });
    EXPECT_TRUE(created.ok()) << created.status();
    if (created.ok()) listener = *std::move(created);
  }
  // Connects to `to` and runs the loop until this listener accepted (false after 10 s).
  bool ConnectAndAccept(const Address& to) {
    client = Connection::Connect(loop, to, std::chrono::seconds(5));
    client->SetCallbacks(&client_callbacks);
    loop.RunUntil([&] { return accepted != nullptr; }, std::chrono::seconds(10));
    if (accepted != nullptr) accepted->SetCallbacks(&accepted_callbacks);
    return accepted != nullptr;
  }

  event::Loop& loop;
  std::unique_ptr<Listener> listener;
  testing::RecordingCallbacks client_callbacks;
  testing::RecordingCallbacks accepted_callbacks;
  std::unique_ptr<Connection> client;
  std::unique_ptr<Connection> accepted;
};

TEST(OriginalDestinationTest, ConnectionsAreAskedThroughTheirSocket) {
  event::Loop loop;
  AcceptingListener listener(loop, Parse("127.0.0.1:0"));
  ASSERT_NE(listener.listener, nullptr);
  ASSERT_TRUE(listener.ConnectAndAccept(listener.listener->address()));
  Connection* accepted = listener.accepted.get();
  EXPECT_GE(accepted->socket_fd(), 0);
  absl::StatusOr<std::optional<Address>> original = ReadOriginalDestination(*accepted);
  ASSERT_TRUE(original.ok()) << original.status();
  EXPECT_EQ(*original, std::nullopt);

  accepted->Close(CloseMode::kNoFlush);
  EXPECT_EQ(accepted->socket_fd(), -1);
  original = ReadOriginalDestination(*accepted);
  ASSERT_FALSE(original.ok());
  EXPECT_EQ(original.status().message(), "the connection is closed");
}

// ---------------------------------------------------------------------------------------------
// Redirected by iptables, as root in a network namespace of the test's own

// `iptables -t nat -A OUTPUT` (or ip6tables) sending local TCP for `port` to `to_port`.
std::string Redirect(const char* tool, uint16_t port, uint16_t to_port) {
  return testing::RunTool({tool, "-w", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport",
                           absl::StrCat(port), "-j", "REDIRECT", "--to-ports",
                           absl::StrCat(to_port)});
}

// A listener on `listen` and a `tool` rule that redirects connections to port kCapturedPort to
// it: one to `host`:kCapturedPort reads that as its original destination; one straight to the
// listener, tracked by conntrack all the same, reads as not redirected.
std::string CheckRedirect(const char* tool, const std::string& listen, bool dual_stack,
                          const std::string& host) {
  Fd listener = Listen(Parse(listen), dual_stack);
  const uint16_t port = PortOf(listener);
  if (std::string why = Redirect(tool, kCapturedPort, port); !why.empty()) return why;
  const Address captured = Parse(absl::StrCat(host, ":", kCapturedPort));
  {
    auto [client, accepted] = ConnectAndAccept(listener, captured);
    EXPECT_EQ(Redirected(accepted), captured);
  }
  auto [client, accepted] = ConnectAndAccept(listener, Parse(absl::StrCat(host, ":", port)));
  EXPECT_EQ(Redirected(accepted), std::nullopt);
  return "";
}

TEST(OriginalDestinationTest, RedirectedIPv4) {
  MESHLET_SKIP_UNLESS_EMPTY(InNewNetworkNamespace(
      [] { return CheckRedirect("iptables", "127.0.0.1:0", false, "127.0.0.1"); }));
}

TEST(OriginalDestinationTest, RedirectedIPv6) {
  MESHLET_SKIP_UNLESS_EMPTY(
      InNewNetworkNamespace([] { return CheckRedirect("ip6tables", "[::1]:0", false, "[::1]"); }));
}

// The local address is ::ffff:127.0.0.1: asked with the IPv4 option, answered in IPv4.
TEST(OriginalDestinationTest, RedirectedIPv4OnADualStackSocket) {
  MESHLET_SKIP_UNLESS_EMPTY(InNewNetworkNamespace(
      [] { return CheckRedirect("iptables", "[::]:0", /*dual_stack=*/true, "127.0.0.1"); }));
}

TEST(OriginalDestinationTest, RedirectedConnectionOfAListener) {
  MESHLET_SKIP_UNLESS_EMPTY(InNewNetworkNamespace([]() -> std::string {
    event::Loop loop;
    AcceptingListener listener(loop, Parse("127.0.0.1:0"));
    if (listener.listener == nullptr) return "";  // failed above
    const uint16_t port = listener.listener->address().port();
    if (std::string why = Redirect("iptables", kCapturedPort, port); !why.empty()) return why;
    EXPECT_TRUE(listener.ConnectAndAccept(Parse(absl::StrCat("127.0.0.1:", kCapturedPort))));
    if (listener.accepted == nullptr) return "";
    absl::StatusOr<std::optional<Address>> original = ReadOriginalDestination(*listener.accepted);
    EXPECT_TRUE(original.ok()) << original.status();
    if (original.ok()) {
      EXPECT_EQ(*original, Parse(absl::StrCat("127.0.0.1:", kCapturedPort)));
    }
    return "";
  }));
}

}  // namespace
}  // namespace meshlet::net

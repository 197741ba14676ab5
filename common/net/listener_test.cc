#include "common/net/listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/event/loop.h"
#include "common/net/test_util.h"
#include "gtest/gtest.h"

namespace meshlet::net {
namespace {

using std::chrono::seconds;
using testing::RecordingCallbacks;
using testing::TestSocketPath;

constexpr auto kWait = seconds(10);

Address Parse(absl::string_view text) {
  auto a = Address::Parse(text);
  CHECK_OK(a.status());
  return *a;
}

TEST(ListenerTest, PortZeroReportsBoundPort) {
  event::Loop loop;
  auto listener = Listener::Create(loop, Parse("127.0.0.1:0"), {}, [](auto) {});
  ASSERT_TRUE(listener.ok()) << listener.status();
  EXPECT_NE((*listener)->address().port(), 0);
  EXPECT_EQ((*listener)->address().ip(), "127.0.0.1");
  EXPECT_TRUE((*listener)->accepting());
}

ListenerOptions Shared() {
  ListenerOptions options;
  options.reuse_port = true;
  return options;
}

// A socket listening on a free loopback port, made by hand as another process would have it.
struct ForeignSocket {
  int fd = -1;
  Address address;
  sockaddr_in sockaddr{};
};
ForeignSocket ListenByHand(bool reuse_port, int backlog = 1) {
  ForeignSocket out;
  out.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK(out.fd >= 0);
  int one = 1;
  if (reuse_port) CHECK(::setsockopt(out.fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0);
  out.sockaddr.sin_family = AF_INET;
  out.sockaddr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(::bind(out.fd, reinterpret_cast<sockaddr*>(&out.sockaddr), sizeof(out.sockaddr)) == 0);
  CHECK(::listen(out.fd, backlog) == 0);
  socklen_t len = sizeof(out.sockaddr);
  CHECK(::getsockname(out.fd, reinterpret_cast<sockaddr*>(&out.sockaddr), &len) == 0);
  out.address = Parse(absl::StrCat("127.0.0.1:", ntohs(out.sockaddr.sin_port)));
  return out;
}

TEST(ListenerTest, ReusePortLetsTwoListenersShareAPort) {
  event::Loop loop;
  int accepted_a = 0, accepted_b = 0;
  std::vector<std::unique_ptr<Connection>> conns;
  auto a =
      Listener::Create(loop, Parse("127.0.0.1:0"), Shared(), [&](std::unique_ptr<Connection> c) {
        ++accepted_a;
        conns.push_back(std::move(c));
      });
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = Listener::Create(loop, (*a)->address(), Shared(), [&](std::unique_ptr<Connection> c) {
    ++accepted_b;
    conns.push_back(std::move(c));
  });
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*a)->address(), (*b)->address());

  // The kernel spreads connections by hash; with enough of them both listeners get some.
  constexpr int kClients = 32;
  std::vector<std::unique_ptr<Connection>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(Connection::Connect(loop, (*a)->address(), seconds(5)));
  }
  ASSERT_TRUE(loop.RunUntil([&] { return accepted_a + accepted_b == kClients; }, kWait));
  EXPECT_GT(accepted_a, 0);
  EXPECT_GT(accepted_b, 0);
  EXPECT_EQ((*a)->accepted_count() + (*b)->accepted_count(), static_cast<uint64_t>(kClients));
}

// A socket of another process in a SO_REUSEPORT group on the port: it stands in for a second
// sidecar given the same port by mistake, which must not silently get half the connections.
TEST(ListenerTest, ReusePortDoesNotJoinAnotherProcessOnTheAddress) {
  const ForeignSocket by_hand = ListenByHand(/*reuse_port=*/true);
  const int foreign = by_hand.fd;
  const Address& address = by_hand.address;

  event::Loop loop;
  auto refused = Listener::Create(loop, address, Shared(), [](auto) {});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(refused.status().message().find("another process"), absl::string_view::npos)
      << refused.status();

  // Once the other holder is gone the address is ours, and our own listeners share it.
  ::close(foreign);
  auto first = Listener::Create(loop, address, Shared(), [](auto) {});
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = Listener::Create(loop, address, Shared(), [](auto) {});
  ASSERT_TRUE(second.ok()) << second.status();
  // When every listener of ours has closed, a newcomer proves the address free again.
  first->reset();
  second->reset();
  auto again = Listener::Create(loop, address, Shared(), [](auto) {});
  EXPECT_TRUE(again.ok()) << again.status();
}

// The hand-over (sidecar/server/hand_over.h): a socket another process listened on, with a
// connection already queued on it, is adopted; the listener created for its address takes it (the
// queued connection is accepted, not lost), and further listeners join its SO_REUSEPORT group
// instead of refusing it as another process's.
TEST(ListenerTest, AdoptedSocketsAreTakenWithTheirQueuedConnections) {
  ForeignSocket by_hand = ListenByHand(/*reuse_port=*/true, /*backlog=*/8);
  const int foreign = by_hand.fd;
  const Address address = by_hand.address;
  // Queued before anyone here listens: only the adopted socket can accept it.
  int queued = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(
      ::connect(queued, reinterpret_cast<sockaddr*>(&by_hand.sockaddr), sizeof(by_hand.sockaddr)),
      0);

  AdoptListeningSockets({ListeningSocket{foreign, address, /*reuse_port=*/true}});
  EXPECT_EQ(InheritedSocketCount(address, true), 1u);
  EXPECT_EQ(InheritedSocketCount(address, false), 0u);
  event::Loop loop;
  int accepted = 0;
  std::vector<std::unique_ptr<Connection>> conns;
  auto taken = Listener::Create(loop, address, Shared(), [&](std::unique_ptr<Connection> c) {
    ++accepted;
    conns.push_back(std::move(c));
  });
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_EQ(InheritedSocketCount(address, true), 0u);
  ASSERT_TRUE(loop.RunUntil([&] { return accepted == 1; }, kWait));
  // The group is this process's now: another listener joins it.
  auto joined = Listener::Create(loop, address, Shared(), [](auto) {});
  ASSERT_TRUE(joined.ok()) << joined.status();
  // Both are this process's listening sockets, for the next hand-over.
  absl::StatusOr<std::vector<ListeningSocket>> mine = DuplicateListeningSockets();
  ASSERT_TRUE(mine.ok()) << mine.status();
  int on_address = 0;
  for (const ListeningSocket& s : *mine) {
    on_address += s.address == address && s.reuse_port;
    ::close(s.fd);
  }
  EXPECT_EQ(on_address, 2);
  (*taken)->StopAccepting();
  mine = DuplicateListeningSockets();
  ASSERT_TRUE(mine.ok());
  on_address = 0;
  for (const ListeningSocket& s : *mine) {
    on_address += s.address == address;
    ::close(s.fd);
  }
  EXPECT_EQ(on_address, 1);
  EXPECT_EQ(CloseInheritedSockets(), 0u);
  ::close(queued);
}

TEST(ListenerTest, AdoptedSocketsNobodyTookAreClosed) {
  const ForeignSocket by_hand = ListenByHand(/*reuse_port=*/false);
  const Address address = by_hand.address;
  AdoptListeningSockets({ListeningSocket{by_hand.fd, address, /*reuse_port=*/false}});
  EXPECT_EQ(CloseInheritedSockets(), 1u);
  // Closed: the port is free again.
  event::Loop loop;
  ListenerOptions exclusive;
  auto bound = Listener::Create(loop, address, exclusive, [](auto) {});
  EXPECT_TRUE(bound.ok()) << bound.status();
}

TEST(ListenerTest, WithoutReusePortSecondBindFails) {
  event::Loop loop;
  ListenerOptions exclusive;
  exclusive.reuse_port = false;
  auto a = Listener::Create(loop, Parse("127.0.0.1:0"), exclusive, [](auto) {});
  ASSERT_TRUE(a.ok());
  auto b = Listener::Create(loop, (*a)->address(), exclusive, [](auto) {});
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(b.status().message().find("bind 127.0.0.1:"), absl::string_view::npos) << b.status();
}

TEST(ListenerTest, BindToForeignAddressFails) {
  event::Loop loop;
  // TEST-NET-1 is never assigned to a local interface: bind fails without any traffic.
  auto l = Listener::Create(loop, Parse("192.0.2.1:0"), {}, [](auto) {});
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), absl::StatusCode::kInvalidArgument) << l.status();
}

TEST(ListenerTest, StopAcceptingRefusesNewConnections) {
  event::Loop loop;
  std::vector<std::unique_ptr<Connection>> accepted;
  ListenerOptions exclusive;
  exclusive.reuse_port = false;
  auto l =
      Listener::Create(loop, Parse("127.0.0.1:0"), exclusive,
                       [&](std::unique_ptr<Connection> c) { accepted.push_back(std::move(c)); });
  ASSERT_TRUE(l.ok());
  Address address = (*l)->address();
  auto first = Connection::Connect(loop, address, seconds(5));
  RecordingCallbacks first_cb;
  first->SetCallbacks(&first_cb);
  ASSERT_TRUE(loop.RunUntil([&] { return accepted.size() == 1 && first_cb.connected; }, kWait));

  (*l)->StopAccepting();
  EXPECT_FALSE((*l)->accepting());
  (*l)->StopAccepting();  // idempotent
  auto second = Connection::Connect(loop, address, seconds(5));
  RecordingCallbacks second_cb;
  second->SetCallbacks(&second_cb);
  ASSERT_TRUE(loop.RunUntil([&] { return second_cb.closes > 0; }, kWait));
  EXPECT_EQ(second_cb.close_reason, CloseReason::kConnectFailed);
  // The existing connection is untouched.
  first->Write("still here");
  RecordingCallbacks server_cb;
  accepted[0]->SetCallbacks(&server_cb);
  ASSERT_TRUE(loop.RunUntil([&] { return server_cb.received == "still here"; }, kWait));
}

TEST(ListenerTest, UnixSocketPathIsRemovedOnStop) {
  event::Loop loop;
  std::string path = TestSocketPath("listener.sock");
  unlink(path.c_str());
  auto l = Listener::Create(loop, Parse("unix:" + path), {}, [](auto) {});
  ASSERT_TRUE(l.ok()) << l.status();
  struct stat st;
  EXPECT_EQ(stat(path.c_str(), &st), 0);
  auto again = Listener::Create(loop, Parse("unix:" + path), {}, [](auto) {});
  EXPECT_FALSE(again.ok());
  l->reset();
  EXPECT_NE(stat(path.c_str(), &st), 0);
}

TEST(ListenerTest, DestroyFromAcceptCallback) {
  event::Loop loop;
  std::unique_ptr<Listener> listener;
  std::unique_ptr<Connection> accepted;
  auto created =
      Listener::Create(loop, Parse("127.0.0.1:0"), {}, [&](std::unique_ptr<Connection> c) {
        accepted = std::move(c);
        listener.reset();
      });
  ASSERT_TRUE(created.ok());
  listener = std::move(*created);
  auto client = Connection::Connect(loop, listener->address(), seconds(5));
  ASSERT_TRUE(loop.RunUntil([&] { return listener == nullptr; }, kWait));
  EXPECT_NE(accepted, nullptr);
}

class CountingTransport final : public Transport {
 public:
  explicit CountingTransport(int* started) : started_(started) {}
  absl::Status Start(const Address&, Buffer&) override {
    ++*started_;
    return absl::OkStatus();
  }
  absl::Status OnReceived(Buffer& wire_in, Buffer& app_in, Buffer&) override {
    app_in.Move(wire_in);
    return absl::OkStatus();
  }
  absl::Status Send(Buffer& app_out, Buffer& out) override {
    out.Move(app_out);
    return absl::OkStatus();
  }
  void Shutdown(Buffer&) override {}
  bool HandshakeComplete() const override { return true; }
  const PeerInfo& peer() const override { return peer_; }

 private:
  int* started_;
  PeerInfo peer_;
};

TEST(ListenerTest, TransportFactoryMakesOnePerConnection) {
  event::Loop loop;
  int started = 0;
  ListenerOptions options;
  options.transport_factory = [&started] { return std::make_unique<CountingTransport>(&started); };
  std::vector<std::unique_ptr<Connection>> accepted;
  auto l =
      Listener::Create(loop, Parse("127.0.0.1:0"), std::move(options),
                       [&](std::unique_ptr<Connection> c) { accepted.push_back(std::move(c)); });
  ASSERT_TRUE(l.ok());
  auto c1 = Connection::Connect(loop, (*l)->address(), seconds(5));
  auto c2 = Connection::Connect(loop, (*l)->address(), seconds(5));
  ASSERT_TRUE(loop.RunUntil([&] { return accepted.size() == 2; }, kWait));
  EXPECT_EQ(started, 2);
}

}  // namespace
}  // namespace meshlet::net

// The hand-over (hand_over.h): the unix socket, its framing (a 4-byte big-endian length, then the
// message of xds/hand_over.proto), descriptors passed as SCM_RIGHTS on one-byte writes, and the
// two sides of the exchange.

#include "sidecar/server/hand_over.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/base/sync.h"
#include "common/base/thread_name.h"
#include "common/base/version.h"
#include "xds/hand_over.pb.h"

namespace meshlet::sidecar::server {
namespace {

using Deadline = std::chrono::steady_clock::time_point;

// An offer: a configuration of a large mesh fits; a peer cannot make this process allocate more.
constexpr uint32_t kMaxOfferBytes = 256u << 20;
// Every other message (a request, Ready, Done) is a few bytes: a peer claiming more is refused
// before anything is allocated for it.
constexpr uint32_t kMaxSmallMessageBytes = 64u << 10;
// Listening sockets an offer may hand over (listeners times workers; far more than any sidecar
// runs, far less than a descriptor limit).
constexpr int kMaxHandedSockets = 8192;
// Descriptors per SCM_RIGHTS message (the kernel takes at most 253).
constexpr size_t kDescriptorsPerWrite = 200;
// The exchange before the offer, and the answer to Ready.
constexpr Duration kExchangeTimeout = std::chrono::seconds(10);
// How long a would-be successor refused while another takes over has to send its request (it
// sends it as soon as it connected); the exchange under way waits meanwhile.
constexpr Duration kRefusalTimeout = std::chrono::seconds(1);
// How long HandOverServer::Start waits for a connection to the path to see whether a process
// serves it.
constexpr Duration kProbeTimeout = std::chrono::seconds(1);
// How long the running sidecar waits for a successor to become ready.
constexpr Duration kMaxReadyWait = std::chrono::minutes(10);
// How often the server's thread looks whether it is being stopped.
constexpr Duration kStopPoll = std::chrono::milliseconds(100);

absl::Status ErrnoError(absl::string_view what, int err) {
  return absl::UnavailableError(absl::StrCat(what, ": ", std::strerror(err)));
}

Deadline After(Duration d) { return std::chrono::steady_clock::now() + d; }

// Waits until `fd` has `events`, the deadline passes (DeadlineExceeded), or `stop_fd` (if any)
// becomes readable (Cancelled).
absl::Status WaitFor(int fd, short events, Deadline deadline, int stop_fd) {
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return absl::DeadlineExceededError("the peer did not answer in time");
    pollfd fds[2] = {{fd, events, 0}, {stop_fd, POLLIN, 0}};
    const int n = poll(fds, stop_fd >= 0 ? 2 : 1, static_cast<int>(left.count()));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("poll", errno);
    }
    if (stop_fd >= 0 && (fds[1].revents & POLLIN) != 0) {
      return absl::CancelledError("stopping");
    }
    if (fds[0].revents != 0) return absl::OkStatus();
  }
}

absl::Status WriteAll(int fd, const std::string& data, Deadline deadline, int stop_fd) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      RETURN_IF_ERROR(WaitFor(fd, POLLOUT, deadline, stop_fd));
      continue;
    }
    return ErrnoError("send", errno);
  }
  return absl::OkStatus();
}

absl::Status ReadExact(int fd, char* data, size_t size, Deadline deadline, int stop_fd) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = recv(fd, data + done, size - done, 0);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n == 0) return absl::UnavailableError("the peer closed the connection");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      RETURN_IF_ERROR(WaitFor(fd, POLLIN, deadline, stop_fd));
      continue;
    }
    return ErrnoError("recv", errno);
  }
  return absl::OkStatus();
}

// Writes one message; a peer that does not read holds it up until the deadline, or until
// `stop_fd` (if any) is readable.
absl::Status SendMessage(int fd, const google::protobuf::Message& message, Deadline deadline,
                         int stop_fd = -1) {
  const std::string body = message.SerializeAsString();
  const uint32_t size = static_cast<uint32_t>(body.size());
  std::string frame = {static_cast<char>(size >> 24), static_cast<char>(size >> 16),
                       static_cast<char>(size >> 8), static_cast<char>(size)};
  frame += body;
  return WriteAll(fd, frame, deadline, stop_fd);
}

// Reads one message of at most `max_bytes`.
absl::Status ReceiveMessage(int fd, google::protobuf::Message* message, uint32_t max_bytes,
                            Deadline deadline, int stop_fd = -1) {
  unsigned char header[4];
  RETURN_IF_ERROR(ReadExact(fd, reinterpret_cast<char*>(header), 4, deadline, stop_fd));
  const uint32_t size = (uint32_t{header[0]} << 24) | (uint32_t{header[1]} << 16) |
                        (uint32_t{header[2]} << 8) | uint32_t{header[3]};
  if (size > max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("a ", message->GetDescriptor()->name(), " of ",
                                                   size, " bytes (at most ", max_bytes, ")"));
  }
  std::string body(size, '\0');
  RETURN_IF_ERROR(ReadExact(fd, body.data(), size, deadline, stop_fd));
  if (!message->ParseFromString(body)) {
    return absl::InvalidArgumentError(
        absl::StrCat("a ", message->GetDescriptor()->name(), " that does not parse"));
  }
  return absl::OkStatus();
}

// One byte carrying `fds` (at most kDescriptorsPerWrite).
absl::Status SendDescriptors(int fd, const int* fds, size_t count, Deadline deadline, int stop_fd) {
  char byte = 'S';
  iovec iov = {&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kDescriptorsPerWrite)] = {};
  msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * count);
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int) * count);
  std::memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * count);
  while (true) {
    const ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n == 1) return absl::OkStatus();
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      RETURN_IF_ERROR(WaitFor(fd, POLLOUT, deadline, stop_fd));
      continue;
    }
    return ErrnoError("sendmsg", errno);
  }
}

// The descriptors of one SendDescriptors, appended to `out`.
absl::Status ReceiveDescriptors(int fd, Deadline deadline, std::vector<int>& out) {
  char byte = 0;
  iovec iov = {&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kDescriptorsPerWrite)] = {};
  msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  while (true) {
    n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    if (n >= 0) break;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      RETURN_IF_ERROR(WaitFor(fd, POLLIN, deadline, -1));
      continue;
    }
    return ErrnoError("recvmsg", errno);
  }
  for (cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg != nullptr; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const size_t first = out.size();
    out.resize(first + count);
    std::memcpy(out.data() + first, CMSG_DATA(cmsg), sizeof(int) * count);
  }
  if (n == 0) return absl::UnavailableError("the peer closed the connection");
  if ((msg.msg_flags & MSG_CTRUNC) != 0) {
    return absl::ResourceExhaustedError("descriptors were cut off (the open-file limit?)");
  }
  return absl::OkStatus();
}

// The peer runs as this process's user, or as root. A sidecar running as root takes nothing from,
// and hands its key and sockets to, no process of another user.
absl::Status CheckPeer(int fd) {
  ucred peer = {};
  socklen_t len = sizeof(peer);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) {
    return ErrnoError("SO_PEERCRED", errno);
  }
  const uid_t self = geteuid();
  if (peer.uid != self && peer.uid != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("pid ", peer.pid, " runs as uid ", peer.uid, ", this sidecar as uid ", self));
  }
  return absl::OkStatus();
}

// `fd` is what the offer says it is: a TCP socket listening on `address`, in a SO_REUSEPORT group
// exactly when `reuse_port`. Anything else (a descriptor of another kind, a socket not yet bound,
// bound elsewhere or not listening) would have this process serve another port than it says, or
// bind one at random.
absl::Status CheckHandedSocket(int fd, const net::Address& address, bool reuse_port) {
  auto option = [fd](int level, int name) -> absl::StatusOr<int> {
    int value = 0;
    socklen_t len = sizeof(value);
    if (getsockopt(fd, level, name, &value, &len) != 0) {
      return absl::InvalidArgumentError(
          errno == ENOTSOCK ? "not a socket" : absl::StrCat("getsockopt: ", std::strerror(errno)));
    }
    return value;
  };
  ASSIGN_OR_RETURN(int type, option(SOL_SOCKET, SO_TYPE));
  ASSIGN_OR_RETURN(int protocol, option(SOL_SOCKET, SO_PROTOCOL));
  if (type != SOCK_STREAM || protocol != IPPROTO_TCP) {
    return absl::InvalidArgumentError("not a TCP socket");
  }
  ASSIGN_OR_RETURN(int listening, option(SOL_SOCKET, SO_ACCEPTCONN));
  if (listening == 0) return absl::InvalidArgumentError("not listening");
  sockaddr_storage bound = {};
  socklen_t len = sizeof(bound);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) != 0) {
    return ErrnoError("getsockname", errno);
  }
  absl::StatusOr<net::Address> actual =
      net::Address::FromSockaddr(reinterpret_cast<sockaddr*>(&bound), len);
  if (!actual.ok()) return actual.status();
  if (!(*actual == address)) {
    return absl::InvalidArgumentError(absl::StrCat("bound to ", actual->ToString()));
  }
  ASSIGN_OR_RETURN(int in_group, option(SOL_SOCKET, SO_REUSEPORT));
  if ((in_group != 0) != reuse_port) {
    return absl::InvalidArgumentError(reuse_port ? "not in a SO_REUSEPORT group"
                                                 : "in a SO_REUSEPORT group");
  }
  return absl::OkStatus();
}

absl::StatusOr<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("hand-over socket \"", path, "\": a path of 1 to ",
                     sizeof(address.sun_path) - 1, " bytes is needed"));
  }
  std::memcpy(address.sun_path, path.data(), path.size());
  return address;
}

// Connects to `path`: the descriptor, -1 when nobody serves it (no file, or nobody listening),
// or an error. A connect to a unix socket waits while the listener's queue of connections is
// full, here until `deadline` at most: then DeadlineExceeded (a process listens there but does
// not accept).
absl::StatusOr<int> ConnectTo(const std::string& path, Deadline deadline) {
  ASSIGN_OR_RETURN(sockaddr_un address, UnixAddress(path));
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError("socket", errno);
  while (true) {
    // The wait of a blocking connect is bounded by the send timeout (0 would mean none).
    const int64_t left =
        std::max<int64_t>(1000, std::chrono::duration_cast<std::chrono::microseconds>(
                                    deadline - std::chrono::steady_clock::now())
                                    .count());
    timeval timeout = {.tv_sec = static_cast<time_t>(left / 1000000),
                       .tv_usec = static_cast<suseconds_t>(left % 1000000)};
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout)) != 0) {
      const int err = errno;
      close(fd);
      return ErrnoError("SO_SNDTIMEO", err);
    }
    if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) break;
    const int err = errno;
    if (err == EINTR && std::chrono::steady_clock::now() < deadline) continue;
    close(fd);
    if (err == ENOENT || err == ECONNREFUSED) return -1;
    if (err == EAGAIN || err == EINTR) {
      return absl::DeadlineExceededError(
          absl::StrCat("hand-over socket \"", path,
                       "\": the process serving it accepts no connection (its queue of "
                       "connections stayed full until the timeout)"));
    }
    return ErrnoError(absl::StrCat("connect to \"", path, "\""), err);
  }
  // Later writes are non-blocking, with deadlines of their own.
  const timeval none = {};
  (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof(none));
  return fd;
}

}  // namespace

void CloseSockets(std::vector<net::ListeningSocket>& sockets) {
  for (const net::ListeningSocket& s : sockets) close(s.fd);
  sockets.clear();
}

HandedOver& HandedOver::operator=(HandedOver&& other) {
  if (this != &other) {
    CloseSockets(sockets);
    pid = other.pid;
    release = std::move(other.release);
    sockets = std::move(other.sockets);
    other.sockets.clear();
    configuration = std::move(other.configuration);
    certificate = std::move(other.certificate);
  }
  return *this;
}

HandedOver::~HandedOver() { CloseSockets(sockets); }

// --- HandOverClient ---

absl::StatusOr<std::unique_ptr<HandOverClient>> HandOverClient::Connect(const std::string& path,
                                                                        Duration timeout) {
  const Deadline deadline = After(timeout);
  ASSIGN_OR_RETURN(int fd, ConnectTo(path, deadline));
  if (fd < 0) return std::unique_ptr<HandOverClient>();
  std::unique_ptr<HandOverClient> client(new HandOverClient(fd));
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return ErrnoError("fcntl", errno);
  auto fail = [&](const absl::Status& status) {
    return absl::Status(
        status.code(),
        absl::StrCat(
            "hand-over from the sidecar at \"", path, "\"",
            client->handed_.pid != 0 ? absl::StrCat(" (pid ", client->handed_.pid, ")") : "", ": ",
            status.message()));
  };
  if (absl::Status peer = CheckPeer(fd); !peer.ok()) return fail(peer);
  xds::HandOverRequest request;
  request.set_release(kMeshletVersion);
  request.set_pid(getpid());
  if (absl::Status sent = SendMessage(fd, request, deadline); !sent.ok()) return fail(sent);
  xds::HandOverOffer offer;
  if (absl::Status got = ReceiveMessage(fd, &offer, kMaxOfferBytes, deadline); !got.ok()) {
    return fail(got);
  }
  HandedOver& handed = client->handed_;
  handed.pid = offer.pid();
  handed.release = offer.release();
  if (!offer.refused().empty()) {
    return fail(absl::FailedPreconditionError(absl::StrCat("refused: ", offer.refused())));
  }
  if (offer.sockets_size() > kMaxHandedSockets) {
    return fail(absl::InvalidArgumentError(absl::StrCat(
        "an offer of ", offer.sockets_size(), " sockets (at most ", kMaxHandedSockets, ")")));
  }
  std::vector<int> fds;
  while (fds.size() < static_cast<size_t>(offer.sockets_size())) {
    absl::Status got = ReceiveDescriptors(fd, deadline, fds);
    if (!got.ok()) {
      for (int d : fds) close(d);
      return fail(got);
    }
  }
  if (fds.size() != static_cast<size_t>(offer.sockets_size())) {
    for (int d : fds) close(d);
    return fail(absl::InvalidArgumentError(
        absl::StrCat(fds.size(), " descriptors for ", offer.sockets_size(), " sockets")));
  }
  absl::Status bad;
  for (int i = 0; i < offer.sockets_size(); ++i) {
    const xds::HandedSocket& socket = offer.sockets(i);
    absl::StatusOr<net::Address> address = net::Address::Parse(socket.address());
    absl::Status checked =
        address.ok() ? CheckHandedSocket(fds[i], *address, socket.reuse_port()) : address.status();
    if (!checked.ok() && bad.ok()) {
      bad = absl::InvalidArgumentError(absl::StrCat("socket ", i + 1, " of ", offer.sockets_size(),
                                                    " (\"", socket.address(),
                                                    "\"): ", checked.message()));
    }
    handed.sockets.push_back(
        {fds[i], address.ok() ? *address : net::Address(), socket.reuse_port()});
  }
  if (!bad.ok()) return fail(bad);  // the destructor closes the descriptors
  handed.configuration = std::move(*offer.mutable_configuration());
  if (offer.has_certificate()) {
    const xds::HandedCertificate& c = offer.certificate();
    handed.certificate = identity::WorkloadCertificate{
        .spiffe_id = c.spiffe_id(),
        .certificate_chain_pem = c.certificate_chain_pem(),
        .private_key_pem = c.private_key_pem(),
        .trust_bundle_pem = c.trust_bundle_pem(),
        .serial_hex = c.serial_hex(),
        .not_after = absl::FromUnixSeconds(c.not_after_unix_seconds())};
  }
  return client;
}

HandOverClient::~HandOverClient() { close(fd_); }

absl::StatusOr<Drained> HandOverClient::Finish(Duration timeout) {
  const Deadline deadline = After(timeout);
  RETURN_IF_ERROR(SendMessage(fd_, xds::HandOverReady(), deadline));
  xds::HandOverDone done;
  RETURN_IF_ERROR(ReceiveMessage(fd_, &done, kMaxSmallMessageBytes, deadline));
  return Drained{.connections = done.open_connections(), .requests = done.requests_in_flight()};
}

// --- HandOverServer ---

// What the server's thread and the main loop share; `alive` is read and written on the main loop
// only.
struct HandOverServer::Shared {
  bool alive = true;
  std::atomic<bool> stopping{false};
  Callbacks callbacks;
};

absl::StatusOr<std::unique_ptr<HandOverServer>> HandOverServer::Start(event::Loop& loop,
                                                                      const std::string& path,
                                                                      Callbacks callbacks) {
  ASSIGN_OR_RETURN(sockaddr_un address, UnixAddress(path));
  // A live sidecar there is an error; a socket a process that is gone left is removed; anything
  // else is the operator's and stays.
  struct stat existing = {};
  if (lstat(path.c_str(), &existing) == 0 && !S_ISSOCK(existing.st_mode)) {
    return absl::AlreadyExistsError(
        absl::StrCat("hand-over socket \"", path, "\": a file that is not a socket is there"));
  }
  absl::StatusOr<int> probe = ConnectTo(path, After(kProbeTimeout));
  if (absl::IsDeadlineExceeded(probe.status())) {
    return absl::AlreadyExistsError(absl::StrCat(
        "hand-over socket \"", path,
        "\": another process serves it (it accepts no connection: its queue is full)"));
  }
  if (!probe.ok()) return probe.status();
  if (*probe >= 0) {
    ucred peer = {};
    socklen_t len = sizeof(peer);
    getsockopt(*probe, SOL_SOCKET, SO_PEERCRED, &peer, &len);
    close(*probe);
    return absl::AlreadyExistsError(absl::StrCat(
        "hand-over socket \"", path, "\": another process (pid ", peer.pid, ") serves it"));
  }
  unlink(path.c_str());
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return ErrnoError("socket", errno);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    // Another process bound it meanwhile: the file is its own, not this one's to remove.
    const int err = errno;
    close(fd);
    return ErrnoError(absl::StrCat("hand-over socket \"", path, "\""), err);
  }
  // The file this socket made: only it is removed later (the path may name a successor's by then).
  struct stat made = {};
  if (lstat(path.c_str(), &made) != 0 || chmod(path.c_str(), 0600) != 0 || listen(fd, 4) != 0) {
    const int err = errno;
    close(fd);
    unlink(path.c_str());
    return ErrnoError(absl::StrCat("hand-over socket \"", path, "\""), err);
  }
  return std::unique_ptr<HandOverServer>(new HandOverServer(
      loop, path, SocketFile{made.st_dev, made.st_ino}, fd, std::move(callbacks)));
}

HandOverServer::HandOverServer(event::Loop& loop, std::string path, SocketFile file, int listen_fd,
                               Callbacks callbacks)
    : loop_(loop),
      path_(std::move(path)),
      file_(file),
      listen_fd_(listen_fd),
      stop_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      shared_(std::make_shared<Shared>()) {
  CHECK(stop_fd_ >= 0) << "eventfd: " << std::strerror(errno);
  shared_->callbacks = std::move(callbacks);
  thread_ = std::thread([this] {
    SetThreadName("hand-over");
    ThreadMain();
  });
}

HandOverServer::~HandOverServer() {
  shared_->alive = false;
  shared_->stopping = true;
  const uint64_t one = 1;
  (void)!write(stop_fd_, &one, sizeof(one));
  thread_.join();
  close(stop_fd_);
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    // The path is the successor's once it took over; and whatever the path names now that is not
    // the file this server made (a successor that took over while this one was stopping) stays.
    struct stat now = {};
    if (!handed_over_ && lstat(path_.c_str(), &now) == 0 && now.st_dev == file_.device &&
        now.st_ino == file_.inode) {
      unlink(path_.c_str());
    }
  }
}

template <typename F>
auto HandOverServer::RunOnLoop(F f) -> std::optional<decltype(f(std::declval<Callbacks&>()))> {
  using Result = decltype(f(std::declval<Callbacks&>()));
  // The call and its result live on the heap, shared with the loop: when this thread stops
  // waiting, the result the loop makes later (or made just before) is released with the call.
  struct Call {
    std::optional<Result> result;
    Notification done;
  };
  auto call = std::make_shared<Call>();
  std::shared_ptr<Shared> shared = shared_;
  // The destructor (main loop) sets `alive` false before `stopping`, so a call the loop runs
  // later is skipped.
  loop_.Post([shared, call, f = std::move(f)]() mutable {
    if (shared->alive) call->result.emplace(f(shared->callbacks));
    call->done.Notify();
  });
  while (!call->done.WaitForNotificationWithTimeout(kStopPoll)) {
    if (shared_->stopping) return std::nullopt;
  }
  if (shared_->stopping || !call->result.has_value()) return std::nullopt;
  return std::move(call->result);
}

void HandOverServer::Failed(std::string why) {
  LOG(WARN) << why;
  std::shared_ptr<Shared> shared = shared_;
  loop_.Post([shared, why = std::move(why)] {
    if (shared->alive && shared->callbacks.failed) shared->callbacks.failed(why);
  });
}

void HandOverServer::ThreadMain() {
  while (!shared_->stopping) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      LOG(ERROR) << "hand-over socket \"" << path_ << "\": poll: " << std::strerror(errno);
      return;
    }
    if ((fds[1].revents & POLLIN) != 0) return;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      if (err == EINTR || err == EAGAIN || err == ECONNABORTED) continue;
      // Out of descriptors (EMFILE, ENFILE) or memory: the connection stays queued and the socket
      // readable, so it is tried again after a pause rather than at once, in a loop.
      LOG_EVERY_N_SEC(WARN, 10) << "hand-over socket \"" << path_
                                << "\": accept: " << std::strerror(err);
      pollfd stop = {stop_fd_, POLLIN, 0};
      (void)poll(&stop, 1,
                 static_cast<int>(
                     std::chrono::duration_cast<std::chrono::milliseconds>(kStopPoll).count()));
      continue;
    }
    const bool took_over = Serve(fd);
    close(fd);
    if (took_over) return;
  }
}

bool HandOverServer::Serve(int fd) {
  if (absl::Status peer = CheckPeer(fd); !peer.ok()) {
    Failed(absl::StrCat("hand-over socket \"", path_, "\": refused ", peer.message()));
    return false;
  }
  xds::HandOverRequest request;
  if (absl::Status got =
          ReceiveMessage(fd, &request, kMaxSmallMessageBytes, After(kExchangeTimeout), stop_fd_);
      !got.ok()) {
    if (!absl::IsCancelled(got)) Failed(absl::StrCat("hand-over: no request: ", got.message()));
    return false;
  }
  const std::string who =
      absl::StrCat("pid ", request.pid(), " (meshlet-sidecar ", request.release(), ")");
  LOG(INFO) << "hand-over: " << who << " asks to take over";
  // Owns the duplicated sockets: whichever way this returns, they are closed.
  std::optional<absl::StatusOr<HandedOver>> offered =
      RunOnLoop([](Callbacks& callbacks) { return callbacks.offer(); });
  if (!offered.has_value()) return false;
  absl::StatusOr<HandedOver>& handed = *offered;
  xds::HandOverOffer offer;
  offer.set_release(handed.ok() ? handed->release : kMeshletVersion);
  offer.set_pid(handed.ok() ? handed->pid : getpid());
  if (!handed.ok()) {
    LOG(INFO) << "hand-over to " << who << " refused: " << handed.status().message();
    offer.set_refused(std::string(handed.status().message()));
    (void)SendMessage(fd, offer, After(kExchangeTimeout), stop_fd_);
    return false;
  }
  std::vector<int> fds;
  for (const net::ListeningSocket& s : handed->sockets) {
    xds::HandedSocket* socket = offer.add_sockets();
    socket->set_address(s.address.ToString());
    socket->set_reuse_port(s.reuse_port);
    fds.push_back(s.fd);
  }
  offer.set_configuration(std::move(handed->configuration));
  if (handed->certificate.has_value()) {
    const identity::WorkloadCertificate& c = *handed->certificate;
    xds::HandedCertificate* out = offer.mutable_certificate();
    out->set_spiffe_id(c.spiffe_id);
    out->set_certificate_chain_pem(c.certificate_chain_pem);
    out->set_private_key_pem(c.private_key_pem);
    out->set_trust_bundle_pem(c.trust_bundle_pem);
    out->set_serial_hex(c.serial_hex);
    out->set_not_after_unix_seconds(absl::ToUnixSeconds(c.not_after));
  }
  const Deadline deadline = After(kExchangeTimeout);
  // Stopping does not wait for a successor that does not read (a large configuration).
  absl::Status sent = SendMessage(fd, offer, deadline, stop_fd_);
  for (size_t i = 0; sent.ok() && i < fds.size(); i += kDescriptorsPerWrite) {
    sent = SendDescriptors(fd, fds.data() + i, std::min(kDescriptorsPerWrite, fds.size() - i),
                           deadline, stop_fd_);
  }
  // The successor holds its own copies now (or failed to get them): these were duplicates.
  CloseSockets(handed->sockets);
  if (!sent.ok()) {
    if (!absl::IsCancelled(sent)) {
      Failed(absl::StrCat("hand-over to ", who, " failed: ", sent.message()));
    }
    return false;
  }
  LOG(INFO) << "hand-over: sent " << fds.size() << " listening sockets"
            << (offer.configuration().empty() ? "" : ", the configuration")
            << (offer.has_certificate() ? ", the workload certificate" : "") << " to " << who
            << "; serving until it is ready";
  if (absl::Status got = WaitForReady(fd, who); !got.ok()) {
    if (!absl::IsCancelled(got)) {
      Failed(absl::StrCat("hand-over to ", who, " abandoned, still serving: ", got.message()));
    }
    return false;
  }
  std::optional<Drained> open =
      RunOnLoop([](Callbacks& callbacks) { return callbacks.handed_over(); });
  if (!open.has_value()) return false;
  handed_over_ = true;
  // The successor serves the path from now on: whoever queued on it meanwhile is told so rather
  // than reset when the socket closes, and the socket closes before the successor hears that
  // this one stopped (it then makes its own at the path).
  RefuseQueued(absl::StrCat("handed over to another process already: ", who));
  close(listen_fd_);
  listen_fd_ = -1;
  xds::HandOverDone done;
  done.set_open_connections(open->connections);
  done.set_requests_in_flight(open->requests);
  if (absl::Status told = SendMessage(fd, done, After(kExchangeTimeout)); !told.ok()) {
    LOG(WARN) << "hand-over to " << who << ": " << told.message();
  }
  LOG(INFO) << "hand-over: " << who << " took over; draining " << open->connections
            << " connections (" << open->requests << " requests in flight)";
  return true;
}

absl::Status HandOverServer::WaitForReady(int fd, const std::string& who) {
  const Deadline deadline = After(kMaxReadyWait);
  const std::string busy = absl::StrCat("handing over to another process: ", who);
  // Out of descriptors, the socket stays readable with nobody to accept: it is looked at again
  // after a pause rather than at once, in a loop.
  Deadline listen_paused_until{};
  while (true) {
    const auto now = std::chrono::steady_clock::now();
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
    if (left.count() <= 0) return absl::DeadlineExceededError("the peer did not answer in time");
    const bool listen_paused = now < listen_paused_until;
    int64_t timeout = left.count();
    if (listen_paused) {
      timeout = std::min<int64_t>(
          timeout,
          std::chrono::duration_cast<std::chrono::milliseconds>(listen_paused_until - now).count() +
              1);
    }
    // A negative descriptor is left out of the poll.
    pollfd fds[3] = {
        {fd, POLLIN, 0}, {listen_paused ? -1 : listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (poll(fds, 3, static_cast<int>(timeout)) < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("poll", errno);
    }
    if ((fds[2].revents & POLLIN) != 0) return absl::CancelledError("stopping");
    if (fds[0].revents != 0) {
      xds::HandOverReady ready;
      return ReceiveMessage(fd, &ready, kMaxSmallMessageBytes, deadline, stop_fd_);
    }
    if ((fds[1].revents & POLLIN) != 0 && !RefuseQueued(busy)) {
      listen_paused_until = After(kStopPoll);
    }
  }
}

bool HandOverServer::RefuseQueued(const std::string& why) {
  while (!shared_->stopping) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      if (err == EINTR || err == ECONNABORTED) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) return true;
      LOG_EVERY_N_SEC(WARN, 10) << "hand-over socket \"" << path_
                                << "\": accept: " << std::strerror(err);
      return false;
    }
    Refuse(fd, why);
    close(fd);
  }
  return true;
}

void HandOverServer::Refuse(int fd, const std::string& why) {
  if (absl::Status peer = CheckPeer(fd); !peer.ok()) {
    Failed(absl::StrCat("hand-over socket \"", path_, "\": refused ", peer.message()));
    return;
  }
  // Its request first: closing with it unread would reset the connection before the refusal is
  // read.
  const Deadline deadline = After(kRefusalTimeout);
  xds::HandOverRequest request;
  if (absl::Status got = ReceiveMessage(fd, &request, kMaxSmallMessageBytes, deadline, stop_fd_);
      !got.ok()) {
    if (!absl::IsCancelled(got)) Failed(absl::StrCat("hand-over: no request: ", got.message()));
    return;
  }
  xds::HandOverOffer offer;
  offer.set_refused(why);
  offer.set_release(kMeshletVersion);
  offer.set_pid(getpid());
  (void)SendMessage(fd, offer, deadline, stop_fd_);
  std::string refused = absl::StrCat("hand-over to pid ", request.pid(), " (meshlet-sidecar ",
                                     request.release(), ") refused: ", why);
  LOG(INFO) << refused;
  std::shared_ptr<Shared> shared = shared_;
  loop_.Post([shared, refused = std::move(refused)] {
    if (shared->alive && shared->callbacks.refused) shared->callbacks.refused(refused);
  });
}

}  // namespace meshlet::sidecar::server

#include "common/net/listener.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/base/sync.h"

namespace meshlet::net {

// The listening handle; freed by whichever of the Listener and libuv's close callback is last.
struct Listener::Handle {
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  };
  bool is_pipe = false;
  bool closing = false;
  bool close_done = false;
  Listener* owner = nullptr;
  // Here rather than in the Listener so the callback may destroy the Listener.
  AcceptCallback on_accept;

  uv_handle_t* handle() { return reinterpret_cast<uv_handle_t*>(&tcp); }
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp); }

  static void OnClosed(uv_handle_t* uv) {
    auto* h = static_cast<Handle*>(uv->data);
    h->close_done = true;
    if (h->owner == nullptr) delete h;
  }
};

namespace {

absl::Status ErrnoStatus(absl::string_view what, const Address& address, int err) {
  std::string message = absl::StrCat(what, " ", address.ToString(), ": ", std::strerror(err));
  switch (err) {
    case EADDRINUSE:
      return absl::AlreadyExistsError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    case EADDRNOTAVAIL:
    case EAFNOSUPPORT:
    case EINVAL:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status UvListenStatus(absl::string_view what, const Address& address, int uv_err) {
  // libuv errors on Unix are negated errno values.
  return ErrnoStatus(what, address, -uv_err);
}

// The TCP addresses this process listens on with SO_REUSEPORT, and how many of its listeners
// share each. The kernel lets any process of the same user join a SO_REUSEPORT group and then
// splits connections between the processes without a word: two sidecars given the same port
// would silently serve each other's traffic. So the first listener of this process on an
// address first proves the address free with an exclusive bind; later ones join. Taken only
// when a listener is created or closed, never per connection.
//
// It also keeps every TCP listening socket of the process (for a hand-over to a successor,
// DuplicateListeningSockets) and the sockets a predecessor handed to this process that no listener
// took yet (AdoptListeningSockets), by bound address.
struct SharedPorts {
  Mutex mutex;
  absl::flat_hash_map<std::string, int> holders ABSL_GUARDED_BY(mutex);
  struct Open {
    int fd;
    Address address;
    bool reuse_port;
  };
  absl::flat_hash_map<const Listener*, Open> open ABSL_GUARDED_BY(mutex);
  absl::flat_hash_map<std::string, std::vector<ListeningSocket>> inherited ABSL_GUARDED_BY(mutex);
};

SharedPorts& shared_ports() {
  static SharedPorts* ports = new SharedPorts();  // never destroyed: listeners may outlive main
  return *ports;
}

// IPV6_V6ONLY as `ipv6_only` says, on IPv6 sockets; 0 or -1 with errno.
int SetIpv6Only(int fd, const Address& address, bool ipv6_only) {
  if (address.family() != Address::Family::kIPv6) return 0;
  int v6only = ipv6_only ? 1 : 0;
  return setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
}

// Binds a socket without SO_REUSEPORT to `address` and closes it: fails if anything listens there.
absl::Status ProveUnused(const Address& address, bool ipv6_only) {
  int fd = socket(address.as_sockaddr()->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus("socket for", address, errno);
  int one = 1;
  // SO_REUSEADDR so connections of an earlier holder still in TIME_WAIT do not count.
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  SetIpv6Only(fd, address, ipv6_only);
  int rc = bind(fd, address.as_sockaddr(), address.sockaddr_len());
  int err = errno;
  close(fd);
  if (rc == 0) return absl::OkStatus();
  if (err == EADDRINUSE) {
    return absl::AlreadyExistsError(absl::StrCat("bind ", address.ToString(), ": ",
                                                 std::strerror(err), " (by another process)"));
  }
  return ErrnoStatus("bind", address, err);
}

}  // namespace

Listener::Listener(event::Loop& loop, ListenerOptions options, AcceptCallback on_accept)
    : loop_(loop), handle_(new Handle()), options_(std::move(options)) {
  handle_->owner = this;
  handle_->on_accept = std::move(on_accept);
}

Listener::~Listener() {
  StopAccepting();
  handle_->owner = nullptr;
  if (handle_->close_done) delete handle_;
}

bool Listener::FamilyAvailable(Address::Family family) {
  const int domain = family == Address::Family::kIPv6   ? AF_INET6
                     : family == Address::Family::kIPv4 ? AF_INET
                                                        : AF_UNIX;
  int fd = socket(domain, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno != EAFNOSUPPORT;  // other errors (no fds left) are not about the family
  close(fd);
  return true;
}

absl::StatusOr<std::unique_ptr<Listener>> Listener::Create(event::Loop& loop,
                                                           const Address& address,
                                                           ListenerOptions options,
                                                           AcceptCallback on_accept) {
  std::unique_ptr<Listener> listener(new Listener(loop, std::move(options), std::move(on_accept)));
  absl::Status bound = address.family() == Address::Family::kUnix ? listener->BindUnix(address)
                                                                  : listener->BindTcp(address);
  if (!bound.ok()) return bound;
  int rc = uv_listen(listener->handle_->stream(), listener->options_.backlog,
                     [](uv_stream_t* server, int status) {
                       auto* h = static_cast<Handle*>(server->data);
                       if (h->owner != nullptr && !h->closing) h->owner->OnConnection(status);
                     });
  if (rc < 0) return UvListenStatus("listen on", address, rc);
  return listener;
}

absl::Status Listener::BindTcp(const Address& address) {
  Handle* h = handle_;
  CHECK(uv_tcp_init(loop_.uv_loop(), &h->tcp) == 0);
  h->handle()->data = h;
  SharedPorts& shared = shared_ports();
  MutexLock lock(&shared.mutex);
  int fd = -1;
  // A socket a predecessor handed over for this address, already bound and listening: its queue
  // of accepted connections is served from now on (by both processes until the predecessor
  // closes its copy).
  if (auto it = shared.inherited.find(address.ToString()); it != shared.inherited.end()) {
    for (auto s = it->second.begin(); s != it->second.end(); ++s) {
      if (s->reuse_port != options_.reuse_port) continue;
      fd = s->fd;
      it->second.erase(s);
      // Held by this listener from now on (counted again below), no longer by the pool.
      if (options_.reuse_port) {
        auto held = shared.holders.find(it->first);
        if (held != shared.holders.end() && --held->second == 0) shared.holders.erase(held);
      }
      break;
    }
    if (it->second.empty()) shared.inherited.erase(it);
  }
  if (fd < 0) {
    // The socket is made by hand: libuv 1.44 cannot set SO_REUSEPORT before bind.
    fd = socket(address.as_sockaddr()->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return ErrnoStatus("socket for", address, errno);
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        (options_.reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
        SetIpv6Only(fd, address, options_.ipv6_only) != 0) {
      int err = errno;
      close(fd);
      return ErrnoStatus("setsockopt on", address, err);
    }
    if (options_.reuse_port && address.port() != 0 &&
        !shared.holders.contains(address.ToString())) {
      if (absl::Status unused = ProveUnused(address, options_.ipv6_only); !unused.ok()) {
        close(fd);
        return unused;
      }
    }
    if (bind(fd, address.as_sockaddr(), address.sockaddr_len()) != 0) {
      int err = errno;
      close(fd);
      return ErrnoStatus("bind", address, err);
    }
  } else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
    int err = errno;
    close(fd);
    return ErrnoStatus("fcntl on", address, err);
  }
  int rc = uv_tcp_open(&h->tcp, fd);
  if (rc < 0) {
    close(fd);
    return UvListenStatus("open", address, rc);
  }
  sockaddr_storage ss;
  int len = sizeof(ss);
  rc = uv_tcp_getsockname(&h->tcp, reinterpret_cast<sockaddr*>(&ss), &len);
  if (rc < 0) return UvListenStatus("getsockname of", address, rc);
  absl::StatusOr<Address> bound =
      Address::FromSockaddr(reinterpret_cast<sockaddr*>(&ss), static_cast<socklen_t>(len));
  if (!bound.ok()) return bound.status();
  address_ = *bound;
  if (options_.reuse_port) {
    shared_key_ = address_.ToString();
    ++shared.holders[shared_key_];
  }
  shared.open[this] = SharedPorts::Open{fd, address_, options_.reuse_port};
  return absl::OkStatus();
}

absl::Status Listener::BindUnix(const Address& address) {
  Handle* h = handle_;
  h->is_pipe = true;
  CHECK(uv_pipe_init(loop_.uv_loop(), &h->pipe, 0) == 0);
  h->handle()->data = h;
  int rc = uv_pipe_bind(&h->pipe, address.unix_path().c_str());
  if (rc < 0) return UvListenStatus("bind", address, rc);
  unlink_path_ = true;
  address_ = address;
  return absl::OkStatus();
}

void Listener::OnConnection(int status) {
  if (status < 0) {
    LOG_EVERY_N_SEC(WARN, 1) << "accept on " << address_.ToString()
                             << " failed: " << uv_strerror(status);
    return;
  }
  Handle* h = handle_;
  absl::StatusOr<std::unique_ptr<Connection>> conn = Connection::Accept(
      loop_, h->stream(), h->is_pipe, options_.transport_factory, options_.connection);
  if (!conn.ok()) {
    LOG_EVERY_N_SEC(WARN, 1) << "accept on " << address_.ToString() << " failed: " << conn.status();
    return;
  }
  ++accepted_count_;
  // Nothing may follow: the callback may destroy the Listener.
  h->on_accept(std::move(*conn));
}

void Listener::StopAccepting() {
  Handle* h = handle_;
  if (h->closing) return;
  h->closing = true;
  if (h->handle()->type == UV_UNKNOWN_HANDLE) {
    // Never initialized (Create failed before the handle existed).
    h->close_done = true;
    return;
  }
  {
    // Before the socket closes: a hand-over must never duplicate a descriptor number that may
    // already name something else.
    SharedPorts& shared = shared_ports();
    MutexLock lock(&shared.mutex);
    shared.open.erase(this);
    if (!shared_key_.empty()) {
      auto it = shared.holders.find(shared_key_);
      if (it != shared.holders.end() && --it->second == 0) shared.holders.erase(it);
      shared_key_.clear();
    }
  }
  uv_close(h->handle(), &Handle::OnClosed);  // closes the socket now
  if (unlink_path_) {
    unlink(address_.unix_path().c_str());
    unlink_path_ = false;
  }
}

bool Listener::accepting() const { return !handle_->closing; }

absl::StatusOr<std::vector<ListeningSocket>> DuplicateListeningSockets() {
  SharedPorts& shared = shared_ports();
  MutexLock lock(&shared.mutex);
  std::vector<ListeningSocket> out;
  out.reserve(shared.open.size());
  for (const auto& [listener, open] : shared.open) {
    const int fd = fcntl(open.fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
      const int err = errno;
      for (const ListeningSocket& s : out) close(s.fd);
      return ErrnoStatus("duplicating the socket of", open.address, err);
    }
    out.push_back({fd, open.address, open.reuse_port});
  }
  return out;
}

void AdoptListeningSockets(std::vector<ListeningSocket> sockets) {
  SharedPorts& shared = shared_ports();
  MutexLock lock(&shared.mutex);
  for (ListeningSocket& s : sockets) {
    std::string key = s.address.ToString();
    // Later listeners of this process on the address join its SO_REUSEPORT group.
    if (s.reuse_port) ++shared.holders[key];
    shared.inherited[key].push_back(s);
  }
}

size_t InheritedSocketCount(const Address& address, bool reuse_port) {
  SharedPorts& shared = shared_ports();
  MutexLock lock(&shared.mutex);
  auto it = shared.inherited.find(address.ToString());
  if (it == shared.inherited.end()) return 0;
  size_t n = 0;
  for (const ListeningSocket& s : it->second) n += s.reuse_port == reuse_port;
  return n;
}

size_t CloseInheritedSockets() {
  SharedPorts& shared = shared_ports();
  MutexLock lock(&shared.mutex);
  size_t closed = 0;
  for (auto& [key, sockets] : shared.inherited) {
    for (const ListeningSocket& s : sockets) {
      close(s.fd);
      if (s.reuse_port) {
        auto it = shared.holders.find(key);
        if (it != shared.holders.end() && --it->second == 0) shared.holders.erase(it);
      }
      ++closed;
    }
  }
  shared.inherited.clear();
  return closed;
}

}  // namespace meshlet::net

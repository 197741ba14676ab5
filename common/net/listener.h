#pragma once

// Listener: accepts stream connections on one address (TCP, or a unix-domain socket path) and
// hands each one, as a ready Connection with its Transport started, to the accept callback. A
// sidecar worker owns one Listener per listening address on its own Loop; with reuse_port, N
// workers each bind the same port and the kernel spreads new connections across them.
//
// The owner holds the Listener; the accept callback fires on the loop thread and receives
// ownership of the Connection (which must get its callbacks before the callback returns, as
// bytes may follow on the next loop turn). The callback may destroy the Listener.
// StopAccepting() closes the listening socket (drain: no new connections; existing ones are
// untouched). Connections the kernel queued but nobody accepted yet are reset; with reuse_port,
// new ones go to the other workers' listeners.

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "common/event/loop.h"
#include "common/net/address.h"
#include "common/net/connection.h"
#include "common/net/transport.h"

namespace meshlet::net {

// A TCP listening socket of this process, or one handed to it by a predecessor (the sidecar's
// hand-over, docs/upgrades.md): the descriptor, the address it is bound to, and whether it is
// part of a SO_REUSEPORT group.
struct ListeningSocket {
  int fd = -1;
  Address address;
  bool reuse_port = false;
};

// Duplicates (F_DUPFD_CLOEXEC) the socket of every TCP Listener open in this process; the caller
// owns the copies. The listeners keep working on theirs. Any thread.
absl::StatusOr<std::vector<ListeningSocket>> DuplicateListeningSockets();
// Hands sockets another process listened on to this one: a Listener created afterwards for the
// same bound address (and reuse_port setting) takes one of them instead of binding, so the
// connections queued on it are not lost, and further Listeners with reuse_port on that address
// join the group without the check for another process. Takes ownership. Any thread.
void AdoptListeningSockets(std::vector<ListeningSocket> sockets);
// Adopted sockets of that address (and reuse_port setting) no Listener has taken yet.
size_t InheritedSocketCount(const Address& address, bool reuse_port);
// Closes the adopted sockets no Listener took (connections queued on them are reset); returns how
// many.
size_t CloseInheritedSockets();

struct ListenerOptions {
  // Pending-connection queue; the kernel caps it at net.core.somaxconn.
  int backlog = 1024;
  // SO_REUSEPORT, so several listeners of this process (one per worker) share the address; the
  // first of them fails if another process already listens there. TCP only.
  bool reuse_port = false;
  // IPV6_V6ONLY on an IPv6 address: "[::]:P" then takes IPv6 connections only, and can be bound
  // beside "0.0.0.0:P". Off: the kernel's default (Linux: dual-stack, IPv4 connections arrive
  // as ::ffff:a.b.c.d).
  bool ipv6_only = false;
  // Options for every accepted connection.
  ConnectionOptions connection;
  // One Transport per accepted connection; null means plaintext.
  TransportFactory transport_factory;
};

class Listener {
 public:
  using AcceptCallback = absl::AnyInvocable<void(std::unique_ptr<Connection>)>;

  // Binds and listens. Port 0 picks a free port: read it back with address().
  static absl::StatusOr<std::unique_ptr<Listener>> Create(event::Loop& loop, const Address& address,
                                                          ListenerOptions options,
                                                          AcceptCallback on_accept);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // The bound address, with the actual port.
  const Address& address() const { return address_; }

  // Stops accepting for good (closes the listening socket; a unix socket path is removed).
  void StopAccepting();
  bool accepting() const;

  uint64_t accepted_count() const { return accepted_count_; }

  // Whether this host's kernel can make sockets of `family` (IPv6 can be turned off at boot).
  static bool FamilyAvailable(Address::Family family);

 private:
  struct Handle;
  Listener(event::Loop& loop, ListenerOptions options, AcceptCallback on_accept);
  absl::Status BindTcp(const Address& address);
  absl::Status BindUnix(const Address& address);
  void OnConnection(int status);

  event::Loop& loop_;
  Handle* handle_;
  ListenerOptions options_;
  Address address_;
  bool unlink_path_ = false;
  // The address in the process-wide SO_REUSEPORT registry while this listener holds it.
  std::string shared_key_;
  uint64_t accepted_count_ = 0;
};

}  // namespace meshlet::net

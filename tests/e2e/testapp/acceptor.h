#pragma once

// Acceptor: what the test app's servers (server.h's HTTP, tcp_server.h's banner protocol) share:
// a listener, and the connections it accepted, each turned into the server's own connection
// object by a factory and owned here. Beyond max_connections, and after Shutdown(), new
// connections are closed at once without reaching the factory.
//
// Ownership and threading: everything runs on the loop's thread. A served connection calls
// Remove(this) when it is done (typically from its OnClose); it is deleted at the end of that
// loop turn. Destroying the Acceptor destroys the connections still open (their destructors
// must not call back into it), then the listener. Destroy it before its Loop.

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "common/event/loop.h"
#include "common/net/address.h"
#include "common/net/connection.h"
#include "common/net/listener.h"

namespace meshlet::testapp {

// One connection a server serves.
class ServedConnection {
 public:
  virtual ~ServedConnection() = default;
  // The server is shutting down: finish (what is under way may complete) and close. May call
  // Acceptor::Remove() from inside.
  virtual void Shutdown() = 0;
};

class Acceptor {
 public:
  // Makes the served connection for an accepted one: the connection gets its callbacks before
  // this returns, and is not closed from inside it.
  using Factory =
      absl::AnyInvocable<std::unique_ptr<ServedConnection>(std::unique_ptr<net::Connection>)>;

  // Listens on `address` (port 0: any free one).
  static absl::StatusOr<std::unique_ptr<Acceptor>> Create(event::Loop& loop,
                                                          const net::Address& address,
                                                          size_t max_connections, Factory factory);
  ~Acceptor();
  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;

  const net::Address& address() const { return listener_->address(); }
  // Stops accepting and shuts every connection down.
  void Shutdown();
  // Deletes `connection` at the end of the loop turn; nothing if it is not one of these.
  void Remove(ServedConnection* connection);

  size_t connections() const { return connections_.size(); }
  uint64_t accepted() const { return accepted_; }  // not counting those closed at once

 private:
  Acceptor(event::Loop& loop, size_t max_connections, Factory factory);
  void OnAccept(std::unique_ptr<net::Connection> connection);

  event::Loop& loop_;
  const size_t max_connections_;
  Factory factory_;
  std::unique_ptr<net::Listener> listener_;
  std::map<ServedConnection*, std::unique_ptr<ServedConnection>> connections_;
  uint64_t accepted_ = 0;
  bool shutting_down_ = false;
};

}  // namespace meshlet::testapp

#pragma once

// Hand-over: one sidecar process replaced by another — a new binary, or the same one restarted —
// without refusing or resetting a connection (docs/upgrades.md, "Replacing the sidecar binary in
// place"; ADR 0072). Both run with --hand-over PATH:
//
//   - the running sidecar serves a unix socket at PATH (HandOverServer, a thread of its own);
//   - a new one, at start, connects to PATH (HandOverClient::Connect) and receives the running
//     one's TCP listening sockets (SCM_RIGHTS), the configuration it has from the control plane
//     and its workload certificate (xds/hand_over.proto). It adopts the sockets
//     (net::AdoptListeningSockets: its listeners take them instead of binding), starts from that
//     configuration and certificate, and accepts on the same sockets as the running one. Once it
//     is ready it says so (HandOverClient::Finish): the running one stops accepting, tells its
//     connections to finish (GOAWAY, Connection: close) and exits when they are gone, and the new
//     one serves PATH for the next. The listening sockets never close in between, so nothing
//     queued on them is lost; a new process that fails before it is ready changes nothing.
//
// Only a process of the same user, or root, may take part (SO_PEERCRED, checked on both ends: a
// sidecar running as root deals with root only); PATH is made with mode 0600. Every message is
// read with a size limit (64 KiB, an offer 256 MiB), and every descriptor handed over must be a
// TCP socket listening on the address the offer gives it, or the take-over fails.
//
// One successor at a time: while one takes over, another that asks is refused at once ("handing
// over to another process"), and so is one still queued when the first has taken over.
//
// Threading: HandOverClient is used on the main thread at start-up (blocking, every step bounded
// by the timeout, the connect too). HandOverServer's thread talks to the peer and runs the
// callbacks on the main loop (Post); they never block it. Destroying the server (main thread,
// also from inside one of its callbacks) stops the thread within ~100 ms; an exchange in progress
// is abandoned, and what a callback returns after that (an offer's sockets) is released.

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/net/listener.h"
#include "sidecar/identity/certificate_manager.h"

namespace meshlet::sidecar::server {

// What a running sidecar hands over. It owns the descriptors in `sockets`: those still there when
// it goes (or is assigned over) are closed, so an offer abandoned on any path leaks none. Move
// them out to keep them (a moved-from vector is empty).
struct HandedOver {
  HandedOver() = default;
  HandedOver(HandedOver&&) = default;
  HandedOver& operator=(HandedOver&& other);
  HandedOver(const HandedOver&) = delete;
  HandedOver& operator=(const HandedOver&) = delete;
  ~HandedOver();

  int pid = 0;
  std::string release;
  std::vector<net::ListeningSocket> sockets;
  // Its configuration from the control plane (an xds::CachedConfiguration); empty: none.
  std::string configuration;
  std::optional<identity::WorkloadCertificate> certificate;
};

// What the running sidecar still had when it stopped accepting.
struct Drained {
  int64_t connections = 0;
  int64_t requests = 0;  // in flight on them
};

// Closes the descriptors of `sockets` (those not adopted).
void CloseSockets(std::vector<net::ListeningSocket>& sockets);

// The new process's side.
class HandOverClient {
 public:
  // Connects to `path` and asks the sidecar serving it to hand over. A null client (and OK) when
  // nobody serves there — no file, or one left by a process that is gone: start as usual. An
  // error when it refused (it is draining, not ready, or handing over to another process) or the
  // exchange failed or took longer than `timeout` (counted from the connect, which waits while
  // the socket's queue of connections is full).
  static absl::StatusOr<std::unique_ptr<HandOverClient>> Connect(const std::string& path,
                                                                 Duration timeout);
  // Closes the connection: a running sidecar not yet told to stop keeps serving as before.
  ~HandOverClient();
  HandOverClient(const HandOverClient&) = delete;
  HandOverClient& operator=(const HandOverClient&) = delete;

  // What was handed over (the caller takes the sockets and the rest out of it).
  HandedOver& handed() { return handed_; }

  // This process is ready: the running sidecar stops accepting and drains. Returns what it still
  // had open, once it has stopped accepting (within `timeout`).
  absl::StatusOr<Drained> Finish(Duration timeout);

 private:
  explicit HandOverClient(int fd) : fd_(fd) {}
  int fd_;
  HandedOver handed_;
};

// The running process's side.
class HandOverServer {
 public:
  using Drained = server::Drained;
  struct Callbacks {
    // What to hand over, or why not (an error: its message is the refusal). Main loop.
    std::function<absl::StatusOr<HandedOver>()> offer;
    // The successor is ready: stop accepting and drain. Returns what is still open. Main loop.
    std::function<Drained()> handed_over;
    // An exchange with a would-be successor failed before it took over (a peer of another user,
    // a malformed or oversized message, a successor gone before it was ready), with the reason
    // (also logged); this sidecar serves on. Optional. Main loop, after the fact.
    std::function<void(absl::string_view why)> failed;
    // A would-be successor was refused because another one is taking over (or took over), with
    // the refusal (also logged). Refusals of `offer` are its own to count. Optional. Main loop,
    // after the fact.
    std::function<void(absl::string_view why)> refused;
  };

  // Serves `path` (removing a file left there by a process that is gone; an error when a live
  // process serves it).
  static absl::StatusOr<std::unique_ptr<HandOverServer>> Start(event::Loop& loop,
                                                               const std::string& path,
                                                               Callbacks callbacks);
  // Stops the thread; removes the socket file it made at `path` unless a successor took it over
  // (or another process's file is there by now).
  ~HandOverServer();
  HandOverServer(const HandOverServer&) = delete;
  HandOverServer& operator=(const HandOverServer&) = delete;

  const std::string& path() const { return path_; }

 private:
  struct Shared;
  // The socket file made at the path (removed by the destructor only while the path names it).
  struct SocketFile {
    dev_t device;
    ino_t inode;
  };
  HandOverServer(event::Loop& loop, std::string path, SocketFile file, int listen_fd,
                 Callbacks callbacks);
  void ThreadMain();
  // One successor, start to end; true when it took over (the thread then ends).
  bool Serve(int fd);
  // Waits for the successor `who` on `fd` to say it is ready, refusing at once whoever else
  // connects meanwhile. OK: Ready arrived.
  absl::Status WaitForReady(int fd, const std::string& who);
  // Accepts the connections queued on the socket now and refuses each: `why` ("handing over to
  // another process ..."). False when accepting failed for want of descriptors or memory.
  bool RefuseQueued(const std::string& why);
  // Tells the would-be successor on `fd` (accepted) `why` it is refused.
  void Refuse(int fd, const std::string& why);
  // Logs `why` and runs callbacks.failed with it on the main loop.
  void Failed(std::string why);
  // Runs `f(callbacks)` on the main loop and waits for its result; nullopt when stopping (the
  // loop then skips the call, or releases what it returned: nothing refers to this thread's
  // stack).
  template <typename F>
  auto RunOnLoop(F f) -> std::optional<decltype(f(std::declval<Callbacks&>()))>;

  event::Loop& loop_;
  const std::string path_;
  const SocketFile file_;
  int listen_fd_;
  int stop_fd_;  // an eventfd: written to stop the thread
  std::shared_ptr<Shared> shared_;
  std::atomic<bool> handed_over_{false};
  std::thread thread_;
};

}  // namespace meshlet::sidecar::server

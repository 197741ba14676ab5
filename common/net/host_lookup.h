#pragma once

// HostLookup: a host name resolved to its addresses without blocking the event loop
// (getaddrinfo on libuv's thread pool, uv_getaddrinfo). For the control plane's and the sidecar's
// own calls to named servers (a SPIFFE bundle endpoint); an IP literal is answered without a
// lookup. Addresses come in the resolver's order, TCP only, IPv4 and IPv6.
//
// Ownership and callback timing: the caller owns the HostLookup; the Loop must outlive it. `done`
// runs exactly once, on the loop thread, never from inside Start() (an IP literal's answer too
// comes on a later turn), and never after the HostLookup was destroyed. Destroying it (from
// anywhere, inside `done` too) cancels the lookup: a getaddrinfo already running on the pool
// finishes there and its answer is dropped. Loop thread only.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/net/address.h"

namespace meshlet::net {

class HostLookup {
 public:
  // Unavailable ("cannot resolve "HOST": REASON") when the name has no address.
  using Done = absl::AnyInvocable<void(absl::StatusOr<std::vector<Address>>)>;

  static std::unique_ptr<HostLookup> Start(event::Loop& loop, std::string host, uint16_t port,
                                           Done done);
  ~HostLookup();
  HostLookup(const HostLookup&) = delete;
  HostLookup& operator=(const HostLookup&) = delete;

  struct Request;  // internal: owned by libuv from uv_getaddrinfo until its callback

 private:
  friend void HostLookupResolved(HostLookup* owner, absl::StatusOr<std::vector<Address>> result);
  HostLookup(event::Loop& loop, Done done);
  void Finish(absl::StatusOr<std::vector<Address>> result);

  Done done_;
  Request* request_ = nullptr;
  event::Timer literal_timer_;  // an IP literal's answer, on the next turn
  absl::StatusOr<std::vector<Address>> literal_;
};

}  // namespace meshlet::net

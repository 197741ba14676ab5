#pragma once

// TlsContextProvider: the current TlsContext for a listener or an upstream cluster, replaceable
// at any time for certificate or trust-bundle rotation.
//
// Threading: the owner (main thread) calls Update(); any thread calls Current() when it starts a
// new session. Both are lock-free with respect to each other (an atomic shared_ptr). A session
// keeps the shared_ptr it was created with, so sessions started before a rotation keep using and
// keeping alive the old context until they end, and the data path never touches the provider.

#include <atomic>
#include <cstdint>
#include <memory>

#include "common/tls/tls_context.h"

namespace meshlet::tls {

class TlsContextProvider {
 public:
  // `initial` must not be null.
  explicit TlsContextProvider(std::shared_ptr<const TlsContext> initial);

  TlsContextProvider(const TlsContextProvider&) = delete;
  TlsContextProvider& operator=(const TlsContextProvider&) = delete;

  // Publishes `next` (not null) for sessions created from now on.
  void Update(std::shared_ptr<const TlsContext> next);

  std::shared_ptr<const TlsContext> Current() const {
    return current_.load(std::memory_order_acquire);
  }

  // Starts at 1, +1 per Update(); shown by the admin endpoint.
  uint64_t generation() const { return generation_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::shared_ptr<const TlsContext>> current_;
  std::atomic<uint64_t> generation_{1};
};

}  // namespace meshlet::tls

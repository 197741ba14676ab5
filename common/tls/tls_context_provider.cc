#include "common/tls/tls_context_provider.h"

#include <utility>

#include "common/base/logging.h"

namespace meshlet::tls {

TlsContextProvider::TlsContextProvider(std::shared_ptr<const TlsContext> initial) {
  CHECK(initial != nullptr);
  current_.store(std::move(initial), std::memory_order_release);
}

void TlsContextProvider::Update(std::shared_ptr<const TlsContext> next) {
  CHECK(next != nullptr);
  current_.store(std::move(next), std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace meshlet::tls

#include "common/event/signal.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"

namespace meshlet::event {

struct Signal::Handle {
  uv_signal_t uv;
  Callback callback;

  static void Close(Handle* h) {
    uv_close(reinterpret_cast<uv_handle_t*>(&h->uv),
             [](uv_handle_t* uv) { delete static_cast<Handle*>(uv->data); });
  }
};

absl::StatusOr<std::unique_ptr<Signal>> Signal::Create(Loop& loop, int signum, Callback callback) {
  auto* h = new Handle{{}, std::move(callback)};
  CHECK(uv_signal_init(loop.uv_loop(), &h->uv) == 0);
  h->uv.data = h;
  int rc = uv_signal_start(
      &h->uv,
      [](uv_signal_t* uv, int signum) {
        // Nothing may follow: the callback may destroy the Signal.
        static_cast<Handle*>(uv->data)->callback(signum);
      },
      signum);
  if (rc != 0) {
    Handle::Close(h);
    return absl::InvalidArgumentError(
        absl::StrCat("cannot watch signal ", signum, ": ", uv_strerror(rc)));
  }
  return std::unique_ptr<Signal>(new Signal(h, signum));
}

Signal::~Signal() { Handle::Close(handle_); }

}  // namespace meshlet::event

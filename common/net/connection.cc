// Connection (connection.h): one state machine per socket (connecting, open, flushing, closing)
// whose read, write, shutdown and close handlers share its fields, so it stays one file.

#include "common/net/connection.h"

#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstddef>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/types/optional.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/net/plaintext_transport.h"

namespace meshlet::net {
namespace {

// Reads go into tail space of at least this size; smaller leftovers get a fresh block rather than
// a short read(2).
constexpr size_t kMinReadSpace = Buffer::kBlockSize / 4;
// iovecs per uv_try_write (writev) attempt.
constexpr size_t kMaxTryWriteIovecs = 64;
// Unread peer bytes a failed transport's close reads and drops so that it ends with a FIN, not a
// reset (SendLastWords); a peer that sent more gets the reset.
constexpr size_t kMaxLastWordsDrain = 64 << 10;

static_assert(sizeof(uv_buf_t) == sizeof(iovec) &&
                  offsetof(uv_buf_t, base) == offsetof(iovec, iov_base) &&
                  offsetof(uv_buf_t, len) == offsetof(iovec, iov_len),
              "libuv documents uv_buf_t as layout-compatible with iovec on Unix");

uv_buf_t* AsUvBufs(iovec* iov) { return reinterpret_cast<uv_buf_t*>(iov); }

// The payload of a socket error's status that names its libuv error (uv_err_name).
constexpr absl::string_view kUvErrorPayload = "meshlet.net/uv-error";

absl::Status UvStatusWithoutPayload(absl::string_view context, int err) {
  std::string message = absl::StrCat(context, ": ", uv_strerror(err), " (", uv_err_name(err), ")");
  switch (err) {
    case UV_ETIMEDOUT:
      return absl::DeadlineExceededError(message);
    case UV_ECONNREFUSED:
    case UV_ECONNRESET:
    case UV_ECONNABORTED:
    case UV_EPIPE:
    case UV_ENETUNREACH:
    case UV_EHOSTUNREACH:
    case UV_ENOTCONN:
      return absl::UnavailableError(message);
    case UV_EINVAL:
    case UV_EAFNOSUPPORT:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status UvStatus(absl::string_view context, int err) {
  absl::Status status = UvStatusWithoutPayload(context, err);
  status.SetPayload(kUvErrorPayload, absl::Cord(uv_err_name(err)));
  return status;
}

CloseReason ReasonForSocketError(int err) {
  return err == UV_ECONNRESET || err == UV_EPIPE ? CloseReason::kRemoteReset
                                                 : CloseReason::kSocketError;
}

size_t TotalLength(const iovec* iov, size_t n) {
  size_t total = 0;
  for (size_t i = 0; i < n; ++i) total += iov[i].iov_len;
  return total;
}

// The thread's write batch: how many WriteBatch scopes are open, the loop whose read callback
// opened the outermost one, and the connections of that loop with bytes queued, which are sent at
// the end of the loop turn. One loop per thread in the product; tests that run several loops on
// one thread get batching only for connections of the loop that is reading.
struct BatchState {
  int depth = 0;
  event::Loop* loop = nullptr;
  event::Loop* send_scheduled_on = nullptr;  // end-of-turn send pending on this loop
  std::vector<Connection*> queued;
};
thread_local BatchState t_batch;

}  // namespace

bool IsConnectionRefused(const absl::Status& detail) {
  const absl::optional<absl::Cord> error = detail.GetPayload(kUvErrorPayload);
  return error.has_value() && *error == uv_err_name(UV_ECONNREFUSED);
}

absl::string_view CloseReasonName(CloseReason reason) {
  switch (reason) {
    case CloseReason::kLocalClose:
      return "local_close";
    case CloseReason::kEndOfStream:
      return "end_of_stream";
    case CloseReason::kRemoteReset:
      return "remote_reset";
    case CloseReason::kConnectFailed:
      return "connect_failed";
    case CloseReason::kConnectTimeout:
      return "connect_timeout";
    case CloseReason::kTransportError:
      return "transport_error";
    case CloseReason::kSocketError:
      return "socket_error";
  }
  return "unknown";
}

// The libuv handle and requests. Separate from the Connection because libuv needs the memory
// until its close callback runs, which is after the Connection may be gone; whichever of the two
// finishes last frees it.
struct Connection::Handle {
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  };
  bool is_pipe = false;
  bool closing = false;     // uv_close was called
  bool close_done = false;  // libuv's close callback ran
  Connection* owner = nullptr;
  uv_write_t write_req;
  uv_shutdown_t shutdown_req;
  uv_connect_t connect_req;

  uv_handle_t* handle() { return reinterpret_cast<uv_handle_t*>(&tcp); }
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp); }

  // The Connection behind a libuv callback, or null if it was destroyed or closed (requests
  // cancelled by uv_close report UV_ECANCELED after that).
  static Connection* Live(void* data) {
    auto* h = static_cast<Handle*>(data);
    if (h->owner == nullptr || h->owner->state_ == State::kClosed) return nullptr;
    return h->owner;
  }

  static void OnClosed(uv_handle_t* uv) {
    auto* h = static_cast<Handle*>(uv->data);
    h->close_done = true;
    if (h->owner == nullptr) delete h;
  }
};

// A failure found while moving bytes: how to report it.
struct Connection::Failure {
  CloseReason reason;
  absl::Status detail;
};

Connection::WriteBatch::WriteBatch(event::Loop& loop) {
  if (t_batch.depth++ == 0) t_batch.loop = &loop;
}

Connection::WriteBatch::~WriteBatch() {
  if (--t_batch.depth > 0 || t_batch.queued.empty()) return;
  if (t_batch.send_scheduled_on == t_batch.loop) return;
  if (t_batch.send_scheduled_on != nullptr) {
    // A send is pending on another loop of this thread: do not make these wait for it.
    SendQueued(nullptr);
    return;
  }
  // Later read callbacks of this turn (other upstream responses for the same HTTP/2 client, say)
  // add to the same writes.
  t_batch.send_scheduled_on = t_batch.loop;
  t_batch.loop->RunAtEndOfTurn(&Connection::SendQueued, nullptr);
}

void Connection::SendQueued(void*) {
  t_batch.send_scheduled_on = nullptr;
  // Sending may run callbacks (low watermark) that write more, close or destroy connections;
  // a destroyed connection takes itself off the queue, so take one at a time from the back.
  while (!t_batch.queued.empty()) {
    Connection* c = t_batch.queued.back();
    t_batch.queued.pop_back();
    c->send_queued_ = false;
    c->SendBatched();
  }
}

void Connection::Unqueue() {
  if (!send_queued_) return;
  send_queued_ = false;
  auto& queued = t_batch.queued;
  for (size_t i = 0; i < queued.size(); ++i) {
    if (queued[i] == this) {
      queued.erase(queued.begin() + static_cast<ptrdiff_t>(i));
      break;
    }
  }
}

void Connection::SendBatched() {
  if (state_ != State::kOpen) return;  // a flushing Close() sends the rest itself
  if (std::optional<Failure> f = SendAndFlush()) {
    Fail(f->reason, std::move(f->detail), /*defer=*/true);
    return;
  }
  AfterWriteProgress(/*defer=*/true);
}

Connection::Connection(event::Loop& loop, bool is_pipe, const ConnectionOptions& options)
    : loop_(loop), handle_(new Handle()), options_(options), timer_(loop, [this] { OnTimer(); }) {
  DCHECK(options.write_low_watermark < options.write_high_watermark)
      << "write_low_watermark must be below write_high_watermark";
  handle_->is_pipe = is_pipe;
  handle_->owner = this;
  if (is_pipe) {
    CHECK(uv_pipe_init(loop.uv_loop(), &handle_->pipe, 0) == 0);
  } else {
    CHECK(uv_tcp_init(loop.uv_loop(), &handle_->tcp) == 0);
  }
  handle_->handle()->data = handle_;
  handle_->write_req.data = handle_;
  handle_->shutdown_req.data = handle_;
  handle_->connect_req.data = handle_;
}

Connection::~Connection() {
  if (send_queued_) {
    Unqueue();
    // What an unbatched Write() would have handed to the kernel already.
    if (state_ == State::kOpen) SendAndFlush();
  }
  if (!handle_->closing) CloseSocket(/*reset=*/false);
  handle_->owner = nullptr;
  if (handle_->close_done) delete handle_;
}

uv_stream_t* Connection::stream() { return handle_->stream(); }

int Connection::socket_fd() const {
  uv_os_fd_t fd;
  if (handle_ == nullptr || state_ == State::kClosed ||
      uv_fileno(reinterpret_cast<const uv_handle_t*>(&handle_->tcp), &fd) != 0) {
    return -1;
  }
  return fd;
}

std::unique_ptr<Connection> Connection::Connect(event::Loop& loop, const Address& address,
                                                Duration timeout,
                                                const TransportFactory& transport_factory,
                                                const ConnectionOptions& options) {
  const bool is_pipe = address.family() == Address::Family::kUnix;
  std::unique_ptr<Connection> conn(new Connection(loop, is_pipe, options));
  conn->remote_address_ = address;
  conn->transport_ =
      transport_factory ? transport_factory() : std::make_unique<PlaintextTransport>();
  if (conn->transport_ == nullptr) {
    conn->Fail(CloseReason::kConnectFailed,
               absl::InternalError("transport factory returned no transport"), /*defer=*/true);
    return conn;
  }
  Handle* h = conn->handle_;
  auto on_connect = [](uv_connect_t* req, int status) {
    if (Connection* c = Handle::Live(req->data)) c->OnConnectDone(status);
  };
  if (is_pipe) {
    uv_pipe_connect(&h->connect_req, &h->pipe, address.unix_path().c_str(), on_connect);
  } else {
    int rc = uv_tcp_connect(&h->connect_req, &h->tcp, address.as_sockaddr(), on_connect);
    if (rc < 0) {
      conn->Fail(CloseReason::kConnectFailed,
                 UvStatus(absl::StrCat("connect to ", address.ToString()), rc), /*defer=*/true);
      return conn;
    }
  }
  if (timeout > Duration::zero()) conn->timer_.Enable(timeout);
  return conn;
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::Accept(
    event::Loop& loop, uv_stream_t* server, bool is_pipe, const TransportFactory& transport_factory,
    const ConnectionOptions& options) {
  std::unique_ptr<Connection> conn(new Connection(loop, is_pipe, options));
  int rc = uv_accept(server, conn->stream());
  if (rc < 0) return UvStatus("accept", rc);
  conn->transport_ =
      transport_factory ? transport_factory() : std::make_unique<PlaintextTransport>();
  if (conn->transport_ == nullptr) {
    return absl::InternalError("transport factory returned no transport");
  }
  if (std::optional<Failure> f = conn->OnEstablished()) return f->detail;
  return conn;
}

void Connection::ApplySocketOptions() {
  if (!handle_->is_pipe) uv_tcp_nodelay(&handle_->tcp, 1);
  // uv_*_buffer_size with a non-zero value sets it.
  if (options_.send_buffer_bytes > 0) {
    int value = options_.send_buffer_bytes;
    uv_send_buffer_size(handle_->handle(), &value);
  }
  if (options_.receive_buffer_bytes > 0) {
    int value = options_.receive_buffer_bytes;
    uv_recv_buffer_size(handle_->handle(), &value);
  }
}

std::optional<Connection::Failure> Connection::OnEstablished() {
  state_ = State::kOpen;
  ApplySocketOptions();
  uv_os_fd_t fd;
  if (uv_fileno(handle_->handle(), &fd) == 0) {
    sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      if (auto a = Address::FromSockaddr(reinterpret_cast<sockaddr*>(&ss), len); a.ok()) {
        local_address_ = *a;
      }
    }
    len = sizeof(ss);
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      // A unix client socket has no name; keep the address it connected to.
      if (auto a = Address::FromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
          a.ok() && !(a->family() == Address::Family::kUnix && a->unix_path().empty())) {
        remote_address_ = *a;
      }
    }
  }
  absl::Status started = transport_->Start(remote_address_, wire_out_);
  if (!started.ok()) return Failure{CloseReason::kTransportError, Annotate(started, "transport")};
  StartReading();
  return SendAndFlush();
}

void Connection::StartReading() {
  if (reading_ || read_disable_count_ > 0 || state_ != State::kOpen || remote_eof_) return;
  BeginReads();
}

void Connection::BeginReads() {
  int rc = uv_read_start(
      stream(),
      [](uv_handle_t* uv, size_t, uv_buf_t* buf) {
        // Reading stops when the Connection closes, so the owner is alive here.
        Connection* c = static_cast<Handle*>(uv->data)->owner;
        absl::Span<char> space = c->wire_in_.Reserve(kMinReadSpace);
        buf->base = space.data();
        buf->len = space.size();
      },
      [](uv_stream_t* uv, ssize_t nread, const uv_buf_t*) {
        Connection* c = static_cast<Handle*>(uv->data)->owner;
        c->OnReadDone(nread);
      });
  if (rc < 0) {
    LOG_EVERY_N_SEC(WARN, 1) << "read start on " << remote_address_.ToString()
                             << " failed: " << uv_strerror(rc);
    return;
  }
  reading_ = true;
}

// Whether the peer's bytes wait in the kernel, not yet read: a flush that finished inside
// Close() can get here before any read callback ran.
bool Connection::UnreadBytesInSocket() const {
  uv_os_fd_t fd;
  int unread = 0;
  return uv_fileno(handle_->handle(), &fd) == 0 && ::ioctl(fd, FIONREAD, &unread) == 0 &&
         unread > 0;
}

void Connection::StartLingeringReads() {
  // Whatever ReadDisable() said: these reads are dropped (OnReadDone), until a
  // Close(kFlushBriefly) budget ran out.
  if (!reading_ && !remote_eof_ && linger_budget_ != 0) BeginReads();
}

void Connection::OnReadDone(ssize_t nread) {
  // Every read (and EOF) ends the reservation made by the allocation callback, if any.
  wire_in_.Commit(nread > 0 ? static_cast<size_t>(nread) : 0);
  if (nread == 0) return;  // EAGAIN
  if (state_ == State::kClosing) {
    // Close(kFlush): nothing more is delivered; what arrives is dropped, and the peer's close
    // ends the wait once everything is written.
    wire_in_.Clear();
    if (nread > 0) {
      bytes_received_ += static_cast<uint64_t>(nread);
      closing_received_ = true;
      if (static_cast<size_t>(nread) >= linger_budget_) {
        // Close(kFlushBriefly): a peer that floods on after it was cut off is no longer read.
        // Its sends stall on a full window, costing neither side anything, until
        // flush_close_timeout closes the socket (a reset, with its bytes unread): reconnecting
        // at once, as a reset now would let it, costs more than holding it.
        linger_budget_ = 0;
        uv_read_stop(stream());
        reading_ = false;
        return;
      }
      linger_budget_ -= static_cast<size_t>(nread);
      ChargeRead(static_cast<size_t>(nread));
      return;
    }
    reading_ = false;
    if (nread == UV_EOF) remote_eof_ = true;
    if (write_buffer_.empty() && wire_out_.empty()) {
      CloseSocket(/*reset=*/false);
      NotifyClose(CloseReason::kLocalClose, absl::OkStatus());
    }
    // Else the flush goes on; with reading over, it closes as soon as it is done.
    return;
  }
  if (nread == UV_EOF) {
    remote_eof_ = true;
    reading_ = false;  // libuv stopped reading
    Handle* h = handle_;
    if (callbacks_ != nullptr) {
      WriteBatch batch(loop_);
      callbacks_->OnData(read_buffer_, /*end_stream=*/true);
    }
    if (h->owner == nullptr || state_ != State::kOpen) return;
    if (shutdown_done_) {
      CloseSocket(/*reset=*/false);
      NotifyClose(CloseReason::kEndOfStream, absl::OkStatus());
    }
    return;
  }
  if (nread < 0) {
    int err = static_cast<int>(nread);
    Fail(ReasonForSocketError(err), UvStatus("read", err), /*defer=*/false);
    return;
  }
  bytes_received_ += static_cast<uint64_t>(nread);
  absl::Status received = transport_->OnReceived(wire_in_, read_buffer_, wire_out_);
  if (!received.ok()) {
    Fail(CloseReason::kTransportError, Annotate(received, "transport"), /*defer=*/false);
    return;
  }
  // Handshake bytes to send, and application bytes a completed handshake released.
  if (std::optional<Failure> f = SendAndFlush()) {
    Fail(f->reason, std::move(f->detail), /*defer=*/false);
    return;
  }
  if (!AfterWriteProgress(/*defer=*/false)) return;
  Handle* h = handle_;
  // The peer's close_notify: its end of stream, as its FIN would be (nothing after it counts).
  const bool peer_closed = transport_->PeerClosed();
  if (peer_closed) {
    remote_eof_ = true;
    reading_ = false;
    uv_read_stop(stream());
  }
  if ((!read_buffer_.empty() || peer_closed) && callbacks_ != nullptr) {
    WriteBatch batch(loop_);
    callbacks_->OnData(read_buffer_, /*end_stream=*/peer_closed);
  }
  if (h->owner == nullptr) return;
  if (!peer_closed) {
    ChargeRead(static_cast<size_t>(nread));
    return;
  }
  if (state_ == State::kOpen && shutdown_done_) {
    CloseSocket(/*reset=*/false);
    NotifyClose(CloseReason::kEndOfStream, absl::OkStatus());
  }
}

void Connection::ChargeRead(size_t n) {
  if (options_.read_budget_per_turn == 0) return;
  if (read_turn_ != loop_.turn()) {
    read_turn_ = loop_.turn();
    read_this_turn_ = 0;
  }
  read_this_turn_ += n;
  if (read_this_turn_ < options_.read_budget_per_turn || !reading_ || read_throttled_) return;
  if (state_ != State::kOpen && state_ != State::kClosing) return;
  uv_read_stop(stream());
  reading_ = false;
  read_throttled_ = true;
  ++reads_throttled_;
  // The check phase of this turn, before libuv closes any handle: `handle_` is still there, and
  // its owner is null if the Connection went meanwhile.
  loop_.RunAtEndOfTurn(&Connection::ResumeThrottledReads, handle_);
}

void Connection::ResumeThrottledReads(void* handle) {
  Connection* c = static_cast<Handle*>(handle)->owner;
  if (c == nullptr || !c->read_throttled_) return;
  c->read_throttled_ = false;
  if (c->state_ == State::kClosing) {
    c->StartLingeringReads();
  } else {
    c->StartReading();
  }
}

void Connection::Write(absl::string_view data) {
  Buffer buffer(data);
  Write(buffer);
}

void Connection::Write(Buffer& data) {
  if ((state_ != State::kOpen && state_ != State::kConnecting) || shutdown_requested_) {
    data.Clear();
    return;
  }
  write_buffer_.Move(data);
  if (state_ == State::kOpen && t_batch.depth > 0 && t_batch.loop == &loop_) {
    if (!send_queued_) {
      send_queued_ = true;
      t_batch.queued.push_back(this);
    }
    CheckHighWatermark();
    return;
  }
  if (state_ == State::kOpen) {
    if (std::optional<Failure> f = SendAndFlush()) {
      Fail(f->reason, std::move(f->detail), /*defer=*/true);
      return;
    }
  }
  if (!CheckHighWatermark()) return;
  AfterWriteProgress(/*defer=*/true);
}

std::optional<Connection::Failure> Connection::SendAndFlush() {
  if (!write_buffer_.empty()) {
    absl::Status sent = transport_->Send(write_buffer_, wire_out_);
    if (!sent.ok()) return Failure{CloseReason::kTransportError, Annotate(sent, "transport")};
  }
  return Flush();
}

std::optional<Connection::Failure> Connection::Flush() {
  if (write_in_flight_ > 0 || state_ == State::kClosed || state_ == State::kConnecting) {
    return std::nullopt;
  }
  iovec iov[kMaxTryWriteIovecs];
  // Write synchronously while the kernel takes everything: no request, no loop turn.
  while (!wire_out_.empty()) {
    size_t n = wire_out_.GetIovecs(absl::MakeSpan(iov));
    size_t total = TotalLength(iov, n);
    int rc = uv_try_write(stream(), AsUvBufs(iov), static_cast<unsigned>(n));
    if (rc == UV_EAGAIN) break;
    if (rc < 0) return Failure{ReasonForSocketError(rc), UvStatus("write", rc)};
    wire_out_.Drain(static_cast<size_t>(rc));
    bytes_sent_ += static_cast<uint64_t>(rc);
    if (static_cast<size_t>(rc) < total) break;
  }
  if (wire_out_.empty()) return std::nullopt;
  // The kernel is full: hand a bounded prefix to libuv, which writes it when the socket becomes
  // writable and then calls OnWriteDone. The blocks stay in wire_out_ until then.
  size_t n = wire_out_.GetIovecs(absl::MakeSpan(iov, kMaxWriteInFlightBlocks));
  size_t total = TotalLength(iov, n);
  int rc = uv_write(&handle_->write_req, stream(), AsUvBufs(iov), static_cast<unsigned>(n),
                    [](uv_write_t* req, int status) {
                      if (Connection* c = Handle::Live(req->data)) c->OnWriteDone(status);
                    });
  if (rc < 0) return Failure{ReasonForSocketError(rc), UvStatus("write", rc)};
  write_in_flight_ = total;
  return std::nullopt;
}

void Connection::OnWriteDone(int status) {
  size_t done = std::exchange(write_in_flight_, 0);
  if (status < 0) {
    Fail(ReasonForSocketError(status), UvStatus("write", status), /*defer=*/false);
    return;
  }
  wire_out_.Drain(done);
  bytes_sent_ += done;
  if (holding_) {
    wire_out_.Clear();
    return;
  }
  if (std::optional<Failure> f = Flush()) {
    Fail(f->reason, std::move(f->detail), /*defer=*/false);
    return;
  }
  AfterWriteProgress(/*defer=*/false);
}

bool Connection::CheckHighWatermark() {
  if (above_high_watermark_ || buffered_write_bytes() <= options_.write_high_watermark) {
    return true;
  }
  above_high_watermark_ = true;
  Handle* h = handle_;
  if (callbacks_ != nullptr) callbacks_->OnWriteHighWatermark();
  return h->owner != nullptr && state_ != State::kClosed;
}

bool Connection::AfterWriteProgress(bool defer) {
  if (state_ == State::kClosing) {
    // Close(kFlush): TLS close_notify once the transport has taken every application byte, then
    // close when the socket has taken everything.
    if (write_buffer_.empty() && !transport_shutdown_) {
      transport_shutdown_ = true;
      transport_->Shutdown(wire_out_);
      if (std::optional<Failure> f = Flush()) {
        CloseSocket(/*reset=*/false);
        NotifyClose(CloseReason::kLocalClose, f->detail);
        return false;
      }
    }
    if (write_buffer_.empty() && wire_out_.empty()) {
      // A peer that sent nothing since the close began is not expected to send more: close now.
      if (remote_eof_ || !reading_ ||
          !(closing_received_ || closing_awaits_peer_ || UnreadBytesInSocket())) {
        CloseSocket(/*reset=*/false);
        NotifyClose(CloseReason::kLocalClose, absl::OkStatus());
        return false;
      }
      // A peer still sending (an HTTP/2 client's WINDOW_UPDATEs, the rest of an upload) would
      // get a reset from close(), destroying what it has not read yet. Everything is in the
      // kernel: FIN now (it follows the data), then close when the peer closes too, or when
      // flush_close_timeout ends the wait.
      if (!closing_fin_sent_) {
        closing_fin_sent_ = true;
        uv_os_fd_t fd;
        if (uv_fileno(handle_->handle(), &fd) != 0 || ::shutdown(fd, SHUT_WR) != 0) {
          CloseSocket(/*reset=*/false);
          NotifyClose(CloseReason::kLocalClose, absl::OkStatus());
          return false;
        }
      }
    }
    return true;
  }
  if (state_ != State::kOpen) return state_ != State::kClosed;
  if (std::optional<Failure> f = MaybeShutdown()) {
    Fail(f->reason, std::move(f->detail), defer);
    return false;
  }
  if (above_high_watermark_ && buffered_write_bytes() <= options_.write_low_watermark) {
    above_high_watermark_ = false;
    Handle* h = handle_;
    if (callbacks_ != nullptr) callbacks_->OnWriteLowWatermark();
    return h->owner != nullptr && state_ != State::kClosed;
  }
  return true;
}

std::optional<Connection::Failure> Connection::MaybeShutdown() {
  if (!shutdown_requested_ || shutdown_started_ || state_ != State::kOpen) return std::nullopt;
  // A TLS transport may still hold application bytes (handshake not done): wait for them.
  if (!write_buffer_.empty()) return std::nullopt;
  if (!transport_shutdown_) {
    transport_shutdown_ = true;
    transport_->Shutdown(wire_out_);
    if (std::optional<Failure> f = Flush()) return f;
  }
  if (!wire_out_.empty()) return std::nullopt;
  shutdown_started_ = true;
  int rc = uv_shutdown(&handle_->shutdown_req, stream(), [](uv_shutdown_t* req, int status) {
    if (Connection* c = Handle::Live(req->data)) c->OnShutdownDone(status);
  });
  if (rc < 0) return Failure{ReasonForSocketError(rc), UvStatus("shutdown", rc)};
  return std::nullopt;
}

void Connection::OnShutdownDone(int status) {
  if (status < 0) {
    Fail(ReasonForSocketError(status), UvStatus("shutdown", status), /*defer=*/false);
    return;
  }
  shutdown_done_ = true;
  if (remote_eof_ && state_ == State::kOpen) {
    CloseSocket(/*reset=*/false);
    NotifyClose(CloseReason::kEndOfStream, absl::OkStatus());
  }
}

void Connection::ShutdownWrite() {
  if (shutdown_requested_ || (state_ != State::kOpen && state_ != State::kConnecting)) return;
  shutdown_requested_ = true;
  if (state_ == State::kConnecting) return;  // continues once connected
  if (std::optional<Failure> f = MaybeShutdown()) Fail(f->reason, std::move(f->detail), true);
}

void Connection::ReadDisable() {
  // A closing connection's reads are dropped, never delivered: they go on (lingering close).
  if (++read_disable_count_ == 1 && reading_ && state_ != State::kClosing) {
    uv_read_stop(stream());
    reading_ = false;
  }
}

void Connection::ReadEnable() {
  CHECK(read_disable_count_ > 0) << "ReadEnable without a matching ReadDisable";
  if (--read_disable_count_ == 0) StartReading();
}

void Connection::Close(CloseMode mode) {
  if (send_queued_) {
    Unqueue();
    // Even kNoFlush: the kernel gets what an unbatched Write() would already have given it.
    if (state_ == State::kOpen && mode != CloseMode::kAbort) SendAndFlush();
  }
  if (state_ == State::kClosed) {
    // Closed by an error inside an earlier call whose report is still queued: report it now,
    // as the result of this Close().
    if (close_report_pending_) {
      close_report_pending_ = false;
      timer_.Disable();
      absl::Status detail = std::move(pending_detail_);
      NotifyClose(pending_reason_, detail);
    }
    return;
  }
  if (mode == CloseMode::kFlushThenAwaitPeer) {
    closing_awaits_peer_ = true;
    mode = CloseMode::kFlush;
  }
  if (mode == CloseMode::kFlushBriefly) {
    linger_budget_ = options_.brief_linger_bytes;
    mode = CloseMode::kFlush;
  }
  if (mode == CloseMode::kDropAndHold && state_ == State::kOpen) {
    state_ = State::kClosing;
    holding_ = true;
    linger_budget_ = 0;  // no lingering reads either (StartLingeringReads)
    if (reading_) {
      uv_read_stop(stream());
      reading_ = false;
    }
    read_buffer_.Clear();
    write_buffer_.Clear();
    // Bytes handed to libuv stay until their write ends (OnWriteDone drops them then).
    wire_out_.Truncate(write_in_flight_);
    timer_.Enable(options_.flush_close_timeout);
    return;
  }
  if (mode == CloseMode::kDropAndHold) mode = CloseMode::kNoFlush;
  if (mode == CloseMode::kFlush && state_ == State::kOpen) {
    // Reads continue (read_disable_count_ no longer matters) but are dropped: unread bytes in
    // the socket at close() would make the kernel send a reset (OnReadDone).
    state_ = State::kClosing;
    StartLingeringReads();
    if (std::optional<Failure> f = SendAndFlush()) {
      CloseSocket(/*reset=*/false);
      NotifyClose(CloseReason::kLocalClose, f->detail);
      return;
    }
    if (!AfterWriteProgress(/*defer=*/false)) return;
    timer_.Enable(options_.flush_close_timeout);
    return;
  }
  if (mode == CloseMode::kFlush && state_ == State::kClosing) return;  // already flushing
  CloseSocket(/*reset=*/mode == CloseMode::kAbort);
  NotifyClose(CloseReason::kLocalClose, absl::OkStatus());
}

void Connection::OnConnectDone(int status) {
  timer_.Disable();
  if (status < 0) {
    Fail(CloseReason::kConnectFailed,
         UvStatus(absl::StrCat("connect to ", remote_address_.ToString()), status),
         /*defer=*/false);
    return;
  }
  if (std::optional<Failure> f = OnEstablished()) {
    Fail(f->reason, std::move(f->detail), /*defer=*/false);
    return;
  }
  Handle* h = handle_;
  if (callbacks_ != nullptr) callbacks_->OnConnected();
  if (h->owner == nullptr || state_ == State::kClosed) return;
  if (!CheckHighWatermark()) return;
  AfterWriteProgress(/*defer=*/false);
}

void Connection::OnTimer() {
  if (close_report_pending_) {
    close_report_pending_ = false;
    absl::Status detail = std::move(pending_detail_);
    NotifyClose(pending_reason_, detail);
    return;
  }
  if (state_ == State::kConnecting) {
    // A loop that did not run for a while (a stalled machine or process) runs its expired timers
    // before the I/O that completed meanwhile. A connect the kernel has already settled is not
    // timed out: this turn's poll for I/O reports it (the timer stays as a backstop, once).
    if (!connect_timeout_deferred_ && ConnectSettledInKernel()) {
      connect_timeout_deferred_ = true;
      timer_.Enable(std::chrono::milliseconds(100));
      return;
    }
    Fail(CloseReason::kConnectTimeout,
         absl::DeadlineExceededError(
             absl::StrCat("connect to ", remote_address_.ToString(), " timed out")),
         /*defer=*/false);
    return;
  }
  if (state_ == State::kClosing) {
    size_t unsent = buffered_write_bytes();
    CloseSocket(/*reset=*/false);
    // Everything written and only the peer's close awaited: nothing was lost. A hold dropped
    // its bytes on purpose.
    NotifyClose(CloseReason::kLocalClose,
                unsent == 0 || holding_
                    ? absl::OkStatus()
                    : absl::DeadlineExceededError(
                          absl::StrCat("close flush timed out with ", unsent, " bytes unsent")));
  }
}

bool Connection::ConnectSettledInKernel() {
  int fd = -1;
  if (uv_fileno(handle_->handle(), &fd) != 0) return false;
  pollfd ready{.fd = fd, .events = POLLOUT, .revents = 0};
  return ::poll(&ready, 1, 0) == 1 && (ready.revents & (POLLOUT | POLLERR | POLLHUP)) != 0;
}

void Connection::Fail(CloseReason reason, absl::Status detail, bool defer) {
  if (state_ == State::kClosed) return;
  if (reason == CloseReason::kTransportError) SendLastWords();
  CloseSocket(/*reset=*/false);
  if (defer) {
    close_report_pending_ = true;
    pending_reason_ = reason;
    pending_detail_ = std::move(detail);
    timer_.Enable(Duration::zero());
    return;
  }
  NotifyClose(reason, detail);
}

void Connection::SendLastWords() {
  // Bytes already handed to libuv come first and would be cancelled by the close: no alert
  // can follow them.
  if (state_ != State::kOpen || write_in_flight_ > 0 || wire_out_.empty()) return;
  iovec iov[kMaxTryWriteIovecs];
  const size_t n = wire_out_.GetIovecs(absl::MakeSpan(iov));
  const int rc = uv_try_write(stream(), AsUvBufs(iov), static_cast<unsigned>(n));
  if (rc <= 0) return;
  wire_out_.Drain(static_cast<size_t>(rc));
  bytes_sent_ += static_cast<uint64_t>(rc);
  uv_os_fd_t fd;
  if (uv_fileno(handle_->handle(), &fd) != 0) return;
  char sink[4096];
  for (size_t dropped = 0; dropped < kMaxLastWordsDrain;) {
    const ssize_t got = ::recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
    if (got <= 0) break;
    dropped += static_cast<size_t>(got);
  }
}

void Connection::CloseSocket(bool reset) {
  state_ = State::kClosed;
  reading_ = false;
  timer_.Disable();
  Handle* h = handle_;
  if (h->closing) return;
  h->closing = true;
  // uv_tcp_close_reset refuses while a shutdown is in progress or before there is a socket;
  // a plain close is the fallback.
  if (reset && !h->is_pipe && uv_tcp_close_reset(&h->tcp, &Handle::OnClosed) == 0) return;
  uv_close(h->handle(), &Handle::OnClosed);
}

void Connection::NotifyClose(CloseReason reason, const absl::Status& detail) {
  if (callbacks_ != nullptr) callbacks_->OnClose(reason, detail);
}

}  // namespace meshlet::net

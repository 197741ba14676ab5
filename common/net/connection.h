#pragma once

// Connection: one stream socket (TCP, or a unix-domain socket) on a Loop, with a Transport
// between the socket and the application (plaintext or TLS).
//
// Ownership: whoever created the Connection (Connect()) or received it (Listener's accept
// callback) owns it through the unique_ptr. The Connection owns its Transport and four Buffers:
// wire bytes read, application bytes read (handed to OnData), application bytes not yet given to
// the transport, and wire bytes not yet written. The callbacks object is not owned; it must
// outlive the Connection or be replaced with SetCallbacks(nullptr) first.
//
// Callbacks (ConnectionCallbacks) fire on the loop thread:
//   OnConnected    a Connect() succeeded (never for accepted connections, which start connected).
//   OnData         application bytes arrived, or the peer finished sending (end_stream). The
//                  consumer drains what it uses; bytes it leaves stay at the front of the buffer
//                  and come back, followed by new bytes, on the next OnData.
//   OnWriteHighWatermark / OnWriteLowWatermark
//                  bytes accepted by Write() but not yet sent rose above the high watermark (stop
//                  producing: a proxy disables reading on the other side) / fell back to the low
//                  watermark (resume). They alternate, starting with high.
//   OnClose        exactly once per connection, whatever closed it, including Close(): for
//                  Close(kNoFlush/kAbort) before Close() returns, for Close(kFlush) once the data
//                  is written (or the flush timed out), for Close(kDropAndHold) when the hold
//                  ends. Errors found inside Write() are reported
//                  on a later loop turn, never from inside Write(). After OnClose nothing else
//                  fires. Destroying a Connection never calls callbacks.
// Any callback may destroy the Connection (prefer Loop::DeferDelete) or replace the callbacks;
// the Connection touches nothing of itself after a callback returns if it was destroyed.
//
// Write batching: writes made while a read callback (OnData) of a connection of the same loop
// runs are queued and sent at the end of that loop turn (after all its I/O callbacks), one writev
// per connection (docs/adr/0013). A proxy that answers a request with a head and a body, or
// several HTTP/2 streams of one client whose upstream responses arrived in the same turn, then
// costs one system call and one packet instead of one per Write(). Writes made anywhere else
// (timers, posted functions, outside the loop) are sent at once as before, after anything queued.
// Close() and destruction send what is queued first, as an unbatched Write() would have.
//
// Memory: reads go straight into pooled blocks (no allocation per read), payload moves between
// buffers by relinking blocks, writes use writev on the buffer's blocks, and at most
// kMaxWriteInFlightBlocks blocks are handed to libuv at a time. Memory held by a connection is
// bounded by what the consumer leaves unread plus the write buffer, which the watermarks bound.

#include <uv.h>

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/net/address.h"
#include "common/net/buffer.h"
#include "common/net/transport.h"

namespace meshlet::net {

enum class CloseReason {
  kLocalClose,      // Close() was called
  kEndOfStream,     // both directions finished normally (local ShutdownWrite + peer's EOF)
  kRemoteReset,     // the peer reset the connection (ECONNRESET, EPIPE)
  kConnectFailed,   // connect failed (refused, unreachable, ...)
  kConnectTimeout,  // connect did not finish within its timeout
  kTransportError,  // the Transport (TLS) failed: bad handshake, bad record, ...; what it left
                    // to send (a TLS alert saying why) is written before the close
  kSocketError,     // any other socket error
};
absl::string_view CloseReasonName(CloseReason reason);
// Whether `detail`, the status OnClose gave with kConnectFailed, says the peer refused the
// connection (ECONNREFUSED: nothing listens on the port).
bool IsConnectionRefused(const absl::Status& detail);

enum class CloseMode {
  kFlush,  // stop delivering reads, send everything buffered (then TLS close_notify), then
           // close; what the peer sends meanwhile is read and dropped, and a peer that sent
           // anything gets a FIN and is waited for until it closes too (lingering close: a
           // close() with unread bytes would be a reset, destroying data the peer has not read
           // yet); flush_close_timeout bounds it all.
           // While still connecting there is nothing to flush to, so it acts as kNoFlush
  kFlushThenAwaitPeer,  // kFlush, and once everything is written a FIN and a wait for the
                        // peer's close whatever it sent: for protocols whose peer keeps talking
                        // while it reads (HTTP/2 WINDOW_UPDATE after a GOAWAY), where a close()
                        // before the peer is done reading would reset what it has not read
  kFlushBriefly,        // kFlush for a peer cut off for abuse: while it lingers, at most
                        // ConnectionOptions::brief_linger_bytes more are read and dropped; a peer
                        // still sending then is read no more (its sends stall on a full window) and
                        // is closed at flush_close_timeout, instead of costing a read of everything
                        // it floods until then
  kDropAndHold,  // for a peer cut off for replies it does not read: buffered bytes are dropped
                 // (the kernel still sends what it holds), nothing more is read, and the socket
                 // is closed at flush_close_timeout. The peer's sends stall on a full window
                 // meanwhile: holding it costs a socket, while a close now lets it reconnect and
                 // flood again at once
  kNoFlush,      // close now; buffered bytes are dropped, the kernel still sends what it holds
  kAbort,        // close now with a TCP RST (SO_LINGER 0): the peer sees a reset, not an EOF
};

struct ConnectionOptions {
  // Write buffer watermarks in bytes (application bytes not yet handed to the transport plus wire
  // bytes not yet written). low must be below high.
  size_t write_high_watermark = 1 << 20;
  size_t write_low_watermark = 256 << 10;
  // Close(kFlush) gives up and closes after this long (sending and waiting for the peer's close
  // together).
  Duration flush_close_timeout = std::chrono::seconds(5);
  // Kernel socket buffer sizes; 0 keeps the kernel's (auto-tuned) defaults.
  int send_buffer_bytes = 0;
  int receive_buffer_bytes = 0;
  // Bytes read from the socket in one loop turn before the connection lets the turn's other
  // ready connections go first (reading resumes at the end of the turn). libuv would otherwise
  // read a busy socket up to 32 times per turn: one flooding peer delays every other connection
  // of its worker by that whole batch. 0: no budget.
  size_t read_budget_per_turn = 64 << 10;
  // Close(kFlushBriefly): bytes read and dropped while lingering before reading stops.
  size_t brief_linger_bytes = 64 << 10;
};

class ConnectionCallbacks {
 public:
  virtual ~ConnectionCallbacks() = default;
  virtual void OnConnected() {}
  virtual void OnData(Buffer& data, bool end_stream) = 0;
  virtual void OnWriteHighWatermark() {}
  virtual void OnWriteLowWatermark() {}
  // `detail` says what happened (OK for a normal local close or end of stream).
  virtual void OnClose(CloseReason reason, const absl::Status& detail) = 0;
};

class Connection {
 public:
  // Blocks handed to one uv_write (libuv copies larger iovec arrays to the heap).
  static constexpr size_t kMaxWriteInFlightBlocks = 4;

  // Starts connecting to `address` (TCP or unix socket). Never fails synchronously: every
  // failure, including the timeout (zero: none), arrives as OnClose(kConnectFailed or
  // kConnectTimeout) on a later loop turn, so set the callbacks right after this returns.
  // Writes made while connecting are buffered. `transport_factory` null means plaintext.
  static std::unique_ptr<Connection> Connect(event::Loop& loop, const Address& address,
                                             Duration timeout,
                                             const TransportFactory& transport_factory = nullptr,
                                             const ConnectionOptions& options = {});
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void SetCallbacks(ConnectionCallbacks* callbacks) { callbacks_ = callbacks; }

  // Queues all of `data` (leaving it empty) and writes as much as the socket takes now. Data
  // written after ShutdownWrite() or Close() is dropped.
  void Write(Buffer& data);
  void Write(absl::string_view data);

  // Reading stops while at least one ReadDisable() is not matched by a ReadEnable(), so separate
  // reasons to pause compose.
  void ReadDisable();
  void ReadEnable();
  bool read_enabled() const { return read_disable_count_ == 0; }

  // Half-close: once everything written so far is sent, ends the write side (TLS close_notify,
  // then TCP FIN). Reading continues; when the peer's end_stream arrives too, the connection
  // closes with kEndOfStream.
  void ShutdownWrite();
  void Close(CloseMode mode = CloseMode::kFlush);

  bool connecting() const { return state_ == State::kConnecting; }
  bool open() const { return state_ == State::kOpen; }
  bool closed() const { return state_ == State::kClosed; }
  // The peer finished sending (end_stream was delivered).
  bool remote_closed() const { return remote_eof_; }
  bool write_shutdown() const { return shutdown_requested_; }

  // Known once connected (accepted connections: at once).
  const Address& local_address() const { return local_address_; }
  const Address& remote_address() const { return remote_address_; }

  // Bytes read from / written to the socket (wire bytes, TLS records included).
  uint64_t bytes_received() const { return bytes_received_; }
  // Times reading paused for the rest of a loop turn (ConnectionOptions::read_budget_per_turn).
  uint64_t reads_throttled() const { return reads_throttled_; }
  uint64_t bytes_sent() const { return bytes_sent_; }
  // Bytes accepted by Write() and not yet written to the socket.
  size_t buffered_write_bytes() const { return write_buffer_.length() + wire_out_.length(); }
  bool above_write_high_watermark() const { return above_high_watermark_; }

  // While one lives, writes to connections of `loop` are queued; when the outermost one ends,
  // what was queued is sent at the end of the loop turn. Read callbacks run inside one.
  class WriteBatch {
   public:
    explicit WriteBatch(event::Loop& loop);
    ~WriteBatch();
    WriteBatch(const WriteBatch&) = delete;
    WriteBatch& operator=(const WriteBatch&) = delete;
  };

  // The socket's descriptor, for socket options this class does not cover (the original
  // destination, original_destination.h); -1 once closed. Only to ask: never read, write, close.
  int socket_fd() const;

  Transport& transport() { return *transport_; }
  const Transport& transport() const { return *transport_; }
  event::Loop& loop() { return loop_; }

 private:
  friend class Listener;
  struct Handle;
  enum class State { kConnecting, kOpen, kClosing, kClosed };

  Connection(event::Loop& loop, bool is_pipe, const ConnectionOptions& options);
  // Takes the pending connection from a listening handle (Listener only).
  static absl::StatusOr<std::unique_ptr<Connection>> Accept(
      event::Loop& loop, uv_stream_t* server, bool is_pipe,
      const TransportFactory& transport_factory, const ConnectionOptions& options);

  struct Failure;

  uv_stream_t* stream();
  // The socket is connected: addresses, socket options, transport start, first reads and writes.
  std::optional<Failure> OnEstablished();
  void StartReading();
  void StartLingeringReads();
  // Counts `n` bytes read against this turn's budget; past it, stops reading until the end of
  // the turn. Call last in a read callback.
  void ChargeRead(size_t n);
  static void ResumeThrottledReads(void* handle);
  void BeginReads();  // uv_read_start, unconditionally
  bool UnreadBytesInSocket() const;
  void ApplySocketOptions();
  void OnConnectDone(int status);
  void OnReadDone(ssize_t nread);
  void OnWriteDone(int status);
  void OnShutdownDone(int status);
  void OnTimer();
  // The kernel has finished the connect (either way); the loop may not have seen it yet.
  bool ConnectSettledInKernel();

  // Moves application bytes through the transport and writes what the socket takes.
  std::optional<Failure> SendAndFlush();
  std::optional<Failure> Flush();
  // After bytes moved: continues a pending shutdown or flush-close and reports the low
  // watermark. Returns false if the connection closed or a callback destroyed it.
  bool AfterWriteProgress(bool defer);
  std::optional<Failure> MaybeShutdown();
  // Reports the high watermark if crossed. Returns false if a callback closed or destroyed it.
  bool CheckHighWatermark();
  // Closes the socket and reports OnClose now (from loop callbacks) or on the next loop turn
  // (`defer`: from inside Write() and other calls the owner made).
  // A kTransportError first sends the transport's last words (SendLastWords).
  void Fail(CloseReason reason, absl::Status detail, bool defer);
  // What a failed transport left in wire_out_ (a TLS alert that tells the peer why it was
  // refused) is written now if the socket takes it at once, and unread peer bytes are dropped
  // (up to a bound) so the close that follows sends a FIN after it, not a reset that could
  // destroy it unread.
  void SendLastWords();
  void CloseSocket(bool reset);
  void NotifyClose(CloseReason reason, const absl::Status& detail);
  // Sends bytes queued by a WriteBatch (the tail of an unbatched Write()).
  void SendBatched();
  // Sends every queued connection's bytes (end of the loop turn).
  static void SendQueued(void*);
  // Takes this connection off its thread's batch queue.
  void Unqueue();

  event::Loop& loop_;
  Handle* handle_;
  const ConnectionOptions options_;
  ConnectionCallbacks* callbacks_ = nullptr;
  std::unique_ptr<Transport> transport_;
  event::Timer timer_;  // connect timeout, flush-close timeout, deferred close report

  State state_ = State::kConnecting;
  Buffer wire_in_;       // read from the socket, not yet consumed by the transport
  Buffer read_buffer_;   // application bytes for OnData
  Buffer write_buffer_;  // application bytes not yet taken by the transport
  Buffer wire_out_;      // bytes for the socket; the first write_in_flight_ belong to libuv
  size_t write_in_flight_ = 0;

  bool connect_timeout_deferred_ = false;  // OnTimer gave a settled connect one more poll
  int read_disable_count_ = 0;
  bool reading_ = false;
  // The loop turn of the last read, what was read in it, and whether reading waits for the end
  // of the turn (ConnectionOptions::read_budget_per_turn).
  uint64_t read_turn_ = 0;
  size_t read_this_turn_ = 0;
  bool read_throttled_ = false;
  bool remote_eof_ = false;
  bool shutdown_requested_ = false;
  bool transport_shutdown_ = false;
  bool shutdown_started_ = false;
  bool shutdown_done_ = false;
  // Close(kFlush): the peer sent something meanwhile (it lingers for the peer's close then), and
  // everything is written, FIN sent, the peer's close awaited.
  bool closing_received_ = false;
  bool closing_awaits_peer_ = false;  // kFlushThenAwaitPeer
  // kFlushBriefly: bytes the lingering reads may still drop; 0 once they stopped.
  size_t linger_budget_ = SIZE_MAX;
  bool holding_ = false;  // kDropAndHold: nothing more is written or read until the timer
  bool closing_fin_sent_ = false;
  bool above_high_watermark_ = false;
  // On the thread's batch queue: write_buffer_ holds bytes to send when the batch ends.
  bool send_queued_ = false;
  // A close that happened inside an owner's call, to report from the timer.
  bool close_report_pending_ = false;
  CloseReason pending_reason_ = CloseReason::kLocalClose;
  absl::Status pending_detail_;

  Address local_address_;
  Address remote_address_;
  uint64_t bytes_received_ = 0;
  uint64_t reads_throttled_ = 0;
  uint64_t bytes_sent_ = 0;
};

}  // namespace meshlet::net

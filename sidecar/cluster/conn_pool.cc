#include "sidecar/cluster/conn_pool.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/free_list.h"
#include "common/base/logging.h"
#include "common/net/buffer.h"

namespace meshlet::sidecar::cluster {

absl::string_view PoolFailureReasonName(PoolFailureReason reason) {
  switch (reason) {
    case PoolFailureReason::kConnectFailure:
      return "connect_failure";
    case PoolFailureReason::kConnectRefused:
      return "connect_refused";
    case PoolFailureReason::kOverflow:
      return "overflow";
    case PoolFailureReason::kTimeout:
      return "timeout";
    case PoolFailureReason::kRemoteClose:
      return "remote_close";
  }
  return "unknown";
}

// One request waiting for a stream.
class ConnPool::PendingRequest final : public Cancellable {
 public:
  PendingRequest(ConnPool& pool, http::StreamDecoder& decoder, ConnPoolCallbacks& callbacks,
                 resilience::ResourceGuard request_guard, resilience::ResourceGuard pending_guard,
                 Host::RequestGuard host_guard, MonotonicTime deadline)
      : pool_(pool),
        decoder_(decoder),
        callbacks_(callbacks),
        request_guard_(std::move(request_guard)),
        pending_guard_(std::move(pending_guard)),
        host_guard_(std::move(host_guard)),
        deadline_(deadline) {}

  void Cancel() override { pool_.CancelPending(*this); }

  ConnPool& pool_;
  http::StreamDecoder& decoder_;
  ConnPoolCallbacks& callbacks_;
  resilience::ResourceGuard request_guard_;
  resilience::ResourceGuard pending_guard_;
  Host::RequestGuard host_guard_;
  MonotonicTime deadline_;
  PendingList::iterator pos_;
};

// One stream handed to a caller. It stands between the caller and the codec's stream so the pool
// sees when the stream ends (both directions complete, or reset) and can reuse the connection, and
// so a connection that dies under the stream reports exactly one OnResetStream to the caller.
class ConnPool::ActiveStream final : public http::StreamEncoder,
                                     public http::Stream,
                                     public http::StreamDecoder,
                                     public http::StreamCallbacks,
                                     public ThreadRecycled<ActiveStream> {
 public:
  ActiveStream(Client& client, http::StreamDecoder& decoder,
               resilience::ResourceGuard request_guard, Host::RequestGuard host_guard)
      : client_(client),
        decoder_(decoder),
        request_guard_(std::move(request_guard)),
        host_guard_(std::move(host_guard)) {}

  void SetInner(http::StreamEncoder& inner) {
    inner_ = &inner;
    inner.GetStream().AddCallbacks(*this);
  }

  // http::StreamEncoder
  void Encode1xxHeaders(const http::HeaderMap& headers) override {
    if (inner_ != nullptr) inner_->Encode1xxHeaders(headers);
  }
  void EncodeHeaders(const http::HeaderMap& headers, bool end_stream) override {
    if (inner_ == nullptr) return;
    if (end_stream) encode_complete_ = true;
    inner_->EncodeHeaders(headers, end_stream);
    if (end_stream) MaybeComplete();
  }
  void EncodeData(net::Buffer& data, bool end_stream) override {
    if (inner_ == nullptr) {
      data.Drain(data.length());
      return;
    }
    if (end_stream) encode_complete_ = true;
    inner_->EncodeData(data, end_stream);
    if (end_stream) MaybeComplete();
  }
  void EncodeTrailers(const http::HeaderMap& trailers) override {
    if (inner_ == nullptr) return;
    encode_complete_ = true;
    inner_->EncodeTrailers(trailers);
    MaybeComplete();
  }
  http::Stream& GetStream() override { return *this; }

  // http::Stream
  void AddCallbacks(http::StreamCallbacks& callbacks) override { callbacks_.push_back(&callbacks); }
  void RemoveCallbacks(http::StreamCallbacks& callbacks) override {
    auto it = std::find(callbacks_.begin(), callbacks_.end(), &callbacks);
    if (it != callbacks_.end()) callbacks_.erase(it);
  }
  void ResetStream(http::StreamResetReason reason) override {
    if (done_ || inner_ == nullptr) return;
    // The codec may close the connection under us before it reports the reset; the caller still
    // hears the reason it gave.
    local_reset_ = true;
    local_reset_reason_ = reason;
    inner_->GetStream().ResetStream(reason);
    if (!done_) OnResetStream(reason, "");
  }
  void ReadDisable(bool disable) override {
    if (inner_ != nullptr) inner_->GetStream().ReadDisable(disable);
  }
  uint32_t BufferLimit() const override {
    return inner_ != nullptr ? inner_->GetStream().BufferLimit() : 0;
  }

  // http::StreamDecoder (from the codec)
  void Decode1xxHeaders(http::HeaderMapPtr headers) override {
    if (!done_) decoder_.Decode1xxHeaders(std::move(headers));
  }
  void DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) override {
    if (done_) return;
    if (end_stream) decode_complete_ = true;
    decoder_.DecodeHeaders(std::move(headers), end_stream);
    if (end_stream) MaybeComplete();
  }
  void DecodeData(net::Buffer& data, bool end_stream) override {
    if (done_) return;
    if (end_stream) decode_complete_ = true;
    decoder_.DecodeData(data, end_stream);
    if (end_stream) MaybeComplete();
  }
  void DecodeTrailers(http::HeaderMapPtr trailers) override {
    if (done_) return;
    decode_complete_ = true;
    decoder_.DecodeTrailers(std::move(trailers));
    MaybeComplete();
  }

  // http::StreamCallbacks (from the codec)
  void OnResetStream(http::StreamResetReason reason, absl::string_view details) override;
  void OnAboveWriteBufferHighWatermark() override {
    auto callbacks = callbacks_;
    for (http::StreamCallbacks* cb : callbacks) cb->OnAboveWriteBufferHighWatermark();
  }
  void OnBelowWriteBufferLowWatermark() override {
    auto callbacks = callbacks_;
    for (http::StreamCallbacks* cb : callbacks) cb->OnBelowWriteBufferLowWatermark();
  }

  // The connection closed under the stream.
  void OnConnectionClosed(http::StreamResetReason reason, absl::string_view details) {
    if (done_) return;
    Finish();
    NotifyReset(local_reset_ ? local_reset_reason_ : reason, details);
  }

  bool done() const { return done_; }

  StreamList::iterator pos_;

 private:
  void MaybeComplete();
  // Releases what the stream holds; the stream is over for the pool.
  void Finish();
  void NotifyReset(http::StreamResetReason reason, absl::string_view details) {
    // A callback may remove itself (or others) while we iterate.
    auto callbacks = callbacks_;
    for (http::StreamCallbacks* cb : callbacks) cb->OnResetStream(reason, details);
  }

  Client& client_;
  http::StreamDecoder& decoder_;
  http::StreamEncoder* inner_ = nullptr;  // null once done
  absl::InlinedVector<http::StreamCallbacks*, 2> callbacks_;
  resilience::ResourceGuard request_guard_;
  Host::RequestGuard host_guard_;
  bool encode_complete_ = false;
  bool decode_complete_ = false;
  bool done_ = false;
  bool local_reset_ = false;
  http::StreamResetReason local_reset_reason_ = http::StreamResetReason::kLocalReset;
};

// One upstream connection with its codec.
class ConnPool::Client final : public net::ConnectionCallbacks,
                               public http::CodecIo,
                               public http::ConnectionCallbacks {
 public:
  enum class State { kConnecting, kReady, kBusy, kDraining, kClosed };

  Client(ConnPool& pool, resilience::ResourceGuard cx_guard)
      : pool_(pool),
        cx_guard_(std::move(cx_guard)),
        idle_timer_(pool.loop_, [this] { OnIdleTimeout(); }),
        duration_timer_(pool.loop_, [this] { OnMaxDuration(); }) {}

  void Start() {
    connection_ = net::Connection::Connect(
        pool_.loop_, pool_.host_->address(), pool_.options_.connect_timeout,
        pool_.options_.transport_factory, pool_.options_.connection);
    connection_->SetCallbacks(this);
    // Bytes the codec writes before the connection is up (HTTP/2 preface) are buffered.
    codec_ = pool_.codec_factory_(*this, *this);
    CHECK(codec_ != nullptr) << "codec factory returned null";
  }

  // Streams this connection can take now.
  uint32_t Capacity() const {
    if (state_ == State::kDraining || state_ == State::kClosed || closing_) return 0;
    if (!codec_->CanOpenStream()) return 0;
    uint64_t limit = pool_.StreamsPerConnection();
    uint64_t cap = limit > streams_.size() ? limit - streams_.size() : 0;
    const uint32_t max_requests = pool_.options_.config.max_requests_per_connection;
    if (max_requests > 0) {
      cap = std::min<uint64_t>(cap,
                               max_requests > streams_total_ ? max_requests - streams_total_ : 0);
    }
    return static_cast<uint32_t>(cap);
  }

  bool RequestsExhausted() const {
    const uint32_t max_requests = pool_.options_.config.max_requests_per_connection;
    return max_requests > 0 && streams_total_ >= max_requests;
  }

  // Starts closing; OnClose finishes the job (now or once flushed).
  void CloseConnection(net::CloseMode mode) {
    if (closing_ || state_ == State::kClosed) return;
    closing_ = true;
    connection_->Close(mode);
  }

  // No new streams; close once the streams end.
  void Retire(uint64_t* counter) {
    if (state_ == State::kClosed) return;
    if (counter != nullptr) ++*counter;
    if (state_ != State::kDraining) {
      state_ = State::kDraining;
      pool_.MoveClient(*this, pool_.draining_, /*front=*/false);
    }
    idle_timer_.Disable();
    if (streams_.empty()) CloseConnection(net::CloseMode::kFlush);
  }

  void OnStreamDone(ActiveStream& stream, bool reset) {
    std::unique_ptr<ActiveStream> owned = std::move(*stream.pos_);
    streams_.erase(stream.pos_);
    pool_.loop_.DeferDelete(std::move(owned));
    if (state_ == State::kClosed) return;
    if (reset && pool_.options_.protocol != http::Protocol::kHttp2) {
      // An HTTP/1 message cut short leaves the connection in an unknown state.
      CloseConnection(net::CloseMode::kNoFlush);
      return;
    }
    if (!in_dispatch_) {
      pool_.UpdateClientState(*this);
      pool_.ScheduleProcessPending();
    }
  }

  // net::ConnectionCallbacks
  void OnConnected() override {
    connected_ = true;
    state_ = State::kBusy;  // UpdateClientState moves it to ready
    pool_.MoveClient(*this, pool_.busy_, /*front=*/false);
    const Duration max_duration = pool_.options_.config.max_connection_duration;
    if (max_duration.count() > 0) duration_timer_.Enable(max_duration);
    pool_.UpdateClientState(*this);
    pool_.ProcessPending();
  }

  void OnData(net::Buffer& data, bool end_stream) override {
    if (state_ == State::kClosed) {
      data.Drain(data.length());
      return;
    }
    if (data.length() > 0) {
      in_dispatch_ = true;
      absl::Status status = codec_->Dispatch(data);
      in_dispatch_ = false;
      if (state_ == State::kClosed) return;
      if (!status.ok()) {
        LOG(DEBUG) << "upstream " << pool_.host_->address().ToString()
                   << " protocol error: " << status;
        CloseConnection(net::CloseMode::kNoFlush);
        return;
      }
    }
    if (end_stream) {
      // First lets HTTP/1 finish a response delimited by the close itself. Before the transport
      // handshake finished nothing was exchanged: OnClose reports that as a connect failure.
      const bool handshaken = connection_->transport().HandshakeComplete();
      if (handshaken) {
        in_dispatch_ = true;
        (void)codec_->OnEndOfStream();
        in_dispatch_ = false;
        if (state_ == State::kClosed) return;
      }
      // The peer will send nothing more, so the connection takes no new request. A stream still
      // open is one the codec is finishing from input it holds (HTTP/1 completes or resets it
      // shortly); the connection closes once it is done.
      ++pool_.stats_.cx_remote_close;
      remote_close_counted_ = true;
      if (handshaken && !streams_.empty()) {
        goaway_ = true;
        pool_.UpdateClientState(*this);
        return;
      }
      CloseConnection(net::CloseMode::kNoFlush);
      return;
    }
    pool_.UpdateClientState(*this);
    if (state_ != State::kClosed) pool_.ProcessPending();
  }

  void OnWriteHighWatermark() override { codec_->OnUnderlyingWriteHighWatermark(); }
  void OnWriteLowWatermark() override { codec_->OnUnderlyingWriteLowWatermark(); }

  void OnClose(net::CloseReason reason, const absl::Status& detail) override;

  // http::CodecIo
  void Write(net::Buffer& data) override {
    if (state_ == State::kClosed) {
      data.Drain(data.length());
      return;
    }
    connection_->Write(data);
  }
  size_t UnsentBytes() const override { return connection_->buffered_write_bytes(); }
  void ReadDisable(bool disable) override {
    if (state_ == State::kClosed) return;
    if (disable) {
      connection_->ReadDisable();
    } else {
      connection_->ReadEnable();
    }
  }
  void Close(bool flush) override {
    CloseConnection(flush ? net::CloseMode::kFlush : net::CloseMode::kNoFlush);
  }

  // http::ConnectionCallbacks
  void OnGoAway() override {
    if (goaway_) return;
    goaway_ = true;
    ++pool_.stats_.cx_goaway;
    if (!in_dispatch_) pool_.UpdateClientState(*this);
  }

  void OnIdleTimeout() {
    if (state_ != State::kReady || !streams_.empty()) return;
    Retire(&pool_.stats_.cx_idle_timeout);
  }

  void OnMaxDuration() {
    expired_ = true;
    if (state_ == State::kReady || state_ == State::kBusy) Retire(&pool_.stats_.cx_max_duration);
  }

  ConnPool& pool_;
  std::optional<resilience::ResourceGuard> cx_guard_;
  std::unique_ptr<net::Connection> connection_;
  std::unique_ptr<http::ClientConnection> codec_;
  // After codec_: streams refer to the codec's encoders, so they go first.
  StreamList streams_;
  event::Timer idle_timer_;
  event::Timer duration_timer_;
  State state_ = State::kConnecting;
  ClientList* list_ = nullptr;
  ClientList::iterator pos_;
  uint32_t streams_total_ = 0;
  bool connected_ = false;
  bool closing_ = false;
  bool goaway_ = false;
  bool expired_ = false;
  bool in_dispatch_ = false;
  bool remote_close_counted_ = false;
};

void ConnPool::ActiveStream::OnResetStream(http::StreamResetReason reason,
                                           absl::string_view details) {
  if (done_) return;
  if (local_reset_) reason = local_reset_reason_;
  Finish();
  ++client_.pool_.stats_.rq_reset;
  NotifyReset(reason, details);
  client_.OnStreamDone(*this, /*reset=*/true);
}

void ConnPool::ActiveStream::MaybeComplete() {
  if (done_ || !encode_complete_ || !decode_complete_) return;
  Finish();
  client_.OnStreamDone(*this, /*reset=*/false);
}

void ConnPool::ActiveStream::Finish() {
  done_ = true;
  inner_ = nullptr;
  request_guard_.Release();
  host_guard_.Release();
  --client_.pool_.active_streams_;
}

void ConnPool::Client::OnClose(net::CloseReason reason, const absl::Status& detail) {
  if (state_ == State::kClosed) return;
  // A TLS connection whose handshake never finished failed to connect as far as the request is
  // concerned: the upstream never saw it, so it is as safe to retry as a refused connect.
  const bool established = connected_ && connection_->transport().HandshakeComplete();
  const bool connected = connected_;
  state_ = State::kClosed;
  idle_timer_.Disable();
  duration_timer_.Disable();
  cx_guard_.reset();
  ConnPool& pool = pool_;
  ++pool.stats_.cx_closed;
  const bool local = reason == net::CloseReason::kLocalClose;
  if (!connected && !local) {
    if (reason == net::CloseReason::kConnectTimeout) {
      ++pool.stats_.cx_connect_timeout;
    } else {
      ++pool.stats_.cx_connect_fail;
    }
    ++pool.host_->mutable_stats().cx_connect_fail;
  } else if (!established && (!local || remote_close_counted_)) {
    // Closed by the peer (reset, or an EOF we answered with Close) mid-handshake, or the handshake
    // failed.
    ++pool.stats_.cx_connect_fail;
    ++pool.host_->mutable_stats().cx_connect_fail;
  } else if (connected && !local && !remote_close_counted_) {
    ++pool.stats_.cx_remote_close;
  }
  if (reason == net::CloseReason::kTransportError && !established) {
    // A certificate or identity refused, either way: worth a line, and never a reason to try
    // plaintext instead.
    ++pool.stats_.cx_tls_handshake_fail;
    pool.options_.tls_handshake_failures.Inc();
    LOG_EVERY_N_SEC(WARN, 1) << "upstream " << pool.host_->address().ToString()
                             << ": TLS handshake failed: " << detail.message();
  }
  std::string details(net::CloseReasonName(reason));
  if (!detail.ok()) absl::StrAppend(&details, ": ", detail.message());

  // Off the lists first, so a caller reacting to the resets below cannot be given this
  // connection.
  StreamList streams = std::move(streams_);
  pool.RemoveClient(*this);  // `this` lives until the end of the loop turn
  for (auto& stream : streams) {
    stream->OnConnectionClosed(established ? http::StreamResetReason::kConnectionTermination
                                           : http::StreamResetReason::kConnectionFailure,
                               details);
    pool.loop_.DeferDelete(std::move(stream));
  }
  if (!connected && !local) {
    pool.OnClientConnectFailure(
        details, reason == net::CloseReason::kConnectFailed && net::IsConnectionRefused(detail));
  } else {
    pool.ScheduleProcessPending();
  }
  pool.MaybeFireIdle();
}

ConnPool::ConnPool(event::Loop& loop, HostSharedPtr host, CodecFactory codec_factory,
                   std::shared_ptr<resilience::CircuitBreakerThresholds> thresholds,
                   ConnPoolOptions options)
    : loop_(loop),
      host_(std::move(host)),
      codec_factory_(std::move(codec_factory)),
      thresholds_(std::move(thresholds)),
      options_(std::move(options)),
      process_timer_(loop, [this] { ProcessPending(); }),
      pending_timer_(loop, [this] { OnPendingTimer(); }) {
  CHECK(host_ != nullptr);
  CHECK(thresholds_ != nullptr);
  CHECK(codec_factory_ != nullptr);
}

ConnPool::~ConnPool() {
  // Destroying a net::Connection calls no callbacks; streams and queued requests go silently.
  pending_.clear();
  for (ClientList* list : {&connecting_, &ready_, &busy_, &draining_}) list->clear();
}

size_t ConnPool::connections() const {
  return connecting_.size() + ready_.size() + busy_.size() + draining_.size();
}

uint32_t ConnPool::StreamsPerConnection() const {
  uint32_t streams = 1;
  if (options_.protocol == http::Protocol::kHttp2) {
    streams = std::max<uint32_t>(options_.config.max_concurrent_streams, 1);
  }
  if (options_.config.max_requests_per_connection > 0) {
    streams = std::min(streams, options_.config.max_requests_per_connection);
  }
  return streams;
}

uint64_t ConnPool::ConnectingCapacity() const {
  return static_cast<uint64_t>(connecting_.size()) * StreamsPerConnection();
}

bool ConnPool::TryCreateClient() {
  if (draining_pool_) return false;
  std::optional<resilience::ResourceGuard> guard =
      thresholds_->TryAcquire(resilience::ResourceKind::kConnection);
  if (!guard.has_value()) {
    ++stats_.cx_overflow;
    return false;
  }
  auto client = std::make_unique<Client>(*this, std::move(*guard));
  Client& c = *client;
  connecting_.push_back(std::move(client));
  c.list_ = &connecting_;
  c.pos_ = std::prev(connecting_.end());
  ++stats_.cx_total;
  c.Start();
  return true;
}

void ConnPool::MoveClient(Client& client, ClientList& to, bool front) {
  to.splice(front ? to.begin() : to.end(), *client.list_, client.pos_);
  client.list_ = &to;
}

void ConnPool::RemoveClient(Client& client) {
  std::unique_ptr<Client> owned = std::move(*client.pos_);
  client.list_->erase(client.pos_);
  client.list_ = nullptr;
  loop_.DeferDelete(std::move(owned));
}

void ConnPool::UpdateClientState(Client& client) {
  using State = Client::State;
  if (client.state_ == State::kClosed || client.state_ == State::kConnecting) return;
  if (client.state_ != State::kDraining) {
    // A draining pool's connection serves the requests that waited for it before it retires.
    if (client.goaway_ || client.expired_ || (draining_pool_ && pending_.empty())) {
      client.Retire(nullptr);
      return;
    }
    if (client.RequestsExhausted()) {
      client.Retire(&stats_.cx_max_requests);
      return;
    }
  }
  if (client.state_ == State::kDraining) {
    if (client.streams_.empty()) client.CloseConnection(net::CloseMode::kFlush);
    return;
  }
  if (client.Capacity() > 0) {
    if (client.state_ != State::kReady) {
      client.state_ = State::kReady;
      // Most recently used first: a connection that just finished a request is the next one used.
      MoveClient(client, ready_, /*front=*/true);
    }
  } else if (client.streams_.empty()) {
    // The codec will take no stream (and has none): nothing will ever change that.
    client.Retire(nullptr);
    return;
  } else if (client.state_ != State::kBusy) {
    client.state_ = State::kBusy;
    MoveClient(client, busy_, /*front=*/false);
  }
  const Duration idle_timeout = options_.config.idle_timeout;
  if (client.state_ == State::kReady && client.streams_.empty() && idle_timeout.count() > 0) {
    if (!client.idle_timer_.enabled()) client.idle_timer_.Enable(idle_timeout);
  } else {
    client.idle_timer_.Disable();
  }
}

ConnPool::Client* ConnPool::TakeReadyClient() {
  while (!ready_.empty()) {
    Client& client = *ready_.front();
    if (client.connection_->remote_closed() || !client.connection_->open()) {
      // The peer closed it while idle; never put a request on it.
      if (!client.remote_close_counted_) {
        client.remote_close_counted_ = true;
        ++stats_.cx_remote_close;
      }
      client.Retire(nullptr);
      continue;
    }
    if (client.Capacity() == 0) {
      // The peer lowered its stream limit: UpdateClientState moves it off the ready list.
      UpdateClientState(client);
      continue;
    }
    return &client;
  }
  return nullptr;
}

void ConnPool::AttachStream(Client& client, http::StreamDecoder& decoder,
                            ConnPoolCallbacks& callbacks, resilience::ResourceGuard request_guard,
                            Host::RequestGuard host_guard) {
  auto owned = std::make_unique<ActiveStream>(client, decoder, std::move(request_guard),
                                              std::move(host_guard));
  ActiveStream& stream = *owned;
  client.streams_.push_back(std::move(owned));
  stream.pos_ = std::prev(client.streams_.end());
  ++client.streams_total_;
  ++active_streams_;
  ++stats_.rq_total;
  ++host_->mutable_stats().rq_total;
  client.idle_timer_.Disable();
  stream.SetInner(client.codec_->NewStream(stream));
  UpdateClientState(client);
  callbacks.OnPoolReady(stream, *host_);
}

Cancellable* ConnPool::NewStream(http::StreamDecoder& response_decoder,
                                 ConnPoolCallbacks& callbacks) {
  if (draining_pool_) {
    callbacks.OnPoolFailure(PoolFailureReason::kRemoteClose, "host removed from cluster", *host_);
    return nullptr;
  }
  std::optional<resilience::ResourceGuard> request_guard =
      thresholds_->TryAcquire(resilience::ResourceKind::kRequest);
  if (!request_guard.has_value()) {
    ++stats_.rq_overflow;
    callbacks.OnPoolFailure(PoolFailureReason::kOverflow, "max requests reached", *host_);
    return nullptr;
  }
  Host::RequestGuard host_guard(*host_);
  if (Client* client = TakeReadyClient()) {
    AttachStream(*client, response_decoder, callbacks, std::move(*request_guard),
                 std::move(host_guard));
    return nullptr;
  }
  std::optional<resilience::ResourceGuard> pending_guard =
      thresholds_->TryAcquire(resilience::ResourceKind::kPendingRequest);
  if (!pending_guard.has_value()) {
    ++stats_.rq_pending_overflow;
    callbacks.OnPoolFailure(PoolFailureReason::kOverflow, "max pending requests reached", *host_);
    return nullptr;
  }
  if (ConnectingCapacity() < pending_.size() + 1 && !TryCreateClient() && connections() == 0) {
    // Nothing open, nothing opening, and no room for a connection: waiting cannot help.
    callbacks.OnPoolFailure(PoolFailureReason::kOverflow, "max connections reached", *host_);
    return nullptr;
  }
  const Duration timeout = options_.config.pending_timeout;
  auto request = std::make_unique<PendingRequest>(
      *this, response_decoder, callbacks, std::move(*request_guard), std::move(*pending_guard),
      std::move(host_guard), timeout.count() > 0 ? loop_.Now() + timeout : MonotonicTime::max());
  PendingRequest* raw = request.get();
  pending_.push_back(std::move(request));
  raw->pos_ = std::prev(pending_.end());
  ++stats_.rq_pending_total;
  if (pending_.size() == 1) ArmPendingTimer();
  return raw;
}

void ConnPool::ProcessPending() {
  while (!pending_.empty()) {
    Client* client = TakeReadyClient();
    if (client == nullptr) break;
    std::unique_ptr<PendingRequest> request = std::move(pending_.front());
    pending_.pop_front();
    request->pending_guard_.Release();
    AttachStream(*client, request->decoder_, request->callbacks_,
                 std::move(request->request_guard_), std::move(request->host_guard_));
  }
  if (draining_pool_) {
    // No new connection: what the connections still being made cannot take fails now.
    FailPendingNoConnectionCanServe();
    ArmPendingTimer();
    MaybeFireIdle();
    return;
  }
  while (!pending_.empty() && ConnectingCapacity() < pending_.size()) {
    if (TryCreateClient()) continue;
    if (connections() == 0) {
      // No connection can be opened and none will free up.
      while (!pending_.empty()) {
        FailPending(pending_.begin(), PoolFailureReason::kOverflow, "max connections reached");
      }
    }
    break;
  }
  ArmPendingTimer();
  MaybeFireIdle();
}

void ConnPool::ScheduleProcessPending() {
  if (!pending_.empty() && !process_timer_.enabled()) process_timer_.Enable(Duration(0));
}

void ConnPool::OnClientConnectFailure(absl::string_view details, bool refused) {
  // Fail the requests the remaining connection attempts cannot serve; the router retries them
  // (nothing was sent), most likely on another host.
  const std::string reason = absl::StrCat("connect failure: ", details);
  while (!pending_.empty() && pending_.size() > ConnectingCapacity()) {
    FailPending(pending_.begin(),
                refused ? PoolFailureReason::kConnectRefused : PoolFailureReason::kConnectFailure,
                reason);
  }
}

void ConnPool::FailPending(PendingList::iterator it, PoolFailureReason reason,
                           absl::string_view details) {
  std::unique_ptr<PendingRequest> request = std::move(*it);
  pending_.erase(it);
  ++stats_.rq_pending_failure;
  request->pending_guard_.Release();
  request->request_guard_.Release();
  request->host_guard_.Release();
  request->callbacks_.OnPoolFailure(reason, details, *host_);
}

void ConnPool::CancelPending(PendingRequest& request) {
  ++stats_.rq_cancelled;
  std::unique_ptr<PendingRequest> owned = std::move(*request.pos_);
  pending_.erase(request.pos_);
  owned.reset();
  ArmPendingTimer();
}

void ConnPool::ArmPendingTimer() {
  if (options_.config.pending_timeout.count() <= 0) return;
  if (pending_.empty()) {
    pending_timer_.Disable();
    return;
  }
  // Every request waits the same time, so the oldest expires first.
  pending_timer_.Enable(pending_.front()->deadline_ - loop_.Now());
}

void ConnPool::OnPendingTimer() {
  const MonotonicTime now = loop_.Now();
  while (!pending_.empty() && pending_.front()->deadline_ <= now) {
    FailPending(pending_.begin(), PoolFailureReason::kTimeout,
                "timed out waiting for an upstream connection");
  }
  ArmPendingTimer();
}

void ConnPool::Drain() {
  if (draining_pool_) return;
  draining_pool_ = true;
  // Requests waiting for a connection keep waiting for the connections being made for them,
  // which serve them and then close: failing them would only hand them to a retry (and count a
  // connect failure nobody had). Those no connection in progress can take fail now, newest
  // first, and so do the connections in progress nobody waits for.
  FailPendingNoConnectionCanServe();
  const uint64_t per_connection = StreamsPerConnection();
  const size_t needed = (pending_.size() + per_connection - 1) / per_connection;
  std::vector<Client*> surplus, clients;
  for (auto it = connecting_.rbegin(); it != connecting_.rend(); ++it) {
    if (connecting_.size() - surplus.size() <= needed) break;
    surplus.push_back(it->get());
  }
  for (ClientList* list : {&ready_, &busy_}) {
    for (auto& client : *list) clients.push_back(client.get());
  }
  for (Client* client : surplus) client->CloseConnection(net::CloseMode::kNoFlush);
  for (Client* client : clients) client->Retire(nullptr);
  MaybeFireIdle();
}

void ConnPool::FailPendingNoConnectionCanServe() {
  while (pending_.size() > ConnectingCapacity()) {
    FailPending(std::prev(pending_.end()), PoolFailureReason::kRemoteClose,
                "connection pool drained (host removed or its settings changed)");
  }
}

void ConnPool::CloseIdleConnections() {
  std::vector<Client*> idle;
  for (auto& client : ready_) {
    if (client->streams_.empty()) idle.push_back(client.get());
  }
  for (Client* client : idle) client->Retire(nullptr);
}

void ConnPool::MaybeFireIdle() {
  if (idle() && empty_callback_) empty_callback_();  // may DeferDelete this pool
}

}  // namespace meshlet::sidecar::cluster

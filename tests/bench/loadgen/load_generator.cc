#include "tests/bench/loadgen/load_generator.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/base/random.h"
#include "common/event/timer.h"
#include "common/http/codec.h"
#include "common/http/connection_io.h"
#include "common/http/h1/codec.h"
#include "common/http/h2/codec.h"
#include "common/http/header_map.h"
#include "common/net/buffer.h"
#include "common/net/connection.h"
#include "common/tls/tls_context.h"
#include "common/tls/tls_context_provider.h"
#include "common/tls/tls_transport.h"
#include "tests/bench/loadgen/precise_timer.h"

namespace meshlet::loadgen {
namespace {

using Clock = std::chrono::steady_clock;

// A connection that failed to connect is tried again after this long.
constexpr Duration kReconnectDelay = std::chrono::milliseconds(100);
// How often requests are checked against request_timeout (at most).
constexpr Duration kSweepInterval = std::chrono::milliseconds(50);

// Closed loop: the requests kept in flight; 0 for the open loop.
size_t ClosedLoopConcurrency(const LoadOptions& options) {
  if (options.rate > 0) return 0;
  if (options.concurrency > 0) return options.concurrency;
  return options.connections *
         (options.protocol == HttpVersion::kHttp2 ? options.max_streams : size_t{1});
}

uint64_t Nanos(Duration d) { return d.count() < 0 ? 0 : static_cast<uint64_t>(d.count()); }

class Generator;
class Conn;

// One request slot: the decoder of a response and the callbacks of its stream. Reused.
class Request final : public http::StreamDecoder, public http::StreamCallbacks {
 public:
  explicit Request(Generator& generator) : generator_(generator) {}

  void DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) override;
  void DecodeData(net::Buffer& data, bool end_stream) override;
  void DecodeTrailers(http::HeaderMapPtr trailers) override;
  void OnResetStream(http::StreamResetReason reason, absl::string_view details) override;

  Generator& generator_;
  Conn* conn = nullptr;
  http::StreamEncoder* encoder = nullptr;
  MonotonicTime intended;
  MonotonicTime sent_at;
  int status = 0;
  bool grpc_ok = false;  // grpc-status 0 seen
  bool active = false;
  bool timed_out = false;
};

// A FIFO of intended send times with a fixed capacity, grown by doubling up to it.
class TimeQueue {
 public:
  explicit TimeQueue(size_t limit) : limit_(limit) { ring_.resize(std::min<size_t>(limit, 1024)); }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  bool full() const { return size_ >= limit_; }
  void Push(MonotonicTime t) {
    if (size_ == ring_.size()) Grow();
    ring_[(head_ + size_) % ring_.size()] = t;
    ++size_;
  }
  MonotonicTime Pop() {
    const MonotonicTime t = ring_[head_];
    head_ = (head_ + 1) % ring_.size();
    --size_;
    return t;
  }
  template <typename F>
  void ForEach(F&& f) const {
    for (size_t i = 0; i < size_; ++i) f(ring_[(head_ + i) % ring_.size()]);
  }

 private:
  void Grow() {
    std::vector<MonotonicTime> bigger(std::min(ring_.size() * 2, limit_));
    for (size_t i = 0; i < size_; ++i) bigger[i] = ring_[(head_ + i) % ring_.size()];
    ring_.swap(bigger);
    head_ = 0;
  }
  const size_t limit_;
  std::vector<MonotonicTime> ring_;
  size_t head_ = 0;
  size_t size_ = 0;
};

// One client connection and its codec; reconnects when it closes (until the run stops).
class Conn final : private net::ConnectionCallbacks, private http::ConnectionCallbacks {
 public:
  Conn(Generator& generator, event::Loop& loop);
  ~Conn() override;

  void Connect();
  // Closes for good (the run is over): no reconnect.
  void Shutdown();
  bool CanSend() const;
  http::ClientConnection& codec() { return *codec_; }

  size_t in_flight = 0;
  bool in_available = false;
  bool protocol_error = false;
  bool ready = false;    // connected (and the TLS handshake done): requests may go
  bool settled = false;  // connected or failed at least once (for the start)

 private:
  void OnConnected() override;
  void OnData(net::Buffer& data, bool end_stream) override;
  void OnWriteHighWatermark() override { codec_->OnUnderlyingWriteHighWatermark(); }
  void OnWriteLowWatermark() override { codec_->OnUnderlyingWriteLowWatermark(); }
  void OnClose(net::CloseReason reason, const absl::Status& detail) override;
  void MarkReady();
  void Drop();

  Generator& generator_;
  event::Loop& loop_;
  std::unique_ptr<net::Connection> connection_;
  std::unique_ptr<http::ConnectionIo> io_;
  std::unique_ptr<http::ClientConnection> codec_;
  event::Timer ready_timer_;  // the turn after the TLS handshake completed
  event::Timer reconnect_timer_;
  bool connected_ = false;
  bool shutdown_ = false;
};

class Generator {
 public:
  Generator(event::Loop& loop, const LoadOptions& options, net::TransportFactory transport)
      : loop_(loop),
        options_(options),
        transport_(std::move(transport)),
        queue_(options.max_queued),
        random_(options.seed),
        sweep_timer_(loop, [this] { Sweep(); }),
        dispatch_timer_(loop, [this] { DispatchQueued(); }),
        drain_timer_(loop, [this] { finished_ = true; }) {}

  absl::StatusOr<LoadResult> Run();

  // For Conn and Request.
  const LoadOptions& options() const { return options_; }
  const net::TransportFactory& transport() const { return transport_; }
  void OnConnReady(Conn& conn);
  void OnConnectFailed(const absl::Status& detail) {
    ++result_.connect_failures;
    last_connect_error_ = detail;
  }
  void OnConnOpened() { ++result_.connections_opened; }
  void OnConnLost() {
    if (counting_) ++result_.connections_lost;
  }
  void OnResponse(Request& request);
  void OnRequestFailed(Request& request, RequestError error);

 private:
  bool open_loop() const { return options_.rate > 0; }
  bool InWindow(MonotonicTime intended) const { return intended >= window_begin_; }
  void OnScheduleTimer();
  void Enqueue(MonotonicTime intended);
  void AdvanceSchedule();
  void PushAvailable(Conn& conn);
  Conn* PopAvailable();
  void DispatchQueued();
  void Send(Conn& conn, MonotonicTime intended);
  // Frees the request's slot; `dispatch_now`: sends what is queued at once (from a completed
  // response; a codec allows a new stream from inside its last callback).
  void Release(Request& request, bool dispatch_now);
  void Sweep();
  void MaybeFinish();
  // Keeps the response among the options_.slowest slowest so far (a min-heap by latency).
  void KeepIfSlowest(MonotonicTime intended, MonotonicTime done);

  event::Loop& loop_;
  const LoadOptions options_;
  const net::TransportFactory transport_;
  TimeQueue queue_;
  RealRandom random_;
  LoadResult result_;
  bool counting_ = true;
  bool scheduling_done_ = false;
  bool finished_ = false;
  bool stopped_ = false;  // the run is over: nothing more is sent
  absl::Status last_connect_error_;

  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<Conn*> available_;  // ring of connections that can take a request
  size_t available_head_ = 0;
  size_t available_count_ = 0;
  std::vector<std::unique_ptr<Request>> requests_;
  std::vector<Request*> free_requests_;
  size_t in_flight_ = 0;

  http::HeaderMap head_;
  std::string body_;

  MonotonicTime start_;
  MonotonicTime window_begin_;
  MonotonicTime window_end_;
  MonotonicTime next_;  // the next intended send time (open loop)
  uint64_t next_index_ = 0;
  std::unique_ptr<PreciseTimer> schedule_timer_;
  event::Timer sweep_timer_;
  // Dispatches on the next turn what a failed request's slot may take: never from inside the
  // reset of a stream, whose codec may be closing.
  event::Timer dispatch_timer_;
  event::Timer drain_timer_;
};

// --- Request ---

void Request::DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) {
  if (!active) return;
  const std::optional<absl::string_view> status_text = headers->Get(":status");
  if (!status_text.has_value() || !absl::SimpleAtoi(*status_text, &status)) status = 0;
  if (end_stream) {
    // gRPC trailers-only: the status is in the headers.
    grpc_ok = headers->Get("grpc-status") == absl::string_view("0");
    generator_.OnResponse(*this);
  }
}

void Request::DecodeData(net::Buffer& data, bool end_stream) {
  data.Clear();
  if (active && end_stream) generator_.OnResponse(*this);
}

void Request::DecodeTrailers(http::HeaderMapPtr trailers) {
  grpc_ok = trailers->Get("grpc-status") == absl::string_view("0");
  if (active) generator_.OnResponse(*this);
}

void Request::OnResetStream(http::StreamResetReason, absl::string_view) {
  if (!active) return;
  encoder = nullptr;
  generator_.OnRequestFailed(*this, timed_out              ? RequestError::kTimeout
                                    : conn->protocol_error ? RequestError::kProtocol
                                                           : RequestError::kReset);
}

// --- Conn ---

Conn::Conn(Generator& generator, event::Loop& loop)
    : generator_(generator),
      loop_(loop),
      ready_timer_(loop, [this] { MarkReady(); }),
      reconnect_timer_(loop, [this] { Connect(); }) {}

Conn::~Conn() {
  shutdown_ = true;
  Drop();
}

void Conn::Connect() {
  const LoadOptions& options = generator_.options();
  connected_ = false;
  ready = false;
  protocol_error = false;
  in_flight = 0;
  connection_ = net::Connection::Connect(loop_, options.address, options.connect_timeout,
                                         generator_.transport());
  connection_->SetCallbacks(this);
  io_ = std::make_unique<http::ConnectionIo>(*connection_);
  if (options.protocol == HttpVersion::kHttp2) {
    http::h2::Http2Options h2;
    h2.default_scheme = options.tls.enabled ? "https" : "http";
    h2.assumed_peer_max_concurrent_streams = options.max_streams;
    codec_ = std::make_unique<http::h2::ClientCodec>(
        *io_, static_cast<http::ConnectionCallbacks&>(*this), h2, &loop_);
  } else {
    codec_ = std::make_unique<http::h1::ClientCodec>(
        loop_, *io_, static_cast<http::ConnectionCallbacks&>(*this));
  }
}

bool Conn::CanSend() const {
  const size_t limit =
      generator_.options().protocol == HttpVersion::kHttp2 ? generator_.options().max_streams : 1;
  return ready && in_flight < limit && codec_ != nullptr && codec_->CanOpenStream();
}

void Conn::OnConnected() {
  connected_ = true;
  if (connection_->transport().HandshakeComplete()) {
    MarkReady();
    return;
  }
  // TLS: ready once the handshake completes; the callback may not write, so a turn later.
  connection_->transport().SetHandshakeCompleteCallback(
      [this] { ready_timer_.Enable(Duration::zero()); });
}

void Conn::MarkReady() {
  if (connection_ == nullptr || connection_->closed()) return;
  ready = true;
  settled = true;
  generator_.OnConnOpened();
  generator_.OnConnReady(*this);
}

void Conn::OnData(net::Buffer& data, bool end_stream) {
  absl::Status status = codec_->Dispatch(data);
  // The codec may have closed the connection itself (OnClose dropped it).
  if (connection_ == nullptr) return;
  if (status.ok() && end_stream) status = codec_->OnEndOfStream();
  if (connection_ == nullptr) return;
  if (!status.ok()) {
    LOG_EVERY_N_SEC(WARN, 1) << "closing a connection: " << status;
    protocol_error = true;
    connection_->Close(net::CloseMode::kNoFlush);
    return;
  }
  if (end_stream && !connection_->closed()) {
    connection_->Close(net::CloseMode::kNoFlush);
  }
}

void Conn::OnClose(net::CloseReason reason, const absl::Status& detail) {
  const bool was_ready = ready;
  ready = false;
  settled = true;
  if (was_ready) {
    generator_.OnConnLost();
  } else {
    generator_.OnConnectFailed(detail.ok() ? absl::UnavailableError(net::CloseReasonName(reason))
                                           : detail);
  }
  // Requests in flight fail now (OnResetStream), before the codec goes.
  codec_->OnConnectionClosed();
  Drop();
  if (!shutdown_) reconnect_timer_.Enable(was_ready ? Duration::zero() : kReconnectDelay);
}

void Conn::Drop() {
  ready_timer_.Disable();
  if (connection_ != nullptr) {
    connection_->SetCallbacks(nullptr);
    if (!connection_->closed()) connection_->Close(net::CloseMode::kNoFlush);
  }
  // Possibly inside the connection's or the codec's own call: deleted at the end of the turn, the
  // codec first (it refers to the ConnectionIo, which refers to the connection).
  loop_.DeferDelete(std::move(codec_));
  loop_.DeferDelete(std::move(io_));
  loop_.DeferDelete(std::move(connection_));
}

void Conn::Shutdown() {
  shutdown_ = true;
  reconnect_timer_.Disable();
  if (connection_ == nullptr) return;
  ready = false;
  if (codec_ != nullptr) codec_->OnConnectionClosed();
  Drop();
}

// --- Generator ---

void Generator::OnConnReady(Conn& conn) {
  PushAvailable(conn);
  DispatchQueued();
}

void Generator::PushAvailable(Conn& conn) {
  if (conn.in_available || !conn.CanSend()) return;
  conn.in_available = true;
  available_[(available_head_ + available_count_) % available_.size()] = &conn;
  ++available_count_;
}

Conn* Generator::PopAvailable() {
  while (available_count_ > 0) {
    Conn* conn = available_[available_head_];
    available_head_ = (available_head_ + 1) % available_.size();
    --available_count_;
    conn->in_available = false;
    if (conn->CanSend()) return conn;
  }
  return nullptr;
}

void Generator::Enqueue(MonotonicTime intended) {
  const bool in_window = InWindow(intended);
  if (in_window) {
    ++result_.scheduled;
  } else {
    ++result_.warmup_requests;
  }
  if (queue_.full()) {
    if (in_window) ++result_.dropped;
    return;
  }
  queue_.Push(intended);
}

void Generator::DispatchQueued() {
  if (stopped_) return;
  while (!queue_.empty()) {
    Conn* conn = PopAvailable();
    if (conn == nullptr) return;
    Send(*conn, queue_.Pop());
    // Back of the ring: HTTP/2 requests spread over the connections.
    PushAvailable(*conn);
  }
}

void Generator::Send(Conn& conn, MonotonicTime intended) {
  CHECK(!free_requests_.empty()) << "more requests in flight than slots";
  Request& request = *free_requests_.back();
  free_requests_.pop_back();
  const MonotonicTime now = Clock::now();
  request.conn = &conn;
  request.intended = intended;
  request.sent_at = now;
  request.status = 0;
  request.grpc_ok = false;
  request.timed_out = false;
  request.active = true;
  ++conn.in_flight;
  ++in_flight_;
  if (InWindow(intended) && counting_) {
    ++result_.sent;
    const Duration lag = now - intended;
    result_.send_lag.Record(Nanos(lag));
    if (lag > options_.late_threshold) ++result_.late;
  }
  http::StreamEncoder& encoder = conn.codec().NewStream(request);
  request.encoder = &encoder;
  encoder.GetStream().AddCallbacks(request);
  encoder.EncodeHeaders(head_, body_.empty());
  if (request.active && request.conn == &conn && !body_.empty()) {
    net::Buffer body;
    body.Append(body_);
    encoder.EncodeData(body, true);
  }
}

void Generator::Release(Request& request, bool dispatch_now) {
  Conn* conn = request.conn;
  request.active = false;
  request.encoder = nullptr;
  request.conn = nullptr;
  --conn->in_flight;
  --in_flight_;
  free_requests_.push_back(&request);
  if (!open_loop() && !scheduling_done_) Enqueue(Clock::now());
  PushAvailable(*conn);
  if (dispatch_now) {
    DispatchQueued();
  } else if (!stopped_) {
    dispatch_timer_.Enable(Duration::zero());
  }
  MaybeFinish();
}

void Generator::OnResponse(Request& request) {
  const MonotonicTime now = Clock::now();
  if (InWindow(request.intended) && counting_) {
    result_.latency.Record(Nanos(now - request.intended));
    if (options_.slowest > 0) KeepIfSlowest(request.intended, now);
    if (request.status >= 200 && request.status <= 299 && (!options_.grpc || request.grpc_ok)) {
      ++result_.ok;
    } else {
      ++result_.non_2xx;
    }
  }
  Release(request, /*dispatch_now=*/true);
}

void Generator::KeepIfSlowest(MonotonicTime intended, MonotonicTime done) {
  auto faster = [](const SlowResponse& a, const SlowResponse& b) { return a.latency > b.latency; };
  const SlowResponse response{intended - window_begin_, done - intended};
  std::vector<SlowResponse>& heap = result_.slowest;
  if (heap.size() < options_.slowest) {
    heap.push_back(response);  // within the capacity reserved before the run
    std::push_heap(heap.begin(), heap.end(), faster);
  } else if (response.latency > heap.front().latency) {
    std::pop_heap(heap.begin(), heap.end(), faster);
    heap.back() = response;
    std::push_heap(heap.begin(), heap.end(), faster);
  }
}

void Generator::OnRequestFailed(Request& request, RequestError error) {
  if (InWindow(request.intended) && counting_) {
    ++result_.errors;
    ++result_.errors_by_kind[static_cast<size_t>(error)];
  }
  Release(request, /*dispatch_now=*/false);
}

void Generator::AdvanceSchedule() {
  ++next_index_;
  if (options_.arrivals == Arrivals::kPoisson) {
    // Exponential gaps of mean 1/rate.
    const double gap_s = -std::log1p(-random_.UniformDouble()) / options_.rate;
    next_ += std::chrono::nanoseconds(static_cast<int64_t>(gap_s * 1e9));
  } else {
    // From the start each time, so rounding does not accumulate.
    next_ = start_ + std::chrono::nanoseconds(static_cast<int64_t>(
                         std::llround(static_cast<double>(next_index_) * 1e9 / options_.rate)));
  }
}

void Generator::OnScheduleTimer() {
  net::Connection::WriteBatch batch(loop_);
  if (!open_loop()) {
    // Closed loop: the window has ended.
    scheduling_done_ = true;
    drain_timer_.Enable(options_.request_timeout);
    MaybeFinish();
    return;
  }
  const MonotonicTime now = Clock::now();
  while (next_ <= now && next_ < window_end_) {
    Enqueue(next_);
    AdvanceSchedule();
  }
  DispatchQueued();
  if (next_ < window_end_) {
    schedule_timer_->Arm(next_);
    return;
  }
  scheduling_done_ = true;
  drain_timer_.Enable(options_.request_timeout);
  MaybeFinish();
}

void Generator::Sweep() {
  const MonotonicTime now = Clock::now();
  for (const std::unique_ptr<Request>& request : requests_) {
    if (!request->active || request->encoder == nullptr) continue;
    if (now - request->sent_at < options_.request_timeout) continue;
    request->timed_out = true;
    request->encoder->GetStream().ResetStream(http::StreamResetReason::kLocalReset);
  }
  // A connection whose stream ended without a callback that freed it (an early response) comes
  // back here.
  for (const std::unique_ptr<Conn>& conn : conns_) PushAvailable(*conn);
  DispatchQueued();
}

void Generator::MaybeFinish() {
  if (scheduling_done_ && queue_.empty() && in_flight_ == 0) finished_ = true;
}

absl::StatusOr<LoadResult> Generator::Run() {
  // What every request sends, made once.
  head_.Add(":method", options_.grpc ? absl::string_view("POST") : options_.method);
  head_.Add(":path", options_.path);
  head_.Add(":authority",
            options_.authority.empty() ? options_.address.ToString() : options_.authority);
  head_.Add(":scheme", options_.tls.enabled ? "https" : "http");
  for (const auto& [name, value] : options_.headers) head_.Add(name, value);
  if (options_.grpc) {
    head_.Add("content-type", "application/grpc");
    head_.Add("te", "trailers");
    // One uncompressed message: flag 0, 4-byte big-endian length, the message.
    const uint32_t n = static_cast<uint32_t>(options_.body_bytes);
    body_ = {'\0', static_cast<char>(n >> 24), static_cast<char>(n >> 16),
             static_cast<char>(n >> 8), static_cast<char>(n)};
    body_.append(options_.body_bytes, 'x');
  } else {
    body_.assign(options_.body_bytes, 'x');
  }
  if (!body_.empty()) head_.Add("content-length", absl::StrCat(body_.size()));

  absl::StatusOr<std::unique_ptr<PreciseTimer>> timer =
      PreciseTimer::Create(loop_, [this] { OnScheduleTimer(); });
  if (!timer.ok()) return timer.status();
  schedule_timer_ = *std::move(timer);

  const size_t per_connection = options_.protocol == HttpVersion::kHttp2 ? options_.max_streams : 1;
  const size_t slots = options_.connections * per_connection;
  requests_.reserve(slots);
  free_requests_.reserve(slots);
  for (size_t i = 0; i < slots; ++i) {
    requests_.push_back(std::make_unique<Request>(*this));
    free_requests_.push_back(requests_.back().get());
  }
  available_.assign(options_.connections, nullptr);
  for (size_t i = 0; i < options_.connections; ++i) {
    conns_.push_back(std::make_unique<Conn>(*this, loop_));
  }
  for (const std::unique_ptr<Conn>& conn : conns_) conn->Connect();

  // Every connection up (or failed once) before the schedule starts.
  loop_.RunUntil(
      [this] {
        return std::all_of(conns_.begin(), conns_.end(),
                           [](const std::unique_ptr<Conn>& c) { return c->settled; });
      },
      options_.connect_timeout + std::chrono::milliseconds(100));
  const bool any_ready = std::any_of(conns_.begin(), conns_.end(),
                                     [](const std::unique_ptr<Conn>& c) { return c->ready; });
  if (!any_ready) {
    stopped_ = true;
    for (const std::unique_ptr<Conn>& conn : conns_) conn->Shutdown();
    conns_.clear();
    schedule_timer_.reset();
    loop_.RunUntilIdle();
    return absl::UnavailableError(
        absl::StrCat("cannot connect to ", options_.address.ToString(), ": ",
                     last_connect_error_.ok() ? "no connection within the connect timeout"
                                              : std::string(last_connect_error_.message())));
  }

  result_.slowest.reserve(options_.slowest);
  start_ = Clock::now();
  result_.started = start_;
  window_begin_ = start_ + options_.warmup;
  window_end_ = window_begin_ + options_.duration;
  next_ = start_;
  result_.measured = options_.duration;
  sweep_timer_.EnableRepeating(std::min<Duration>(kSweepInterval, options_.request_timeout / 4));
  if (open_loop()) {
    schedule_timer_->Arm(next_);
  } else {
    for (size_t i = 0; i < ClosedLoopConcurrency(options_); ++i) Enqueue(start_);
    DispatchQueued();
    schedule_timer_->Arm(window_end_);
  }
  loop_.RunUntil(
      [this] { return finished_; },
      options_.warmup + options_.duration + options_.request_timeout + std::chrono::seconds(5));

  // What did not finish in time.
  queue_.ForEach([this](MonotonicTime intended) {
    if (InWindow(intended)) ++result_.unfinished;
  });
  for (const std::unique_ptr<Request>& request : requests_) {
    if (request->active && InWindow(request->intended)) ++result_.unfinished;
  }
  counting_ = false;
  stopped_ = true;
  dispatch_timer_.Disable();
  sweep_timer_.Disable();
  drain_timer_.Disable();
  schedule_timer_.reset();
  for (const std::unique_ptr<Conn>& conn : conns_) conn->Shutdown();
  loop_.RunUntilIdle();
  conns_.clear();
  loop_.RunUntilIdle();
  std::sort(result_.slowest.begin(), result_.slowest.end(),
            [](const SlowResponse& a, const SlowResponse& b) { return a.at < b.at; });
  return std::move(result_);
}

absl::StatusOr<net::TransportFactory> MakeTransport(const LoadOptions& options) {
  if (!options.tls.enabled) return net::TransportFactory();
  tls::TlsContextConfig config;
  config.trust_bundle_pem = options.tls.trust_bundle_pem;
  config.certificate_chain_pem = options.tls.certificate_chain_pem;
  config.private_key_pem = options.tls.private_key_pem;
  config.alpn_protocols = {options.protocol == HttpVersion::kHttp2 ? "h2" : "http/1.1"};
  absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
      tls::TlsContext::CreateClient(config);
  if (!context.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS client configuration: ", context.status().message()));
  }
  tls::TlsSession::Options session;
  session.server_name = options.tls.server_name;
  session.verify_peer_name =
      options.tls.server_name.empty() ? options.address.ip() : options.tls.server_name;
  return tls::TlsTransport::Factory(std::make_shared<tls::TlsContextProvider>(*context), session);
}

std::string Micros(uint64_t nanos) { return absl::StrFormat("%.3f", nanos / 1000.0); }

void AppendLatency(std::string& out, const char* name, const LatencyHistogram& h) {
  absl::StrAppend(
      &out, "\"", name, "\":{\"count\":", h.count(), ",\"min\":", Micros(h.min()),
      ",\"mean\":", absl::StrFormat("%.3f", h.mean() / 1000.0),
      ",\"p50\":", Micros(h.ValueAtPercentile(50)), ",\"p90\":", Micros(h.ValueAtPercentile(90)),
      ",\"p99\":", Micros(h.ValueAtPercentile(99)),
      ",\"p99_9\":", Micros(h.ValueAtPercentile(99.9)),
      ",\"p99_99\":", Micros(h.ValueAtPercentile(99.99)), ",\"max\":", Micros(h.max()), "}");
}

}  // namespace

const char* RequestErrorName(RequestError error) {
  switch (error) {
    case RequestError::kReset:
      return "reset";
    case RequestError::kTimeout:
      return "timeout";
    case RequestError::kProtocol:
      return "protocol";
  }
  return "unknown";
}

double LoadResult::AchievedRate() const {
  const double seconds = std::chrono::duration<double>(measured).count();
  return seconds <= 0 ? 0.0 : static_cast<double>(ok + non_2xx) / seconds;
}

absl::Status ValidateOptions(const LoadOptions& options) {
  if (options.address.port() == 0 && options.address.is_ip()) {
    return absl::InvalidArgumentError("--address: a port is required");
  }
  if (!(options.rate >= 0) || !std::isfinite(options.rate)) {
    return absl::InvalidArgumentError("--rate: must be a number of requests/s, at least 0");
  }
  if (options.connections == 0) {
    return absl::InvalidArgumentError("--connections: must be at least 1");
  }
  if (options.max_streams == 0) {
    return absl::InvalidArgumentError("--max-streams: must be at least 1");
  }
  if (options.duration <= Duration::zero()) {
    return absl::InvalidArgumentError("--duration: must be positive");
  }
  if (options.warmup < Duration::zero()) {
    return absl::InvalidArgumentError("--warmup: must not be negative");
  }
  if (options.request_timeout <= Duration::zero()) {
    return absl::InvalidArgumentError("--request-timeout: must be positive");
  }
  if (options.connect_timeout <= Duration::zero()) {
    return absl::InvalidArgumentError("--connect-timeout: must be positive");
  }
  if (options.grpc && options.protocol != HttpVersion::kHttp2) {
    return absl::InvalidArgumentError("--grpc: needs --protocol h2");
  }
  if (options.grpc && options.body_bytes > UINT32_MAX) {
    return absl::InvalidArgumentError("--body-bytes: a gRPC message is at most 4 GiB");
  }
  if (options.slowest > kMaxSlowest) {
    return absl::InvalidArgumentError(
        absl::StrCat("--slowest: at most ", kMaxSlowest, " responses are listed"));
  }
  if (options.max_queued == 0) {
    return absl::InvalidArgumentError("--max-queued: must be at least 1");
  }
  if (options.method.empty() || options.path.empty() || options.path[0] != '/') {
    return absl::InvalidArgumentError(
        options.method.empty() ? "--method: must not be empty"
                               : "--path: must be an origin-form path starting with '/'");
  }
  for (const auto& [name, value] : options.headers) {
    if (name.empty() || name[0] == ':' || absl::AsciiStrToLower(name) != name ||
        name == "content-length" || name == "host" || name == "connection" ||
        name == "transfer-encoding") {
      return absl::InvalidArgumentError(
          absl::StrCat("--header \"", name, ": ", value,
                       "\": the name must be a lower-case field name other than host, connection, "
                       "content-length and transfer-encoding (the tool sets those)"));
    }
  }
  if (options.tls.enabled) {
    if (options.tls.trust_bundle_pem.empty()) {
      return absl::InvalidArgumentError(
          "--tls-ca: required with --tls (the roots that verify "
          "the server)");
    }
    if (options.tls.certificate_chain_pem.empty() != options.tls.private_key_pem.empty()) {
      return absl::InvalidArgumentError("--tls-cert and --tls-key: give both or neither");
    }
  } else if (!options.tls.certificate_chain_pem.empty() || !options.tls.server_name.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert/--tls-server-name: only with --tls (the connection is plaintext)");
  }
  return absl::OkStatus();
}

absl::StatusOr<LoadResult> RunLoad(event::Loop& loop, const LoadOptions& options) {
  absl::Status valid = ValidateOptions(options);
  if (!valid.ok()) return valid;
  absl::StatusOr<net::TransportFactory> transport = MakeTransport(options);
  if (!transport.ok()) return transport.status();
  Generator generator(loop, options, *std::move(transport));
  return generator.Run();
}

std::string ResultJson(const LoadOptions& options, const LoadResult& result) {
  std::string out = "{";
  absl::StrAppend(
      &out, "\"protocol\":", options.protocol == HttpVersion::kHttp2 ? "\"h2\"" : "\"http/1.1\"",
      ",\"tls\":", options.tls.enabled ? "true" : "false",
      ",\"client_certificate\":", options.tls.certificate_chain_pem.empty() ? "false" : "true",
      ",\"grpc\":", options.grpc ? "true" : "false",
      ",\"mode\":", options.rate > 0 ? "\"open\"" : "\"closed\"",
      ",\"arrivals\":", options.arrivals == Arrivals::kPoisson ? "\"poisson\"" : "\"constant\"",
      ",\"target_rate\":", absl::StrFormat("%.3f", options.rate),
      ",\"connections\":", options.connections,
      ",\"max_streams\":", options.protocol == HttpVersion::kHttp2 ? options.max_streams : 1,
      ",\"concurrency\":", ClosedLoopConcurrency(options), ",\"body_bytes\":", options.body_bytes,
      ",\"warmup_s\":",
      absl::StrFormat("%.3f", std::chrono::duration<double>(options.warmup).count()),
      ",\"duration_s\":",
      absl::StrFormat("%.3f", std::chrono::duration<double>(result.measured).count()),
      ",\"achieved_rate\":", absl::StrFormat("%.3f", result.AchievedRate()));
  absl::StrAppend(&out, ",\"requests\":{\"scheduled\":", result.scheduled,
                  ",\"sent\":", result.sent, ",\"ok\":", result.ok, ",\"non_2xx\":", result.non_2xx,
                  ",\"errors\":", result.errors);
  for (size_t i = 0; i < kRequestErrorKinds; ++i) {
    absl::StrAppend(&out, ",\"errors_", RequestErrorName(static_cast<RequestError>(i)),
                    "\":", result.errors_by_kind[i]);
  }
  absl::StrAppend(&out, ",\"late\":", result.late, ",\"dropped\":", result.dropped,
                  ",\"unfinished\":", result.unfinished, ",\"warmup\":", result.warmup_requests,
                  "}");
  absl::StrAppend(&out, ",\"connections_opened\":", result.connections_opened,
                  ",\"connect_failures\":", result.connect_failures,
                  ",\"connections_lost\":", result.connections_lost, ",");
  AppendLatency(out, "latency_us", result.latency);
  out += ",";
  AppendLatency(out, "send_lag_us", result.send_lag);
  out += ",\"latency_histogram_ns\":[";
  bool first = true;
  for (const auto& [value, count] : result.latency.NonEmptyBuckets()) {
    absl::StrAppend(&out, first ? "" : ",", "[", value, ",", count, "]");
    first = false;
  }
  out += "],\"slowest\":[";
  first = true;
  for (const SlowResponse& slow : result.slowest) {
    absl::StrAppend(
        &out, first ? "" : ",", "{\"at_ms\":",
        absl::StrFormat("%.3f", std::chrono::duration<double, std::milli>(slow.at).count()),
        ",\"latency_us\":",
        absl::StrFormat("%.1f", std::chrono::duration<double, std::micro>(slow.latency).count()),
        "}");
    first = false;
  }
  out += "]}";
  return out;
}

std::string ResultSummary(const LoadOptions& options, const LoadResult& result) {
  const LatencyHistogram& h = result.latency;
  auto ms = [](uint64_t ns) { return absl::StrFormat("%.3f", ns / 1e6); };
  return absl::StrCat(options.protocol == HttpVersion::kHttp2 ? "h2" : "http/1.1",
                      options.tls.enabled ? "+tls" : "",
                      options.rate > 0 ? absl::StrFormat(" open %.0f/s", options.rate) : " closed",
                      ": ", absl::StrFormat("%.1f", result.AchievedRate()), " responses/s, ok ",
                      result.ok, " non-2xx ", result.non_2xx, " errors ", result.errors, " late ",
                      result.late, " dropped ", result.dropped, " unfinished ", result.unfinished,
                      "; latency ms p50 ", ms(h.ValueAtPercentile(50)), " p90 ",
                      ms(h.ValueAtPercentile(90)), " p99 ", ms(h.ValueAtPercentile(99)), " p99.9 ",
                      ms(h.ValueAtPercentile(99.9)), " p99.99 ", ms(h.ValueAtPercentile(99.99)),
                      " max ", ms(h.max()));
}

absl::Status PinToCpu(int cpu) {
  if (cpu < 0 || cpu >= CPU_SETSIZE) {
    return absl::InvalidArgumentError(absl::StrCat("--cpu ", cpu, ": no such CPU"));
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  const int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
  if (rc != 0) return absl::ErrnoToStatus(rc, absl::StrCat("--cpu ", cpu));
  return absl::OkStatus();
}

}  // namespace meshlet::loadgen

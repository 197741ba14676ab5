#include "sidecar/listener/active_connection.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/net/original_destination.h"
#include "common/tls/client_hello.h"
#include "sidecar/filters/authorization.h"
#include "sidecar/listener/downstream_tls.h"
#include "xds/protocol.h"

namespace meshlet::sidecar::listener {
namespace {

const net::PeerInfo kNoPeer;

}  // namespace

ActiveConnection::ActiveConnection(ConnectionOwner& owner,
                                   std::shared_ptr<const ListenerContext> listener,
                                   std::unique_ptr<net::Connection> connection)
    : owner_(owner),
      listener_(std::move(listener)),
      protocol_(listener_->config.protocol),
      route_config_name_(&listener_->config.route_config_name),
      tcp_cluster_(&listener_->config.tcp_cluster),
      connection_(std::move(connection)),
      active_(listener_->cx_active) {
  owner_.CountConnection(1);
  connection_->SetCallbacks(this);
}

ActiveConnection::~ActiveConnection() {
  // Handlers first: they may still use the connection counters' owners below.
  lookup_.Reset();
  detect_timer_.reset();
  tcp_.reset();
  http_.reset();  // closes its connection without calling back
  if (connection_ != nullptr) connection_->SetCallbacks(nullptr);
  connection_.reset();
  if (served_) NoteDestinationUse();
  listener_->connection_count->fetch_sub(1, std::memory_order_relaxed);
  owner_.CountConnection(-1);
}

void ActiveConnection::Start() {
  if (listener_->matcher.has_value()) {
    if (listener_->config.use_original_destination) ReadOriginalDestination();
    using NameSource = DestinationMatcher::NameSource;
    switch (listener_->matcher->NameNeeded(original_destination_,
                                           connection_->local_address().port())) {
      case NameSource::kNone:
        break;
      case NameSource::kClientHello:
        // The ClientHello first: its server name picks the destination.
        reading_hello_ = true;
        StartReadingName();
        return;
      case NameSource::kHttpHost:
        // The first request's head first: its Host picks the destination.
        host_reader_.emplace(MaxRequestHeadBytes());
        StartReadingName();
        return;
    }
    Decide();
    if (WaitForLookup()) return;
  }
  Serve();
}

void ActiveConnection::StartReadingName() {
  accepted_at_ = owner_.loop().Now();
  detect_timer_ = std::make_unique<event::Timer>(owner_.loop(), [this] { OnDetectTimeout(); });
  ArmDetectTimer(listener_->config.detect_timeout);
}

size_t ActiveConnection::MaxRequestHeadBytes() const {
  // The longest head the HTTP/1 codec takes on this listener: its request line limit plus its
  // header section limit (empty lines before the request line count too).
  const config::HttpOptionsConfig& http = listener_->config.http;
  return size_t{http.max_request_line_bytes} + size_t{http.max_request_headers_kb} * 1024;
}

void ActiveConnection::ReadClientHello(bool end_stream, bool timed_out) {
  // Contiguous in place (a copy only when they span blocks); the parser keeps nothing of them.
  tls::ClientHello hello = tls::ParseClientHello(pending_.Linearize(pending_.length()));
  if (hello.status == tls::ClientHello::Status::kNeedMoreBytes && !end_stream && !timed_out) {
    return;
  }
  reading_hello_ = false;
  detect_timer_.reset();
  listener_->client_hellos[static_cast<size_t>(hello.status)].Inc();
  if (hello.status == tls::ClientHello::Status::kOk && !hello.server_name.empty()) {
    server_name_ = std::move(hello.server_name);
  }
  NameRead(end_stream);
}

void ActiveConnection::ReadHttpHost(bool end_stream, bool timed_out) {
  if (!host_reader_->decided() && !end_stream && !timed_out) return;
  // The reader already scanned every byte; only a decided head is read again, in one piece.
  Http1Host host = host_reader_->decided()
                       ? host_reader_->Result(pending_.Linearize(host_reader_->bytes_read()))
                       : Http1Host();
  host_reader_.reset();
  detect_timer_.reset();
  listener_->http_hosts[static_cast<size_t>(host.status)].Inc();
  if (host.status == Http1Host::Status::kOk) http_host_ = std::move(host.host);
  NameRead(end_stream);
}

void ActiveConnection::NameRead(bool end_stream) {
  if (end_stream && pending_.empty()) {
    listener_->closed_before_detect.Inc();
    connection_->Close(net::CloseMode::kNoFlush);
    return;
  }
  Decide();
  if (WaitForLookup()) {
    ended_while_waiting_ = end_stream;
    return;
  }
  Serve();
  // What was read goes on to detection, or to the handler Serve() chose (which took it).
  if (detect_timer_ != nullptr && (!pending_.empty() || end_stream)) {
    net::Buffer none;
    OnData(none, end_stream);
  }
}

void ActiveConnection::Serve() {
  using config::ListenerProtocol;
  if (listener_->config.use_original_destination) listener_->capture.Record(decision_.action);
  NoteDestinationUse();
  const bool tls = listener_->has_tls();
  if (tls && listener_->tls_provider == nullptr) {
    Reject(listener_->rejected_tls_unavailable, "tls_unavailable");
    return;
  }
  // With TLS, HTTP listeners wait for the first decrypted bytes: only then is it known whether
  // the client spoke TLS, which protocol ALPN chose, and who the client is. TCP listeners start
  // at once (the TLS transport terminates, or refuses plaintext under STRICT, by itself), so
  // server-first protocols inside TLS still work.
  switch (protocol_) {
    case ListenerProtocol::kTcp:
      // Authorization needs the peer's identity, known once the handshake is done: wait for
      // the first decrypted bytes, or detect_timeout for server-first protocols.
      if (tls && listener_->config.authorizer != nullptr) break;
      ToTcp();
      return;
    case ListenerProtocol::kHttp1:
      if (tls) break;
      ToHttp(DetectedProtocol::kHttp1);
      return;
    case ListenerProtocol::kHttp2:
      if (tls) break;
      ToHttp(DetectedProtocol::kHttp2);
      return;
    case ListenerProtocol::kHttp:
    case ListenerProtocol::kAuto:
      break;
  }
  accepted_at_ = owner_.loop().Now();
  detect_timer_ = std::make_unique<event::Timer>(owner_.loop(), [this] { OnDetectTimeout(); });
  ArmDetectTimer(listener_->config.detect_timeout);
  if (tls) {
    // The wait for the first bytes restarts when a handshake finishes: a slow handshake does
    // not eat into it (the handshake has tls_handshake_timeout of its own).
    connection_->transport().SetHandshakeCompleteCallback([this] {
      if (detect_timer_ != nullptr) ArmDetectTimer(listener_->config.detect_timeout);
    });
  }
}

void ActiveConnection::NoteDestinationUse() {
  served_ = true;
  if (decision_.action == CaptureDecision::Action::kDestination &&
      decision_.destination->usage != nullptr) {
    decision_.destination->usage->Touch(owner_.loop().Now());
  }
}

void ActiveConnection::ReadOriginalDestination() {
  absl::StatusOr<std::optional<net::Address>> original = net::ReadOriginalDestination(*connection_);
  if (original.ok()) {
    original_destination_ = *std::move(original);
  } else {
    listener_->original_destination_errors.Inc();
    LOG_EVERY_N_SEC(WARN, 1) << "listener " << listener_->config.name
                             << ": original destination of a connection from "
                             << connection_->remote_address().ToString()
                             << " unknown, served as not redirected: " << original.status();
  }
}

void ActiveConnection::Decide() {
  using Action = CaptureDecision::Action;
  protocol_ = listener_->config.protocol;
  route_config_name_ = &listener_->config.route_config_name;
  tcp_cluster_ = &listener_->config.tcp_cluster;
  decision_ = listener_->matcher->Match(original_destination_, connection_->local_address().port(),
                                        server_name_.has_value() ? &*server_name_ : nullptr,
                                        http_host_.has_value() ? &*http_host_ : nullptr);
  switch (decision_.action) {
    case Action::kListener:
      break;
    case Action::kDestination:
      protocol_ = decision_.destination->protocol;
      route_config_name_ = &decision_.destination->route_config_name;
      tcp_cluster_ = &decision_.destination->tcp_cluster;
      break;
    case Action::kPassthrough:
      protocol_ = config::ListenerProtocol::kTcp;
      break;
    case Action::kRefuse:
      // Detection tells HTTP (a local 502 per request) from anything else (closed).
      protocol_ = config::ListenerProtocol::kAuto;
      break;
  }
}

bool ActiveConnection::WaitForLookup() {
  using Action = CaptureDecision::Action;
  if (decision_.action != Action::kPassthrough && decision_.action != Action::kRefuse) return false;
  // A destination that passes connections through is known: nothing to look up.
  if (decision_.destination != nullptr) return false;
  if (!original_destination_.has_value() ||
      !listener_->matcher->WaitsForLookup(*original_destination_)) {
    return false;
  }
  std::optional<std::string> key =
      xds::LookupKeyForAddress(original_destination_->ip(), original_destination_->port());
  if (!key.has_value()) return false;
  OnDemandWaiters::Started started =
      owner_.on_demand().Wait(*key, *this, listener_->config.on_demand->timeout);
  if (!started.handle.waiting()) return false;  // served as decided, at once
  lookup_ = std::move(started.handle);
  return true;
}

void ActiveConnection::OnLookupDone(config::LookupOutcome outcome) {
  if (paused_for_lookup_) {
    paused_for_lookup_ = false;
    connection_->ReadEnable();
  }
  if (outcome == config::LookupOutcome::kFound) {
    // The worker applied the snapshot that serves the address before this answer: match again
    // against the listener as it runs now.
    std::shared_ptr<const ListenerContext> current =
        owner_.CurrentListenerContext(listener_->config.name);
    if (current != nullptr && current->matcher.has_value()) listener_ = std::move(current);
    Decide();
  }
  Serve();
  // Detection goes on with what arrived meanwhile (a handler took it if one was chosen).
  if (detect_timer_ != nullptr && (!pending_.empty() || ended_while_waiting_)) {
    net::Buffer none;
    OnData(none, ended_while_waiting_);
  }
}

void ActiveConnection::StartDrain(bool keep_idle_http1) {
  if (http_ != nullptr) http_->Drain(keep_idle_http1);
}

void ActiveConnection::OnData(net::Buffer& data, bool end_stream) {
  if (host_reader_.has_value()) {
    // Each byte is scanned once, however the head arrives.
    data.ForEachSlice([this](absl::string_view slice) { host_reader_->Feed(slice); });
  }
  pending_.Move(data);
  if (reading_hello_) {
    ReadClientHello(end_stream, /*timed_out=*/false);
    return;
  }
  if (host_reader_.has_value()) {
    ReadHttpHost(end_stream, /*timed_out=*/false);
    return;
  }
  if (lookup_.waiting()) {
    if (end_stream && pending_.empty()) {
      // Gone before saying anything: nothing to serve.
      lookup_.Reset();
      listener_->closed_before_detect.Inc();
      connection_->Close(net::CloseMode::kNoFlush);
      return;
    }
    ended_while_waiting_ = ended_while_waiting_ || end_stream;
    if (!paused_for_lookup_ && pending_.length() >= kMaxBytesWhileWaiting) {
      paused_for_lookup_ = true;
      connection_->ReadDisable();
    }
    return;
  }
  if (protocol_ == config::ListenerProtocol::kTcp) {
    detect_timer_.reset();
    ToTcp();  // authorized TCP with TLS (Start): the handshake is done
    return;
  }
  if (!pending_.empty()) {
    if (std::optional<DetectedProtocol> chosen = ChosenProtocol()) {
      detect_timer_.reset();
      ToHttp(*chosen);
      return;
    }
  }
  DetectedProtocol protocol = DetectProtocol(pending_);
  if (protocol == DetectedProtocol::kNeedMoreBytes) {
    if (!end_stream && pending_.length() < kMaxDetectBytes) return;
    protocol = DetectedProtocol::kOpaque;
  }
  if (protocol == DetectedProtocol::kOpaque && protocol_ == config::ListenerProtocol::kHttp) {
    // Only HTTP is served here: these may still be HTTP/1 with a method the detector does not
    // know. The first line decides; detect_timeout bounds the wait for its end.
    protocol = DetectHttp1RequestLine(pending_, listener_->config.http.max_request_line_bytes);
    if (protocol == DetectedProtocol::kNeedMoreBytes) {
      if (!end_stream) return;
      protocol = DetectedProtocol::kOpaque;
    }
  }
  if (end_stream && pending_.empty()) {
    listener_->closed_before_detect.Inc();
    connection_->Close(net::CloseMode::kNoFlush);
    return;
  }
  detect_timer_.reset();
  // A peer that half-closed right after its first bytes still gets served: the handler sees
  // the end of stream on the connection's next read.
  Dispatch(protocol, /*timed_out=*/false);
}

void ActiveConnection::OnClose(net::CloseReason, const absl::Status&) {
  // Closed while waiting for a lookup, detecting (or while being refused).
  lookup_.Reset();
  detect_timer_.reset();
  owner_.OnConnectionDone(*this);
}

std::optional<DetectedProtocol> ActiveConnection::ChosenProtocol() const {
  using config::ListenerProtocol;
  if (protocol_ == ListenerProtocol::kHttp1) return DetectedProtocol::kHttp1;
  if (protocol_ == ListenerProtocol::kHttp2) return DetectedProtocol::kHttp2;
  return NegotiatedProtocol();
}

std::optional<DetectedProtocol> ActiveConnection::NegotiatedProtocol() const {
  const net::PeerInfo& peer = Peer();
  if (!peer.tls) return std::nullopt;
  if (peer.alpn == "h2") return DetectedProtocol::kHttp2;
  if (peer.alpn == "http/1.1") return DetectedProtocol::kHttp1;
  return std::nullopt;
}

const net::PeerInfo& ActiveConnection::Peer() const {
  return connection_ == nullptr ? kNoPeer : connection_->transport().peer();
}

void ActiveConnection::ArmDetectTimer(Duration window) {
  detect_window_ = window;
  detect_deadline_ = owner_.loop().Now() + window;
  detect_timer_->Enable(window);
}

void ActiveConnection::OnDetectTimeout() {
  const MonotonicTime now = owner_.loop().Now();
  if (now - detect_deadline_ > std::max(detect_window_ / 2, kLateFloor) &&
      late_restarts_ < kMaxLateRestarts) {
    // Far past its time: this worker was not running (the machine or process stalled, CPU
    // starvation), and likely neither was the peer. Silence measured across a stall says
    // nothing, and the expired timer runs before the worker reads what arrived meanwhile:
    // wait one more window, which the next poll for I/O cuts short if bytes are there.
    ++late_restarts_;
    listener_->detect_restarted_late.Inc();
    ArmDetectTimer(listener_->config.detect_timeout);
    return;
  }
  if (reading_hello_) {
    // Silent, or not a whole ClientHello in time: matched without a server name.
    ReadClientHello(/*end_stream=*/false, /*timed_out=*/true);
    return;
  }
  if (host_reader_.has_value()) {
    // Silent, or not a whole request head in time: matched without a host.
    ReadHttpHost(/*end_stream=*/false, /*timed_out=*/true);
    return;
  }
  if (connection_ != nullptr && connection_->transport().HandshakeInProgress()) {
    // A TLS client is not silent: its handshake is under way. Bounded from accept on.
    const Duration left = accepted_at_ + listener_->config.tls_handshake_timeout - now;
    if (left > Duration::zero()) {
      ArmDetectTimer(left);
      return;
    }
    Reject(listener_->rejected_tls_handshake_timeout, "tls_handshake_timeout");
    return;
  }
  detect_timer_.reset();
  if (protocol_ == config::ListenerProtocol::kTcp) {
    ToTcp();
    return;
  }
  if (std::optional<DetectedProtocol> negotiated = NegotiatedProtocol()) {
    // The client chose HTTP in its handshake (ALPN) and has not sent its first bytes yet: HTTP
    // all the same, whose own timeouts now apply; never the TCP fallback.
    ToHttp(*negotiated);
    return;
  }
  if (protocol_ == config::ListenerProtocol::kAuto) {
    // Server-first protocols (MySQL, SMTP...) send nothing until the server speaks.
    Dispatch(pending_.empty() ? DetectedProtocol::kOpaque : DetectProtocol(pending_),
             /*timed_out=*/true);
    return;
  }
  Reject(listener_->rejected_detect_timeout, "detect_timeout");
}

void ActiveConnection::Dispatch(DetectedProtocol protocol, bool timed_out) {
  const bool auto_mode = protocol_ == config::ListenerProtocol::kAuto;
  switch (protocol) {
    case DetectedProtocol::kHttp2:
      ToHttp(protocol);
      return;
    case DetectedProtocol::kHttp1:
      ToHttp(protocol);
      return;
    case DetectedProtocol::kTls:
      // On a listener with TLS the transport already terminated the outer TLS; what is left
      // is as opaque as on a plaintext listener.
      if (auto_mode) {
        ToTcp();  // passthrough to tcp_cluster
        return;
      }
      ToHttp(DetectedProtocol::kHttp1);  // an HTTP-only listener answers 400
      return;
    case DetectedProtocol::kNeedMoreBytes:
    case DetectedProtocol::kOpaque:
      if (auto_mode) {
        ToTcp();
        return;
      }
      if (timed_out) {
        Reject(listener_->rejected_detect_timeout, "detect_timeout");
        return;
      }
      // Neither the HTTP/2 preface nor an HTTP/1 request line (OnData): the HTTP/2 codec
      // answers as to a bad preface, GOAWAY(PROTOCOL_ERROR) and the close (RFC 9113 3.4), as
      // an HTTP/2-only listener does; a client that meant HTTP/2 learns why.
      ToHttp(DetectedProtocol::kHttp2);
      return;
  }
}

void ActiveConnection::ToTcp() {
  using Action = CaptureDecision::Action;
  if (decision_.action == Action::kRefuse) {
    Reject(listener_->rejected_unmatched_destination, "unmatched_destination");
    return;
  }
  if (decision_.action == Action::kPassthrough) {
    ToPassthrough();
    return;
  }
  if (tcp_cluster_->empty()) {
    if (decision_.action == Action::kListener && listener_->matcher.has_value() &&
        listener_->matcher->reads_server_names() && !listener_->config.use_original_destination) {
      // A listener that routes by server name only: no destination took this one.
      Reject(listener_->rejected_unmatched_destination, "unmatched_destination");
      return;
    }
    Reject(listener_->rejected_no_tcp_cluster, "no_tcp_cluster");
    return;
  }
  if (!AuthorizedConnection()) return;
  listener_->as_tcp.Inc();
  tcp_ = std::make_unique<TcpProxy>(
      owner_.loop(), owner_.clusters(), owner_.clock(), listener_->tcp, listener_->access_log.get(),
      listener_->config.name, *tcp_cluster_, listener_->config.tcp_idle_timeout,
      std::move(connection_), [this] { owner_.OnConnectionDone(*this); });
  if (original_destination_.has_value()) {
    tcp_->set_original_destination(original_destination_->ToString());
  }
  tcp_->Start(std::move(pending_));
}

void ActiveConnection::ToPassthrough() {
  if (!AuthorizedConnection()) return;
  listener_->as_tcp.Inc();
  tcp_ = std::make_unique<TcpProxy>(
      owner_.loop(), owner_.clusters(), owner_.clock(), listener_->tcp, listener_->access_log.get(),
      listener_->config.name, "passthrough", listener_->config.tcp_idle_timeout,
      std::move(connection_), [this] { owner_.OnConnectionDone(*this); });
  if (original_destination_.has_value()) {
    tcp_->set_original_destination(original_destination_->ToString());
  }
  tcp_->StartTo(decision_.upstream, listener_->config.passthrough_connect_timeout,
                std::move(pending_));
}

bool ActiveConnection::AuthorizedConnection() {
  const filters::Authorizer* authorizer = listener_->config.authorizer.get();
  if (authorizer == nullptr) return true;
  const std::string peer = SpiffeIdOf(Peer());
  const uint32_t port = decision_.authorization_port != 0 ? decision_.authorization_port
                        : listener_->config.destination_port != 0
                            ? listener_->config.destination_port
                            : connection_->local_address().port();
  const filters::AuthorizationDecision decision = authorizer->DecideConnection(peer, port);
  if (decision.allowed) return true;
  LOG_EVERY_N_SEC(INFO, 1) << "listener " << listener_->config.name << ": connection from "
                           << connection_->remote_address().ToString() << " ("
                           << (peer.empty() ? "no identity" : peer) << ") to port " << port
                           << " denied"
                           << (decision.policy != nullptr
                                   ? absl::StrCat(" by ", *decision.policy)
                                   : std::string(" (no ALLOW policy matches)"));
  Reject(listener_->rejected_rbac, "rbac_denied");
  return false;
}

void ActiveConnection::ToHttp(DetectedProtocol protocol) {
  const bool h2 = protocol == DetectedProtocol::kHttp2;
  (h2 ? listener_->as_http2 : listener_->as_http1).Inc();
  HttpConnectionManager::Options options{.protocol =
                                             h2 ? http::Protocol::kHttp2 : http::Protocol::kHttp11};
  if (const net::PeerInfo& peer = Peer(); peer.tls) {
    options.tls = true;
    options.peer_identity = SpiffeIdOf(peer);
  }
  options.mesh_edge = listener_->config.direction == config::TrafficDirection::kInbound &&
                      options.peer_identity.empty();
  if (listener_->matcher.has_value()) {
    using Action = CaptureDecision::Action;
    options.destination_port = decision_.authorization_port;
    if (decision_.action == Action::kDestination) {
      options.route_config_name = *route_config_name_;
    }
    if (original_destination_.has_value()) {
      options.original_destination = original_destination_->ToString();
    }
    options.refuse = decision_.action == Action::kRefuse;
  }
  http_ = std::make_unique<HttpConnectionManager>(
      *listener_->worker_context, owner_.http_stats(), listener_->config, std::move(connection_),
      std::move(pending_), std::move(options),
      [this](HttpConnectionManager&) { owner_.OnConnectionDone(*this); });
  http_->Start();
}

void ActiveConnection::Reject(Counter counter, absl::string_view reason) {
  counter.Inc();
  LOG_EVERY_N_SEC(DEBUG, 1) << "listener " << listener_->config.name << ": closing connection from "
                            << connection_->remote_address().ToString() << ": " << reason;
  // OnClose runs before Close() returns and schedules this object's deletion.
  connection_->Close(net::CloseMode::kNoFlush);
}

}  // namespace meshlet::sidecar::listener

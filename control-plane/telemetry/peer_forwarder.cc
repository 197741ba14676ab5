#include "control-plane/telemetry/peer_forwarder.h"

#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/net/address.h"
#include "common/net/interfaces.h"
#include "control-plane/telemetry/trace_ring.h"

namespace meshlet::controlplane::telemetry {
namespace {

constexpr absl::string_view kReplicaKeyPrefix = "replica/";

}  // namespace

std::string ReplicaKey(absl::string_view replica_name) {
  return absl::StrCat(kReplicaKeyPrefix, replica_name);
}

absl::StatusOr<std::string> DefaultReplicaAddress(const net::Address& bound) {
  const std::string ip = bound.ip();
  if (ip != "0.0.0.0" && ip != "::") return bound.ToString();
  // Bound to every address: the first of the wanted family other hosts can reach.
  absl::StatusOr<std::vector<net::Address>> addresses = net::InterfaceAddresses();
  if (!addresses.ok()) {
    return absl::InternalError("cannot list this host's addresses; give --replica-address");
  }
  for (const net::Address& address : *addresses) {
    if (address.family() == bound.family()) return address.WithPort(bound.port()).ToString();
  }
  return net::Address::FromIp(bound.family() == net::Address::Family::kIPv6 ? "::1" : "127.0.0.1",
                              bound.port())
      ->ToString();
}

struct PeerForwarder::PeerState {
  Peer peer;
  net::Address address;
  std::unique_ptr<http::grpc::Channel> channel;
  bool busy = false;
  // History still to hand over: traces that arrived in [history_next, history_end).
  uint64_t history_next = 0;
  uint64_t history_end = 0;
  bool history_busy = false;
};

struct PeerForwarder::Stats {
  Counter sent, failed, skipped;
  Counter history_sent, history_failed;
  Gauge peers;
};

PeerForwarder::PeerForwarder(event::Loop& loop, LeasedKeys& keys, PeerForwarderOptions options,
                             StatsRegistry* stats)
    : loop_(loop), keys_(keys), options_(std::move(options)) {
  if (stats == nullptr) return;
  stats_ = std::make_unique<Stats>();
  StatsShard& shard = stats->shared_shard();
  auto counter = [&](absl::string_view name, absl::string_view help, absl::string_view result) {
    auto c = shard.RegisterCounter(name, help, {{"result", std::string(result)}});
    return c.ok() ? *c : Counter();
  };
  constexpr absl::string_view kBatches = "meshlet_cp_peer_telemetry_batches_total";
  constexpr absl::string_view kBatchesHelp =
      "Telemetry batches (golden-metrics reports and spans) forwarded to other control-plane "
      "replicas, counted per peer, by result (sent, failed, skipped: the peer was still busy "
      "with the previous batch).";
  stats_->sent = counter(kBatches, kBatchesHelp, "sent");
  stats_->failed = counter(kBatches, kBatchesHelp, "failed");
  stats_->skipped = counter(kBatches, kBatchesHelp, "skipped");
  constexpr absl::string_view kHistory = "meshlet_cp_peer_telemetry_history_total";
  constexpr absl::string_view kHistoryHelp =
      "Chunks of this replica's trace store handed to a replica that appeared, by result (sent, "
      "failed: the rest of that hand-over is dropped).";
  stats_->history_sent = counter(kHistory, kHistoryHelp, "sent");
  stats_->history_failed = counter(kHistory, kHistoryHelp, "failed");
  auto gauge = shard.RegisterGauge("meshlet_cp_peer_replicas",
                                   "Other control-plane replicas this one forwards telemetry to.",
                                   {}, GaugeMerge::kGlobal);
  if (gauge.ok()) stats_->peers = *gauge;
}

PeerForwarder::~PeerForwarder() {
  watch_.reset();
  alive_.reset();
  timer_.reset();
  peers_.clear();
  keys_.DeleteLeased(ReplicaKey(options_.replica_name));
}

absl::Status PeerForwarder::Start() {
  absl::StatusOr<net::Address> advertised = net::Address::Parse(options_.advertise_address);
  if (!advertised.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("replica address \"", options_.advertise_address,
                                                   "\": not IP:port (",
                                                   advertised.status().message(), ")"));
  }
  peer::v1::ReplicaRecord record;
  record.set_name(options_.replica_name);
  record.set_discovery_address(options_.advertise_address);
  keys_.SetLeased(ReplicaKey(options_.replica_name), record.SerializeAsString());
  watch_ = keys_.WatchLeased(std::string(kReplicaKeyPrefix),
                             [&loop = loop_, alive = std::weak_ptr<bool>(alive_),
                              this](const std::vector<LeasedKeyEvent>& events) {
                               loop.Post([this, alive, events] {
                                 if (!alive.expired()) OnEvents(events);
                               });
                             });
  timer_ = std::make_unique<event::Timer>(loop_, [this] { Flush(); });
  return absl::OkStatus();
}

void PeerForwarder::SetTransport(net::TransportFactory factory) {
  transport_ = std::move(factory);
  // New channels (never called from inside a channel's callback): a call in flight ends
  // without a callback, and the next batch goes out on a new connection.
  for (auto& [owner, state] : peers_) {
    state->channel.reset();
    state->busy = false;
    // The history chunk in flight is lost with its call; the rest follows on the new connection.
    state->history_busy = false;
    SendHistory(state.get());
  }
}

void PeerForwarder::OnEvents(const std::vector<LeasedKeyEvent>& events) {
  std::vector<std::string> new_peers;
  for (const LeasedKeyEvent& event : events) {
    if (event.type == LeasedKeyEvent::Type::kDelete) {
      auto it = peers_.find(event.owner);
      if (it == peers_.end()) continue;
      LOG(INFO) << "telemetry: replica " << it->second->peer.name << " ("
                << it->second->peer.address << ") is gone; no longer forwarding to it";
      peers_.erase(it);  // its channel ends its call without a callback
      continue;
    }
    peer::v1::ReplicaRecord record;
    absl::StatusOr<net::Address> address = record.ParseFromString(event.value)
                                               ? net::Address::Parse(record.discovery_address())
                                               : absl::InvalidArgumentError("not a replica record");
    if (!address.ok()) {
      LOG_EVERY_N_SEC(WARN, 10) << "telemetry: replica key " << event.name << " of lease "
                                << event.owner << " is unusable (" << address.status().message()
                                << "); not forwarding to it";
      continue;
    }
    // A replica restarted under the same name before its old lease ran out: that is us.
    if (record.discovery_address() == options_.advertise_address) continue;
    auto& state = peers_[event.owner];
    const bool appeared = state == nullptr;
    if (appeared) state = std::make_unique<PeerState>();
    if (state->peer.address != record.discovery_address()) {
      state->channel.reset();
      state->busy = false;
      state->history_busy = false;
    }
    state->peer.name = record.name();
    state->peer.address = record.discovery_address();
    state->address = *address;
    LOG(INFO) << "telemetry: forwarding to replica " << record.name() << " at "
              << record.discovery_address();
    if (appeared) new_peers.push_back(event.owner);
  }
  // Once every event is in (the names of all replicas are known): history for the new ones.
  for (const std::string& owner : new_peers) {
    auto it = peers_.find(owner);
    if (it == peers_.end() || history_ == nullptr || history_->trace_count() == 0 ||
        !HandsHistoryTo(owner)) {
      continue;
    }
    it->second->history_next = 0;
    it->second->history_end = history_->next_arrival();
    LOG(INFO) << "telemetry: handing replica " << it->second->peer.name << " the "
              << history_->trace_count() << " traces kept here";
    SendHistory(it->second.get());
  }
  if (stats_ != nullptr) stats_->peers.Set(static_cast<int64_t>(peers_.size()));
  // Not `= {options_.replica_name}`: that list would be of std::string copies, gone (and the
  // views into them dangling) at the end of the statement.
  absl::flat_hash_set<absl::string_view> names;
  names.insert(options_.replica_name);
  for (const auto& [owner, state] : peers_) names.insert(state->peer.name);
  if (names.size() != replicas_) {
    replicas_ = names.size();
    if (on_replicas_changed_) on_replicas_changed_(replicas_);
  }
  if (peers_.empty()) {
    pending_.Clear();
    pending_bytes_ = 0;
  }
}

void PeerForwarder::AddReport(metrics::v1::MetricsReport report) {
  if (peers_.empty()) return;
  pending_bytes_ += report.ByteSizeLong();
  *pending_.add_reports() = std::move(report);
  ArmTimer();
}

void PeerForwarder::AddSpans(const std::vector<SpanRecord>& spans) {
  if (peers_.empty() || spans.empty()) return;
  std::string* encoded = pending_.add_span_batches();
  EncodeSpans(spans, encoded);
  pending_bytes_ += encoded->size();
  ArmTimer();
}

void PeerForwarder::ArmTimer() {
  if (timer_ == nullptr) return;
  if (pending_bytes_ >= options_.max_batch_bytes) {
    timer_->Disable();
    Flush();
  } else if (!timer_->enabled()) {
    timer_->Enable(options_.interval);
  }
}

void PeerForwarder::Flush() {
  if (pending_.reports_size() == 0 && pending_.span_batches_size() == 0) return;
  pending_.set_replica(options_.replica_name);
  const std::string batch = pending_.SerializeAsString();
  pending_.Clear();
  pending_bytes_ = 0;
  // A replica that restarted before its old lease ran out is listed twice: send it one copy.
  absl::flat_hash_set<absl::string_view> addresses;
  for (auto& [owner, state] : peers_) {
    if (!addresses.insert(state->peer.address).second) continue;
    if (state->busy) {
      ++state->peer.skipped;
      if (stats_ != nullptr) stats_->skipped.Inc();
      continue;
    }
    state->busy = true;
    PeerState* peer = state.get();
    ChannelTo(*state).Unary(
        kPeerForwardMethod, batch, PeerCallOptions(),
        [this, peer, alive = std::weak_ptr<bool>(alive_)](http::grpc::StatusCode code,
                                                          const std::string& message, std::string) {
          // A destroyed channel never calls back, and the channel goes with its PeerState.
          if (alive.expired()) return;
          peer->busy = false;
          if (code == http::grpc::StatusCode::kOk) {
            ++peer->peer.sent;
            if (stats_ != nullptr) stats_->sent.Inc();
            return;
          }
          ++peer->peer.failed;
          if (stats_ != nullptr) stats_->failed.Inc();
          peer->peer.last_error = absl::StrCat(http::grpc::StatusCodeName(code), ": ", message);
          LOG_EVERY_N_SEC(WARN, 30)
              << "telemetry: forwarding to replica " << peer->peer.name << " at "
              << peer->peer.address << " failed: " << peer->peer.last_error;
        });
  }
}

http::grpc::Channel& PeerForwarder::ChannelTo(PeerState& peer) {
  if (peer.channel == nullptr) {
    http::grpc::ChannelOptions channel_options;
    channel_options.transport_factory = transport_;
    channel_options.connect_timeout = options_.call_timeout;
    channel_options.user_agent = "meshlet-control-plane";
    peer.channel =
        std::make_unique<http::grpc::Channel>(loop_, peer.address, std::move(channel_options));
  }
  return *peer.channel;
}

http::grpc::CallOptions PeerForwarder::PeerCallOptions() const {
  http::grpc::CallOptions call_options;
  call_options.timeout = options_.call_timeout;
  if (!token_.empty()) call_options.metadata.Add("authorization", absl::StrCat("Bearer ", token_));
  return call_options;
}

bool PeerForwarder::HandsHistoryTo(const std::string& owner) const {
  for (const auto& [other_owner, state] : peers_) {
    if (other_owner != owner && state->peer.name < options_.replica_name) return false;
  }
  return true;
}

void PeerForwarder::SendHistory(PeerState* peer) {
  if (peer->history_busy || history_ == nullptr || peer->history_next >= peer->history_end) return;
  std::vector<SpanRecord> spans =
      history_->Chunk(&peer->history_next, peer->history_end, options_.max_batch_bytes);
  if (spans.empty()) return;
  peer::v1::ForwardBatch batch;
  batch.set_replica(options_.replica_name);
  EncodeSpans(spans, batch.add_span_batches());
  peer->history_busy = true;
  ChannelTo(*peer).Unary(kPeerForwardMethod, batch.SerializeAsString(), PeerCallOptions(),
                         [this, peer, alive = std::weak_ptr<bool>(alive_)](
                             http::grpc::StatusCode code, const std::string& message, std::string) {
                           if (alive.expired()) return;
                           peer->history_busy = false;
                           if (code != http::grpc::StatusCode::kOk) {
                             if (stats_ != nullptr) stats_->history_failed.Inc();
                             LOG_EVERY_N_SEC(WARN, 30)
                                 << "telemetry: handing history to replica " << peer->peer.name
                                 << " failed: " << http::grpc::StatusCodeName(code) << ": "
                                 << message << "; the rest is dropped";
                             peer->history_next = peer->history_end;
                             return;
                           }
                           ++peer->peer.history_sent;
                           if (stats_ != nullptr) stats_->history_sent.Inc();
                           SendHistory(peer);
                         });
}

std::vector<std::pair<std::string, std::shared_ptr<http::grpc::ClientCall>>>
PeerForwarder::StartCalls(absl::string_view method) {
  std::vector<std::pair<std::string, std::shared_ptr<http::grpc::ClientCall>>> calls;
  for (const auto& [owner, state] : peers_) {
    http::grpc::CallOptions call_options = PeerCallOptions();
    call_options.timeout.reset();
    calls.emplace_back(state->peer.name, ChannelTo(*state).StartCall(method, call_options));
  }
  return calls;
}

std::vector<PeerForwarder::Peer> PeerForwarder::peers() const {
  std::vector<Peer> out;
  out.reserve(peers_.size());
  for (const auto& [owner, state] : peers_) out.push_back(state->peer);
  return out;
}

}  // namespace meshlet::controlplane::telemetry

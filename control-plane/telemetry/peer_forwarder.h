#pragma once

// PeerForwarder: shares one control-plane replica's telemetry with the other replicas of the mesh
// (several replicas on etcd, ADR 0050), so `meshctl stat`, `meshctl traces` and the dashboard show
// the whole mesh whichever replica answers. Sidecars report golden metrics and send spans to the
// replica they happen to reach; each replica forwards what it received to every other replica,
// which stores it as its own but never forwards it again.
//
// Finding the others: the replica publishes a leased key "replica/<name>" (ReplicaRecord: its
// discovery address) through the store's LeasedKeys and watches the other replicas' keys; a
// replica that dies loses its key with its lease and is no longer sent to.
//
// Sending: what arrives in one `interval` (or until the batch passes `max_batch_bytes`) goes out as
// one ForwardBatch, serialized once, as a unary gRPC call to each peer's discovery port
// (PeerTelemetry/Forward, with the API token as a bearer token), over the transport given by
// SetTransport (TLS to the discovery port; null: h2c). A peer still busy with the previous batch,
// or unreachable, misses this one: golden-metrics reports are cumulative, so a missed report only
// coarsens that peer's view; missed spans are lost there. Every outcome is counted
// (meshlet_cp_peer_telemetry_batches_total{result=sent|failed|skipped}). Memory is bounded by one
// pending batch plus one in flight per peer.
//
// History: a replica that (re)starts has no spans. When a new replica appears, the replica with
// the lowest name among the others (each knows them all) hands it the spans of its trace store
// (SetHistory) as they were at that moment, oldest trace first, in chunks of max_batch_bytes,
// one call at a time beside the regular batches; the receiver's store drops spans it holds already.
// Golden-metrics reports are not handed over: a restarted replica's figures fill in within one
// window as the sidecars report. Counted in meshlet_cp_peer_telemetry_history_total{result}.
//
// Counting: the live replicas, this one included, are the distinct names among the records seen
// and its own (a replica listed under an old and a new lease counts once); the per-identity
// telemetry limits are divided by that number (telemetry_gate.h, ADR 0087). A replica that dies
// is counted until its lease runs out.
//
// Threading: construct, use and destroy on the loop's thread; the store's watch callbacks are
// handed to the loop. `keys` and `stats` (may be null) must outlive this.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/grpc/client.h"
#include "common/net/address.h"
#include "common/net/transport.h"
#include "common/stats/stats.h"
#include "control-plane/store/leased_keys.h"
#include "control-plane/telemetry/peer_telemetry.pb.h"
#include "control-plane/telemetry/trace_store.h"
#include "xds/metrics.pb.h"

namespace meshlet::controlplane::telemetry {

namespace peer = ::meshlet::telemetry::peer;  // peer_telemetry.proto

inline constexpr char kPeerForwardMethod[] = "/meshlet.telemetry.peer.v1.PeerTelemetry/Forward";

// The leased key name of a replica's record.
std::string ReplicaKey(absl::string_view replica_name);
// Where other replicas reach a discovery port bound to `bound`: that address, or for a wildcard
// (0.0.0.0, ::) this host's first non-loopback address of the family (loopback if it has none).
absl::StatusOr<std::string> DefaultReplicaAddress(const net::Address& bound);

struct PeerForwarderOptions {
  std::string replica_name;
  // Where the other replicas reach this one's discovery port: IP:port.
  std::string advertise_address;
  Duration interval = std::chrono::seconds(1);
  size_t max_batch_bytes = 1 << 20;
  Duration call_timeout = std::chrono::seconds(5);
};

class PeerForwarder {
 public:
  PeerForwarder(event::Loop& loop, LeasedKeys& keys, PeerForwarderOptions options,
                StatsRegistry* stats);
  ~PeerForwarder();
  PeerForwarder(const PeerForwarder&) = delete;
  PeerForwarder& operator=(const PeerForwarder&) = delete;

  // Publishes this replica's record and starts watching for the others. InvalidArgument for an
  // advertise address that is not IP:port.
  absl::Status Start();

  // The transport for calls to peers (null: plaintext h2c); connections opened from now on use it.
  void SetTransport(net::TransportFactory factory);
  // The trace store handed to replicas that appear (null: none). Not owned; must outlive this.
  void SetHistory(const TraceStore* store) { history_ = store; }
  // The bearer token calls carry (the shared API token) when replicas have no certificates of
  // the mesh CA to authenticate with; empty: none.
  void SetToken(std::string token) { token_ = std::move(token); }

  // Queue what this replica received from its sidecars for the next batch.
  void AddReport(metrics::v1::MetricsReport report);
  void AddSpans(const std::vector<SpanRecord>& spans);

  struct Peer {
    std::string name;
    std::string address;
    uint64_t sent = 0, failed = 0, skipped = 0;
    // History chunks sent to it (this replica handed it its spans when it appeared).
    uint64_t history_sent = 0;
    std::string last_error;
  };
  // The other replicas known now, by name.
  std::vector<Peer> peers() const;
  // Starts `method` (a streaming call of another service, such as the live tap's forwarding) on
  // each other replica known now, with the credentials Forward calls carry and no deadline;
  // returns (replica name, call). A replica that goes away takes its calls with it: they end
  // without calling back.
  std::vector<std::pair<std::string, std::shared_ptr<http::grpc::ClientCall>>> StartCalls(
      absl::string_view method);
  // The live replicas known now, this one included (see Counting above); at least 1.
  size_t replicas() const { return replicas_; }
  // Called on the loop's thread with replicas() each time it changes (not at registration).
  void OnReplicasChanged(std::function<void(size_t)> callback) {
    on_replicas_changed_ = std::move(callback);
  }

 private:
  struct PeerState;
  struct Stats;
  void OnEvents(const std::vector<LeasedKeyEvent>& events);
  void Flush();
  void ArmTimer();
  // Whether this replica hands history to a replica that appeared under `owner`: it has the
  // lowest name of the replicas other than that one.
  bool HandsHistoryTo(const std::string& owner) const;
  // Sends `peer` its next history chunk, unless one is under way or nothing is left.
  void SendHistory(PeerState* peer);
  // The peer's channel, opened on first use; and the options of a call on it (timeout, token).
  http::grpc::Channel& ChannelTo(PeerState& peer);
  http::grpc::CallOptions PeerCallOptions() const;

  event::Loop& loop_;
  LeasedKeys& keys_;
  const PeerForwarderOptions options_;
  net::TransportFactory transport_;
  std::string token_;
  std::unique_ptr<LeasedKeys::WatchHandle> watch_;
  std::unique_ptr<event::Timer> timer_;
  // By lease owner: a replica that took a new lease appears under a new owner.
  std::map<std::string, std::unique_ptr<PeerState>> peers_;
  peer::v1::ForwardBatch pending_;
  size_t pending_bytes_ = 0;
  std::unique_ptr<Stats> stats_;
  const TraceStore* history_ = nullptr;
  size_t replicas_ = 1;
  std::function<void(size_t)> on_replicas_changed_;
  // Checked by tasks posted to the loop: false once this is destroyed.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace meshlet::controlplane::telemetry

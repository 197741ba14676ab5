#pragma once

// TapService: GET /api/v1/tap, the live tap (docs/control-plane.md "Live tap"): the sidecars of
// a workload or service are asked over their discovery streams (AdsServer::StartTap, ADR 0019's
// exchange) for their requests, sampled at a rate, for a duration; their events are streamed to
// the caller as newline-delimited JSON as they arrive, until the duration ends, every sidecar
// has ended its part, or the caller goes away — the sidecars are then told to stop, and nothing
// of the tap reaches the caller after its last line.
//
//   GET /api/v1/tap?workload=NS/POD | service=[NS/]NAME
//       [&rate=N][&duration=30s][&headers=true][&direction=inbound|outbound][&method=GET]
//       [&authority=HOST][&path=/PREFIX]
//
// Lines: {"kind":"TapStarted",...} (the proxies asked), {"kind":"TapEvent","proxy":ID,...} per
// request, {"kind":"TapProxy","proxy":ID,"status":"started"|"ended"|"refused",...} per sidecar
// change, and last {"kind":"TapEnded","reason":...,"events":N,"dropped":{...}}.
//
// Who may: any API role (viewer and up); headers=true only `admin` (403 otherwise). Limits, each
// a flag, each refusal a clear 4xx counted in meshlet_cp_tap_refused_total{reason}: a rate above
// --tap-max-rate or a duration above --tap-max-duration (400), --tap-max-concurrent taps running
// (429), no sidecar of the target connected to this replica (404). All the taps of this control
// plane together send the callers at most --tap-max-events-per-second events; each tap at most
// its own rate over all its sidecars; events past either are counted (in TapEnded and
// meshlet_cp_tap_events_dropped_total), never queued. Every tap, allowed or refused, is in the
// audit log (access/audit_log.h).
//
// Replicas: a sidecar holds one stream, to one replica. With other replicas (SetPeers), the tap
// is forwarded to each over kPeerTapMethod on its discovery port; each starts it on its own
// sidecars of the target (ServePeer) and streams their events back, merged here under the same
// rate limits: TapStarted lists this replica's sidecars, a {"kind":"TapReplica"} line each
// other replica's ("started" with its proxies, "none", or "unreachable" with the error, counted in
// meshlet_cp_tap_peer_calls_total{result}). 404 only when no replica has a sidecar of the target
// (with other replicas, known when they answer: the stream then ends with that reason).
//
// Threading: the control plane's loop thread (the ADS server's and the API's).

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/flags/flags.h"
#include "common/http/grpc/client.h"
#include "common/http/grpc/server.h"
#include "common/http/server.h"
#include "common/stats/stats.h"
#include "control-plane/access/roles.h"
#include "control-plane/xds/ads_server.h"

namespace meshlet::controlplane::ads {

struct TapOptions {
  uint32_t max_rate = 100;                           // --tap-max-rate
  Duration max_duration = std::chrono::minutes(10);  // --tap-max-duration
  size_t max_concurrent = 8;                         // --tap-max-concurrent
  uint32_t max_events_per_second = 1000;             // --tap-max-events-per-second
  // What a tap asks when it does not say (at most the limits above).
  uint32_t default_rate = 10;
  Duration default_duration = std::chrono::seconds(60);
};

// A tap forwarded to another replica (server streaming: PeerTapRequest, then PeerTapEvents).
inline constexpr char kPeerTapMethod[] = "/meshlet.xds.TapForwarding/Tap";

// Starts `method` on every other live replica's discovery port, with the credentials replicas
// call each other with, and returns (replica name, call); empty without other replicas.
using PeerCall = std::pair<std::string, std::shared_ptr<http::grpc::ClientCall>>;
using PeerCallStarter = std::function<std::vector<PeerCall>(absl::string_view method)>;

// --tap-max-rate, --tap-max-duration, --tap-max-concurrent, --tap-max-events-per-second.
std::vector<flags::Flag> TapFlags(TapOptions& options);

// A token bucket on the loop's clock (rate per second, burst one second's worth).
class TapRateBucket {
 public:
  explicit TapRateBucket(uint32_t rate) : rate_(rate), tokens_(rate) {}
  bool Take(MonotonicTime now);

 private:
  const double rate_;
  double tokens_;
  std::optional<MonotonicTime> last_;
};

class TapService {
 public:
  TapService(event::Loop& loop, const Clock& clock, AdsServer& ads, TapOptions options,
             StatsShard& stats);
  ~TapService();
  TapService(const TapService&) = delete;
  TapService& operator=(const TapService&) = delete;

  // GET /api/v1/tap from `caller` (null: a caller without a token, refused), whom the gate let in.
  void Handle(const http::ServerRequest& request, const access::Principal* caller,
              http::Responder respond);
  size_t active() const { return taps_.size() + peer_taps_.size(); }

  // How taps reach the other replicas (unset: they do not), and this replica's name as they
  // know it. Call before the first tap.
  void SetPeers(PeerCallStarter starter, std::string replica_name) {
    peers_ = std::move(starter);
    replica_name_ = std::move(replica_name);
  }
  // kPeerTapMethod: a tap another replica forwards; the caller must already be authenticated as
  // a control-plane replica. Bounded by this replica's own limits (rate, duration, concurrent).
  void ServePeer(std::shared_ptr<http::grpc::ServerCall> call);

 private:
  struct Tap;
  struct PeerTap;
  // The sidecars of a target connected here, sorted (workload NS/POD or service [NS/]NAME).
  std::vector<std::string> MatchNodes(const std::string& workload, const std::string& service,
                                      const std::string& namespace_param) const;
  // Forwards `tap` to the other replicas and merges what they send.
  void ForwardToPeers(Tap& tap, const meshlet::xds::PeerTapRequest& request);
  void OnPeerFinished(const std::string& id, const std::string& replica,
                      http::grpc::StatusCode code, const std::string& message);
  void EndPeerTap(const std::string& id, bool caller_gone);
  void OnEvents(Tap& tap, const std::string& node_id, const meshlet::xds::TapEvents& events);
  void Write(Tap& tap, const std::string& out);
  // Ends `id` with `reason`: the sidecars are told to stop, TapEnded is written (unless the
  // caller went), the stream ends.
  void End(const std::string& id, absl::string_view reason, bool caller_gone = false);
  http::ServerResponse Refuse(int status, absl::string_view reason, absl::string_view message);

  event::Loop& loop_;
  const Clock& clock_;
  AdsServer& ads_;
  const TapOptions options_;
  std::map<std::string, std::unique_ptr<Tap>> taps_;
  std::map<std::string, std::unique_ptr<PeerTap>> peer_taps_;  // forwarded here, by their id
  PeerCallStarter peers_;
  std::string replica_name_;
  TapRateBucket events_bucket_;  // every tap's events together
  uint64_t next_id_ = 1;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  Gauge active_gauge_;
  Counter started_;
  std::map<std::string, Counter, std::less<>> refused_;
  Counter events_;
  Counter dropped_tap_rate_;
  Counter dropped_cp_rate_;
  Counter dropped_slow_caller_;
  // meshlet_cp_tap_peer_calls_total{result}: forwarded taps as the replica asked sees them.
  Counter peer_started_, peer_none_, peer_unreachable_;
  Counter peer_served_;  // meshlet_cp_tap_forwarded_total: taps other replicas forwarded here
};

}  // namespace meshlet::controlplane::ads

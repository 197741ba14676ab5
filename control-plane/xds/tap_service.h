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
// Replicas: only the sidecars connected to this replica are tapped (a sidecar holds one stream,
// to one replica); TapStarted lists them. docs/control-plane.md says how to reach the others.
//
// Threading: the control plane's loop thread (the ADS server's and the API's).

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/flags/flags.h"
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
  size_t active() const { return taps_.size(); }

 private:
  struct Tap;
  void OnEvents(Tap& tap, const std::string& node_id, const meshlet::xds::TapEvents& events);
  // Ends `id` with `reason`: the sidecars are told to stop, TapEnded is written (unless the
  // caller went), the stream ends.
  void End(const std::string& id, absl::string_view reason, bool caller_gone = false);
  http::ServerResponse Refuse(int status, absl::string_view reason, absl::string_view message);

  event::Loop& loop_;
  const Clock& clock_;
  AdsServer& ads_;
  const TapOptions options_;
  std::map<std::string, std::unique_ptr<Tap>> taps_;
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
};

}  // namespace meshlet::controlplane::ads

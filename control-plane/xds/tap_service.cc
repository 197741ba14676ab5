#include "control-plane/xds/tap_service.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/stats/or_discard.h"
#include "control-plane/api/status.h"

namespace meshlet::controlplane::ads {
namespace {

// How long after its duration a tap waits for its sidecars' last batches before it ends anyway.
constexpr Duration kEndGrace = std::chrono::seconds(2);

constexpr const char* kRefusalReasons[] = {"target",     "rate",     "duration", "headers",
                                           "concurrent", "no_proxy", "request"};

}  // namespace

std::vector<flags::Flag> TapFlags(TapOptions& options) {
  return {
      flags::IntFlag<uint32_t>("--tap-max-rate", "N", &options.max_rate,
                               "the most events per second one live tap (GET /api/v1/tap, "
                               "meshctl tap) may ask; more is refused with 400 (default 100)"),
      flags::PositiveDurationFlag("--tap-max-duration", &options.max_duration,
                                  "the longest a live tap may run; longer is refused with 400 "
                                  "(default 10m)",
                                  "10m"),
      flags::IntFlag<size_t>("--tap-max-concurrent", "N", &options.max_concurrent,
                             "live taps this control plane runs at once; more are refused with "
                             "429 (default 8)"),
      flags::IntFlag<uint32_t>("--tap-max-events-per-second", "N", &options.max_events_per_second,
                               "the most tap events per second this control plane sends all its "
                               "tap callers together; more are dropped and counted (default "
                               "1000)"),
  };
}

bool TapRateBucket::Take(MonotonicTime now) {
  if (last_.has_value()) {
    const double elapsed = std::chrono::duration<double>(now - *last_).count();
    tokens_ = std::min(rate_, tokens_ + std::max(0.0, elapsed) * rate_);
  }
  last_ = now;
  if (tokens_ < 1) return false;
  tokens_ -= 1;
  return true;
}

struct TapService::Tap {
  std::string id;
  std::shared_ptr<http::ResponseBodyStream> body;
  std::set<std::string> running;  // the sidecars that have not ended their part
  TapRateBucket bucket;
  std::unique_ptr<event::Timer> timer;
  uint64_t events = 0;
  uint64_t dropped_sidecar_rate = 0;  // the sidecars' own drops (rate, batch bytes)
  uint64_t dropped_sidecar_cap = 0;
  uint64_t dropped_tap_rate = 0;     // over the tap's rate, across its sidecars
  uint64_t dropped_cp_rate = 0;      // over --tap-max-events-per-second
  uint64_t dropped_slow_caller = 0;  // lines the caller did not read in time
  // The other replicas still streaming their part, and the sidecars each named.
  std::map<std::string, std::shared_ptr<http::grpc::ClientCall>> peers;
  std::map<std::string, std::vector<std::string>> peer_proxies;
  size_t proxies_seen = 0;  // here and on the other replicas
  explicit Tap(uint32_t rate) : bucket(rate) {}
};

// A tap another replica forwarded here: its call, and the sidecars that have not ended.
struct TapService::PeerTap {
  std::shared_ptr<http::grpc::ServerCall> call;
  std::set<std::string> running;
  std::unique_ptr<event::Timer> timer;
  uint64_t events = 0;
};

TapService::TapService(event::Loop& loop, const Clock& clock, AdsServer& ads, TapOptions options,
                       StatsShard& stats)
    : loop_(loop),
      clock_(clock),
      ads_(ads),
      options_(std::move(options)),
      events_bucket_(options_.max_events_per_second) {
  active_gauge_ =
      OrDiscard(stats.RegisterGauge("meshlet_cp_tap_active", "Live taps this control plane runs."),
                "meshlet_cp_tap_active");
  started_ = OrDiscard(
      stats.RegisterCounter("meshlet_cp_tap_started_total", "Live taps started (GET /api/v1/tap)."),
      "meshlet_cp_tap_started_total");
  for (const char* reason : kRefusalReasons) {
    refused_[reason] = OrDiscard(
        stats.RegisterCounter("meshlet_cp_tap_refused_total",
                              "Live taps refused, by reason: target (none or both named), rate, "
                              "duration, headers (not admin), concurrent (--tap-max-concurrent), "
                              "no_proxy (no sidecar of the target here), request (other).",
                              {{"reason", reason}}),
        "meshlet_cp_tap_refused_total");
  }
  events_ = OrDiscard(
      stats.RegisterCounter("meshlet_cp_tap_events_total", "Live tap events sent to callers."),
      "meshlet_cp_tap_events_total");
  constexpr char kDropped[] = "meshlet_cp_tap_events_dropped_total";
  constexpr char kDroppedHelp[] =
      "Live tap events the sidecars sent but no caller got: over the tap's rate across its "
      "sidecars (tap_rate), over --tap-max-events-per-second (control_plane_rate), or lines "
      "a caller that does not read left (slow_caller).";
  dropped_tap_rate_ =
      OrDiscard(stats.RegisterCounter(kDropped, kDroppedHelp, {{"reason", "tap_rate"}}), kDropped);
  dropped_cp_rate_ = OrDiscard(
      stats.RegisterCounter(kDropped, kDroppedHelp, {{"reason", "control_plane_rate"}}), kDropped);
  dropped_slow_caller_ = OrDiscard(
      stats.RegisterCounter(kDropped, kDroppedHelp, {{"reason", "slow_caller"}}), kDropped);
  constexpr char kPeerCalls[] = "meshlet_cp_tap_peer_calls_total";
  constexpr char kPeerCallsHelp[] =
      "Live taps forwarded to other control-plane replicas, by what each answered: started (it "
      "has sidecars of the target), none (it has none), unreachable (the call failed).";
  peer_started_ = OrDiscard(
      stats.RegisterCounter(kPeerCalls, kPeerCallsHelp, {{"result", "started"}}), kPeerCalls);
  peer_none_ = OrDiscard(stats.RegisterCounter(kPeerCalls, kPeerCallsHelp, {{"result", "none"}}),
                         kPeerCalls);
  peer_unreachable_ = OrDiscard(
      stats.RegisterCounter(kPeerCalls, kPeerCallsHelp, {{"result", "unreachable"}}), kPeerCalls);
  peer_served_ = OrDiscard(
      stats.RegisterCounter("meshlet_cp_tap_forwarded_total",
                            "Live taps other control-plane replicas forwarded to this one and it "
                            "started on its sidecars."),
      "meshlet_cp_tap_forwarded_total");
}

TapService::~TapService() {
  *alive_ = false;
  std::vector<std::string> ids;
  for (const auto& [id, tap] : taps_) ids.push_back(id);
  for (const std::string& id : ids) End(id, "the control plane is stopping");
  ids.clear();
  for (const auto& [id, tap] : peer_taps_) ids.push_back(id);
  for (const std::string& id : ids) EndPeerTap(id, /*caller_gone=*/false);
}

std::vector<std::string> TapService::MatchNodes(const std::string& workload,
                                                const std::string& service,
                                                const std::string& namespace_param) const {
  std::string target_namespace;
  std::string name = workload.empty() ? service : workload;
  if (const size_t slash = name.find('/'); slash != std::string::npos) {
    target_namespace = name.substr(0, slash);
    name = name.substr(slash + 1);
  }
  if (target_namespace.empty()) target_namespace = namespace_param;
  std::vector<std::string> nodes;
  for (const ProxyStatus& proxy : ads_.ProxyStatuses()) {
    if (!target_namespace.empty() && proxy.namespace_ != target_namespace) continue;
    const bool match = workload.empty() ? proxy.service == name
                                        : proxy.id == name ||
                                              proxy.id == absl::StrCat(name, ".", proxy.namespace_);
    if (match) nodes.push_back(proxy.id);
  }
  std::sort(nodes.begin(), nodes.end());
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  return nodes;
}

http::ServerResponse TapService::Refuse(int status, absl::string_view reason,
                                        absl::string_view message) {
  auto it = refused_.find(reason);
  if (it != refused_.end()) it->second.Inc();
  static const absl::string_view kReasons[] = {"BadRequest",      "Forbidden",    "NotFound",
                                               "TooManyRequests", "Unauthorized", "Error"};
  const absl::string_view name = status == 400   ? kReasons[0]
                                 : status == 403 ? kReasons[1]
                                 : status == 404 ? kReasons[2]
                                 : status == 429 ? kReasons[3]
                                 : status == 401 ? kReasons[4]
                                                 : kReasons[5];
  return api::StatusResponse(status, name, message);
}

void TapService::Handle(const http::ServerRequest& request, const access::Principal* caller,
                        http::Responder respond) {
  if (caller == nullptr) {
    return respond(Refuse(401, "request", "a live tap needs an API token"));
  }
  if (request.method() != "GET") {
    http::ServerResponse response = Refuse(405, "request", "GET only");
    response.headers.Set("allow", "GET");
    return respond(std::move(response));
  }
  std::map<std::string, std::string> query = request.QueryParams();
  const std::string workload = query["workload"];
  std::string service = query["service"];
  if (workload.empty() == service.empty()) {
    return respond(Refuse(400, "target", "name one of workload=NAMESPACE/POD or service=NAME"));
  }
  // The defaults, within this control plane's limits.
  uint32_t rate = std::min(options_.default_rate, options_.max_rate);
  if (!query["rate"].empty() && (!absl::SimpleAtoi(query["rate"], &rate) || rate == 0)) {
    return respond(Refuse(400, "rate",
                          absl::StrCat("rate=", query["rate"],
                                       ": must be a whole number of events per "
                                       "second from 1")));
  }
  if (rate > options_.max_rate) {
    return respond(Refuse(400, "rate",
                          absl::StrCat("rate=", rate,
                                       ": above this control plane's "
                                       "--tap-max-rate ",
                                       options_.max_rate)));
  }
  Duration duration = std::min(options_.default_duration, options_.max_duration);
  if (!query["duration"].empty()) {
    absl::Duration parsed;
    if (!absl::ParseDuration(query["duration"], &parsed) || parsed <= absl::ZeroDuration()) {
      return respond(Refuse(400, "duration",
                            absl::StrCat("duration=", query["duration"],
                                         ": must be a positive duration such "
                                         "as 30s")));
    }
    duration = absl::ToChronoNanoseconds(parsed);
  }
  if (duration > options_.max_duration) {
    return respond(
        Refuse(400, "duration",
               absl::StrCat("duration=", query["duration"],
                            ": above this control plane's "
                            "--tap-max-duration ",
                            absl::FormatDuration(absl::FromChrono(options_.max_duration)))));
  }
  const std::string headers_param = query["headers"];
  if (!headers_param.empty() && headers_param != "true" && headers_param != "false") {
    return respond(Refuse(400, "request", "headers: must be true or false"));
  }
  const bool headers = headers_param == "true";
  if (headers && !access::Grants(caller->role, access::Role::kAdmin)) {
    return respond(
        Refuse(403, "headers",
               absl::StrCat("headers=true: a tap with request and response headers needs the admin "
                            "role; ",
                            caller->name, " has ", access::RoleName(caller->role),
                            " (tap without headers=true to see the requests)")));
  }
  const std::string direction = query["direction"];
  if (!direction.empty() && direction != "inbound" && direction != "outbound") {
    return respond(Refuse(400, "request", "direction: must be inbound or outbound"));
  }
  if (active() >= options_.max_concurrent) {
    return respond(Refuse(429, "concurrent",
                          absl::StrCat("this control plane runs ", active(),
                                       " live taps, its most (--tap-max-concurrent ",
                                       options_.max_concurrent, "); try again later")));
  }
  if (!workload.empty() && workload.find('/') == std::string::npos) {
    return respond(Refuse(400, "target", "workload: must be NAMESPACE/POD"));
  }
  // The target's sidecars connected here, and the other replicas, which may have others.
  const std::vector<std::string> nodes = MatchNodes(workload, service, query["namespace"]);
  const std::string target =
      workload.empty() ? absl::StrCat("service ", service) : absl::StrCat("workload ", workload);
  std::vector<PeerCall> peer_calls = peers_ ? peers_(kPeerTapMethod) : std::vector<PeerCall>();
  if (nodes.empty() && peer_calls.empty()) {
    return respond(Refuse(
        404, "no_proxy",
        absl::StrCat("no sidecar of ", target, " is connected to this control plane replica")));
  }

  const std::string id =
      absl::StrCat("tap-", absl::ToUnixMicros(clock_.WallNow()), "-", next_id_++);
  meshlet::xds::TapCommand command;
  command.set_id(id);
  command.set_direction(direction);
  command.set_method(query["method"]);
  command.set_authority(query["authority"]);
  command.set_path_prefix(query["path"]);
  command.set_rate(rate);  // the whole tap's, as the other replicas are told
  command.set_duration_ms(static_cast<uint32_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(duration).count()));
  command.set_headers(headers);
  meshlet::xds::PeerTapRequest forwarded;
  forwarded.set_workload(workload);
  forwarded.set_service(service);
  forwarded.set_namespace_(query["namespace"]);
  *forwarded.mutable_command() = command;
  forwarded.set_caller(caller->name);
  forwarded.set_replica(replica_name_);
  // Each sidecar here its share of the rate (rounded up); the tap's bucket holds the whole.
  if (!nodes.empty()) {
    command.set_rate(static_cast<uint32_t>((rate + nodes.size() - 1) / nodes.size()));
  }

  std::string started =
      absl::StrCat(R"({"kind":"TapStarted","id":)", JsonQuote(id), R"(,"target":)",
                   JsonQuote(target), R"(,"rate":)", rate, R"(,"durationSeconds":)",
                   std::chrono::duration<double>(duration).count(), R"(,"headers":)",
                   headers ? "true" : "false", R"(,"proxies":)");
  AppendJsonStringArray(&started, nodes);
  std::vector<std::string> replicas;
  for (const PeerCall& peer : peer_calls) replicas.push_back(peer.first);
  started += R"(,"replicas":)";
  AppendJsonStringArray(&started, replicas);
  started += "}\n";
  LOG(INFO) << "tap " << id << " by " << caller->name << ": " << target << ", rate " << rate
            << "/s, " << absl::FormatDuration(absl::FromChrono(duration))
            << (headers ? ", with headers" : "") << ", " << nodes.size() << " sidecar(s) here, "
            << peer_calls.size() << " other replica(s) asked";

  auto tap = std::make_unique<Tap>(rate);
  tap->id = id;
  tap->proxies_seen = nodes.size();
  for (PeerCall& peer : peer_calls)
    tap->peers.emplace(std::move(peer.first), std::move(peer.second));
  taps_.emplace(id, std::move(tap));
  active_gauge_.Set(static_cast<int64_t>(active()));
  started_.Inc();

  http::ServerResponse response;
  response.status = 200;
  response.headers.Add("content-type", "application/x-ndjson");
  response.headers.Add("cache-control", "no-store");
  response.body = std::move(started);
  response.stream = [this, alive = alive_, id, command, nodes, duration,
                     forwarded](std::shared_ptr<http::ResponseBodyStream> body) {
    if (!*alive) return body->End();
    auto it = taps_.find(id);
    if (it == taps_.end()) return body->End();
    Tap& tap = *it->second;
    tap.body = body;
    body->OnGone([this, alive, id] {
      if (*alive) End(id, "the caller went away", /*caller_gone=*/true);
    });
    const std::vector<std::string> sent =
        nodes.empty() ? std::vector<std::string>()
                      : ads_.StartTap(command, nodes,
                                      [this, alive, id](const std::string& node_id,
                                                        const meshlet::xds::TapEvents& events) {
                                        if (!*alive) return;
                                        auto found = taps_.find(id);
                                        if (found != taps_.end())
                                          OnEvents(*found->second, node_id, events);
                                      });
    tap.running.insert(sent.begin(), sent.end());
    ForwardToPeers(tap, forwarded);
    if (sent.empty() && tap.peers.empty())
      return End(id, "no sidecar of the target could be asked");
    tap.timer = std::make_unique<event::Timer>(loop_, [this, id] { End(id, "duration"); });
    tap.timer->Enable(duration + kEndGrace);
  };
  respond(std::move(response));
}

void TapService::OnEvents(Tap& tap, const std::string& node_id,
                          const meshlet::xds::TapEvents& events) {
  std::string out;
  if (events.started()) {
    absl::StrAppend(&out, R"({"kind":"TapProxy","proxy":)", JsonQuote(node_id),
                    R"(,"status":"started"})", "\n");
  }
  const MonotonicTime now = loop_.Now();
  for (absl::string_view line : absl::StrSplit(events.events_json(), '\n', absl::SkipEmpty())) {
    // Each event is one JSON object: the proxy's id is put first in it.
    if (line.size() < 2 || line.front() != '{' || line.back() != '}') continue;
    if (!tap.bucket.Take(now)) {
      ++tap.dropped_tap_rate;
      dropped_tap_rate_.Inc();
      continue;
    }
    if (!events_bucket_.Take(now)) {
      ++tap.dropped_cp_rate;
      dropped_cp_rate_.Inc();
      continue;
    }
    absl::StrAppend(&out, R"({"kind":"TapEvent","proxy":)", JsonQuote(node_id),
                    line.size() > 2 ? "," : "", line.substr(1), "\n");
    ++tap.events;
    events_.Inc();
  }
  tap.dropped_sidecar_rate += events.dropped_rate();
  tap.dropped_sidecar_cap += events.dropped_cap();
  if (events.ended()) {
    tap.running.erase(node_id);
    absl::StrAppend(&out, R"({"kind":"TapProxy","proxy":)", JsonQuote(node_id), R"(,"status":)",
                    events.error().empty() ? R"("ended")" : R"("refused")");
    if (!events.error().empty()) absl::StrAppend(&out, R"(,"error":)", JsonQuote(events.error()));
    out += "}\n";
  }
  Write(tap, out);
  if (events.ended() && tap.running.empty() && tap.peers.empty()) {
    End(tap.id, "every sidecar ended its part");
  }
}

void TapService::Write(Tap& tap, const std::string& out) {
  if (!out.empty() && tap.body != nullptr && !tap.body->Write(out) && !tap.body->gone()) {
    // The caller does not read: what it would not take is counted, not held.
    tap.dropped_slow_caller += static_cast<uint64_t>(std::count(out.begin(), out.end(), '\n'));
    dropped_slow_caller_.Inc();
  }
}

void TapService::ForwardToPeers(Tap& tap, const meshlet::xds::PeerTapRequest& request) {
  for (const auto& [replica, call] : tap.peers) {
    call->OnProtoMessage<meshlet::xds::PeerTapEvents>(
        [this, alive = alive_, id = tap.id, replica = replica](meshlet::xds::PeerTapEvents m) {
          if (!*alive) return;
          auto it = taps_.find(id);
          if (it == taps_.end()) return;
          Tap& t = *it->second;
          if (!m.has_events()) {  // the first message: the replica's sidecars of the target
            std::vector<std::string>& proxies = t.peer_proxies[replica];
            proxies.assign(m.proxies().begin(), m.proxies().end());
            t.running.insert(proxies.begin(), proxies.end());
            t.proxies_seen += proxies.size();
            peer_started_.Inc();
            std::string line =
                absl::StrCat(R"({"kind":"TapReplica","replica":)", JsonQuote(replica),
                             R"(,"status":"started","proxies":)");
            AppendJsonStringArray(&line, proxies);
            line += "}\n";
            return Write(t, line);
          }
          OnEvents(t, m.proxy(), m.events());
        });
    call->OnFinish(
        [this, alive = alive_, id = tap.id, replica = replica](
            http::grpc::StatusCode code, const std::string& message, const http::HeaderMap&) {
          if (*alive) OnPeerFinished(id, replica, code, message);
        });
    call->SendProto(request);
    call->HalfClose();
  }
}

void TapService::OnPeerFinished(const std::string& id, const std::string& replica,
                                http::grpc::StatusCode code, const std::string& message) {
  auto it = taps_.find(id);
  if (it == taps_.end()) return;
  Tap& tap = *it->second;
  tap.peers.erase(replica);
  // Its sidecars that have not said they ended never will now.
  for (const std::string& proxy : tap.peer_proxies[replica]) tap.running.erase(proxy);
  if (code == http::grpc::StatusCode::kNotFound) {
    peer_none_.Inc();
    Write(tap, absl::StrCat(R"({"kind":"TapReplica","replica":)", JsonQuote(replica),
                            R"(,"status":"none"})", "\n"));
  } else if (code != http::grpc::StatusCode::kOk) {
    peer_unreachable_.Inc();
    LOG_EVERY_N_SEC(WARN, 10) << "tap " << id << ": replica " << replica
                              << " failed: " << http::grpc::StatusCodeName(code) << ": " << message;
    Write(tap,
          absl::StrCat(R"({"kind":"TapReplica","replica":)", JsonQuote(replica),
                       R"(,"status":"unreachable","error":)",
                       JsonQuote(absl::StrCat(http::grpc::StatusCodeName(code), ": ", message)),
                       "}\n"));
  }
  if (tap.running.empty() && tap.peers.empty()) {
    End(id, tap.proxies_seen == 0 ? "no sidecar of the target is connected to any replica"
                                  : "every sidecar ended its part");
  }
}

void TapService::ServePeer(std::shared_ptr<http::grpc::ServerCall> call) {
  call->OnUnaryRequest<meshlet::xds::PeerTapRequest>(
      [this, alive = alive_, weak = std::weak_ptr<http::grpc::ServerCall>(call)](
          std::optional<meshlet::xds::PeerTapRequest> request) {
        std::shared_ptr<http::grpc::ServerCall> call = weak.lock();
        if (!*alive || call == nullptr) return;
        using http::grpc::StatusCode;
        if (!request.has_value() || request->command().id().empty() ||
            request->workload().empty() == request->service().empty()) {
          call->Finish(StatusCode::kInvalidArgument,
                       "a PeerTapRequest with a command id and one of workload or service");
          return;
        }
        const std::vector<std::string> nodes =
            MatchNodes(request->workload(), request->service(), request->namespace_());
        if (nodes.empty()) {
          call->Finish(StatusCode::kNotFound, "no sidecar of the target is connected here");
          return;
        }
        const std::string id = absl::StrCat("fwd-", request->command().id());
        if (peer_taps_.count(id) != 0) {
          call->Finish(StatusCode::kAlreadyExists, "this tap already runs here");
          return;
        }
        if (active() >= options_.max_concurrent) {
          refused_["concurrent"].Inc();
          call->Finish(StatusCode::kResourceExhausted,
                       absl::StrCat("this replica runs ", active(), " live taps, its most"));
          return;
        }
        // This replica's own limits hold too.
        meshlet::xds::TapCommand command = request->command();
        const uint32_t rate = std::max<uint32_t>(1, std::min(command.rate(), options_.max_rate));
        const auto max_ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(options_.max_duration);
        const uint32_t duration_ms =
            static_cast<uint32_t>(std::min<int64_t>(command.duration_ms(), max_ms.count()));
        command.set_id(id);
        command.set_rate(static_cast<uint32_t>((rate + nodes.size() - 1) / nodes.size()));
        command.set_duration_ms(duration_ms);
        meshlet::xds::PeerTapEvents first;
        for (const std::string& node : nodes) first.add_proxies(node);
        call->SendProto(first);
        auto peer_tap = std::make_unique<PeerTap>();
        peer_tap->call = call;
        const std::vector<std::string> sent = ads_.StartTap(
            command, nodes,
            [this, alive, id](const std::string& node_id, const meshlet::xds::TapEvents& events) {
              if (!*alive) return;
              auto it = peer_taps_.find(id);
              if (it == peer_taps_.end()) return;
              meshlet::xds::PeerTapEvents m;
              m.set_proxy(node_id);
              *m.mutable_events() = events;
              it->second->call->SendProto(m);
              it->second->events += events.events();
              if (events.ended()) {
                it->second->running.erase(node_id);
                if (it->second->running.empty()) EndPeerTap(id, /*caller_gone=*/false);
              }
            });
        if (sent.empty()) {
          call->Finish(StatusCode::kNotFound, "no sidecar of the target could be asked here");
          return;
        }
        peer_tap->running.insert(sent.begin(), sent.end());
        peer_tap->timer = std::make_unique<event::Timer>(
            loop_, [this, id] { EndPeerTap(id, /*caller_gone=*/false); });
        peer_tap->timer->Enable(std::chrono::milliseconds(duration_ms) + kEndGrace);
        call->OnCancel([this, alive, id] {
          if (*alive) EndPeerTap(id, /*caller_gone=*/true);
        });
        LOG(INFO) << "tap " << id << " forwarded by replica " << request->replica() << " for "
                  << request->caller() << ": "
                  << (request->workload().empty() ? "service " + request->service()
                                                  : "workload " + request->workload())
                  << ", " << sent.size() << " sidecar(s) here";
        peer_taps_.emplace(id, std::move(peer_tap));
        active_gauge_.Set(static_cast<int64_t>(active()));
        peer_served_.Inc();
      });
}

void TapService::EndPeerTap(const std::string& id, bool caller_gone) {
  auto it = peer_taps_.find(id);
  if (it == peer_taps_.end()) return;
  std::unique_ptr<PeerTap> tap = std::move(it->second);
  peer_taps_.erase(it);
  active_gauge_.Set(static_cast<int64_t>(active()));
  ads_.StopTap(id);
  LOG(INFO) << "tap " << id << " ended here (" << tap->events << " events"
            << (caller_gone ? ", the replica asking went away)" : ")");
  if (!caller_gone) tap->call->Finish(http::grpc::StatusCode::kOk);
}

void TapService::End(const std::string& id, absl::string_view reason, bool caller_gone) {
  auto it = taps_.find(id);
  if (it == taps_.end()) return;
  std::unique_ptr<Tap> tap = std::move(it->second);
  taps_.erase(it);
  active_gauge_.Set(static_cast<int64_t>(active()));
  // Nothing of the tap reaches this service after this: the sidecars here and the other
  // replicas are told to stop (a cancelled call's OnFinish finds no tap).
  ads_.StopTap(id);
  for (const auto& [replica, call] : tap->peers) call->Cancel();
  LOG(INFO) << "tap " << id << " ended: " << reason << " (" << tap->events << " events)";
  if (caller_gone || tap->body == nullptr) return;
  tap->body->Write(
      absl::StrCat(R"({"kind":"TapEnded","id":)", JsonQuote(id), R"(,"reason":)", JsonQuote(reason),
                   R"(,"events":)", tap->events, R"(,"dropped":{"sidecarRate":)",
                   tap->dropped_sidecar_rate, R"(,"sidecarBatchBytes":)", tap->dropped_sidecar_cap,
                   R"(,"tapRate":)", tap->dropped_tap_rate, R"(,"controlPlaneRate":)",
                   tap->dropped_cp_rate, R"(,"slowCaller":)", tap->dropped_slow_caller, "}}\n"));
  tap->body->End();
}

}  // namespace meshlet::controlplane::ads

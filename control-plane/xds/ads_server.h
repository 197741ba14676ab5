#pragma once

// AdsServer: the control plane's aggregated discovery service (docs/xds.md). Each sidecar opens
// one bidirectional gRPC stream, state of the world
// (/meshlet.xds.AggregatedDiscoveryService/StreamAggregatedResources) or incremental
// (.../DeltaAggregatedResources), sends its Node, subscribes to resource types, and gets every
// type it subscribed to whenever its resources change.
//
// Where resources come from: a ResourceGenerator turns a Node into the node's resources (the
// translator in production, a file in tests and demos). The server calls it on the loop thread
// whenever a node needs a push: on its first subscriptions and after NotifyChanged().
//
// What it guarantees:
//   - Push order: secrets, clusters, endpoints, route configurations, listeners — each type only
//     names earlier ones. Removals go the other way: a first pass sends each type as the union of
//     the new and the old set, a second pass (reverse order) drops what is gone, so a sidecar that
//     validates its whole configuration at every step never sees a name it cannot resolve. The
//     old set of a reconnected sidecar is what it announces (delta: initial_resource_versions;
//     state of the world: the set whose version it reports, when that is the one it would get).
//   - Versions are content hashes (resource_set.h): an unchanged type is never re-sent, and a
//     NACKed version is not sent again (TypeSubscription).
//   - Debounce: NotifyChanged() starts a push round once changes have been quiet for
//     `debounce_quiet`, or `debounce_max_delay` after the first of a burst at the latest.
//   - Throttling: at most `max_concurrent_pushes` nodes have a push awaiting its answers; others
//     queue (FIFO). A push that is not fully answered within `push_timeout` frees its slot.
//   - Lookups (ADR 0086): lookup keys a delta stream subscribes on the ServiceRoute type are
//     passed to the generator (GenerateRequest::keys) and answered in one push on the loop turn
//     after the request (no debounce, no queue, no slot): the found Service's clusters and
//     endpoints, then its ServiceRoute with the key in Resource.aliases, or the key in
//     removed_resources when nothing answers it. A key is answered again only when its answer
//     changes (a Service created or removed later). Keys are bounded per stream
//     (`on_demand_max_keys`, a token bucket of `on_demand_rate`/`on_demand_burst`).
//
// Observers: ProxyObserver hears about sidecars connecting (first request with a Node),
// disconnecting (stream ended) and reporting their readiness (a request carrying
// WorkloadReadiness) — the registry's Connect/Disconnect/SetReady. A report that rides on a
// stream's first request reaches the observer right after OnProxyConnected. A request of type
// xds::kReadinessTypeUrl is a report and nothing else: it subscribes to nothing and answers no
// response (no ACK, no NACK, nonces and versions untouched).
//
// The methods' names and type URLs are the shared ones of xds/protocol.h. The implementation is
// split by concern over ads_*.cc (ads_server_internal.h lists them).
//
// Threading: everything runs on the loop thread, except NotifyChanged() and the *AnyThread
// status readers, which may be called from any thread. The generator and the observer are called
// on the loop thread and must not block for long.

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/grpc/server.h"
#include "common/stats/stats.h"
#include "control-plane/xds/resource_set.h"
#include "control-plane/xds/subscription.h"
#include "xds/discovery.pb.h"
#include "xds/node.pb.h"
#include "xds/protocol.h"

namespace meshlet::controlplane::ads {

struct AdsServerOptions {
  // A push round starts once changes have been quiet this long...
  Duration debounce_quiet = std::chrono::milliseconds(100);
  // ...or this long after the first change of a burst, whichever comes first.
  Duration debounce_max_delay = std::chrono::seconds(1);
  // Nodes whose push awaits answers at once; the rest wait in a queue.
  size_t max_concurrent_pushes = 100;
  // A new stream's first push waits this long after its first request, so subscriptions a client
  // sends one by one are served together, in dependency order.
  Duration initial_subscription_window = std::chrono::milliseconds(50);
  // A push not fully answered within this frees its slot (the sidecar is stuck or slow).
  Duration push_timeout = std::chrono::seconds(10);
  // Streams open at once; more are refused with RESOURCE_EXHAUSTED.
  size_t max_streams = 20000;
  // A delta push of one type is split into responses of at most this many bytes (a single larger
  // resource goes alone), so a push of 50 000 endpoints stays far below the message limit.
  size_t max_response_bytes = 2 * 1024 * 1024;
  // The stream's gRPC message limit (the sidecar's receive limit). A response above it is not
  // sent: a state-of-the-world response of the type, or a single delta resource, is withheld,
  // counted (meshlet_xds_oversized_responses_total) and shown TOO_LARGE in proxy-status; the
  // sidecar keeps what it runs instead of reconnecting forever.
  size_t max_message_bytes = http::grpc::kDefaultMaxMessageSize;
  // The same for a sidecar with capability large-xds-messages (0.2.0 on); the gRPC server's send
  // limit must allow it.
  size_t max_large_message_bytes = xds::kLargeXdsMessageBytes;
  // Lookups (ADR 0086, docs/xds.md "Lookups"): the lookup keys one delta stream may hold on its
  // ServiceRoute subscription; a key past it is answered missing and not held (over_limit).
  size_t on_demand_max_keys = 4096;
  // New keys a stream may send: a token bucket refilled at this many keys a second, holding at
  // most `on_demand_burst`; a key finding it empty is answered missing and not held
  // (rate_limited).
  size_t on_demand_rate = 100;
  size_t on_demand_burst = 500;
  // Sent in every response's system_version_info.
  std::string system_version_info = "meshlet-control-plane 0.1.0";
};

// Resources for one node. An error skips this push for the node (counted and logged); the
// sidecar keeps what it has.
using ResourceGenerator =
    std::function<absl::StatusOr<NodeResourceSet>(const GenerateRequest& request)>;

// What a stream may do once its first request's Node is authorized (StreamAuthorizer).
struct StreamGrant {
  // Who the stream proved to be (the client certificate's SPIFFE id); empty on a plaintext port.
  std::string identity;
  // The stream ends then (UNAUTHENTICATED): the client certificate's notAfter. The sidecar
  // reconnects with its renewed certificate.
  absl::Time expires = absl::InfiniteFuture();
};
// Decides, on the loop thread, whether the stream `call` may speak for `node` (the Node of its
// first request), from what its connection proved (ServerCall::peer()). An error ends the stream
// with that status (UNAUTHENTICATED, PERMISSION_DENIED) before anything is registered or sent;
// the authorizer logs and counts its refusals. Unset: every node is accepted.
using StreamAuthorizer = std::function<absl::StatusOr<StreamGrant>(
    const http::grpc::ServerCall& call, const xds::Node& node)>;

// Registry hook: called on the loop thread.
class ProxyObserver {
 public:
  virtual ~ProxyObserver() = default;
  // A stream sent its Node (first request). Several streams may carry one id for a moment
  // (a reconnect racing the old stream's close): each stream calls both methods once.
  virtual void OnProxyConnected(const xds::Node& node) = 0;
  virtual void OnProxyDisconnected(const std::string& node_id) = 0;
  // Any later request on a stream (an ACK, a NACK, a subscription): the sidecar is alive.
  virtual void OnProxyActivity(const std::string& node_id) { (void)node_id; }
  // A request carried the sidecar's readiness (`reason` at most kMaxReadinessReason bytes).
  // Every report is passed on, changed or not; the newest report of any stream of the id wins.
  virtual void OnProxyReadiness(const std::string& node_id, bool ready, const std::string& reason) {
    (void)node_id;
    (void)ready;
    (void)reason;
  }
  static constexpr size_t kMaxReadinessReason = 256;
};

// What proxy-status shows for one type on one stream.
struct TypeStatus {
  std::string type;      // "clusters", ...
  std::string type_url;  // "type.googleapis.com/meshlet.xds.Cluster"
  bool subscribed = false;
  std::string sent_version;  // empty: nothing sent yet
  std::string sent_nonce;
  std::string acked_version;  // empty: nothing ACKed yet
  // "ACKED" (the sidecar runs what was sent last), "NACKED" (it refused the last answered
  // response and runs acked_version), "PENDING" (awaiting an answer), "TOO_LARGE" (a response or
  // resource above the message limit was not sent; it runs the rest), "NOT_SENT", "UNSUBSCRIBED".
  std::string state;
  std::optional<TypeSubscription::Nack> last_nack;  // kept after later ACKs
  size_t resources = 0;                             // in the state the sidecar is assumed to hold
  uint64_t acks = 0;
  uint64_t nacks = 0;
};

// A stream's lookup keys (ADR 0086): held, answered found, answered missing (the rest await
// their first answer).
struct OnDemandStatus {
  size_t keys = 0;
  size_t found = 0;
  size_t missing = 0;
};

struct ProxyStatus {
  std::string id;
  std::string service;
  std::string namespace_;
  std::string sidecar_version;
  // The node's label meshlet.io/rev: the control-plane revision its pod was injected for ("" for
  // the unnamed one; control-plane/inject/revision.h).
  std::string revision;
  // The capabilities (xds/capabilities.h) its sidecar lacks: its configuration is sent in the
  // older forms (control-plane/translate/capability_gates.h). Empty for a current sidecar.
  std::vector<std::string> lacks;
  std::string peer;      // address the stream came from
  std::string identity;  // the SPIFFE id its client certificate proved; empty on plaintext
  std::string mode;      // "sotw" or "delta"
  absl::Time connected_since;
  // Why its sidecar last reported itself not ready ("traffic capture not in effect: ..."); empty
  // when ready or not reported yet.
  std::string not_ready_reason;
  std::vector<TypeStatus> types;  // in push order
  OnDemandStatus on_demand;
};

// JSON renderings for the API (`meshctl proxy-status`, `meshctl proxy-config NODE`).
std::string ProxyStatusJson(const std::vector<ProxyStatus>& statuses);
// Appends `,"onDemand":{"keys":N,"found":N,"missing":N}`.
void AppendOnDemandJson(std::string* out, const OnDemandStatus& status);

class AdsServer {
 public:
  // `clock` (may be null: the loop's) is for convergence times and timeouts.
  AdsServer(event::Loop& loop, StatsRegistry& stats, ResourceGenerator generator,
            AdsServerOptions options = {});
  ~AdsServer();
  AdsServer(const AdsServer&) = delete;
  AdsServer& operator=(const AdsServer&) = delete;

  // Registers both ADS methods on `server` (which may carry other services too).
  absl::Status Register(http::grpc::Server& server);
  // Not owned; null to stop. Set before streams arrive.
  void SetObserver(ProxyObserver* observer) { observer_ = observer; }
  // Set before streams arrive.
  void SetStreamAuthorizer(StreamAuthorizer authorizer) { authorizer_ = std::move(authorizer); }

  // Resources may have changed for any node. Any thread; debounced.
  void NotifyChanged();
  // Ends every stream (UNAVAILABLE via the gRPC server's own shutdown is the graceful way; this
  // stops timers and forgets streams without calling the observer).
  void Stop();

  // Loop thread.
  std::vector<ProxyStatus> ProxyStatuses() const;
  // The resources last sent to the newest stream of `node_id`, as JSON; nullopt: not connected.
  // Once the sidecar answered a RequestConfigDump, also its own view ("sidecar") and what
  // differs between the two ("diff"; docs/xds.md, "The sidecar's view").
  // With `lookups` (lookup keys, xds/protocol.h): the resources the control plane would send
  // that stream now had it also looked those keys up (generated afresh, as proxy-config and
  // explain --from --to show a destination an on-demand sidecar has not called yet, ADR 0086),
  // each key's answer in "lookups". Nothing is subscribed or sent.
  std::optional<std::string> ProxyConfigJson(absl::string_view node_id,
                                             absl::Span<const std::string> lookups = {}) const;
  // Asks the newest stream of `node_id` for the sidecar's view of its configuration
  // (SidecarConfigDump over the stream). Returns the request's nonce; NotFound when the node is
  // not connected. The answer replaces the stream's previous one.
  absl::StatusOr<std::string> RequestConfigDump(absl::string_view node_id);
  // Live tap (docs/xds.md "Live tap"): sends `command` (a start) to the newest stream of each of
  // `node_ids` that is connected and returns those it went to. `sink` gets, on the loop thread,
  // every TapEvents those sidecars send for command.id() with the sender's node id, and one with
  // `ended` and `error` for a sidecar whose stream ends while the tap runs on it. StopTap sends
  // the stop to every stream still running the tap and forgets the sink (nothing more reaches
  // it).
  using TapSink =
      std::function<void(const std::string& node_id, const meshlet::xds::TapEvents& events)>;
  std::vector<std::string> StartTap(const meshlet::xds::TapCommand& command,
                                    const std::vector<std::string>& node_ids, TapSink sink);
  void StopTap(const std::string& id);
  size_t connected_proxies() const { return streams_.size(); }
  size_t queued_pushes() const { return push_queue_.size(); }
  size_t pushes_in_flight() const { return pushes_in_flight_; }
  uint64_t push_rounds() const { return push_rounds_; }
  // Entries the pushes compared between what a stream held and what it should hold
  // (ResourceMap::Diff): proportional to what changed, not to the node's set.
  uint64_t push_entries_compared() const { return push_entries_compared_; }
  // Lookup keys the pushes compared with the answer last sent: the keys whose answer may have
  // changed (new ones, or all after a set generated whole), not every key a stream holds.
  uint64_t push_keys_compared() const { return push_keys_compared_; }

  // From any thread: runs the loop-thread reader there and waits (up to `timeout`).
  std::optional<std::vector<ProxyStatus>> ProxyStatusesAnyThread(Duration timeout) const;
  std::optional<std::optional<std::string>> ProxyConfigJsonAnyThread(std::string node_id,
                                                                     Duration timeout) const;

  const AdsServerOptions& options() const { return options_; }

 private:
  class Stream;
  struct Metrics;

  void OnStreamStarted(std::shared_ptr<http::grpc::ServerCall> call, bool delta);
  // Every request's node check: registers the node on the stream's first request (after the
  // authorizer) and reports activity on later ones; false when the stream was refused (and is
  // being ended).
  bool AcceptNode(Stream& stream, const xds::Node& node);
  // What a request of either variant starts with (node check, readiness report, config dump
  // answer); the resource type it is about, nullopt when there is nothing more to do.
  template <typename Request>
  std::optional<ResourceType> BeginRequest(Stream& stream, const Request& request);
  void OnRequest(Stream& stream, const xds::DiscoveryRequest& request);
  void OnDeltaRequest(Stream& stream, const xds::DeltaDiscoveryRequest& request);
  void OnStreamEnded(uint64_t stream_id);
  // Ends `stream` with `code` and forgets it on the next loop turn.
  void EndStream(Stream& stream, http::grpc::StatusCode code, absl::string_view message);
  Stream* NewestStream(absl::string_view node_id) const;
  void OnConfigDump(Stream& stream, const std::string& nonce,
                    const meshlet::xds::SidecarConfigDump& dump);
  void OnReadiness(Stream& stream, const meshlet::xds::WorkloadReadiness& readiness);
  void OnTapEvents(Stream& stream, const meshlet::xds::TapEvents& events);
  // Sends a tap command on `stream`; false when the stream is closing.
  bool SendTapCommand(Stream& stream, const meshlet::xds::TapCommand& command);
  std::string SidecarViewJson(const Stream& stream) const;
  std::string DiffJson(const Stream& stream) const;
  void RequestPush(Stream& stream, MonotonicTime changed_at);
  // New lookup keys (or keys refused and owed their answer): `stream` is pushed on the next
  // drain, ahead of the push queue and outside its slots; its first push answers them instead
  // while its first subscriptions gather.
  void RequestOnDemandPush(Stream& stream);
  void ScheduleDrain();
  void DrainQueue();
  // `on_demand`: a push for lookup keys (RequestOnDemandPush): it takes no slot, leaves the
  // stream's pending change to its own push and records no convergence.
  void Push(Stream& stream, bool on_demand = false);
  // A delta ServiceRoute subscription's lookup keys: each new one is checked (length, the
  // stream's limit, its token bucket) and held, or answered missing on the next push; an
  // unsubscribed one is forgotten. Returns whether a key was held or refused (an answer is owed).
  bool UpdateKeys(Stream& stream, const xds::DeltaDiscoveryRequest& request);
  // Lookup keys where none may be (`where`: another type, a state-of-the-world stream): counted
  // malformed and logged, never held or answered.
  void RefuseMisplacedKeys(Stream& stream,
                           const google::protobuf::RepeatedPtrField<std::string>& names,
                           absl::string_view where);
  void RecordAnswer(Stream& stream, TypeSubscription& sub, ResourceType type,
                    const std::string& nonce, const meshlet::xds::ErrorDetail* error);
  void OnPushMaybeDone(Stream& stream);
  void FinishPush(Stream& stream, bool timed_out);
  // A response (or, named by `resource`, one resource of a delta response) of `type` too large to
  // send: recorded on the subscription, counted and logged once per version.
  void Withhold(Stream& stream, ResourceType type, const std::string& version, size_t bytes,
                absl::string_view resource);
  void OnDebounceFired();
  void SweepTimeouts();
  MonotonicTime Now() const { return loop_.Now(); }

  event::Loop& loop_;
  const AdsServerOptions options_;
  ResourceGenerator generator_;
  ProxyObserver* observer_ = nullptr;
  StreamAuthorizer authorizer_;
  std::unique_ptr<Metrics> metrics_;

  uint64_t next_stream_id_ = 1;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Stream>> streams_;
  // Live taps running, by id: where their events go.
  absl::flat_hash_map<std::string, TapSink> taps_;
  std::deque<uint64_t> push_queue_;
  // Streams with lookup keys to answer, drained before push_queue_.
  std::deque<uint64_t> on_demand_queue_;
  // Lookup keys held by all streams (meshlet_xds_on_demand_keys).
  size_t on_demand_keys_ = 0;
  size_t pushes_in_flight_ = 0;
  bool drain_posted_ = false;
  uint64_t push_rounds_ = 0;
  uint64_t push_entries_compared_ = 0;
  uint64_t push_keys_compared_ = 0;

  // Debounce: the first change of the current burst and the latest one.
  std::optional<MonotonicTime> burst_started_;
  std::unique_ptr<event::Timer> debounce_timer_;
  std::unique_ptr<event::Timer> sweep_timer_;
  // Lets posted closures notice the server is gone.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace meshlet::controlplane::ads

#pragma once

// XdsClient: the sidecar's side of the aggregated discovery stream (docs/xds.md). It connects to
// the control plane, sends its Node, subscribes to every resource type (wildcard), and for every
// response builds the whole configuration the sidecar would run — the bootstrap's static
// resources plus every dynamic type, with the response's type replaced — and hands it to the
// apply callback. The callback validates and publishes it (BuildSnapshot + TLS contexts +
// workers) or refuses it with a reason: accepted → ACK with the new version and the response's
// nonce; refused → NACK (error_detail: INVALID_ARGUMENT and the reason), and the sidecar keeps
// running its last good configuration.
//
// What runs is not always exactly what the control plane sent (docs/xds.md, "What the sidecar
// accepts"), so that an update is never refused only because the other types still name, or do
// not yet have, what it changes:
//   - retained: a secret, cluster, load assignment (named by its EDS cluster) or route
//     configuration the control plane removed stays, as it ran, while the configuration being
//     applied still names it, and goes with the first update after which nothing names it;
//   - unmatched: a load assignment naming no cluster the configuration has is held (checked on
//     its own) but left out until its cluster arrives.
// A reference to something neither sent nor running is still refused. Versions, ACKs and the
// cache's per-type resources are always the control plane's.
//
// Each resource is parsed once and kept in one form, the message or (a load assignment, whose
// endpoints the snapshot keeps translated) the bytes as received: a response's resource whose
// serialized bytes hash as a held one's did (FNV-1a 64, as content versions do; delta: under the
// same name) reuses the held one, and the running configuration is kept assembled, so an update
// rebuilds only its own type's list (and those whose retained or held-aside resources change)
// before the whole configuration is validated.
//
// Persistence: the accepted configuration is written to <cache_dir>/xds-cache.pb atomically
// (temp file, fsync, rename, fsync of the directory), retained resources included, so a sidecar
// restarted while the control plane is away starts from it (LoadCache()). Until a complete
// configuration has been saved, every accepted one is saved at once; after that at most once per
// cache_write_interval (the first of a burst at once, the rest together when the interval has
// passed), and at once when the stream ends and when the client stops: a file written whole per
// response (two fsyncs) is not on the path of every answered lookup. A sidecar killed outright
// may so restart from a configuration up to that interval old (the control plane sends it the
// rest; its lookups are asked again).
//
// Reconnects: when the stream ends for any reason the client waits a full-jitter exponential
// backoff (0.5 s doubling to 30 s; the attempt count resets once a stream delivered a response)
// and opens a new stream, announcing what it holds (version_info per type; in delta mode the
// version of every resource), so an unchanged control plane sends nothing again.
//
// Readiness (WorkloadReadiness): the first request of every stream reports whether the sidecar
// takes traffic from its peers (ready unless SetReadiness said otherwise), and SetReadiness
// reports a change at once on the open stream, in a request of its own
// (xds::kReadinessTypeUrl: no nonce, no version, subscribes to nothing). Without a stream the
// change goes with the next stream's first request. The stream and the configuration stay as they
// are.
//
// Lookups (ADR 0086, delta streams only): Lookup() subscribes and unsubscribes lookup keys
// (xds/protocol.h) on the ServiceRoute type in one request (no nonce); every new stream's
// ServiceRoute subscription carries "*" plus every held key. A ServiceRoute response answers the
// held keys in its resources' aliases (found) and in its removed_resources (not found); a key
// whose ServiceRoute is removed without another answering it becomes not found; a refused
// response answers its keys refused. The answers go to on_lookup_answers after the response was
// applied (its snapshot handed to the apply callback, which publishes it) and answered (ACK),
// never before: whoever is told a key was found finds it in the configuration. A response that
// changes nothing but key answers (the same resources at the same versions, with aliases)
// builds no configuration. Held keys and their answers are saved with the configuration
// (CachedConfiguration.lookups) and so survive a restart and a hand-over. On a state-of-the-world
// stream keys are held but never sent (the control plane cannot answer them there).
//
// Types are indexed by their position in xds::kResourceTypeUrls (push order).
//
// The implementation is split by concern over xds_client*.cc (xds_client_internal.h lists them).
//
// Threading: main thread (the loop's) only. The apply callback runs on it, synchronously.

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/base/persistent_map.h"
#include "common/base/random.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/grpc/client.h"
#include "common/net/address.h"
#include "common/net/transport.h"
#include "common/stats/stats.h"
#include "common/tls/tls_context.h"
#include "google/protobuf/message.h"
#include "sidecar/config/lookup.h"
#include "sidecar/config/resource_version.h"
#include "sidecar/config/translate.h"
#include "sidecar/resilience/backoff.h"
#include "xds/discovery.pb.h"
#include "xds/node.pb.h"
#include "xds/protocol.h"

namespace meshlet::sidecar::config {

// A live tap's command from the control plane (xds::TapCommand; docs/xds.md "Live tap"), as plain
// values for the server's tap manager.
struct TapCommand {
  std::string id;
  bool stop = false;      // stop tap `id`
  bool stop_all = false;  // the stream ended: every tap ends (the control plane forgot them)
  std::string direction;  // "", "inbound", "outbound"
  std::string method;
  std::string authority;
  std::string path_prefix;
  uint32_t rate = 0;
  Duration duration{0};
  bool headers = false;
  size_t max_batch_bytes = 0;  // 0: the sidecar's default
};

// A sidecar's answer to a tap (xds::TapEvents).
struct TapEvents {
  std::string id;
  std::string events_json;
  uint32_t events = 0;
  uint64_t dropped_rate = 0;
  uint64_t dropped_cap = 0;
  bool started = false;
  bool ended = false;
  std::string error;
};

struct XdsClientOptions {
  // Control-plane replicas, tried in turn: a stream that ends (or never opens) makes the next
  // attempt go to the next address. At least one.
  std::vector<net::Address> server_addresses;
  // :authority, and the TLS server name; empty: the address.
  std::string authority;
  // TLS with ALPN h2 (see XdsTransportFromCaFile); null: plaintext h2c.
  net::TransportFactory transport_factory;
  xds::Node node;
  // Incremental (delta) stream instead of state of the world.
  bool delta = false;
  // Where the last good configuration is kept; empty: not persisted.
  std::string cache_dir;
  // Once a complete configuration is saved, the least time between two saves (see the top of
  // the file); zero: every accepted configuration is saved at once.
  Duration cache_write_interval = std::chrono::seconds(1);
  Duration backoff_base = std::chrono::milliseconds(500);
  Duration backoff_cap = std::chrono::seconds(30);
  Duration keepalive_interval = std::chrono::seconds(30);
  Duration keepalive_timeout = std::chrono::seconds(10);
  Duration connect_timeout = std::chrono::seconds(5);
  // The sidecar's admin /config_dump, sent with the dynamic resources when the control plane
  // asks for the sidecar's view (SidecarConfigDump); null: resources only.
  std::function<std::string()> config_dump_json;
  // A dump larger than this goes without resource contents and admin document (names and
  // versions only), so it never exceeds the stream's 4 MiB message limit.
  size_t config_dump_max_bytes = 3 * 1024 * 1024;
  // Answers to held lookup keys (see the top of the file), on the client's thread, after the
  // apply callback published the configuration that carries them; null: answers are dropped.
  std::function<void(std::vector<LookupAnswer> answers)> on_lookup_answers;
  // Live tap commands, on the client's thread; also a stop_all when a stream ends. Null: taps are
  // refused (answered with an error).
  std::function<void(TapCommand command)> on_tap;
};

class XdsClient {
 public:
  // Validates and publishes `resources` (static + dynamic, complete); an error refuses them.
  using ApplyFn = std::function<absl::Status(const ResourceSet& resources)>;

  // `static_resources` (the bootstrap's) are part of every configuration; a dynamic resource may
  // not reuse a static resource's name (refused with a NACK naming both).
  XdsClient(event::Loop& loop, XdsClientOptions options, ResourceSet static_resources,
            ApplyFn apply, StatsShard& stats, Random& random);
  ~XdsClient();
  XdsClient(const XdsClient&) = delete;
  XdsClient& operator=(const XdsClient&) = delete;

  // Applies the persisted configuration, if any: OK when it was applied, NotFound without one,
  // another error when it could not be read or applied (the file is then left alone and ignored).
  absl::Status LoadCache();
  // The configuration running now as LoadCache reads it (an xds::CachedConfiguration), and the
  // same applied from such bytes (`source` names them in errors and logs): how a sidecar hands its
  // configuration to the process that replaces it (docs/upgrades.md).
  std::string SavedConfiguration() const;
  absl::Status LoadSavedConfiguration(const std::string& content, const std::string& source);
  // Opens the stream (and keeps reopening it).
  void Start();
  // Cancels the stream and any reconnect; no callbacks afterwards.
  void Stop();
  // Whether the sidecar takes traffic from its peers; `reason` says why not ("draining"). Starts
  // ready. A change is reported to the control plane at once (see the top of this file).
  void SetReadiness(bool ready, std::string reason);
  bool ready() const { return ready_; }
  // Holds `subscribe` and drops `unsubscribe` (lookup keys, xds/protocol.h) and, on an open delta
  // stream, sends both in one ServiceRoute request (see the top of the file). A key in both is
  // unsubscribed. Answers come through XdsClientOptions::on_lookup_answers.
  void Lookup(std::vector<std::string> subscribe, std::vector<std::string> unsubscribe);
  // Whether lookups can be sent now: a delta stream that answered.
  bool can_look_up() const { return options_.delta && connected(); }
  // The held lookup keys and the ServiceRoute answering each ("": none, not answered or not
  // found).
  const std::map<std::string, std::string>& lookups() const { return lookups_; }
  // Sends a live tap's answer on the open stream; false when there is none (dropped).
  bool SendTapEvents(const TapEvents& events);
  // Replaces the static part (SIGHUP re-read the bootstrap) and re-applies; an error keeps the
  // running configuration.
  absl::Status UpdateStaticResources(ResourceSet static_resources);

  // The whole configuration currently applied (static + dynamic); version "xds-<hash>".
  ResourceSet CurrentResources() const;
  // For the admin /config_dump: connection state, per type version, nonce, last error.
  std::string StatusJson() const;

  bool connected() const { return stream_ != nullptr && got_response_on_stream_; }
  // True once a configuration from the server or the cache has been applied.
  bool has_dynamic_config() const { return has_dynamic_config_; }
  // True once a complete configuration is running: the saved one was loaded at start, or the
  // server's listeners were applied (the server sends listeners last, after every type they
  // name, so the first push is then complete), or every type was answered at least once. The
  // sidecar's /ready waits for it.
  bool has_complete_config() const { return complete_config_; }
  uint64_t accepted_updates() const { return accepted_; }
  uint64_t rejected_updates() const { return rejected_; }
  uint64_t streams_started() const { return streams_started_; }
  // Resources parsed from their serialized form so far: only new or changed ones are parsed (a
  // resource received again with the same bytes reuses the message parsed before).
  uint64_t resources_parsed() const { return resources_parsed_; }
  // Times the configuration was written to the cache directory.
  uint64_t cache_writes() const { return cache_writes_; }
  // Held entries visited by the responses handled so far when building what they apply (entries
  // compared, list items rebuilt, held lookup keys checked): per response, about what it
  // changes, not what is held.
  uint64_t entries_visited() const { return entries_visited_; }
  const std::string& version(size_t type_index) const { return types_[type_index].version; }
  const std::string& last_error(size_t type_index) const { return types_[type_index].last_error; }
  // Names of the type's resources that run though the control plane removed them.
  std::vector<std::string> retained(size_t type_index) const;
  // Names of the load assignments held but left out (no cluster of that name runs).
  std::vector<std::string> unmatched_assignments() const;

 private:
  // Feeds responses in without a stream (xds_apply_fuzz.cc).
  friend class XdsClientFuzzPeer;

  // One form per resource (ADR 0086, "Amended: what the client keeps of a resource"): the
  // message parsed, which translation needs and the snapshot's memo shares, not the bytes as
  // received besides; but a load assignment, whose endpoints translation keeps, is held as its
  // bytes only ("Amended: a load assignment is held as its bytes"). The config dump and the
  // saved configuration write those bytes, or serialize the message again (deterministically,
  // as the control plane does); the reuse check compares hashes of bytes.
  struct Entry {
    // The version (as the server computes it: the content hash, kept as the hash alone) and the
    // FNV-1a 64 of the bytes as received (xds::Fnv1a64), what the control plane's content
    // versions hash: a response's resource with the same hash (delta: under the same name) is
    // this one and reuses `held` instead of being parsed.
    ResourceVersion version;
    // The resource as its type's ResourceList holds it (a HeldMessage of the type), made once;
    // shared, so that the type's entries with a response applied (a copy of the held ones) and
    // the configurations assembled copy no message. Never null.
    std::shared_ptr<const HeldResource> held;

    friend bool operator==(const Entry&, const Entry&) = default;
  };
  // An entry's xds::TypeVersionEntry(name, version): EntryMap::Sum() is TypeState::entry_sum.
  struct EntryVersion {
    static uint64_t Of(const std::string& name, const Entry& entry);
  };
  // Persistent (common/base/persistent_map.h): a response's candidate set is the held one
  // changed per name it touches (a copy is a pointer), and what differs between the two is
  // found without visiting what they share (ADR 0086, amended).
  using EntryMap = PersistentMap<Entry, EntryVersion>;
  struct TypeState {
    EntryMap entries;
    // The sum of the entries' xds::TypeVersionEntry, of which a delta type's version is made:
    // a delta response adds and takes off those of the names it touches.
    uint64_t entry_sum = 0;
    std::string version;     // state of the world: version_info; delta: hash of the entries
    std::string nonce;       // of the last response
    std::string last_error;  // of the last refused response; cleared by the next accepted one
    absl::Time last_update = absl::InfinitePast();
    bool applied = false;  // a response of this type was applied at least once
  };

  // What runs besides, or instead of, the control plane's resources (see the top of the file).
  struct RunPlan {
    // Per type: resources the control plane removed that the configuration still names, as they
    // ran.
    std::array<EntryMap, xds::kResourceTypeCount> retained;
    // Held load assignments (by cluster name) left out of the configuration.
    std::set<std::string> unmatched;
  };

  void OpenStream();
  // A channel to the current server address (channel_), replacing any other.
  void MakeChannel();
  const net::Address& CurrentServer() const { return options_.server_addresses[server_index_]; }
  // Sends, on the open stream, a request of its variant (delta or state of the world) set up by
  // `fill`, which takes either request type (defined in xds_client_internal.h).
  template <typename Fill>
  void SendRequest(Fill fill);
  xds::WorkloadReadiness Readiness() const;
  // Answers the control plane's config dump request `nonce` on the open stream.
  void SendConfigDump(const std::string& nonce);
  // Hands a tap command of the control plane to on_tap (or refuses it without one).
  void OnTapCommand(const xds::TapCommand& command);
  void OnStreamFinished(http::grpc::StatusCode code, const std::string& message);
  void ScheduleReconnect();
  // What a response of either variant starts with: the stream counts as connected, a config
  // dump request is answered; the index of the response's resource type, nullopt when there is
  // nothing more to do (a dump request, an unknown type).
  template <typename Response>
  std::optional<size_t> BeginResponse(const Response& response);
  // At a stream's first response: drops what is held of the types the control plane does not
  // serve (`served`, DiscoveryResponse.served_types; empty: a release from before the field).
  void DropUnservedTypes(const google::protobuf::RepeatedPtrField<std::string>& served);
  void OnResponse(const xds::DiscoveryResponse& response);
  void OnDeltaResponse(const xds::DeltaDiscoveryResponse& response);
  // The answers a ServiceRoute delta response gives the held keys, `entries` being the type's
  // resources with the response applied. `applied`: recorded in lookups_, each key's answer it
  // replaces appended to `replaced` (if given; the caller puts them back, last first, should the
  // apply fail); otherwise each key the response names is answered refused and nothing is
  // recorded. Looks at the keys it answers, and at every held key only when the response removes
  // a ServiceRoute.
  std::vector<LookupAnswer> AnswerLookups(
      const xds::DeltaDiscoveryResponse& response, const EntryMap& entries, bool applied,
      std::vector<std::pair<std::string, std::string>>* replaced = nullptr);
  // Builds the full set with `type_index` replaced by `entries` (whose TypeVersionEntry sum is
  // `entry_sum`) and applies it; accepted, the type moves to `entries` and `version`; refused,
  // the reason is kept and counted.
  absl::Status TryApply(size_t type_index, EntryMap entries, uint64_t entry_sum,
                        const std::string& version);
  // The sum of xds::TypeVersionEntry over `entries` (TypeState::entry_sum).
  static uint64_t EntrySum(const EntryMap& entries);
  // ACK (`status` OK) or NACK (INVALID_ARGUMENT with the reason) of the response `nonce` of the
  // type at `type_index`, in the stream's variant; state of the world also names the version
  // that runs. Without a stream only the nonce is noted.
  void SendAnswer(size_t type_index, const std::string& nonce, const absl::Status& status);
  // The apply step of TryApply: plans the run, rebuilds the lists that change and calls the apply
  // callback with the candidate. OK: the assembled configuration is the candidate, the type's
  // version is `version`, and `*next` holds the new plan when it changed (to be adopted). An
  // error: everything is as it was.
  absl::Status ApplyUpdate(size_t type_index, const EntryMap& entries, const std::string& version,
                           std::optional<RunPlan>* next);
  // The plan for `held` (the control plane's resources per type), given what runs now: what
  // stays retained or becomes so, and which load assignments are left out (an error when one of
  // those does not pass its checks). Without `references_changed` (only endpoints differ from
  // what runs) the retained resources of the other types stay as they are.
  absl::StatusOr<RunPlan> PlanRun(const std::array<const EntryMap*, xds::kResourceTypeCount>& held,
                                  bool references_changed) const;
  // Whether applying `entries` as the type at `type_index` may change the plan: something the
  // running configuration has would go, something is retained or left out already, or
  // endpoints arrive (which may name no cluster).
  bool MayChangePlan(size_t type_index, const EntryMap& entries) const;
  // Logs what `next` retains or leaves out that the running plan does not, and the reverse.
  void LogPlanChanges(const RunPlan& next) const;
  void SetPlanGauges();
  absl::StatusOr<ResourceSet> Assemble(
      const std::array<const EntryMap*, xds::kResourceTypeCount>& dynamic, const RunPlan& plan,
      absl::string_view version) const;
  // Sets `out`'s list of the type at `index` to its static resources, `entries` and `retained`,
  // without the names in `left_out`; refuses dynamic names that collide with static ones.
  absl::Status FillType(size_t index, const EntryMap& entries, const EntryMap& retained,
                        const std::set<std::string>& left_out, ResourceSet& out) const;
  // Whether the running list of the type at `index` may be patched to the entries of a response
  // (PatchType) rather than rebuilt: nothing of the type is retained or left out, now or with
  // `plan`, so the list is its static resources then the held entries in name order.
  bool CanPatch(size_t index, const RunPlan& plan) const;
  // Changes the type at `index` of `out` (a list laid out as CanPatch says, of `from`) into that
  // of `to`, per name the two maps differ in; refuses, changing nothing, names that collide with
  // static ones.
  absl::Status PatchType(size_t index, const EntryMap& from, const EntryMap& to,
                         ResourceSet& out) const;
  void SetStaticResources(ResourceSet static_resources);
  static void SwapType(size_t index, ResourceSet& a, ResourceSet& b);
  std::array<const EntryMap*, xds::kResourceTypeCount> HeldEntries() const;
  std::string CombinedVersion() const;
  // Saves the configuration now or, within cache_write_interval of the last save, when it has
  // passed (see the top of the file).
  void Persist();
  // Saves a configuration whose save Persist put off, if any.
  void FlushPersist();
  void WriteCache();
  // Records how long handling a response of the type at `type_index` took since `started`.
  void RecordApplyTime(size_t type_index, MonotonicTime started);

  event::Loop& loop_;
  const XdsClientOptions options_;
  ResourceSet static_resources_;
  // Names of the static resources, per type.
  std::array<absl::flat_hash_set<std::string>, xds::kResourceTypeCount> static_names_;
  ApplyFn apply_;
  resilience::Backoff backoff_;
  // The channel to server_addresses[server_index_].
  std::unique_ptr<http::grpc::Channel> channel_;
  size_t server_index_ = 0;
  std::shared_ptr<http::grpc::ClientCall> stream_;
  std::unique_ptr<event::Timer> reconnect_timer_;
  std::array<TypeState, xds::kResourceTypeCount> types_;
  // The plan the running configuration was assembled with.
  RunPlan plan_;
  // The configuration running (static + held dynamic + retained, without held-aside endpoints),
  // kept so an update rebuilds only the lists that change; empty until first needed.
  std::optional<ResourceSet> assembled_;
  uint32_t attempt_ = 0;
  bool got_response_on_stream_ = false;
  MonotonicTime stream_opened_at_{};
  bool has_dynamic_config_ = false;
  bool complete_config_ = false;
  bool stopped_ = false;
  bool ready_ = true;
  std::string not_ready_reason_;
  uint64_t accepted_ = 0;
  uint64_t rejected_ = 0;
  uint64_t streams_started_ = 0;
  uint64_t resources_parsed_ = 0;
  uint64_t cache_writes_ = 0;
  // See entries_visited(); mutable: the const planning steps count too.
  mutable uint64_t entries_visited_ = 0;
  // Whether a complete configuration was saved; when the last save was; a save put off.
  bool saved_complete_ = false;
  bool save_pending_ = false;
  MonotonicTime last_save_{};
  std::unique_ptr<event::Timer> save_timer_;
  std::string last_stream_error_;
  // Held lookup keys → the ServiceRoute answering each ("": none).
  std::map<std::string, std::string> lookups_;
  absl::Time connected_since_ = absl::InfinitePast();

  Counter accepted_counter_;
  Counter rejected_counter_;
  Counter stream_counter_;
  Counter persist_errors_;
  Counter cache_writes_counter_;
  std::array<Histogram, xds::kResourceTypeCount> apply_seconds_;
  Gauge connected_gauge_;
  std::array<Gauge, xds::kResourceTypeCount> retained_gauges_;
  // meshlet_xds_client_last_update_timestamp_seconds{type}: when each type was last applied.
  std::array<Gauge, xds::kResourceTypeCount> last_update_gauges_;
  Gauge unmatched_gauge_;
};

// TLS for the xDS connection: verifies the control plane's certificate against `ca_file` (PEM),
// ALPN h2, and, when `server_identity` is set, that the certificate's SPIFFE id is that one (a
// workload certificate from the same CA is then not accepted as the control plane). Reads the
// file now (main thread).
absl::StatusOr<net::TransportFactory> XdsTransportFromCaFile(const std::string& ca_file,
                                                             const std::string& server_identity);
// The client TLS settings XdsTransportFromCaFile builds its context from.
absl::StatusOr<tls::TlsContextConfig> XdsTlsConfigFromCaFile(const std::string& ca_file,
                                                             const std::string& server_identity);

// "host:port" (host a name or an IP; "[v6]:port") → the first address; resolves synchronously.
absl::StatusOr<net::Address> ResolveHostPort(const std::string& host_port);
// "host:port[,host:port...]" → every address of every entry (a name resolving to several gives
// them all), in order, without repeats; resolves synchronously. An error names the entry.
absl::StatusOr<std::vector<net::Address>> ResolveHostPorts(const std::string& host_ports);

}  // namespace meshlet::sidecar::config

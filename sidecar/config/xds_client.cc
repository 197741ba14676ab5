#include "sidecar/config/xds_client.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/base/atomic_file.h"
#include "common/base/file.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/tls/spiffe.h"
#include "common/tls/tls_context.h"
#include "common/tls/tls_context_provider.h"
#include "common/tls/tls_transport.h"
#include "sidecar/config/references.h"
#include "xds/resources.pb.h"

namespace meshlet::sidecar::config {

const std::array<const char*, kXdsTypeCount> kXdsTypeUrls = {
    "type.googleapis.com/meshlet.xds.Secret",
    "type.googleapis.com/meshlet.xds.Cluster",
    "type.googleapis.com/meshlet.xds.ClusterLoadAssignment",
    "type.googleapis.com/meshlet.xds.RouteConfiguration",
    "type.googleapis.com/meshlet.xds.Listener",
};
const std::array<const char*, kXdsTypeCount> kXdsTypeLabels = {"secrets", "clusters", "endpoints",
                                                               "routes", "listeners"};

namespace {

using http::grpc::StatusCode;

// Positions of the types in kXdsTypeUrls.
constexpr size_t kSecrets = 0;
constexpr size_t kClusters = 1;
constexpr size_t kEndpoints = 2;
constexpr size_t kRoutes = 3;
constexpr size_t kListeners = 4;

constexpr char kStreamMethod[] =
    "/meshlet.xds.AggregatedDiscoveryService/StreamAggregatedResources";
constexpr char kDeltaMethod[] = "/meshlet.xds.AggregatedDiscoveryService/DeltaAggregatedResources";
constexpr char kCacheFile[] = "xds-cache.pb";
// Bound on what one response may make the sidecar log.
constexpr size_t kMaxLoggedError = 2000;

template <typename T>
T MustStat(absl::StatusOr<T> handle) {
  CHECK_OK(handle.status());
  return *handle;
}

// FNV-1a 64, as the control plane computes versions (docs/xds.md): a resource's version is the
// hash of its serialized bytes, a type's the hash of "name\0version\n" in name order.
constexpr uint64_t kFnvOffset = 14695981039346656037ull;
uint64_t Fnv1a(uint64_t hash, absl::string_view bytes) {
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return hash;
}
std::string Hex16(uint64_t v) { return absl::StrCat(absl::Hex(v, absl::kZeroPad16)); }

std::optional<size_t> TypeIndex(absl::string_view type_url) {
  for (size_t i = 0; i < kXdsTypeCount; ++i) {
    if (type_url == kXdsTypeUrls[i]) return i;
  }
  return std::nullopt;
}

// A resource of the type at `index` parsed from its Any, and the name it is known by.
struct ParsedResource {
  std::string name;
  std::shared_ptr<const google::protobuf::Message> message;
};

// Parses `any` as the type at `index`; counts the parse in `*parses`.
absl::StatusOr<ParsedResource> ParseResource(size_t index, const google::protobuf::Any& any,
                                             uint64_t* parses) {
  if (any.type_url() != kXdsTypeUrls[index]) {
    return absl::InvalidArgumentError(
        absl::StrCat("type_url \"", any.type_url(), "\" in a response of ", kXdsTypeUrls[index]));
  }
  ++*parses;
  auto parse = [&](auto message, auto name_of) -> absl::StatusOr<ParsedResource> {
    auto parsed = std::make_shared<decltype(message)>();
    if (!parsed->ParseFromString(any.value())) {
      return absl::InvalidArgumentError(
          absl::StrCat("a ", parsed->GetTypeName(), " that does not parse"));
    }
    std::string name = name_of(*parsed);
    return ParsedResource{.name = std::move(name), .message = std::move(parsed)};
  };
  switch (index) {
    case 0:
      return parse(xds::Secret(), [](const xds::Secret& m) { return m.name(); });
    case 1:
      return parse(xds::Cluster(), [](const xds::Cluster& m) { return m.name(); });
    case 2:
      return parse(xds::ClusterLoadAssignment(),
                   [](const xds::ClusterLoadAssignment& m) { return m.cluster_name(); });
    case 3:
      return parse(xds::RouteConfiguration(),
                   [](const xds::RouteConfiguration& m) { return m.name(); });
    default:
      return parse(xds::Listener(), [](const xds::Listener& m) { return m.name(); });
  }
}

// resources[`position`] of a response: the held entry's name and message when `held` (an
// EntryMap item, or null) has the same bytes, else `any` parsed; errors name the position.
template <typename Held>
absl::StatusOr<ParsedResource> ReuseOrParse(size_t index, const google::protobuf::Any& any,
                                            const Held* held, int position, uint64_t* parses) {
  if (held != nullptr && any.type_url() == kXdsTypeUrls[index] &&
      held->second.resource.value() == any.value()) {
    return ParsedResource{.name = held->first, .message = held->second.parsed};
  }
  absl::StatusOr<ParsedResource> parsed = ParseResource(index, any, parses);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("resources[", position, "]: ", parsed.status().message()));
  }
  return parsed;
}

// Calls `f(member, name_of)` with the ResourceSet list of the type at `index` and how its
// resources are named.
template <typename F>
void WithTypeList(size_t index, F f) {
  switch (index) {
    case kSecrets:
      return f(&ResourceSet::secrets, [](const xds::Secret& m) { return m.name(); });
    case kClusters:
      return f(&ResourceSet::clusters, [](const xds::Cluster& m) { return m.name(); });
    case kEndpoints:
      return f(&ResourceSet::endpoints,
               [](const xds::ClusterLoadAssignment& m) { return m.cluster_name(); });
    case kRoutes:
      return f(&ResourceSet::routes, [](const xds::RouteConfiguration& m) { return m.name(); });
    default:
      return f(&ResourceSet::listeners, [](const xds::Listener& m) { return m.name(); });
  }
}

const std::set<std::string>& NoNames() {
  static const auto* const kNone = new std::set<std::string>();
  return *kNone;
}

// The held resource `entry` (an EntryMap value) as its type.
template <typename Message, typename Entry>
const Message& As(const Entry& entry) {
  return static_cast<const Message&>(*entry.parsed);
}

// Calls `f(item)` for every item of `a` whose name `b` lacks; both are maps ordered by name.
template <typename A, typename B, typename F>
void ForEachMissing(const A& a, const B& b, F f) {
  auto it = b.begin();
  for (const auto& item : a) {
    while (it != b.end() && it->first < item.first) ++it;
    if (it == b.end() || it->first != item.first) f(item);
  }
}

// Whether every name of `from` is in `to` (maps ordered by name).
template <typename Map>
bool KeepsEveryName(const Map& from, const Map& to) {
  bool every = true;
  ForEachMissing(from, to, [&](const auto&) { every = false; });
  return every;
}

template <typename Map>
bool SameNames(const Map& a, const Map& b) {
  return a.size() == b.size() && KeepsEveryName(a, b);
}

// Appends `names` as JSON strings separated by commas.
template <typename Names>
void AppendNames(std::string* out, const Names& names) {
  bool first = true;
  for (const std::string& name : names) {
    if (!first) *out += ",";
    first = false;
    AppendJsonString(out, name);
  }
}

std::string TimeText(absl::Time t) {
  if (t == absl::InfinitePast()) return "";
  return absl::FormatTime(absl::RFC3339_full, t, absl::UTCTimeZone());
}

}  // namespace

XdsClient::XdsClient(event::Loop& loop, XdsClientOptions options, ResourceSet static_resources,
                     ApplyFn apply, StatsShard& stats, Random& random)
    : loop_(loop),
      options_(std::move(options)),
      apply_(std::move(apply)),
      backoff_(
          resilience::BackoffConfig{.base = options_.backoff_base, .cap = options_.backoff_cap},
          random) {
  constexpr absl::string_view kUpdatesHelp = "xDS responses the sidecar applied or refused.";
  accepted_counter_ = MustStat(
      stats.RegisterCounter("meshlet_xds_client_updates_total", kUpdatesHelp, {{"result", "ack"}}));
  rejected_counter_ = MustStat(stats.RegisterCounter("meshlet_xds_client_updates_total",
                                                     kUpdatesHelp, {{"result", "nack"}}));
  stream_counter_ = MustStat(stats.RegisterCounter("meshlet_xds_client_streams_total",
                                                   "Discovery streams opened (reconnects + 1)."));
  persist_errors_ = MustStat(
      stats.RegisterCounter("meshlet_xds_client_cache_write_errors_total",
                            "Failures writing the last good configuration to the cache dir."));
  connected_gauge_ = MustStat(stats.RegisterGauge(
      "meshlet_xds_client_connected",
      "1 while the discovery stream is up (a response arrived on it).", {}, GaugeMerge::kGlobal));
  for (size_t i : {kSecrets, kClusters, kEndpoints, kRoutes}) {
    retained_gauges_[i] = MustStat(stats.RegisterGauge(
        "meshlet_xds_client_retained_resources",
        "Resources the control plane removed that run on because the configuration names them.",
        {{"type", kXdsTypeLabels[i]}}, GaugeMerge::kGlobal));
  }
  unmatched_gauge_ = MustStat(stats.RegisterGauge(
      "meshlet_xds_client_unmatched_load_assignments",
      "Load assignments held for a cluster the configuration does not have (left out).", {},
      GaugeMerge::kGlobal));
  SetStaticResources(std::move(static_resources));
}

void XdsClient::SetStaticResources(ResourceSet static_resources) {
  static_resources_ = std::move(static_resources);
  for (size_t i = 0; i < kXdsTypeCount; ++i) {
    WithTypeList(i, [&](auto member, auto name_of) {
      static_names_[i].clear();
      for (const auto& m : static_resources_.*member) static_names_[i].insert(name_of(m));
    });
  }
}

XdsClient::~XdsClient() { Stop(); }

void XdsClient::Start() {
  if (stopped_ || channel_ != nullptr) return;
  CHECK(!options_.server_addresses.empty()) << "XdsClient needs a server address";
  MakeChannel();
  reconnect_timer_ = std::make_unique<event::Timer>(loop_, [this] { OpenStream(); });
  OpenStream();
}

void XdsClient::MakeChannel() {
  // Calls on the old channel may still be finishing: release it on a later turn.
  if (channel_ != nullptr) loop_.DeferDelete(std::move(channel_));
  http::grpc::ChannelOptions channel_options;
  channel_options.transport_factory = options_.transport_factory;
  channel_options.authority = options_.authority;
  channel_options.keepalive_interval = options_.keepalive_interval;
  channel_options.keepalive_timeout = options_.keepalive_timeout;
  channel_options.connect_timeout = options_.connect_timeout;
  channel_options.user_agent = "meshlet-sidecar";
  channel_ = std::make_unique<http::grpc::Channel>(loop_, options_.server_addresses[server_index_],
                                                   std::move(channel_options));
}

void XdsClient::Stop() {
  stopped_ = true;
  reconnect_timer_.reset();
  // Destroying the channel ends the stream without calling back.
  channel_.reset();
  stream_.reset();
  connected_gauge_.Set(0);
}

void XdsClient::OpenStream() {
  if (stopped_) return;
  ++streams_started_;
  stream_counter_.Inc();
  got_response_on_stream_ = false;
  stream_ = channel_->StartCall(options_.delta ? kDeltaMethod : kStreamMethod);
  std::weak_ptr<http::grpc::ClientCall> weak = stream_;
  if (options_.delta) {
    stream_->OnProtoMessage<xds::DeltaDiscoveryResponse>(
        [this](xds::DeltaDiscoveryResponse response) { OnDeltaResponse(response); });
  } else {
    stream_->OnProtoMessage<xds::DiscoveryResponse>(
        [this](xds::DiscoveryResponse response) { OnResponse(response); });
  }
  stream_->OnFinish([this](StatusCode code, const std::string& message, const http::HeaderMap&) {
    OnStreamFinished(code, message);
  });
  // Subscribe to every type, in push order, announcing what this sidecar already runs; the first
  // request also carries the node and its readiness.
  for (size_t i = 0; i < kXdsTypeCount; ++i) {
    if (options_.delta) {
      xds::DeltaDiscoveryRequest request;
      if (i == 0) {
        *request.mutable_node() = options_.node;
        *request.mutable_readiness() = Readiness();
      }
      request.set_type_url(kXdsTypeUrls[i]);
      for (const auto& [name, entry] : types_[i].entries) {
        (*request.mutable_initial_resource_versions())[name] = entry.version;
      }
      stream_->SendProto(request);
    } else {
      xds::DiscoveryRequest request;
      if (i == 0) {
        *request.mutable_node() = options_.node;
        *request.mutable_readiness() = Readiness();
      }
      request.set_type_url(kXdsTypeUrls[i]);
      request.set_version_info(types_[i].version);
      stream_->SendProto(request);
    }
  }
}

template <typename Fill>
void XdsClient::SendRequest(Fill fill) {
  if (options_.delta) {
    xds::DeltaDiscoveryRequest request;
    fill(request);
    stream_->SendProto(request);
  } else {
    xds::DiscoveryRequest request;
    fill(request);
    stream_->SendProto(request);
  }
}

xds::WorkloadReadiness XdsClient::Readiness() const {
  xds::WorkloadReadiness readiness;
  readiness.set_ready(ready_);
  readiness.set_reason(not_ready_reason_);
  return readiness;
}

void XdsClient::SetReadiness(bool ready, std::string reason) {
  if (ready) reason.clear();
  if (ready == ready_ && reason == not_ready_reason_) return;
  ready_ = ready;
  not_ready_reason_ = std::move(reason);
  if (stream_ == nullptr) {
    LOG(INFO) << "xds: " << (ready_ ? "ready" : "not ready: " + not_ready_reason_)
              << "; the next stream reports it";
    return;
  }
  LOG(INFO) << "xds: reporting " << (ready_ ? "ready" : "not ready: " + not_ready_reason_)
            << " to the control plane";
  SendRequest([this](auto& request) {
    request.set_type_url(kReadinessTypeUrl);
    *request.mutable_readiness() = Readiness();
  });
}

void XdsClient::OnStreamFinished(StatusCode code, const std::string& message) {
  last_stream_error_ =
      absl::StrCat(http::grpc::StatusCodeName(code), message.empty() ? "" : ": ", message);
  connected_gauge_.Set(0);
  if (got_response_on_stream_) attempt_ = 0;
  // Not from inside the call's own callback: drop our handle on a later turn.
  loop_.Post([call = std::move(stream_)] {});
  if (stopped_) return;
  const Duration delay = backoff_.Delay(attempt_);
  if (attempt_ < 32) ++attempt_;
  const std::string ended = CurrentServer().ToString();
  if (options_.server_addresses.size() > 1) {
    // Another replica next: the one that ended may be gone for good.
    server_index_ = (server_index_ + 1) % options_.server_addresses.size();
    MakeChannel();
  } else if (code == StatusCode::kUnauthenticated) {
    // The connection's client certificate expired (or was refused): a new connection presents
    // the current one.
    MakeChannel();
  }
  LOG(WARN) << "xds: stream to " << ended << " ended (" << last_stream_error_
            << "); reconnecting to " << CurrentServer().ToString() << " in "
            << absl::FormatDuration(absl::FromChrono(delay));
  reconnect_timer_->Enable(delay);
}

void XdsClient::OnResponse(const xds::DiscoveryResponse& response) {
  if (!got_response_on_stream_) {
    got_response_on_stream_ = true;
    connected_since_ = absl::Now();
    connected_gauge_.Set(1);
    LOG(INFO) << "xds: connected to " << CurrentServer().ToString();
  }
  if (response.type_url() == kConfigDumpTypeUrl) return SendConfigDump(response.nonce());
  std::optional<size_t> index = TypeIndex(response.type_url());
  if (!index) {
    LOG_EVERY_N_SEC(WARN, 1) << "xds: ignoring a response of unknown type " << response.type_url();
    return;
  }
  TypeState& type = types_[*index];
  // A resource whose bytes equal a held one's is that resource: its name and parsed message are
  // reused, so only what changed is parsed (the response carries every resource of the type).
  absl::flat_hash_map<absl::string_view, const EntryMap::value_type*> held;
  held.reserve(type.entries.size() + plan_.retained[*index].size());
  for (const EntryMap* own : {&type.entries, &plan_.retained[*index]}) {
    for (const auto& item : *own) held.emplace(item.second.resource.value(), &item);
  }
  EntryMap entries;
  absl::Status status;
  for (int i = 0; i < response.resources_size() && status.ok(); ++i) {
    const google::protobuf::Any& any = response.resources(i);
    auto same = held.find(any.value());
    absl::StatusOr<ParsedResource> parsed = ReuseOrParse(
        *index, any, same == held.end() ? nullptr : same->second, i, &resources_parsed_);
    if (!parsed.ok()) {
      status = parsed.status();
      break;
    }
    const std::string& name = parsed->name;
    if (entries.count(name) > 0) {
      status = absl::InvalidArgumentError(
          absl::StrCat("resources[", i, "]: name \"", name, "\" appears twice"));
      break;
    }
    entries.emplace(name,
                    Entry{.version = same == held.end() ? Hex16(Fnv1a(kFnvOffset, any.value()))
                                                        : same->second->second.version,
                          .resource = any,
                          .parsed = std::move(parsed->message)});
  }
  if (status.ok()) status = TryApply(*index, std::move(entries), response.version_info());

  xds::DiscoveryRequest answer;
  answer.set_type_url(response.type_url());
  answer.set_response_nonce(response.nonce());
  type.nonce = response.nonce();
  answer.set_version_info(type.version);  // the new one when applied, else the one still running
  if (!status.ok()) {
    answer.mutable_error_detail()->set_code(static_cast<int32_t>(StatusCode::kInvalidArgument));
    answer.mutable_error_detail()->set_message(std::string(status.message()));
  }
  if (stream_ != nullptr) stream_->SendProto(answer);
}

void XdsClient::OnDeltaResponse(const xds::DeltaDiscoveryResponse& response) {
  if (!got_response_on_stream_) {
    got_response_on_stream_ = true;
    connected_since_ = absl::Now();
    connected_gauge_.Set(1);
    LOG(INFO) << "xds: connected to " << CurrentServer().ToString() << " (delta)";
  }
  if (response.type_url() == kConfigDumpTypeUrl) return SendConfigDump(response.nonce());
  std::optional<size_t> index = TypeIndex(response.type_url());
  if (!index) {
    LOG_EVERY_N_SEC(WARN, 1) << "xds: ignoring a response of unknown type " << response.type_url();
    return;
  }
  TypeState& type = types_[*index];
  EntryMap entries = type.entries;
  absl::Status status;
  for (const std::string& name : response.removed_resources()) entries.erase(name);
  for (int i = 0; i < response.resources_size() && status.ok(); ++i) {
    const xds::Resource& resource = response.resources(i);
    const google::protobuf::Any& any = resource.resource();
    // The wrapper names the resource: unchanged bytes under that name reuse the parsed message.
    const EntryMap::value_type* held = nullptr;
    for (const EntryMap* own : {&type.entries, &plan_.retained[*index]}) {
      if (auto it = own->find(resource.name()); it != own->end()) {
        held = &*it;
        break;
      }
    }
    absl::StatusOr<ParsedResource> parsed = ReuseOrParse(*index, any, held, i, &resources_parsed_);
    if (!parsed.ok()) {
      status = parsed.status();
      break;
    }
    if (parsed->name != resource.name()) {
      status =
          absl::InvalidArgumentError(absl::StrCat("resources[", i, "]: name \"", resource.name(),
                                                  "\" but the resource is \"", parsed->name, "\""));
      break;
    }
    entries[resource.name()] =
        Entry{.version = resource.version().empty() ? Hex16(Fnv1a(kFnvOffset, any.value()))
                                                    : resource.version(),
              .resource = any,
              .parsed = std::move(parsed->message)};
  }
  if (status.ok()) {
    uint64_t hash = kFnvOffset;
    for (const auto& [name, entry] : entries) {
      hash = Fnv1a(hash, name);
      hash = Fnv1a(hash, absl::string_view("\0", 1));
      hash = Fnv1a(hash, entry.version);
      hash = Fnv1a(hash, "\n");
    }
    status = TryApply(*index, std::move(entries), Hex16(hash));
  }
  type.nonce = response.nonce();
  xds::DeltaDiscoveryRequest answer;
  answer.set_type_url(response.type_url());
  answer.set_response_nonce(response.nonce());
  if (!status.ok()) {
    answer.mutable_error_detail()->set_code(static_cast<int32_t>(StatusCode::kInvalidArgument));
    answer.mutable_error_detail()->set_message(std::string(status.message()));
  }
  if (stream_ != nullptr) stream_->SendProto(answer);
}

void XdsClient::SendConfigDump(const std::string& nonce) {
  if (stream_ == nullptr) return;
  xds::SidecarConfigDump dump;
  for (size_t i = 0; i < kXdsTypeCount; ++i) {
    const TypeState& state = types_[i];
    xds::SidecarConfigDump::TypeState* out = dump.add_types();
    out->set_type_url(kXdsTypeUrls[i]);
    out->set_version(state.version);
    out->set_last_error(state.last_error);
    out->set_nonce(state.nonce);
    for (const auto& [name, entry] : state.entries) {
      xds::Resource* r = out->add_resources();
      r->set_name(name);
      r->set_version(entry.version);  // of the resource as received, so both sides compare
      xds::Secret secret;
      if (i == 0 && entry.resource.UnpackTo(&secret)) {
        // Private keys never leave the sidecar.
        if (!secret.private_key_pem().empty()) secret.set_private_key_pem("(redacted)");
        r->mutable_resource()->PackFrom(secret, "type.googleapis.com");
      } else {
        *r->mutable_resource() = entry.resource;
      }
    }
  }
  if (options_.config_dump_json) dump.set_config_dump_json(options_.config_dump_json());
  dump.set_captured_at(absl::FormatTime(absl::RFC3339_sec, absl::Now(), absl::UTCTimeZone()));
  if (dump.ByteSizeLong() > options_.config_dump_max_bytes) {
    // Too large for one message: names and versions still show what differs.
    for (auto& type : *dump.mutable_types()) {
      for (auto& resource : *type.mutable_resources()) resource.clear_resource();
    }
    dump.clear_config_dump_json();
    dump.set_contents_omitted(true);
  }
  LOG(DEBUG) << "xds: sending the configuration dump the control plane asked for";
  SendRequest([&](auto& answer) {
    answer.set_type_url(kConfigDumpTypeUrl);
    answer.set_response_nonce(nonce);
    *answer.mutable_config_dump() = std::move(dump);
  });
}

absl::Status XdsClient::TryApply(size_t type_index, EntryMap entries, const std::string& version) {
  TypeState& type = types_[type_index];
  std::array<const EntryMap*, kXdsTypeCount> held = HeldEntries();
  held[type_index] = &entries;
  absl::Status status;
  if (!assembled_) {
    absl::StatusOr<ResourceSet> running = Assemble(HeldEntries(), plan_, CombinedVersion());
    if (running.ok()) {
      assembled_ = std::move(*running);
    } else {
      status = running.status();
    }
  }
  // Usually nothing is retained or left out, before or after: the plan stays empty unseen.
  std::optional<RunPlan> next;
  if (status.ok() && MayChangePlan(type_index, entries)) {
    absl::StatusOr<RunPlan> planned = PlanRun(held, type_index != kEndpoints);
    if (planned.ok()) {
      next = *std::move(planned);
    } else {
      status = planned.status();
    }
  }
  const RunPlan& plan = next ? *next : plan_;
  // Only the lists that change are built (the updated type's, and those whose retained or
  // left-out resources change); the others of the running configuration are reused as they
  // are, and the whole configuration is still validated as one unit.
  ResourceSet candidate;
  std::vector<size_t> changed;
  for (size_t i = 0; i < kXdsTypeCount && status.ok(); ++i) {
    if (i != type_index && SameNames(plan.retained[i], plan_.retained[i]) &&
        (i != kEndpoints || plan.unmatched == plan_.unmatched)) {
      continue;
    }
    status = FillType(i, *held[i], plan.retained[i], i == kEndpoints ? plan.unmatched : NoNames(),
                      candidate);
    changed.push_back(i);
  }
  const std::string previous_version = type.version;
  if (status.ok()) {
    type.version = version;  // so the combined version names the candidate
    for (size_t i : changed) SwapType(i, *assembled_, candidate);
    const std::string running_version = std::move(assembled_->version);
    assembled_->version = CombinedVersion();
    status = apply_(*assembled_);
    if (!status.ok()) {
      for (size_t i : changed) SwapType(i, *assembled_, candidate);
      assembled_->version = running_version;
    }
  }
  if (!status.ok()) {
    type.version = previous_version;
    type.last_error = std::string(status.message().substr(0, kMaxLoggedError));
    ++rejected_;
    rejected_counter_.Inc();
    LOG(WARN) << "xds: refused " << kXdsTypeLabels[type_index] << " version " << version << ": "
              << type.last_error;
    return status;
  }
  const size_t count = entries.size();
  type.entries = std::move(entries);
  if (next) {
    LogPlanChanges(*next);
    plan_ = *std::move(next);
    SetPlanGauges();
  }
  type.last_error.clear();
  type.last_update = absl::Now();
  type.applied = true;
  if (!complete_config_) {
    complete_config_ =
        types_[kXdsTypeCount - 1].applied ||
        std::all_of(types_.begin(), types_.end(), [](const TypeState& t) { return t.applied; });
    if (complete_config_) LOG(INFO) << "xds: first complete configuration applied";
  }
  has_dynamic_config_ = true;
  ++accepted_;
  accepted_counter_.Inc();
  LOG(INFO) << "xds: applied " << kXdsTypeLabels[type_index] << " version " << version << " ("
            << count << " resources)";
  Persist();
  return absl::OkStatus();
}

bool XdsClient::MayChangePlan(size_t type_index, const EntryMap& entries) const {
  for (const EntryMap& retained : plan_.retained) {
    if (!retained.empty()) return true;
  }
  if (!plan_.unmatched.empty() || type_index == kEndpoints) return true;
  // Listeners are named by nothing.
  return type_index != kListeners && !KeepsEveryName(types_[type_index].entries, entries);
}

absl::StatusOr<XdsClient::RunPlan> XdsClient::PlanRun(
    const std::array<const EntryMap*, kXdsTypeCount>& held, bool references_changed) const {
  RunPlan plan;
  // A resource named that the control plane no longer sends stays as it ran, if it did.
  auto retain = [&](size_t index, const std::string& name) {
    if (static_names_[index].contains(name) || held[index]->contains(name)) return;
    for (const EntryMap* ran : {&types_[index].entries, &plan_.retained[index]}) {
      if (auto it = ran->find(name); it != ran->end()) {
        plan.retained[index].emplace(name, it->second);
        return;
      }
    }
  };
  if (references_changed) {
    // What names what, in the order kinds name each other: listeners name route
    // configurations, both name clusters, clusters and listeners name secrets.
    References names;
    auto add = [&](size_t index, const auto& statics) {
      using Message = typename std::decay_t<decltype(statics)>::const_iterator::value_type;
      for (const Message& m : statics) AddReferences(m, names);
      for (const EntryMap* dynamic : {held[index], &std::as_const(plan.retained[index])}) {
        for (const auto& [name, entry] : *dynamic) AddReferences(As<Message>(entry), names);
      }
    };
    add(kListeners, static_resources_.listeners);
    for (const std::string& name : names.routes) retain(kRoutes, name);
    add(kRoutes, static_resources_.routes);
    for (const std::string& name : names.clusters) retain(kClusters, name);
    add(kClusters, static_resources_.clusters);
    for (const std::string& name : names.secrets) retain(kSecrets, name);
  } else {
    // Only endpoints changed: what they do not name is retained as before.
    for (size_t i : {kSecrets, kClusters, kRoutes}) plan.retained[i] = plan_.retained[i];
  }

  // The EDS clusters that run name their load assignments: one that ran and is no longer sent
  // stays while its cluster runs.
  auto eds_cluster_runs = [&](const std::string& name) {
    const xds::Cluster* cluster = nullptr;
    for (const EntryMap* dynamic : {held[kClusters], &std::as_const(plan.retained[kClusters])}) {
      if (auto it = dynamic->find(name); it != dynamic->end()) {
        cluster = &As<xds::Cluster>(it->second);
      }
    }
    for (const xds::Cluster& c : static_resources_.clusters) {
      if (c.name() == name) cluster = &c;
    }
    return cluster != nullptr && cluster->type() == xds::Cluster::EDS;
  };
  for (const EntryMap* ran : {&types_[kEndpoints].entries, &plan_.retained[kEndpoints]}) {
    ForEachMissing(*ran, *held[kEndpoints], [&](const EntryMap::value_type& item) {
      if (!plan_.unmatched.contains(item.first) && eds_cluster_runs(item.first)) {
        plan.retained[kEndpoints].insert(item);
      }
    });
  }
  // Load assignments for clusters that do not run are left out, once checked on their own.
  std::vector<std::string> errors;
  ForEachMissing(*held[kEndpoints], *held[kClusters], [&](const EntryMap::value_type& item) {
    const std::string& name = item.first;
    if (static_names_[kClusters].contains(name) || plan.retained[kClusters].contains(name)) {
      return;
    }
    plan.unmatched.insert(name);
    absl::Status checked = CheckLoadAssignment(As<xds::ClusterLoadAssignment>(item.second));
    if (!checked.ok()) errors.emplace_back(checked.message());
  });
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  return plan;
}

void XdsClient::LogPlanChanges(const RunPlan& next) const {
  for (size_t i = 0; i < kXdsTypeCount; ++i) {
    for (const auto& [name, entry] : next.retained[i]) {
      if (!plan_.retained[i].contains(name)) {
        LOG(INFO) << "xds: keeping " << kXdsTypeLabels[i] << " \"" << name
                  << "\", which the control plane removed: the configuration still names it";
      }
    }
    for (const auto& [name, entry] : plan_.retained[i]) {
      if (!next.retained[i].contains(name) && !types_[i].entries.contains(name)) {
        LOG(INFO) << "xds: dropped " << kXdsTypeLabels[i] << " \"" << name
                  << "\" kept after the control plane removed it: nothing names it any more";
      }
    }
  }
  for (const std::string& name : next.unmatched) {
    if (!plan_.unmatched.contains(name)) {
      LOG(INFO) << "xds: holding endpoints \"" << name
                << "\" aside: no cluster of that name (used once it arrives)";
    }
  }
}

void XdsClient::SetPlanGauges() {
  for (size_t i = 0; i < kXdsTypeCount; ++i) {
    retained_gauges_[i].Set(static_cast<int64_t>(plan_.retained[i].size()));
  }
  unmatched_gauge_.Set(static_cast<int64_t>(plan_.unmatched.size()));
}

std::vector<std::string> XdsClient::retained(size_t type_index) const {
  std::vector<std::string> names;
  for (const auto& [name, entry] : plan_.retained[type_index]) names.push_back(name);
  return names;
}

std::vector<std::string> XdsClient::unmatched_assignments() const {
  return std::vector<std::string>(plan_.unmatched.begin(), plan_.unmatched.end());
}

absl::Status XdsClient::FillType(size_t index, const EntryMap& entries, const EntryMap& retained,
                                 const std::set<std::string>& left_out, ResourceSet& out) const {
  std::vector<std::string> errors;
  WithTypeList(index, [&](auto member, auto) {
    auto& list = out.*member;
    const auto& statics = static_resources_.*member;
    using Message = typename std::decay_t<decltype(list)>::const_iterator::value_type;
    list = statics;
    list.reserve(statics.size() + entries.size() + retained.size());
    for (const EntryMap* dynamic : {&entries, &retained}) {
      for (const auto& [name, entry] : *dynamic) {
        if (static_names_[index].contains(name)) {
          errors.push_back(absl::StrCat(kXdsTypeLabels[index], " \"", name,
                                        "\": also defined in the bootstrap file's "
                                        "static_resources (names must not collide)"));
          continue;
        }
        if (left_out.contains(name)) continue;
        // Parsed when received (ParseResource): the type at `index` is Message. Shared, not
        // copied: the same message as long as the resource is unchanged (BuildSnapshot relies
        // on that to reuse what it translated).
        list.push_back(std::shared_ptr<const Message>(
            entry.parsed, static_cast<const Message*>(entry.parsed.get())));
      }
    }
  });
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  return absl::OkStatus();
}

void XdsClient::SwapType(size_t index, ResourceSet& a, ResourceSet& b) {
  WithTypeList(index, [&](auto member, auto) { (a.*member).swap(b.*member); });
}

absl::StatusOr<ResourceSet> XdsClient::Assemble(
    const std::array<const EntryMap*, kXdsTypeCount>& dynamic, const RunPlan& plan,
    absl::string_view version) const {
  ResourceSet out;
  out.version = std::string(version);
  std::vector<std::string> errors;
  for (size_t i = 0; i < kXdsTypeCount; ++i) {
    absl::Status status = FillType(i, *dynamic[i], plan.retained[i],
                                   i == kEndpoints ? plan.unmatched : NoNames(), out);
    if (!status.ok()) errors.emplace_back(status.message());
  }
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  return out;
}

std::string XdsClient::CombinedVersion() const {
  uint64_t hash = kFnvOffset;
  for (const TypeState& type : types_) {
    hash = Fnv1a(hash, type.version);
    hash = Fnv1a(hash, "\n");
  }
  return absl::StrCat("xds-", Hex16(hash));
}

std::array<const XdsClient::EntryMap*, kXdsTypeCount> XdsClient::HeldEntries() const {
  std::array<const EntryMap*, kXdsTypeCount> held;
  for (size_t i = 0; i < kXdsTypeCount; ++i) held[i] = &types_[i].entries;
  return held;
}

ResourceSet XdsClient::CurrentResources() const {
  if (assembled_) return *assembled_;
  absl::StatusOr<ResourceSet> set = Assemble(HeldEntries(), plan_, CombinedVersion());
  return set.ok() ? *std::move(set) : static_resources_;
}

absl::Status XdsClient::UpdateStaticResources(ResourceSet static_resources) {
  ResourceSet previous = std::move(static_resources_);
  SetStaticResources(std::move(static_resources));
  absl::StatusOr<RunPlan> plan = PlanRun(HeldEntries(), /*references_changed=*/true);
  absl::StatusOr<ResourceSet> set =
      plan.ok() ? Assemble(HeldEntries(), *plan, CombinedVersion()) : plan.status();
  absl::Status status = set.ok() ? apply_(*set) : set.status();
  if (!status.ok()) {
    SetStaticResources(std::move(previous));
    return status;
  }
  LogPlanChanges(*plan);
  plan_ = *std::move(plan);
  SetPlanGauges();
  assembled_ = *std::move(set);
  return status;
}

void XdsClient::Persist() {
  if (options_.cache_dir.empty()) return;
  xds::CachedConfiguration cache;
  *cache.mutable_node() = options_.node;
  cache.set_saved_at(TimeText(absl::Now()));
  for (size_t i = 0; i < kXdsTypeCount; ++i) {
    xds::DiscoveryResponse* type = cache.add_types();
    type->set_type_url(kXdsTypeUrls[i]);
    type->set_version_info(types_[i].version);
    for (const auto& [name, entry] : types_[i].entries) *type->add_resources() = entry.resource;
    if (plan_.retained[i].empty()) continue;
    xds::DiscoveryResponse* retained = cache.add_retained();
    retained->set_type_url(kXdsTypeUrls[i]);
    for (const auto& [name, entry] : plan_.retained[i]) {
      *retained->add_resources() = entry.resource;
    }
  }
  absl::Status status =
      WriteFileAtomically(absl::StrCat(options_.cache_dir, "/", kCacheFile),
                          cache.SerializeAsString(), {.create_directory_mode = 0700});
  if (!status.ok()) {
    persist_errors_.Inc();
    LOG_EVERY_N_SEC(ERROR, 10) << "xds: cannot save the configuration: " << status.message();
  }
}

absl::Status XdsClient::LoadCache() {
  if (options_.cache_dir.empty()) return absl::NotFoundError("no cache directory");
  const std::string path = absl::StrCat(options_.cache_dir, "/", kCacheFile);
  absl::StatusOr<std::string> content = ReadFile(path);
  if (absl::IsNotFound(content.status())) {
    return absl::NotFoundError(absl::StrCat("no saved configuration at \"", path, "\""));
  }
  if (!content.ok()) return content.status();
  xds::CachedConfiguration cache;
  if (!cache.ParseFromString(*content)) {
    return absl::DataLossError(absl::StrCat("\"", path, "\" does not parse"));
  }
  std::array<TypeState, kXdsTypeCount> loaded;
  RunPlan loaded_plan;
  // Reads one type's saved resources into what is held of it, or into what is retained.
  auto load = [&](const xds::DiscoveryResponse& type, bool retained) -> absl::Status {
    std::optional<size_t> index = TypeIndex(type.type_url());
    if (!index) return absl::OkStatus();
    if (!retained) loaded[*index].version = type.version_info();
    EntryMap& entries = retained ? loaded_plan.retained[*index] : loaded[*index].entries;
    for (const google::protobuf::Any& any : type.resources()) {
      absl::StatusOr<ParsedResource> parsed = ParseResource(*index, any, &resources_parsed_);
      if (!parsed.ok()) {
        return absl::DataLossError(absl::StrCat("\"", path, "\": ", parsed.status().message()));
      }
      entries.emplace(std::move(parsed->name),
                      Entry{.version = Hex16(Fnv1a(kFnvOffset, any.value())),
                            .resource = any,
                            .parsed = std::move(parsed->message)});
    }
    return absl::OkStatus();
  };
  for (const xds::DiscoveryResponse& type : cache.types()) RETURN_IF_ERROR(load(type, false));
  for (const xds::DiscoveryResponse& type : cache.retained()) RETURN_IF_ERROR(load(type, true));
  std::array<TypeState, kXdsTypeCount> previous = std::move(types_);
  RunPlan previous_plan = std::move(plan_);
  types_ = std::move(loaded);
  // What was retained when it was saved stays only as long as something names it.
  plan_ = std::move(loaded_plan);
  absl::StatusOr<RunPlan> plan = PlanRun(HeldEntries(), /*references_changed=*/true);
  absl::StatusOr<ResourceSet> set =
      plan.ok() ? Assemble(HeldEntries(), *plan, CombinedVersion()) : plan.status();
  absl::Status status = set.ok() ? apply_(*set) : set.status();
  if (!status.ok()) {
    types_ = std::move(previous);
    plan_ = std::move(previous_plan);
    return absl::Status(status.code(),
                        absl::StrCat("saved configuration \"", path, "\": ", status.message()));
  }
  plan_ = *std::move(plan);
  SetPlanGauges();
  assembled_ = *std::move(set);
  has_dynamic_config_ = true;
  complete_config_ = true;
  LOG(INFO) << "xds: started from the configuration saved at " << cache.saved_at() << " (" << path
            << ")";
  return absl::OkStatus();
}

std::string XdsClient::StatusJson() const {
  std::string out = "{\"server\":";
  AppendJsonString(&out, CurrentServer().ToString());
  absl::StrAppend(&out, ",\"mode\":\"", options_.delta ? "delta" : "sotw",
                  "\",\"connected\":", connected() ? "true" : "false", ",\"connected_since\":");
  AppendJsonString(&out, connected() ? TimeText(connected_since_) : "");
  absl::StrAppend(&out, ",\"streams_started\":", streams_started_, ",\"last_stream_error\":");
  AppendJsonString(&out, last_stream_error_);
  absl::StrAppend(&out, ",\"updates_accepted\":", accepted_, ",\"updates_refused\":", rejected_,
                  ",\"version\":");
  AppendJsonString(&out, CombinedVersion());
  out += ",\"types\":[";
  for (size_t i = 0; i < kXdsTypeCount; ++i) {
    const TypeState& type = types_[i];
    if (i > 0) out += ",";
    out += "{\"type\":";
    AppendJsonString(&out, kXdsTypeLabels[i]);
    out += ",\"version\":";
    AppendJsonString(&out, type.version);
    out += ",\"nonce\":";
    AppendJsonString(&out, type.nonce);
    absl::StrAppend(&out, ",\"resources\":", type.entries.size(), ",\"retained\":[");
    AppendNames(&out, retained(i));
    if (i == kEndpoints) {
      out += "],\"unmatched\":[";
      AppendNames(&out, plan_.unmatched);
    }
    out += "],\"last_update\":";
    AppendJsonString(&out, TimeText(type.last_update));
    out += ",\"last_error\":";
    AppendJsonString(&out, type.last_error);
    out += "}";
  }
  out += "]}";
  return out;
}

absl::StatusOr<net::TransportFactory> XdsTransportFromCaFile(const std::string& ca_file,
                                                             const std::string& server_identity) {
  absl::StatusOr<tls::TlsContextConfig> config = XdsTlsConfigFromCaFile(ca_file, server_identity);
  if (!config.ok()) return config.status();
  absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
      tls::TlsContext::CreateClient(*config);
  if (!context.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("xDS CA file \"", ca_file, "\": ", context.status().message()));
  }
  return tls::TlsTransport::Factory(std::make_shared<tls::TlsContextProvider>(*context));
}

absl::StatusOr<tls::TlsContextConfig> XdsTlsConfigFromCaFile(const std::string& ca_file,
                                                             const std::string& server_identity) {
  absl::StatusOr<std::string> content = ReadFile(ca_file);
  if (!content.ok()) return content.status();
  tls::TlsContextConfig config{.trust_bundle_pem = *std::move(content), .alpn_protocols = {"h2"}};
  if (!server_identity.empty()) {
    absl::StatusOr<tls::SpiffeIdMatcher> matcher =
        tls::SpiffeIdMatcher::Create({server_identity}, {});
    if (!matcher.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("xDS server identity \"", server_identity,
                                                     "\": ", matcher.status().message()));
    }
    config.peer_identity = *std::move(matcher);
  }
  return config;
}

absl::StatusOr<std::vector<net::Address>> ResolveHostPorts(const std::string& host_ports) {
  std::vector<net::Address> out;
  for (absl::string_view entry : absl::StrSplit(host_ports, ',')) {
    std::vector<net::Address> resolved;
    if (absl::StatusOr<net::Address> numeric = net::Address::Parse(entry); numeric.ok()) {
      resolved.push_back(*numeric);
    } else {
      absl::StatusOr<net::HostPort> split = net::SplitHostPort(entry);
      if (!split.ok()) return Annotate(split.status(), absl::StrCat("\"", entry, "\""));
      absl::StatusOr<std::vector<net::Address>> all = net::ResolveAll(split->host, split->port);
      if (!all.ok()) return Annotate(all.status(), absl::StrCat("\"", entry, "\""));
      resolved = *std::move(all);
    }
    for (const net::Address& a : resolved) {
      if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
    }
  }
  if (out.empty()) return absl::InvalidArgumentError("no address");
  return out;
}

absl::StatusOr<net::Address> ResolveHostPort(const std::string& host_port) {
  if (absl::StatusOr<net::Address> numeric = net::Address::Parse(host_port); numeric.ok()) {
    return numeric;
  }
  ASSIGN_OR_RETURN(const net::HostPort split, net::SplitHostPort(host_port));
  ASSIGN_OR_RETURN(std::vector<net::Address> addresses, net::ResolveAll(split.host, split.port));
  return addresses.front();
}

}  // namespace meshlet::sidecar::config

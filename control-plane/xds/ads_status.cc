// AdsServer's introspection: proxy-status (every stream's node and, per type, what was sent, what
// was ACKed, the last NACK), proxy-config (the resources last sent to a node), and the sidecar's
// own view — RequestConfigDump asks the sidecar over its stream for a SidecarConfigDump, and
// proxy-config then shows it and what differs from what the control plane would send now.
// Threading: the loop thread, except the *AnyThread readers, which run there and wait.

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/json.h"
#include "common/base/sync.h"
#include "common/base/time_text.h"
#include "control-plane/xds/ads_server.h"
#include "control-plane/xds/ads_server_internal.h"
#include "google/protobuf/util/json_util.h"
#include "xds/capabilities.h"
#include "xds/protocol.h"
#include "xds/resources.pb.h"

namespace meshlet::controlplane::ads {

namespace {

// Resource JSON for proxy-config: the typed message, private keys redacted.
std::string ResourceJson(const google::protobuf::Any& any) {
  std::unique_ptr<google::protobuf::Message> message;
  if (any.type_url() == TypeUrl(ResourceType::kListener)) {
    message = std::make_unique<xds::Listener>();
  } else if (any.type_url() == TypeUrl(ResourceType::kRoute)) {
    message = std::make_unique<xds::RouteConfiguration>();
  } else if (any.type_url() == TypeUrl(ResourceType::kServiceRoute)) {
    message = std::make_unique<xds::ServiceRoute>();
  } else if (any.type_url() == TypeUrl(ResourceType::kCluster)) {
    message = std::make_unique<xds::Cluster>();
  } else if (any.type_url() == TypeUrl(ResourceType::kEndpoint)) {
    message = std::make_unique<xds::ClusterLoadAssignment>();
  } else if (any.type_url() == TypeUrl(ResourceType::kSecret)) {
    message = std::make_unique<xds::Secret>();
  } else {
    return "null";
  }
  if (!message->ParseFromString(any.value())) return "null";
  if (auto* secret = dynamic_cast<xds::Secret*>(message.get());
      secret != nullptr && !secret->private_key_pem().empty()) {
    secret->set_private_key_pem("[redacted]");
  }
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(*message, &json, options).ok()) return "null";
  return json;
}

}  // namespace

std::vector<ProxyStatus> AdsServer::ProxyStatuses() const {
  std::vector<ProxyStatus> out;
  for (const auto& [id, stream] : streams_) {
    if (!stream->has_node) continue;
    ProxyStatus status;
    status.id = stream->node.id();
    status.service = stream->node.service();
    status.namespace_ = stream->node.namespace_();
    status.sidecar_version = stream->node.sidecar_version();
    if (auto it = stream->node.labels().find("meshlet.io/rev"); it != stream->node.labels().end()) {
      status.revision = it->second;
    }
    status.lacks = xds::CapabilitySet::All().Minus(xds::CapabilitiesOf(stream->node)).Names();
    status.peer = stream->call->peer_address().ToString();
    status.identity = stream->grant.identity;
    status.mode = stream->delta ? "delta" : "sotw";
    status.connected_since = stream->connected_since;
    status.not_ready_reason = stream->not_ready_reason;
    const TypeSubscription& lookups = stream->of(ResourceType::kServiceRoute);
    status.on_demand.keys = lookups.keys().size();
    for (const std::string& key : lookups.keys()) {
      const std::string* answer = lookups.LastAnswer(key);
      if (answer == nullptr) continue;
      ++(answer->empty() ? status.on_demand.missing : status.on_demand.found);
    }
    for (ResourceType type : kPushOrder) {
      const TypeSubscription& sub = stream->of(type);
      TypeStatus t;
      t.type = std::string(TypeLabel(type));
      t.type_url = std::string(TypeUrl(type));
      t.subscribed = sub.subscribed();
      t.sent_version = sub.sent_version();
      t.sent_nonce = sub.sent_nonce();
      t.acked_version = sub.acked_version();
      t.last_nack = sub.last_nack();
      t.resources = sub.assumed_state().size();
      t.acks = sub.acks();
      t.nacks = sub.nacks();
      if (!sub.subscribed()) {
        t.state = "UNSUBSCRIBED";
      } else if (sub.awaiting_answer()) {
        t.state = "PENDING";
      } else if (sub.nacked()) {
        t.state = "NACKED";
      } else if (!sub.withheld_version().empty()) {
        t.state = "TOO_LARGE";
      } else if (sub.sent_version().empty()) {
        t.state = "NOT_SENT";
      } else {
        t.state = "ACKED";
      }
      status.types.push_back(std::move(t));
    }
    out.push_back(std::move(status));
  }
  std::sort(out.begin(), out.end(), [](const ProxyStatus& a, const ProxyStatus& b) {
    return std::tie(a.id, a.connected_since) < std::tie(b.id, b.connected_since);
  });
  return out;
}

AdsServer::Stream* AdsServer::NewestStream(absl::string_view node_id) const {
  Stream* newest = nullptr;
  for (const auto& [id, stream] : streams_) {
    if (stream->has_node && stream->node.id() == node_id &&
        (newest == nullptr || stream->id > newest->id)) {
      newest = stream.get();
    }
  }
  return newest;
}

absl::StatusOr<std::string> AdsServer::RequestConfigDump(absl::string_view node_id) {
  Stream* stream = NewestStream(node_id);
  if (stream == nullptr) {
    return absl::NotFoundError(absl::StrCat("no sidecar \"", node_id, "\" is connected"));
  }
  std::string nonce;
  // A response without resources, of the debug type, in the stream's variant.
  const bool sent = xds::WithResponse(stream->delta, [&](auto& response) {
    response.set_type_url(xds::kConfigDumpTypeUrl);
    response.set_system_version_info(options_.system_version_info);
    stream->SetNextNonce(response);
    nonce = response.nonce();
    return stream->Send(response);
  });
  if (!sent) return absl::UnavailableError("the sidecar's stream is closing");
  stream->dump_nonce = nonce;
  return nonce;
}

bool AdsServer::SendTapCommand(Stream& stream, const xds::TapCommand& command) {
  return xds::WithResponse(stream.delta, [&](auto& response) {
    response.set_type_url(xds::kTapTypeUrl);
    response.set_system_version_info(options_.system_version_info);
    *response.mutable_tap() = command;
    return stream.Send(response);
  });
}

std::vector<std::string> AdsServer::StartTap(const xds::TapCommand& command,
                                             const std::vector<std::string>& node_ids,
                                             TapSink sink) {
  std::vector<std::string> sent;
  taps_[command.id()] = std::move(sink);
  for (const std::string& node_id : node_ids) {
    Stream* stream = NewestStream(node_id);
    if (stream == nullptr || !SendTapCommand(*stream, command)) continue;
    stream->taps.insert(command.id());
    sent.push_back(node_id);
  }
  return sent;
}

void AdsServer::StopTap(const std::string& id) {
  if (taps_.erase(id) == 0) return;
  xds::TapCommand stop;
  stop.set_id(id);
  stop.set_stop(true);
  for (auto& [stream_id, stream] : streams_) {
    if (stream->taps.erase(id) > 0) SendTapCommand(*stream, stop);
  }
}

std::string AdsServer::SidecarViewJson(const Stream& stream) const {
  const xds::SidecarConfigDump& dump = *stream.dump;
  std::string out = "{\"nonce\":";
  AppendJsonString(&out, stream.dump_answer_nonce);
  out += ",\"capturedAt\":";
  AppendJsonString(&out, dump.captured_at());
  out += ",\"receivedAt\":";
  AppendJsonString(&out, stream.dump_received_at);
  out += ",\"contentsOmitted\":";
  out += dump.contents_omitted() ? "true" : "false";
  out += ",\"types\":[";
  for (int i = 0; i < dump.types_size(); ++i) {
    const xds::SidecarConfigDump::TypeState& t = dump.types(i);
    std::optional<ResourceType> type = ParseTypeUrl(t.type_url());
    if (i > 0) out += ",";
    out += "{\"type\":";
    AppendJsonString(&out, type ? TypeLabel(*type) : t.type_url());
    out += ",\"version\":";
    AppendJsonString(&out, t.version());
    out += ",\"last_error\":";
    AppendJsonString(&out, t.last_error());
    out += ",\"resources\":[";
    for (int r = 0; r < t.resources_size(); ++r) {
      if (r > 0) out += ",";
      out += "{\"name\":";
      AppendJsonString(&out, t.resources(r).name());
      out += ",\"version\":";
      AppendJsonString(&out, t.resources(r).version());
      out += ",\"resource\":";
      out += ResourceJson(t.resources(r).resource());
      out += "}";
    }
    out += "]}";
  }
  out += "],\"configDump\":";
  // The sidecar's admin document, embedded as is when it is a JSON object.
  const std::string& admin = dump.config_dump_json();
  out += !admin.empty() && admin.front() == '{' ? admin : "null";
  out += "}";
  return out;
}

// What differs between what the control plane wants the sidecar to run now (generated afresh,
// as the next push would) and what the sidecar reported it runs: per type, the versions and the
// resources present on one side only or with different contents. Types that agree are left out.
std::string AdsServer::DiffJson(const Stream& stream) const {
  absl::StatusOr<NodeResourceSet> wanted = generator_(
      GenerateRequest{.node = stream.node, .delta = stream.delta, .keys = stream.LookupKeys()});
  std::string out = "[";
  bool first_type = true;
  for (ResourceType type : kPushOrder) {
    const TypeSubscription& sub = stream.of(type);
    if (!sub.subscribed()) continue;
    const xds::SidecarConfigDump::TypeState* held = nullptr;
    for (const auto& t : stream.dump->types()) {
      if (t.type_url() == TypeUrl(type)) held = &t;
    }
    std::map<std::string, std::string> sidecar;
    if (held != nullptr) {
      for (const auto& r : held->resources()) sidecar[r.name()] = r.version();
    }
    std::map<std::string, std::string> control_plane;
    if (wanted.ok()) {
      for (const auto& [name, r] : sub.Filter(wanted->of(type))) control_plane[name] = r->version;
    }
    std::vector<std::string> only_cp, only_sidecar, differ;
    for (const auto& [name, version] : control_plane) {
      auto it = sidecar.find(name);
      if (it == sidecar.end()) {
        only_cp.push_back(name);
      } else if (it->second != version) {
        differ.push_back(name);
      }
    }
    for (const auto& [name, version] : sidecar) {
      if (!control_plane.contains(name)) only_sidecar.push_back(name);
    }
    const std::string sidecar_version = held != nullptr ? held->version() : "";
    const std::string last_error = held != nullptr ? held->last_error() : "";
    if (only_cp.empty() && only_sidecar.empty() && differ.empty() &&
        sidecar_version == sub.sent_version() && last_error.empty()) {
      continue;
    }
    if (!first_type) out += ",";
    first_type = false;
    auto names = [&out](const std::vector<std::string>& list) {
      out += "[";
      for (size_t i = 0; i < list.size(); ++i) {
        if (i > 0) out += ",";
        AppendJsonString(&out, list[i]);
      }
      out += "]";
    };
    out += "{\"type\":";
    AppendJsonString(&out, TypeLabel(type));
    out += ",\"versionSent\":";
    AppendJsonString(&out, sub.sent_version());
    out += ",\"versionAcked\":";
    AppendJsonString(&out, sub.acked_version());
    out += ",\"versionSidecar\":";
    AppendJsonString(&out, sidecar_version);
    out += ",\"sidecarError\":";
    AppendJsonString(&out, last_error);
    out += ",\"onlyControlPlane\":";
    names(only_cp);
    out += ",\"onlySidecar\":";
    names(only_sidecar);
    out += ",\"differ\":";
    names(differ);
    out += "}";
  }
  out += "]";
  return out;
}

std::optional<std::string> AdsServer::ProxyConfigJson(absl::string_view node_id,
                                                      absl::Span<const std::string> lookups) const {
  const Stream* newest = NewestStream(node_id);
  if (newest == nullptr) return std::nullopt;
  // With lookups: what the next push would carry had the stream also subscribed them.
  std::optional<NodeResourceSet> looked_up;
  std::string lookup_error;
  if (!lookups.empty()) {
    std::vector<absl::string_view> keys = newest->LookupKeys();
    for (const std::string& key : lookups) {
      if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(key);
    }
    absl::StatusOr<NodeResourceSet> generated = generator_(
        GenerateRequest{.node = newest->node, .delta = newest->delta, .keys = std::move(keys)});
    if (generated.ok()) {
      looked_up = *std::move(generated);
    } else {
      lookup_error = std::string(generated.status().message());
    }
  }
  std::string out = "{\"node\":";
  {
    std::string node_json;
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    (void)google::protobuf::util::MessageToJsonString(newest->node, &node_json, options);
    out += node_json.empty() ? "{}" : node_json;
  }
  const std::vector<std::string>& warnings = looked_up ? looked_up->warnings : newest->warnings;
  out += ",\"warnings\":[";
  for (size_t i = 0; i < warnings.size(); ++i) {
    if (i > 0) out += ",";
    AppendJsonString(&out, warnings[i]);
  }
  out += "]";
  if (!lookups.empty()) {
    out += ",\"lookups\":[";
    for (size_t i = 0; i < lookups.size(); ++i) {
      if (i > 0) out += ",";
      out += "{\"key\":";
      AppendJsonString(&out, lookups[i]);
      if (looked_up) {
        const auto answer = looked_up->key_answers.find(lookups[i]);
        const KeyAnswer found =
            answer == looked_up->key_answers.end() ? KeyAnswer{} : answer->second;
        out += ",\"result\":";
        AppendJsonString(&out, KeyResultName(found.result));
        out += ",\"serviceRoute\":";
        AppendJsonString(&out, found.service_route);
      } else {
        out += ",\"error\":";
        AppendJsonString(&out, lookup_error);
      }
      out += "}";
    }
    out += "]";
  }
  out += ",\"types\":[";
  bool first_type = true;
  for (ResourceType type : kPushOrder) {
    const TypeSubscription& sub = newest->of(type);
    if (!sub.subscribed()) continue;
    if (!first_type) out += ",";
    first_type = false;
    out += "{\"type\":";
    AppendJsonString(&out, TypeLabel(type));
    out += ",\"version_sent\":";
    AppendJsonString(&out, sub.sent_version());
    out += ",\"version_acked\":";
    AppendJsonString(&out, sub.acked_version());
    out += ",\"resources\":[";
    bool first = true;
    for (const auto& [name, resource] : looked_up ? looked_up->of(type) : sub.assumed_state()) {
      if (!first) out += ",";
      first = false;
      out += "{\"name\":";
      AppendJsonString(&out, name);
      out += ",\"version\":";
      AppendJsonString(&out, resource->version);
      out += ",\"resource\":";
      out += resource->resource.type_url().empty() ? "null" : ResourceJson(resource->resource);
      out += "}";
    }
    out += "]}";
  }
  out += "],\"sidecar\":";
  out += newest->dump ? SidecarViewJson(*newest) : "null";
  out += ",\"sidecarRequest\":";
  if (newest->dump_nonce.empty()) {
    out += "null";
  } else {
    out += "{\"nonce\":";
    AppendJsonString(&out, newest->dump_nonce);
    out += ",\"answered\":";
    out += newest->dump_answer_nonce == newest->dump_nonce ? "true" : "false";
    out += "}";
  }
  out += ",\"diff\":";
  out += newest->dump ? DiffJson(*newest) : "null";
  out += "}";
  return out;
}

std::optional<std::vector<ProxyStatus>> AdsServer::ProxyStatusesAnyThread(Duration timeout) const {
  if (loop_.IsInLoopThread()) return ProxyStatuses();
  auto result = std::make_shared<std::vector<ProxyStatus>>();
  auto done = std::make_shared<Notification>();
  loop_.Post([this, result, done, alive = std::weak_ptr<bool>(alive_)] {
    if (auto a = alive.lock(); a && *a) *result = ProxyStatuses();
    done->Notify();
  });
  if (!done->WaitForNotificationWithTimeout(timeout)) return std::nullopt;
  return *result;
}

std::optional<std::optional<std::string>> AdsServer::ProxyConfigJsonAnyThread(
    std::string node_id, Duration timeout) const {
  if (loop_.IsInLoopThread()) return ProxyConfigJson(node_id);
  auto result = std::make_shared<std::optional<std::string>>();
  auto done = std::make_shared<Notification>();
  loop_.Post([this, result, done, node_id, alive = std::weak_ptr<bool>(alive_)] {
    if (auto a = alive.lock(); a && *a) *result = ProxyConfigJson(node_id);
    done->Notify();
  });
  if (!done->WaitForNotificationWithTimeout(timeout)) return std::nullopt;
  return *result;
}

void AppendOnDemandJson(std::string* out, const OnDemandStatus& status) {
  absl::StrAppend(out, ",\"onDemand\":{\"keys\":", status.keys, ",\"found\":", status.found,
                  ",\"missing\":", status.missing, "}");
}

std::string ProxyStatusJson(const std::vector<ProxyStatus>& statuses) {
  std::string out = "{\"proxies\":[";
  bool first = true;
  for (const ProxyStatus& status : statuses) {
    if (!first) out += ",";
    first = false;
    out += "{\"id\":";
    AppendJsonString(&out, status.id);
    out += ",\"service\":";
    AppendJsonString(&out, status.service);
    out += ",\"namespace\":";
    AppendJsonString(&out, status.namespace_);
    out += ",\"sidecar_version\":";
    AppendJsonString(&out, status.sidecar_version);
    out += ",\"revision\":";
    AppendJsonString(&out, status.revision.empty() ? "default" : status.revision);
    out += ",\"lacks\":";
    AppendJsonStringArray(&out, status.lacks);
    out += ",\"peer\":";
    AppendJsonString(&out, status.peer);
    if (!status.identity.empty()) {
      out += ",\"identity\":";
      AppendJsonString(&out, status.identity);
    }
    out += ",\"mode\":";
    AppendJsonString(&out, status.mode);
    if (!status.not_ready_reason.empty()) {  // why its sidecar said it is not ready
      out += ",\"notReady\":";
      AppendJsonString(&out, status.not_ready_reason);
    }
    out += ",\"connected_since\":";
    AppendJsonString(&out, Rfc3339Text(status.connected_since));
    AppendOnDemandJson(&out, status.on_demand);
    out += ",\"types\":[";
    bool first_type = true;
    for (const TypeStatus& type : status.types) {
      if (!first_type) out += ",";
      first_type = false;
      out += "{\"type\":";
      AppendJsonString(&out, type.type);
      out += ",\"type_url\":";
      AppendJsonString(&out, type.type_url);
      out += ",\"state\":";
      AppendJsonString(&out, type.state);
      out += ",\"version_sent\":";
      AppendJsonString(&out, type.sent_version);
      out += ",\"nonce_sent\":";
      AppendJsonString(&out, type.sent_nonce);
      out += ",\"version_acked\":";
      AppendJsonString(&out, type.acked_version);
      absl::StrAppend(&out, ",\"resources\":", type.resources, ",\"acks\":", type.acks,
                      ",\"nacks\":", type.nacks, ",\"last_nack\":");
      if (type.last_nack.has_value()) {
        out += "{\"version\":";
        AppendJsonString(&out, type.last_nack->version);
        absl::StrAppend(&out, ",\"code\":", type.last_nack->code, ",\"message\":");
        AppendJsonString(&out, type.last_nack->message);
        out += ",\"at\":";
        AppendJsonString(&out, Rfc3339Text(type.last_nack->at));
        out += "}";
      } else {
        out += "null";
      }
      out += "}";
    }
    out += "]}";
  }
  out += "]}";
  return out;
}

}  // namespace meshlet::controlplane::ads

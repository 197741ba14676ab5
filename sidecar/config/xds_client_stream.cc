// XdsClient's stream to the control plane: the channel to the current replica, the stream and its
// subscriptions (announcing what the sidecar holds), readiness reports, and what happens when the
// stream ends — a full-jitter exponential backoff, then the next replica (failover) or a new
// connection after UNAUTHENTICATED (a renewed client certificate). Also the answer to the control
// plane's config dump request, and the TLS settings and addresses the stream is opened with.
// Threading: the client's loop thread.

#include <algorithm>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/file.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/tls/spiffe.h"
#include "common/tls/tls_context.h"
#include "common/tls/tls_context_provider.h"
#include "common/tls/tls_transport.h"
#include "sidecar/config/xds_client.h"
#include "sidecar/config/xds_client_internal.h"
#include "xds/protocol.h"
#include "xds/resources.pb.h"

namespace meshlet::sidecar::config {

using http::grpc::StatusCode;

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
  // Announced as capability large-xds-messages: the control plane sends responses up to this.
  channel_options.max_receive_message_size = xds::kLargeXdsMessageBytes;
  channel_ = std::make_unique<http::grpc::Channel>(loop_, options_.server_addresses[server_index_],
                                                   std::move(channel_options));
}

void XdsClient::Stop() {
  // What runs is saved before the client goes (a save put off by the interval).
  FlushPersist();
  save_timer_.reset();
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
  stream_opened_at_ = loop_.Now();
  stream_ = channel_->StartCall(options_.delta ? xds::kDeltaMethod : xds::kStreamMethod);
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
  // Subscribe to every type, in push order, announcing what this sidecar already runs (delta:
  // the version of every resource; state of the world: the type's version); the first request
  // also carries the node and its readiness.
  for (size_t i = 0; i < xds::kResourceTypeCount; ++i) {
    SendRequest([&](auto& request) {
      if (i == 0) {
        *request.mutable_node() = options_.node;
        *request.mutable_readiness() = Readiness();
      }
      request.set_type_url(xds::kResourceTypeUrls[i]);
      if constexpr (xds::kIsDelta<std::decay_t<decltype(request)>>) {
        for (const auto& [name, entry] : types_[i].entries) {
          (*request.mutable_initial_resource_versions())[name] = entry.version.str();
        }
        if (i == xds_client_internal::kServiceRoutes && !lookups_.empty()) {
          // Names make the subscription explicit: the wildcard (the node's base set) plus
          // every held key.
          request.add_resource_names_subscribe("*");
          for (const auto& [key, resource] : lookups_) request.add_resource_names_subscribe(key);
        }
      } else {
        request.set_version_info(types_[i].version);
      }
    });
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
    request.set_type_url(xds::kReadinessTypeUrl);
    *request.mutable_readiness() = Readiness();
  });
}

void XdsClient::Lookup(std::vector<std::string> subscribe, std::vector<std::string> unsubscribe) {
  std::vector<std::string> added;
  added.reserve(subscribe.size());
  const absl::flat_hash_set<std::string> dropped(unsubscribe.begin(), unsubscribe.end());
  for (std::string& key : subscribe) {
    if (dropped.contains(key)) continue;
    if (lookups_.emplace(key, "").second) added.push_back(std::move(key));
  }
  std::vector<std::string> removed;
  removed.reserve(unsubscribe.size());
  for (std::string& key : unsubscribe) {
    if (lookups_.erase(key) > 0) removed.push_back(std::move(key));
  }
  // Without a delta stream the keys go with the next one (OpenStream).
  if ((added.empty() && removed.empty()) || stream_ == nullptr || !options_.delta) return;
  LOG(DEBUG) << "xds: looking up " << added.size() << " keys, dropping " << removed.size();
  xds::DeltaDiscoveryRequest request;
  request.set_type_url(xds::kResourceTypeUrls[xds_client_internal::kServiceRoutes]);
  for (std::string& key : added) request.add_resource_names_subscribe(std::move(key));
  for (std::string& key : removed) request.add_resource_names_unsubscribe(std::move(key));
  stream_->SendProto(request);
}

void XdsClient::OnStreamFinished(StatusCode code, const std::string& message) {
  // Without the control plane the saved configuration is what a restart would run: made current.
  FlushPersist();
  last_stream_error_ =
      absl::StrCat(http::grpc::StatusCodeName(code), message.empty() ? "" : ": ", message);
  connected_gauge_.Set(0);
  // A stream that was answered, or stayed open as long as the longest backoff, worked: the
  // next one starts from the shortest delay. A delta stream that has nothing to send (every
  // version current) may never answer, and the control plane ends each stream when the
  // certificate it was opened with expires: counting those as failures grew the delay to the
  // cap, leaving a quiet sidecar without a stream (and its lookups unanswered) for up to that.
  if (got_response_on_stream_ || loop_.Now() - stream_opened_at_ >= options_.backoff_cap) {
    attempt_ = 0;
  }
  // The control plane forgets this stream's taps with it.
  if (options_.on_tap) options_.on_tap(TapCommand{.stop_all = true});
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

void XdsClient::SendConfigDump(const std::string& nonce) {
  if (stream_ == nullptr) return;
  xds::SidecarConfigDump dump;
  for (size_t i = 0; i < xds::kResourceTypeCount; ++i) {
    const TypeState& state = types_[i];
    xds::SidecarConfigDump::TypeState* out = dump.add_types();
    out->set_type_url(xds::kResourceTypeUrls[i]);
    out->set_version(state.version);
    out->set_last_error(state.last_error);
    out->set_nonce(state.nonce);
    for (const auto& [name, entry] : state.entries) {
      xds::Resource* r = out->add_resources();
      r->set_name(name);
      r->set_version(entry.version.str());  // of the resource as received, so both sides compare
      if (i == xds_client_internal::kSecrets) {
        // Private keys never leave the sidecar.
        xds::Secret secret = xds_client_internal::HeldAs<xds::Secret>(*entry.held).message();
        if (!secret.private_key_pem().empty()) secret.set_private_key_pem("(redacted)");
        xds_client_internal::PackResource(i, secret, *r->mutable_resource());
      } else {
        xds_client_internal::PackResource(i, *entry.held, *r->mutable_resource());
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
    answer.set_type_url(xds::kConfigDumpTypeUrl);
    answer.set_response_nonce(nonce);
    *answer.mutable_config_dump() = std::move(dump);
  });
}

void XdsClient::OnTapCommand(const xds::TapCommand& command) {
  if (!options_.on_tap) {
    if (!command.stop()) {
      SendTapEvents(
          TapEvents{.id = command.id(), .ended = true, .error = "this sidecar runs no taps"});
    }
    return;
  }
  options_.on_tap(TapCommand{
      .id = command.id(),
      .stop = command.stop(),
      .direction = command.direction(),
      .method = command.method(),
      .authority = command.authority(),
      .path_prefix = command.path_prefix(),
      .rate = command.rate(),
      .duration = std::chrono::milliseconds(command.duration_ms()),
      .headers = command.headers(),
      .max_batch_bytes = command.max_batch_bytes(),
  });
}

bool XdsClient::SendTapEvents(const TapEvents& events) {
  if (stream_ == nullptr) return false;
  SendRequest([&](auto& request) {
    request.set_type_url(xds::kTapTypeUrl);
    xds::TapEvents* out = request.mutable_tap_events();
    out->set_id(events.id);
    out->set_events_json(events.events_json);
    out->set_events(events.events);
    out->set_dropped_rate(events.dropped_rate);
    out->set_dropped_cap(events.dropped_cap);
    out->set_started(events.started);
    out->set_ended(events.ended);
    out->set_error(events.error);
  });
  return true;
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

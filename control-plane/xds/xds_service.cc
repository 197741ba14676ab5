#include "control-plane/xds/xds_service.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/base/logging.h"
#include "common/stats/names.h"
#include "common/tls/tls_transport.h"
#include "control-plane/policy/kinds.h"
#include "control-plane/xds/tls_files.h"

namespace meshlet::controlplane::ads {

absl::StatusOr<XdsServiceOptions> ExtractXdsFlags(std::vector<std::string>& args) {
  XdsServiceOptions options;
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    absl::string_view stripped = arg;
    if (!absl::ConsumePrefix(&stripped, "--xds-")) {
      rest.push_back(args[i]);
      continue;
    }
    std::string name(stripped);
    std::string value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    if (name == "plaintext") {
      if (has_value && value != "true" && value != "false") {
        return absl::InvalidArgumentError(
            absl::StrCat("--xds-plaintext=\"", value, "\": must be true or false"));
      }
      options.plaintext = !has_value || value == "true";
      continue;
    }
    if (!has_value) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat("--xds-", name, " needs a value"));
      }
      value = args[++i];
    }
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat("--xds-", name, "=\"", value, "\": ", why));
    };
    if (name == "address") {
      if (!net::Address::Parse(value).ok()) return bad("must be IP:PORT");
      options.address = value;
    } else if (name == "tls-cert") {
      options.tls_cert_file = value;
    } else if (name == "tls-key") {
      options.tls_key_file = value;
    } else if (name == "max-concurrent-pushes") {
      if (!absl::SimpleAtoi(value, &options.ads.max_concurrent_pushes) ||
          options.ads.max_concurrent_pushes == 0) {
        return bad("must be a positive integer");
      }
    } else if (name == "debounce") {
      absl::Duration d;
      if (!absl::ParseDuration(value, &d) || d < absl::ZeroDuration()) {
        return bad("must be a duration such as 100ms");
      }
      options.ads.debounce_quiet = absl::ToChronoNanoseconds(d);
    } else if (name == "keepalive-interval" || name == "keepalive-timeout") {
      absl::Duration d;
      if (!absl::ParseDuration(value, &d) || d < absl::ZeroDuration() ||
          (name == "keepalive-timeout" && d == absl::ZeroDuration())) {
        return bad(name == "keepalive-interval" ? "must be a duration such as 30s (0: off)"
                                                : "must be a positive duration such as 10s");
      }
      (name == "keepalive-interval" ? options.keepalive_interval : options.keepalive_timeout) =
          absl::ToChronoNanoseconds(d);
    } else if (name == "listen-host") {
      if (!net::Address::FromIp(value, 1).ok()) return bad("must be an IP");
      options.translate.listen_host = value;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --xds-", name));
    }
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--xds-tls-cert and --xds-tls-key go together");
  }
  if (options.plaintext && !options.tls_cert_file.empty()) {
    return absl::InvalidArgumentError("--xds-plaintext and --xds-tls-cert exclude each other");
  }
  args = std::move(rest);
  return options;
}

std::string XdsUsage() {
  return "\nDiscovery (ADS over gRPC, docs/xds.md):\n"
         "  --xds-address=IP:PORT      default 0.0.0.0:15012\n"
         "  --xds-tls-cert=FILE        server certificate chain (PEM); with --xds-tls-key\n"
         "  --xds-tls-key=FILE         its private key (PEM)\n"
         "  --xds-plaintext            serve h2c without TLS (local tests and demos only)\n"
         "  --xds-max-concurrent-pushes=N  default 100\n"
         "  --xds-debounce=DURATION    quiet period before a push, default 100ms\n"
         "  --xds-listen-host=IP       address sidecar listeners bind, default 0.0.0.0\n"
         "  --xds-keepalive-interval=DURATION  PING a connection idle this long, default 30s "
         "(0: never)\n"
         "  --xds-keepalive-timeout=DURATION   close it when the PING is not answered within "
         "this, default 10s\n"
         "  Without TLS files or --xds-plaintext the discovery port stays closed.\n";
}

XdsService::XdsService(ControlPlane& control_plane, XdsServiceOptions options)
    : control_plane_(control_plane), options_(std::move(options)), resources_(options_.translate) {}

XdsService::~XdsService() {
  store_watch_.reset();
  registry_watch_.reset();
  if (ads_ != nullptr) {
    control_plane_.api().SetProxyStatusProvider(nullptr);
    ads_->SetObserver(nullptr);
    ads_->Stop();
  }
  grpc_server_.reset();
  ads_.reset();
}

absl::Status XdsService::Start() {
  if (!options_.enabled()) {
    LOG(WARN) << "xds: discovery port closed: give --xds-tls-cert/--xds-tls-key (or "
                 "--xds-plaintext for local tests)";
    return absl::OkStatus();
  }
  http::grpc::ServerOptions grpc_options;
  // A sidecar whose host vanished or whose process hangs never closes its connection: PINGs
  // find it, the connection closes, and the registry deregisters it after its grace period.
  grpc_options.http2.keepalive_interval = options_.keepalive_interval;
  grpc_options.http2.keepalive_timeout = options_.keepalive_timeout;
  if (!options_.plaintext) {
    absl::StatusOr<tls::TlsContextConfig> config =
        ServerTlsConfigFromFiles(options_.tls_cert_file, options_.tls_key_file);
    if (!config.ok()) return config.status();
    tls_config_ = *std::move(config);
    absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
        tls::TlsContext::CreateServer(tls_config_);
    if (!context.ok()) return context.status();
    tls_provider_ = std::make_shared<tls::TlsContextProvider>(*context);
    grpc_options.transport_factory = tls::TlsTransport::Factory(tls_provider_);
  }
  absl::StatusOr<net::Address> address = net::Address::Parse(options_.address);
  if (!address.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--xds-address \"", options_.address, "\": ", address.status().message()));
  }
  event::Loop& loop = control_plane_.loop();
  grpc_server_ = std::make_unique<http::grpc::Server>(loop, grpc_options);
  ads_ = std::make_unique<AdsServer>(
      loop, control_plane_.stats(), [this](const xds::Node& node) { return Generate(node); },
      options_.ads);
  ads_->SetObserver(this);
  if (absl::Status status = ads_->Register(*grpc_server_); !status.ok()) return status;
  if (absl::Status status = grpc_server_->Start(*address); !status.ok()) {
    return absl::Status(status.code(),
                        absl::StrCat("xDS address ", options_.address, ": ", status.message()));
  }
  store_watch_ = control_plane_.store().Watch([this](const WatchEvent& event) {
    // The store also keeps records that are not policy (join tokens); those change no sidecar's
    // configuration, so they must not cost a translation round for every node.
    if (policy::FindKind(event.resource.key.kind) == nullptr) return;
    policy_stale_ = true;
    ads_->NotifyChanged();
  });
  registry_watch_ = control_plane_.registry().Watch([this](uint64_t) { ads_->NotifyChanged(); });
  control_plane_.api().SetProxyStatusProvider(this);
  control_plane_.OnShutdown([this] {
    LOG(INFO) << "xds: GOAWAY to " << ads_->connected_proxies() << " sidecar streams";
    grpc_server_->Shutdown(options_.shutdown_grace);
  });
  LOG(INFO) << "xds: ADS on " << grpc_server_->address().ToString()
            << (options_.plaintext ? " (plaintext h2c)" : " (TLS)");
  return absl::OkStatus();
}

absl::Status XdsService::SetTrustBundle(std::string trust_bundle_pem) {
  if (tls_provider_ != nullptr) {
    tls::TlsContextConfig config = tls_config_;
    config.trust_bundle_pem = trust_bundle_pem;
    config.client_certificate = tls::ClientCertificateMode::kRequest;
    absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
        tls::TlsContext::CreateServer(config);
    if (!context.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("discovery port TLS with the trust bundle: ", context.status().message()));
    }
    tls_provider_->Update(*std::move(context));
  }
  options_.translate.trust_bundle_pem = std::move(trust_bundle_pem);
  resources_.SetOptions(options_.translate);
  if (ads_ != nullptr) ads_->NotifyChanged();
  return absl::OkStatus();
}

absl::StatusOr<NodeResourceSet> XdsService::Generate(const xds::Node& node) {
  if (policy_stale_.exchange(false) || policy_ == nullptr) {
    absl::StatusOr<policy::PolicySnapshot> loaded =
        policy::LoadPolicySnapshot(control_plane_.store());
    if (!loaded.ok()) {
      policy_stale_ = true;
      return loaded.status();
    }
    policy_ = std::make_shared<const policy::PolicySnapshot>(*std::move(loaded));
  }
  return resources_.Generate(policy_, control_plane_.registry().Snapshot(), node);
}

void XdsService::OnProxyConnected(const xds::Node& node) {
  if (!control_plane_.registry().Connect(registry::WorkloadFromNode(node))) {
    LOG_EVERY_N_SEC(WARN, 1) << "xds: registry refused " << node.id() << " (full?)";
  }
}

void XdsService::OnProxyDisconnected(const std::string& node_id) {
  control_plane_.registry().Disconnect(node_id);
}

void XdsService::OnProxyActivity(const std::string& node_id) {
  control_plane_.registry().Heartbeat(node_id);
}

std::string XdsService::ProxiesJson() {
  using stats_internal::AppendJsonString;
  std::string out = "{\"items\":[";
  bool first = true;
  for (const ProxyStatus& proxy : ads_->ProxyStatuses()) {
    if (!first) out += ",";
    first = false;
    out += "{\"id\":";
    AppendJsonString(&out, proxy.id);
    out += ",\"service\":";
    AppendJsonString(&out, proxy.service);
    out += ",\"namespace\":";
    AppendJsonString(&out, proxy.namespace_);
    out += ",\"connectedSince\":";
    AppendJsonString(
        &out, absl::FormatTime(absl::RFC3339_sec, proxy.connected_since, absl::UTCTimeZone()));
    out += ",\"mode\":";
    AppendJsonString(&out, proxy.mode);
    out += ",\"peer\":";
    AppendJsonString(&out, proxy.peer);
    out += ",\"types\":{";
    bool first_type = true;
    for (const TypeStatus& type : proxy.types) {
      if (!type.subscribed) continue;
      if (!first_type) out += ",";
      first_type = false;
      AppendJsonString(&out, type.type_url);
      out += ":{\"state\":";
      AppendJsonString(&out, type.state);
      out += ",\"sent\":";
      AppendJsonString(&out, type.sent_version);
      out += ",\"acked\":";
      AppendJsonString(&out, type.acked_version);
      out += ",\"nack\":";
      // The NACK text while the latest answer is a NACK; the last one is kept in lastNack.
      AppendJsonString(&out,
                       type.state == "NACKED" && type.last_nack ? type.last_nack->message : "");
      if (type.last_nack) {
        out += ",\"lastNack\":{\"version\":";
        AppendJsonString(&out, type.last_nack->version);
        out += ",\"message\":";
        AppendJsonString(&out, type.last_nack->message);
        out += "}";
      }
      out += "}";
    }
    out += "}}";
  }
  out += "]}";
  return out;
}

absl::StatusOr<std::string> XdsService::ProxyConfigJson(absl::string_view node_id) {
  std::optional<std::string> json = ads_->ProxyConfigJson(node_id);
  if (!json) return absl::NotFoundError(absl::StrCat("no sidecar \"", node_id, "\" is connected"));
  return *json;
}

absl::StatusOr<std::string> XdsService::RequestSidecarConfig(absl::string_view node_id) {
  return ads_->RequestConfigDump(node_id);
}

}  // namespace meshlet::controlplane::ads

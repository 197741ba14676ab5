#include "control-plane/telemetry/telemetry_service.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/config/yaml_proto.h"
#include "common/tls/certificate.h"
#include "common/tls/tls_context.h"
#include "common/tls/tls_transport.h"
#include "control-plane/policy/kinds.h"
#include "control-plane/telemetry/dashboard.h"
#include "control-plane/telemetry/trace_ring.h"

namespace meshlet::controlplane::telemetry {

std::vector<flags::Flag> TelemetryFlags(TelemetryOptions& options) {
  // A receiver's address; empty turns it off.
  auto address = [](std::string* out, bool* explicit_flag) {
    return [=](absl::string_view v) {
      if (!v.empty()) {
        if (absl::Status s = net::Address::Parse(v).status(); !s.ok()) return s;
      }
      *out = std::string(v);
      *explicit_flag = true;
      return absl::OkStatus();
    };
  };
  // A number > 0.
  auto positive = [](double* out) {
    return [=](absl::string_view v) {
      double d = 0;
      if (!absl::SimpleAtod(v, &d) || !(d > 0) || d > 1e9) {
        return absl::InvalidArgumentError("must be a number above 0");
      }
      *out = d;
      return absl::OkStatus();
    };
  };
  // A duration from `min` to `max`.
  auto duration = [](Duration* out, absl::Duration min, absl::Duration max, const char* message) {
    return [=](absl::string_view v) {
      absl::StatusOr<absl::Duration> d = config::ParseDurationText(v);
      if (!d.ok() || *d < min || *d > max) return absl::InvalidArgumentError(message);
      *out = absl::ToChronoNanoseconds(*d);
      return absl::OkStatus();
    };
  };
  return {
      {.name = "--otlp-address",
       .value = "HOST:PORT",
       .help = "OTLP/HTTP receiver, POST /v1/traces; empty disables (default 0.0.0.0:4318)",
       .set = address(&options.otlp_address, &options.otlp_address_explicit)},
      {.name = "--zipkin-address",
       .value = "HOST:PORT",
       .help = "Zipkin v2 receiver, POST /api/v2/spans; empty disables (default 0.0.0.0:9411)",
       .set = address(&options.zipkin_address, &options.zipkin_address_explicit)},
      flags::BoolFlag("--trace-refuse-unverified", &options.refuse_unverified_spans,
                      "the OTLP/HTTP and Zipkin receivers, which cannot authenticate a sender, "
                      "answer 403 and store nothing instead of storing spans marked unverified "
                      "(default false)"),
      flags::IntFlag<size_t>("--telemetry-max-body-bytes", "N", &options.max_request_body_bytes,
                             "largest receiver request body (default 4194304)"),
      flags::IntFlag<size_t>("--trace-store-max-spans", "N", &options.store_limits.max_spans,
                             "spans kept in memory (default 100000)"),
      flags::IntFlag<size_t>("--trace-store-max-bytes", "N", &options.store_limits.max_bytes,
                             "approximate bytes kept in memory (default 67108864)"),
      flags::IntFlag<size_t>("--trace-store-max-spans-per-trace", "N",
                             &options.store_limits.max_spans_per_trace,
                             "spans kept per trace (default 10000)"),
      flags::StringFlag("--trace-store-dir", "DIR", &options.trace_store_dir,
                        "also keep spans in an on-disk ring in DIR, read back at start (default: "
                        "memory only)"),
      flags::IntFlag<size_t>("--trace-store-disk-bytes", "N", &options.trace_store_disk_bytes,
                             "the ring's size on disk (default 268435456)"),
      flags::IntFlag<size_t>("--golden-max-series", "N", &options.golden_limits.max_series,
                             "(sidecar, cluster) and (sidecar, route rule) pairs tracked for "
                             "golden metrics (default 10000)"),
      flags::IntFlag<size_t>("--golden-max-clusters-per-report", "N",
                             &options.golden_limits.max_clusters_per_report,
                             "clusters recorded from one golden-metrics report; the rest are left "
                             "out and counted (default 1000)"),
      {.name = "--golden-retention",
       .value = "DURATION",
       .help = "longest golden-metrics query window, e.g. 10m (default 10m)",
       .set =
           [&options](absl::string_view v) {
             absl::StatusOr<absl::Duration> d = config::ParseDurationText(v);
             if (!d.ok() || *d < absl::Seconds(10)) {
               return absl::InvalidArgumentError("must be a duration of at least 10s");
             }
             options.golden_limits.retention = absl::ToChronoNanoseconds(*d);
             return absl::OkStatus();
           }},
      {.name = "--golden-history-resolution",
       .value = "DURATION",
       .help = "one golden-metrics history point per edge per this, from 1s to 10m (default 10s)",
       .set =
           [&options](absl::string_view v) {
             absl::StatusOr<absl::Duration> d = config::ParseDurationText(v);
             if (!d.ok() || *d < absl::Seconds(1) || *d > absl::Minutes(10) ||
                 absl::Trunc(*d, absl::Seconds(1)) != *d) {
               return absl::InvalidArgumentError("must be whole seconds from 1s to 10m");
             }
             GoldenHistoryLimits& h = options.golden_limits.history;
             h.resolution = absl::ToChronoNanoseconds(*d);
             // The slots kept open for late reports: at least three.
             h.open_for = std::max(h.open_for, 3 * h.resolution);
             return absl::OkStatus();
           }},
      {.name = "--golden-history-retention",
       .value = "DURATION",
       .help = "how far back the golden-metrics history reaches, from 1m to 7d (default 1h)",
       .set = duration(&options.golden_limits.history.retention, absl::Minutes(1),
                       absl::Hours(24 * 7), "must be a duration from 1m to 7d")},
      flags::IntFlag<size_t>("--golden-history-max-series", "N",
                             &options.golden_limits.history.max_series,
                             "series the golden-metrics history keeps (edges, route rules, "
                             "workloads); the reports' deltas for more are dropped and counted "
                             "(default 10000)"),
      flags::IntFlag<size_t>("--golden-history-max-points", "N",
                             &options.golden_limits.history.max_points,
                             "points in one /api/v1/stat/history answer (default 1000)"),
      flags::IntFlag<size_t>("--config-events-max", "N", &options.config_events.max_events,
                             "configuration changes (policy writes, pushed versions) kept for "
                             "the history's markers; the oldest go first (default 1000)"),
      {.name = "--replica-address",
       .value = "IP[:PORT]",
       .help = "with etcd: where the other replicas reach this one's discovery port to share "
               "telemetry; an IP alone (IPv6 without brackets) takes the discovery port's "
               "(default: the discovery port on its bound IP, or on this host's first "
               "non-loopback address)",
       .set =
           [&options](absl::string_view v) {
             if (!net::Address::Parse(v).ok() && !net::Address::FromIp(v, 0).ok()) {
               return absl::InvalidArgumentError(
                   "must be IP:PORT, [IPv6]:PORT or an IP address alone");
             }
             options.replica_address = std::string(v);
             return absl::OkStatus();
           }},
      {.name = "--peer-telemetry-interval",
       .value = "DURATION",
       .help = "with etcd: how often telemetry goes to the other replicas (default 1s)",
       .set = duration(&options.peer.interval, absl::Milliseconds(10), absl::Minutes(1),
                       "must be a duration from 10ms to 1m")},
      flags::IntFlag<size_t>("--peer-telemetry-max-batch-bytes", "N", &options.peer.max_batch_bytes,
                             "with etcd: a batch for the other replicas goes out early at this "
                             "size (default 1048576)"),
      {.name = "--report-rate-per-identity",
       .value = "N",
       .help = "golden-metrics reports accepted per second per workload identity across the mesh; "
               "each of N replicas admits 1/N of it and of the burst (default 100)",
       .set = positive(&options.report_limits.per_second)},
      {.name = "--report-burst",
       .value = "N",
       .help = "reports accepted above that rate at once (default 200)",
       .set = positive(&options.report_limits.burst)},
      flags::IntFlag<size_t>("--report-max-bytes", "N", &options.report_limits.max_bytes,
                             "largest golden-metrics report accepted (default 262144)"),
      {.name = "--span-rate-per-identity",
       .value = "N",
       .help = "spans accepted per second per workload identity over OTLP/gRPC on the discovery "
               "port across the mesh; each of N replicas admits 1/N of it and of the burst "
               "(default 10000)",
       .set = positive(&options.span_limits.per_second)},
      {.name = "--span-burst",
       .value = "N",
       .help = "spans accepted above that rate at once; a larger export is refused (default "
               "20000)",
       .set = positive(&options.span_limits.burst)},
      flags::IntFlag<size_t>("--span-batch-max-bytes", "N", &options.span_limits.max_bytes,
                             "largest OTLP/gRPC span export accepted on the discovery port "
                             "(default 4194304; the port takes no message over 4 MiB)"),
  };
}

TelemetryService::TelemetryService(ControlPlane& control_plane, TelemetryOptions options)
    : control_plane_(control_plane),
      options_(std::move(options)),
      collector_(options_.store_limits, &control_plane.stats()),
      golden_(RealClock::Get(), options_.golden_limits, &control_plane.stats()),
      report_gate_(control_plane.clock(),
                   ReportGateOptions(options_.report_limits, options_.trust_domain,
                                     !options_.discovery_plaintext),
                   &control_plane.stats()),
      span_gate_(control_plane.clock(),
                 TelemetryGateOptions{
                     .counter_name = "meshlet_cp_trace_export_refusals_total",
                     .counter_help =
                         "OTLP/gRPC span exports refused on the discovery port, by reason: no "
                         "client certificate, a certificate naming no workload, a node not "
                         "registered under the certificate's identity (or not the pod's), a "
                         "resource naming no node, not an export request, over the per-identity "
                         "rate, over the size limit, too many callers tracked.",
                     .what = "span export",
                     .extra_reasons = {"no_node", "invalid"},
                     .limits = options_.span_limits,
                     .trust_domain = options_.trust_domain,
                     .authenticate = !options_.discovery_plaintext,
                 },
                 &control_plane.stats()),
      config_events_(
          RealClock::Get(),
          [this] {
            ConfigEventsLimits limits = options_.config_events;
            limits.retention = options_.golden_limits.history.retention;
            return limits;
          }(),
          &control_plane.stats()) {
  StatsShard& shard = control_plane.stats().shared_shard();
  auto counter = [&](absl::string_view result) {
    auto c = shard.RegisterCounter("meshlet_cp_peer_telemetry_received_total",
                                   "Telemetry batches received from other control-plane replicas, "
                                   "by result (accepted, unauthenticated, invalid).",
                                   {{"result", std::string(result)}});
    return c.ok() ? *c : Counter();
  };
  peer_accepted_ = counter("accepted");
  peer_unauthenticated_ = counter("unauthenticated");
  peer_invalid_ = counter("invalid");
  auto gauge = shard.RegisterGauge(
      "meshlet_cp_identity_limit_replicas",
      "Control-plane replicas the per-identity report and span limits are divided among (this "
      "one included): each admits the configured rate and burst divided by this.",
      {}, GaugeMerge::kGlobal);
  if (gauge.ok()) limit_replicas_ = *gauge;
  limit_replicas_.Set(1);
  collector_.SetRefuseUnverified(options_.refuse_unverified_spans);
}

TelemetryService::~TelemetryService() {
  policy_watch_.reset();
  *alive_ = false;
  golden_.history().SetEventsSource(nullptr);
  collector_.SetForward(nullptr);
  forwarder_.reset();
  control_plane_.api().SetTraceHandler(nullptr);
  collector_.SetRing(nullptr);
  control_plane_.api().SetDashboardHandler(nullptr);
  otlp_server_.reset();
  zipkin_server_.reset();
}

absl::StatusOr<std::unique_ptr<http::HttpServer>> TelemetryService::Listen(
    const std::string& address, bool explicit_address, absl::string_view what,
    http::RequestHandler handler) {
  if (address.empty()) return std::unique_ptr<http::HttpServer>();
  ASSIGN_OR_RETURN(net::Address parsed, net::Address::Parse(address));
  http::HttpServerOptions server_options = control_plane_.HttpServerOptionsFor(what);
  server_options.max_request_body_bytes = options_.max_request_body_bytes;
  server_options.max_connections = options_.max_connections;
  absl::StatusOr<std::unique_ptr<http::HttpServer>> server =
      http::HttpServer::Create(control_plane_.loop(), parsed, server_options, std::move(handler));
  if (!server.ok()) {
    if (!explicit_address) {
      LOG(WARN) << what << " receiver off: cannot listen on the default address " << address << ": "
                << server.status().message() << " (choose another with --" << what << "-address)";
      return std::unique_ptr<http::HttpServer>();
    }
    return Annotate(server.status(), absl::StrCat(what, " receiver on ", address));
  }
  return server;
}

absl::Status TelemetryService::Start(http::grpc::Server* grpc_server) {
  if (!options_.trace_store_dir.empty()) {
    std::vector<SpanRecord> replay;
    ASSIGN_OR_RETURN(
        ring_, TraceRing::Open(options_.trace_store_dir, options_.trace_store_disk_bytes, &replay));
    const size_t count = replay.size();
    collector_.Restore(std::move(replay));
    collector_.SetRing(ring_.get());
    LOG(INFO) << "trace store: " << count << " spans read back from " << options_.trace_store_dir
              << "; " << collector_.store().span_count() << " kept";
  }
  if (grpc_server != nullptr) {
    RETURN_IF_ERROR(grpc_server->RegisterMethod(
        kMetricsReportMethod,
        [this](std::shared_ptr<http::grpc::ServerCall> call) { ReceiveReport(std::move(call)); }));
    RETURN_IF_ERROR(grpc_server->RegisterMethod(
        kTraceExportMethod,
        [this](std::shared_ptr<http::grpc::ServerCall> call) { ReceiveSpans(std::move(call)); }));
  }
  if (grpc_server != nullptr) {
    RETURN_IF_ERROR(grpc_server->RegisterMethod(
        kPeerForwardMethod, [this](std::shared_ptr<http::grpc::ServerCall> call) {
          ReceiveFromPeer(std::move(call));
        }));
    for (auto& [method, handler] : peer_methods_) {
      RETURN_IF_ERROR(grpc_server->RegisterMethod(
          method, [this, method = method,
                   handler = std::move(handler)](std::shared_ptr<http::grpc::ServerCall> call) {
            if (absl::Status status = AuthenticatePeer(*call); !status.ok()) {
              peer_unauthenticated_.Inc();
              LOG_EVERY_N_SEC(WARN, 5)
                  << "refused " << method << " from " << call->peer_address().ToString() << ": "
                  << status.message();
              call->Finish(static_cast<http::grpc::StatusCode>(static_cast<int>(status.code())),
                           status.message());
              return;
            }
            handler(std::move(call));
          }));
    }
    RETURN_IF_ERROR(StartForwarder(*grpc_server));
  }
  ASSIGN_OR_RETURN(otlp_server_, Listen(options_.otlp_address, options_.otlp_address_explicit,
                                        "otlp", [this](const http::ServerRequest& r) {
                                          return collector_.HandleOtlp(r);
                                        }));
  ASSIGN_OR_RETURN(zipkin_server_, Listen(options_.zipkin_address, options_.zipkin_address_explicit,
                                          "zipkin", [this](const http::ServerRequest& r) {
                                            return collector_.HandleZipkin(r);
                                          }));
  // Markers on the history's charts: policy changes as the store's watch reports them (every
  // replica), who made them from the writes this replica answered, and the versions pushed.
  policy_watch_ = control_plane_.store().Watch(
      [this, &loop = control_plane_.loop(), alive = std::weak_ptr<bool>(alive_),
       max_services = options_.config_events.max_services](const WatchEvent& event) {
        // The writer's thread (file store) or the store's (etcd): parse here, record on the loop.
        const StoredResource& r = event.resource;
        if (policy::FindStoredKind(r.key.kind) == nullptr) return;
        const bool deleted = event.type == WatchEvent::Type::kDelete;
        std::vector<std::string> services =
            deleted
                ? std::vector<std::string>()
                : ServicesNamedBy(r.key.kind, r.key.namespace_, r.key.name, r.body, max_services);
        loop.Post([this, alive, key = r.key, deleted, created = r.revision == r.create_revision,
                   revision = r.revision, services = std::move(services)]() mutable {
          if (auto a = alive.lock(); !a || !*a) return;
          config_events_.AddPolicyChange(std::move(key.kind), std::move(key.namespace_),
                                         std::move(key.name), deleted, created, revision,
                                         std::move(services));
        });
      });
  control_plane_.AddWriteListener(
      [this, alive = std::weak_ptr<bool>(alive_)](const access::AuditedObject& object,
                                                  const access::Principal* caller) {
        if (auto a = alive.lock(); !a || !*a) return;
        if (object.name.empty()) return;
        config_events_.AddWrite(object.resource, object.namespace_, object.name,
                                caller != nullptr ? caller->name : "",
                                caller != nullptr ? access::RoleName(caller->role) : "");
      });
  golden_.history().SetEventsSource(
      [this](absl::Time from, absl::Time to, const std::vector<std::string>& services) {
        return config_events_.EventsJson(from, to, services);
      });
  control_plane_.api().SetDashboardHandler(HandleDashboard);
  control_plane_.api().SetTraceHandler([this](const http::ServerRequest& r) {
    if (r.path() == "/api/v1/stat") return golden_.HandleQuery(r);
    if (r.path() == "/api/v1/stat/history") return golden_.history().HandleQuery(r);
    if (r.path() == "/api/v1/stat/routes") return golden_.history().HandleRoutes(r);
    if (r.path() == "/api/v1/certificates") return golden_.HandleCertificates(r);
    return collector_.HandleQuery(r);
  });
  control_plane_.OnShutdown([this] {
    if (otlp_server_ != nullptr) otlp_server_->Shutdown();
    if (zipkin_server_ != nullptr) zipkin_server_->Shutdown();
  });
  LOG(INFO) << "trace collector: OTLP/HTTP on "
            << (otlp_server_ != nullptr ? otlp_server_->address().ToString() : "(off)")
            << ", Zipkin on "
            << (zipkin_server_ != nullptr ? zipkin_server_->address().ToString() : "(off)")
            << "; store limits " << options_.store_limits.max_spans << " spans, "
            << options_.store_limits.max_bytes << " bytes";
  return absl::OkStatus();
}

void TelemetryService::ReceiveReport(std::shared_ptr<http::grpc::ServerCall> call) {
  call->OnUnaryRequest<metrics::v1::MetricsReport>(
      [this, call](std::optional<metrics::v1::MetricsReport> report) {
        if (!report.has_value()) {
          call->Finish(http::grpc::StatusCode::kInvalidArgument, "no MetricsReport was sent");
          return;
        }
        if (absl::Status admitted = AdmitReport(report_gate_, call->peer(),
                                                *control_plane_.registry().Snapshot(), *report);
            !admitted.ok()) {
          call->Finish(static_cast<http::grpc::StatusCode>(static_cast<int>(admitted.code())),
                       admitted.message());
          return;
        }
        absl::Status status = golden_.Record(*report);
        if (!status.ok() && !absl::IsResourceExhausted(status)) {
          call->Finish(http::grpc::StatusCode::kInvalidArgument, status.message());
          return;
        }
        if (forwarder_ != nullptr) forwarder_->AddReport(*std::move(report));
        call->SendProto(metrics::v1::ReportResponse());
        call->Finish(http::grpc::StatusCode::kOk);
      });
}

namespace {

void FinishWith(http::grpc::ServerCall& call, const absl::Status& status) {
  call.Finish(static_cast<http::grpc::StatusCode>(static_cast<int>(status.code())),
              status.message());
}

}  // namespace

void TelemetryService::ReceiveSpans(std::shared_ptr<http::grpc::ServerCall> call) {
  // Who sends, before a byte of the export is read.
  absl::StatusOr<std::optional<identity::Caller>> caller = span_gate_.Authenticate(call->peer());
  if (!caller.ok()) {
    FinishWith(*call, caller.status());
    return;
  }
  auto request = std::make_shared<std::optional<std::string>>();
  call->OnMessage([this, call = call.get(), request](std::string message) {
    if (request->has_value()) {
      FinishWith(*call, span_gate_.Refuse("invalid", absl::InvalidArgumentError(
                                                         "unary method: one request only")));
      return;
    }
    *request = std::move(message);
  });
  call->OnHalfClose([this, call = call.get(), request, caller = *std::move(caller)] {
    if (call->ended()) return;
    if (!request->has_value()) {
      FinishWith(*call, span_gate_.Refuse("invalid", absl::InvalidArgumentError(
                                                         "no ExportTraceServiceRequest was sent")));
      return;
    }
    if (absl::Status exported = ExportSpans(*call, **request, caller); !exported.ok()) {
      FinishWith(*call, exported);
    }
  });
}

absl::Status TelemetryService::ExportSpans(http::grpc::ServerCall& call, absl::string_view body,
                                           const std::optional<identity::Caller>& caller) {
  RETURN_IF_ERROR(span_gate_.CheckSize(body.size()));
  absl::StatusOr<std::vector<OtlpResourceSpans>> resources = ParseOtlpProtobufResources(body);
  if (!resources.ok()) return span_gate_.Refuse("invalid", resources.status());
  size_t count = 0;
  for (const OtlpResourceSpans& resource : *resources) count += resource.spans.size();
  // On a plaintext port the bucket is the node the export names (it may name any).
  RETURN_IF_ERROR(span_gate_.Take(caller,
                                  resources->empty() ? "" : resources->front().service_instance_id,
                                  static_cast<double>(count)));
  std::vector<std::optional<VerifiedSource>> sources(resources->size());
  if (caller.has_value()) {
    std::shared_ptr<const registry::RegistrySnapshot> registry =
        control_plane_.registry().Snapshot();
    for (size_t r = 0; r < resources->size(); ++r) {
      const std::string& node = (*resources)[r].service_instance_id;
      if (node.empty()) {
        return span_gate_.Refuse(
            "no_node", absl::InvalidArgumentError(absl::StrCat(
                           "resourceSpans[", r,
                           "].resource: no service.instance.id attribute; it must be the node id "
                           "the sending sidecar registered")));
      }
      ASSIGN_OR_RETURN(const registry::Workload* workload,
                       span_gate_.Registration(*caller, *registry, node));
      // What the spans are recorded under comes from the registration, not from the export: a
      // gateway proxy's from its Gateway ("gateway:<name>.<namespace>", xds/protocol.h).
      const std::string service = RegisteredService(*workload);
      sources[r] = VerifiedSource{
          .service =
              service.empty() ? workload->id : absl::StrCat(service, ".", workload->namespace_),
          .node_id = workload->id,
          .identity = caller->spiffe_id,
      };
    }
  }
  const AddResult result = collector_.AddExport(*std::move(resources), sources);
  call.Send(collector_.ExportResponse(result, count));
  call.Finish(http::grpc::StatusCode::kOk);
  return absl::OkStatus();
}

absl::Status TelemetryService::AuthenticatePeer(const http::grpc::ServerCall& call) const {
  if (!options_.peer_identity.empty()) {
    // Replicas hold the control plane's own certificate from the mesh CA.
    const net::PeerInfo& peer = call.peer();
    if (!peer.peer_certificate_presented) {
      return absl::UnauthenticatedError(
          "forwarding telemetry needs the control plane's client certificate");
    }
    if (peer.peer_not_after <= absl::Now()) {
      return absl::UnauthenticatedError(
          "the client certificate of this connection has expired: reconnect with the current one");
    }
    absl::StatusOr<tls::SpiffeId> id = tls::SpiffeIdFromUriSans(peer.uri_sans);
    if (!id.ok() || id->ToString() != options_.peer_identity) {
      return absl::PermissionDeniedError(absl::StrCat(
          "forwarding telemetry is for control-plane replicas (", options_.peer_identity, "), not ",
          id.ok() ? id->ToString() : std::string("this certificate")));
    }
    return absl::OkStatus();
  }
  const absl::string_view authorization = call.metadata().Get("authorization").value_or("");
  absl::string_view token = authorization;
  if (!absl::ConsumePrefix(&token, "Bearer ") ||
      !api::ConstantTimeEquals(token, control_plane_.api_token())) {
    return absl::UnauthenticatedError("forwarding telemetry needs the control plane's API token");
  }
  return absl::OkStatus();
}

std::vector<std::pair<std::string, std::shared_ptr<http::grpc::ClientCall>>>
TelemetryService::StartPeerCalls(absl::string_view method) {
  if (forwarder_ == nullptr) return {};
  return forwarder_->StartCalls(method);
}

void TelemetryService::ReceiveFromPeer(std::shared_ptr<http::grpc::ServerCall> call) {
  if (absl::Status status = AuthenticatePeer(*call); !status.ok()) {
    peer_unauthenticated_.Inc();
    LOG_EVERY_N_SEC(WARN, 5) << "telemetry: refused a Forward from "
                             << call->peer_address().ToString() << ": " << status.message();
    call->Finish(static_cast<http::grpc::StatusCode>(static_cast<int>(status.code())),
                 status.message());
    return;
  }
  call->OnUnaryRequest<peer::v1::ForwardBatch>(
      [this, call](std::optional<peer::v1::ForwardBatch> batch) {
        if (!batch.has_value()) {
          peer_invalid_.Inc();
          call->Finish(http::grpc::StatusCode::kInvalidArgument, "no ForwardBatch was sent");
          return;
        }
        // Stored as this replica's own, never forwarded again. A report or span batch that does not
        // decode is skipped (and counted by the golden metrics or here); the rest is kept.
        bool valid = true;
        for (const metrics::v1::MetricsReport& report : batch->reports()) {
          golden_.Record(report).IgnoreError();  // counted by result
        }
        for (const std::string& encoded : batch->span_batches()) {
          std::vector<SpanRecord> spans;
          if (!DecodeSpans(encoded, &spans)) {
            valid = false;
            continue;
          }
          collector_.AddFromPeer(std::move(spans));
        }
        (valid ? peer_accepted_ : peer_invalid_).Inc();
        call->SendProto(peer::v1::ForwardResponse());
        call->Finish(http::grpc::StatusCode::kOk);
      });
}

absl::Status TelemetryService::SetPeerCredentials(const PeerCredentials& credentials) {
  tls::TlsContextConfig config;
  config.certificate_chain_pem = credentials.certificate_chain_pem;
  config.private_key_pem = credentials.private_key_pem;
  config.trust_bundle_pem = credentials.trust_bundle_pem;
  config.alpn_protocols = {"h2"};
  if (!credentials.server_identity.empty()) {
    ASSIGN_OR_RETURN(config.peer_identity,
                     tls::SpiffeIdMatcher::Create({credentials.server_identity}, {}));
  }
  absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
      tls::TlsContext::CreateClient(config);
  if (!context.ok()) return Annotate(context.status(), "TLS to the other replicas");
  peer_transport_ =
      tls::TlsTransport::Factory(std::make_shared<tls::TlsContextProvider>(*std::move(context)));
  if (forwarder_ != nullptr) forwarder_->SetTransport(peer_transport_);
  return absl::OkStatus();
}

absl::Status TelemetryService::StartForwarder(const http::grpc::Server& grpc_server) {
  LeasedKeys* keys = control_plane_.leased_keys();
  if (keys == nullptr) return absl::OkStatus();  // one replica: nobody to share with
  PeerForwarderOptions options = options_.peer;
  options.replica_name = control_plane_.replica_name();
  options.advertise_address = options_.replica_address;
  if (absl::StatusOr<net::Address> ip =
          net::Address::FromIp(options.advertise_address, grpc_server.address().port());
      ip.ok()) {
    options.advertise_address = ip->ToString();  // an IP alone: the discovery port's
  } else if (options.advertise_address.empty()) {
    ASSIGN_OR_RETURN(options.advertise_address, DefaultReplicaAddress(grpc_server.address()));
  }
  const std::string advertised = options.advertise_address;
  forwarder_ = std::make_unique<PeerForwarder>(control_plane_.loop(), *keys, std::move(options),
                                               &control_plane_.stats());
  // With certificates the replicas know each other by them; the token would only travel for
  // nothing.
  if (options_.peer_identity.empty()) forwarder_->SetToken(control_plane_.api_token());
  forwarder_->SetHistory(&collector_.store());
  forwarder_->SetTransport(peer_transport_);
  forwarder_->OnReplicasChanged([this](size_t replicas) { SetLimitReplicas(replicas); });
  RETURN_IF_ERROR(forwarder_->Start());
  collector_.SetForward(
      [this](const std::vector<SpanRecord>& spans) { forwarder_->AddSpans(spans); });
  LOG(INFO) << "telemetry: shared with the other replicas, which reach this one at " << advertised;
  return absl::OkStatus();
}

void TelemetryService::SetLimitReplicas(size_t replicas) {
  report_gate_.SetReplicas(replicas);
  span_gate_.SetReplicas(replicas);
  limit_replicas_.Set(static_cast<int64_t>(replicas));
  LOG(INFO) << "telemetry: per-identity limits shared among " << replicas
            << " replicas: this one admits " << span_gate_.share_per_second()
            << " spans a second (burst " << span_gate_.share_burst() << ") and "
            << report_gate_.share_per_second() << " reports a second (burst "
            << report_gate_.share_burst() << ") per identity";
}

const net::Address* TelemetryService::otlp_address() const {
  return otlp_server_ != nullptr ? &otlp_server_->address() : nullptr;
}

const net::Address* TelemetryService::zipkin_address() const {
  return zipkin_server_ != nullptr ? &zipkin_server_->address() : nullptr;
}

}  // namespace meshlet::controlplane::telemetry

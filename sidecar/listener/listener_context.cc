#include "sidecar/listener/listener_context.h"

#include <functional>
#include <utility>

#include "absl/strings/string_view.h"
#include "common/base/logging.h"
#include "common/net/plaintext_transport.h"
#include "common/stats/or_discard.h"

namespace meshlet::sidecar::listener {
namespace {

Counter RejectedCounter(StatsShard& shard, const std::string& listener, absl::string_view reason) {
  return OrDiscard(
      shard.RegisterCounter("meshlet_downstream_cx_rejected_total",
                            "Downstream connections closed without being served, by reason.",
                            {{"listener", listener}, {"reason", std::string(reason)}}),
      "meshlet_downstream_cx_rejected_total");
}

Counter ProtocolCounter(StatsShard& shard, const std::string& listener, absl::string_view proto) {
  return OrDiscard(
      shard.RegisterCounter("meshlet_downstream_cx_protocol_total",
                            "Downstream connections by the protocol they were "
                            "handled as.",
                            {{"listener", listener}, {"protocol", std::string(proto)}}),
      "meshlet_downstream_cx_protocol_total");
}

}  // namespace

std::shared_ptr<ListenerContext> ListenerContext::Create(
    const config::ListenerConfig& config, std::shared_ptr<const config::Snapshot> snapshot,
    StatsShard& shard, std::shared_ptr<const tls::TlsContextProvider> tls_provider,
    TlsRefusalLog* tls_refusal_log) {
  // Every worker's context of the snapshot reads the snapshot's own config: no copy per worker
  // (a capture listener's destinations grow with the mesh).
  const std::less<const config::ListenerConfig*> before;
  CHECK(snapshot != nullptr && !before(&config, snapshot->listeners.data()) &&
        before(&config, snapshot->listeners.data() + snapshot->listeners.size()))
      << "listener " << config.name << ": its context must be made from its snapshot's config";
  auto context = std::make_shared<ListenerContext>(config, std::move(snapshot));
  const LabelSet labels = {{"listener", config.name}};
  context->cx_total = OrDiscard(shard.RegisterCounter("meshlet_downstream_cx_total",
                                                      "Downstream connections accepted.", labels),
                                "meshlet_downstream_cx_total");
  context->cx_active = OrDiscard(
      shard.RegisterGauge("meshlet_downstream_cx_active", "Downstream connections open.", labels),
      "meshlet_downstream_cx_active");
  context->detect_restarted_late = OrDiscard(
      shard.RegisterCounter("meshlet_downstream_detect_restarted_late_total",
                            "Waits for a connection's first bytes that expired long past their "
                            "time (the worker was not running) and started over.",
                            labels),
      "meshlet_downstream_detect_restarted_late_total");
  context->rejected_overflow = RejectedCounter(shard, config.name, "overflow");
  context->rejected_no_tcp_cluster = RejectedCounter(shard, config.name, "no_tcp_cluster");
  context->rejected_tls_unavailable = RejectedCounter(shard, config.name, "tls_unavailable");
  if (config.authorizer != nullptr) {
    context->rejected_rbac = RejectedCounter(shard, config.name, "rbac_denied");
  }
  if (context->has_tls()) {
    context->tls_provider = std::move(tls_provider);
    context->tls.plaintext_refused = RejectedCounter(shard, config.name, "plaintext_refused");
    context->tls.handshake_error = RejectedCounter(shard, config.name, "tls_handshake_error");
    for (tls::HandshakeFailure failure : tls::kHandshakeFailures) {
      context->tls.handshake_fail[static_cast<size_t>(failure)] = OrDiscard(
          shard.RegisterCounter("meshlet_downstream_tls_handshake_fail_total",
                                "Downstream TLS handshakes that failed, by reason (each is also a "
                                "tls_handshake_error rejection).",
                                {{"listener", config.name},
                                 {"reason", std::string(tls::HandshakeFailureName(failure))}}),
          "meshlet_downstream_tls_handshake_fail_total");
    }
    context->tls_refusal_log = tls_refusal_log;
    context->tls.handshakes =
        OrDiscard(shard.RegisterCounter("meshlet_downstream_tls_handshakes_total",
                                        "Downstream TLS handshakes completed.", labels),
                  "meshlet_downstream_tls_handshakes_total");
    context->tls.resumed = OrDiscard(
        shard.RegisterCounter("meshlet_downstream_tls_resumed_total",
                              "Downstream TLS handshakes that resumed a session (no signatures; "
                              "counted in meshlet_downstream_tls_handshakes_total too).",
                              labels),
        "meshlet_downstream_tls_resumed_total");
  }
  context->rejected_detect_timeout = RejectedCounter(shard, config.name, "detect_timeout");
  context->rejected_tls_handshake_timeout =
      RejectedCounter(shard, config.name, "tls_handshake_timeout");
  context->closed_before_detect = RejectedCounter(shard, config.name, "closed_before_detect");
  context->as_http1 = ProtocolCounter(shard, config.name, "http1");
  context->as_http2 = ProtocolCounter(shard, config.name, "http2");
  context->as_tcp = ProtocolCounter(shard, config.name, "tcp");
  context->tcp = TcpProxyStats::Create(shard, config.name);
  if (config.use_original_destination || !config.destinations.empty()) {
    context->matcher.emplace(context->config);
    context->rejected_unmatched_destination =
        RejectedCounter(shard, config.name, "unmatched_destination");
  }
  if (context->matcher.has_value() && context->matcher->reads_server_names()) {
    for (tls::ClientHello::Status status :
         {tls::ClientHello::Status::kOk, tls::ClientHello::Status::kNeedMoreBytes,
          tls::ClientHello::Status::kNotTls, tls::ClientHello::Status::kInvalid,
          tls::ClientHello::Status::kTooLarge}) {
      context->client_hellos[static_cast<size_t>(status)] = OrDiscard(
          shard.RegisterCounter(
              "meshlet_downstream_cx_client_hello_total",
              "Connections of listeners that route TLS by server name, by what their first "
              "bytes were: a ClientHello (ok), not a whole one before the end or "
              "detect_timeout (need_more_bytes), not TLS, an invalid or an over-long "
              "ClientHello.",
              {{"listener", config.name},
               {"result", std::string(tls::ClientHelloStatusName(status))}}),
          "meshlet_downstream_cx_client_hello_total");
    }
  }
  if (context->matcher.has_value() && context->matcher->reads_http_hosts()) {
    for (size_t i = 0; i < kHttp1HostStatusCount; ++i) {
      const auto status = static_cast<Http1Host::Status>(i);
      context->http_hosts[i] = OrDiscard(
          shard.RegisterCounter(
              "meshlet_downstream_cx_http_host_total",
              "Connections of capture listeners that route plain HTTP by Host, by what their "
              "first request's head was: one naming a host (ok), not a whole one before the end "
              "or detect_timeout (need_more_bytes), not HTTP/1, without a usable Host, with an "
              "ambiguous one, or an over-long head.",
              {{"listener", config.name}, {"result", std::string(Http1HostStatusName(status))}}),
          "meshlet_downstream_cx_http_host_total");
    }
  }
  if (config.use_original_destination) {
    context->capture = CaptureStats::Create(shard, config.name);
    context->original_destination_errors = OrDiscard(
        shard.RegisterCounter("meshlet_downstream_cx_original_destination_error_total",
                              "Connections of capture listeners whose original destination could "
                              "not be read (served as not redirected).",
                              labels),
        "meshlet_downstream_cx_original_destination_error_total");
  }
  return context;
}

std::unique_ptr<net::Transport> ListenerContext::NewTransport() const {
  if (tls_provider == nullptr) return std::make_unique<net::PlaintextTransport>();
  return std::make_unique<DownstreamTlsTransport>(
      tls_provider, config.tls.mode != config::DownstreamTlsConfig::Mode::kPermissive, tls,
      config.name, tls_refusal_log);
}

}  // namespace meshlet::sidecar::listener

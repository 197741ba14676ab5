#include "sidecar/admin/admin.h"

#include <map>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/logging.h"
#include "common/http/authority.h"
#include "common/net/address.h"
#include "common/stats/exposition.h"

namespace meshlet::sidecar::admin {
namespace {

struct Endpoint {
  absl::string_view path;
  absl::string_view methods;  // "GET", "POST" or "GET, POST"
  absl::string_view help;
};

constexpr Endpoint kEndpoints[] = {
    {"/ready", "GET",
     "200 once listeners are up (with xDS: and the first configuration applied), 503 while "
     "starting or draining"},
    {"/stats", "GET", "all stats as text (?filter=substring, ?format=json)"},
    {"/stats/prometheus", "GET", "all stats in Prometheus text format"},
    {"/config_dump", "GET", "the current configuration as JSON"},
    {"/clusters", "GET", "clusters, endpoints, health, breakers and health checks (JSON)"},
    {"/listeners", "GET", "listeners and their bound addresses (JSON)"},
    {"/certs", "GET", "the workload certificate, trust bundle and rotation state (JSON)"},
    {"/hand_over", "GET",
     "the hand-over socket, and what this process took over from its predecessor or handed to "
     "its successor (JSON)"},
    {"/debug/decisions", "GET",
     "decision records of failed and sampled requests (JSON; ?request_id=ID, ?trace_id=HEX)"},
    {"/logging", "GET, POST", "show the log level; POST ?level=debug|info|... changes it"},
    {"/drain", "POST", "start draining: inbound listeners close, HTTP connections wind down"},
    {"/quitquitquit", "POST", "exit cleanly"},
};

Counter MustCounter(StatsShard& shard, absl::string_view name, absl::string_view help) {
  absl::StatusOr<Counter> counter = shard.RegisterCounter(name, help);
  CHECK_OK(counter);
  return *counter;
}

http::ServerResponse MethodNotAllowed(const Endpoint& endpoint) {
  http::ServerResponse response = http::ServerResponse::Text(
      405, absl::StrCat(endpoint.path, " accepts ", endpoint.methods, " only\n"));
  response.headers.Set("allow", endpoint.methods);
  return response;
}

}  // namespace

std::string AdminHandler::RefusedHost(const http::ServerRequest& request) const {
  absl::string_view authority = request.headers.Get(":authority").value_or("");
  if (authority.empty()) authority = request.headers.Get("host").value_or("");
  if (authority.empty()) return "";  // HTTP/1.0; browsers send Host
  const std::optional<http::HostPort> parsed = http::ParseHostPort(authority);
  if (!parsed.has_value()) return std::string(authority);
  absl::string_view host = parsed->host;
  if (absl::ConsumePrefix(&host, "[")) {
    absl::ConsumeSuffix(&host, "]");  // an IP-literal
  } else {
    absl::ConsumeSuffix(&host, ".");  // "localhost." is localhost
  }
  if (net::Address::FromIp(host, 0).ok() || absl::EqualsIgnoreCase(host, "localhost")) return "";
  for (absl::string_view name : allowed_hosts_) {
    absl::ConsumeSuffix(&name, ".");
    if (!host.empty() && absl::EqualsIgnoreCase(host, name)) return "";
  }
  return parsed->host.empty() ? "an empty host" : std::string(parsed->host);
}

AdminHandler::AdminHandler(AdminBackend& backend, StatsShard& stats,
                           std::vector<std::string> allowed_hosts)
    : backend_(backend),
      allowed_hosts_(std::move(allowed_hosts)),
      requests_(MustCounter(stats, "meshlet_admin_requests_total", "Admin API requests.")),
      not_found_(MustCounter(stats, "meshlet_admin_not_found_total",
                             "Admin API requests for unknown paths.")),
      bad_method_(MustCounter(stats, "meshlet_admin_method_not_allowed_total",
                              "Admin API requests refused for their method.")),
      cross_site_(MustCounter(stats, "meshlet_admin_cross_site_refused_total",
                              "Admin API POSTs refused because a web page of another origin "
                              "sent them.")),
      bad_host_(MustCounter(stats, "meshlet_admin_host_refused_total",
                            "Admin API requests refused because their Host named neither an IP "
                            "address, localhost nor an --admin-host name.")),
      process_metrics_(stats.registry()) {}

std::string AdminHandler::EndpointList() {
  std::string out = "admin endpoints:\n";
  for (const Endpoint& e : kEndpoints) {
    absl::StrAppend(&out, "  ", e.methods, " ", e.path, "\n      ", e.help, "\n");
  }
  return out;
}

std::string ConfigDumpJson(AdminBackend& backend) {
  std::shared_ptr<const config::Snapshot> snapshot = backend.snapshot();
  if (snapshot == nullptr) return "";
  std::string dump = snapshot->ConfigDumpJson();
  // With xDS, the stream's versions per type lead the dump.
  if (std::string xds = backend.XdsStatusJson(); !xds.empty() && !dump.empty()) {
    dump.insert(1, absl::StrCat("\n \"xds\": ", xds, ","));
  }
  return dump;
}

http::ServerResponse AdminHandler::Handle(const http::ServerRequest& request, Port port) {
  requests_.Inc();
  if (port == Port::kAdmin) {
    if (std::string host = RefusedHost(request); !host.empty()) {
      bad_host_.Inc();
      return http::ServerResponse::Text(
          403, absl::StrCat("the admin API answers requests for IP addresses, localhost and "
                            "--admin-host names only, not for ",
                            host, "\n"));
    }
  }
  const absl::string_view path = request.path();
  absl::string_view method = request.method();
  if (method == "HEAD") method = "GET";

  if (path == "/" || path == "/help") {
    if (method != "GET") {
      bad_method_.Inc();
      return http::ServerResponse::Text(405, "GET only\n");
    }
    return http::ServerResponse::Text(200, EndpointList());
  }
  const Endpoint* endpoint = nullptr;
  for (const Endpoint& e : kEndpoints) {
    if (e.path == path) endpoint = &e;
  }
  if (endpoint == nullptr) {
    not_found_.Inc();
    return http::ServerResponse::Text(
        404, absl::StrCat("no such endpoint: ", path, "\n\n", EndpointList()));
  }
  const bool get = method == "GET";
  const bool post = method == "POST";
  const bool allowed = endpoint->methods == "GET, POST" ? (get || post)
                       : endpoint->methods == "GET"     ? get
                                                        : post;
  if (!allowed) {
    bad_method_.Inc();
    return MethodNotAllowed(*endpoint);
  }
  if (post) {
    // A web page may post a form to 127.0.0.1:15000 without any CORS preflight.
    if (std::string why = http::CrossOriginReason(request, "http"); !why.empty()) {
      cross_site_.Inc();
      return http::ServerResponse::Text(
          403,
          absl::StrCat(path, " refuses a POST from a web page of another origin (", why, ")\n"));
    }
  }
  const std::map<std::string, std::string> query = request.QueryParams();

  if (path == "/ready") {
    if (backend_.draining()) return http::ServerResponse::Text(503, "DRAINING\n");
    if (!backend_.ready()) {
      const std::string reason = backend_.NotReadyReason();
      return http::ServerResponse::Text(
          503, reason.empty() ? "NOT READY\n" : absl::StrCat("NOT READY: ", reason, "\n"));
    }
    return http::ServerResponse::Text(200, "LIVE\n");
  }
  if (path == "/stats" || path == "/stats/prometheus") backend_.BeforeStatsRead();
  if (path == "/stats") {
    auto filter = query.find("filter");
    const std::string name_filter = filter == query.end() ? "" : filter->second;
    auto format = query.find("format");
    const StatsSnapshot snapshot = backend_.stats().Snapshot();
    if (format != query.end() && format->second == "json") {
      return http::ServerResponse::Json(200, FormatJson(snapshot, name_filter));
    }
    if (format != query.end() && format->second == "prometheus") {
      std::string text = FormatPrometheus(snapshot);
      process_metrics_.AppendPrometheus(text);
      http::ServerResponse response = http::ServerResponse::Text(200, std::move(text));
      response.headers.Set("content-type", kPrometheusContentType);
      return response;
    }
    return http::ServerResponse::Text(200, FormatText(snapshot, name_filter));
  }
  if (path == "/stats/prometheus") {
    std::string text = FormatPrometheus(backend_.stats().Snapshot());
    process_metrics_.AppendPrometheus(text);
    http::ServerResponse response = http::ServerResponse::Text(200, std::move(text));
    response.headers.Set("content-type", kPrometheusContentType);
    return response;
  }
  if (path == "/config_dump") {
    std::string dump = ConfigDumpJson(backend_);
    if (dump.empty()) return http::ServerResponse::Json(503, "{}");
    return http::ServerResponse::Json(200, dump);
  }
  if (path == "/clusters") return http::ServerResponse::Json(200, backend_.ClustersJson());
  if (path == "/listeners") return http::ServerResponse::Json(200, backend_.ListenersJson());
  if (path == "/certs") return http::ServerResponse::Json(200, backend_.CertsJson());
  if (path == "/hand_over") return http::ServerResponse::Json(200, backend_.HandOverJson());
  if (path == "/debug/decisions") {
    auto request_id = query.find("request_id");
    auto trace_id = query.find("trace_id");
    std::string trace = trace_id == query.end() ? "" : absl::AsciiStrToLower(trace_id->second);
    if (!trace.empty() &&
        (trace.size() != 32 || trace.find_first_not_of("0123456789abcdef") != std::string::npos)) {
      return http::ServerResponse::Text(400, "trace_id must be 32 hex digits\n");
    }
    return http::ServerResponse::Json(
        200, backend_.DecisionsJson(request_id == query.end() ? "" : request_id->second, trace));
  }
  if (path == "/logging") {
    if (post) {
      auto level_param = query.find("level");
      if (level_param == query.end()) {
        return http::ServerResponse::Text(
            400, "missing ?level= (trace, debug, info, warn, error, critical, off)\n");
      }
      std::optional<LogLevel> level = ParseLogLevel(level_param->second);
      if (!level) {
        return http::ServerResponse::Text(
            400, absl::StrCat("unknown level \"", level_param->second,
                              "\" (trace, debug, info, warn, error, critical, off)\n"));
      }
      SetLogLevel(*level);
      LOG(INFO) << "log level set to " << LogLevelName(*level) << " by the admin API";
    }
    return http::ServerResponse::Text(200,
                                      absl::StrCat("level: ", LogLevelName(GetLogLevel()), "\n"));
  }
  if (path == "/drain") {
    backend_.StartDrain();
    return http::ServerResponse::Text(200, "draining\n");
  }
  if (path == "/quitquitquit") {
    backend_.Quit();
    return http::ServerResponse::Text(200, "exiting\n");
  }
  // Every entry of kEndpoints is handled above.
  CHECK(false) << "unhandled admin endpoint " << path;
  return http::ServerResponse::Text(500, "");
}

}  // namespace meshlet::sidecar::admin

#include "sidecar/config/translate.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/base/file.h"
#include "common/base/json.h"
#include "common/base/status.h"
#include "common/config/field_path.h"
#include "common/config/yaml_proto.h"
#include "common/net/address.h"
#include "common/tls/spiffe.h"
#include "google/protobuf/util/json_util.h"
#include "sidecar/filters/authorization.h"
#include "sidecar/resilience/backoff.h"
#include "sidecar/resilience/fault.h"
#include "sidecar/resilience/outlier_detector.h"
#include "sidecar/resilience/retry_budget.h"
#include "sidecar/resilience/retry_state.h"
#include "sidecar/resilience/token_bucket.h"

namespace meshlet::sidecar::config {
namespace {

using ::meshlet::config::Index;
using ::meshlet::config::IsHttpToken;
using ::meshlet::config::IsSafeHeaderValue;
using ::meshlet::config::Join;
using ::meshlet::config::Quote;
using router::HeaderMutations;
using router::HeaderValueOption;

constexpr size_t kMaxReportedErrors = 20;
constexpr size_t kMaxDirectResponseBody = 64 * 1024;
constexpr absl::string_view kRetryOnValues =
    "connect-failure, refused-stream, reset, 5xx, gateway-error, retriable-status-codes, "
    "cancelled, deadline-exceeded, internal, resource-exhausted, unavailable";

// Collects every error of a resource set, each led by the resource it belongs to.
class Errors {
 public:
  // Errors added through the returned scope start with `resource` ('cluster "backend"').
  class Scope {
   public:
    Scope(Errors& errors, std::string resource) : errors_(errors), resource_(std::move(resource)) {}
    // "<resource>: <path>: <reason>", or "<resource>: <reason>" when path is empty.
    void Add(absl::string_view path, absl::string_view reason) {
      errors_.list_.push_back(path.empty() ? absl::StrCat(resource_, ": ", reason)
                                           : absl::StrCat(resource_, ": ", path, ": ", reason));
    }
    void Add(absl::string_view path, const absl::Status& status) {
      if (!status.ok()) Add(path, status.message());
    }
    size_t count() const { return errors_.list_.size(); }

   private:
    Errors& errors_;
    std::string resource_;
  };

  bool empty() const { return list_.empty(); }
  absl::Status ToStatus() const {
    if (list_.empty()) return absl::OkStatus();
    std::vector<std::string> shown(list_.begin(),
                                   list_.begin() + std::min(list_.size(), kMaxReportedErrors));
    std::string message = absl::StrJoin(shown, "\n");
    if (list_.size() > kMaxReportedErrors) {
      absl::StrAppend(&message, "\n(and ", list_.size() - kMaxReportedErrors, " more errors)");
    }
    return absl::InvalidArgumentError(message);
  }

 private:
  std::vector<std::string> list_;
};

// RateLimit.max_principals when unset.
constexpr uint32_t kDefaultMaxPrincipals = 1024;

// Names are identifiers people type and logs print: non-empty, no spaces or control characters.
bool ValidName(absl::string_view name) {
  if (name.empty()) return false;
  for (unsigned char c : name) {
    if (c <= 0x20 || c == 0x7f) return false;
  }
  return true;
}

void CheckName(Errors::Scope& scope, absl::string_view name) {
  if (name.empty()) {
    scope.Add("name", "must not be empty");
  } else if (!ValidName(name)) {
    scope.Add("name", "must not contain spaces or control characters");
  }
}

// Host names and literals for rewrites and redirects: host [":" port].
bool ValidHost(absl::string_view host) {
  if (host.empty()) return false;
  for (unsigned char c : host) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '-' && c != '_' && c != ':' && c != '[' &&
        c != ']') {
      return false;
    }
  }
  return true;
}

// A google.protobuf.Duration as a meshlet Duration; nullopt when it is malformed or out of range.
std::optional<Duration> ToDuration(const google::protobuf::Duration& d) {
  constexpr int64_t kMaxSeconds = 315'576'000'000;  // 10,000 years, the protobuf limit
  if (d.seconds() > kMaxSeconds || d.seconds() < -kMaxSeconds) return std::nullopt;
  if (d.nanos() <= -1'000'000'000 || d.nanos() >= 1'000'000'000) return std::nullopt;
  if ((d.seconds() > 0 && d.nanos() < 0) || (d.seconds() < 0 && d.nanos() > 0)) {
    return std::nullopt;
  }
  // 10,000 years of nanoseconds overflow int64; clamp to what Duration holds (~292 years).
  if (d.seconds() > Duration::max().count() / 1'000'000'000 - 1) return Duration::max();
  if (d.seconds() < Duration::min().count() / 1'000'000'000 + 1) return Duration::min();
  return std::chrono::seconds(d.seconds()) + std::chrono::nanoseconds(d.nanos());
}

enum class DurationRule { kPositive, kNonNegative };

// Reads an optional Duration field: unset keeps `*out`; a bad value is reported and keeps `*out`.
void ReadDuration(Errors::Scope& scope, absl::string_view path, bool has,
                  const google::protobuf::Duration& value, DurationRule rule, Duration* out) {
  if (!has) return;
  std::optional<Duration> d = ToDuration(value);
  if (!d.has_value()) {
    scope.Add(path, "not a valid duration");
    return;
  }
  if (rule == DurationRule::kPositive && *d <= Duration::zero()) {
    scope.Add(path, "must be greater than 0");
    return;
  }
  if (rule == DurationRule::kNonNegative && *d < Duration::zero()) {
    scope.Add(path, "must not be negative");
    return;
  }
  *out = *d;
}

void CheckPercentage(Errors::Scope& scope, absl::string_view path, double value) {
  if (!(value >= 0.0 && value <= 100.0)) scope.Add(path, "must be in [0, 100]");
}

void CheckStatusCode(Errors::Scope& scope, absl::string_view path, uint32_t code) {
  if (code < 100 || code > 599) scope.Add(path, "must be an HTTP status in [100, 599]");
}

// ---------------------------------------------------------------------------------------------
// Secrets

// One PEM piece of a secret, inline or from a file (not both).
std::string ReadPemPiece(Errors::Scope& scope, absl::string_view pem_field,
                         absl::string_view inline_pem, absl::string_view file_field,
                         const std::string& file) {
  if (!inline_pem.empty() && !file.empty()) {
    scope.Add("", absl::StrCat(pem_field, " and ", file_field, ": set only one"));
    return "";
  }
  std::string pem;
  absl::string_view where = pem_field;
  if (!file.empty()) {
    absl::StatusOr<std::string> content = ReadFile(file);
    if (!content.ok()) {
      scope.Add(file_field, content.status());
      return "";
    }
    pem = *std::move(content);
    where = file_field;
  } else {
    pem = std::string(inline_pem);
  }
  if (!pem.empty() && !absl::StrContains(pem, "-----BEGIN ")) {
    scope.Add(where, "holds no PEM block (\"-----BEGIN ...\")");
    return "";
  }
  return pem;
}

std::optional<SecretConfig> TranslateSecret(Errors::Scope& scope, const xds::Secret& secret) {
  const size_t before = scope.count();
  SecretConfig out;
  out.name = secret.name();
  out.certificate_chain_pem =
      ReadPemPiece(scope, "certificate_chain_pem", secret.certificate_chain_pem(),
                   "certificate_chain_file", secret.certificate_chain_file());
  out.private_key_pem = ReadPemPiece(scope, "private_key_pem", secret.private_key_pem(),
                                     "private_key_file", secret.private_key_file());
  out.trust_bundle_pem = ReadPemPiece(scope, "trust_bundle_pem", secret.trust_bundle_pem(),
                                      "trust_bundle_file", secret.trust_bundle_file());
  if (scope.count() != before) return std::nullopt;
  const bool has_cert = !out.certificate_chain_pem.empty();
  const bool has_key = !out.private_key_pem.empty();
  if (has_cert && !has_key) scope.Add("private_key_pem", "required with a certificate chain");
  if (has_key && !has_cert) scope.Add("certificate_chain_pem", "required with a private key");
  if (!has_cert && !has_key && out.trust_bundle_pem.empty()) {
    scope.Add("", "needs a certificate chain and private key, a trust bundle, or both");
  }
  if (scope.count() != before) return std::nullopt;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Clusters and endpoints

std::optional<EndpointConfig> TranslateEndpoint(Errors::Scope& scope, const std::string& path,
                                                const xds::Endpoint& endpoint) {
  const size_t before = scope.count();
  EndpointConfig out;
  absl::StatusOr<net::Address> address = net::Address::Parse(endpoint.address());
  if (!address.ok()) {
    scope.Add(Join(path, "address"), address.status());
  } else if (address->is_ip() && address->port() == 0) {
    scope.Add(Join(path, "address"), absl::StrCat(Quote(endpoint.address()), ": needs a port"));
  } else {
    out.address = *address;
  }
  out.weight = endpoint.weight() == 0 ? 1 : endpoint.weight();
  switch (endpoint.health()) {
    case xds::Endpoint::HEALTHY:
      out.health = EndpointHealth::kHealthy;
      break;
    case xds::Endpoint::UNHEALTHY:
      out.health = EndpointHealth::kUnhealthy;
      break;
    case xds::Endpoint::DRAINING:
      out.health = EndpointHealth::kDraining;
      break;
    default:
      scope.Add(Join(path, "health"), absl::StrCat("unknown value ", endpoint.health()));
  }
  out.labels =
      std::map<std::string, std::string>(endpoint.labels().begin(), endpoint.labels().end());
  if (!endpoint.identity().empty() && !tls::SpiffeId::Parse(endpoint.identity()).ok()) {
    scope.Add(Join(path, "identity"),
              absl::StrCat(Quote(endpoint.identity()), " is not a SPIFFE id (spiffe://...)"));
  }
  if (endpoint.plaintext() && !endpoint.identity().empty()) {
    scope.Add(Join(path, "plaintext"),
              "excludes identity: a plaintext endpoint presents no identity to check");
  }
  out.tls.plaintext = endpoint.plaintext();
  out.tls.identity = endpoint.identity();
  if (scope.count() != before) return std::nullopt;
  return out;
}

// Endpoints of one load assignment; `path` leads to its `endpoints` field.
std::vector<EndpointConfig> TranslateEndpoints(Errors::Scope& scope, const std::string& path,
                                               const xds::ClusterLoadAssignment& assignment) {
  std::vector<EndpointConfig> out;
  absl::flat_hash_map<std::string, size_t> seen;
  for (int i = 0; i < assignment.endpoints_size(); ++i) {
    const std::string endpoint_path = Index(Join(path, "endpoints"), i);
    std::optional<EndpointConfig> endpoint =
        TranslateEndpoint(scope, endpoint_path, assignment.endpoints(i));
    if (!endpoint.has_value()) continue;
    auto [it, inserted] = seen.emplace(endpoint->address.ToString(), i);
    if (!inserted) {
      scope.Add(Join(endpoint_path, "address"),
                absl::StrCat(Quote(assignment.endpoints(i).address()), " duplicates ",
                             Index(Join(path, "endpoints"), it->second)));
      continue;
    }
    out.push_back(*std::move(endpoint));
  }
  return out;
}

void TranslateCircuitBreakers(Errors::Scope& scope, const xds::CircuitBreakers& in,
                              ClusterConfig& out) {
  auto limit = [&](absl::string_view field, bool has, uint32_t value, bool allow_zero,
                   uint32_t* target) {
    if (!has) return;
    if (value == 0 && !allow_zero) {
      scope.Add(Join("circuit_breakers", field), "must be greater than 0");
      return;
    }
    *target = value;
  };
  resilience::CircuitBreakerConfig& cb = out.circuit_breakers;
  limit("max_connections", in.has_max_connections(), in.max_connections().value(), false,
        &cb.max_connections);
  limit("max_pending_requests", in.has_max_pending_requests(), in.max_pending_requests().value(),
        false, &cb.max_pending_requests);
  limit("max_requests", in.has_max_requests(), in.max_requests().value(), false, &cb.max_requests);
  limit("max_retries", in.has_max_retries(), in.max_retries().value(), true, &cb.max_retries);

  if (in.has_retry_budget()) {
    const xds::RetryBudget& rb = in.retry_budget();
    resilience::RetryBudgetConfig& budget = out.retry_budget;
    budget.enabled = !rb.disabled();
    if (rb.budget_percent() != 0) {
      CheckPercentage(scope, "circuit_breakers.retry_budget.budget_percent", rb.budget_percent());
      budget.budget_percent = rb.budget_percent();
    }
    if (rb.min_retries_per_second() != 0) {
      budget.min_retries_per_second = rb.min_retries_per_second();
    }
    ReadDuration(scope, "circuit_breakers.retry_budget.window", rb.has_window(), rb.window(),
                 DurationRule::kPositive, &budget.window);
    scope.Add("circuit_breakers.retry_budget", resilience::ValidateRetryBudgetConfig(budget));
  }

  if (in.has_consecutive_failures() && in.consecutive_failures().failure_threshold() > 0) {
    const xds::ConsecutiveFailureBreaker& cf = in.consecutive_failures();
    resilience::ConsecutiveFailureBreakerConfig breaker;
    breaker.failure_threshold = cf.failure_threshold();
    ReadDuration(scope, "circuit_breakers.consecutive_failures.open_duration",
                 cf.has_open_duration(), cf.open_duration(), DurationRule::kPositive,
                 &breaker.open_duration);
    out.consecutive_failure_breaker = breaker;
  }
}

void TranslateOutlierDetection(Errors::Scope& scope, const xds::Cluster& cluster,
                               ClusterConfig& out) {
  // On by default (design.md §6); a resource may retune it or turn both detectors off with 0.
  resilience::OutlierDetectionConfig od;
  if (cluster.has_outlier_detection()) {
    const xds::OutlierDetection& in = cluster.outlier_detection();
    if (in.has_consecutive_5xx()) od.consecutive_5xx = in.consecutive_5xx().value();
    if (in.has_consecutive_gateway_failure()) {
      od.consecutive_gateway_failure = in.consecutive_gateway_failure().value();
    }
    ReadDuration(scope, "outlier_detection.interval", in.has_interval(), in.interval(),
                 DurationRule::kPositive, &od.interval);
    ReadDuration(scope, "outlier_detection.base_ejection_time", in.has_base_ejection_time(),
                 in.base_ejection_time(), DurationRule::kPositive, &od.base_ejection_time);
    ReadDuration(scope, "outlier_detection.max_ejection_time", in.has_max_ejection_time(),
                 in.max_ejection_time(), DurationRule::kPositive, &od.max_ejection_time);
    if (in.has_max_ejection_percent()) {
      od.max_ejection_percent = in.max_ejection_percent().value();
    }
    od.success_rate_minimum_hosts = in.success_rate_minimum_hosts();
    if (in.success_rate_request_volume() != 0) {
      od.success_rate_request_volume = in.success_rate_request_volume();
    }
    if (in.success_rate_stdev_factor() != 0) {
      od.success_rate_stdev_factor = in.success_rate_stdev_factor();
    }
    if (in.panic_threshold_percent() != 0) {
      od.panic_threshold_percent = in.panic_threshold_percent();
    }
  }
  absl::Status valid = resilience::ValidateOutlierDetectionConfig(od);
  if (!valid.ok()) {
    scope.Add("outlier_detection", valid);
    return;
  }
  out.outlier_detection = od;
  // One panic threshold for the cluster: the load balancer's (which counts every reason a host is
  // unhealthy: ejection, active health checks, EDS) follows the one the operator sets here.
  out.lb.panic_threshold_percent = od.panic_threshold_percent;
}

void TranslateHealthCheck(Errors::Scope& scope, const xds::HealthCheck& in,
                          HealthCheckConfig& out) {
  switch (in.check_case()) {
    case xds::HealthCheck::kHttp: {
      out.kind = HealthCheckConfig::Kind::kHttp;
      const xds::HttpHealthCheck& http = in.http();
      if (!http.path().empty()) {
        if (http.path().front() != '/') {
          scope.Add("health_check.http.path", "must start with '/'");
        }
        out.http_path = http.path();
      }
      if (!http.host().empty() && !ValidHost(http.host())) {
        scope.Add("health_check.http.host", absl::StrCat(Quote(http.host()), " is not a host"));
      }
      out.http_host = http.host();
      if (http.expected_statuses_size() > 0) {
        out.expected_statuses.clear();
        for (int i = 0; i < http.expected_statuses_size(); ++i) {
          CheckStatusCode(scope, Index("health_check.http.expected_statuses", i),
                          http.expected_statuses(i));
          out.expected_statuses.push_back(http.expected_statuses(i));
        }
      }
      break;
    }
    case xds::HealthCheck::kTcp:
      if (!in.tcp()) scope.Add("health_check.tcp", "must be true (or use http)");
      out.kind = HealthCheckConfig::Kind::kTcp;
      break;
    default:
      scope.Add("health_check", "needs http or tcp");
      return;
  }
  ReadDuration(scope, "health_check.interval", in.has_interval(), in.interval(),
               DurationRule::kPositive, &out.interval);
  ReadDuration(scope, "health_check.timeout", in.has_timeout(), in.timeout(),
               DurationRule::kPositive, &out.timeout);
  if (in.healthy_threshold() != 0) out.healthy_threshold = in.healthy_threshold();
  if (in.unhealthy_threshold() != 0) out.unhealthy_threshold = in.unhealthy_threshold();
}

// tls.trust_bundle_secret: with workload_certificate only, naming a Secret with a trust bundle.
void TranslateTrustBundleSecret(Errors::Scope& scope, bool workload_certificate,
                                const std::string& name,
                                const Snapshot::ByName<SecretConfig>& secrets, std::string& out) {
  out = name;
  if (name.empty()) return;
  if (!workload_certificate) {
    scope.Add("tls.trust_bundle_secret", "needs tls.workload_certificate: true");
    return;
  }
  auto it = secrets.find(name);
  if (it == secrets.end()) {
    scope.Add("", absl::StrCat("tls.trust_bundle_secret ", Quote(name), " names no Secret"));
  } else if (it->second.trust_bundle_pem.empty()) {
    scope.Add("tls.trust_bundle_secret",
              absl::StrCat("secret ", Quote(name), " has no trust bundle"));
  }
}

void TranslateUpstreamTls(Errors::Scope& scope, const xds::UpstreamTls& in,
                          const Snapshot::ByName<SecretConfig>& secrets, UpstreamTlsConfig& out) {
  out.enabled = in.enabled();
  if (!in.enabled()) return;
  out.workload_certificate = in.workload_certificate();
  if (in.workload_certificate()) {
    // The workload certificate brings the key, the chain and the mesh trust bundle.
    if (!in.secret_name().empty()) {
      scope.Add("tls.workload_certificate", "excludes tls.secret_name");
    }
    if (!in.ca_file().empty()) scope.Add("tls.workload_certificate", "excludes tls.ca_file");
  } else if (!in.secret_name().empty()) {
    auto it = secrets.find(in.secret_name());
    if (it == secrets.end()) {
      scope.Add("", absl::StrCat("tls.secret_name ", Quote(in.secret_name()), " names no Secret"));
    } else if (in.ca_file().empty() && it->second.trust_bundle_pem.empty()) {
      scope.Add("tls.secret_name",
                absl::StrCat("secret ", Quote(in.secret_name()),
                             " has no trust bundle to verify the upstream with (or set ca_file)"));
    }
  }
  out.secret_name = in.secret_name();
  TranslateTrustBundleSecret(scope, in.workload_certificate(), in.trust_bundle_secret(), secrets,
                             out.trust_bundle_secret);
  out.session_resumption = !in.disable_session_resumption();
  if (!in.sni().empty() && !ValidHost(in.sni())) {
    scope.Add("tls.sni", absl::StrCat(Quote(in.sni()), " is not a host name"));
  }
  out.sni = in.sni();
  // A non-mesh upstream (verified by ca_file alone: no client certificate, no SPIFFE id) is
  // only authenticated by the name in its certificate, so that name must be known.
  if (!in.workload_certificate() && in.secret_name().empty() && in.expected_peer_ids_size() == 0 &&
      in.sni().empty()) {
    scope.Add("tls.sni",
              "required when the upstream is verified by ca_file alone: its certificate must "
              "name this host (subjectAltName)");
  }
  for (int i = 0; i < in.alpn_size(); ++i) {
    if (in.alpn(i).empty() || in.alpn(i).size() > 255) {
      scope.Add(Index("tls.alpn", i), "must be 1 to 255 bytes");
    }
    out.alpn.push_back(in.alpn(i));
  }
  for (int i = 0; i < in.expected_peer_ids_size(); ++i) {
    if (!tls::SpiffeIdMatcher::FromPatterns({in.expected_peer_ids(i)}).ok()) {
      scope.Add(Index("tls.expected_peer_ids", i),
                absl::StrCat(Quote(in.expected_peer_ids(i)), " is not a SPIFFE id (spiffe://...)"));
    }
    out.expected_peer_ids.push_back(in.expected_peer_ids(i));
  }
  out.ca_file = in.ca_file();
}

std::optional<ClusterConfig> TranslateCluster(Errors::Scope& scope, const xds::Cluster& cluster,
                                              const Snapshot::ByName<SecretConfig>& secrets) {
  const size_t before = scope.count();
  ClusterConfig out;
  out.name = cluster.name();
  switch (cluster.type()) {
    case xds::Cluster::STATIC:
      out.eds = false;
      break;
    case xds::Cluster::EDS:
      out.eds = true;
      break;
    default:
      scope.Add("type", absl::StrCat("unknown value ", cluster.type()));
  }
  switch (cluster.lb_policy()) {
    case xds::LEAST_REQUEST:
      out.lb_policy = LbPolicy::kLeastRequest;
      break;
    case xds::ROUND_ROBIN:
      out.lb_policy = LbPolicy::kRoundRobin;
      break;
    case xds::RANDOM:
      out.lb_policy = LbPolicy::kRandom;
      break;
    case xds::PEAK_EWMA:
      out.lb_policy = LbPolicy::kPeakEwma;
      break;
    default:
      scope.Add("lb_policy", absl::StrCat("unknown value ", cluster.lb_policy()));
  }
  switch (cluster.protocol()) {
    case xds::UPSTREAM_HTTP1:
      out.protocol = UpstreamProtocol::kHttp1;
      break;
    case xds::UPSTREAM_HTTP2:
      out.protocol = UpstreamProtocol::kHttp2;
      break;
    case xds::UPSTREAM_SAME_AS_DOWNSTREAM:
      out.protocol = UpstreamProtocol::kSameAsDownstream;
      break;
    case xds::UPSTREAM_MESH_HTTP2:
      out.protocol = UpstreamProtocol::kMeshHttp2;
      break;
    default:
      scope.Add("protocol", absl::StrCat("unknown value ", cluster.protocol()));
  }
  ReadDuration(scope, "connect_timeout", cluster.has_connect_timeout(), cluster.connect_timeout(),
               DurationRule::kPositive, &out.connect_timeout);

  const xds::ClusterLoadAssignment& inline_endpoints = cluster.load_assignment();
  if (out.eds) {
    if (cluster.has_load_assignment() && inline_endpoints.endpoints_size() > 0) {
      scope.Add("load_assignment", absl::StrCat("not used with type EDS (endpoints come from the "
                                                "ClusterLoadAssignment named ",
                                                Quote(cluster.name()), ")"));
    }
  } else {
    if (!inline_endpoints.cluster_name().empty() &&
        inline_endpoints.cluster_name() != cluster.name()) {
      scope.Add("load_assignment.cluster_name",
                absl::StrCat(Quote(inline_endpoints.cluster_name()),
                             " differs from the cluster's name (leave it empty)"));
    }
    if (inline_endpoints.endpoints_size() == 0) {
      scope.Add("load_assignment.endpoints", "a STATIC cluster needs at least one endpoint");
    }
    out.endpoints = TranslateEndpoints(scope, "load_assignment", inline_endpoints);
  }

  if (cluster.has_circuit_breakers())
    TranslateCircuitBreakers(scope, cluster.circuit_breakers(), out);
  TranslateOutlierDetection(scope, cluster, out);
  if (cluster.has_health_check())
    TranslateHealthCheck(scope, cluster.health_check(), out.health_check);
  if (cluster.has_tls()) TranslateUpstreamTls(scope, cluster.tls(), secrets, out.tls);
  // The codec follows `protocol`, not what ALPN agrees on: an ALPN list without the protocol's
  // name would let the upstream pick another one and every request fail.
  if (!out.tls.alpn.empty()) {
    const char* wanted = nullptr;
    if (out.protocol == UpstreamProtocol::kHttp1) wanted = "http/1.1";
    if (out.protocol == UpstreamProtocol::kHttp2 || out.protocol == UpstreamProtocol::kMeshHttp2) {
      wanted = "h2";
    }
    if (wanted != nullptr &&
        std::find(out.tls.alpn.begin(), out.tls.alpn.end(), wanted) == out.tls.alpn.end()) {
      scope.Add("tls.alpn", absl::StrCat("must contain \"", wanted, "\" for protocol ",
                                         xds::UpstreamProtocol_Name(cluster.protocol())));
    }
  }
  if (cluster.has_pool()) {
    const xds::ConnectionPool& pool = cluster.pool();
    ReadDuration(scope, "pool.idle_timeout", pool.has_idle_timeout(), pool.idle_timeout(),
                 DurationRule::kNonNegative, &out.pool.idle_timeout);
    out.pool.max_requests_per_connection = pool.max_requests_per_connection();
    if (pool.max_concurrent_streams() != 0) {
      out.pool.max_concurrent_streams = pool.max_concurrent_streams();
    }
    ReadDuration(scope, "pool.max_connection_duration", pool.has_max_connection_duration(),
                 pool.max_connection_duration(), DurationRule::kNonNegative,
                 &out.pool.max_connection_duration);
  }
  if (scope.count() != before) return std::nullopt;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Route configurations

// A route's or listener's RateLimit: one shared bucket, or one per caller identity.
void TranslateRateLimit(Errors::Scope& scope, const std::string& path, const xds::RateLimit& rl,
                        std::optional<resilience::TokenBucketConfig>& config,
                        std::shared_ptr<resilience::LocalRateLimiter>& limiter) {
  if (rl.requests_per_second() == 0 && rl.burst() == 0) {
    scope.Add(path, "needs requests_per_second or burst");
  }
  if (rl.max_principals() != 0 && !rl.per_principal()) {
    scope.Add(Join(path, "max_principals"), "only applies with per_principal: true");
  }
  config = resilience::TokenBucketConfig{rl.requests_per_second(), rl.burst()};
  std::optional<uint32_t> max_principals;
  if (rl.per_principal()) {
    max_principals = rl.max_principals() != 0 ? rl.max_principals() : kDefaultMaxPrincipals;
  }
  limiter = std::make_shared<resilience::LocalRateLimiter>(*config, max_principals);
}

void TranslateHeadersToAdd(Errors::Scope& scope, const std::string& path,
                           const google::protobuf::RepeatedPtrField<xds::HeaderValueOption>& in,
                           bool request, std::vector<HeaderValueOption>& out) {
  for (int i = 0; i < in.size(); ++i) {
    const std::string item = Index(path, i);
    std::string name = absl::AsciiStrToLower(in[i].name());
    if (name.empty()) {
      scope.Add(Join(item, "name"), "must not be empty");
    } else if (name.front() == ':') {
      scope.Add(Join(item, "name"),
                absl::StrCat(Quote(name), ": pseudo-headers cannot be changed this way"));
    } else if (!IsHttpToken(name)) {
      scope.Add(Join(item, "name"), absl::StrCat(Quote(name), " is not a header name"));
    } else if (request && name == "host") {
      scope.Add(Join(item, "name"), "\"host\" cannot be changed this way; use host_rewrite");
    }
    if (!IsSafeHeaderValue(in[i].value())) {
      scope.Add(Join(item, "value"), "must not contain CR, LF or NUL");
    }
    out.push_back({std::move(name), in[i].value(), in[i].append()});
  }
}

void TranslateHeadersToRemove(Errors::Scope& scope, const std::string& path,
                              const google::protobuf::RepeatedPtrField<std::string>& in,
                              std::vector<std::string>& out) {
  for (int i = 0; i < in.size(); ++i) {
    std::string name = absl::AsciiStrToLower(in[i]);
    if (!IsHttpToken(name)) {
      scope.Add(Index(path, i), absl::StrCat(Quote(name), " is not a header name"));
    }
    out.push_back(std::move(name));
  }
}

// The four mutation lists every level has; `prefix` leads to the level ("" for the route config).
template <typename Level>
HeaderMutations TranslateMutations(Errors::Scope& scope, const std::string& prefix,
                                   const Level& level) {
  HeaderMutations out;
  TranslateHeadersToAdd(scope, Join(prefix, "request_headers_to_add"),
                        level.request_headers_to_add(), true, out.request_headers_to_add);
  TranslateHeadersToRemove(scope, Join(prefix, "request_headers_to_remove"),
                           level.request_headers_to_remove(), out.request_headers_to_remove);
  TranslateHeadersToAdd(scope, Join(prefix, "response_headers_to_add"),
                        level.response_headers_to_add(), false, out.response_headers_to_add);
  TranslateHeadersToRemove(scope, Join(prefix, "response_headers_to_remove"),
                           level.response_headers_to_remove(), out.response_headers_to_remove);
  return out;
}

resilience::RetryPolicyConfig TranslateRetryPolicy(Errors::Scope& scope, const std::string& path,
                                                   const xds::RetryPolicy& in) {
  resilience::RetryPolicyConfig out;
  if (in.has_num_retries()) out.num_retries = in.num_retries().value();
  if (in.retry_on_size() > 0) {
    out.retry_on = 0;
    for (int i = 0; i < in.retry_on_size(); ++i) {
      absl::StatusOr<uint32_t> bit = resilience::ParseRetryOn(in.retry_on(i));
      if (!bit.ok()) {
        scope.Add(Index(Join(path, "retry_on"), i),
                  absl::StrCat("unknown value ", Quote(in.retry_on(i)),
                               "; valid values: ", kRetryOnValues));
        continue;
      }
      out.retry_on |= *bit;
    }
  }
  if (in.retriable_status_codes_size() > 0) {
    out.retriable_status_codes.clear();
    for (int i = 0; i < in.retriable_status_codes_size(); ++i) {
      CheckStatusCode(scope, Index(Join(path, "retriable_status_codes"), i),
                      in.retriable_status_codes(i));
      out.retriable_status_codes.push_back(in.retriable_status_codes(i));
    }
  }
  ReadDuration(scope, Join(path, "per_try_timeout"), in.has_per_try_timeout(), in.per_try_timeout(),
               DurationRule::kNonNegative, &out.per_try_timeout);
  ReadDuration(scope, Join(path, "base_interval"), in.has_base_interval(), in.base_interval(),
               DurationRule::kPositive, &out.backoff.base);
  if (in.has_max_interval()) {
    ReadDuration(scope, Join(path, "max_interval"), true, in.max_interval(),
                 DurationRule::kPositive, &out.backoff.cap);
  } else if (in.has_base_interval()) {
    // The default cap keeps the default 10x ratio to the base.
    out.backoff.cap = out.backoff.base * 10;
  }
  absl::Status backoff = resilience::ValidateBackoffConfig(out.backoff);
  if (!backoff.ok()) scope.Add(path, backoff);
  out.retry_non_idempotent = in.retry_non_idempotent();
  return out;
}

std::optional<resilience::FaultConfig> TranslateFault(Errors::Scope& scope, const std::string& path,
                                                      const xds::FaultInjection& in) {
  resilience::FaultConfig out;
  const size_t before = scope.count();
  if (in.has_delay()) {
    resilience::FaultConfig::Delay delay;
    if (!in.delay().has_fixed_delay()) {
      scope.Add(Join(path, "delay.fixed_delay"), "required");
    }
    ReadDuration(scope, Join(path, "delay.fixed_delay"), in.delay().has_fixed_delay(),
                 in.delay().fixed_delay(), DurationRule::kPositive, &delay.fixed_delay);
    CheckPercentage(scope, Join(path, "delay.percentage"), in.delay().percentage());
    delay.percentage = in.delay().percentage();
    out.delay = delay;
  }
  if (in.has_abort()) {
    resilience::FaultConfig::Abort abort;
    abort.http_status = in.abort().http_status();
    abort.grpc_status = in.abort().grpc_status();
    CheckPercentage(scope, Join(path, "abort.percentage"), in.abort().percentage());
    abort.percentage = in.abort().percentage();
    out.abort = abort;
  }
  if (!in.has_delay() && !in.has_abort() && !in.header_triggered()) {
    scope.Add(path, "needs delay, abort or header_triggered");
  }
  if (scope.count() == before) {
    absl::Status valid = resilience::ValidateFaultConfig(out);
    if (!valid.ok()) scope.Add(path, valid);
  }
  if (scope.count() != before) return std::nullopt;
  return out;
}

// Cluster names a route may point at.
using ClusterNames = absl::flat_hash_set<std::string>;

void TranslateRouteAction(Errors::Scope& scope, const std::string& path, const xds::RouteAction& in,
                          const ClusterNames& clusters,
                          const resilience::RetryPolicyConfig& inherited_retry,
                          router::RouteAction& out) {
  switch (in.cluster_specifier_case()) {
    case xds::RouteAction::kCluster:
      if (in.cluster().empty()) {
        scope.Add(Join(path, "cluster"), "must not be empty");
      } else if (!clusters.contains(in.cluster())) {
        scope.Add(
            "", absl::StrCat(Join(path, "cluster"), " ", Quote(in.cluster()), " names no Cluster"));
      }
      out.cluster = in.cluster();
      break;
    case xds::RouteAction::kWeightedClusters: {
      const std::string wc_path = Join(path, "weighted_clusters");
      const auto& list = in.weighted_clusters().clusters();
      if (list.empty()) {
        scope.Add(Join(wc_path, "clusters"), "must not be empty");
        break;
      }
      absl::flat_hash_map<std::string, int> seen;
      for (int i = 0; i < list.size(); ++i) {
        const std::string item = Index(Join(wc_path, "clusters"), i);
        const std::string& name = list[i].name();
        if (name.empty()) {
          scope.Add(Join(item, "name"), "must not be empty");
        } else if (!clusters.contains(name)) {
          scope.Add("", absl::StrCat(Join(item, "name"), " ", Quote(name), " names no Cluster"));
        } else if (auto [it, inserted] = seen.emplace(name, i); !inserted) {
          scope.Add(Join(item, "name"),
                    absl::StrCat(Quote(name), " is already listed at clusters[", it->second, "]"));
        }
        out.weighted_clusters.push_back({name, list[i].weight()});
        out.total_weight += list[i].weight();
      }
      if (out.total_weight == 0) scope.Add(wc_path, "weights sum to 0");
      break;
    }
    default:
      scope.Add(path, "needs cluster or weighted_clusters");
  }
  ReadDuration(scope, Join(path, "timeout"), in.has_timeout(), in.timeout(),
               DurationRule::kNonNegative, &out.timeout);
  out.retry_policy = in.has_retry_policy() ? TranslateRetryPolicy(scope, Join(path, "retry_policy"),
                                                                  in.retry_policy())
                                           : inherited_retry;
  if (!in.prefix_rewrite().empty() && in.prefix_rewrite().front() != '/') {
    scope.Add(Join(path, "prefix_rewrite"), "must start with '/'");
  }
  out.prefix_rewrite = in.prefix_rewrite();
  if (!in.host_rewrite().empty() && !ValidHost(in.host_rewrite())) {
    scope.Add(Join(path, "host_rewrite"),
              absl::StrCat(Quote(in.host_rewrite()), " is not a host name"));
  }
  out.host_rewrite = in.host_rewrite();
}

void TranslateRedirect(Errors::Scope& scope, const std::string& path, const xds::RedirectAction& in,
                       router::RedirectAction& out) {
  if (in.host().empty() && in.path().empty() && in.scheme().empty() && in.port() == 0) {
    scope.Add(path, "needs at least one of host, path, scheme, port (it would redirect to itself)");
  }
  if (!in.scheme().empty()) {
    std::string scheme = absl::AsciiStrToLower(in.scheme());
    if (scheme != "http" && scheme != "https") {
      scope.Add(Join(path, "scheme"), "must be http or https");
    }
    out.scheme = scheme;
  }
  if (!in.host().empty() && !ValidHost(in.host())) {
    scope.Add(Join(path, "host"), absl::StrCat(Quote(in.host()), " is not a host name"));
  }
  out.host = in.host();
  if (!in.path().empty() && in.path().front() != '/') {
    scope.Add(Join(path, "path"), "must start with '/'");
  }
  out.path = in.path();
  if (in.port() > 65535) scope.Add(Join(path, "port"), "must be in [1, 65535]");
  out.port = in.port();
  out.response_code = in.response_code() == 0 ? 301 : in.response_code();
  if (out.response_code != 301 && out.response_code != 302 && out.response_code != 303 &&
      out.response_code != 307 && out.response_code != 308) {
    scope.Add(Join(path, "response_code"), "must be 301, 302, 303, 307 or 308");
  }
}

void TranslateRouteMatch(Errors::Scope& scope, const std::string& path, const xds::RouteMatch& in,
                         router::RouteMatch& out) {
  switch (in.path_specifier_case()) {
    case xds::RouteMatch::kPrefix:
      out.path_kind = router::RouteMatch::PathKind::kPrefix;
      out.path = in.prefix();
      if (out.path.empty() || out.path.front() != '/') {
        scope.Add(Join(path, "prefix"), "must start with '/'");
      }
      break;
    case xds::RouteMatch::kPath:
      out.path_kind = router::RouteMatch::PathKind::kExact;
      out.path = in.path();
      if (out.path.empty() || out.path.front() != '/') {
        scope.Add(Join(path, "path"), "must start with '/'");
      } else if (out.path.find_first_of("?#") != std::string::npos) {
        scope.Add(Join(path, "path"), "must not contain a query string or fragment");
      }
      break;
    default:
      scope.Add(path, "needs prefix or path");
  }
  if (out.path.find_first_of("?#") != std::string::npos &&
      in.path_specifier_case() == xds::RouteMatch::kPrefix) {
    scope.Add(Join(path, "prefix"), "must not contain a query string or fragment");
  }
  out.case_insensitive = in.case_insensitive();
  for (int i = 0; i < in.headers_size(); ++i) {
    const xds::HeaderMatcher& hm = in.headers(i);
    const std::string item = Index(Join(path, "headers"), i);
    router::HeaderMatcher matcher;
    matcher.name = absl::AsciiStrToLower(hm.name());
    absl::string_view bare = matcher.name;
    if (!bare.empty() && bare.front() == ':') bare.remove_prefix(1);
    if (matcher.name.empty()) {
      scope.Add(Join(item, "name"), "must not be empty");
    } else if (!IsHttpToken(bare)) {
      scope.Add(Join(item, "name"), absl::StrCat(Quote(hm.name()), " is not a header name"));
    }
    switch (hm.match_case()) {
      case xds::HeaderMatcher::kExact:
        matcher.kind = router::HeaderMatcher::Kind::kExact;
        matcher.value = hm.exact();
        break;
      case xds::HeaderMatcher::kPrefix:
        matcher.kind = router::HeaderMatcher::Kind::kPrefix;
        matcher.value = hm.prefix();
        if (matcher.value.empty()) {
          scope.Add(Join(item, "prefix"), "must not be empty (use present: true)");
        }
        break;
      case xds::HeaderMatcher::kPresent:
        matcher.kind = router::HeaderMatcher::Kind::kPresent;
        matcher.present = hm.present();
        break;
      default:
        scope.Add(item, "needs exact, prefix or present");
    }
    matcher.invert = hm.invert();
    out.headers.push_back(std::move(matcher));
  }
  for (int i = 0; i < in.methods_size(); ++i) {
    if (!IsHttpToken(in.methods(i))) {
      scope.Add(Index(Join(path, "methods"), i),
                absl::StrCat(Quote(in.methods(i)), " is not a method"));
    }
    out.methods.push_back(in.methods(i));
  }
}

router::RouteEntry TranslateRoute(Errors::Scope& scope, const std::string& path,
                                  const xds::Route& in, const ClusterNames& clusters,
                                  const resilience::RetryPolicyConfig& vhost_retry) {
  router::RouteEntry out;
  out.name = in.name();
  if (!in.has_match()) {
    scope.Add(Join(path, "match"), "required");
  } else {
    TranslateRouteMatch(scope, Join(path, "match"), in.match(), out.match);
  }
  switch (in.action_case()) {
    case xds::Route::kRoute: {
      router::RouteAction action;
      TranslateRouteAction(scope, Join(path, "route"), in.route(), clusters, vhost_retry, action);
      out.action = std::move(action);
      break;
    }
    case xds::Route::kRedirect: {
      router::RedirectAction action;
      TranslateRedirect(scope, Join(path, "redirect"), in.redirect(), action);
      out.action = std::move(action);
      break;
    }
    case xds::Route::kDirectResponse: {
      router::DirectResponseAction action;
      action.status = in.direct_response().status();
      if (action.status < 200 || action.status > 599) {
        scope.Add(Join(path, "direct_response.status"), "must be in [200, 599]");
      }
      action.body = in.direct_response().body();
      if (action.body.size() > kMaxDirectResponseBody) {
        scope.Add(Join(path, "direct_response.body"), "must be at most 64 KiB");
      }
      out.action = std::move(action);
      break;
    }
    default:
      scope.Add(path, "needs one of route, redirect, direct_response");
  }
  out.headers = TranslateMutations(scope, path, in);
  if (in.has_fault()) {
    out.fault = TranslateFault(scope, Join(path, "fault"), in.fault());
    out.fault_header_triggered = in.fault().header_triggered();
  }
  if (in.has_rate_limit()) {
    TranslateRateLimit(scope, Join(path, "rate_limit"), in.rate_limit(), out.rate_limit,
                       out.rate_limiter);
  }
  return out;
}

std::optional<router::RouteConfig> TranslateRouteConfig(Errors::Scope& scope,
                                                        const xds::RouteConfiguration& in,
                                                        const ClusterNames& clusters) {
  const size_t before = scope.count();
  router::RouteConfig out;
  out.name = in.name();
  out.headers = TranslateMutations(scope, "", in);
  absl::flat_hash_map<std::string, int> vhost_names;
  for (int v = 0; v < in.virtual_hosts_size(); ++v) {
    const xds::VirtualHost& vh = in.virtual_hosts(v);
    const std::string path = Index("virtual_hosts", v);
    router::VirtualHostConfig vhost;
    vhost.name = vh.name();
    if (!ValidName(vh.name())) {
      scope.Add(Join(path, "name"), vh.name().empty()
                                        ? "must not be empty"
                                        : "must not contain spaces or control characters");
    } else if (auto [it, inserted] = vhost_names.emplace(vh.name(), v); !inserted) {
      scope.Add(Join(path, "name"), absl::StrCat(Quote(vh.name()), " is already used by ",
                                                 Index("virtual_hosts", it->second)));
    }
    if (vh.domains().empty()) scope.Add(Join(path, "domains"), "must not be empty");
    vhost.domains.assign(vh.domains().begin(), vh.domains().end());
    if (vh.destination_port() > 65535) {
      scope.Add(Join(path, "destination_port"), "must be at most 65535");
    }
    vhost.destination_port = vh.destination_port();
    resilience::RetryPolicyConfig vhost_retry;
    if (vh.has_retry_policy()) {
      vhost_retry = TranslateRetryPolicy(scope, Join(path, "retry_policy"), vh.retry_policy());
    }
    for (int r = 0; r < vh.routes_size(); ++r) {
      vhost.routes.push_back(TranslateRoute(scope, Index(Join(path, "routes"), r), vh.routes(r),
                                            clusters, vhost_retry));
    }
    vhost.headers = TranslateMutations(scope, path, vh);
    out.virtual_hosts.push_back(std::move(vhost));
  }
  if (scope.count() != before) return std::nullopt;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Listeners

// "HTTP1" for PROTOCOL_HTTP1: the name people write after the prefix.
std::string ProtocolName(xds::ListenerProtocol protocol) {
  return std::string(absl::StripPrefix(xds::ListenerProtocol_Name(protocol), "PROTOCOL_"));
}

void TranslateHttpOptions(Errors::Scope& scope, const xds::HttpOptions& in,
                          HttpOptionsConfig& out) {
  auto bounded = [&](absl::string_view field, uint32_t value, uint32_t max, uint32_t* target) {
    if (value == 0) return;  // unset: keep the default
    if (value > max) {
      scope.Add(Join("http", field), absl::StrCat("must be at most ", max));
      return;
    }
    *target = value;
  };
  bounded("max_request_headers_kb", in.max_request_headers_kb(), 8192, &out.max_request_headers_kb);
  bounded("max_headers_count", in.max_headers_count(), 10000, &out.max_headers_count);
  bounded("max_request_line_bytes", in.max_request_line_bytes(), 1 << 20,
          &out.max_request_line_bytes);
  bounded("max_concurrent_streams", in.max_concurrent_streams(), (1u << 31) - 1,
          &out.max_concurrent_streams);
  bounded("max_outbound_control_frames", in.max_outbound_control_frames(), 1u << 20,
          &out.max_outbound_control_frames);
  bounded("max_inbound_window_update_frames_per_data_frame_sent",
          in.max_inbound_window_update_frames_per_data_frame_sent(), 1u << 20,
          &out.max_inbound_window_update_frames_per_data_frame_sent);
  uint32_t body_kb = 0;
  bounded("max_request_body_buffer_kb", in.max_request_body_buffer_kb(), 1 << 20, &body_kb);
  if (body_kb != 0) out.max_request_body_buffer_bytes = uint64_t{body_kb} * 1024;
  ReadDuration(scope, "http.request_headers_timeout", in.has_request_headers_timeout(),
               in.request_headers_timeout(), DurationRule::kNonNegative,
               &out.request_headers_timeout);
  ReadDuration(scope, "http.stream_idle_timeout", in.has_stream_idle_timeout(),
               in.stream_idle_timeout(), DurationRule::kNonNegative, &out.stream_idle_timeout);
  ReadDuration(scope, "http.idle_timeout", in.has_idle_timeout(), in.idle_timeout(),
               DurationRule::kNonNegative, &out.idle_timeout);
  out.allow_connect = in.allow_connect();
  if (in.has_generate_request_id()) out.generate_request_id = in.generate_request_id().value();
  if (in.has_use_remote_address()) out.use_remote_address = in.use_remote_address().value();
}

void TranslateDownstreamTls(Errors::Scope& scope, const xds::DownstreamTls& in,
                            const Snapshot::ByName<SecretConfig>& secrets,
                            DownstreamTlsConfig& out) {
  switch (in.mode()) {
    case xds::DownstreamTls::DISABLE:
      out.mode = DownstreamTlsConfig::Mode::kDisable;
      return;  // the other fields do not apply
    case xds::DownstreamTls::PERMISSIVE:
      out.mode = DownstreamTlsConfig::Mode::kPermissive;
      break;
    case xds::DownstreamTls::STRICT:
      out.mode = DownstreamTlsConfig::Mode::kStrict;
      break;
    default:
      scope.Add("tls.mode", absl::StrCat("unknown value ", in.mode()));
      return;
  }
  const std::string mode_name = xds::DownstreamTls::Mode_Name(in.mode());
  out.require_client_certificate =
      in.require_client_certificate() || out.mode == DownstreamTlsConfig::Mode::kStrict;
  out.workload_certificate = in.workload_certificate();
  if (in.workload_certificate()) {
    if (!in.secret_name().empty()) {
      scope.Add("tls.workload_certificate", "excludes tls.secret_name");
    }
  } else if (in.secret_name().empty()) {
    scope.Add("tls.secret_name", absl::StrCat("required when mode is ", mode_name,
                                              " (or set tls.workload_certificate: true)"));
  } else {
    auto it = secrets.find(in.secret_name());
    if (it == secrets.end()) {
      scope.Add("", absl::StrCat("tls.secret_name ", Quote(in.secret_name()), " names no Secret"));
    } else {
      const SecretConfig& secret = it->second;
      if (secret.certificate_chain_pem.empty()) {
        scope.Add("tls.secret_name", absl::StrCat("secret ", Quote(secret.name),
                                                  " has no certificate chain and private key"));
      }
      if (out.require_client_certificate && secret.trust_bundle_pem.empty()) {
        scope.Add("tls.secret_name",
                  absl::StrCat("secret ", Quote(secret.name),
                               " has no trust bundle to verify client certificates with"));
      }
    }
  }
  out.secret_name = in.secret_name();
  TranslateTrustBundleSecret(scope, in.workload_certificate(), in.trust_bundle_secret(), secrets,
                             out.trust_bundle_secret);
  out.session_resumption = !in.disable_session_resumption();
  if (in.alpn_size() > 0) {
    out.alpn.clear();
    for (int i = 0; i < in.alpn_size(); ++i) {
      if (in.alpn(i).empty() || in.alpn(i).size() > 255) {
        scope.Add(Index("tls.alpn", i), "must be 1 to 255 bytes");
      }
      out.alpn.push_back(in.alpn(i));
    }
  }
  for (int i = 0; i < in.allowed_peer_ids_size(); ++i) {
    if (!tls::SpiffeIdMatcher::FromPatterns({in.allowed_peer_ids(i)}).ok()) {
      scope.Add(Index("tls.allowed_peer_ids", i),
                absl::StrCat(Quote(in.allowed_peer_ids(i)),
                             " is not a SPIFFE id (spiffe://<trust-domain>/... or "
                             "spiffe://<trust-domain>/*)"));
    }
    out.allowed_peer_ids.push_back(in.allowed_peer_ids(i));
  }
}

// Listener.authorization: validated values, then compiled once (filters/authorization.h).
void TranslateAuthorization(Errors::Scope& scope, const xds::Authorization& in,
                            filters::AuthorizationConfig& out) {
  for (int p = 0; p < in.policies_size(); ++p) {
    const xds::AuthorizationPolicy& policy_in = in.policies(p);
    const std::string path = Index("authorization.policies", p);
    filters::AuthorizationPolicyConfig policy;
    policy.name = policy_in.name();
    switch (policy_in.action()) {
      case xds::AuthorizationPolicy::ALLOW:
        policy.action = filters::AuthorizationPolicyConfig::Action::kAllow;
        break;
      case xds::AuthorizationPolicy::DENY:
        policy.action = filters::AuthorizationPolicyConfig::Action::kDeny;
        break;
      default:
        scope.Add(Join(path, "action"), absl::StrCat("unknown value ", policy_in.action()));
    }
    for (int r = 0; r < policy_in.rules_size(); ++r) {
      const xds::AuthorizationRule& rule_in = policy_in.rules(r);
      const std::string rule_path = Index(Join(path, "rules"), r);
      filters::AuthorizationRuleConfig rule;
      // '*' only as the last character: a prefix ("/api/*") or anything present ("*").
      auto patterns = [&](absl::string_view field,
                          const google::protobuf::RepeatedPtrField<std::string>& values,
                          std::vector<std::string>& to) {
        for (int i = 0; i < values.size(); ++i) {
          if (!filters::ValidAuthorizationPattern(values[i])) {
            scope.Add(Index(Join(rule_path, field), i),
                      absl::StrCat(Quote(values[i]),
                                   " must be non-empty, with '*' only as its last character"));
          }
          to.push_back(values[i]);
        }
      };
      patterns("principals", rule_in.principals(), rule.principals);
      for (int i = 0; i < rule_in.principals_size(); ++i) {
        const std::string& principal = rule_in.principals(i);
        if (principal != "*" && !absl::StartsWith(principal, "spiffe://")) {
          scope.Add(Index(Join(rule_path, "principals"), i),
                    absl::StrCat(Quote(principal), " is not a SPIFFE id (spiffe://...) or \"*\""));
        }
      }
      patterns("namespaces", rule_in.namespaces(), rule.namespaces);
      for (int i = 0; i < rule_in.namespaces_size(); ++i) {
        if (absl::StrContains(rule_in.namespaces(i), '/')) {
          scope.Add(Index(Join(rule_path, "namespaces"), i),
                    absl::StrCat(Quote(rule_in.namespaces(i)), " must not contain '/'"));
        }
      }
      for (int i = 0; i < rule_in.ports_size(); ++i) {
        if (rule_in.ports(i) == 0 || rule_in.ports(i) > 65535) {
          scope.Add(Index(Join(rule_path, "ports"), i), "must be 1 to 65535");
        }
        rule.ports.push_back(rule_in.ports(i));
      }
      for (int i = 0; i < rule_in.methods_size(); ++i) {
        const std::string& method = rule_in.methods(i);
        if (method.empty() || !std::all_of(method.begin(), method.end(), [](char c) {
              return c > ' ' && c < 0x7f && c != '*';
            })) {
          scope.Add(Index(Join(rule_path, "methods"), i),
                    absl::StrCat(Quote(method), " is not an HTTP method (exact, e.g. \"GET\")"));
        }
        rule.methods.push_back(method);
      }
      patterns("paths", rule_in.paths(), rule.paths);
      for (int i = 0; i < rule_in.paths_size(); ++i) {
        const std::string& value = rule_in.paths(i);
        if (value != "*" && !absl::StartsWith(value, "/")) {
          scope.Add(Index(Join(rule_path, "paths"), i),
                    absl::StrCat(Quote(value), " must start with '/' (or be \"*\")"));
        }
      }
      policy.rules.push_back(std::move(rule));
    }
    out.policies.push_back(std::move(policy));
  }
}

std::optional<ListenerConfig> TranslateListener(Errors::Scope& scope, const xds::Listener& in,
                                                const absl::flat_hash_set<std::string>& routes,
                                                const ClusterNames& clusters,
                                                const Snapshot::ByName<SecretConfig>& secrets) {
  const size_t before = scope.count();
  ListenerConfig out;
  out.name = in.name();
  absl::StatusOr<net::Address> address = net::Address::Parse(in.address());
  if (!address.ok()) {
    scope.Add("address", address.status());
  } else {
    out.address = *address;
  }
  switch (in.direction()) {
    case xds::OUTBOUND:
      out.direction = TrafficDirection::kOutbound;
      break;
    case xds::INBOUND:
      out.direction = TrafficDirection::kInbound;
      break;
    default:
      scope.Add("direction", absl::StrCat("unknown value ", in.direction()));
  }
  switch (in.protocol()) {
    case xds::PROTOCOL_AUTO:
      out.protocol = ListenerProtocol::kAuto;
      break;
    case xds::PROTOCOL_HTTP1:
      out.protocol = ListenerProtocol::kHttp1;
      break;
    case xds::PROTOCOL_HTTP2:
      out.protocol = ListenerProtocol::kHttp2;
      break;
    case xds::PROTOCOL_HTTP:
      out.protocol = ListenerProtocol::kHttp;
      break;
    case xds::PROTOCOL_TCP:
      out.protocol = ListenerProtocol::kTcp;
      break;
    default:
      scope.Add("protocol", absl::StrCat("unknown value ", in.protocol()));
      return std::nullopt;
  }
  const std::string protocol = ProtocolName(in.protocol());

  out.route_config_name = in.route_config_name();
  if (out.protocol == ListenerProtocol::kTcp) {
    if (!in.route_config_name().empty()) {
      scope.Add("route_config_name", "not used with protocol TCP (use tcp_cluster)");
    }
  } else if (in.route_config_name().empty()) {
    scope.Add("route_config_name", absl::StrCat("required with protocol ", protocol));
  } else if (!routes.contains(in.route_config_name())) {
    scope.Add("", absl::StrCat("route_config_name ", Quote(in.route_config_name()),
                               " names no RouteConfiguration"));
  }

  out.tcp_cluster = in.tcp_cluster();
  if (out.protocol == ListenerProtocol::kTcp && in.tcp_cluster().empty()) {
    scope.Add("tcp_cluster", "required with protocol TCP");
  } else if (out.protocol != ListenerProtocol::kTcp && out.protocol != ListenerProtocol::kAuto &&
             !in.tcp_cluster().empty()) {
    scope.Add("tcp_cluster", absl::StrCat("not used with protocol ", protocol));
  } else if (!in.tcp_cluster().empty() && !clusters.contains(in.tcp_cluster())) {
    scope.Add("", absl::StrCat("tcp_cluster ", Quote(in.tcp_cluster()), " names no Cluster"));
  }

  if (in.has_tls()) TranslateDownstreamTls(scope, in.tls(), secrets, out.tls);
  if (in.has_http()) TranslateHttpOptions(scope, in.http(), out.http);
  ReadDuration(scope, "detect_timeout", in.has_detect_timeout(), in.detect_timeout(),
               DurationRule::kPositive, &out.detect_timeout);
  ReadDuration(scope, "tls_handshake_timeout", in.has_tls_handshake_timeout(),
               in.tls_handshake_timeout(), DurationRule::kPositive, &out.tls_handshake_timeout);
  ReadDuration(scope, "tcp_idle_timeout", in.has_tcp_idle_timeout(), in.tcp_idle_timeout(),
               DurationRule::kNonNegative, &out.tcp_idle_timeout);
  out.max_connections = in.max_connections();
  out.access_log_path = in.access_log().path();
  if (in.has_rate_limit()) {
    TranslateRateLimit(scope, "rate_limit", in.rate_limit(), out.rate_limit, out.rate_limiter);
  }
  if (in.destination_port() > 65535) scope.Add("destination_port", "must be at most 65535");
  out.destination_port = in.destination_port();
  if (in.has_authorization()) {
    // HTTP requests are decided one by one; connections to tcp_cluster once, on the peer's
    // identity and the destination port (filters/authorization.h).
    TranslateAuthorization(scope, in.authorization(), out.authorization);
    out.authorizer = std::make_shared<const filters::Authorizer>(out.authorization);
  }
  if (scope.count() != before) return std::nullopt;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Version and dump

// FNV-1a: stable across processes and builds, unlike absl::Hash.
uint64_t Fnv1a(absl::string_view bytes, uint64_t h = 14695981039346656037ull) {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

xds::Bootstrap::StaticResources ToMessage(const ResourceSet& resources) {
  xds::Bootstrap::StaticResources all;
  for (const auto& m : resources.listeners) *all.add_listeners() = m;
  for (const auto& m : resources.routes) *all.add_routes() = m;
  for (const auto& m : resources.clusters) *all.add_clusters() = m;
  for (const auto& m : resources.endpoints) *all.add_endpoints() = m;
  for (const auto& m : resources.secrets) *all.add_secrets() = m;
  return all;
}

std::string ConfigDump(absl::string_view version, xds::Bootstrap::StaticResources resources) {
  for (xds::Secret& secret : *resources.mutable_secrets()) {
    if (!secret.private_key_pem().empty()) secret.set_private_key_pem("[redacted]");
  }
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  std::string json;
  auto printed = google::protobuf::util::MessageToJsonString(resources, &json, options);
  if (!printed.ok()) json = "{}";
  while (!json.empty() && json.back() == '\n') json.pop_back();
  return absl::StrCat("{\n \"version\": ", JsonQuote(version), ",\n \"resources\": ", json,
                      "\n}\n");
}

}  // namespace

absl::string_view ValidRetryOnValues() { return kRetryOnValues; }

struct TranslationMemo {
  struct Cluster {
    ResourceList<xds::Cluster>::Pointer cluster;
    ResourceList<xds::ClusterLoadAssignment>::Pointer assignment;  // null: none (or STATIC)
    std::shared_ptr<const ClusterConfig> translated;
  };
  struct RouteTable {
    ResourceList<xds::RouteConfiguration>::Pointer source;
    std::shared_ptr<const router::RouteTable> table;
  };
  absl::flat_hash_map<std::string, Cluster> clusters;
  absl::flat_hash_map<std::string, RouteTable> route_tables;
  absl::flat_hash_set<std::string> cluster_names;
  absl::flat_hash_map<std::string, bool> secret_has_trust_bundle;
  size_t clusters_reused = 0;
  size_t route_tables_reused = 0;
};

TranslationReuse TranslationReuseOf(const Snapshot& snapshot) {
  if (snapshot.translation_memo == nullptr) return {};
  return {snapshot.translation_memo->clusters_reused,
          snapshot.translation_memo->route_tables_reused};
}

absl::StatusOr<std::shared_ptr<const Snapshot>> BuildSnapshot(const ResourceSet& resources,
                                                              const Snapshot* previous) {
  auto snapshot = std::make_shared<Snapshot>();
  auto memo = std::make_shared<TranslationMemo>();
  const TranslationMemo* before = previous != nullptr ? previous->translation_memo.get() : nullptr;
  Errors errors;

  // Names are checked per kind first: later kinds refer to earlier ones by name.
  // Returns the label errors of a resource lead with, or nullopt if it cannot be used.
  auto named =
      [&errors](absl::string_view kind, absl::string_view list, size_t i, const std::string& name,
                absl::flat_hash_map<std::string, size_t>& seen) -> std::optional<std::string> {
    if (!ValidName(name)) {
      Errors::Scope scope(errors, Index(list, i));
      CheckName(scope, name);
      return std::nullopt;
    }
    std::string label = absl::StrCat(kind, " ", Quote(name));
    auto [it, inserted] = seen.emplace(name, i);
    if (!inserted) {
      Errors::Scope scope(errors, label);
      scope.Add("", absl::StrCat("duplicate name (", Index(list, it->second), " and ",
                                 Index(list, i), ")"));
      return std::nullopt;
    }
    return label;
  };

  // Secrets: always translated (few, and file-based ones must be read again).
  absl::flat_hash_map<std::string, size_t> seen;
  for (size_t i = 0; i < resources.secrets.size(); ++i) {
    const xds::Secret& secret = resources.secrets[i];
    std::optional<std::string> label = named("secret", "secrets", i, secret.name(), seen);
    if (!label) continue;
    Errors::Scope scope(errors, *label);
    if (std::optional<SecretConfig> out = TranslateSecret(scope, secret)) {
      memo->secret_has_trust_bundle.emplace(secret.name(), !out->trust_bundle_pem.empty());
      snapshot->secrets.emplace(secret.name(), *std::move(out));
    }
  }
  // What clusters and listeners check of a secret; when that is unchanged, so is every check.
  const bool secrets_as_before =
      before != nullptr && before->secret_has_trust_bundle == memo->secret_has_trust_bundle;

  // Clusters, then the load assignments that fill EDS clusters.
  ClusterNames cluster_names;
  absl::flat_hash_map<std::string, size_t> cluster_index;  // name → position in the list
  seen.clear();
  for (size_t i = 0; i < resources.clusters.size(); ++i) {
    const xds::Cluster& cluster = resources.clusters[i];
    std::optional<std::string> label = named("cluster", "clusters", i, cluster.name(), seen);
    if (!label) continue;
    // Even an invalid cluster's name counts as known, so its routes do not add noise.
    cluster_names.insert(cluster.name());
    cluster_index.emplace(cluster.name(), i);
  }
  std::vector<ResourceList<xds::ClusterLoadAssignment>::Pointer> assignment_of(
      resources.clusters.size());
  seen.clear();
  for (size_t i = 0; i < resources.endpoints.size(); ++i) {
    const xds::ClusterLoadAssignment& assignment = resources.endpoints[i];
    const std::string& name = assignment.cluster_name();
    if (name.empty()) {
      Errors::Scope(errors, Index("endpoints", i)).Add("cluster_name", "must not be empty");
      continue;
    }
    std::optional<std::string> label = named("cluster_load_assignment", "endpoints", i, name, seen);
    if (!label) continue;
    Errors::Scope scope(errors, *label);
    auto target = cluster_index.find(name);
    if (target == cluster_index.end()) {
      // A cluster whose name was invalid or duplicated has no index; it was reported already.
      if (!cluster_names.contains(name)) {
        scope.Add("", absl::StrCat("cluster_name ", Quote(name), " names no Cluster"));
      }
      continue;
    }
    if (resources.clusters[target->second].type() != xds::Cluster::EDS) {
      scope.Add("", absl::StrCat("cluster_name ", Quote(name),
                                 " names a STATIC cluster; its endpoints belong in its "
                                 "load_assignment"));
      continue;
    }
    assignment_of[target->second] = resources.endpoints.shared(i);
  }
  for (size_t i = 0; i < resources.clusters.size(); ++i) {
    const ResourceList<xds::Cluster>::Pointer& cluster = resources.clusters.shared(i);
    const std::string& name = cluster->name();
    auto indexed = cluster_index.find(name);
    if (indexed == cluster_index.end() || indexed->second != i) continue;  // reported above
    const ResourceList<xds::ClusterLoadAssignment>::Pointer& assignment = assignment_of[i];
    std::shared_ptr<const ClusterConfig> translated;
    if (before != nullptr && (secrets_as_before || !cluster->has_tls())) {
      auto it = before->clusters.find(name);
      if (it != before->clusters.end() && it->second.cluster == cluster &&
          it->second.assignment == assignment) {
        translated = it->second.translated;
        ++memo->clusters_reused;
      }
    }
    if (translated == nullptr) {
      Errors::Scope scope(errors, absl::StrCat("cluster ", Quote(name)));
      std::optional<ClusterConfig> out = TranslateCluster(scope, *cluster, snapshot->secrets);
      if (out.has_value() && assignment != nullptr) {
        Errors::Scope endpoints_scope(errors,
                                      absl::StrCat("cluster_load_assignment ", Quote(name)));
        out->endpoints = TranslateEndpoints(endpoints_scope, "", *assignment);
      }
      if (!out.has_value()) continue;
      translated = std::make_shared<const ClusterConfig>(*std::move(out));
    }
    memo->clusters.emplace(name, TranslationMemo::Cluster{cluster, assignment, translated});
    snapshot->clusters.emplace(name, std::move(translated));
  }

  // Route configurations. A route table depends on its resource and on which clusters exist.
  const bool cluster_names_as_before = before != nullptr && before->cluster_names == cluster_names;
  absl::flat_hash_set<std::string> route_names;
  seen.clear();
  for (size_t i = 0; i < resources.routes.size(); ++i) {
    const xds::RouteConfiguration& route_config = resources.routes[i];
    std::optional<std::string> label =
        named("route_config", "routes", i, route_config.name(), seen);
    if (!label) continue;
    route_names.insert(route_config.name());
    const ResourceList<xds::RouteConfiguration>::Pointer& source = resources.routes.shared(i);
    if (cluster_names_as_before) {
      auto it = before->route_tables.find(route_config.name());
      if (it != before->route_tables.end() && it->second.source == source) {
        memo->route_tables.emplace(route_config.name(), it->second);
        snapshot->route_tables.emplace(route_config.name(), it->second.table);
        ++memo->route_tables_reused;
        continue;
      }
    }
    Errors::Scope scope(errors, *label);
    std::optional<router::RouteConfig> out =
        TranslateRouteConfig(scope, route_config, cluster_names);
    if (!out.has_value()) continue;
    absl::StatusOr<std::unique_ptr<router::RouteTable>> table =
        router::RouteTable::Create(*std::move(out));
    if (!table.ok()) {
      scope.Add("", table.status());
      continue;
    }
    std::shared_ptr<const router::RouteTable> shared_table = std::move(table).value();
    memo->route_tables.emplace(route_config.name(),
                               TranslationMemo::RouteTable{source, shared_table});
    snapshot->route_tables.emplace(route_config.name(), std::move(shared_table));
  }
  memo->cluster_names = std::move(cluster_names);

  // Listeners: few, and each depends on routes, clusters and secrets; always translated.
  seen.clear();
  absl::flat_hash_map<std::string, std::string> bound;  // address → listener name
  for (size_t i = 0; i < resources.listeners.size(); ++i) {
    const xds::Listener& listener = resources.listeners[i];
    std::optional<std::string> label = named("listener", "listeners", i, listener.name(), seen);
    if (!label) continue;
    Errors::Scope scope(errors, *label);
    std::optional<ListenerConfig> out =
        TranslateListener(scope, listener, route_names, memo->cluster_names, snapshot->secrets);
    if (!out.has_value()) continue;
    // Port 0 asks the kernel for a free port, so those never collide.
    if (!out->address.is_ip() || out->address.port() != 0) {
      auto [it, inserted] = bound.emplace(out->address.ToString(), listener.name());
      if (!inserted) {
        scope.Add("address", absl::StrCat(Quote(listener.address()),
                                          " is already used by listener ", Quote(it->second)));
        continue;
      }
    }
    snapshot->listeners.push_back(*std::move(out));
  }

  RETURN_IF_ERROR(errors.ToStatus());

  if (resources.version.empty()) {
    snapshot->version = absl::StrCat(
        "static-", absl::Hex(Fnv1a(meshlet::config::DeterministicBytes(ToMessage(resources))),
                             absl::kZeroPad16));
  } else {
    snapshot->version = resources.version;
  }
  // The dump keeps the resource lists (shared messages, no copy) and renders on demand.
  snapshot->render_config_dump = [version = snapshot->version, resources] {
    return ConfigDump(version, ToMessage(resources));
  };
  snapshot->translation_memo = std::move(memo);
  return std::shared_ptr<const Snapshot>(std::move(snapshot));
}

absl::StatusOr<tracing::TracingConfig> TranslateTracing(const xds::Bootstrap::Tracing& tracing) {
  tracing::TracingConfig out;
  out.enabled = true;
  std::vector<std::string> errors;
  if (tracing.has_sampling_percent()) {
    const double percent = tracing.sampling_percent().value();
    if (!(percent >= 0 && percent <= 100)) {
      errors.push_back("tracing.sampling_percent: must be within 0..100");
    } else {
      out.sampling_percent = percent;
    }
  }
  out.collector_address = tracing.collector_address();
  if (out.collector_address.empty()) {
    errors.push_back("tracing.collector_address: required (host:port)");
  } else if (absl::StatusOr<net::HostPort> split = net::SplitHostPort(out.collector_address);
             !split.ok()) {
    errors.push_back(absl::StrCat("tracing.collector_address: ", split.status().message()));
  } else if (split->unbracketed_ipv6()) {
    errors.push_back(absl::StrCat("tracing.collector_address: \"", out.collector_address,
                                  "\": an IPv6 address goes in brackets, [addr]:port"));
  }
  out.collector_path = tracing.collector_path();
  if (!out.collector_path.empty() && out.collector_path.front() != '/') {
    errors.push_back("tracing.collector_path: must start with /");
  }
  switch (tracing.protocol()) {
    case xds::Bootstrap::Tracing::OTLP_JSON:
      out.protocol = tracing::ExportProtocol::kOtlpJson;
      break;
    case xds::Bootstrap::Tracing::OTLP_PROTO:
      out.protocol = tracing::ExportProtocol::kOtlpProto;
      break;
    case xds::Bootstrap::Tracing::ZIPKIN:
      out.protocol = tracing::ExportProtocol::kZipkin;
      break;
    default:
      errors.push_back("tracing.protocol: must be OTLP_JSON, OTLP_PROTO or ZIPKIN");
  }
  auto read_count = [&](bool has, uint32_t value, absl::string_view path, uint32_t max,
                        uint32_t* field) {
    if (!has) return;
    if (value == 0 || value > max) {
      errors.push_back(absl::StrCat("tracing.", path, ": must be within 1..", max));
      return;
    }
    *field = value;
  };
  read_count(tracing.has_batch_size(), tracing.batch_size().value(), "batch_size", 65536,
             &out.batch_size);
  read_count(tracing.has_queue_limit(), tracing.queue_limit().value(), "queue_limit", 1 << 18,
             &out.queue_limit);
  auto read_duration = [&](bool has, const google::protobuf::Duration& value,
                           absl::string_view path, Duration* field) {
    if (!has) return;
    std::optional<Duration> d = ToDuration(value);
    if (!d.has_value() || *d <= Duration::zero() || *d > std::chrono::hours(1)) {
      errors.push_back(absl::StrCat("tracing.", path, ": must be greater than 0 and at most 1h"));
      return;
    }
    *field = *d;
  };
  read_duration(tracing.has_flush_interval(), tracing.flush_interval(), "flush_interval",
                &out.flush_interval);
  read_duration(tracing.has_export_timeout(), tracing.export_timeout(), "export_timeout",
                &out.export_timeout);
  out.service_name = tracing.service_name();
  if (!tracing.force_sample_header().empty()) {
    const std::string& header = tracing.force_sample_header();
    const bool token = std::all_of(header.begin(), header.end(), [](char c) {
      return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
    });
    if (!token) {
      errors.push_back("tracing.force_sample_header: must be a header name");
    } else {
      out.force_sample_header = absl::AsciiStrToLower(header);
    }
  }
  switch (tracing.attempt_spans()) {
    case xds::Bootstrap::Tracing::RETRIED:
      out.span_per_attempt = false;
      break;
    case xds::Bootstrap::Tracing::EVERY_ATTEMPT:
      out.span_per_attempt = true;
      break;
    default:
      errors.push_back("tracing.attempt_spans: must be RETRIED or EVERY_ATTEMPT");
  }
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "; "));
  return out;
}

}  // namespace meshlet::sidecar::config

// One file on purpose: every meshlet.io kind is checked by one Checker, whose field-path context
// and error list each check writes to; splitting its methods across files would need that class
// in a header of its own for no reader's benefit. The Gateway API kinds, which share nothing with
// it but the path helpers, are in validate_gateway.cc.

#include "control-plane/policy/validate.h"

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/message.h>

#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/config/field_path.h"
#include "common/http/https_get.h"
#include "common/jwt/jwt_verifier.h"
#include "common/net/ip_prefix.h"
#include "common/tls/certificate.h"
#include "control-plane/policy/kinds.h"
#include "control-plane/policy/validate_gateway.h"

namespace meshlet::controlplane::policy {
namespace {

namespace pb = ::meshlet::policy;
using google::protobuf::Duration;
using ::meshlet::config::Index;
using ::meshlet::config::IsDnsLabel;
using ::meshlet::config::IsDnsSubdomain;
using ::meshlet::config::IsHostName;
using ::meshlet::config::IsHttpToken;
using ::meshlet::config::IsSafeHeaderValue;
using ::meshlet::config::Join;
using ::meshlet::config::Quote;

constexpr size_t kMaxDirectResponseBody = 64 * 1024;
constexpr size_t kMaxHeaderValueBytes = 8192;
constexpr int kMaxJwtRules = 64;
constexpr int kMaxTargetRefs = 16;
constexpr absl::string_view kGatewayGroup = "gateway.networking.k8s.io";
// The values the sidecar's retry policy accepts (sidecar/config ValidRetryOnValues()).
const std::set<std::string>& RetryOnValues() {
  static const auto* values = new std::set<std::string>{
      "connect-failure", "refused-stream",         "reset",      "5xx",
      "gateway-error",   "retriable-status-codes", "cancelled",  "deadline-exceeded",
      "internal",        "resource-exhausted",     "unavailable"};
  return *values;
}
const std::set<std::string>& HttpMethods() {
  static const auto* values = new std::set<std::string>{
      "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};
  return *values;
}

struct ReservedRange {
  net::IpPrefix range;
  absl::string_view kind;
};
// Addresses no Service may have: traffic to them never leaves the host, or is not unicast.
const std::vector<ReservedRange>& ReservedRanges() {
  static const auto* ranges = [] {
    auto* out = new std::vector<ReservedRange>;
    for (const auto& [text, kind] :
         std::vector<std::pair<const char*, absl::string_view>>{{"0.0.0.0/32", "unspecified"},
                                                                {"127.0.0.0/8", "loopback"},
                                                                {"169.254.0.0/16", "link-local"},
                                                                {"224.0.0.0/4", "multicast"},
                                                                {"255.255.255.255/32", "broadcast"},
                                                                {"::/128", "unspecified"},
                                                                {"::1/128", "loopback"},
                                                                {"fe80::/10", "link-local"},
                                                                {"ff00::/8", "multicast"}}) {
      out->push_back({*net::IpPrefix::Parse(text), kind});
    }
    return out;
  }();
  return *ranges;
}

class Checker {
 public:
  Checker(ValidationResult& result, const PolicySnapshot* existing, const ValidationLimits& limits)
      : result_(result), existing_(existing), limits_(limits) {}

  void Error(absl::string_view field, absl::string_view message) {
    result_.errors.push_back({std::string(field), std::string(message)});
  }
  void Warn(absl::string_view field, absl::string_view message) {
    result_.warnings.push_back(absl::StrCat(field, ": ", message));
  }

  // A duration that, when present, must be > 0.
  void PositiveDuration(absl::string_view path, bool has, const Duration& d) {
    if (!has) return;
    if (d.seconds() < 0 || d.nanos() < 0) {
      Error(path, "must not be negative");
    } else if (d.seconds() == 0 && d.nanos() == 0) {
      Error(path, "must be greater than 0");
    }
  }
  void NonNegativeDuration(absl::string_view path, bool has, const Duration& d) {
    if (has && (d.seconds() < 0 || d.nanos() < 0)) Error(path, "must not be negative");
  }
  static double Seconds(const Duration& d) { return d.seconds() + d.nanos() / 1e9; }

  void Percent(absl::string_view path, double value) {
    if (!(value >= 0.0 && value <= 100.0)) Error(path, "must be between 0 and 100");
  }

  void Port(absl::string_view path, uint32_t port, bool required) {
    if (port == 0) {
      if (required) Error(path, "required (1 to 65535)");
      return;
    }
    if (port > 65535) Error(path, "must be between 1 and 65535");
  }

  void Metadata(const google::protobuf::Message& resource, const KindInfo& info) {
    const pb::ObjectMeta& meta = policy::Metadata(resource);
    const google::protobuf::Reflection* r = resource.GetReflection();
    const auto* descriptor = resource.GetDescriptor();
    const std::string api_version =
        r->GetString(resource, descriptor->FindFieldByName("api_version"));
    if (!api_version.empty() && !info.AcceptsApiVersion(api_version)) {
      Error("apiVersion", absl::StrCat(Quote(api_version), " is not an apiVersion of ", info.kind,
                                       "; use ", info.AcceptedApiVersions()));
    }
    const std::string kind = r->GetString(resource, descriptor->FindFieldByName("kind"));
    if (!kind.empty() && kind != info.kind) {
      Error("kind", absl::StrCat("must be ", Quote(info.kind)));
    }
    if (meta.name().empty()) {
      Error("metadata.name", "required");
    } else if (!IsDnsSubdomain(meta.name())) {
      Error("metadata.name",
            absl::StrCat(Quote(meta.name()),
                         " must be lowercase letters, digits, '-' and '.', start and end with a "
                         "letter or digit, at most 253 characters"));
    }
    if (info.namespaced) {
      if (!meta.namespace_().empty() && !IsDnsLabel(meta.namespace_())) {
        Error("metadata.namespace",
              absl::StrCat(Quote(meta.namespace_()),
                           " must be lowercase letters, digits and '-', at most 63 characters"));
      }
    } else {
      if (!meta.namespace_().empty()) {
        Error("metadata.namespace", absl::StrCat(info.kind, " is cluster-wide: leave it out"));
      }
      if (info.kind == "MeshConfig" && !meta.name().empty() && meta.name() != kMeshConfigName) {
        Error("metadata.name",
              absl::StrCat("the mesh has one MeshConfig, named ", Quote(kMeshConfigName)));
      }
    }
    for (const auto& [key, value] : meta.labels()) {
      std::string path = absl::StrCat("metadata.labels[", key, "]");
      if (key.empty() || key.size() > 253) Error(path, "key must be 1 to 253 characters");
      if (value.size() > 1024) Error(path, "value must be at most 1024 characters");
    }
    size_t annotation_bytes = 0;
    for (const auto& [key, value] : meta.annotations())
      annotation_bytes += key.size() + value.size();
    if (annotation_bytes > 256 * 1024) Error("metadata.annotations", "must total at most 256 KiB");
    namespace_ = meta.namespace_().empty() && info.namespaced ? std::string(kDefaultNamespace)
                                                              : meta.namespace_();
  }

  // A Service name in this resource's namespace; warns when it does not exist.
  const pb::Service* ServiceRef(absl::string_view path, absl::string_view name) {
    if (name.empty()) {
      Error(path, "required");
      return nullptr;
    }
    if (!IsDnsLabel(name)) {
      Error(path, absl::StrCat(Quote(name), " is not a Service name (a DNS label)"));
      return nullptr;
    }
    if (existing_ == nullptr) return nullptr;
    const pb::Service* service = existing_->FindService(namespace_, name);
    if (service == nullptr) {
      Warn(path, absl::StrCat("Service ", Quote(name), " does not exist in namespace ",
                              Quote(namespace_), " (yet); traffic to it fails until it does"));
    }
    return service;
  }

  void LoadBalancer(absl::string_view path, const std::string& value) {
    if (value.empty()) return;
    static const std::set<std::string> kValues = {"LEAST_REQUEST", "ROUND_ROBIN", "RANDOM",
                                                  "PEAK_EWMA"};
    if (!kValues.count(value)) {
      Error(path, absl::StrCat(Quote(value),
                               " is not one of LEAST_REQUEST, ROUND_ROBIN, RANDOM, PEAK_EWMA"));
    }
  }

  void MtlsMode(absl::string_view path, const std::string& value) {
    if (value.empty()) return;
    if (value != "DISABLE" && value != "PERMISSIVE" && value != "STRICT") {
      Error(path, absl::StrCat(Quote(value), " is not one of DISABLE, PERMISSIVE, STRICT"));
    }
  }

  void Timeouts(absl::string_view path, const pb::Timeouts& t) {
    PositiveDuration(Join(path, "connect"), t.has_connect(), t.connect());
    PositiveDuration(Join(path, "request"), t.has_request(), t.request());
    PositiveDuration(Join(path, "perTry"), t.has_per_try(), t.per_try());
    PositiveDuration(Join(path, "idle"), t.has_idle(), t.idle());
    if (t.has_per_try() && t.has_request() && Seconds(t.per_try()) > Seconds(t.request())) {
      Error(Join(path, "perTry"), absl::StrCat("must not exceed ", Join(path, "request")));
    }
  }

  void Retries(absl::string_view path, const pb::Retries& r) {
    if (r.has_attempts() && r.attempts().value() > limits_.max_retry_attempts) {
      Error(Join(path, "attempts"),
            absl::StrCat("must be between 0 and ", limits_.max_retry_attempts));
    }
    for (int i = 0; i < r.retry_on_size(); ++i) {
      if (!RetryOnValues().count(r.retry_on(i))) {
        Error(Index(Join(path, "retryOn"), i), absl::StrCat(Quote(r.retry_on(i)), " is not one of ",
                                                            absl::StrJoin(RetryOnValues(), ", ")));
      }
    }
    for (int i = 0; i < r.retriable_status_codes_size(); ++i) {
      uint32_t code = r.retriable_status_codes(i);
      if (code < 100 || code > 599) {
        Error(Index(Join(path, "retriableStatusCodes"), i), "must be an HTTP status (100 to 599)");
      }
    }
    PositiveDuration(Join(path, "backoffBase"), r.has_backoff_base(), r.backoff_base());
    PositiveDuration(Join(path, "backoffMax"), r.has_backoff_max(), r.backoff_max());
    if (r.has_backoff_base() && r.has_backoff_max() &&
        Seconds(r.backoff_max()) < Seconds(r.backoff_base())) {
      Error(Join(path, "backoffMax"), absl::StrCat("must be at least ", Join(path, "backoffBase")));
    }
    if (r.has_budget_percent()) Percent(Join(path, "budgetPercent"), r.budget_percent().value());
  }

  void CircuitBreaker(absl::string_view path, const pb::CircuitBreaker& cb) {
    auto positive = [&](absl::string_view field, bool has, uint32_t value) {
      if (has && value == 0) Error(Join(path, field), "must be greater than 0");
    };
    positive("maxConnections", cb.has_max_connections(), cb.max_connections().value());
    positive("maxPendingRequests", cb.has_max_pending_requests(),
             cb.max_pending_requests().value());
    positive("maxRequests", cb.has_max_requests(), cb.max_requests().value());
    PositiveDuration(Join(path, "openDuration"), cb.has_open_duration(), cb.open_duration());
    if (cb.has_open_duration() && cb.consecutive_failures() == 0) {
      Error(Join(path, "openDuration"), "needs consecutiveFailures");
    }
  }

  void Outlier(absl::string_view path, const pb::OutlierDetectionPolicy& od) {
    if (od.has_consecutive_5xx() && od.consecutive_5xx().value() == 0) {
      Error(Join(path, "consecutive5xx"), "must be greater than 0");
    }
    if (od.has_consecutive_gateway_failures() && od.consecutive_gateway_failures().value() == 0) {
      Error(Join(path, "consecutiveGatewayFailures"), "must be greater than 0");
    }
    PositiveDuration(Join(path, "interval"), od.has_interval(), od.interval());
    PositiveDuration(Join(path, "baseEjectionTime"), od.has_base_ejection_time(),
                     od.base_ejection_time());
    PositiveDuration(Join(path, "maxEjectionTime"), od.has_max_ejection_time(),
                     od.max_ejection_time());
    if (od.has_base_ejection_time() && od.has_max_ejection_time() &&
        Seconds(od.max_ejection_time()) < Seconds(od.base_ejection_time())) {
      Error(Join(path, "maxEjectionTime"),
            absl::StrCat("must be at least ", Join(path, "baseEjectionTime")));
    }
    if (od.has_max_ejection_percent()) {
      Percent(Join(path, "maxEjectionPercent"), od.max_ejection_percent().value());
    }
  }

  void Locality(absl::string_view path, const pb::LocalityPolicy& l) {
    if (l.has_overprovisioning_percent() && (l.overprovisioning_percent().value() < 100 ||
                                             l.overprovisioning_percent().value() > 1000)) {
      Error(Join(path, "overprovisioningPercent"), "must be between 100 and 1000");
    }
    NonNegativeDuration(Join(path, "maxLatency"), l.has_max_latency(), l.max_latency());
  }

  void Overload(absl::string_view path, const pb::OverloadPolicy& o) {
    NonNegativeDuration(Join(path, "ejectionTime"), o.has_ejection_time(), o.ejection_time());
    PositiveDuration(Join(path, "maxEjectionTime"), o.has_max_ejection_time(),
                     o.max_ejection_time());
    // Against the sidecar's defaults (1s, 10s) where one of the two is unset.
    const double ejection = o.has_ejection_time() ? Seconds(o.ejection_time()) : 1;
    const double max_ejection = o.has_max_ejection_time() ? Seconds(o.max_ejection_time()) : 10;
    if ((o.has_ejection_time() || o.has_max_ejection_time()) && ejection > max_ejection) {
      Error(Join(path, "ejectionTime"),
            absl::StrCat("must not exceed ", Join(path, "maxEjectionTime"),
                         o.has_max_ejection_time() ? "" : " (default 10s)"));
    }
    if (o.has_max_ejection_percent()) {
      Percent(Join(path, "maxEjectionPercent"), o.max_ejection_percent().value());
    }
    if (o.has_penalty() && (o.penalty().value() < 1 || o.penalty().value() > 1000)) {
      Error(Join(path, "penalty"), "must be between 1 and 1000");
    }
    PositiveDuration(Join(path, "penaltyTime"), o.has_penalty_time(), o.penalty_time());
  }

  void ConnectionPool(absl::string_view path, const pb::ConnectionPoolPolicy& pool) {
    PositiveDuration(Join(path, "idleTimeout"), pool.has_idle_timeout(), pool.idle_timeout());
    if (pool.has_max_requests_per_connection() && pool.max_requests_per_connection().value() == 0) {
      Error(Join(path, "maxRequestsPerConnection"), "must be greater than 0");
    }
    PositiveDuration(Join(path, "maxConnectionDuration"), pool.has_max_connection_duration(),
                     pool.max_connection_duration());
  }

  void RateLimit(absl::string_view path, const pb::RateLimitPolicy& rl) {
    if (rl.requests_per_second() == 0) {
      Error(Join(path, "requestsPerSecond"), "must be greater than 0");
    }
    if (rl.burst() != 0 && rl.burst() < rl.requests_per_second()) {
      Warn(Join(path, "burst"), "below requestsPerSecond: bursts above it are refused at once");
    }
  }

  void HeaderModifier(absl::string_view path, const pb::HeaderModifier& hm) {
    auto check_name = [&](const std::string& where, const std::string& name) {
      if (!IsHttpToken(name)) {
        Error(where, absl::StrCat(Quote(name), " is not a header name"));
      } else if (absl::EqualsIgnoreCase(name, "host")) {
        Error(where, "\"host\" cannot be edited here; use rewrite.host");
      }
    };
    auto check_value = [&](const std::string& where, const std::string& value) {
      if (!IsSafeHeaderValue(value)) {
        Error(where, "must not contain CR, LF or NUL");
      } else if (value.size() > kMaxHeaderValueBytes) {
        Error(where, absl::StrCat("must be at most ", kMaxHeaderValueBytes, " bytes"));
      }
    };
    for (const auto& [name, value] : hm.set()) {
      std::string where = absl::StrCat(path, ".set[", name, "]");
      check_name(where, name);
      check_value(where, value);
    }
    for (const auto& [name, value] : hm.add()) {
      std::string where = absl::StrCat(path, ".add[", name, "]");
      check_name(where, name);
      check_value(where, value);
    }
    for (int i = 0; i < hm.remove_size(); ++i) {
      check_name(Index(Join(path, "remove"), i), hm.remove(i));
    }
  }

  // A fault's share of requests. 0 would inject nothing: almost certainly a forgotten field.
  void FaultPercent(absl::string_view path, double value) {
    if (value == 0.0) {
      Error(path, "required: the share of requests to affect, greater than 0 and at most 100");
    } else {
      Percent(path, value);
    }
  }

  void Fault(absl::string_view path, const pb::Fault& f) {
    if (!f.has_delay() && !f.has_abort()) Error(path, "needs delay or abort");
    if (f.has_delay()) {
      std::string delay = Join(path, "delay");
      if (!f.delay().has_fixed()) {
        Error(Join(delay, "fixed"), "required");
      } else {
        PositiveDuration(Join(delay, "fixed"), true, f.delay().fixed());
      }
      FaultPercent(Join(delay, "percent"), f.delay().percent());
    }
    if (f.has_abort()) {
      std::string abort = Join(path, "abort");
      const auto& a = f.abort();
      if (a.http_status() == 0 && a.grpc_status() == 0) {
        Error(abort, "needs httpStatus or grpcStatus");
      }
      if (a.http_status() != 0 && (a.http_status() < 200 || a.http_status() > 599)) {
        Error(Join(abort, "httpStatus"), "must be between 200 and 599");
      }
      if (a.grpc_status() > 16) Error(Join(abort, "grpcStatus"), "must be between 1 and 16");
      FaultPercent(Join(abort, "percent"), a.percent());
    }
  }

  void Service(const pb::Service& s) {
    const pb::ServiceSpec& spec = s.spec();
    if (spec.ports().empty()) Error("spec.ports", "at least one port is required");
    if (static_cast<size_t>(spec.ports_size()) > limits_.max_ports) {
      Error("spec.ports", absl::StrCat("at most ", limits_.max_ports, " ports"));
    }
    std::set<uint32_t> numbers;
    std::set<std::string> names;
    for (int i = 0; i < spec.ports_size(); ++i) {
      const pb::ServicePort& p = spec.ports(i);
      std::string path = Index("spec.ports", i);
      Port(Join(path, "port"), p.port(), /*required=*/true);
      Port(Join(path, "targetPort"), p.target_port(), /*required=*/false);
      if (p.port() != 0 && !numbers.insert(p.port()).second) {
        Error(Join(path, "port"), absl::StrCat(p.port(), " is listed twice"));
      }
      if (!p.name().empty()) {
        if (!IsDnsLabel(p.name())) Error(Join(path, "name"), "must be a DNS label");
        if (!names.insert(p.name()).second) {
          Error(Join(path, "name"), absl::StrCat(Quote(p.name()), " is listed twice"));
        }
      } else if (spec.ports_size() > 1) {
        Error(Join(path, "name"), "required when the Service has several ports");
      }
      if (!p.protocol().empty() && p.protocol() != "HTTP" && p.protocol() != "HTTP2" &&
          p.protocol() != "GRPC" && p.protocol() != "TCP") {
        Error(Join(path, "protocol"),
              absl::StrCat(Quote(p.protocol()), " is not one of HTTP, HTTP2, GRPC, TCP"));
      }
    }
    for (const auto& [key, value] : spec.selector()) {
      if (key.empty()) Error("spec.selector", "label keys must not be empty");
    }
    std::set<std::string> accounts;
    for (int i = 0; i < spec.service_accounts_size(); ++i) {
      const std::string& account = spec.service_accounts(i);
      if (!IsDnsSubdomain(account)) {
        Error(Index("spec.serviceAccounts", i),
              absl::StrCat(Quote(account), " is not a service account name (a DNS subdomain)"));
      } else if (!accounts.insert(account).second) {
        Error(Index("spec.serviceAccounts", i), absl::StrCat(Quote(account), " is listed twice"));
      }
    }
    ServiceAddresses(s);
  }

  // spec.addresses: IPs written canonically, none reserved, none twice, and none another
  // Service already has (declared or allocated).
  void ServiceAddresses(const pb::Service& s) {
    const pb::ServiceSpec& spec = s.spec();
    if (static_cast<size_t>(spec.addresses_size()) > limits_.max_addresses) {
      Error("spec.addresses", absl::StrCat("at most ", limits_.max_addresses, " addresses"));
    }
    std::set<net::IpAddress> seen;
    for (int i = 0; i < spec.addresses_size(); ++i) {
      const std::string path = Index("spec.addresses", i);
      const std::string& text = spec.addresses(i);
      absl::StatusOr<net::IpAddress> address = net::IpAddress::Parse(text);
      if (!address.ok()) {
        Error(path, absl::StrCat(Quote(text), " is not an IP address (10.96.0.10, fd00::10)"));
        continue;
      }
      if (address->ToString() != text) {
        Error(path, absl::StrCat("write it as ", address->ToString()));
        continue;
      }
      if (absl::string_view kind = ReservedAddressKind(*address); !kind.empty()) {
        Error(path, absl::StrCat(text, " is not allowed (", kind, ")"));
        continue;
      }
      if (!seen.insert(*address).second) {
        Error(path, absl::StrCat(text, " is listed twice"));
        continue;
      }
      if (existing_ == nullptr) continue;
      for (const pb::Service& other : existing_->services) {
        const std::string other_ns =
            other.metadata().namespace_().empty() ? "default" : other.metadata().namespace_();
        if (other_ns == namespace_ && other.metadata().name() == s.metadata().name()) continue;
        for (const auto* list : {&other.spec().addresses(), &other.status().addresses()}) {
          for (const std::string& used : *list) {
            absl::StatusOr<net::IpAddress> parsed = net::IpAddress::Parse(used);
            if (parsed.ok() && *parsed == *address) {
              Error(path, absl::StrCat(text, " is already an address of Service ", other_ns, "/",
                                       other.metadata().name(),
                                       list == &other.status().addresses() ? " (allocated)" : ""));
            }
          }
        }
      }
    }
  }

  // An address range for Service addresses (MeshConfig): a CIDR of `family`, with room for at
  // least two addresses, overlapping no reserved range.
  void AddressRange(absl::string_view path, const std::string& text,
                    net::IpAddress::Family family) {
    if (text.empty()) return;
    absl::StatusOr<net::IpPrefix> range = net::IpPrefix::Parse(text);
    if (!range.ok()) {
      Error(path, std::string(range.status().message()));
      return;
    }
    const bool v4 = family == net::IpAddress::Family::kIPv4;
    if (range->family() != family) {
      Error(path, absl::StrCat(Quote(text), " is not an ", v4 ? "IPv4" : "IPv6", " range"));
      return;
    }
    // IPv4 ranges leave out their first and last address, IPv6 ranges their first.
    const int max_length = v4 ? 30 : 127;
    if (range->length() > max_length) {
      Error(path, absl::StrCat(Quote(text), " is too small: the prefix length must be at most ",
                               max_length, " (room for two addresses)"));
      return;
    }
    for (const ReservedRange& reserved : ReservedRanges()) {
      if (range->Overlaps(reserved.range)) {
        Error(path, absl::StrCat(Quote(text), " overlaps ", reserved.range.ToString(), " (",
                                 reserved.kind, " addresses)"));
        return;
      }
    }
  }

  void TrafficPolicy(const pb::TrafficPolicy& tp) {
    const pb::TrafficPolicySpec& spec = tp.spec();
    if (spec.target_refs_size() == 0) {
      ServiceRef("spec.target", spec.target());
    } else {
      if (!spec.target().empty()) {
        Error("spec.target", "not with targetRefs (one or the other)");
      }
      for (int i = 0; i < spec.target_refs_size(); ++i) {
        const pb::PolicyTargetReference& ref = spec.target_refs(i);
        const std::string path = Index("spec.targetRefs", i);
        if (ref.group() != "meshlet.io" || ref.kind() != "ExternalService") {
          Error(path, absl::StrCat(ref.group().empty() ? "" : ref.group() + "/", ref.kind(),
                                   " is not a target of a TrafficPolicy's targetRefs: only "
                                   "meshlet.io/ExternalService (a Service is named by target)"));
        }
        if (!IsDnsSubdomain(ref.name())) {
          Error(Join(path, "name"), absl::StrCat(Quote(ref.name()), " is not a name"));
        }
      }
      // What only a mesh Service's sidecars or endpoints can do.
      for (const auto& [set, field] : {std::pair{spec.has_rate_limit(), "spec.rateLimit"},
                                       std::pair{!spec.mtls().empty(), "spec.mtls"},
                                       std::pair{spec.has_locality(), "spec.locality"}}) {
        if (set) Error(field, "not for an ExternalService (targetRefs)");
      }
    }
    LoadBalancer("spec.loadBalancer", spec.load_balancer());
    if (spec.has_timeouts()) Timeouts("spec.timeouts", spec.timeouts());
    if (spec.has_retries()) Retries("spec.retries", spec.retries());
    if (spec.has_circuit_breaker()) CircuitBreaker("spec.circuitBreaker", spec.circuit_breaker());
    if (spec.has_outlier_detection()) Outlier("spec.outlierDetection", spec.outlier_detection());
    if (spec.has_rate_limit()) RateLimit("spec.rateLimit", spec.rate_limit());
    if (spec.has_connection_pool()) ConnectionPool("spec.connectionPool", spec.connection_pool());
    if (spec.has_overload()) Overload("spec.overload", spec.overload());
    if (spec.has_locality()) Locality("spec.locality", spec.locality());
    MtlsMode("spec.mtls", spec.mtls());
  }

  void Match(absl::string_view path, const pb::HTTPRouteMatch& m) {
    if (m.has_path()) {
      std::string p = Join(path, "path");
      const std::string& type = m.path().type();
      if (!type.empty() && type != "PathPrefix" && type != "Exact") {
        Error(Join(p, "type"), absl::StrCat(Quote(type), " is not one of PathPrefix, Exact"));
      }
      const std::string& value = m.path().value();
      if (value.empty() || value[0] != '/') {
        Error(Join(p, "value"), "must start with '/'");
      } else if (value.find_first_of("?#") != std::string::npos) {
        Error(Join(p, "value"), "must not contain a query string or fragment");
      }
    }
    for (int i = 0; i < m.headers_size(); ++i) {
      const auto& h = m.headers(i);
      std::string hp = Index(Join(path, "headers"), i);
      if (!IsHttpToken(h.name())) {
        Error(Join(hp, "name"), h.name().empty()
                                    ? std::string("required")
                                    : absl::StrCat(Quote(h.name()), " is not a header name"));
      }
      const std::string& type = h.type();
      if (!type.empty() && type != "Exact" && type != "Prefix" && type != "Present") {
        Error(Join(hp, "type"), absl::StrCat(Quote(type), " is not one of Exact, Prefix, Present"));
      }
      if (type == "Present" && !h.value().empty()) {
        Error(Join(hp, "value"), "not used with type Present");
      }
      if (type == "Prefix" && h.value().empty()) {
        Error(Join(hp, "value"), "required with type Prefix (use type Present)");
      }
    }
    if (!m.method().empty() && !HttpMethods().count(m.method())) {
      Error(Join(path, "method"), absl::StrCat(Quote(m.method()), " is not an HTTP method"));
    }
  }

  void Rule(absl::string_view path, const pb::HTTPRouteRule& rule) {
    if (!rule.name().empty() && !IsDnsLabel(rule.name())) {
      Error(Join(path, "name"), "must be a DNS label");
    }
    if (static_cast<size_t>(rule.matches_size()) > limits_.max_matches) {
      Error(Join(path, "matches"), absl::StrCat("at most ", limits_.max_matches));
    }
    for (int i = 0; i < rule.matches_size(); ++i) {
      Match(Index(Join(path, "matches"), i), rule.matches(i));
    }
    int actions = (rule.backends_size() > 0) + rule.has_redirect() + rule.has_direct_response();
    if (actions == 0) {
      Error(Join(path, "backends"),
            "required (or redirect, or directResponse); an empty rule would route nowhere");
    } else if (actions > 1) {
      Error(path, "set only one of backends, redirect, directResponse");
    }
    if (static_cast<size_t>(rule.backends_size()) > limits_.max_backends) {
      Error(Join(path, "backends"), absl::StrCat("at most ", limits_.max_backends));
    }
    uint64_t weight_sum = 0;
    std::set<std::string> seen;
    for (int i = 0; i < rule.backends_size(); ++i) {
      const pb::HTTPBackend& b = rule.backends(i);
      std::string bp = Index(Join(path, "backends"), i);
      const pb::Service* service = ServiceRef(Join(bp, "service"), b.service());
      if (b.port() > 65535) {
        Error(Join(bp, "port"), "must be between 1 and 65535");
      } else if (b.port() != 0 && service != nullptr) {
        bool found = false;
        for (const auto& p : service->spec().ports()) found |= p.port() == b.port();
        if (!found) {
          Error(Join(bp, "port"),
                absl::StrCat("Service ", Quote(b.service()), " has no port ", b.port()));
        }
      }
      if (b.weight() > limits_.max_weight) {
        Error(Join(bp, "weight"), absl::StrCat("must be at most ", limits_.max_weight));
      }
      weight_sum += b.weight();
      for (const auto& [key, value] : b.subset()) {
        if (key.empty()) Error(Join(bp, "subset"), "label keys must not be empty");
      }
      std::string identity = absl::StrCat(b.service(), ":", b.port(), "|",
                                          absl::StrJoin(b.subset(), ",", absl::PairFormatter("=")));
      if (!seen.insert(identity).second) {
        Error(bp, "the same backend (service, port, subset) is listed twice");
      }
    }
    // Weights are relative (they need not sum to 100). All unset: an even split; a 0 next to
    // non-zero weights takes a backend out of rotation, which is how a canary is drained.
    if (weight_sum > limits_.max_weight) {
      Error(Join(path, "backends"),
            absl::StrCat("weights sum to ", weight_sum, "; at most ", limits_.max_weight));
    }
    if (rule.has_timeout()) PositiveDuration(Join(path, "timeout"), true, rule.timeout());
    if (rule.has_retries()) Retries(Join(path, "retries"), rule.retries());
    if (rule.has_retries() && rule.retries().has_budget_percent()) {
      Error(Join(path, "retries.budgetPercent"),
            "the retry budget is per Service: set it in a TrafficPolicy");
    }
    if (rule.has_request_headers()) {
      HeaderModifier(Join(path, "requestHeaders"), rule.request_headers());
    }
    if (rule.has_response_headers()) {
      HeaderModifier(Join(path, "responseHeaders"), rule.response_headers());
    }
    if (rule.has_fault()) Fault(Join(path, "fault"), rule.fault());
    if (rule.has_redirect()) {
      const pb::Redirect& r = rule.redirect();
      std::string rp = Join(path, "redirect");
      if (r.scheme().empty() && r.host().empty() && r.path().empty() && r.port() == 0) {
        Error(rp, "needs at least one of scheme, host, path, port");
      }
      if (!r.scheme().empty() && r.scheme() != "http" && r.scheme() != "https") {
        Error(Join(rp, "scheme"), "must be http or https");
      }
      if (!r.host().empty() && !IsHostName(r.host())) {
        Error(Join(rp, "host"), absl::StrCat(Quote(r.host()), " is not a host name"));
      }
      if (!r.path().empty() && r.path()[0] != '/') Error(Join(rp, "path"), "must start with '/'");
      if (r.port() > 65535) Error(Join(rp, "port"), "must be between 1 and 65535");
      uint32_t code = r.status_code();
      if (code != 0 && code != 301 && code != 302 && code != 303 && code != 307 && code != 308) {
        Error(Join(rp, "statusCode"), "must be 301, 302, 303, 307 or 308");
      }
    }
    if (rule.has_direct_response()) {
      std::string dp = Join(path, "directResponse");
      uint32_t status = rule.direct_response().status();
      if (status < 200 || status > 599) Error(Join(dp, "status"), "must be between 200 and 599");
      if (rule.direct_response().body().size() > kMaxDirectResponseBody) {
        Error(Join(dp, "body"), "must be at most 64 KiB");
      }
    }
    if (rule.has_rewrite()) {
      std::string rp = Join(path, "rewrite");
      const pb::Rewrite& rw = rule.rewrite();
      if (rw.path_prefix().empty() && rw.host().empty()) Error(rp, "needs pathPrefix or host");
      if (!rw.path_prefix().empty() && rw.path_prefix()[0] != '/') {
        Error(Join(rp, "pathPrefix"), "must start with '/'");
      }
      if (!rw.host().empty() && !IsHostName(rw.host())) {
        Error(Join(rp, "host"), absl::StrCat(Quote(rw.host()), " is not a host name"));
      }
      if (rule.backends_size() == 0) Error(rp, "only used with backends");
    }
  }

  void HttpRoute(const pb::HTTPRoute& route) {
    const pb::HTTPRouteSpec& spec = route.spec();
    ServiceRef("spec.target", spec.target());
    if (static_cast<size_t>(spec.hostnames_size()) > limits_.max_hostnames) {
      Error("spec.hostnames", absl::StrCat("at most ", limits_.max_hostnames));
    }
    for (int i = 0; i < spec.hostnames_size(); ++i) {
      if (!IsHostName(spec.hostnames(i))) {
        Error(Index("spec.hostnames", i),
              absl::StrCat(Quote(spec.hostnames(i)), " is not a host name"));
      }
    }
    if (spec.rules().empty()) Error("spec.rules", "at least one rule is required");
    if (static_cast<size_t>(spec.rules_size()) > limits_.max_rules) {
      Error("spec.rules", absl::StrCat("at most ", limits_.max_rules, " rules"));
    }
    std::set<std::string> names;
    for (int i = 0; i < spec.rules_size(); ++i) {
      std::string path = Index("spec.rules", i);
      Rule(path, spec.rules(i));
      if (!spec.rules(i).name().empty() && !names.insert(spec.rules(i).name()).second) {
        Error(Join(path, "name"), absl::StrCat(Quote(spec.rules(i).name()), " is used twice"));
      }
    }
  }

  // A policy's targetRefs (instead of target): Services or Gateways of its namespace.
  void TargetRefs(const std::string& target,
                  const google::protobuf::RepeatedPtrField<pb::PolicyTargetReference>& refs) {
    if (refs.empty()) return;
    if (!target.empty()) {
      Error("spec.targetRefs", "set together with spec.target: name the targets in one of them");
    }
    if (refs.size() > kMaxTargetRefs) {
      Error("spec.targetRefs",
            absl::StrCat("has ", refs.size(), " entries; at most ", kMaxTargetRefs));
    }
    for (int i = 0; i < refs.size(); ++i) {
      const std::string path = Index("spec.targetRefs", i);
      const pb::PolicyTargetReference& ref = refs[i];
      if (ref.kind() == "Service") {
        if (!ref.group().empty() && ref.group() != "core") {
          Error(Join(path, "group"),
                absl::StrCat(Quote(ref.group()), " is not the group of a Service (\"\" or core)"));
        }
        ServiceRef(Join(path, "name"), ref.name());
      } else if (ref.kind() == "Gateway") {
        if (ref.group() != kGatewayGroup) {
          Error(Join(path, "group"), absl::StrCat("must be ", kGatewayGroup, " for a Gateway"));
        }
        if (ref.name().empty()) {
          Error(Join(path, "name"), "required");
        } else if (!IsDnsSubdomain(ref.name())) {
          Error(Join(path, "name"), absl::StrCat(Quote(ref.name()), " is not a Gateway name"));
        }
      } else {
        Error(Join(path, "kind"),
              absl::StrCat(Quote(ref.kind()), " is not a supported kind: Service, Gateway"));
      }
    }
  }

  void AuthorizationPolicy(const pb::AuthorizationPolicy& ap) {
    const pb::AuthorizationPolicySpec& spec = ap.spec();
    if (!spec.target().empty()) ServiceRef("spec.target", spec.target());
    TargetRefs(spec.target(), spec.target_refs());
    if (!spec.action().empty() && spec.action() != "ALLOW" && spec.action() != "DENY") {
      Error("spec.action", absl::StrCat(Quote(spec.action()), " is not one of ALLOW, DENY"));
    }
    for (int i = 0; i < spec.rules_size(); ++i) {
      std::string path = Index("spec.rules", i);
      const pb::AuthorizationRule& rule = spec.rules(i);
      for (int j = 0; j < rule.from_size(); ++j) {
        std::string fp = Index(Join(path, "from"), j);
        const auto& from = rule.from(j);
        for (int k = 0; k < from.principals_size(); ++k) {
          const std::string& p = from.principals(k);
          if (p != "*" && !absl::StartsWith(p, "spiffe://")) {
            Error(Index(Join(fp, "principals"), k),
                  absl::StrCat(Quote(p), " must be \"*\" or a SPIFFE id (spiffe://...)"));
          } else if (p.find('*') != std::string::npos && p.find('*') != p.size() - 1) {
            Error(Index(Join(fp, "principals"), k), "'*' is allowed only at the end");
          }
        }
        auto request_principals = [&](absl::string_view field,
                                      const google::protobuf::RepeatedPtrField<std::string>& ps) {
          for (int k = 0; k < ps.size(); ++k) {
            const std::string& p = ps[k];
            if (p != "*" && !absl::StrContains(p, '/')) {
              Error(Index(Join(fp, field), k),
                    absl::StrCat(Quote(p), " must be \"*\" or <issuer>/<subject>"));
            } else if (p.find('*') != std::string::npos && p.find('*') != p.size() - 1) {
              Error(Index(Join(fp, field), k), "'*' is allowed only at the end");
            }
          }
        };
        request_principals("requestPrincipals", from.request_principals());
        request_principals("notRequestPrincipals", from.not_request_principals());
        for (int k = 0; k < from.namespaces_size(); ++k) {
          const std::string& ns = from.namespaces(k);
          if (ns != "*" && !IsDnsLabel(ns)) {
            Error(Index(Join(fp, "namespaces"), k), absl::StrCat(Quote(ns), " is not a namespace"));
          }
        }
      }
      for (int j = 0; j < rule.when_size(); ++j) {
        const std::string wp = Index(Join(path, "when"), j);
        const pb::AuthorizationRule::Condition& c = rule.when(j);
        const bool principal = c.key() == kRequestPrincipalKey;
        if (!principal && ClaimPathOfKey(c.key()).empty()) {
          Error(Join(wp, "key"),
                absl::StrCat(Quote(c.key()),
                             " is not a supported key: request.auth.claims[NAME] (nested: "
                             "request.auth.claims[NAME][NAME], at most ",
                             kMaxClaimDepth,
                             " levels), request.auth.audiences, request.auth.presenter, "
                             "request.auth.principal"));
        }
        if (c.values_size() == 0) Error(Join(wp, "values"), "required");
        for (int k = 0; k < c.values_size(); ++k) {
          const std::string& v = c.values(k);
          if (v.empty() || (v.find('*') != std::string::npos && v.find('*') != v.size() - 1)) {
            Error(Index(Join(wp, "values"), k), "must be non-empty, with '*' only at the end");
          } else if (principal && v != "*" && !absl::StrContains(v, '/')) {
            Error(Index(Join(wp, "values"), k),
                  absl::StrCat(Quote(v), " must be \"*\" or <issuer>/<subject>"));
          }
        }
      }
      for (int j = 0; j < rule.to_size(); ++j) {
        std::string tp = Index(Join(path, "to"), j);
        const auto& to = rule.to(j);
        for (int k = 0; k < to.ports_size(); ++k) {
          Port(Index(Join(tp, "ports"), k), to.ports(k), /*required=*/true);
        }
        for (int k = 0; k < to.methods_size(); ++k) {
          if (!HttpMethods().count(to.methods(k))) {
            Error(Index(Join(tp, "methods"), k),
                  absl::StrCat(Quote(to.methods(k)), " is not an HTTP method"));
          }
        }
        for (int k = 0; k < to.hosts_size(); ++k) {
          const std::string& h = to.hosts(k);
          if (h != "*" && (!IsHostName(h) || h != absl::AsciiStrToLower(h))) {
            Error(Index(Join(tp, "hosts"), k),
                  absl::StrCat(Quote(h), " is not a lower-case host name, *.suffix or \"*\""));
          }
        }
        for (int k = 0; k < to.paths_size(); ++k) {
          const std::string& p = to.paths(k);
          if (p != "*" && (p.empty() || p[0] != '/')) {
            Error(Index(Join(tp, "paths"), k), "must start with '/' (or be \"*\")");
          } else if (p.find('*') != std::string::npos && p.find('*') != p.size() - 1) {
            Error(Index(Join(tp, "paths"), k), "'*' is allowed only at the end");
          }
        }
      }
    }
  }

  // ExternalService: lower-case hosts (wildcards only where nothing is resolved), ports of TLS
  // (by server name) or TCP (by address, so `addresses` are needed), and endpoints that fit the
  // resolution.
  void ExternalService(const pb::ExternalService& es) {
    const pb::ExternalServiceSpec& spec = es.spec();
    const std::string resolution = spec.resolution().empty() ? "DNS" : spec.resolution();
    if (resolution != "DNS" && resolution != "STATIC" && resolution != "NONE") {
      Error("spec.resolution",
            absl::StrCat(Quote(spec.resolution()), " is not DNS, STATIC or NONE"));
    }
    if (spec.hosts_size() == 0) Error("spec.hosts", "required: at least one host name");
    std::set<std::string> hosts;
    for (int i = 0; i < spec.hosts_size(); ++i) {
      const std::string& host = spec.hosts(i);
      const std::string path = Index("spec.hosts", i);
      if (!IsHostName(host) || host != absl::AsciiStrToLower(host)) {
        Error(path, absl::StrCat(Quote(host), " is not a lower-case host name or *.suffix"));
      } else if (!hosts.insert(host).second) {
        Error(path, absl::StrCat(Quote(host), " is listed twice"));
      } else if (absl::StartsWith(host, "*.") && resolution == "DNS") {
        Error(path, absl::StrCat(Quote(host),
                                 ": a wildcard cannot be resolved; use resolution NONE (to the "
                                 "address the app connected to) or STATIC"));
      }
    }
    if (spec.ports_size() == 0) Error("spec.ports", "required: at least one port");
    std::set<uint32_t> numbers;
    bool tcp = false;
    for (int i = 0; i < spec.ports_size(); ++i) {
      const pb::ExternalServicePort& port = spec.ports(i);
      const std::string path = Index("spec.ports", i);
      Port(Join(path, "number"), port.number(), /*required=*/true);
      if (port.number() != 0 && !numbers.insert(port.number()).second) {
        Error(Join(path, "number"), absl::StrCat(port.number(), " is listed twice"));
      }
      if (port.protocol() == "TCP") {
        tcp = true;
      } else if (port.protocol() == "HTTP2" || port.protocol() == "GRPC") {
        Error(Join(path, "protocol"),
              absl::StrCat(port.protocol(),
                           " is not supported (plain HTTP is matched by the Host of an HTTP/1 "
                           "request); use HTTP, or TLS (matched by server name)"));
      } else if (port.protocol() != "TLS" && port.protocol() != "HTTPS" &&
                 port.protocol() != "HTTP") {
        Error(Join(path, "protocol"),
              absl::StrCat(Quote(port.protocol()), " is not HTTP, TLS, HTTPS or TCP"));
      }
      if (port.target_port() != 0) {
        Port(Join(path, "targetPort"), port.target_port(), /*required=*/false);
        if (resolution == "NONE") {
          Error(Join(path, "targetPort"),
                "not with resolution NONE (the connection goes to the port the app addressed)");
        }
      }
      if (port.has_tls()) ExternalServiceTls(Join(path, "tls"), port, resolution, spec);
    }
    for (int i = 0; i < spec.addresses_size(); ++i) {
      if (absl::StatusOr<net::IpPrefix> range = net::IpPrefix::Parse(spec.addresses(i));
          !range.ok()) {
        Error(Index("spec.addresses", i), range.status().message());
      }
    }
    if (tcp && spec.addresses_size() == 0) {
      Error("spec.addresses",
            "required with a TCP port: a TCP connection carries no name, so only its address "
            "tells it is for this service");
    }
    if (tcp && resolution == "DNS" && spec.hosts_size() > 1) {
      Error("spec.hosts",
            "one host only with a TCP port and resolution DNS (the connection "
            "does not say which host it is for)");
    }
    if (const std::string& gateway = spec.egress_gateway(); !gateway.empty()) {
      const std::vector<std::string> parts = absl::StrSplit(gateway, absl::MaxSplits('/', 1));
      if (parts.size() != 2 || !IsDnsLabel(parts[0]) || !IsDnsSubdomain(parts[1])) {
        Error("spec.egressGateway",
              absl::StrCat(Quote(gateway), " is not NAMESPACE/NAME of a Gateway"));
      }
      if (resolution == "NONE") {
        Error("spec.egressGateway",
              "not with resolution NONE (the gateway must know where the service is)");
      }
      for (int i = 0; i < spec.ports_size(); ++i) {
        if (spec.ports(i).protocol() != "HTTP") {
          Error(Join(Index("spec.ports", i), "protocol"),
                absl::StrCat(spec.ports(i).protocol().empty() ? "a port without protocol"
                                                              : spec.ports(i).protocol(),
                             " does not go through an egress gateway yet: only HTTP ports do"));
        }
      }
    }
    if (resolution == "STATIC" && spec.endpoints_size() == 0) {
      Error("spec.endpoints", "required with resolution STATIC");
    } else if (resolution != "STATIC" && spec.endpoints_size() > 0) {
      Error("spec.endpoints", absl::StrCat("only with resolution STATIC (not ", resolution, ")"));
    }
    for (int i = 0; i < spec.endpoints_size(); ++i) {
      if (absl::StatusOr<net::IpAddress> ip = net::IpAddress::Parse(spec.endpoints(i)); !ip.ok()) {
        Error(Index("spec.endpoints", i),
              absl::StrCat(Quote(spec.endpoints(i)), " is not an IP address"));
      }
    }
  }

  // An ExternalService port's TLS origination: on HTTP ports whose endpoints the sidecar knows
  // (DNS or STATIC), for exact hosts (each is the server name sent and verified), with CA
  // certificates that parse and references that name objects.
  void ExternalServiceTls(const std::string& path, const pb::ExternalServicePort& port,
                          const std::string& resolution, const pb::ExternalServiceSpec& spec) {
    const pb::ExternalServiceTls& tls = port.tls();
    if (port.protocol() != "HTTP") {
      Error(path, absl::StrCat("only on HTTP ports (the app speaks plain HTTP and the sidecar "
                               "TLS); a ",
                               port.protocol().empty() ? "port without protocol" : port.protocol(),
                               " port carries the app's own bytes"));
    }
    if (resolution == "NONE") {
      Error(path,
            "not with resolution NONE (the connection is passed through as addressed); use DNS "
            "or STATIC");
    }
    for (const std::string& host : spec.hosts()) {
      if (absl::StartsWith(host, "*.")) {
        Error(path, absl::StrCat("not with the wildcard host ", Quote(host),
                                 " (the server name sent and verified is the host)"));
        break;
      }
    }
    if (!tls.ca_certificates().empty()) {
      if (absl::StatusOr<tls::CertificateChain> certificates =
              tls::ParsePemCertificates(tls.ca_certificates());
          !certificates.ok()) {
        Error(Join(path, "caCertificates"),
              absl::StrCat("not PEM certificates: ", certificates.status().message()));
      }
    }
    for (int i = 0; i < tls.ca_certificate_refs_size(); ++i) {
      if (!IsDnsSubdomain(tls.ca_certificate_refs(i))) {
        Error(Index(Join(path, "caCertificateRefs"), i),
              absl::StrCat(Quote(tls.ca_certificate_refs(i)), " is not a ConfigMap name"));
      }
    }
    if (!tls.client_certificate_ref().empty() && !IsDnsSubdomain(tls.client_certificate_ref())) {
      Error(Join(path, "clientCertificateRef"),
            absl::StrCat(Quote(tls.client_certificate_ref()), " is not a Secret name"));
    }
  }

  // RequestAuthentication: each rule an issuer named once, its keys from exactly one of an
  // https:// jwksUri and an inline JWKS the sidecar's own parser takes (ADR 0098).
  void RequestAuthentication(const pb::RequestAuthentication& ra) {
    const pb::RequestAuthenticationSpec& spec = ra.spec();
    if (!spec.target().empty()) ServiceRef("spec.target", spec.target());
    TargetRefs(spec.target(), spec.target_refs());
    if (spec.jwt_rules_size() == 0) {
      Error("spec.jwtRules",
            "required: at least one issuer (a policy without one would refuse "
            "every token)");
    } else if (spec.jwt_rules_size() > kMaxJwtRules) {
      Error("spec.jwtRules",
            absl::StrCat("has ", spec.jwt_rules_size(), " rules; at most ", kMaxJwtRules));
    }
    std::map<std::string, int> issuers;
    for (int i = 0; i < spec.jwt_rules_size(); ++i) {
      const std::string path = Index("spec.jwtRules", i);
      const pb::JwtRule& rule = spec.jwt_rules(i);
      if (rule.issuer().empty()) {
        Error(Join(path, "issuer"), "required");
      } else if (auto [it, inserted] = issuers.emplace(rule.issuer(), i); !inserted) {
        Error(Join(path, "issuer"), absl::StrCat(Quote(rule.issuer()), " is the issuer of ",
                                                 Index("spec.jwtRules", it->second), " too"));
      }
      for (int k = 0; k < rule.audiences_size(); ++k) {
        if (rule.audiences(k).empty()) Error(Index(Join(path, "audiences"), k), "is empty");
      }
      if (!rule.jwks_uri().empty() && !rule.jwks().empty()) {
        Error(path, "give jwksUri or jwks, not both");
      } else if (rule.jwks_uri().empty() && rule.jwks().empty()) {
        // The keys by OpenID Connect discovery: the issuer must be an https:// URL.
        if (rule.issuer().empty() || !http::ParseHttpsUrl(OidcDiscoveryUrl(rule.issuer())).ok()) {
          Error(path,
                "needs jwksUri (an https:// URL the keys are fetched from) or jwks, or an "
                "https:// issuer whose keys OpenID Connect discovery finds");
        }
      } else if (!rule.jwks_uri().empty()) {
        if (absl::StatusOr<http::HttpsUrl> url = http::ParseHttpsUrl(rule.jwks_uri()); !url.ok()) {
          Error(Join(path, "jwksUri"), url.status().message());
        }
      } else if (absl::StatusOr<jwt::JwksParse> jwks = jwt::ParseJwks(rule.jwks()); !jwks.ok()) {
        Error(Join(path, "jwks"), jwks.status().message());
      }
      for (int k = 0; k < rule.from_headers_size(); ++k) {
        const std::string& name = rule.from_headers(k).name();
        if (!IsHttpToken(name)) {
          Error(Join(Index(Join(path, "fromHeaders"), k), "name"),
                name.empty() ? std::string("required")
                             : absl::StrCat(Quote(name), " is not a header name"));
        }
      }
      for (int k = 0; k < rule.from_params_size(); ++k) {
        if (rule.from_params(k).empty()) Error(Index(Join(path, "fromParams"), k), "is empty");
      }
      for (int k = 0; k < rule.output_claim_to_headers_size(); ++k) {
        const pb::JwtRule::ClaimToHeader& c = rule.output_claim_to_headers(k);
        const std::string cp = Index(Join(path, "outputClaimToHeaders"), k);
        if (!IsHttpToken(c.header())) {
          Error(Join(cp, "header"), c.header().empty()
                                        ? std::string("required")
                                        : absl::StrCat(Quote(c.header()), " is not a header name"));
        }
        if (c.claim().empty()) Error(Join(cp, "claim"), "required");
      }
      if (!rule.output_payload_to_header().empty() &&
          !IsHttpToken(rule.output_payload_to_header())) {
        Error(Join(path, "outputPayloadToHeader"),
              absl::StrCat(Quote(rule.output_payload_to_header()), " is not a header name"));
      }
    }
  }

  // MeshConfig's discovery (ADR 0086): the mode (which scopeToDependencies, its older alias for
  // Declared, must not contradict), the wait's bounds, the idle time and the address ranges.
  void Discovery(absl::string_view path, const pb::MeshConfigSpec& spec) {
    const pb::Discovery& d = spec.discovery();
    const std::string mode = Join(path, "mode");
    if (!d.mode().empty() && d.mode() != "OnDemand" && d.mode() != "WholeMesh" &&
        d.mode() != "Declared") {
      Error(mode, absl::StrCat(Quote(d.mode()), " is not one of OnDemand, WholeMesh, Declared"));
    } else if (spec.scope_to_dependencies() && !d.mode().empty() && d.mode() != "Declared") {
      Error(mode, absl::StrCat(Quote(d.mode()),
                               " contradicts spec.scopeToDependencies: true (which means "
                               "Declared); set one of them"));
    }
    if (d.has_timeout()) {
      const double seconds = Seconds(d.timeout());
      if (d.timeout().seconds() < 0 || d.timeout().nanos() < 0 || seconds < 0.010 || seconds > 30) {
        Error(Join(path, "timeout"), "must be between 10ms and 30s");
      }
    }
    if (d.has_idle_time() &&
        (d.idle_time().seconds() < 0 || d.idle_time().nanos() < 0 || Seconds(d.idle_time()) < 10)) {
      Error(Join(path, "idleTime"), "must be at least 10s");
    }
    for (int i = 0; i < d.address_ranges_size(); ++i) {
      absl::StatusOr<net::IpPrefix> range = net::IpPrefix::Parse(d.address_ranges(i));
      if (!range.ok()) {
        Error(Index(Join(path, "addressRanges"), i), std::string(range.status().message()));
      }
    }
  }

  void MeshConfig(const pb::MeshConfig& mc) {
    const pb::MeshConfigSpec& spec = mc.spec();
    if (!spec.trust_domain().empty() && !IsDnsSubdomain(spec.trust_domain())) {
      Error("spec.trustDomain", absl::StrCat(Quote(spec.trust_domain()), " is not a DNS name"));
    }
    MtlsMode("spec.mtls", spec.mtls());
    LoadBalancer("spec.loadBalancer", spec.load_balancer());
    if (!spec.outbound_traffic_policy().empty() && spec.outbound_traffic_policy() != "ALLOW_ANY" &&
        spec.outbound_traffic_policy() != "REGISTRY_ONLY") {
      Error("spec.outboundTrafficPolicy", absl::StrCat(Quote(spec.outbound_traffic_policy()),
                                                       " is not one of ALLOW_ANY, REGISTRY_ONLY"));
    }
    AddressRange("spec.serviceAddressRange", spec.service_address_range(),
                 net::IpAddress::Family::kIPv4);
    AddressRange("spec.serviceAddressRangeV6", spec.service_address_range_v6(),
                 net::IpAddress::Family::kIPv6);
    if (spec.has_discovery()) Discovery("spec.discovery", spec);
    if (spec.has_default_timeouts()) Timeouts("spec.defaultTimeouts", spec.default_timeouts());
    if (spec.has_default_retries()) Retries("spec.defaultRetries", spec.default_retries());
    if (spec.has_tracing()) {
      Percent("spec.tracing.samplingPercent", spec.tracing().sampling_percent());
      for (const auto& [field, url] :
           {std::pair<const char*, const std::string&>{"collector", spec.tracing().collector()},
            {"zipkinCollector", spec.tracing().zipkin_collector()}}) {
        if (!url.empty() && !absl::StartsWith(url, "http://") &&
            !absl::StartsWith(url, "https://")) {
          Error(absl::StrCat("spec.tracing.", field), "must be an http:// or https:// URL");
        }
      }
    }
  }

 private:
  ValidationResult& result_;
  const PolicySnapshot* existing_;
  const ValidationLimits& limits_;
  std::string namespace_;
};

}  // namespace

std::string ValidationResult::ErrorText() const {
  return absl::StrJoin(errors, "\n", [](std::string* out, const FieldError& e) {
    absl::StrAppend(out, e.field.empty() ? "" : e.field, e.field.empty() ? "" : ": ", e.message);
  });
}

absl::string_view ReservedAddressKind(const net::IpAddress& address) {
  for (const ReservedRange& reserved : ReservedRanges()) {
    if (reserved.range.Contains(address)) return reserved.kind;
  }
  return "";
}

std::string OidcDiscoveryUrl(absl::string_view issuer) {
  return absl::StrCat(absl::StripSuffix(issuer, "/"), "/.well-known/openid-configuration");
}

std::string JwksSourceOf(const meshlet::policy::JwtRule& rule) {
  if (!rule.jwks_uri().empty()) return rule.jwks_uri();
  if (!rule.jwks().empty()) return "";
  return OidcDiscoveryUrl(rule.issuer());
}

std::vector<std::string> ClaimPathOfKey(absl::string_view key) {
  if (key == "request.auth.audiences") return {"aud"};
  if (key == "request.auth.presenter") return {"azp"};
  if (!absl::ConsumePrefix(&key, "request.auth.claims[") || !absl::ConsumeSuffix(&key, "]")) {
    return {};
  }
  std::vector<std::string> path = absl::StrSplit(key, "][");
  if (path.size() > static_cast<size_t>(kMaxClaimDepth)) return {};
  for (const std::string& part : path) {
    if (part.empty() || absl::StrContains(part, '[') || absl::StrContains(part, ']')) return {};
  }
  return path;
}

ValidationResult Validate(const google::protobuf::Message& resource, const PolicySnapshot* existing,
                          const ValidationLimits& limits) {
  ValidationResult result;
  Checker checker(result, existing, limits);
  const KindInfo& info = InfoOf(resource);
  checker.Metadata(resource, info);
  const google::protobuf::Descriptor* d = info.descriptor;
  if (d == pb::Service::descriptor()) {
    checker.Service(static_cast<const pb::Service&>(resource));
  } else if (d == pb::TrafficPolicy::descriptor()) {
    checker.TrafficPolicy(static_cast<const pb::TrafficPolicy&>(resource));
  } else if (d == pb::HTTPRoute::descriptor()) {
    checker.HttpRoute(static_cast<const pb::HTTPRoute&>(resource));
  } else if (d == pb::AuthorizationPolicy::descriptor()) {
    checker.AuthorizationPolicy(static_cast<const pb::AuthorizationPolicy&>(resource));
  } else if (d == pb::RequestAuthentication::descriptor()) {
    checker.RequestAuthentication(static_cast<const pb::RequestAuthentication&>(resource));
  } else if (d == pb::ExternalService::descriptor()) {
    checker.ExternalService(static_cast<const pb::ExternalService&>(resource));
  } else if (d == pb::MeshConfig::descriptor()) {
    checker.MeshConfig(static_cast<const pb::MeshConfig&>(resource));
  } else if (d == meshlet::gateway::HTTPRoute::descriptor()) {
    gateway_validation::HttpRoute(static_cast<const meshlet::gateway::HTTPRoute&>(resource),
                                  result);
  } else if (d == meshlet::gateway::GRPCRoute::descriptor()) {
    gateway_validation::GrpcRoute(static_cast<const meshlet::gateway::GRPCRoute&>(resource),
                                  result);
  } else if (d == meshlet::gateway::ReferenceGrant::descriptor()) {
    gateway_validation::ReferenceGrant(
        static_cast<const meshlet::gateway::ReferenceGrant&>(resource), result);
  } else if (d == meshlet::gateway::GatewayClass::descriptor()) {
    gateway_validation::GatewayClass(static_cast<const meshlet::gateway::GatewayClass&>(resource),
                                     result);
  } else if (d == meshlet::gateway::Gateway::descriptor()) {
    gateway_validation::Gateway(static_cast<const meshlet::gateway::Gateway&>(resource), result);
  } else if (d == meshlet::gateway::BackendTLSPolicy::descriptor()) {
    gateway_validation::BackendTLSPolicy(
        static_cast<const meshlet::gateway::BackendTLSPolicy&>(resource), result);
  }
  return result;
}

}  // namespace meshlet::controlplane::policy

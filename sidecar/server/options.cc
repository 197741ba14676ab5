#include "sidecar/server/options.h"

#include <limits.h>
#include <unistd.h>

#include <functional>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/base/status.h"
#include "common/flags/flags.h"
#include "common/http/authority.h"
#include "common/net/interfaces.h"
#include "common/tls/spiffe.h"

namespace meshlet::sidecar::server {
namespace {

constexpr absl::string_view kDefaultAdminAddress = "127.0.0.1:15000";
// The value of --node-id, --node-address and --capture-check's host that the sidecar fills in.
constexpr absl::string_view kAuto = "auto";

// "4194304", "512KiB", "4MiB", "1GiB": a byte count; nullopt when malformed or above `max`.
std::optional<size_t> ParseByteSize(absl::string_view text, size_t max) {
  size_t unit = 1;
  for (const auto& [suffix, factor] : {std::pair<absl::string_view, size_t>{"KiB", size_t{1} << 10},
                                       {"MiB", size_t{1} << 20},
                                       {"GiB", size_t{1} << 30}}) {
    if (absl::ConsumeSuffix(&text, suffix)) {
      unit = factor;
      break;
    }
  }
  uint64_t count = 0;
  if (!absl::SimpleAtoi(text, &count) || count > max / unit) return std::nullopt;
  return static_cast<size_t>(count * unit);
}

using Setter = std::function<absl::Status(absl::string_view)>;

// Setters shared by several flags. Their errors say what is wrong with the value; the parser
// names the flag and the value.
Setter Text(std::string* out, bool non_empty = false) {
  return [out, non_empty](absl::string_view v) {
    if (non_empty && v.empty()) return absl::InvalidArgumentError("must not be empty");
    *out = std::string(v);
    return absl::OkStatus();
  };
}

Setter TrueOrFalse(bool* out) {
  return [out](absl::string_view v) {
    if (v != "true" && v != "false") return absl::InvalidArgumentError("must be true or false");
    *out = v == "true";
    return absl::OkStatus();
  };
}

// "host:port[,host:port...]": replicas of the control plane, tried in turn.
Setter HostPorts(std::string* out) {
  return [out](absl::string_view v) {
    for (absl::string_view entry : absl::StrSplit(v, ',')) {
      if (!net::SplitHostPort(entry).ok()) {
        return absl::InvalidArgumentError(
            v == entry
                ? std::string("must be host:port")
                : absl::StrCat("\"", entry, "\" must be host:port (a list: host:port,host:port)"));
      }
    }
    *out = std::string(v);
    return absl::OkStatus();
  };
}

Setter HostPort(std::string* out) {
  return [out](absl::string_view v) {
    size_t colon = v.rfind(':');
    uint32_t port = 0;
    if (colon == absl::string_view::npos || colon == 0 ||
        !absl::SimpleAtoi(v.substr(colon + 1), &port) || port == 0 || port > 65535) {
      return absl::InvalidArgumentError("must be host:port");
    }
    *out = std::string(v);
    return absl::OkStatus();
  };
}

template <typename Target>
Setter IpPort(Target* out) {
  return [out](absl::string_view v) {
    absl::StatusOr<net::Address> address = net::Address::Parse(v);
    if (!address.ok()) return absl::InvalidArgumentError(address.status().message());
    *out = *address;
    return absl::OkStatus();
  };
}

// IP:PORT as IpPort, and also an IPv6 address without brackets before its port
// ("fd00::5:15008"), which is what "$(POD_IP):15008" gives in a pod whose address is IPv6.
Setter PodIpPort(std::optional<net::Address>* out) {
  return [out](absl::string_view v) {
    absl::StatusOr<net::Address> address = net::Address::Parse(v);
    const size_t last_colon = v.rfind(':');
    if (!address.ok() && !absl::StartsWith(v, "[") && last_colon != absl::string_view::npos &&
        v.find(':') != last_colon) {
      address = net::Address::Parse(
          absl::StrCat("[", v.substr(0, last_colon), "]", v.substr(last_colon)));
    }
    if (!address.ok()) return absl::InvalidArgumentError(address.status().message());
    *out = *address;
    return absl::OkStatus();
  };
}

flags::Flag MakeFlag(std::string name, std::string value, std::string help, Setter set) {
  return {.name = std::move(name),
          .value = std::move(value),
          .help = std::move(help),
          .set = std::move(set)};
}

// The sidecar's flags, writing into `parsed`.
std::vector<flags::Flag> Flags(ParsedCommandLine& parsed) {
  ServerOptions& o = parsed.options;
  auto flag = MakeFlag;
  return {
      flag("--config", "FILE",
           "Bootstrap file (YAML or JSON): node identity and static listeners, routes, clusters, "
           "endpoints and secrets. Required.",
           Text(&o.config_path, true)),
      flags::IntFlag("--concurrency", "N", &o.concurrency,
                     "Worker threads; each runs its own copy of every listener. Default 2.", 1,
                     256),
      flag("--admin-address", "IP:PORT",
           "Admin HTTP endpoint (/ready, /stats, /config_dump, ...). Default 127.0.0.1:15000. Keep "
           "it on loopback: it can drain and stop the process.",
           IpPort(&o.admin_address)),
      flag("--admin-host", "NAME",
           "Repeatable. A name the admin endpoint answers to besides IP addresses and localhost; "
           "requests naming any other Host get 403, so that a web page on a name resolving to "
           "127.0.0.1 (DNS rebinding) cannot read it.",
           [&o](absl::string_view v) -> absl::Status {
             const std::optional<http::HostPort> name = http::ParseHostPort(v);
             if (!name.has_value() || name->has_port || name->host.empty() ||
                 name->host.front() == '[') {
               return absl::InvalidArgumentError(
                   "must be a host name without port, e.g. sidecar.local");
             }
             o.admin_hosts.emplace_back(v);
             return absl::OkStatus();
           }),
      flag("--prometheus-address", "IP:PORT",
           "A read-only listener serving only GET /stats/prometheus and /ready, for Prometheus to "
           "scrape from outside the pod (e.g. 0.0.0.0:15020). Default: none.",
           IpPort(&o.prometheus_address)),
      flag("--app-probe", "PATH=PORT/TARGET",
           "Repeatable. The --prometheus-address listener answers GET PATH (under /app-health/) "
           "with the status of the app's GET TARGET on 127.0.0.1:PORT: the app's HTTP probes, "
           "rewritten by injection to reach the app through the sidecar under STRICT mTLS.",
           [&o](absl::string_view v) -> absl::Status {
             const size_t eq = v.find('=');
             const size_t slash = eq == absl::string_view::npos ? eq : v.find('/', eq);
             uint32_t port = 0;
             if (eq == absl::string_view::npos || slash == absl::string_view::npos ||
                 !absl::StartsWith(v, "/app-health/") ||
                 !absl::SimpleAtoi(v.substr(eq + 1, slash - eq - 1), &port) || port == 0 ||
                 port > 65535) {
               return absl::InvalidArgumentError(
                   "must be /app-health/...=PORT/PATH, e.g. /app-health/web/readyz=8080/ready");
             }
             for (const ServerOptions::AppProbe& p : o.app_probes) {
               if (p.path == v.substr(0, eq)) {
                 return absl::InvalidArgumentError(absl::StrCat(p.path, " is already given"));
               }
             }
             o.app_probes.push_back({std::string(v.substr(0, eq)), static_cast<uint16_t>(port),
                                     std::string(v.substr(slash))});
             return absl::OkStatus();
           }),
      flag("--capture-check", "IP:PORT",
           "The pod's own address and a port the inbound capture rules redirect (e.g. "
           "$POD_IP:15008). With a capture listener configured, /ready stays 503 until a "
           "redirected connection has been seen; the sidecar dials this address every second "
           "until then, which the rules send to its inbound listener. An IPv6 address may come "
           "without brackets (fd00::5:15008). auto:PORT: the first address of the pod's network "
           "interfaces (as --node-address=auto). Default: none.",
           [&o](absl::string_view v) {
             absl::string_view port = v;
             if (absl::ConsumePrefix(&port, "auto:")) {
               uint32_t number = 0;
               if (!absl::SimpleAtoi(port, &number) || number == 0 || number > 65535) {
                 return absl::InvalidArgumentError("auto:PORT needs a port from 1 to 65535");
               }
               o.capture_check_auto_port = static_cast<uint16_t>(number);
               o.capture_check.reset();
               return absl::OkStatus();
             }
             o.capture_check_auto_port.reset();
             return PodIpPort(&o.capture_check)(v);
           }),
      flag("--dns-server", "IP:PORT",
           "The DNS server that DNS clusters (external services resolved by the sidecar) ask, "
           "an IPv4 address. Default: the servers, search list and ndots of /etc/resolv.conf.",
           [&o](absl::string_view v) -> absl::Status {
             absl::StatusOr<net::Address> address = net::Address::Parse(v);
             if (!address.ok() || address->in4() == nullptr) {
               return absl::InvalidArgumentError(absl::StrCat(
                   "\"", v, "\" is not an IPv4 address and port (e.g. 10.96.0.10:53)"));
             }
             o.dns_server = *address;
             return absl::OkStatus();
           }),
      flag("--log-level", "LEVEL",
           "trace, debug, info, warn, error, critical or off. Default info. Changeable at run time "
           "with POST /logging?level=...",
           [&o](absl::string_view v) {
             std::optional<LogLevel> level = ParseLogLevel(v);
             if (!level) {
               return absl::InvalidArgumentError(
                   "must be one of trace, debug, info, warn, error, critical, off");
             }
             o.log_level = *level;
             return absl::OkStatus();
           }),
      flags::NonNegativeDurationFlag(
          "--drain-time", &o.drain_time,
          "On SIGTERM, how long to let connections finish before exiting anyway (\"30s\", "
          "\"500ms\"). Default 30s.",
          "30s"),
      flags::NonNegativeDurationFlag(
          "--drain-listen-time", &o.drain_listen_time,
          "On SIGTERM (or POST /drain), how long inbound listeners keep accepting, with every "
          "connection told to close after its request, while the control plane takes this "
          "workload out of its callers' endpoints; then they stop accepting. Default 1s; at most "
          "--drain-time.",
          "1s"),
      flag("--hand-over", "PATH",
           "A unix socket for replacing this process in place (a new binary, or a restart): a "
           "sidecar started with it takes over the listening sockets, configuration and workload "
           "certificate of the sidecar serving PATH, if any, and serves PATH itself once ready "
           "(docs/upgrades.md). Default: none.",
           Text(&o.hand_over_path, true)),
      flags::DurationAtLeastFlag(
          "--hand-over-timeout", absl::Seconds(1), &o.hand_over_timeout,
          "How long a sidecar taking over waits to be ready before it gives up (exit 1; the "
          "running one serves on). Default 60s.",
          "60s"),
      flags::DurationAtLeastFlag(
          "--hand-over-confirm-timeout", absl::Seconds(1), &o.hand_over_confirm_timeout,
          "How long a sidecar taking over, once ready, waits for the running one to confirm that "
          "it stopped accepting; then it serves on without (and, should the running one still "
          "hold the --hand-over socket, without serving it for a next one). Default 10s.",
          "10s"),
      flag("--malloc-trim-threshold", "BYTES",
           "Free memory a malloc arena may hold before it is given back to the kernel (\"4MiB\", "
           "\"512KiB\", bytes). Default 4MiB; 0: glibc's default, which under load can give pages "
           "back and fault them in again hundreds of times a second.",
           [&o](absl::string_view v) {
             constexpr size_t kMax = size_t{1} << 30;
             std::optional<size_t> bytes = ParseByteSize(v, kMax);
             if (!bytes.has_value()) {
               return absl::InvalidArgumentError(
                   "must be a size such as 4MiB, 512KiB or a byte count, at most 1GiB");
             }
             o.malloc_trim_threshold = *bytes;
             return absl::OkStatus();
           }),
      flags::NonNegativeDurationFlag(
          "--memory-release-delay", &o.memory_release_delay,
          "Give the free memory malloc keeps back to the kernel once configuration work (an "
          "xDS update, an on-demand answer, a large admin page) has been quiet this long, or "
          "at the latest 20 times this long after it began. Default 500ms; 0: never.",
          "500ms"),
      flags::IntFlag("--overload-max-rss-mb", "MIB", &o.overload_max_rss_mb,
                     "Shed load above this resident memory: new requests get a local 503 with "
                     "x-meshlet-overloaded (flag OL) until RSS is 10% below it again. Checked "
                     "every 250ms. Default 0: no limit.",
                     uint64_t{0}, uint64_t{1} << 20),
      flags::IntFlag("--overload-max-active-requests", "N", &o.overload_max_active_requests,
                     "Shed load above this many requests in flight (split evenly over the "
                     "workers, each counting its own): the ones beyond get a local 503 with "
                     "x-meshlet-overloaded (flag OL). Default 0: no limit.",
                     uint64_t{0}, uint64_t{1} << 32),
      flags::NonNegativeDurationFlag(
          "--listener-bind-retry", &o.listener_bind_retry,
          "A listener the proxy could not bind (its port taken) is tried again after this, "
          "then at doubling intervals up to --listener-bind-retry-max; the proxy is not ready "
          "until it binds (meshlet_listeners_unbound). Default 1s; 0: only when a new "
          "configuration names it again.",
          "1s"),
      flags::PositiveDurationFlag("--listener-bind-retry-max", &o.listener_bind_retry_max,
                                  "The longest wait between two binds of an unbound listener. "
                                  "Default 30s.",
                                  "30s"),
      flags::IntFlag("--decision-ring-size", "N", &o.decision_ring_size,
                     "Decision records (the route, rule and policy objects, timeouts, "
                     "authorization and attempts of a request) each worker keeps of the last "
                     "requests the proxy failed or that were sampled, for GET /debug/decisions; "
                     "older ones are overwritten, counted in "
                     "meshlet_decision_records_overwritten_total. Default 256; 0: none kept.",
                     uint64_t{0}, uint64_t{1} << 16),
      flags::IntFlag("--tap-max-active", "N", &o.tap_max_active,
                     "Live taps (meshctl tap) this sidecar runs at once; more are refused, "
                     "counted in meshlet_tap_refused_total. Default 4; 0: none.",
                     uint64_t{0}, uint64_t{64}),
      flags::IntFlag("--tap-max-rate", "N", &o.tap_max_rate,
                     "The most events per second one live tap takes (a tap asking more gets "
                     "this); requests over a tap's rate are counted, not sent. Default 100.",
                     uint64_t{1}, uint64_t{100000}),
      flags::PositiveDurationFlag("--tap-max-duration", &o.tap_max_duration,
                                  "The longest a live tap runs (a tap asking more gets this). "
                                  "Default 10m.",
                                  "10m"),
      flags::IntFlag("--tap-max-batch-bytes", "N", &o.tap_max_batch_bytes,
                     "The most event bytes a worker gathers for one tap between two flushes; "
                     "events past it are counted (dropped_cap), not sent. Default 262144.",
                     uint64_t{1024}, uint64_t{4} << 20),
      flags::PositiveDurationFlag("--tap-flush-interval", &o.tap_flush_interval,
                                  "How often live taps' events are sent to the control plane. "
                                  "Default 250ms.",
                                  "250ms"),
      flags::IntFlag("--max-route-stats", "N", &o.max_route_stats,
                     "Route rules (a policy object's rule, as HTTPRoute/default/reviews rule 1) "
                     "with series of their own in meshlet_route_rq_total and "
                     "meshlet_route_rq_duration_seconds, made on a rule's first request; the "
                     "requests of rules past it count in the route=\"overflow\" series and each "
                     "such rule in meshlet_route_stats_overflow_total. Default 256; 0: none.",
                     uint64_t{0}, uint64_t{1} << 20),
      flags::IntFlag("--stats-max-series", "N", &o.stats_max_series,
                     "Series without a cluster label (server, listeners, HTTP, TLS, xDS) the "
                     "stats registry accepts; past it new ones are refused and counted in "
                     "meshlet_stats_series_refused_total{budget=\"fixed\"}. Default 100000; "
                     "at least 10000, so the process's own series always register.",
                     uint64_t{10000}, uint64_t{1} << 24),
      flags::IntFlag("--stats-max-cluster-series", "N", &o.stats_max_cluster_series,
                     "Series with a cluster label (each cluster registers about 60 with its "
                     "first request on a worker) the stats registry accepts; past it a cluster "
                     "still serves, uncounted, and the refusals are counted in "
                     "meshlet_stats_series_refused_total{budget=\"scoped\"}. Default 100000; "
                     "0: no per-cluster series.",
                     uint64_t{0}, uint64_t{1} << 24),
      flags::IntFlag("--on-demand-max-keys", "N", &o.on_demand_max_keys,
                     "Lookup keys (destinations discovered on first use, ADR 0086) the sidecar "
                     "holds, found, missing or pending; past it a new key takes the place of the "
                     "found key unused the longest if unused for a minute (counted in "
                     "meshlet_xds_client_on_demand_expired_total{state=\"found\"}), else is "
                     "answered at once "
                     "(counted in meshlet_on_demand_lookups_total{result=\"limit\"}) and the "
                     "connection or request does what it does for an unknown destination. "
                     "Default 4096.",
                     uint64_t{1}, uint64_t{1} << 20),
      flags::IntFlag("--on-demand-max-waiting", "N", &o.on_demand_max_waiting,
                     "Connections and requests one worker lets wait for lookups of unknown "
                     "destinations at once (ADR 0086); past it one does what it does for an "
                     "unknown destination at once (counted in "
                     "meshlet_on_demand_waits_total{result=\"overflow\"}). Default 4096.",
                     uint64_t{1}, uint64_t{1} << 20),
      flags::IntFlag("--upstream-tls-session-cache", "N", &o.upstream_tls_session_cache,
                     "Upstream addresses whose TLS session tickets are kept for resumption, for "
                     "all the clusters that share a TLS context (the same certificate and trust "
                     "bundle) together; past it the tickets of one address are dropped. 0: no "
                     "upstream resumption. Default 4096.",
                     uint64_t{0}, uint64_t{1} << 20),
      flags::IntFlag("--tls-verified-chain-cache", "N", &o.tls_verified_chain_cache,
                     "Peer certificate chains each TLS context remembers as verified, so a "
                     "handshake presenting one again skips its signature checks (identity and "
                     "validity dates are always checked). 0: verify every chain in full. "
                     "Default 4096.",
                     uint64_t{0}, uint64_t{1} << 20),
      flags::IntFlag("--mirror-max-in-flight", "N", &o.mirror_max_in_flight,
                     "Request mirror copies (route request_mirror_policies) each worker may "
                     "have in flight, those still receiving the request's body included; copies "
                     "beyond it are skipped and counted in "
                     "meshlet_upstream_rq_mirror_skipped_total{reason=\"in_flight_limit\"}. "
                     "Default 64; 0: no mirroring.",
                     uint64_t{0}, uint64_t{1} << 20),
      flag("--error-header", "NAME",
           "The response field that attributes every response this proxy makes itself "
           "(timeouts, no healthy upstream, refused, rate limited...): \"<node>; "
           "flag=<FLAGS>; reason=<text>\", beside the request's x-request-id. Answers to "
           "callers outside the mesh (an inbound listener's client without a mesh certificate) "
           "never carry it, from this proxy or one behind it. Default x-meshlet-error; empty: "
           "off.",
           [&o](absl::string_view v) -> absl::Status {
             if (!v.empty() && v.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-"
                                                   ".^_`|~") != absl::string_view::npos) {
               return absl::InvalidArgumentError(
                   absl::StrCat("\"", v, "\" is not a lowercase header field name"));
             }
             o.error_header = std::string(v);
             return absl::OkStatus();
           }),
      flag("--access-log", "PATH",
           "Write one JSON line per request and per TCP connection to PATH (a file, appended to, "
           "or /dev/stdout). Default: off. A listener's own access_log.path takes precedence.",
           Text(&o.access_log_path)),
      flag("--trace-collector", "HOST:PORT|control-plane",
           "Turn tracing on and export spans to this OTLP/HTTP collector (protobuf bodies, POST "
           "/v1/traces), or with `control-plane` over OTLP/gRPC to the control plane's discovery "
           "port (the xDS server), with the xDS channel's TLS settings and workload certificate: "
           "the control plane then records the spans under this sidecar's authenticated "
           "registration. Replaces the bootstrap's tracing.collector_address and protocol "
           "(docs/tracing.md). Default: the bootstrap's tracing section, else no tracing.",
           [&o](absl::string_view v) {
             if (v == config::kTraceCollectorControlPlane) {
               o.trace_collector = std::string(v);
               return absl::OkStatus();
             }
             absl::Status status = HostPort(&o.trace_collector)(v);
             if (!status.ok())
               return absl::InvalidArgumentError("must be host:port or control-plane");
             return status;
           }),
      flag("--trace-sampling", "PERCENT",
           "Share of requests traced when the caller did not decide (0-100; a caller's sampled "
           "traceparent is always followed). Replaces tracing.sampling_percent. Default 1.",
           [&o](absl::string_view v) {
             double percent = 0;
             if (!absl::SimpleAtod(v, &percent) || !(percent >= 0 && percent <= 100)) {
               return absl::InvalidArgumentError("must be a number from 0 to 100");
             }
             o.trace_sampling = percent;
             return absl::OkStatus();
           }),
      flag("--xds", "HOST:PORT[,HOST:PORT...]",
           "Control plane to stream configuration from (ADS, docs/xds.md); several replicas (or a "
           "name resolving to several addresses) are tried in turn, each stream that ends moving "
           "to the next. Needs --xds-ca or --xds-plaintext. Overrides the bootstrap's "
           "xds.address, and so is where golden-metrics reports (metrics_report.address) and "
           "workload certificate requests (--ca-address) go by default.",
           HostPorts(&o.xds_address)),
      flag("--xds-ca", "FILE",
           "CA certificates (PEM) that verify the control plane's TLS certificate. Overrides the "
           "bootstrap's xds.ca_file.",
           Text(&o.xds_ca_file, true)),
      flag("--xds-server-name", "NAME", "Authority (and TLS server name) for the control plane.",
           Text(&o.xds_server_name)),
      flag("--xds-server-identity", "SPIFFE_ID",
           "The SPIFFE id the control plane's certificate must carry (e.g. "
           "spiffe://cluster.local/ns/mesh-system/sa/control-plane). Unset: any certificate that "
           "chains to --xds-ca is accepted.",
           [&o](absl::string_view v) {
             if (!absl::StartsWith(v, "spiffe://")) {
               return absl::InvalidArgumentError("must be a spiffe:// id");
             }
             o.xds_server_identity = std::string(v);
             return absl::OkStatus();
           }),
      flag("--xds-plaintext", "true|false",
           "Talk to the control plane without TLS (h2c). For local tests and demos only.",
           TrueOrFalse(&o.xds_plaintext)),
      flag("--xds-delta", "true|false",
           "Use the incremental (delta) stream: changes only, large pushes split under the "
           "message limit. Default true; false: state of the world (every resource of a type in "
           "each response).",
           TrueOrFalse(&o.xds_delta)),
      flag("--xds-cache-dir", "DIR",
           "Keep the last good xDS configuration here and start from it when the control plane is "
           "unreachable. Overrides the bootstrap's data_dir.",
           Text(&o.xds_cache_dir, true)),
      flags::DurationAtLeastFlag(
          "--xds-cache-write-interval", absl::ZeroDuration(), &o.xds_cache_write_interval,
          "Once a complete configuration is saved in the cache dir, the least time between two "
          "saves (\"1s\"): the responses of a burst, such as the three of an answered lookup, "
          "are saved together; at once when the control plane's stream ends. 0: every applied "
          "response is saved at once.",
          "1s"),
      flag("--node-id", "ID",
           "This sidecar's unique id on the xDS stream (overrides node.id). auto: the host name "
           "(a pod's is the pod's name) and the --node-namespace, HOST.NAMESPACE.",
           [&o](absl::string_view v) {
             o.node_id_auto = v == kAuto;
             o.node_id = std::string(v);
             return absl::OkStatus();
           }),
      flag("--node-service", "NAME", "The workload's service (overrides node.service).",
           Text(&o.node_service)),
      flag("--node-namespace", "NAME", "The workload's namespace (overrides node.namespace).",
           Text(&o.node_namespace)),
      flag("--node-service-account", "NAME",
           "The workload's service account (overrides node.service_account).",
           Text(&o.node_service_account)),
      flag("--node-locality", "REGION/ZONE[/NODE]",
           "Where this sidecar runs (overrides node.locality): its endpoints carry it, and "
           "clusters with locality-aware balancing prefer endpoints of its zone, then of its "
           "region (docs/resilience.md, \"Locality\"). NODE, the machine, serves "
           "internalTrafficPolicy: Local. Any part may be empty (not known): \"//node-1\".",
           [&o](absl::string_view v) {
             std::vector<std::string> parts = absl::StrSplit(v, '/');
             if (parts.size() < 2 || parts.size() > 3) {
               return absl::InvalidArgumentError("must be REGION/ZONE or REGION/ZONE/NODE");
             }
             o.node_locality = std::move(parts);
             return absl::OkStatus();
           }),
      flag("--gateway", "NAMESPACE/NAME",
           "Serve the Gateway API Gateway NAMESPACE/NAME as its gateway proxy instead of being a "
           "workload's sidecar: the node gets the Gateway's listeners and routes only "
           "(docs/gateway.md). Sets the node label meshlet.io/gateway and, unless given, "
           "--node-namespace; the proxy has no service or app ports.",
           [&o](absl::string_view v) {
             const size_t slash = v.find('/');
             if (slash == absl::string_view::npos || slash == 0 || slash + 1 == v.size() ||
                 v.find('/', slash + 1) != absl::string_view::npos) {
               return absl::InvalidArgumentError("must be NAMESPACE/NAME");
             }
             o.gateway = std::string(v);
             return absl::OkStatus();
           }),
      flag("--node-label", "KEY=VALUE", "A workload label; repeatable (adds to node.labels).",
           [&o](absl::string_view v) {
             size_t eq = v.find('=');
             if (eq == absl::string_view::npos || eq == 0) {
               return absl::InvalidArgumentError("must be key=value");
             }
             o.node_labels.emplace_back(std::string(v.substr(0, eq)),
                                        std::string(v.substr(eq + 1)));
             return absl::OkStatus();
           }),
      flag("--node-address", "IP",
           "A workload address peers reach it at; repeatable. auto: the addresses of the pod's "
           "network interfaces other than loopback and link-local ones, found at start (for pod "
           "engines without the downward API's status.podIP, such as podman).",
           [&o](absl::string_view v) {
             if (v == kAuto) {
               o.node_address_auto = true;
               return absl::OkStatus();
             }
             if (!net::Address::FromIp(v, 1).ok()) {
               return absl::InvalidArgumentError("must be an IP, or auto");
             }
             o.node_addresses.emplace_back(v);
             return absl::OkStatus();
           }),
      flag("--node-port", "PORT", "A port the workload serves; repeatable.",
           [&o](absl::string_view v) {
             uint32_t port = 0;
             if (!absl::SimpleAtoi(v, &port) || port == 0 || port > 65535) {
               return absl::InvalidArgumentError("must be a port from 1 to 65535");
             }
             o.node_ports.push_back(port);
             return absl::OkStatus();
           }),
      flag("--ca-address", "HOST:PORT[,HOST:PORT...]",
           "The control plane's CA (CertificateService) for the workload certificate. Default: the "
           "--xds address. Uses the xDS channel's TLS settings (--xds-ca, --xds-server-identity).",
           HostPorts(&o.ca_address)),
      flag("--join-token-file", "FILE",
           "A join token (`meshctl token create`) proving this workload's namespace and service "
           "account to the CA. Read once at start and sent with the first certificate request; "
           "over a TLS CA channel renewals then authenticate with the current certificate, so "
           "they go on after the token expired, and the token is sent again only when such a "
           "renewal fails or the certificate is about to expire. Enables the workload "
           "certificate.",
           Text(&o.join_token_file, true)),
      flag("--kubernetes-token-file", "FILE",
           "A projected Kubernetes service-account token for the CA, re-read for every request "
           "(the kubelet rotates it). Enables the workload certificate; excludes "
           "--join-token-file.",
           Text(&o.kubernetes_token_file, true)),
      flag("--ca-plaintext", "true|false",
           "Talk to the CA without TLS (h2c). Local tests only; allowed only when the xDS channel "
           "is plaintext too (--xds-plaintext) or there is none.",
           TrueOrFalse(&o.ca_plaintext)),
      flag("--trust-domain", "NAME",
           "Trust domain of this workload's SPIFFE id. Default cluster.local.",
           [&o](absl::string_view v) {
             if (absl::Status valid = tls::ValidateTrustDomain(v); !valid.ok()) {
               return absl::InvalidArgumentError(valid.message());
             }
             o.trust_domain = std::string(v);
             return absl::OkStatus();
           }),
      flags::DurationAtLeastFlag(
          "--cert-ttl", absl::Seconds(1), &o.cert_ttl,
          "Lifetime to ask the CA for (\"24h\"); the CA caps it. Default: the CA's default.",
          "24h"),
      flags::DurationAtLeastFlag(
          "--on-demand-missing-ttl", absl::Seconds(1), &o.on_demand_missing_ttl,
          "How long a lookup key the control plane answered not found is answered so from the "
          "sidecar's table before the control plane is asked again (\"30s\"). The outbound "
          "listener's on_demand.missing_ttl, when a listener has on_demand, takes precedence.",
          "30s"),
      flags::DurationAtLeastFlag(
          "--on-demand-idle-time", absl::Seconds(10), &o.on_demand_idle_time,
          "How long a discovered destination (a ServiceRoute) may go unused before the sidecar "
          "unsubscribes it (\"15m\"; counted in meshlet_xds_client_on_demand_expired_total"
          "{state=\"found\"}). The outbound listener's on_demand.idle_time, when a listener has "
          "on_demand, takes precedence.",
          "15m"),
      flags::PositiveDurationFlag(
          "--ca-startup-timeout", &o.ca_startup_timeout,
          "How long start-up waits for the first workload certificate (retrying with backoff) "
          "before giving up with an error. Default 30s.",
          "30s"),
      {.name = "--help",
       .shorthand = "-h",
       .help = "Print this text and exit.",
       .stops = true,
       .set =
           [&parsed](absl::string_view) {
             parsed.action = ParsedCommandLine::Action::kHelp;
             return absl::OkStatus();
           }},
      {.name = "--version",
       .help = "Print the version and exit.",
       .stops = true,
       .set =
           [&parsed](absl::string_view) {
             parsed.action = ParsedCommandLine::Action::kVersion;
             return absl::OkStatus();
           }},
  };
}

}  // namespace

absl::StatusOr<ParsedCommandLine> ParseCommandLine(const std::vector<std::string>& args) {
  ParsedCommandLine parsed;
  parsed.options.admin_address = *net::Address::Parse(kDefaultAdminAddress);
  ASSIGN_OR_RETURN(flags::ParsedArgs args_parsed,
                   flags::Parse(Flags(parsed), args,
                                {.underscores_are_dashes = true, .single_dash_names = true}));
  if (args_parsed.stopped) return parsed;
  if (parsed.options.config_path.empty() && parsed.options.xds_address.empty()) {
    return absl::InvalidArgumentError("--config is required, or --xds with --node-id (see --help)");
  }
  const ServerOptions& o = parsed.options;
  if (!o.app_probes.empty() && !o.prometheus_address.has_value()) {
    return absl::InvalidArgumentError(
        "--app-probe needs --prometheus-address: the probes are answered there");
  }
  if (o.xds_plaintext && !o.xds_ca_file.empty()) {
    return absl::InvalidArgumentError("--xds-plaintext and --xds-ca exclude each other");
  }
  if (!o.join_token_file.empty() && !o.kubernetes_token_file.empty()) {
    return absl::InvalidArgumentError(
        "--join-token-file and --kubernetes-token-file exclude each other");
  }
  if (!o.workload_identity()) {
    for (const auto& [set, flag] : {std::pair{!o.ca_address.empty(), "--ca-address"},
                                    std::pair{o.ca_plaintext, "--ca-plaintext"},
                                    std::pair{o.cert_ttl.count() > 0, "--cert-ttl"}}) {
      if (set) {
        return absl::InvalidArgumentError(absl::StrCat(
            flag, " needs a CA credential: --join-token-file or --kubernetes-token-file"));
      }
    }
  }
  if (o.ca_plaintext && !o.xds_ca_file.empty()) {
    return absl::InvalidArgumentError(
        "--ca-plaintext: the xDS channel uses TLS (--xds-ca), so the CA channel must too");
  }
  if (!o.gateway.empty()) {
    const std::string ns = o.gateway.substr(0, o.gateway.find('/'));
    if (!o.node_namespace.empty() && o.node_namespace != ns) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--gateway ", o.gateway, ": a gateway proxy serves a Gateway of its own namespace, not ",
          o.node_namespace, " (--node-namespace)"));
    }
    if (!o.node_service.empty() || !o.node_ports.empty()) {
      return absl::InvalidArgumentError(
          "--gateway: a gateway proxy has no --node-service or --node-port");
    }
    parsed.options.node_namespace = ns;
    parsed.options.node_labels.emplace_back("meshlet.io/gateway", o.gateway);
  }
  return parsed;
}

bool HasAutoValues(const ServerOptions& options) {
  return options.node_id_auto || options.node_address_auto ||
         options.capture_check_auto_port.has_value();
}

absl::Status ResolveAutoValues(ServerOptions& options, const PodEnvironment& pod) {
  if (options.node_id_auto) {
    if (pod.host_name.empty()) {
      return absl::FailedPreconditionError("--node-id=auto: this host has no name");
    }
    options.node_id = options.node_namespace.empty()
                          ? pod.host_name
                          : absl::StrCat(pod.host_name, ".", options.node_namespace);
    options.node_id_auto = false;
  }
  if ((options.node_address_auto || options.capture_check_auto_port) && pod.addresses.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        options.node_address_auto ? "--node-address=auto" : "--capture-check=auto:PORT",
        ": no network interface has an address other than loopback and link-local ones"));
  }
  if (options.node_address_auto) {
    for (const net::Address& address : pod.addresses) {
      options.node_addresses.push_back(address.ip());
    }
    options.node_address_auto = false;
  }
  if (options.capture_check_auto_port) {
    options.capture_check = pod.addresses.front().WithPort(*options.capture_check_auto_port);
    options.capture_check_auto_port.reset();
  }
  return absl::OkStatus();
}

absl::StatusOr<PodEnvironment> ReadPodEnvironment() {
  PodEnvironment pod;
  char name[HOST_NAME_MAX + 1] = {};
  if (::gethostname(name, sizeof(name) - 1) == 0) pod.host_name = name;
  ASSIGN_OR_RETURN(pod.addresses, net::InterfaceAddresses());
  return pod;
}

config::BootstrapFlags ServerOptions::bootstrap_flags() const {
  return config::BootstrapFlags{.xds_address = xds_address,
                                .xds_ca_file = xds_ca_file,
                                .xds_server_name = xds_server_name,
                                .xds_plaintext = xds_plaintext,
                                .data_dir = xds_cache_dir,
                                .node_id = node_id,
                                .node_service = node_service,
                                .node_namespace = node_namespace,
                                .node_service_account = node_service_account,
                                .node_locality = node_locality,
                                .node_labels = node_labels,
                                .node_addresses = node_addresses,
                                .node_ports = node_ports,
                                .ca_address = ca_address,
                                .workload_certificate = workload_identity(),
                                .trace_collector = trace_collector,
                                .trace_sampling = trace_sampling};
}

std::string UsageText() {
  std::string out =
      "Usage: sidecar --config FILE [flags]\n"
      "       sidecar --xds HOST:PORT (--xds-ca FILE | --xds-plaintext=true) --node-id ID [flags]\n"
      "\n"
      "meshlet's sidecar proxy. Runs the listeners, routes and clusters of a static bootstrap\n"
      "file; serves admin endpoints on --admin-address. SIGTERM/SIGINT drain, then exit;\n"
      "SIGHUP re-reads --config and applies it if valid (an invalid file is logged and ignored).\n"
      "\n"
      "Flags (--name=value or --name value; dashes and underscores are interchangeable):\n";
  ParsedCommandLine scratch;
  out += flags::FlagTable(Flags(scratch));
  absl::StrAppend(&out, "\n",
                  flags::Wrap("Exit status: 0 after a clean shutdown or drain; 1 when the "
                              "configuration is invalid or a listener cannot bind; 2 for a bad "
                              "command line.",
                              0),
                  "\n");
  return out;
}

}  // namespace meshlet::sidecar::server

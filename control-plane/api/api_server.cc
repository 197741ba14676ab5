#include <algorithm>

#include "control-plane/api/api_server.h"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/base/atomic_file.h"
#include "common/base/file.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/config/field_path.h"
#include "common/stats/exposition.h"
#include "control-plane/access/audit_log.h"
#include "control-plane/api/api_internal.h"
#include "control-plane/api/operator_token_api.h"
#include "control-plane/api/status.h"
#include "control-plane/api/stored_services.h"
#include "control-plane/policy/codec.h"
#include "control-plane/policy/kinds.h"
#include "control-plane/store/file_store.h"
#include "xds/protocol.h"

namespace meshlet::controlplane::api {

using http::ServerRequest;
using http::ServerResponse;
using policy::FieldError;
using policy::KindInfo;

namespace {

constexpr absl::string_view kRegistryPrefix = "/api/v1";

// Whether `path` is `prefix` or a path below it; `rest` (if given) gets what follows the prefix
// (empty, or starting with '/').
bool Under(absl::string_view path, absl::string_view prefix, absl::string_view* rest = nullptr) {
  if (!absl::ConsumePrefix(&path, prefix) || !(path.empty() || path[0] == '/')) return false;
  if (rest != nullptr) *rest = path;
  return true;
}

std::string CodeClass(int status) { return absl::StrCat(status / 100, "xx"); }

// Where the policy kinds are served: "/apis/{group}/{version}" of each kind, once each.
const std::vector<std::string>& ResourcePrefixes() {
  static const auto* prefixes = [] {
    auto* out = new std::vector<std::string>;
    for (const KindInfo& info : policy::AllKinds()) {
      if (std::find(out->begin(), out->end(), info.ApiPath()) == out->end()) {
        out->push_back(info.ApiPath());
      }
    }
    return out;
  }();
  return *prefixes;
}

// The resource prefix `path` is under (see Under), or empty.
absl::string_view ResourcePrefixOf(absl::string_view path, absl::string_view* rest = nullptr) {
  for (const std::string& prefix : ResourcePrefixes()) {
    if (Under(path, prefix, rest)) return prefix;
  }
  return "";
}

}  // namespace

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  CHECK(RAND_bytes(reinterpret_cast<uint8_t*>(raw.data()), raw.size()) == 1);
  return absl::BytesToHexString(raw);
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

namespace {

Counter MakeCounter(StatsRegistry& registry, absl::string_view name, absl::string_view help,
                    const LabelSet& labels = {}) {
  absl::StatusOr<CounterId> id = registry.RegisterCounter(name, help, labels);
  CHECK(id.ok()) << id.status().message();
  return registry.shared_shard().Get(*id);
}

}  // namespace

PolicyApi::Stats::Stats(StatsRegistry& registry) {
  for (const char* code : {"2xx", "4xx", "5xx"}) {
    requests[code] = MakeCounter(registry, "meshlet_cp_api_requests_total",
                                 "Control-plane API requests, by response status class.",
                                 {{"code_class", code}});
  }
  for (const char* result : {"created", "updated", "unchanged", "deleted", "dry_run"}) {
    writes[result] =
        MakeCounter(registry, "meshlet_cp_api_writes_total",
                    "Policy writes accepted by the API, by what they did.", {{"result", result}});
  }
  for (const char* operation : {"get", "list", "create", "put", "delete", "other"}) {
    absl::StatusOr<HistogramId> id = registry.RegisterHistogram(
        "meshlet_cp_api_request_seconds",
        "Time the control plane took to answer an API request, from its arrival to its answer "
        "(access check, wait for the store worker, handling, store write), by operation.",
        {{"operation", operation}}, HistogramOptions{.exposition_divisor = 1e6});
    CHECK(id.ok()) << id.status().message();
    durations.emplace(operation, registry.shared_shard().Get(*id));
  }
  invalid = MakeCounter(registry, "meshlet_cp_api_invalid_total",
                        "Writes refused because the document did not parse or validate.");
  conflicts = MakeCounter(registry, "meshlet_cp_api_conflicts_total",
                          "Writes refused with 409: the resource already exists (create), its "
                          "resourceVersion is stale, it changed during the write, or only the "
                          "Kubernetes mirror may change it.");
  store_errors =
      MakeCounter(registry, "meshlet_cp_api_store_errors_total",
                  "API requests that failed in the store (500; 503 when it is unavailable).");
  forged_mirror_header = MakeCounter(
      registry, "meshlet_cp_api_forged_mirror_header_total",
      "API requests over the network carrying x-meshlet-mirror, which only the control plane's "
      "own Kubernetes mirror may claim (answered as without it).");
}

PolicyApi::PolicyApi(Store& store, registry::Registry* registry, const Clock& clock,
                     ApiOptions options, StatsRegistry* stats)
    : store_(store),
      registry_(registry),
      clock_(clock),
      options_(std::move(options)),
      stats_registry_(stats),
      stats_(stats != nullptr ? std::make_unique<Stats>(*stats) : nullptr),
      process_metrics_(stats != nullptr ? std::make_unique<ProcessMetrics>(*stats) : nullptr),
      addresses_(std::make_unique<addresses::ServiceAddresses>(store, stats)),
      stored_services_(std::make_unique<StoredServices>()) {}

PolicyApi::~PolicyApi() = default;

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  // Length is not secret (tokens have one fixed length); the contents are.
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i]) ^ static_cast<unsigned char>(b[i]);
  }
  return diff == 0;
}

absl::StatusOr<std::string> LoadOrCreateToken(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if ((st.st_mode & 0077) != 0) {
      return absl::PermissionDeniedError(
          absl::StrCat(path, ": token file is readable by others (mode ",
                       absl::StrCat(absl::Hex(st.st_mode & 0777)), "); run chmod 600 on it"));
    }
    ASSIGN_OR_RETURN(std::string content, ReadFile(path));
    std::string token(absl::StripAsciiWhitespace(content));
    if (token.empty()) return absl::DataLossError(absl::StrCat(path, ": token file is empty"));
    return token;
  }
  if (errno != ENOENT) {
    return absl::InternalError(absl::StrCat(path, ": ", std::strerror(errno)));
  }
  const std::string token = RandomHex(32);
  // link() fails with EEXIST: two control planes starting on one data dir cannot both create it.
  absl::Status written = WriteFileAtomically(path, absl::StrCat(token, "\n"), {.replace = false});
  if (absl::IsAlreadyExists(written)) return LoadOrCreateToken(path);
  if (!written.ok()) return written;
  return token;
}

absl::Status ReplaceToken(const std::string& path, absl::string_view token) {
  return WriteFileAtomically(path, absl::StrCat(token, "\n"));
}

ServerResponse PolicyApi::Error(int status, absl::string_view reason, absl::string_view message,
                                const std::vector<FieldError>& causes, absl::string_view kind,
                                absl::string_view name) {
  std::vector<StatusCause> status_causes;
  status_causes.reserve(causes.size());
  for (const FieldError& e : causes) status_causes.push_back({e.field, e.message});
  return StatusResponse(status, reason, message, kind, name, status_causes);
}

std::optional<access::Role> PolicyApi::RequiredRole(const ServerRequest& request) {
  const absl::string_view path = request.path();
  const bool read = request.method() == "GET" || request.method() == "HEAD";
  if (path == "/healthz" || path == "/version" || path == "/metrics" ||
      path == "/api/v1/trust-bundle" || path == "/" || path == "/dashboard" ||
      absl::StartsWith(path, "/dashboard/")) {
    return std::nullopt;
  }
  absl::string_view rest;
  if (!ResourcePrefixOf(path).empty()) return read ? access::Role::kViewer : access::Role::kEditor;
  if (Under(path, kRegistryPrefix, &rest)) {
    if (Under(rest, "/tokens") || Under(rest, "/operator-tokens")) return access::Role::kAdmin;
    // What linked clusters read with their peer tokens.
    if (rest == "/multicluster/exports" && read) return access::Role::kPeer;
    // Asking a sidecar for its view of its configuration reads, like GET .../config.
    if (absl::StartsWith(rest, "/proxies/") && absl::EndsWith(rest, "/config-dump")) {
      return access::Role::kViewer;
    }
  }
  // Other writes (none exist: they are refused once let in) need the most.
  return read ? access::Role::kViewer : access::Role::kAdmin;
}

ServerResponse PolicyApi::Refusal(const absl::Status& status) {
  ServerResponse response =
      absl::IsUnauthenticated(status)    ? Error(401, "Unauthorized", status.message())
      : absl::IsPermissionDenied(status) ? Error(403, "Forbidden", status.message())
      : absl::IsUnavailable(status)      ? Error(503, "ServiceUnavailable", status.message())
                                         : Error(500, "InternalError", status.message());
  if (stats_ != nullptr) {
    auto it = stats_->requests.find(CodeClass(response.status));
    if (it != stats_->requests.end()) it->second.Inc();
  }
  return response;
}

bool PolicyApi::HandleStreamed(const ServerRequest& request, const access::Principal* caller,
                               http::Responder& respond) {
  if (request.path() != access::kTapPath) return false;
  if (!tap_) {
    respond(Error(503, "ServiceUnavailable",
                  "ADS not running: this control plane serves no sidecars to tap"));
    return true;
  }
  tap_(request, caller, std::move(respond));
  return true;
}

ServerResponse PolicyApi::Handle(const ServerRequest& request, const access::Principal* caller) {
  // Only the mirror in this process writes mirrored objects (HandleFromMirror): kMirrorHeader
  // proves nothing over the network, any editor can send it.
  if (request.headers.Get(kMirrorHeader).has_value()) {
    if (stats_ != nullptr) stats_->forged_mirror_header.Inc();
    LOG_EVERY_N_SEC(WARN, 1) << "API: " << request.method() << " " << request.path() << " from "
                             << (caller == nullptr
                                     ? std::string("a caller without a token")
                                     : absl::StrCat(caller->credential, " \"",
                                                    absl::CEscape(caller->name), "\""))
                             << " carries " << kMirrorHeader
                             << ", which only the control plane's own Kubernetes mirror may "
                                "claim: ignored (the request is answered as without it)";
  }
  return Serve(request, caller, Origin::kNetwork);
}

ServerResponse PolicyApi::HandleFromMirror(const ServerRequest& request) {
  return Serve(request, &kMirrorPrincipal, Origin::kKubernetesMirror);
}

ServerResponse PolicyApi::Serve(const ServerRequest& request, const access::Principal* caller,
                                Origin origin) {
  const absl::string_view path = request.path();
  ServerResponse response;
  if (path == "/healthz") {
    response = ServerResponse::Text(200, "ok\n");
  } else if (path == "/version") {
    response = ServerResponse::Json(
        200,
        absl::StrCat(R"({"server":)", JsonQuote(options_.server_version), R"(,"apiVersion":)",
                     JsonQuote(policy::kApiVersion), R"(,"revision":)",
                     JsonQuote(options_.revision.empty() ? "default" : options_.revision), "}\n"));
  } else if (path == "/metrics" && stats_registry_ != nullptr) {
    std::string text = FormatPrometheus(stats_registry_->Snapshot());
    process_metrics_->AppendPrometheus(text);
    response = ServerResponse::Text(200, std::move(text));
    response.headers.Set("content-type", "text/plain; version=0.0.4; charset=utf-8");
  } else if (dashboard_ &&
             (path == "/" || path == "/dashboard" || absl::StartsWith(path, "/dashboard/"))) {
    response = dashboard_(request);
  } else if (path == "/api/v1/trust-bundle") {
    // Public: the CA's certificates are no secret, and meshctl fetches them to pin the CA
    // (meshctl context set --ca-fingerprint) before it sends any token.
    response = HandleRegistry(request, "/trust-bundle", caller);
  } else {
    response = HandleAuthenticated(request, caller, origin);
  }
  if (stats_ != nullptr) {
    auto it = stats_->requests.find(CodeClass(response.status));
    if (it != stats_->requests.end()) it->second.Inc();
  }
  return response;
}

ServerResponse PolicyApi::HandleAuthenticated(const ServerRequest& request,
                                              const access::Principal* caller, Origin origin) {
  const absl::string_view path = request.path();
  absl::string_view rest;
  if (absl::string_view prefix = ResourcePrefixOf(path, &rest); !prefix.empty()) {
    return HandleResources(request, prefix, rest, origin);
  }
  if (Under(path, kRegistryPrefix, &rest)) return HandleRegistry(request, rest, caller);
  return Error(404, "NotFound", absl::StrCat("no such path: ", path));
}

bool PolicyApi::CallsStore(const ServerRequest& request) {
  absl::string_view rest;
  return !ResourcePrefixOf(request.path()).empty() ||
         (Under(request.path(), kRegistryPrefix, &rest) &&
          (Under(rest, "/tokens") || Under(rest, "/operator-tokens") || rest == "/ca/rotation" ||
           (Under(rest, "/multicluster/links") && request.method() != "GET" &&
            request.method() != "HEAD")));
}

absl::string_view PolicyApi::Operation(const ServerRequest& request) {
  absl::string_view rest;
  if (ResourcePrefixOf(request.path(), &rest).empty()) return "other";
  const absl::string_view method = request.method();
  if (method == "PUT") return "put";
  if (method == "DELETE") return "delete";
  if (method == "POST") return "create";
  if (method != "GET" && method != "HEAD") return "other";
  // .../{plural}/{name} reads one; shorter paths list (or name the kinds).
  const std::vector<absl::string_view> segments = absl::StrSplit(rest, '/', absl::SkipEmpty());
  const size_t name_at = !segments.empty() && segments[0] == "namespaces" ? 3 : 1;
  return segments.size() > name_at ? "get" : "list";
}

http::Responder PolicyApi::Timed(const ServerRequest& request, http::Responder respond) {
  if (stats_ == nullptr) return respond;
  auto it = stats_->durations.find(Operation(request));
  if (it == stats_->durations.end()) return respond;
  return [histogram = it->second, clock = &clock_, started = clock_.ExactNow(),
          respond = std::move(respond)](ServerResponse response) mutable {
    histogram.Record(MicrosRoundedUp(clock->ExactNow() - started));
    respond(std::move(response));
  };
}

ServerResponse PolicyApi::StoreBusy(size_t pending) {
  if (stats_ != nullptr) {
    stats_->store_errors.Inc();
    stats_->requests.at("5xx").Inc();
  }
  ServerResponse response = Error(503, "ServiceUnavailable",
                                  absl::StrCat("the policy store is slow to answer: ", pending,
                                               " calls are waiting for it already; retry later"));
  response.headers.Add("retry-after", "1");
  return response;
}

ServerResponse PolicyApi::StoreFailure(const absl::Status& status) {
  if (stats_ != nullptr) stats_->store_errors.Inc();
  if (absl::IsUnavailable(status)) {
    // etcd without quorum or out of reach: the client should retry later (meshctl says why).
    return Error(503, "ServiceUnavailable",
                 absl::StrCat("the policy store is unavailable: ", status.message()));
  }
  return Error(500, "InternalError", status.message());
}

std::string PolicyApi::WorkloadsJson() const {
  const registry::RegistrySnapshot current = registry_->CurrentWorkloads();
  const registry::RegistrySnapshot* snapshot = &current;
  const MonotonicTime now = clock_.Now();
  std::vector<std::string> items;
  for (const registry::Workload& w : snapshot->workloads) {
    std::vector<std::string> labels;
    for (const auto& [k, v] : w.labels)
      labels.push_back(absl::StrCat(JsonQuote(k), ":", JsonQuote(v)));
    std::vector<std::string> addresses;
    for (const auto& a : w.addresses) addresses.push_back(JsonQuote(a));
    std::string item =
        absl::StrCat(R"({"id":)", JsonQuote(w.id), R"(,"service":)", JsonQuote(w.service),
                     R"(,"namespace":)", JsonQuote(w.namespace_), R"(,"serviceAccount":)",
                     JsonQuote(w.service_account), R"(,"labels":{)", absl::StrJoin(labels, ","),
                     R"(},"addresses":[)", absl::StrJoin(addresses, ","), R"(],"ports":[)",
                     absl::StrJoin(w.ports, ","), R"(],"inboundPort":)", w.inbound_port,
                     R"(,"outboundPort":)", w.outbound_port, R"(,"sidecarVersion":)",
                     JsonQuote(w.sidecar_version), R"(,"ready":)", w.ready ? "true" : "false",
                     R"(,"connected":)", w.connected ? "true" : "false", R"(,"streams":)",
                     w.open_streams, R"(,"registeredAt":)", JsonQuote(Rfc3339(w.registered_at)),
                     R"(,"lastHeartbeat":)", JsonQuote(Rfc3339(w.last_heartbeat)));
    if (!w.replica.empty()) absl::StrAppend(&item, R"(,"replica":)", JsonQuote(w.replica));
    if (!w.connected) {
      const double remaining = std::chrono::duration<double>(w.expires_at - now).count();
      absl::StrAppend(&item, R"(,"disconnectedAt":)", JsonQuote(Rfc3339(w.disconnected_at)),
                      R"(,"deregisterInSeconds":)", remaining > 0 ? remaining : 0.0);
    }
    item += "}";
    items.push_back(std::move(item));
  }
  return absl::StrCat(R"({"kind":"WorkloadList","version":)", snapshot->version, R"(,"items":[)",
                      absl::StrJoin(items, ","), "]}\n");
}

// POST /api/v1/proxies/{id}/config-dump: asks the sidecar for its own view over its stream; the
// answer shows up in GET .../config ("sidecar") once it arrives.
ServerResponse PolicyApi::RequestSidecarConfig(const ServerRequest& request,
                                               absl::string_view rest) {
  if (request.method() != "POST") {
    return api::MethodNotAllowed("POST");
  }
  if (proxies_ == nullptr) {
    return Error(503, "ServiceUnavailable",
                 "ADS not running: this control plane serves no sidecars");
  }
  std::vector<std::string> segments = absl::StrSplit(rest, '/', absl::SkipEmpty());
  if (segments.size() != 3) return Error(404, "NotFound", "no such path");
  absl::StatusOr<std::string> nonce = proxies_->RequestSidecarConfig(segments[1]);
  if (absl::IsNotFound(nonce.status())) {
    return Error(404, "NotFound", absl::StrCat("no proxy \"", segments[1], "\""));
  }
  if (!nonce.ok()) return Error(500, "InternalError", nonce.status().message());
  return ServerResponse::Json(
      202, absl::StrCat(R"({"kind":"ConfigDumpRequest","node":)", JsonQuote(segments[1]),
                        R"(,"nonce":)", JsonQuote(*nonce), "}\n"));
}

ServerResponse PolicyApi::HandleRegistry(const ServerRequest& request, absl::string_view rest,
                                         const access::Principal* caller) {
  if (Under(rest, "/tokens")) {
    if (!tokens_) {
      return Error(503, "ServiceUnavailable", "join tokens are not enabled on this control plane");
    }
    return tokens_(request);
  }
  if (Under(rest, "/operator-tokens")) {
    if (operator_tokens_ == nullptr || caller == nullptr) {
      return Error(503, "ServiceUnavailable", "operator tokens are not enabled on this API");
    }
    return HandleOperatorTokenRequest(*operator_tokens_, request, *caller);
  }
  if (rest == "/whoami") {
    if (request.method() != "GET") {
      return api::MethodNotAllowed("GET");
    }
    if (caller == nullptr) return Error(401, "Unauthorized", "no caller");
    return ServerResponse::Json(
        200, absl::StrCat(R"({"kind":"Principal","name":)", JsonQuote(caller->name),
                          R"(,"credential":)", JsonQuote(caller->credential), R"(,"role":)",
                          JsonQuote(access::RoleName(caller->role)), "}\n"));
  }
  if (Under(rest, "/traces") || rest == "/dependencies" || rest == "/stat" ||
      rest == "/stat/history" || rest == "/stat/routes" || rest == "/certificates") {
    if (!traces_) {
      return Error(503, "ServiceUnavailable", "the trace collector is not running");
    }
    return traces_(request);
  }
  if (absl::StartsWith(rest, "/proxies/") && absl::EndsWith(rest, "/config-dump")) {
    return RequestSidecarConfig(request, rest);
  }
  if (Under(rest, "/multicluster")) {
    if (!multicluster_) {
      return Error(503, "ServiceUnavailable",
                   "multicluster is off: the control plane was started without --cluster-name");
    }
    if (caller == nullptr) return Error(401, "Unauthorized", "no caller");
    return multicluster_(request, *caller);
  }
  if (rest == "/ca/rotation") {
    if (!ca_rotation_) {
      return Error(503, "ServiceUnavailable", "the certificate authority is not running");
    }
    return ca_rotation_(request);
  }
  if (request.method() != "GET") {
    return api::MethodNotAllowed("GET");
  }
  std::vector<std::string> segments = absl::StrSplit(rest, '/', absl::SkipEmpty());
  if (rest == "/ca") {
    if (!ca_status_)
      return Error(503, "ServiceUnavailable", "the certificate authority is not running");
    return ServerResponse::Json(200, ca_status_());
  }
  if (rest == "/jwks") {
    if (!jwks_status_) return Error(503, "ServiceUnavailable", "no JWKS fetcher is running");
    return ServerResponse::Json(200, jwks_status_());
  }
  if (rest == "/trust-bundle") {
    if (trust_bundle_pem_.empty()) {
      return Error(503, "ServiceUnavailable", "the certificate authority is not running");
    }
    ServerResponse response = ServerResponse::Text(200, trust_bundle_pem_);
    response.headers.Set("content-type", "application/x-pem-file");
    return response;
  }
  if (segments.size() == 1 && segments[0] == "workloads") {
    if (registry_ == nullptr) return Error(503, "ServiceUnavailable", "no registry");
    return ServerResponse::Json(200, WorkloadsJson());
  }
  if (!segments.empty() && segments[0] == "proxies") {
    if (proxies_ == nullptr) {
      return Error(503, "ServiceUnavailable",
                   "ADS not running: this control plane serves no sidecars");
    }
    if (segments.size() == 1) return ServerResponse::Json(200, proxies_->ProxiesJson());
    if (segments.size() == 3 && segments[2] == "config") {
      // ?lookup=KEY[,KEY...]: as if the sidecar had looked those up (an on-demand sidecar's
      // destination it has not called yet).
      std::vector<std::string> lookups;
      if (std::string lookup = request.QueryParams()["lookup"]; !lookup.empty()) {
        lookups = absl::StrSplit(lookup, ',', absl::SkipEmpty());
      }
      if (lookups.size() > kMaxProxyConfigLookups) {
        return Error(400, "BadRequest",
                     absl::StrCat("lookup: at most ", kMaxProxyConfigLookups, " keys, got ",
                                  lookups.size()));
      }
      for (const std::string& key : lookups) {
        if (!xds::IsLookupKey(key) || key.size() > xds::kMaxLookupKeyBytes) {
          return Error(400, "BadRequest",
                       absl::StrCat("lookup: \"", key,
                                    "\" is not a lookup key (host:HOST[:PORT] or addr:IP:PORT)"));
        }
      }
      absl::StatusOr<std::string> config = proxies_->ProxyConfigJson(segments[1], lookups);
      if (absl::IsNotFound(config.status())) {
        return Error(404, "NotFound", absl::StrCat("no proxy \"", segments[1], "\""));
      }
      if (!config.ok()) return Error(500, "InternalError", config.status().message());
      return ServerResponse::Json(200, *config);
    }
  }
  return Error(404, "NotFound", absl::StrCat("no such path: ", request.path()));
}

}  // namespace meshlet::controlplane::api

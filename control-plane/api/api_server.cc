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
#include "control-plane/access/operator_token_api.h"
#include "control-plane/api/status.h"
#include "control-plane/policy/codec.h"
#include "control-plane/policy/kinds.h"
#include "control-plane/store/file_store.h"

namespace meshlet::controlplane::api {

using http::ServerRequest;
using http::ServerResponse;
using policy::FieldError;
using policy::KindInfo;

namespace {

constexpr absl::string_view kResourcePrefix = "/apis/meshlet.io/v1";
constexpr absl::string_view kRegistryPrefix = "/api/v1";

// Whether `path` is `prefix` or a path below it; `rest` (if given) gets what follows the prefix
// (empty, or starting with '/').
bool Under(absl::string_view path, absl::string_view prefix, absl::string_view* rest = nullptr) {
  if (!absl::ConsumePrefix(&path, prefix) || !(path.empty() || path[0] == '/')) return false;
  if (rest != nullptr) *rest = path;
  return true;
}

std::string CodeClass(int status) { return absl::StrCat(status / 100, "xx"); }

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  CHECK(RAND_bytes(reinterpret_cast<uint8_t*>(raw.data()), raw.size()) == 1);
  return absl::BytesToHexString(raw);
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

bool IsDryRun(const ServerRequest& request) {
  auto params = request.QueryParams();
  auto it = params.find("dryRun");
  return it != params.end() && it->second == "All";
}

}  // namespace

struct PolicyApi::Stats {
  Counter Make(StatsRegistry& registry, absl::string_view name, absl::string_view help,
               const LabelSet& labels = {}) {
    absl::StatusOr<CounterId> id = registry.RegisterCounter(name, help, labels);
    CHECK(id.ok()) << id.status().message();
    return registry.shared_shard().Get(*id);
  }
  explicit Stats(StatsRegistry& registry) {
    for (const char* code : {"2xx", "4xx", "5xx"}) {
      requests[code] =
          Make(registry, "meshlet_cp_api_requests_total",
               "Control-plane API requests, by response status class.", {{"code_class", code}});
    }
    for (const char* result : {"created", "updated", "unchanged", "deleted", "dry_run"}) {
      writes[result] =
          Make(registry, "meshlet_cp_api_writes_total",
               "Policy writes accepted by the API, by what they did.", {{"result", result}});
    }
    invalid = Make(registry, "meshlet_cp_api_invalid_total",
                   "Writes refused because the document did not parse or validate.");
    conflicts = Make(registry, "meshlet_cp_api_conflicts_total",
                     "Writes refused because metadata.resourceVersion was stale (409).");
    store_errors = Make(registry, "meshlet_cp_api_store_errors_total",
                        "API requests that failed in the store (500; 503 when it is unavailable).");
  }
  std::map<std::string, Counter> requests;
  std::map<std::string, Counter> writes;
  Counter invalid, conflicts, store_errors;
};

PolicyApi::PolicyApi(Store& store, registry::Registry* registry, const Clock& clock,
                     ApiOptions options, StatsRegistry* stats)
    : store_(store),
      registry_(registry),
      clock_(clock),
      options_(std::move(options)),
      stats_registry_(stats),
      stats_(stats != nullptr ? std::make_unique<Stats>(*stats) : nullptr),
      addresses_(std::make_unique<addresses::ServiceAddresses>(store, stats)) {}

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
  if (Under(path, kResourcePrefix)) return read ? access::Role::kViewer : access::Role::kEditor;
  if (Under(path, kRegistryPrefix, &rest)) {
    if (Under(rest, "/tokens") || Under(rest, "/operator-tokens")) return access::Role::kAdmin;
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

ServerResponse PolicyApi::Handle(const ServerRequest& request, const access::Principal* caller) {
  const absl::string_view path = request.path();
  ServerResponse response;
  if (path == "/healthz") {
    response = ServerResponse::Text(200, "ok\n");
  } else if (path == "/version") {
    response = ServerResponse::Json(
        200, absl::StrCat(R"({"server":)", JsonQuote(options_.server_version), R"(,"apiVersion":)",
                          JsonQuote(policy::kApiVersion), "}\n"));
  } else if (path == "/metrics" && stats_registry_ != nullptr) {
    response = ServerResponse::Text(200, FormatPrometheus(stats_registry_->Snapshot()));
    response.headers.Set("content-type", "text/plain; version=0.0.4; charset=utf-8");
  } else if (dashboard_ &&
             (path == "/" || path == "/dashboard" || absl::StartsWith(path, "/dashboard/"))) {
    response = dashboard_(request);
  } else if (path == "/api/v1/trust-bundle") {
    // Public: the CA's certificates are no secret, and meshctl fetches them to pin the CA
    // (meshctl context set --ca-fingerprint) before it sends any token.
    response = HandleRegistry(request, "/trust-bundle", caller);
  } else {
    response = HandleAuthenticated(request, caller);
  }
  if (stats_ != nullptr) {
    auto it = stats_->requests.find(CodeClass(response.status));
    if (it != stats_->requests.end()) it->second.Inc();
  }
  return response;
}

ServerResponse PolicyApi::HandleAuthenticated(const ServerRequest& request,
                                              const access::Principal* caller) {
  const absl::string_view path = request.path();
  absl::string_view rest;
  if (Under(path, kResourcePrefix, &rest)) return HandleResources(request, rest);
  if (Under(path, kRegistryPrefix, &rest)) return HandleRegistry(request, rest, caller);
  return Error(404, "NotFound", absl::StrCat("no such path: ", path));
}

ServerResponse PolicyApi::HandleResources(const ServerRequest& request, absl::string_view rest) {
  std::vector<std::string> segments = absl::StrSplit(rest, '/', absl::SkipEmpty());
  const absl::string_view method = request.method();
  auto method_not_allowed = [&](absl::string_view allowed) {
    ServerResponse r = Error(405, "MethodNotAllowed",
                             absl::StrCat(method, " is not allowed here; allowed: ", allowed));
    r.headers.Add("allow", allowed);
    return r;
  };
  if (segments.empty()) {
    if (method != "GET") return method_not_allowed("GET");
    std::vector<std::string> kinds;
    for (const KindInfo& info : policy::AllKinds()) {
      kinds.push_back(absl::StrCat(R"({"kind":)", JsonQuote(info.kind), R"(,"name":)",
                                   JsonQuote(info.plural), R"(,"shortName":)",
                                   JsonQuote(info.short_name), R"(,"namespaced":)",
                                   info.namespaced ? "true" : "false", "}"));
    }
    return ServerResponse::Json(
        200,
        absl::StrCat(R"({"kind":"APIResourceList","groupVersion":)", JsonQuote(policy::kApiVersion),
                     R"(,"resources":[)", absl::StrJoin(kinds, ","), "]}\n"));
  }
  std::string namespace_;
  bool namespaced_path = false;
  if (segments[0] == "namespaces") {
    if (segments.size() < 3 || segments.size() > 4) {
      return Error(404, "NotFound",
                   "expected /apis/meshlet.io/v1/namespaces/{namespace}/{kind}[/{name}]");
    }
    namespace_ = segments[1];
    namespaced_path = true;
    segments.erase(segments.begin(), segments.begin() + 2);
    if (!config::IsDnsLabel(namespace_)) {
      return Error(400, "BadRequest",
                   absl::StrCat("namespace \"", namespace_, "\" is not a DNS label"));
    }
  }
  if (segments.size() > 2) return Error(404, "NotFound", "too many path segments");
  const KindInfo* info = policy::FindKind(segments[0]);
  if (info == nullptr || segments[0] != info->plural) {
    return Error(404, "NotFound",
                 absl::StrCat("unknown resource \"", segments[0], "\"; one of: ", [] {
                   std::vector<std::string> plurals;
                   for (const KindInfo& k : policy::AllKinds()) {
                     plurals.emplace_back(k.plural);
                   }
                   return absl::StrJoin(plurals, ", ");
                 }()));
  }
  if (info->namespaced != namespaced_path && (segments.size() == 2 || !info->namespaced)) {
    return Error(404, "NotFound",
                 info->namespaced
                     ? absl::StrCat(info->kind,
                                    " is namespaced: use /apis/meshlet.io/v1/"
                                    "namespaces/{namespace}/",
                                    info->plural, "/{name}")
                     : absl::StrCat(info->kind, " is cluster-wide: use /apis/meshlet.io/v1/",
                                    info->plural, "/{name}"));
  }
  if (segments.size() == 1) {
    if (method == "GET") return List(*info, namespace_);
    if (method == "POST" && info->namespaced && !namespaced_path) {
      return Error(404, "NotFound",
                   absl::StrCat("create ", info->plural,
                                " under /apis/meshlet.io/v1/namespaces/"
                                "{namespace}/",
                                info->plural));
    }
    if (method == "POST") return Write(request, *info, namespace_, "", /*create=*/true);
    return method_not_allowed("GET, POST");
  }
  const std::string& name = segments[1];
  ResourceKey key{std::string(info->kind), namespace_, name};
  if (method == "GET") return Get(key);
  if (method == "PUT") return Write(request, *info, namespace_, name, /*create=*/false);
  if (method == "DELETE") return Remove(request, key);
  return method_not_allowed("GET, PUT, DELETE");
}

std::string PolicyApi::ObjectJson(const StoredResource& stored) const {
  absl::StatusOr<policy::ParsedResource> parsed =
      policy::ParseStoredResource(stored.key.kind, stored.body);
  if (!parsed.ok()) return stored.body;  // shown as stored; LoadPolicySnapshot warns
  policy::MutableMetadata(*parsed->message)->set_resource_version(absl::StrCat(stored.revision));
  return policy::ToJson(*parsed->message);
}

ServerResponse PolicyApi::Get(const ResourceKey& key) {
  absl::StatusOr<StoredResource> stored = store_.Get(key);
  if (absl::IsNotFound(stored.status())) {
    return Error(404, "NotFound",
                 absl::StrCat(key.kind, " \"", key.name, "\" not found",
                              key.namespace_.empty() ? "" : " in namespace \"", key.namespace_,
                              key.namespace_.empty() ? "" : "\""),
                 {}, key.kind, key.name);
  }
  if (!stored.ok()) {
    return StoreFailure(stored.status());
  }
  return ServerResponse::Json(200, ObjectJson(*stored) + "\n");
}

bool PolicyApi::CallsStore(const ServerRequest& request) {
  absl::string_view rest;
  return Under(request.path(), kResourcePrefix) ||
         (Under(request.path(), kRegistryPrefix, &rest) &&
          (Under(rest, "/tokens") || Under(rest, "/operator-tokens")));
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

ServerResponse PolicyApi::List(const KindInfo& info, absl::string_view namespace_) {
  const int64_t revision = store_.Revision();
  absl::StatusOr<std::vector<StoredResource>> all = store_.List(info.kind, namespace_);
  if (!all.ok()) {
    return StoreFailure(all.status());
  }
  std::string body =
      absl::StrCat(R"({"apiVersion":)", JsonQuote(policy::kApiVersion), R"(,"kind":)",
                   JsonQuote(absl::StrCat(info.kind, "List")),
                   R"(,"metadata":{"resourceVersion":")", revision, R"("},"items":[)");
  for (size_t i = 0; i < all->size(); ++i) {
    if (i > 0) body += ",";
    body += ObjectJson((*all)[i]);
  }
  body += "]}\n";
  return ServerResponse::Json(200, std::move(body));
}

ServerResponse PolicyApi::Write(const ServerRequest& request, const KindInfo& info,
                                absl::string_view url_namespace, absl::string_view url_name,
                                bool create) {
  auto invalid = [&](int status, absl::string_view message, std::vector<FieldError> causes,
                     absl::string_view name) {
    if (stats_ != nullptr) stats_->invalid.Inc();
    return Error(status, status == 422 ? "Invalid" : "BadRequest", message, causes, info.kind,
                 name);
  };
  if (request.body.empty()) return invalid(400, "request body is empty", {}, url_name);
  absl::StatusOr<policy::ParsedResource> parsed =
      policy::ParseResource(request.body, {}, info.kind);
  if (!parsed.ok()) {
    policy::ErrorLocation where = policy::SplitParseError(parsed.status().message());
    std::string message =
        where.path.empty() ? where.reason : absl::StrCat(where.path, ": ", where.reason);
    if (!where.position.empty()) absl::StrAppend(&message, " (at ", where.position, ")");
    return invalid(400, message, {{where.path, where.reason}}, url_name);
  }
  google::protobuf::Message& resource = *parsed->message;
  meshlet::policy::ObjectMeta* meta = policy::MutableMetadata(resource);
  // Where the object lives comes from the URL; the body may repeat it but not contradict it.
  if (info.namespaced) {
    if (meta->namespace_().empty()) meta->set_namespace_(std::string(url_namespace));
    if (meta->namespace_() != url_namespace) {
      return invalid(400,
                     absl::StrCat("metadata.namespace: \"", meta->namespace_(),
                                  "\" does not match the URL's namespace \"", url_namespace, "\""),
                     {{"metadata.namespace", "does not match the URL"}}, meta->name());
    }
  }
  if (!create) {
    if (meta->name().empty()) meta->set_name(std::string(url_name));
    if (meta->name() != url_name) {
      return invalid(400,
                     absl::StrCat("metadata.name: \"", meta->name(),
                                  "\" does not match the URL's name \"", url_name, "\""),
                     {{"metadata.name", "does not match the URL"}}, meta->name());
    }
  }
  const std::string sent_version = meta->resource_version();
  int64_t expected_revision = kAnyRevision;
  if (!sent_version.empty() &&
      (!absl::SimpleAtoi(sent_version, &expected_revision) || expected_revision <= 0)) {
    return invalid(400, "metadata.resourceVersion: must be a resourceVersion the server returned",
                   {{"metadata.resourceVersion", "not a number"}}, meta->name());
  }
  // Services are what references resolve against (warnings only).
  policy::PolicySnapshot services;
  if (absl::StatusOr<std::vector<StoredResource>> stored = store_.List("Service", "");
      stored.ok()) {
    for (const StoredResource& s : *stored) {
      absl::StatusOr<policy::ParsedResource> p = policy::ParseStoredResource(s.key.kind, s.body);
      if (p.ok()) {
        services.services.push_back(static_cast<meshlet::policy::Service&>(*p->message));
      }
    }
  }
  policy::ValidationResult validation = policy::Validate(resource, &services, options_.limits);
  if (!validation.ok()) {
    return invalid(422,
                   absl::StrCat(info.kind, " \"", meta->name(), "\" is invalid: ",
                                absl::StrJoin(validation.errors, "; ",
                                              [](std::string* out, const FieldError& e) {
                                                absl::StrAppend(out, e.field, ": ", e.message);
                                              })),
                   validation.errors, meta->name());
  }

  const ResourceKey key{std::string(info.kind), meta->namespace_(), meta->name()};
  absl::StatusOr<StoredResource> existing = store_.Get(key);
  if (!existing.ok() && !absl::IsNotFound(existing.status())) {
    return StoreFailure(existing.status());
  }
  const bool exists = existing.ok();
  auto conflict = [&](absl::string_view message) {
    if (stats_ != nullptr) stats_->conflicts.Inc();
    return Error(409, create ? "AlreadyExists" : "Conflict", message, {}, info.kind, key.name);
  };
  if (create && exists) {
    return conflict(absl::StrCat(info.kind, " \"", key.name, "\" already exists"));
  }
  if (expected_revision != kAnyRevision) {
    if (!exists) {
      return Error(404, "NotFound",
                   absl::StrCat(info.kind, " \"", key.name,
                                "\" not found (the request names a resourceVersion to update)"),
                   {}, info.kind, key.name);
    }
    if (existing->revision != expected_revision) {
      return conflict(absl::StrCat("Operation cannot be fulfilled on ", info.plural, " \"",
                                   key.name, "\": the object has been modified (resourceVersion ",
                                   expected_revision, " is stale, current is ", existing->revision,
                                   "); read it again and reapply"));
    }
  }
  // Server-set metadata.
  std::unique_ptr<google::protobuf::Message> previous;
  policy::ClearServerSetFields(resource);
  if (exists) {
    absl::StatusOr<policy::ParsedResource> old =
        policy::ParseStoredResource(key.kind, existing->body);
    if (old.ok()) {
      previous = std::move(old->message);
      const meshlet::policy::ObjectMeta& old_meta = policy::Metadata(*previous);
      meta->set_creation_timestamp(old_meta.creation_timestamp());
      meta->set_uid(old_meta.uid());
      const auto* spec_field = resource.GetDescriptor()->FindFieldByName("spec");
      const std::string old_spec =
          policy::ToJson(previous->GetReflection()->GetMessage(*previous, spec_field));
      const std::string new_spec =
          policy::ToJson(resource.GetReflection()->GetMessage(resource, spec_field));
      meta->set_generation(old_meta.generation() + (old_spec == new_spec ? 0 : 1));
    }
  }
  if (meta->creation_timestamp().empty()) {
    meta->set_creation_timestamp(Rfc3339(clock_.WallNow()));
    meta->set_uid(RandomHex(16));
    meta->set_generation(1);
  }
  if (info.kind == "Service") {
    absl::Status assigned =
        addresses_->Assign(static_cast<meshlet::policy::Service&>(resource),
                           static_cast<const meshlet::policy::Service*>(previous.get()),
                           IsDryRun(request), validation.warnings);
    if (!assigned.ok()) {
      if (stats_ != nullptr) stats_->store_errors.Inc();
      return Error(500, "InternalError", assigned.message());
    }
  }
  {
    const auto* d = resource.GetDescriptor();
    resource.GetReflection()->SetString(&resource, d->FindFieldByName("api_version"),
                                        std::string(policy::kApiVersion));
    resource.GetReflection()->SetString(&resource, d->FindFieldByName("kind"),
                                        std::string(info.kind));
  }
  const std::string body = policy::ToJson(resource);

  auto add_warnings = [&](ServerResponse& r) {
    for (const std::string& w : validation.warnings) {
      r.headers.Add("warning", absl::StrCat("299 - ", JsonQuote(w)));
    }
  };
  auto respond = [&](int status, absl::string_view result, int64_t revision) {
    if (revision > 0) meta->set_resource_version(absl::StrCat(revision));
    ServerResponse r = ServerResponse::Json(status, policy::ToJson(resource) + "\n");
    r.headers.Add("x-meshlet-result", result);
    add_warnings(r);
    if (stats_ != nullptr) stats_->writes[std::string(result)].Inc();
    return r;
  };
  if (exists && existing->body == body) {
    return respond(200, "unchanged", existing->revision);
  }
  if (IsDryRun(request)) {
    return respond(exists ? 200 : 201, "dry_run", exists ? existing->revision : 0);
  }
  absl::StatusOr<int64_t> revision =
      store_.Put(key, body, exists ? existing->revision : kMustNotExist);
  if (info.kind == "Service") addresses_->Settle();
  if (absl::IsFailedPrecondition(revision.status()) || absl::IsAlreadyExists(revision.status())) {
    return conflict(absl::StrCat(info.kind, " \"", key.name,
                                 "\" changed while this request was handled; read it again and "
                                 "reapply"));
  }
  if (!revision.ok()) {
    return StoreFailure(revision.status());
  }
  if (info.kind == "MeshConfig") {
    // The address ranges may have changed: Services left without an address get one now.
    absl::StatusOr<addresses::ServiceAddresses::Backfill> backfill = addresses_->AssignMissing();
    if (!backfill.ok()) {
      validation.warnings.push_back(
          absl::StrCat("Service addresses were not assigned: ", backfill.status().message()));
    } else {
      validation.warnings.insert(validation.warnings.end(), backfill->warnings.begin(),
                                 backfill->warnings.end());
    }
  }
  return respond(exists ? 200 : 201, exists ? "updated" : "created", *revision);
}

ServerResponse PolicyApi::Remove(const ServerRequest& request, const ResourceKey& key) {
  absl::StatusOr<StoredResource> existing = store_.Get(key);
  if (absl::IsNotFound(existing.status())) {
    return Error(404, "NotFound", absl::StrCat(key.kind, " \"", key.name, "\" not found"), {},
                 key.kind, key.name);
  }
  if (!existing.ok()) {
    return StoreFailure(existing.status());
  }
  int64_t expected = kAnyRevision;
  auto params = request.QueryParams();
  if (auto it = params.find("resourceVersion"); it != params.end()) {
    if (!absl::SimpleAtoi(it->second, &expected) || expected <= 0) {
      return Error(400, "BadRequest", "resourceVersion: must be a number the server returned");
    }
    if (expected != existing->revision) {
      if (stats_ != nullptr) stats_->conflicts.Inc();
      return Error(409, "Conflict",
                   absl::StrCat(key.kind, " \"", key.name, "\": resourceVersion ", expected,
                                " is stale, current is ", existing->revision),
                   {}, key.kind, key.name);
    }
  }
  ServerResponse response = ServerResponse::Json(200, ObjectJson(*existing) + "\n");
  if (IsDryRun(request)) {
    response.headers.Add("x-meshlet-result", "dry_run");
    if (stats_ != nullptr) stats_->writes["dry_run"].Inc();
    return response;
  }
  absl::StatusOr<int64_t> deleted = store_.Delete(key, existing->revision);
  if (absl::IsFailedPrecondition(deleted.status()) || absl::IsNotFound(deleted.status())) {
    if (stats_ != nullptr) stats_->conflicts.Inc();
    return Error(409, "Conflict",
                 absl::StrCat(key.kind, " \"", key.name, "\" changed while it was being deleted"),
                 {}, key.kind, key.name);
  }
  if (!deleted.ok()) {
    return StoreFailure(deleted.status());
  }
  response.headers.Add("x-meshlet-result", "deleted");
  if (stats_ != nullptr) stats_->writes["deleted"].Inc();
  return response;
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
    return access::HandleOperatorTokenRequest(*operator_tokens_, request, *caller);
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
  if (Under(rest, "/traces") || rest == "/dependencies" || rest == "/stat") {
    if (!traces_) {
      return Error(503, "ServiceUnavailable", "the trace collector is not running");
    }
    return traces_(request);
  }
  if (absl::StartsWith(rest, "/proxies/") && absl::EndsWith(rest, "/config-dump")) {
    return RequestSidecarConfig(request, rest);
  }
  if (request.method() != "GET") {
    return api::MethodNotAllowed("GET");
  }
  std::vector<std::string> segments = absl::StrSplit(rest, '/', absl::SkipEmpty());
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
      absl::StatusOr<std::string> config = proxies_->ProxyConfigJson(segments[1]);
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

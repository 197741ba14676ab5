// The policy resources of PolicyApi (api_server.h): /apis/meshlet.io/v1,
// /apis/gateway.networking.k8s.io/v1 and v1beta1 and below, the kinds of control-plane/policy
// listed, read, written and deleted in the store. A write goes through named steps: ReadDocument
// (parse; the URL's namespace and name; resourceVersion), ValidateDocument (policy::Validate
// against the stored Services), CheckStoredState (exists, conflicts), SetServerFields (metadata the
// server owns, a Service's addresses), Commit (store, answer). Threading as for every request that
// CallsStore(): one thread at a time.

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/base/json.h"
#include "common/config/field_path.h"
#include "control-plane/api/api_internal.h"
#include "control-plane/api/api_server.h"
#include "control-plane/api/stored_services.h"
#include "control-plane/policy/codec.h"
#include "control-plane/policy/kinds.h"
#include "control-plane/policy/snapshot.h"
#include "control-plane/translate/backend_tls.h"
#include "control-plane/translate/gateway_status.h"
#include "control-plane/translate/route_status.h"

namespace meshlet::controlplane::api {

using http::ServerRequest;
using http::ServerResponse;
using policy::FieldError;
using policy::KindInfo;

namespace {

bool IsDryRun(const ServerRequest& request) {
  auto params = request.QueryParams();
  auto it = params.find("dryRun");
  return it != params.end() && it->second == "All";
}

}  // namespace

ServerResponse PolicyApi::HandleResources(const ServerRequest& request, absl::string_view prefix,
                                          absl::string_view rest, Origin origin) {
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
      if (info.ApiPath() != prefix) continue;
      kinds.push_back(absl::StrCat(R"({"kind":)", JsonQuote(info.kind), R"(,"name":)",
                                   JsonQuote(info.plural), R"(,"shortName":)",
                                   JsonQuote(info.short_name), R"(,"namespaced":)",
                                   info.namespaced ? "true" : "false", "}"));
    }
    return ServerResponse::Json(
        200, absl::StrCat(R"({"kind":"APIResourceList","groupVersion":)",
                          JsonQuote(prefix.substr(std::string_view("/apis/").size())),
                          R"(,"resources":[)", absl::StrJoin(kinds, ","), "]}\n"));
  }
  std::string namespace_;
  bool namespaced_path = false;
  if (segments[0] == "namespaces") {
    if (segments.size() < 3 || segments.size() > 4) {
      return Error(404, "NotFound",
                   absl::StrCat("expected ", prefix, "/namespaces/{namespace}/{kind}[/{name}]"));
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
  const KindInfo* info = nullptr;
  for (const KindInfo& k : policy::AllKinds()) {
    if (k.ApiPath() == prefix && k.plural == segments[0]) info = &k;
  }
  if (info == nullptr) {
    return Error(
        404, "NotFound",
        absl::StrCat("unknown resource \"", segments[0], "\" in ", prefix, "; one of: ", [prefix] {
          std::vector<std::string> plurals;
          for (const KindInfo& k : policy::AllKinds()) {
            if (k.ApiPath() == prefix) plurals.emplace_back(k.plural);
          }
          return absl::StrJoin(plurals, ", ");
        }()));
  }
  if (info->namespaced != namespaced_path && (segments.size() == 2 || !info->namespaced)) {
    return Error(404, "NotFound",
                 info->namespaced
                     ? absl::StrCat(info->kind, " is namespaced: use ", prefix,
                                    "/namespaces/{namespace}/", info->plural, "/{name}")
                     : absl::StrCat(info->kind, " is cluster-wide: use ", prefix, "/", info->plural,
                                    "/{name}"));
  }
  if (segments.size() == 1) {
    if (method == "GET") return List(*info, namespace_);
    if (method == "POST" && info->namespaced && !namespaced_path) {
      return Error(404, "NotFound",
                   absl::StrCat("create ", info->plural, " under ", prefix,
                                "/namespaces/{namespace}/", info->plural));
    }
    if (method == "POST") return Write(request, *info, namespace_, "", /*create=*/true, origin);
    return method_not_allowed("GET, POST");
  }
  const std::string& name = segments[1];
  ResourceKey key{std::string(info->store_kind), namespace_, name};
  if (method == "GET") return Get(*info, key);
  if (method == "PUT") return Write(request, *info, namespace_, name, /*create=*/false, origin);
  if (method == "DELETE") return Remove(request, *info, key, origin);
  return method_not_allowed("GET, PUT, DELETE");
}

void PolicyApi::SetLivePolicy(std::shared_ptr<const policy::LivePolicy> live) {
  std::lock_guard<std::mutex> lock(live_policy_mu_);
  live_policy_ = std::move(live);
}

void PolicyApi::SetGatewayEnvironment(translate::GatewayEnvironment env) {
  env.proxy_addresses.clear();
  std::lock_guard<std::mutex> lock(live_policy_mu_);
  gateway_environment_ = std::move(env);
}

PolicyApi::ObjectStatuses PolicyApi::ComputedStatuses(const KindInfo& info,
                                                      const ResourceKey* only) const {
  ObjectStatuses out;
  const bool gateway = info.kind == "Gateway" || info.kind == "GatewayClass";
  const bool backend_tls = info.kind == "BackendTLSPolicy";
  if (info.group != policy::kGatewayGroup ||
      (info.kind != "HTTPRoute" && info.kind != "GRPCRoute" && !gateway && !backend_tls)) {
    return out;
  }
  std::shared_ptr<const policy::LivePolicy> live;
  translate::GatewayEnvironment env;
  {
    std::lock_guard<std::mutex> lock(live_policy_mu_);
    live = live_policy_;
    env = gateway_environment_;
  }
  std::shared_ptr<const policy::PolicySnapshot> current =
      live != nullptr ? live->Current() : nullptr;
  policy::PolicySnapshot snapshot;
  if (current != nullptr) {
    snapshot = *current;  // shares the resources: a copy of pointers
  } else if (absl::StatusOr<policy::PolicySnapshot> loaded = policy::LoadPolicySnapshot(store_);
             loaded.ok()) {
    snapshot = *std::move(loaded);
  } else {
    return out;  // the objects are shown without status
  }
  if (gateway) {
    if (registry_ != nullptr) {
      env.proxy_addresses = translate::GatewayProxyAddresses(snapshot, *registry_->Snapshot());
    }
    translate::GatewayStatuses computed = translate::ComputeGatewayStatuses(snapshot, env);
    for (const translate::GatewayClassStatusUpdate& u : computed.classes) {
      out[{"GatewayClass", "", u.name}] = u.status.SerializeAsString();
    }
    for (const translate::GatewayStatusUpdate& u : computed.gateways) {
      out[{"Gateway", u.namespace_, u.name}] = u.status.SerializeAsString();
    }
    return out;
  }
  if (backend_tls) {
    // Per ancestor Gateway, as written to Kubernetes (RouteStatus and PolicyStatus share their
    // wire format: parents and ancestors are field 1, each ref, controller and conditions 1-3).
    for (policy::RouteStatusUpdate& u : translate::ComputeBackendTlsStatuses(snapshot, env)) {
      out[{u.kind, u.namespace_, u.name}] = u.status.SerializeAsString();
    }
    return out;
  }
  if (only != nullptr) {
    // Only that route's status: the other routes of both kinds are left out (a route's status
    // depends on the Services and ReferenceGrants, not on other routes).
    auto keep_only = [only](auto& routes, absl::string_view kind) {
      const auto* route = only->kind == kind ? routes.Find(only->namespace_, only->name) : nullptr;
      auto kept = route != nullptr ? std::optional(*route) : std::nullopt;
      routes.clear();
      if (kept.has_value()) routes.push_back(*std::move(kept));
    };
    keep_only(snapshot.gateway_http_routes, "GatewayHTTPRoute");
    keep_only(snapshot.grpc_routes, "GatewayGRPCRoute");
  }
  std::shared_ptr<const registry::RegistrySnapshot> registry =
      registry_ != nullptr ? registry_->Snapshot()
                           : std::make_shared<const registry::RegistrySnapshot>();
  for (policy::RouteStatusUpdate& u : translate::ComputeRouteStatuses(snapshot, *registry, env)) {
    out[{u.kind, u.namespace_, u.name}] = u.status.SerializeAsString();
  }
  return out;
}

std::string PolicyApi::ObjectJson(const StoredResource& stored,
                                  const ObjectStatuses* statuses) const {
  absl::StatusOr<policy::ParsedResource> parsed =
      policy::ParseStoredResource(stored.key.kind, stored.body);
  if (!parsed.ok()) return stored.body;  // shown as stored; LoadPolicySnapshot warns
  meshlet::policy::ObjectMeta* meta = policy::MutableMetadata(*parsed->message);
  meta->set_resource_version(absl::StrCat(stored.revision));
  if (statuses != nullptr && parsed->info->group == policy::kGatewayGroup) {
    const std::string ns = !parsed->info->namespaced    ? ""
                           : meta->namespace_().empty() ? "default"
                                                        : meta->namespace_();
    auto it = statuses->find({std::string(parsed->info->kind), ns, meta->name()});
    const google::protobuf::FieldDescriptor* field =
        parsed->message->GetDescriptor()->FindFieldByName("status");
    if (it != statuses->end() && field != nullptr &&
        field->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE) {
      (void)parsed->message->GetReflection()
          ->MutableMessage(parsed->message.get(), field)
          ->ParseFromString(it->second);
    }
  }
  return policy::ToJson(*parsed->message);
}

ServerResponse PolicyApi::Get(const KindInfo& info, const ResourceKey& key) {
  absl::StatusOr<StoredResource> stored = store_.Get(key);
  if (absl::IsNotFound(stored.status())) {
    return Error(404, "NotFound",
                 absl::StrCat(info.kind, " \"", key.name, "\" not found",
                              key.namespace_.empty() ? "" : " in namespace \"", key.namespace_,
                              key.namespace_.empty() ? "" : "\""),
                 {}, info.kind, key.name);
  }
  if (!stored.ok()) {
    return StoreFailure(stored.status());
  }
  const ObjectStatuses statuses = ComputedStatuses(info, &key);
  return ServerResponse::Json(200, ObjectJson(*stored, &statuses) + "\n");
}

ServerResponse PolicyApi::List(const KindInfo& info, absl::string_view namespace_) {
  const int64_t revision = store_.Revision();
  absl::StatusOr<std::vector<StoredResource>> all = store_.List(info.store_kind, namespace_);
  if (!all.ok()) {
    return StoreFailure(all.status());
  }
  std::string body =
      absl::StrCat(R"({"apiVersion":)", JsonQuote(info.ApiVersion()), R"(,"kind":)",
                   JsonQuote(absl::StrCat(info.kind, "List")),
                   R"(,"metadata":{"resourceVersion":")", revision, R"("},"items":[)");
  const ObjectStatuses statuses = ComputedStatuses(info);
  for (size_t i = 0; i < all->size(); ++i) {
    if (i > 0) body += ",";
    body += ObjectJson((*all)[i], &statuses);
  }
  body += "]}\n";
  return ServerResponse::Json(200, std::move(body));
}

// One write of a resource on its way through Write's steps.
struct PolicyApi::PendingWrite {
  const KindInfo& info;
  bool create = false;
  bool dry_run = false;
  std::unique_ptr<google::protobuf::Message> resource;
  meshlet::policy::ObjectMeta* meta = nullptr;  // resource's
  int64_t expected_revision = kAnyRevision;     // from metadata.resourceVersion
  policy::ValidationResult validation;
  ResourceKey key;
  std::optional<StoredResource> existing;               // as stored, if it is
  std::unique_ptr<google::protobuf::Message> previous;  // existing, parsed (when it parses)
  std::string body;                                     // what to store
  bool from_mirror = false;  // the Kubernetes mirror's write (HandleFromMirror)
};

namespace {

// Why `existing` may not be changed by this request: it is mirrored from Kubernetes and the
// request is not the mirror's (empty: it may).
std::string MirroredRefusal(const StoredResource& existing, bool from_mirror,
                            absl::string_view verb) {
  if (from_mirror) return "";
  absl::StatusOr<policy::ParsedResource> parsed =
      policy::ParseStoredResource(existing.key.kind, existing.body);
  if (!parsed.ok()) return "";
  const auto& annotations = policy::Metadata(*parsed->message).annotations();
  auto it = annotations.find(kManagedByAnnotation);
  if (it == annotations.end() || it->second != kManagedByKubernetes) return "";
  const ResourceKey& key = existing.key;
  return absl::StrCat(
      key.kind, " \"", key.name, "\"",
      key.namespace_.empty() ? "" : absl::StrCat(" in namespace \"", key.namespace_, "\""),
      " is mirrored from Kubernetes (annotation ", kManagedByAnnotation, ": ", kManagedByKubernetes,
      "): ", verb, " it with kubectl, e.g. kubectl ", verb == "delete" ? "delete" : "apply -f",
      " ...; the control plane mirrors "
      "the cluster's object into the store");
}

}  // namespace

ServerResponse PolicyApi::Write(const ServerRequest& request, const KindInfo& info,
                                absl::string_view url_namespace, absl::string_view url_name,
                                bool create, Origin origin) {
  PendingWrite write{.info = info,
                     .create = create,
                     .dry_run = IsDryRun(request),
                     .from_mirror = origin == Origin::kKubernetesMirror};
  if (auto refused = ReadDocument(request, url_namespace, url_name, write)) return *refused;
  if (auto refused = ValidateDocument(write)) return *refused;
  if (auto refused = CheckStoredState(write)) return *refused;
  if (auto refused = SetServerFields(write)) return *refused;
  return Commit(write);
}

ServerResponse PolicyApi::Invalid(const PendingWrite& write, int status, absl::string_view message,
                                  const std::vector<FieldError>& causes, absl::string_view name) {
  if (stats_ != nullptr) stats_->invalid.Inc();
  return Error(status, status == 422 ? "Invalid" : "BadRequest", message, causes, write.info.kind,
               name);
}

ServerResponse PolicyApi::Conflict(const PendingWrite& write, absl::string_view message) {
  if (stats_ != nullptr) stats_->conflicts.Inc();
  return Error(409, write.create ? "AlreadyExists" : "Conflict", message, {}, write.info.kind,
               write.key.name);
}

std::optional<ServerResponse> PolicyApi::ReadDocument(const ServerRequest& request,
                                                      absl::string_view url_namespace,
                                                      absl::string_view url_name,
                                                      PendingWrite& write) {
  const KindInfo& info = write.info;
  if (request.body.empty()) return Invalid(write, 400, "request body is empty", {}, url_name);
  absl::StatusOr<policy::ParsedResource> parsed = policy::ParseResource(request.body, {}, &info);
  if (!parsed.ok()) {
    policy::ErrorLocation where = policy::SplitParseError(parsed.status().message());
    std::string message =
        where.path.empty() ? where.reason : absl::StrCat(where.path, ": ", where.reason);
    if (!where.position.empty()) absl::StrAppend(&message, " (at ", where.position, ")");
    return Invalid(write, 400, message, {{where.path, where.reason}}, url_name);
  }
  write.resource = std::move(parsed->message);
  meshlet::policy::ObjectMeta* meta = write.meta = policy::MutableMetadata(*write.resource);
  // Where the object lives comes from the URL; the body may repeat it but not contradict it.
  if (info.namespaced) {
    if (meta->namespace_().empty()) meta->set_namespace_(std::string(url_namespace));
    if (meta->namespace_() != url_namespace) {
      return Invalid(write, 400,
                     absl::StrCat("metadata.namespace: \"", meta->namespace_(),
                                  "\" does not match the URL's namespace \"", url_namespace, "\""),
                     {{"metadata.namespace", "does not match the URL"}}, meta->name());
    }
  }
  if (!write.create) {
    if (meta->name().empty()) meta->set_name(std::string(url_name));
    if (meta->name() != url_name) {
      return Invalid(write, 400,
                     absl::StrCat("metadata.name: \"", meta->name(),
                                  "\" does not match the URL's name \"", url_name, "\""),
                     {{"metadata.name", "does not match the URL"}}, meta->name());
    }
  }
  const std::string sent_version = meta->resource_version();
  if (!sent_version.empty() &&
      (!absl::SimpleAtoi(sent_version, &write.expected_revision) || write.expected_revision <= 0)) {
    return Invalid(write, 400,
                   "metadata.resourceVersion: must be a resourceVersion the server returned",
                   {{"metadata.resourceVersion", "not a number"}}, meta->name());
  }
  return std::nullopt;
}

std::optional<ServerResponse> PolicyApi::ValidateDocument(PendingWrite& write) {
  // Services are what references resolve against (warnings), and what a Service's addresses
  // must not collide with.
  write.validation =
      policy::Validate(*write.resource, &stored_services_->Current(store_), options_.limits);
  if (!write.validation.ok()) {
    return Invalid(write, 422,
                   absl::StrCat(write.info.kind, " \"", write.meta->name(), "\" is invalid: ",
                                absl::StrJoin(write.validation.errors, "; ",
                                              [](std::string* out, const FieldError& e) {
                                                absl::StrAppend(out, e.field, ": ", e.message);
                                              })),
                   write.validation.errors, write.meta->name());
  }
  return std::nullopt;
}

std::optional<ServerResponse> PolicyApi::CheckStoredState(PendingWrite& write) {
  const KindInfo& info = write.info;
  write.key =
      ResourceKey{std::string(info.store_kind), write.meta->namespace_(), write.meta->name()};
  absl::StatusOr<StoredResource> existing = store_.Get(write.key);
  if (!existing.ok() && !absl::IsNotFound(existing.status())) {
    return StoreFailure(existing.status());
  }
  if (existing.ok()) write.existing = std::move(*existing);
  const std::string& name = write.key.name;
  if (write.existing) {
    if (std::string why = MirroredRefusal(*write.existing, write.from_mirror, "change");
        !why.empty()) {
      return Conflict(write, why);
    }
  }
  if (!write.from_mirror) {
    // The mark is the mirror's to set: an object written with it elsewhere would pass for
    // mirrored, refused to every later change through the API.
    const auto& annotations = write.meta->annotations();
    if (auto it = annotations.find(kManagedByAnnotation);
        it != annotations.end() && it->second == kManagedByKubernetes) {
      const std::string field =
          absl::StrCat("metadata.annotations[\"", kManagedByAnnotation, "\"]");
      return Invalid(write, 422,
                     absl::StrCat(field, ": \"", kManagedByKubernetes,
                                  "\" is set by the control plane's Kubernetes mirror only; "
                                  "leave the annotation out (or apply the object with kubectl)"),
                     {{field, "set by the Kubernetes mirror only"}}, name);
    }
  }
  if (write.create && write.existing) {
    return Conflict(write, absl::StrCat(info.kind, " \"", name, "\" already exists"));
  }
  if (write.expected_revision != kAnyRevision) {
    if (!write.existing) {
      return Error(404, "NotFound",
                   absl::StrCat(info.kind, " \"", name,
                                "\" not found (the request names a resourceVersion to update)"),
                   {}, info.kind, name);
    }
    if (write.existing->revision != write.expected_revision) {
      return Conflict(write,
                      absl::StrCat("Operation cannot be fulfilled on ", info.plural, " \"", name,
                                   "\": the object has been modified (resourceVersion ",
                                   write.expected_revision, " is stale, current is ",
                                   write.existing->revision, "); read it again and reapply"));
    }
  }
  return std::nullopt;
}

std::optional<ServerResponse> PolicyApi::SetServerFields(PendingWrite& write) {
  google::protobuf::Message& resource = *write.resource;
  meshlet::policy::ObjectMeta* meta = write.meta;
  policy::ClearServerSetFields(resource);
  if (write.existing) {
    absl::StatusOr<policy::ParsedResource> old =
        policy::ParseStoredResource(write.key.kind, write.existing->body);
    if (old.ok()) {
      write.previous = std::move(old->message);
      const google::protobuf::Message& previous = *write.previous;
      const meshlet::policy::ObjectMeta& old_meta = policy::Metadata(previous);
      meta->set_creation_timestamp(old_meta.creation_timestamp());
      meta->set_uid(old_meta.uid());
      const auto* spec_field = resource.GetDescriptor()->FindFieldByName("spec");
      const std::string old_spec =
          policy::ToJson(previous.GetReflection()->GetMessage(previous, spec_field));
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
  if (write.info.kind == "Service") {
    absl::Status assigned =
        addresses_->Assign(static_cast<meshlet::policy::Service&>(resource),
                           static_cast<const meshlet::policy::Service*>(write.previous.get()),
                           write.dry_run, write.validation.warnings);
    if (!assigned.ok()) {
      if (stats_ != nullptr) stats_->store_errors.Inc();
      return Error(500, "InternalError", assigned.message());
    }
  }
  policy::SetTypeFields(resource);
  write.body = policy::ToJson(resource);
  return std::nullopt;
}

ServerResponse PolicyApi::Answer(PendingWrite& write, int status, absl::string_view result,
                                 int64_t revision) {
  if (revision > 0) write.meta->set_resource_version(absl::StrCat(revision));
  ServerResponse r = ServerResponse::Json(status, policy::ToJson(*write.resource) + "\n");
  r.headers.Add("x-meshlet-result", result);
  for (const std::string& w : write.validation.warnings) {
    r.headers.Add("warning", absl::StrCat("299 - ", JsonQuote(w)));
  }
  if (stats_ != nullptr) stats_->writes[std::string(result)].Inc();
  return r;
}

ServerResponse PolicyApi::Commit(PendingWrite& write) {
  const bool exists = write.existing.has_value();
  if (exists && write.existing->body == write.body) {
    return Answer(write, 200, "unchanged", write.existing->revision);
  }
  if (write.dry_run) {
    return Answer(write, exists ? 200 : 201, "dry_run", exists ? write.existing->revision : 0);
  }
  absl::StatusOr<int64_t> revision =
      store_.Put(write.key, write.body, exists ? write.existing->revision : kMustNotExist);
  if (write.info.kind == "Service") addresses_->Settle();
  if (absl::IsFailedPrecondition(revision.status()) || absl::IsAlreadyExists(revision.status())) {
    return Conflict(write, absl::StrCat(write.info.kind, " \"", write.key.name,
                                        "\" changed while this request was handled; read it "
                                        "again and reapply"));
  }
  if (!revision.ok()) {
    return StoreFailure(revision.status());
  }
  if (write.info.kind == "MeshConfig") {
    // The address ranges may have changed: Services left without an address get one now.
    std::vector<std::string>& warnings = write.validation.warnings;
    absl::StatusOr<addresses::ServiceAddresses::Backfill> backfill = addresses_->AssignMissing();
    if (!backfill.ok()) {
      warnings.push_back(
          absl::StrCat("Service addresses were not assigned: ", backfill.status().message()));
    } else {
      warnings.insert(warnings.end(), backfill->warnings.begin(), backfill->warnings.end());
    }
  }
  return Answer(write, exists ? 200 : 201, exists ? "updated" : "created", *revision);
}

ServerResponse PolicyApi::Remove(const ServerRequest& request, const KindInfo& info,
                                 const ResourceKey& key, Origin origin) {
  absl::StatusOr<StoredResource> existing = store_.Get(key);
  if (absl::IsNotFound(existing.status())) {
    return Error(404, "NotFound", absl::StrCat(info.kind, " \"", key.name, "\" not found"), {},
                 info.kind, key.name);
  }
  if (!existing.ok()) {
    return StoreFailure(existing.status());
  }
  if (std::string why = MirroredRefusal(*existing, origin == Origin::kKubernetesMirror, "delete");
      !why.empty()) {
    if (stats_ != nullptr) stats_->conflicts.Inc();
    return Error(409, "Conflict", why, {}, key.kind, key.name);
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
                   absl::StrCat(info.kind, " \"", key.name, "\": resourceVersion ", expected,
                                " is stale, current is ", existing->revision),
                   {}, info.kind, key.name);
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
                 absl::StrCat(info.kind, " \"", key.name, "\" changed while it was being deleted"),
                 {}, info.kind, key.name);
  }
  if (!deleted.ok()) {
    return StoreFailure(deleted.status());
  }
  response.headers.Add("x-meshlet-result", "deleted");
  if (stats_ != nullptr) stats_->writes["deleted"].Inc();
  return response;
}

}  // namespace meshlet::controlplane::api

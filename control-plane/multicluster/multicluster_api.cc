#include "control-plane/multicluster/multicluster_api.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/base/time_text.h"
#include "common/net/address.h"
#include "common/tls/spiffe.h"
#include "common/tls/tls_context.h"
#include "control-plane/api/status.h"
#include "control-plane/multicluster/link_records.h"
#include "control-plane/translate/exports.h"
#include "google/protobuf/util/json_util.h"

namespace meshlet::controlplane::multicluster {
namespace {

using http::ServerRequest;
using http::ServerResponse;
using meshlet::multicluster::ClusterLink;

constexpr absl::string_view kPrefix = "/api/v1/multicluster";

ServerResponse Error(int status, absl::string_view reason, absl::string_view message,
                     absl::string_view field = "") {
  return api::FieldStatusResponse(status, reason, message, "ClusterLink", field);
}

std::string LinkJson(ClusterLink link) {
  link.clear_token();
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(link, &json);
  return json;
}

}  // namespace

std::string ExportsSource::Json() {
  const std::shared_ptr<const registry::RegistrySnapshot> registry = registry_.Snapshot();
  if (!answer_.empty() && answered_policy_ == policy_.get() &&
      answered_version_ == registry->version) {
    return answer_;
  }
  static const policy::PolicySnapshot kNoPolicy;
  const translate::MeshExports computed = translate::ComputeExports(
      policy_ != nullptr ? *policy_ : kNoPolicy, *registry, trust_domain_);
  meshlet::multicluster::ClusterExports exports;
  exports.set_kind("ClusterExports");
  exports.set_cluster(cluster_);
  exports.set_trust_domain(trust_domain_);
  for (const translate::ExportedGateway& g : computed.gateways) {
    auto* out = exports.add_gateways();
    out->set_gateway(g.gateway);
    out->set_address(g.address);
    out->set_port(g.port);
    out->set_region(g.region);
    out->set_zone(g.zone);
  }
  for (const translate::ExportedService& s : computed.services) {
    auto* out = exports.add_services();
    out->set_namespace_(s.namespace_);
    out->set_name(s.name);
    for (uint32_t port : s.ports) out->add_ports(port);
    for (const std::string& id : s.identities) out->add_identities(id);
    out->set_members(s.members);
  }
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  answer_.clear();
  (void)google::protobuf::util::MessageToJsonString(exports, &answer_, options);
  answered_policy_ = policy_.get();
  answered_version_ = registry->version;
  return answer_;
}

MulticlusterApi::MulticlusterApi(Store& store,
                                 std::function<std::shared_ptr<const StoreKeys>()> keys,
                                 LinkManager& links, ExportsSource& exports, const Clock& clock)
    : store_(store), keys_(std::move(keys)), links_(links), exports_(exports), clock_(clock) {}

ServerResponse MulticlusterApi::Handle(const ServerRequest& request,
                                       const access::Principal& caller) {
  absl::string_view rest = request.path();
  if (!absl::ConsumePrefix(&rest, kPrefix)) {
    return Error(404, "NotFound", absl::StrCat("no such path: ", request.path()));
  }
  const absl::string_view method = request.method();
  if (rest == "/exports") {
    if (method != "GET") return api::MethodNotAllowed("GET");
    return ServerResponse::Json(200, exports_.Json());
  }
  if (rest == "/links") {
    if (method == "GET") return ServerResponse::Json(200, links_.StatusJson());
    if (method == "POST") return Link(request, caller);
    return api::MethodNotAllowed("GET, POST");
  }
  if (absl::ConsumePrefix(&rest, "/links/") && !rest.empty()) {
    if (method != "DELETE") return api::MethodNotAllowed("DELETE");
    return Unlink(rest);
  }
  return Error(404, "NotFound", absl::StrCat("no such path: ", request.path()));
}

ServerResponse MulticlusterApi::Link(const ServerRequest& request,
                                     const access::Principal& caller) {
  ClusterLink link;
  if (auto status = google::protobuf::util::JsonStringToMessage(
          google::protobuf::StringPiece(request.body.data(), request.body.size()), &link);
      !status.ok()) {
    return Error(400, "BadRequest",
                 absl::StrCat("the body is not a ClusterLink: ", status.ToString()));
  }
  if (absl::Status name = ValidateClusterName(link.cluster()); !name.ok()) {
    return Error(422, "Invalid", name.message(), "cluster");
  }
  if (link.cluster() == links_.options().cluster) {
    return Error(422, "Invalid",
                 absl::StrCat("\"", link.cluster(), "\" is this cluster's own name"), "cluster");
  }
  for (absl::string_view server : absl::StrSplit(link.server(), ',')) {
    if (absl::StatusOr<net::HostPort> hp = net::SplitHostPort(server); !hp.ok()) {
      return Error(422, "Invalid", hp.status().message(), "server");
    }
  }
  if (!tls::SpiffeId::Parse(link.server_identity()).ok()) {
    return Error(422, "Invalid",
                 absl::StrCat("\"", link.server_identity(), "\" is not a SPIFFE id"),
                 "serverIdentity");
  }
  tls::TlsContextConfig config;
  config.trust_bundle_pem = link.ca_pem();
  if (link.ca_pem().empty()) {
    return Error(422, "Invalid", "the linked API's CA certificates are required", "caPem");
  }
  if (auto context = tls::TlsContext::CreateClient(config); !context.ok()) {
    return Error(422, "Invalid", context.status().message(), "caPem");
  }
  if (link.token().empty()) return Error(422, "Invalid", "a peer token is required", "token");
  link.set_created_at(Rfc3339Text(clock_.WallNow()));
  link.set_created_by(caller.name);
  const std::shared_ptr<const StoreKeys> keys = keys_ ? keys_() : nullptr;
  absl::StatusOr<std::string> value = EncodeLink(link, keys.get());
  if (!value.ok()) return Error(500, "InternalError", value.status().message());
  if (absl::StatusOr<int64_t> put = store_.Put(LinkKey(link.cluster()), *value, kAnyRevision);
      !put.ok()) {
    return Error(absl::IsUnavailable(put.status()) ? 503 : 500,
                 absl::IsUnavailable(put.status()) ? "ServiceUnavailable" : "InternalError",
                 put.status().message());
  }
  return ServerResponse::Json(201, LinkJson(std::move(link)));
}

ServerResponse MulticlusterApi::Unlink(absl::string_view cluster) {
  absl::StatusOr<StoredResource> stored = store_.Get(LinkKey(cluster));
  if (absl::IsNotFound(stored.status())) {
    return Error(404, "NotFound", absl::StrCat("no link to cluster \"", cluster, "\""));
  }
  if (!stored.ok()) return Error(503, "ServiceUnavailable", stored.status().message());
  const std::shared_ptr<const StoreKeys> keys = keys_ ? keys_() : nullptr;
  absl::StatusOr<ClusterLink> link = DecodeLink(*stored, keys.get());
  if (absl::StatusOr<int64_t> removed = store_.Delete(stored->key, stored->revision);
      !removed.ok()) {
    return Error(absl::IsNotFound(removed.status()) ? 404 : 409, "Conflict",
                 removed.status().message());
  }
  if (!link.ok()) {
    // Removed all the same: a record that does not open is no link worth keeping.
    ClusterLink unknown;
    unknown.set_cluster(std::string(cluster));
    return ServerResponse::Json(200, LinkJson(std::move(unknown)));
  }
  return ServerResponse::Json(200, LinkJson(*std::move(link)));
}

}  // namespace meshlet::controlplane::multicluster

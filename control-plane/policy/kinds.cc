#include "control-plane/policy/kinds.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/logging.h"
#include "xds/gateway.pb.h"

namespace meshlet::controlplane::policy {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

std::unique_ptr<Message> KindInfo::New() const {
  return std::unique_ptr<Message>(
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(descriptor)->New());
}

std::string KindInfo::ApiVersion() const { return absl::StrCat(group, "/", versions.front()); }

bool KindInfo::AcceptsApiVersion(absl::string_view api_version) const {
  for (absl::string_view version : versions) {
    if (api_version.size() == group.size() + 1 + version.size() &&
        absl::StartsWith(api_version, group) && api_version[group.size()] == '/' &&
        absl::EndsWith(api_version, version)) {
      return true;
    }
  }
  return false;
}

std::string KindInfo::AcceptedApiVersions() const {
  return absl::StrJoin(versions, " or ", [this](std::string* out, absl::string_view version) {
    absl::StrAppend(out, group, "/", version);
  });
}

std::string KindInfo::ApiPath() const { return absl::StrCat("/apis/", ApiVersion()); }

std::string KindInfo::QualifiedName() const {
  return absl::StrCat(absl::AsciiStrToLower(kind), ".", group);
}

const std::vector<KindInfo>& AllKinds() {
  // meshlet's kinds come first: an unqualified name two groups share means the first.
  static const auto* kinds = new std::vector<KindInfo>{
      {"Service",
       "services",
       "svc",
       true,
       meshlet::policy::Service::descriptor(),
       kApiGroup,
       {"v1"},
       "Service"},
      {"TrafficPolicy",
       "trafficpolicies",
       "tp",
       true,
       meshlet::policy::TrafficPolicy::descriptor(),
       kApiGroup,
       {"v1"},
       "TrafficPolicy"},
      {"HTTPRoute",
       "httproutes",
       "hr",
       true,
       meshlet::policy::HTTPRoute::descriptor(),
       kApiGroup,
       {"v1"},
       "HTTPRoute"},
      {"AuthorizationPolicy",
       "authorizationpolicies",
       "ap",
       true,
       meshlet::policy::AuthorizationPolicy::descriptor(),
       kApiGroup,
       {"v1"},
       "AuthorizationPolicy"},
      {"RequestAuthentication",
       "requestauthentications",
       "ra",
       true,
       meshlet::policy::RequestAuthentication::descriptor(),
       kApiGroup,
       {"v1"},
       "RequestAuthentication"},
      {"ExternalService",
       "externalservices",
       "es",
       true,
       meshlet::policy::ExternalService::descriptor(),
       kApiGroup,
       {"v1"},
       "ExternalService"},
      {"MeshConfig",
       "meshconfigs",
       "mc",
       false,
       meshlet::policy::MeshConfig::descriptor(),
       kApiGroup,
       {"v1"},
       "MeshConfig"},
      // The Gateway API's names: upstream's CRDs give the routes no short name.
      {"HTTPRoute",
       "httproutes",
       "",
       true,
       meshlet::gateway::HTTPRoute::descriptor(),
       kGatewayGroup,
       {"v1"},
       "GatewayHTTPRoute"},
      {"GRPCRoute",
       "grpcroutes",
       "",
       true,
       meshlet::gateway::GRPCRoute::descriptor(),
       kGatewayGroup,
       {"v1"},
       "GatewayGRPCRoute"},
      {"ReferenceGrant",
       "referencegrants",
       "refgrant",
       true,
       meshlet::gateway::ReferenceGrant::descriptor(),
       kGatewayGroup,
       {"v1beta1", "v1"},
       "GatewayReferenceGrant"},
      {"GatewayClass",
       "gatewayclasses",
       "gc",
       false,
       meshlet::gateway::GatewayClass::descriptor(),
       kGatewayGroup,
       {"v1"},
       "GatewayGatewayClass"},
      {"Gateway",
       "gateways",
       "gtw",
       true,
       meshlet::gateway::Gateway::descriptor(),
       kGatewayGroup,
       {"v1"},
       "GatewayGateway"},
      {"BackendTLSPolicy",
       "backendtlspolicies",
       "btlspolicy",
       true,
       meshlet::gateway::BackendTLSPolicy::descriptor(),
       kGatewayGroup,
       {"v1"},
       "GatewayBackendTLSPolicy"},
  };
  return *kinds;
}

namespace {
bool NamesKind(const KindInfo& info, absl::string_view name) {
  return absl::EqualsIgnoreCase(name, info.kind) || absl::EqualsIgnoreCase(name, info.plural) ||
         (!info.short_name.empty() && absl::EqualsIgnoreCase(name, info.short_name));
}
}  // namespace

const KindInfo* FindKind(absl::string_view name) {
  for (const KindInfo& info : AllKinds()) {
    if (NamesKind(info, name)) return &info;
  }
  // "<name>.<group>"
  for (const KindInfo& info : AllKinds()) {
    absl::string_view rest = name;
    if (rest.size() > info.group.size() + 1 && absl::EndsWithIgnoreCase(rest, info.group) &&
        rest[rest.size() - info.group.size() - 1] == '.') {
      rest.remove_suffix(info.group.size() + 1);
      if (NamesKind(info, rest)) return &info;
    }
  }
  return nullptr;
}

const KindInfo* FindServedKind(absl::string_view group, absl::string_view version,
                               absl::string_view plural) {
  for (const KindInfo& info : AllKinds()) {
    if (info.group == group && info.versions.front() == version && info.plural == plural) {
      return &info;
    }
  }
  return nullptr;
}

absl::StatusOr<const KindInfo*> FindDocumentKind(absl::string_view api_version,
                                                 absl::string_view kind) {
  const KindInfo* named = nullptr;  // the first kind of that name
  for (const KindInfo& info : AllKinds()) {
    if (info.kind != kind) continue;
    if (api_version.empty() || info.AcceptsApiVersion(api_version)) return &info;
    if (named == nullptr) named = &info;
  }
  if (named == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown kind \"", kind, "\"; one of ", KnownKindNames()));
  }
  std::vector<std::string> expected;
  for (const KindInfo& info : AllKinds()) {
    if (info.kind == kind) expected.push_back(info.AcceptedApiVersions());
  }
  return absl::InvalidArgumentError(absl::StrCat("\"", api_version, "\" is not an apiVersion of ",
                                                 kind, "; use ", absl::StrJoin(expected, " or ")));
}

const KindInfo* FindStoredKind(absl::string_view store_kind) {
  for (const KindInfo& info : AllKinds()) {
    if (info.store_kind == store_kind) return &info;
  }
  return nullptr;
}

std::string KnownKindNames() {
  return absl::StrJoin(AllKinds(), ", ", [](std::string* out, const KindInfo& info) {
    absl::StrAppend(out, info.kind);
    if (info.group != kApiGroup && FindKind(info.kind) != &info) {
      absl::StrAppend(out, " (", info.group, ")");
    }
  });
}

namespace {
const FieldDescriptor* MetadataField(const Message& resource) {
  const FieldDescriptor* field = resource.GetDescriptor()->FindFieldByName("metadata");
  CHECK(field != nullptr && field->message_type() == meshlet::policy::ObjectMeta::descriptor())
      << resource.GetDescriptor()->full_name() << " is not a policy kind";
  return field;
}
}  // namespace

const meshlet::policy::ObjectMeta& Metadata(const Message& resource) {
  return static_cast<const meshlet::policy::ObjectMeta&>(
      resource.GetReflection()->GetMessage(resource, MetadataField(resource)));
}

meshlet::policy::ObjectMeta* MutableMetadata(Message& resource) {
  return static_cast<meshlet::policy::ObjectMeta*>(
      resource.GetReflection()->MutableMessage(&resource, MetadataField(resource)));
}

void ClearServerSetFields(Message& resource) {
  meshlet::policy::ObjectMeta* meta = MutableMetadata(resource);
  meta->clear_resource_version();
  meta->clear_generation();
  meta->clear_creation_timestamp();
  meta->clear_uid();
  if (const FieldDescriptor* status = resource.GetDescriptor()->FindFieldByName("status")) {
    resource.GetReflection()->ClearField(&resource, status);
  }
}

void SetTypeFields(Message& resource) {
  const KindInfo& info = InfoOf(resource);
  const auto* d = resource.GetDescriptor();
  resource.GetReflection()->SetString(&resource, d->FindFieldByName("api_version"),
                                      info.ApiVersion());
  resource.GetReflection()->SetString(&resource, d->FindFieldByName("kind"),
                                      std::string(info.kind));
}

std::string KindOf(const Message& resource) { return std::string(InfoOf(resource).kind); }

const KindInfo& InfoOf(const Message& resource) {
  for (const KindInfo& info : AllKinds()) {
    if (info.descriptor == resource.GetDescriptor()) return info;
  }
  CHECK(false) << resource.GetDescriptor()->full_name() << " is not a policy kind";
  return AllKinds().front();
}

}  // namespace meshlet::controlplane::policy

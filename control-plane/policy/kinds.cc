#include "control-plane/policy/kinds.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "common/base/logging.h"

namespace meshlet::controlplane::policy {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

std::unique_ptr<Message> KindInfo::New() const {
  return std::unique_ptr<Message>(
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(descriptor)->New());
}

const std::vector<KindInfo>& AllKinds() {
  static const auto* kinds = new std::vector<KindInfo>{
      {"Service", "services", "svc", true, meshlet::policy::Service::descriptor()},
      {"TrafficPolicy", "trafficpolicies", "tp", true,
       meshlet::policy::TrafficPolicy::descriptor()},
      {"HTTPRoute", "httproutes", "hr", true, meshlet::policy::HTTPRoute::descriptor()},
      {"AuthorizationPolicy", "authorizationpolicies", "ap", true,
       meshlet::policy::AuthorizationPolicy::descriptor()},
      {"MeshConfig", "meshconfigs", "mc", false, meshlet::policy::MeshConfig::descriptor()},
  };
  return *kinds;
}

const KindInfo* FindKind(absl::string_view name) {
  for (const KindInfo& info : AllKinds()) {
    if (absl::EqualsIgnoreCase(name, info.kind) || absl::EqualsIgnoreCase(name, info.plural) ||
        absl::EqualsIgnoreCase(name, info.short_name)) {
      return &info;
    }
  }
  return nullptr;
}

std::string KnownKindNames() {
  return absl::StrJoin(AllKinds(), ", ", [](std::string* out, const KindInfo& info) {
    out->append(info.kind.data(), info.kind.size());
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

std::string KindOf(const Message& resource) { return std::string(InfoOf(resource).kind); }

const KindInfo& InfoOf(const Message& resource) {
  for (const KindInfo& info : AllKinds()) {
    if (info.descriptor == resource.GetDescriptor()) return info;
  }
  CHECK(false) << resource.GetDescriptor()->full_name() << " is not a policy kind";
  return AllKinds().front();
}

}  // namespace meshlet::controlplane::policy

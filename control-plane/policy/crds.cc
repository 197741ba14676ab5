#include "control-plane/policy/crds.h"

#include <google/protobuf/descriptor.h>
#include <yaml-cpp/yaml.h>

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "control-plane/policy/kinds.h"

namespace meshlet::controlplane::policy {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;

void EmitMessage(YAML::Emitter& out, const Descriptor* message, std::set<const Descriptor*>& path);

// The schema of one value of `field` (an element, for repeated fields and maps).
bool IsPlainMessage(const FieldDescriptor* field, const std::set<const Descriptor*>& path) {
  if (field->type() != FieldDescriptor::TYPE_MESSAGE) return false;
  const Descriptor* message = field->message_type();
  return message->file()->package() != "google.protobuf" && !path.count(message);
}

void EmitValue(YAML::Emitter& out, const FieldDescriptor* field,
               std::set<const Descriptor*>& path) {
  if (IsPlainMessage(field, path)) {
    EmitMessage(out, field->message_type(), path);
    return;
  }
  out << YAML::BeginMap;
  switch (field->type()) {
    case FieldDescriptor::TYPE_STRING:
      out << YAML::Key << "type" << YAML::Value << "string";
      break;
    case FieldDescriptor::TYPE_BYTES:
      out << YAML::Key << "type" << YAML::Value << "string";
      out << YAML::Key << "format" << YAML::Value << "byte";
      break;
    case FieldDescriptor::TYPE_BOOL:
      out << YAML::Key << "type" << YAML::Value << "boolean";
      break;
    case FieldDescriptor::TYPE_INT32:
    case FieldDescriptor::TYPE_SINT32:
    case FieldDescriptor::TYPE_SFIXED32:
      out << YAML::Key << "type" << YAML::Value << "integer";
      out << YAML::Key << "format" << YAML::Value << "int32";
      break;
    case FieldDescriptor::TYPE_UINT32:
    case FieldDescriptor::TYPE_FIXED32:
      out << YAML::Key << "type" << YAML::Value << "integer";
      out << YAML::Key << "minimum" << YAML::Value << 0;
      out << YAML::Key << "maximum" << YAML::Value << 4294967295u;
      break;
    case FieldDescriptor::TYPE_INT64:
    case FieldDescriptor::TYPE_SINT64:
    case FieldDescriptor::TYPE_SFIXED64:
    case FieldDescriptor::TYPE_UINT64:
    case FieldDescriptor::TYPE_FIXED64:
      // Protobuf's JSON writes 64-bit integers as strings and reads either.
      out << YAML::Key << "x-kubernetes-int-or-string" << YAML::Value << true;
      break;
    case FieldDescriptor::TYPE_DOUBLE:
    case FieldDescriptor::TYPE_FLOAT:
      out << YAML::Key << "type" << YAML::Value << "number";
      break;
    case FieldDescriptor::TYPE_ENUM: {
      out << YAML::Key << "type" << YAML::Value << "string";
      out << YAML::Key << "enum" << YAML::Value << YAML::Flow << YAML::BeginSeq;
      for (int i = 0; i < field->enum_type()->value_count(); ++i) {
        out << field->enum_type()->value(i)->name();
      }
      out << YAML::EndSeq;
      break;
    }
    case FieldDescriptor::TYPE_MESSAGE:
    case FieldDescriptor::TYPE_GROUP: {
      const std::string& name = field->message_type()->full_name();
      if (name == "google.protobuf.Duration") {
        // "1.500s" as protobuf writes it, or "1500ms", "1m30s" as meshlet's documents do.
        out << YAML::Key << "type" << YAML::Value << "string";
      } else if (name == "google.protobuf.StringValue" || name == "google.protobuf.BytesValue") {
        out << YAML::Key << "type" << YAML::Value << "string";
      } else if (name == "google.protobuf.BoolValue") {
        out << YAML::Key << "type" << YAML::Value << "boolean";
      } else if (name == "google.protobuf.DoubleValue" || name == "google.protobuf.FloatValue") {
        out << YAML::Key << "type" << YAML::Value << "number";
      } else if (name == "google.protobuf.Int32Value") {
        out << YAML::Key << "type" << YAML::Value << "integer";
        out << YAML::Key << "format" << YAML::Value << "int32";
      } else if (name == "google.protobuf.UInt32Value") {
        out << YAML::Key << "type" << YAML::Value << "integer";
        out << YAML::Key << "minimum" << YAML::Value << 0;
        out << YAML::Key << "maximum" << YAML::Value << 4294967295u;
      } else if (name == "google.protobuf.Int64Value" || name == "google.protobuf.UInt64Value") {
        out << YAML::Key << "x-kubernetes-int-or-string" << YAML::Value << true;
      } else {
        // Free-form (Struct, Value), or a message inside itself: kept as sent.
        out << YAML::Key << "type" << YAML::Value << "object";
        out << YAML::Key << "x-kubernetes-preserve-unknown-fields" << YAML::Value << true;
      }
      break;
    }
  }
  out << YAML::EndMap;
}

void EmitField(YAML::Emitter& out, const FieldDescriptor* field,
               std::set<const Descriptor*>& path) {
  if (field->is_map()) {
    out << YAML::BeginMap;
    out << YAML::Key << "type" << YAML::Value << "object";
    out << YAML::Key << "additionalProperties" << YAML::Value;
    EmitValue(out, field->message_type()->map_value(), path);
    out << YAML::EndMap;
  } else if (field->is_repeated()) {
    out << YAML::BeginMap;
    out << YAML::Key << "type" << YAML::Value << "array";
    out << YAML::Key << "items" << YAML::Value;
    EmitValue(out, field, path);
    out << YAML::EndMap;
  } else {
    EmitValue(out, field, path);
  }
}

void EmitMessage(YAML::Emitter& out, const Descriptor* message, std::set<const Descriptor*>& path) {
  path.insert(message);
  out << YAML::BeginMap;
  out << YAML::Key << "type" << YAML::Value << "object";
  if (message->field_count() > 0) {
    out << YAML::Key << "properties" << YAML::Value << YAML::BeginMap;
    for (int i = 0; i < message->field_count(); ++i) {
      const FieldDescriptor* field = message->field(i);
      out << YAML::Key << field->json_name() << YAML::Value;
      EmitField(out, field, path);
    }
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
  path.erase(message);
}

void EmitCrd(YAML::Emitter& out, const KindInfo& info) {
  const Descriptor* d = info.descriptor;
  const bool has_status = d->FindFieldByName("status") != nullptr;
  out << YAML::BeginMap;
  out << YAML::Key << "apiVersion" << YAML::Value << "apiextensions.k8s.io/v1";
  out << YAML::Key << "kind" << YAML::Value << "CustomResourceDefinition";
  out << YAML::Key << "metadata" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "name" << YAML::Value << absl::StrCat(info.plural, ".", info.group);
  out << YAML::EndMap;
  out << YAML::Key << "spec" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "group" << YAML::Value << std::string(info.group);
  out << YAML::Key << "names" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "kind" << YAML::Value << std::string(info.kind);
  out << YAML::Key << "listKind" << YAML::Value << absl::StrCat(info.kind, "List");
  out << YAML::Key << "plural" << YAML::Value << std::string(info.plural);
  out << YAML::Key << "singular" << YAML::Value << absl::AsciiStrToLower(info.kind);
  if (!info.short_name.empty()) {
    out << YAML::Key << "shortNames" << YAML::Value << YAML::BeginSeq
        << std::string(info.short_name) << YAML::EndSeq;
  }
  out << YAML::Key << "categories" << YAML::Value << YAML::BeginSeq << "meshlet" << YAML::EndSeq;
  out << YAML::EndMap;
  out << YAML::Key << "scope" << YAML::Value << (info.namespaced ? "Namespaced" : "Cluster");
  out << YAML::Key << "versions" << YAML::Value << YAML::BeginSeq;
  for (size_t v = 0; v < info.versions.size(); ++v) {
    out << YAML::BeginMap;
    out << YAML::Key << "name" << YAML::Value << std::string(info.versions[v]);
    out << YAML::Key << "served" << YAML::Value << true;
    out << YAML::Key << "storage" << YAML::Value << (v == 0);
    if (has_status) {
      out << YAML::Key << "subresources" << YAML::Value << YAML::BeginMap;
      out << YAML::Key << "status" << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::EndMap;
      out << YAML::EndMap;
    }
    out << YAML::Key << "schema" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "openAPIV3Schema" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "type" << YAML::Value << "object";
    out << YAML::Key << "properties" << YAML::Value << YAML::BeginMap;
    std::set<const Descriptor*> path = {d};
    for (int i = 0; i < d->field_count(); ++i) {
      const FieldDescriptor* field = d->field(i);
      out << YAML::Key << field->json_name() << YAML::Value;
      if (field->name() == "api_version" || field->name() == "kind") {
        out << YAML::BeginMap << YAML::Key << "type" << YAML::Value << "string" << YAML::EndMap;
      } else if (field->name() == "metadata") {
        out << YAML::BeginMap << YAML::Key << "type" << YAML::Value << "object" << YAML::EndMap;
      } else {
        EmitField(out, field, path);
      }
    }
    out << YAML::EndMap;  // properties
    out << YAML::EndMap;  // openAPIV3Schema
    out << YAML::EndMap;  // schema
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
  out << YAML::EndMap;  // spec
  out << YAML::EndMap;
}

}  // namespace

std::string MeshletCrdsYaml() {
  std::string text =
      "# meshlet's kinds as CustomResourceDefinitions (docs/kubernetes.md). Generated from the\n"
      "# kinds' proto descriptors: do not edit; regenerate with\n"
      "#   bazel run //control-plane/policy:crdgen > k8s/crds/crds.yaml\n";
  bool first = true;
  for (const KindInfo& info : AllKinds()) {
    if (info.group != kApiGroup) continue;
    YAML::Emitter out;
    out.SetIndent(2);
    out.SetSeqFormat(YAML::Block);
    EmitCrd(out, info);
    absl::StrAppend(&text, first ? "" : "---\n", out.c_str(), "\n");
    first = false;
  }
  return text;
}

}  // namespace meshlet::controlplane::policy

#include "control-plane/identity/json_fields.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/json_util.h"

namespace meshlet::controlplane::identity {

absl::StatusOr<JsonObject> JsonObject::Parse(absl::string_view json) {
  JsonObject object;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &object.root_, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("not a JSON object: ", status.ToString()));
  }
  return object;
}

const google::protobuf::Value* JsonObject::Find(absl::string_view path) const {
  const google::protobuf::Struct* current = &root_;
  const google::protobuf::Value* value = nullptr;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (current == nullptr) return nullptr;
    auto it = current->fields().find(std::string(part));
    if (it == current->fields().end()) return nullptr;
    value = &it->second;
    current = value->has_struct_value() ? &value->struct_value() : nullptr;
  }
  return value;
}

absl::StatusOr<const google::protobuf::Value*> JsonObject::Get(absl::string_view path) const {
  const google::protobuf::Value* value = Find(path);
  if (value == nullptr) return absl::NotFoundError(absl::StrCat(path, ": missing"));
  return value;
}

absl::StatusOr<std::string> JsonObject::String(absl::string_view path) const {
  auto value = Get(path);
  if (!value.ok()) return value.status();
  if ((*value)->kind_case() != google::protobuf::Value::kStringValue) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": must be a string"));
  }
  return (*value)->string_value();
}

absl::StatusOr<bool> JsonObject::Bool(absl::string_view path) const {
  auto value = Get(path);
  if (!value.ok()) return value.status();
  if ((*value)->kind_case() != google::protobuf::Value::kBoolValue) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": must be true or false"));
  }
  return (*value)->bool_value();
}

absl::StatusOr<double> JsonObject::Number(absl::string_view path) const {
  auto value = Get(path);
  if (!value.ok()) return value.status();
  if ((*value)->kind_case() != google::protobuf::Value::kNumberValue) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": must be a number"));
  }
  return (*value)->number_value();
}

absl::StatusOr<std::vector<std::string>> JsonObject::Strings(absl::string_view path) const {
  auto value = Get(path);
  if (!value.ok()) return value.status();
  if ((*value)->kind_case() == google::protobuf::Value::kStringValue) {
    return std::vector<std::string>{(*value)->string_value()};
  }
  if ((*value)->kind_case() != google::protobuf::Value::kListValue) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": must be a list of strings"));
  }
  std::vector<std::string> out;
  for (const auto& item : (*value)->list_value().values()) {
    if (item.kind_case() != google::protobuf::Value::kStringValue) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": must be a list of strings"));
    }
    out.push_back(item.string_value());
  }
  return out;
}

}  // namespace meshlet::controlplane::identity

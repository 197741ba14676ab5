#include "common/config/unknown_content.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/unknown_field_set.h"

namespace meshlet::config {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

std::string Find(const Message& message, const std::string& path) {
  const google::protobuf::Reflection* reflection = message.GetReflection();
  const std::string at = path.empty() ? "" : absl::StrCat(path, ": ");
  const google::protobuf::UnknownFieldSet& unknown = reflection->GetUnknownFields(message);
  if (unknown.field_count() > 0) {
    return absl::StrCat(at, "field ", unknown.field(0).number(), " of ",
                        message.GetDescriptor()->full_name());
  }
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  for (const FieldDescriptor* field : fields) {
    const std::string field_path =
        path.empty() ? field->name() : absl::StrCat(path, ".", field->name());
    const int count = field->is_repeated() ? reflection->FieldSize(message, field) : 1;
    auto element = [&](int i) {
      return field->is_repeated() ? absl::StrCat(field_path, "[", i, "]") : field_path;
    };
    for (int i = 0; i < count; ++i) {
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_ENUM) {
        const int value = field->is_repeated() ? reflection->GetRepeatedEnumValue(message, field, i)
                                               : reflection->GetEnumValue(message, field);
        if (field->enum_type()->FindValueByNumber(value) == nullptr) {
          return absl::StrCat(element(i), ": value ", value, " of ",
                              field->enum_type()->full_name());
        }
      } else if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        std::string found =
            Find(field->is_repeated() ? reflection->GetRepeatedMessage(message, field, i)
                                      : reflection->GetMessage(message, field),
                 element(i));
        if (!found.empty()) return found;
      }
    }
  }
  return "";
}

}  // namespace

std::string FirstUnknownContent(const Message& message) { return Find(message, ""); }

}  // namespace meshlet::config

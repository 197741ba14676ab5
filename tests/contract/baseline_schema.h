#pragma once

// The previous release's wire schema (tests/contract/schemas/README.md), from the descriptor set
// //tests/contract:previous_release_schema compiles: its message types in a pool of their own,
// to parse what this tree sends with what the old release reads. Test-only; one thread.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/base/file.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/message.h"

namespace meshlet::contract {

inline constexpr char kPreviousRelease[] = "0.1.0";
inline constexpr char kPreviousReleaseSchema[] = "tests/contract/previous-release-schema.pb";

class BaselineSchema {
 public:
  static absl::StatusOr<std::unique_ptr<BaselineSchema>> Load() {
    absl::StatusOr<std::string> bytes = ReadFile(kPreviousReleaseSchema);
    if (!bytes.ok()) return bytes.status();
    google::protobuf::FileDescriptorSet set;
    if (!set.ParseFromString(*bytes)) {
      return absl::DataLossError(absl::StrCat(kPreviousReleaseSchema, " does not parse"));
    }
    auto schema = std::unique_ptr<BaselineSchema>(new BaselineSchema());
    // --include_imports lists every file after those it imports.
    for (const google::protobuf::FileDescriptorProto& file : set.file()) {
      if (schema->pool_.BuildFile(file) == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat("cannot build ", file.name()));
      }
    }
    return schema;
  }

  // The release's type of that full name ("meshlet.xds.Cluster"); null when it had none.
  const google::protobuf::Descriptor* Find(const std::string& full_name) const {
    return pool_.FindMessageTypeByName(full_name);
  }
  const google::protobuf::EnumDescriptor* FindEnum(const std::string& full_name) const {
    return pool_.FindEnumTypeByName(full_name);
  }

  // `message` serialized and parsed as the release's type of the same name.
  std::unique_ptr<google::protobuf::Message> AsRelease(const google::protobuf::Message& message) {
    const google::protobuf::Descriptor* type = Find(message.GetDescriptor()->full_name());
    if (type == nullptr) return nullptr;
    std::unique_ptr<google::protobuf::Message> old(factory_.GetPrototype(type)->New());
    if (!old->ParseFromString(message.SerializeAsString())) return nullptr;
    return old;
  }

 private:
  BaselineSchema() = default;
  google::protobuf::DescriptorPool pool_;
  google::protobuf::DynamicMessageFactory factory_{&pool_};
};

}  // namespace meshlet::contract

#pragma once

// Typed reads from a JSON object (parsed with protobuf's JSON parser into a Struct), for the
// small documents attestation handles: stored token records and Kubernetes TokenReview
// responses. Paths separate keys with '/' ("status/user/username"; keys such as "kubernetes.io"
// contain dots); errors name the path.

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/struct.pb.h"

namespace meshlet::controlplane::identity {

class JsonObject {
 public:
  // InvalidArgument unless `json` is a JSON object.
  static absl::StatusOr<JsonObject> Parse(absl::string_view json);

  // NotFound when absent, InvalidArgument when of another type.
  absl::StatusOr<std::string> String(absl::string_view path) const;
  absl::StatusOr<bool> Bool(absl::string_view path) const;
  absl::StatusOr<double> Number(absl::string_view path) const;
  // A list of strings; a single string counts as a list of one (JWT "aud" may be either).
  absl::StatusOr<std::vector<std::string>> Strings(absl::string_view path) const;
  bool Has(absl::string_view path) const { return Find(path) != nullptr; }

 private:
  const google::protobuf::Value* Find(absl::string_view path) const;
  absl::StatusOr<const google::protobuf::Value*> Get(absl::string_view path) const;

  google::protobuf::Struct root_;
};

}  // namespace meshlet::controlplane::identity

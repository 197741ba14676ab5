#include "control-plane/multicluster/link_records.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "control-plane/store/shared_value.h"
#include "google/protobuf/util/json_util.h"

namespace meshlet::controlplane::multicluster {

using meshlet::multicluster::ClusterLink;

absl::Status ValidateClusterName(absl::string_view name) {
  bool ok = !name.empty() && name.size() <= 63 && absl::ascii_isalnum(name.front()) &&
            absl::ascii_isalnum(name.back());
  for (char c : name) {
    ok = ok && (absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-');
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cluster name \"", name, "\" is not a DNS label (lower-case letters, digits and '-', ",
        "at most 63, starting and ending with a letter or digit)"));
  }
  return absl::OkStatus();
}

ResourceKey LinkKey(absl::string_view cluster) {
  return {kSharedValueKind, "", absl::StrCat(kLinkRecordPrefix, cluster)};
}

bool IsLinkKey(const ResourceKey& key) {
  return key.kind == kSharedValueKind && key.namespace_.empty() &&
         absl::StartsWith(key.name, kLinkRecordPrefix);
}

absl::StatusOr<std::string> EncodeLink(const ClusterLink& link, const StoreKeys* keys) {
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(link, &json).ok()) {
    return absl::InternalError("cannot write a cluster link as JSON");
  }
  if (keys == nullptr) return json;
  return keys->Seal(LinkKey(link.cluster()).name, json);
}

absl::StatusOr<ClusterLink> DecodeLink(const StoredResource& record, const StoreKeys* keys) {
  const std::string where = absl::StrCat(kSharedValueKind, "/", record.key.name, " in the store");
  std::string json = record.body;
  if (StoreKeys::IsSealed(json)) {
    if (keys == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat(where, " is sealed, and this control plane has no store keys"));
    }
    absl::StatusOr<std::string> opened = keys->Open(record.key.name, json);
    if (!opened.ok()) {
      return absl::Status(opened.status().code(),
                          absl::StrCat(where, ": ", opened.status().message()));
    }
    json = *std::move(opened);
  }
  ClusterLink link;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  if (auto status = google::protobuf::util::JsonStringToMessage(json, &link, options);
      !status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, " is not a cluster link: ", status.ToString()));
  }
  if (absl::StrCat(kLinkRecordPrefix, link.cluster()) != record.key.name) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, " names cluster \"", link.cluster(), "\""));
  }
  return link;
}

absl::StatusOr<std::vector<ClusterLink>> LoadLinks(const Store& store, const StoreKeys* keys) {
  absl::StatusOr<std::vector<StoredResource>> records = store.List(kSharedValueKind, "");
  if (!records.ok()) return records.status();
  std::vector<ClusterLink> out;
  for (const StoredResource& record : *records) {
    if (!IsLinkKey(record.key)) continue;
    absl::StatusOr<ClusterLink> link = DecodeLink(record, keys);
    if (!link.ok()) return link.status();
    out.push_back(*std::move(link));
  }
  return out;
}

}  // namespace meshlet::controlplane::multicluster

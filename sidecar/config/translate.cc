#include "sidecar/config/translate.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/json.h"
#include "common/base/status.h"
#include "common/config/yaml_proto.h"
#include "google/protobuf/util/json_util.h"
#include "sidecar/config/translate_internal.h"
#include "xds/version.h"

namespace meshlet::sidecar::config {
namespace {

using translate_internal::Errors;
using translate_internal::Index;
using translate_internal::Quote;
using translate_internal::SnapshotBuild;

// Copies of the messages of `list` into `out`; those held as bytes are parsed, not kept (the
// config dump is rendered on demand and must leave the held resources as they were).
template <typename Message>
void CopyMessages(const ResourceList<Message>& list,
                  google::protobuf::RepeatedPtrField<Message>& out) {
  out.Reserve(static_cast<int>(list.size()));
  for (size_t i = 0; i < list.size(); ++i) *out.Add() = *list.Parse(i);
}

xds::Bootstrap::StaticResources ToMessage(const ResourceSet& resources) {
  xds::Bootstrap::StaticResources all;
  CopyMessages(resources.listeners, *all.mutable_listeners());
  CopyMessages(resources.routes, *all.mutable_routes());
  CopyMessages(resources.service_routes, *all.mutable_service_routes());
  CopyMessages(resources.clusters, *all.mutable_clusters());
  CopyMessages(resources.endpoints, *all.mutable_endpoints());
  CopyMessages(resources.secrets, *all.mutable_secrets());
  return all;
}

std::string ConfigDump(absl::string_view version, xds::Bootstrap::StaticResources resources) {
  for (xds::Secret& secret : *resources.mutable_secrets()) {
    if (!secret.private_key_pem().empty()) secret.set_private_key_pem("[redacted]");
  }
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  std::string json;
  auto printed = google::protobuf::util::MessageToJsonString(resources, &json, options);
  if (!printed.ok()) json = "{}";
  while (!json.empty() && json.back() == '\n') json.pop_back();
  return absl::StrCat("{\n \"version\": ", JsonQuote(version), ",\n \"resources\": ", json,
                      "\n}\n");
}

}  // namespace

namespace translate_internal {

bool SnapshotBuild::Named(absl::string_view kind, absl::string_view list, size_t i,
                          const std::string& name,
                          absl::flat_hash_map<absl::string_view, size_t>& seen) {
  if (!ValidName(name)) {
    Errors::Scope scope(errors, Index(list, i));
    CheckName(scope, name);
    return false;
  }
  auto [it, inserted] = seen.emplace(name, i);
  if (!inserted) {
    Errors::Scope scope(errors, Label(kind, name));
    scope.Add("", absl::StrCat("duplicate name (", Index(list, it->second), " and ", Index(list, i),
                               ")"));
    return false;
  }
  return true;
}

}  // namespace translate_internal

TranslationReuse TranslationReuseOf(const Snapshot& snapshot) {
  if (snapshot.translation_memo == nullptr) return {};
  return {snapshot.translation_memo->clusters_reused,
          snapshot.translation_memo->route_tables_reused,
          snapshot.translation_memo->clusters_examined,
          snapshot.translation_memo->service_routes_examined,
          snapshot.translation_memo->joined_recorded,
          snapshot.translation_memo->joined_names_indexed};
}

const std::vector<std::string>* ChangedClusters(const Snapshot& snapshot) {
  if (snapshot.translation_memo == nullptr || !snapshot.translation_memo->clusters_changed) {
    return nullptr;
  }
  return &*snapshot.translation_memo->clusters_changed;
}

const std::vector<std::string>* ChangedClustersSince(const Snapshot& snapshot,
                                                     const Snapshot* previous) {
  const std::vector<std::string>* changed = ChangedClusters(snapshot);
  if (changed == nullptr || previous == nullptr ||
      snapshot.translation_memo->clusters_changed_since != previous) {
    return nullptr;
  }
  return changed;
}

absl::StatusOr<std::shared_ptr<const Snapshot>> BuildSnapshot(const ResourceSet& resources,
                                                              const Snapshot* previous,
                                                              const xds::Locality* locality) {
  SnapshotBuild build;
  build.locality = locality;
  build.before = previous != nullptr ? previous->translation_memo.get() : nullptr;
  build.previous = build.before != nullptr ? previous : nullptr;
  if (build.before != nullptr) build.memo->source_names = build.before->source_names;
  // In the order kinds refer to each other by name: a step sees what the earlier ones built.
  translate_internal::AddSecrets(build, resources.secrets);
  translate_internal::AddClusters(build, resources.clusters, resources.endpoints);
  translate_internal::AddServiceRoutes(build, resources.service_routes, resources.routes);
  translate_internal::AddRouteTables(build, resources.routes);
  translate_internal::AddListeners(build, resources.listeners);
  RETURN_IF_ERROR(build.errors.ToStatus());

  Snapshot& snapshot = *build.snapshot;
  if (resources.version.empty()) {
    // Versioned like an xDS resource: the content hash of its bytes.
    snapshot.version = absl::StrCat(
        "static-", xds::ContentVersion(meshlet::config::DeterministicBytes(ToMessage(resources))));
  } else {
    snapshot.version = resources.version;
  }
  // The dump keeps the resource lists (shared messages, no copy) and renders on demand.
  snapshot.render_config_dump = [version = snapshot.version, resources] {
    return ConfigDump(version, ToMessage(resources));
  };
  snapshot.translation_memo = std::move(build.memo);
  return std::shared_ptr<const Snapshot>(std::move(build.snapshot));
}

}  // namespace meshlet::sidecar::config

#pragma once

// The links of a control plane to other clusters (ADR 0106) as the store keeps them: one
// ControlPlaneSecret record "cluster-link.<cluster>" each (store/shared_value.h), the link as
// JSON (multicluster.proto ClusterLink), sealed with the store keys when the control plane has
// them, since it holds the peer token; the API never serves that kind, and a store key rotation
// seals it again with the other records. Reads and writes block on the store (run them on the
// store worker); pure otherwise.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "control-plane/multicluster/multicluster.pb.h"
#include "control-plane/store/store.h"
#include "control-plane/store/store_keys.h"

namespace meshlet::controlplane::multicluster {

inline constexpr absl::string_view kLinkRecordPrefix = "cluster-link.";

// A cluster name: a DNS label (it names a store record, a locality and stats).
absl::Status ValidateClusterName(absl::string_view name);

ResourceKey LinkKey(absl::string_view cluster);
// Whether `key` is a link's record.
bool IsLinkKey(const ResourceKey& key);

// The record's value: JSON, sealed with `keys` (null: plaintext).
absl::StatusOr<std::string> EncodeLink(const meshlet::multicluster::ClusterLink& link,
                                       const StoreKeys* keys);
// A record read back; errors name the record.
absl::StatusOr<meshlet::multicluster::ClusterLink> DecodeLink(const StoredResource& record,
                                                              const StoreKeys* keys);

// Every link stored, by cluster name; a record that does not open or parse is an error.
absl::StatusOr<std::vector<meshlet::multicluster::ClusterLink>> LoadLinks(const Store& store,
                                                                          const StoreKeys* keys);

}  // namespace meshlet::controlplane::multicluster

#pragma once

// Rotating the store key (control-plane/store/store_keys.h) in two steps, for `meshctl install
// --secrets --rotate-store-key`:
//
//   1. rotate: a fresh key goes first in the key file (Secret meshlet-store-key, or a file), the
//      old keys stay after it. The replicas reload the file (store_key_ring.h) and seal their
//      ControlPlaneSecret records again with the new key;
//   2. finish: once no record is sealed with another key, which the control plane publishes as
//      meshlet_cp_store_sealed_records{record,key_id}, the keys after the first are dropped.
//      Finishing earlier is refused, naming the records still under an older key: dropping that
//      key would leave them unreadable, and no replica could start.
//
// Plain functions; the file ones block (read, write, fsync).

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshlet::controlplane::install {

// Record ("ControlPlaneSecret/api-token") → id of the key sealing it ("" unencrypted), from the
// control plane's Prometheus text (the series meshlet_cp_store_sealed_records at 1).
std::map<std::string, std::string> SealedRecordsFromMetrics(absl::string_view prometheus);

// The key file `text` (`where` names it in errors) with its first key only. FailedPrecondition
// when `sealed` (SealedRecordsFromMetrics) is empty (the control plane reported nothing: not on
// etcd, or an older version) or names a record sealed with another key.
absl::StatusOr<std::string> FinishedKeyText(absl::string_view text, absl::string_view where,
                                            const std::map<std::string, std::string>& sealed);

// The key file at `path` (a symlink: the file it names) rewritten atomically with its mode
// kept: with a fresh key first (returns the new key's id), or finished as FinishedKeyText.
// Nothing is written on error.
absl::StatusOr<std::string> RotateKeyFile(const std::string& path);
absl::Status FinishKeyFile(const std::string& path,
                           const std::map<std::string, std::string>& sealed);

}  // namespace meshlet::controlplane::install

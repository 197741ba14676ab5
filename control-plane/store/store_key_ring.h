#pragma once

// StoreKeyRing: the store keys (store_keys.h) as the control plane's key file
// (--store-encryption-key-file) says now, so that a key is rotated without restarting replicas.
//
// Reload() reads the file again and takes its keys when its content changed (the file is opened
// by name each time, so the kubelet's update of a mounted Secret, a swap of the `..data`
// symlink, is seen as any other change). A file that cannot be read, does not parse, or lacks a
// key that sealed a record at the last ResealAndCount() leaves the keys in use as they were:
// logged once per version of the file and counted. ResealAndCount()
// then seals again with the first key every ControlPlaneSecret record under an older one
// (ResealSharedValues) and publishes which key seals each record, so the operator can tell when
// the older keys may go (`meshctl install --secrets --rotate-store-key --finish` reads it).
//
// Metrics (docs/control-plane.md, "Secrets in the store"):
//   meshlet_cp_store_key_reloads_total{result="ok"|"failed"}   changed key files taken / refused
//   meshlet_cp_store_keys                                     keys held now
//   meshlet_cp_store_sealed_records{record,key_id}            1 for the key that seals each
//                                                             record at the last check, else 0
//   meshlet_cp_store_resealed_records_total                   records this replica sealed again
//   meshlet_cp_store_key_check_errors_total                   checks the store failed
//
// Threading: keys() from any thread; Reload() and ResealAndCount() from one thread at a time (the
// control plane's store worker, as both block).

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "common/base/sync.h"
#include "common/stats/stats.h"
#include "control-plane/store/shared_value.h"
#include "control-plane/store/store.h"
#include "control-plane/store/store_keys.h"

namespace meshlet::controlplane {

class StoreKeyRing {
 public:
  // Reads `path` (errors as StoreKeys::FromFile). `stats` may be null (no metrics); not owned,
  // it must outlive the ring.
  static absl::StatusOr<std::unique_ptr<StoreKeyRing>> Open(std::string path, StatsRegistry* stats);

  // The keys now. A caller may hold them across a reload.
  std::shared_ptr<const StoreKeys> keys() const;

  // Reads the file again; returns whether its keys replaced the ones in use.
  bool Reload();

  // ResealSharedValues with keys(), then sets meshlet_cp_store_sealed_records; a record sealed
  // with a key the file no longer holds is logged as an error. Returns the records with their
  // keys. Blocks on the store.
  absl::StatusOr<std::vector<SealedRecord>> ResealAndCount(Store& store);

 private:
  StoreKeyRing(std::string path, StatsRegistry* stats, std::shared_ptr<const StoreKeys> keys,
               std::string digest);

  const std::string path_;
  StatsRegistry* const stats_;
  mutable Mutex mu_;
  std::shared_ptr<const StoreKeys> keys_ ABSL_GUARDED_BY(mu_);
  // SHA-256 of the file's content last read (taken or refused), and the error last logged: a
  // file read again unchanged is neither taken nor logged again.
  std::string digest_;
  std::string last_error_;
  // (record, key id) series set to 1 at the last check.
  std::map<std::string, std::string> sealed_;
  Counter reloads_ok_, reloads_failed_, resealed_, check_errors_;
  Gauge key_count_;
};

}  // namespace meshlet::controlplane

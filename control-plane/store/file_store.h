#pragma once

// FileStore: the embedded default Store, a data directory that survives `kill -9` at any moment.
//
//   <dir>/revision                              highest revision handed out
//   <dir>/resources/<kind>/<namespace>/<name>   one file per resource ("_cluster" = no namespace)
//
// A put replaces the resource file by write-temp, fsync, rename, fsync-directory; the file's
// header carries its revision. A delete records its revision in <dir>/revision first (no file is
// left to carry it), then removes the file. On open the revision is the highest of <dir>/revision
// and every file's. A crash therefore leaves either the old or the new file (never a torn one),
// and a revision handed out to a write that did not finish is only a gap: revisions are never
// reused. Everything is also held in memory, so reads touch no disk; a List of one kind visits
// only that kind's resources.

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "control-plane/store/store.h"

namespace meshlet::controlplane {

class FileStore final : public Store {
 public:
  // Opens (creating if needed) the store in `dir`. Fails with the file and reason if a resource
  // file is unreadable or damaged; leftover temporary files from a crash are removed.
  static absl::StatusOr<std::unique_ptr<FileStore>> Open(const std::string& dir);

  absl::StatusOr<StoredResource> Get(const ResourceKey& key) const override;
  absl::StatusOr<std::vector<StoredResource>> List(absl::string_view kind,
                                                   absl::string_view namespace_) const override;
  absl::StatusOr<int64_t> Put(const ResourceKey& key, absl::string_view body,
                              int64_t expected_revision) override;
  absl::StatusOr<int64_t> Delete(const ResourceKey& key, int64_t expected_revision) override;
  int64_t Revision() const override;
  std::unique_ptr<WatchHandle> Watch(WatchCallback callback) override;

 private:
  class Watcher;
  explicit FileStore(std::string dir) : dir_(std::move(dir)) {}

  absl::Status Load();
  std::string PathFor(const ResourceKey& key) const;
  absl::Status ReserveRevision(int64_t revision);
  void Notify(const WatchEvent& event);

  const std::string dir_;
  // Serialises writers so revisions are assigned and made durable in order, and watch callbacks
  // run in revision order.
  std::mutex write_mu_;
  // The highest revision handed out to a write (guarded by write_mu_). revision_ follows it
  // once the write is in resources_, so a reader that sees a revision sees its write.
  int64_t reserved_revision_ = 0;
  mutable std::mutex mu_;  // guards the fields below
  std::map<ResourceKey, StoredResource> resources_;
  int64_t revision_ = 0;
  uint64_t next_watch_id_ = 1;
  std::map<uint64_t, std::shared_ptr<WatchCallback>> watchers_;
};

}  // namespace meshlet::controlplane

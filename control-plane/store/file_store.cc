#include "control-plane/store/file_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/atomic_file.h"
#include "common/base/file.h"
#include "common/base/logging.h"
#include "common/base/status.h"

namespace meshlet::controlplane {
namespace {

constexpr absl::string_view kHeaderMagic = "meshlet-store-v1";
constexpr absl::string_view kNoNamespaceDir = "_cluster";
// The temporary file WriteFileAtomically (common/base/file.h) writes beside its target.
constexpr absl::string_view kTempSuffix = ".tmp";

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::Status FsyncPath(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open", path);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return ErrnoError("fsync", path);
  return absl::OkStatus();
}

std::string Parent(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
}

// mkdir -p, making each new directory entry durable in its parent.
absl::Status MakeDirs(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(path, " exists and is not a directory"));
  }
  std::string parent = Parent(path);
  if (parent != path) RETURN_IF_ERROR(MakeDirs(parent));
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoError("mkdir", path);
  return FsyncPath(parent, O_RDONLY | O_DIRECTORY);
}

std::vector<std::string> ListDir(const std::string& path) {
  std::vector<std::string> names;
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return names;
  while (struct dirent* entry = ::readdir(dir)) {
    absl::string_view name = entry->d_name;
    if (name == "." || name == "..") continue;
    names.emplace_back(name);
  }
  ::closedir(dir);
  return names;
}

bool IsDnsName(absl::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (char c : s) {
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-' || c == '.')) return false;
  }
  return absl::ascii_isalnum(s.front()) && absl::ascii_isalnum(s.back()) &&
         !absl::StrContains(s, "..");
}

}  // namespace

std::string ResourceKey::ToString() const {
  return absl::StrCat(kind, "/", namespace_.empty() ? "-" : namespace_, "/", name);
}

absl::Status ValidateResourceKey(const ResourceKey& key) {
  if (key.kind.empty() || key.kind.size() > 63 || !absl::ascii_isalpha(key.kind[0])) {
    return absl::InvalidArgumentError(
        absl::StrCat("kind \"", key.kind, "\": must start with a letter, 1-63 characters"));
  }
  for (char c : key.kind) {
    if (!absl::ascii_isalnum(c)) {
      return absl::InvalidArgumentError(
          absl::StrCat("kind \"", key.kind, "\": only letters and digits are allowed"));
    }
  }
  if (!key.namespace_.empty() && !IsDnsName(key.namespace_)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metadata.namespace \"", key.namespace_,
        "\": must be lowercase letters, digits, '-' or '.', start and end with a letter or digit"));
  }
  if (!IsDnsName(key.name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metadata.name \"", key.name,
        "\": must be lowercase letters, digits, '-' or '.', start and end with a letter or digit, "
        "at most 253 characters"));
  }
  return absl::OkStatus();
}

class FileStore::Watcher final : public Store::WatchHandle {
 public:
  Watcher(FileStore* store, uint64_t id) : store_(store), id_(id) {}
  ~Watcher() override {
    std::lock_guard<std::mutex> lock(store_->mu_);
    store_->watchers_.erase(id_);
  }

 private:
  FileStore* store_;
  uint64_t id_;
};

absl::StatusOr<std::unique_ptr<FileStore>> FileStore::Open(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("data directory must not be empty");
  std::unique_ptr<FileStore> store(new FileStore(dir));
  RETURN_IF_ERROR(MakeDirs(absl::StrCat(dir, "/resources")));
  RETURN_IF_ERROR(store->Load());
  return store;
}

std::string FileStore::PathFor(const ResourceKey& key) const {
  return absl::StrCat(dir_, "/resources/", key.kind, "/",
                      key.namespace_.empty() ? kNoNamespaceDir : key.namespace_, "/", key.name);
}

absl::Status FileStore::Load() {
  const std::string revision_path = absl::StrCat(dir_, "/revision");
  struct stat st;
  if (::stat(revision_path.c_str(), &st) == 0) {
    ASSIGN_OR_RETURN(std::string text, ReadFile(revision_path));
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &revision_) || revision_ < 0) {
      return absl::DataLossError(absl::StrCat(revision_path, ": not a revision number"));
    }
  }
  ::unlink(absl::StrCat(revision_path, kTempSuffix).c_str());
  const std::string root = absl::StrCat(dir_, "/resources");
  for (const std::string& kind : ListDir(root)) {
    for (const std::string& ns : ListDir(absl::StrCat(root, "/", kind))) {
      const std::string ns_dir = absl::StrCat(root, "/", kind, "/", ns);
      for (const std::string& name : ListDir(ns_dir)) {
        const std::string path = absl::StrCat(ns_dir, "/", name);
        if (absl::EndsWith(name, kTempSuffix)) {
          // An interrupted write: the rename never happened, so the old file is authoritative.
          ::unlink(path.c_str());
          continue;
        }
        ASSIGN_OR_RETURN(std::string content, ReadFile(path));
        size_t newline = content.find('\n');
        std::vector<absl::string_view> header;
        if (newline != std::string::npos) {
          header = absl::StrSplit(absl::string_view(content).substr(0, newline), ' ');
        }
        StoredResource r;
        r.key = {kind, ns == kNoNamespaceDir ? "" : ns, name};
        if (header.size() != 3 || header[0] != kHeaderMagic ||
            !absl::SimpleAtoi(header[1], &r.revision) ||
            !absl::SimpleAtoi(header[2], &r.create_revision) || r.revision <= 0) {
          return absl::DataLossError(absl::StrCat(path, ": not a meshlet store file"));
        }
        r.body = content.substr(newline + 1);
        revision_ = std::max(revision_, r.revision);
        resources_.emplace(r.key, std::move(r));
      }
    }
  }
  reserved_revision_ = revision_;
  return absl::OkStatus();
}

absl::Status FileStore::ReserveRevision(int64_t revision) {
  return WriteFileAtomically(absl::StrCat(dir_, "/revision"), absl::StrCat(revision, "\n"));
}

absl::StatusOr<StoredResource> FileStore::Get(const ResourceKey& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = resources_.find(key);
  if (it == resources_.end())
    return absl::NotFoundError(absl::StrCat(key.ToString(), " not found"));
  return it->second;
}

absl::StatusOr<std::vector<StoredResource>> FileStore::List(absl::string_view kind,
                                                            absl::string_view namespace_) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<StoredResource> out;
  if (kind.empty()) {
    for (const auto& [key, resource] : resources_) {
      if (namespace_.empty() || key.namespace_ == namespace_) out.push_back(resource);
    }
    return out;
  }
  // The map is ordered by kind, then namespace: only that range is visited.
  for (auto it =
           resources_.lower_bound(ResourceKey{std::string(kind), std::string(namespace_), ""});
       it != resources_.end() && it->first.kind == kind &&
       (namespace_.empty() || it->first.namespace_ == namespace_);
       ++it) {
    out.push_back(it->second);
  }
  return out;
}

absl::StatusOr<int64_t> FileStore::Put(const ResourceKey& key, absl::string_view body,
                                       int64_t expected_revision) {
  RETURN_IF_ERROR(ValidateResourceKey(key));
  std::lock_guard<std::mutex> write_lock(write_mu_);
  StoredResource updated;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = resources_.find(key);
    if (expected_revision == kMustNotExist && it != resources_.end()) {
      return absl::AlreadyExistsError(absl::StrCat(key.ToString(), " already exists"));
    }
    if (expected_revision > 0) {
      if (it == resources_.end()) {
        return absl::FailedPreconditionError(absl::StrCat(key.ToString(), ": resourceVersion ",
                                                          expected_revision,
                                                          " given, but it does not exist"));
      }
      if (it->second.revision != expected_revision) {
        return absl::FailedPreconditionError(
            absl::StrCat(key.ToString(), ": resourceVersion ", expected_revision,
                         " is stale; current is ", it->second.revision));
      }
    }
    updated.key = key;
    updated.body = std::string(body);
    updated.revision = reserved_revision_ + 1;
    updated.create_revision =
        it == resources_.end() ? updated.revision : it->second.create_revision;
  }
  // The resource's file records its revision, so <dir>/revision is not written (a put costs the
  // two syncs of one file's replacement, not four): Load takes the highest of both. Handed out
  // even if the write fails part-way, so it is never given twice.
  reserved_revision_ = updated.revision;
  const std::string path = PathFor(key);
  RETURN_IF_ERROR(MakeDirs(Parent(path)));
  RETURN_IF_ERROR(WriteFileAtomically(path, absl::StrCat(kHeaderMagic, " ", updated.revision, " ",
                                                         updated.create_revision, "\n", body)));
  {
    std::lock_guard<std::mutex> lock(mu_);
    revision_ = updated.revision;
    resources_[key] = updated;
  }
  Notify({WatchEvent::Type::kPut, updated});
  return updated.revision;
}

absl::StatusOr<int64_t> FileStore::Delete(const ResourceKey& key, int64_t expected_revision) {
  std::lock_guard<std::mutex> write_lock(write_mu_);
  StoredResource deleted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = resources_.find(key);
    if (it == resources_.end()) {
      return absl::NotFoundError(absl::StrCat(key.ToString(), " not found"));
    }
    if (expected_revision != kAnyRevision && it->second.revision != expected_revision) {
      return absl::FailedPreconditionError(absl::StrCat(key.ToString(), ": resourceVersion ",
                                                        expected_revision, " is stale; current is ",
                                                        it->second.revision));
    }
    deleted = it->second;
    deleted.revision = reserved_revision_ + 1;
  }
  reserved_revision_ = deleted.revision;  // never given twice, as for a put
  RETURN_IF_ERROR(ReserveRevision(deleted.revision));
  const std::string path = PathFor(key);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoError("unlink", path);
  RETURN_IF_ERROR(FsyncPath(Parent(path), O_RDONLY | O_DIRECTORY));
  {
    std::lock_guard<std::mutex> lock(mu_);
    revision_ = deleted.revision;
    resources_.erase(key);
  }
  deleted.body.clear();
  Notify({WatchEvent::Type::kDelete, deleted});
  return deleted.revision;
}

int64_t FileStore::Revision() const {
  std::lock_guard<std::mutex> lock(mu_);
  return revision_;
}

std::unique_ptr<Store::WatchHandle> FileStore::Watch(WatchCallback callback) {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t id = next_watch_id_++;
  watchers_.emplace(id, std::make_shared<WatchCallback>(std::move(callback)));
  return std::make_unique<Watcher>(this, id);
}

void FileStore::Notify(const WatchEvent& event) {
  std::vector<std::shared_ptr<WatchCallback>> callbacks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, callback] : watchers_) callbacks.push_back(callback);
  }
  for (const auto& callback : callbacks) (*callback)(event);
}

}  // namespace meshlet::controlplane

#include "control-plane/install/store_key_rotation.h"

#include <openssl/mem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/base/atomic_file.h"
#include "common/base/file.h"
#include "control-plane/store/store_keys.h"

namespace meshlet::controlplane::install {
namespace {

constexpr char kSealedSeries[] = "meshlet_cp_store_sealed_records{";
constexpr size_t kMaxKeyFileBytes = 64 * 1024;

// The value of label `name` in `labels` (`a="x",b="y"`); "" when absent.
std::string Label(absl::string_view labels, absl::string_view name) {
  const std::string start = absl::StrCat(name, "=\"");
  for (size_t at = labels.find(start); at != absl::string_view::npos;
       at = labels.find(start, at + 1)) {
    if (at != 0 && labels[at - 1] != ',') continue;
    const absl::string_view rest = labels.substr(at + start.size());
    return std::string(rest.substr(0, rest.find('"')));
  }
  return "";
}

// The key file behind `path`, read, with what writing it back needs.
struct KeyFile {
  std::string path;  // symlinks resolved
  std::string text;
  mode_t mode = 0600;
  uid_t uid = 0;
  gid_t gid = 0;
  ~KeyFile() { OPENSSL_cleanse(text.data(), text.size()); }
};

absl::StatusOr<KeyFile> ReadKeyFile(const std::string& path) {
  KeyFile file;
  std::error_code error;
  file.path = std::filesystem::canonical(path, error).string();
  if (error) {
    return absl::NotFoundError(absl::StrCat(path, ": ", error.message()));
  }
  struct stat st {};
  if (::stat(file.path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  }
  file.mode = st.st_mode & 07777;
  file.uid = st.st_uid;
  file.gid = st.st_gid;
  // The file is written anew and renamed over the old one, so it would belong to whoever runs
  // this: only its owner (or root, which gives it back) may, or the control plane running as
  // that owner could no longer read its keys.
  if (::geteuid() != 0 && ::geteuid() != st.st_uid) {
    return absl::PermissionDeniedError(
        absl::StrCat(path, ": belongs to uid ", st.st_uid, ", not to this user (uid ", ::geteuid(),
                     "); rotate it as its owner or as root, so that the rewritten "
                     "file keeps its owner"));
  }
  absl::StatusOr<std::string> text = ReadFile(file.path, kMaxKeyFileBytes);
  if (!text.ok()) return text.status();
  file.text = *std::move(text);
  return file;
}

}  // namespace

std::map<std::string, std::string> SealedRecordsFromMetrics(absl::string_view prometheus) {
  std::map<std::string, std::string> sealed;
  for (absl::string_view line : absl::StrSplit(prometheus, '\n')) {
    if (!absl::ConsumePrefix(&line, kSealedSeries)) continue;
    const size_t close = line.rfind('}');
    if (close == absl::string_view::npos) continue;
    int64_t value = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(close + 1)), &value) ||
        value != 1) {
      continue;
    }
    const absl::string_view labels = line.substr(0, close);
    const std::string record = Label(labels, "record");
    if (!record.empty()) sealed[record] = Label(labels, "key_id");
  }
  return sealed;
}

absl::StatusOr<std::string> FinishedKeyText(absl::string_view text, absl::string_view where,
                                            const std::map<std::string, std::string>& sealed) {
  absl::StatusOr<StoreKeys> keys = StoreKeys::Parse(text, where);
  if (!keys.ok()) return keys.status();
  if (sealed.empty()) {
    return absl::FailedPreconditionError(
        "the control plane reports no record sealed with a store key "
        "(meshlet_cp_store_sealed_records): is it on etcd, and of this version? Not finishing: "
        "the older keys stay");
  }
  std::vector<std::string> older;
  for (const auto& [record, key_id] : sealed) {
    if (key_id == keys->current_key_id()) continue;
    older.push_back(absl::StrCat(
        record, key_id.empty() ? " (unencrypted)" : absl::StrCat(" (key ", key_id, ")")));
  }
  if (!older.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "not finishing: ", absl::StrJoin(older, ", "), older.size() == 1 ? " is" : " are",
        " not sealed with the first key of ", where, " (", keys->current_key_id(),
        ") yet; dropping the older keys would leave them unreadable. The control plane seals "
        "them again once it has read the rotated key file (a mounted Secret takes up to a "
        "minute or two to change); try again then"));
  }
  return StoreKeys::WithFirstKeyOnly(text, where);
}

// `text` written in place of `file`, with its mode, owner and group.
absl::Status WriteKeyFile(const KeyFile& file, absl::string_view text) {
  absl::Status written = WriteFileAtomically(file.path, text, {.mode = file.mode});
  if (!written.ok()) return written;
  // Root gives the file back to its owner; an owner keeps it, and keeps its group if a member.
  if (::chown(file.path.c_str(), ::geteuid() == 0 ? file.uid : static_cast<uid_t>(-1), file.gid) !=
      0) {
    return absl::PermissionDeniedError(absl::StrCat(
        file.path, ": written, but its group could not be set back to gid ", file.gid, ": ",
        std::strerror(errno), "; set it (chgrp) so that the control plane can read it"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RotateKeyFile(const std::string& path) {
  absl::StatusOr<KeyFile> file = ReadKeyFile(path);
  if (!file.ok()) return file.status();
  absl::StatusOr<std::string> rotated = StoreKeys::WithNewFirstKey(file->text, path);
  if (!rotated.ok()) return rotated.status();
  absl::StatusOr<StoreKeys> keys = StoreKeys::Parse(*rotated, path);
  absl::Status written = WriteKeyFile(*file, *rotated);
  OPENSSL_cleanse(rotated->data(), rotated->size());
  if (!written.ok()) return written;
  return keys->current_key_id();
}

absl::Status FinishKeyFile(const std::string& path,
                           const std::map<std::string, std::string>& sealed) {
  absl::StatusOr<KeyFile> file = ReadKeyFile(path);
  if (!file.ok()) return file.status();
  absl::StatusOr<std::string> finished = FinishedKeyText(file->text, path, sealed);
  if (!finished.ok()) return finished.status();
  absl::Status written = WriteKeyFile(*file, *finished);
  OPENSSL_cleanse(finished->data(), finished->size());
  return written;
}

}  // namespace meshlet::controlplane::install

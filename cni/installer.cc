#include "cni/installer.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cni/conflist.h"
#include "common/base/atomic_file.h"
#include "common/base/file.h"

namespace meshlet::cni {
namespace {

constexpr absl::string_view kStateHeader = "meshlet-cni-agent state 1";

// What the agent found and what it wrote. Serialized as the header line, the two names, the two
// lengths, one per line, then the two contents.
struct State {
  std::string original_name;
  std::string original;
  std::string written_name;
  std::string written;
};

std::string Serialize(const State& state) {
  return absl::StrCat(kStateHeader, "\n", state.original_name, "\n", state.written_name, "\n",
                      state.original.size(), "\n", state.written.size(), "\n", state.original,
                      state.written);
}

absl::StatusOr<std::optional<State>> LoadState(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path, 8 << 20);
  if (absl::IsNotFound(text.status())) return std::nullopt;
  if (!text.ok()) return text.status();
  const auto bad = [&] {
    return absl::DataLossError(absl::StrCat("state file \"", path, "\" is damaged"));
  };
  std::vector<absl::string_view> lines = absl::StrSplit(*text, absl::MaxSplits('\n', 5));
  size_t original_size = 0, written_size = 0;
  if (lines.size() != 6 || lines[0] != kStateHeader ||
      !absl::SimpleAtoi(lines[3], &original_size) || !absl::SimpleAtoi(lines[4], &written_size) ||
      lines[5].size() != original_size + written_size) {
    return bad();
  }
  return State{.original_name = std::string(lines[1]),
               .original = std::string(lines[5].substr(0, original_size)),
               .written_name = std::string(lines[2]),
               .written = std::string(lines[5].substr(original_size))};
}

// The file's permission bits, or 0644 when it cannot be read.
mode_t ModeOf(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0644;
}

absl::Status RemoveFile(const std::string& path) {
  if (unlink(path.c_str()) == 0 || errno == ENOENT) return absl::OkStatus();
  const int err = errno;
  return absl::ErrnoToStatus(err, absl::StrCat("cannot remove \"", path, "\""));
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ListFiles(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    const int err = errno;
    return absl::ErrnoToStatus(err, absl::StrCat("cannot list \"", dir, "\""));
  }
  std::vector<std::string> names;
  while (const dirent* entry = readdir(d)) {
    struct stat st;
    if (stat(absl::StrCat(dir, "/", entry->d_name).c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      names.emplace_back(entry->d_name);
    }
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

absl::string_view EnsureOutcomeName(EnsureOutcome outcome) {
  switch (outcome) {
    case EnsureOutcome::kInChain:
      return "in_chain";
    case EnsureOutcome::kInserted:
      return "inserted";
    case EnsureOutcome::kRepaired:
      return "repaired";
    case EnsureOutcome::kNoConfig:
      return "no_config";
  }
  return "unknown";
}

absl::StatusOr<EnsureOutcome> Installer::Ensure() {
  absl::StatusOr<std::vector<std::string>> names = ListFiles(options_.conf_dir);
  if (!names.ok()) return names.status();
  std::optional<std::string> selected = SelectConfFile(*std::move(names));
  if (!selected) return EnsureOutcome::kNoConfig;
  const std::string path = absl::StrCat(options_.conf_dir, "/", *selected);
  absl::StatusOr<std::string> content = ReadFile(path, options_.max_conf_bytes);
  if (!content.ok()) return content.status();
  absl::StatusOr<std::optional<State>> loaded = LoadState(options_.state_file);
  if (!loaded.ok()) return loaded.status();
  const std::optional<State>& previous = *loaded;
  absl::StatusOr<PluginPlace> place = FindPlugin(*selected, *content);
  if (!place.ok()) return place.status();

  // What the file is without meshlet-cni: the state's original when the file is what the agent
  // wrote from it apart from meshlet-cni's entry; else the file itself, spliced when it has one.
  State state{.original_name = *selected, .original = *content};
  if (*place != PluginPlace::kAbsent) {
    absl::StatusOr<std::string> stripped = RemovePlugin(*selected, *content);
    if (!stripped.ok()) return stripped.status();
    state.original = *std::move(stripped);
    if (previous && previous->written_name == *selected) {
      absl::StatusOr<std::string> ours = RemovePlugin(*selected, previous->written);
      if (ours.ok() && *ours == state.original) {
        state.original_name = previous->original_name;
        state.original = previous->original;
      }
    }
  }
  absl::StatusOr<EditedConf> edited =
      InsertPlugin(state.original_name, state.original, options_.plugin);
  if (!edited.ok()) return edited.status();
  if (edited->name == *selected && edited->content == *content) {
    // Already as the agent would write it: by this agent, or by an earlier one whose state is
    // gone (then the state is written again).
    state.written_name = edited->name;
    state.written = edited->content;
    if (!previous || Serialize(*previous) != Serialize(state)) {
      if (absl::Status s = WriteFileAtomically(options_.state_file, Serialize(state)); !s.ok()) {
        return s;
      }
    }
    return EnsureOutcome::kInChain;
  }
  state.written_name = edited->name;
  state.written = edited->content;
  // The state first: if the agent stops between the two writes, the next Ensure() finds the file
  // as it was and takes it as the original again.
  if (absl::Status s = WriteFileAtomically(options_.state_file, Serialize(state)); !s.ok()) {
    return s;
  }
  if (absl::Status s = WriteFileAtomically(absl::StrCat(options_.conf_dir, "/", edited->name),
                                           edited->content, {.mode = ModeOf(path)});
      !s.ok()) {
    return s;
  }
  if (edited->name != *selected) {  // a converted .conf: the runtime must now pick the .conflist
    if (absl::Status s = RemoveFile(path); !s.ok()) return s;
  }
  return previous ? EnsureOutcome::kRepaired : EnsureOutcome::kInserted;
}

absl::Status Installer::Uninstall() {
  absl::StatusOr<std::optional<State>> loaded = LoadState(options_.state_file);
  if (!loaded.ok()) return loaded.status();
  const std::optional<State>& state = *loaded;
  absl::StatusOr<std::vector<std::string>> names = ListFiles(options_.conf_dir);
  if (!names.ok()) return names.status();
  std::optional<std::string> selected = SelectConfFile(*std::move(names));
  if (selected) {
    const std::string path = absl::StrCat(options_.conf_dir, "/", *selected);
    absl::StatusOr<std::string> content = ReadFile(path, options_.max_conf_bytes);
    if (!content.ok()) return content.status();
    if (state && state->written_name == *selected && state->written == *content) {
      const std::string original_path = absl::StrCat(options_.conf_dir, "/", state->original_name);
      if (absl::Status s =
              WriteFileAtomically(original_path, state->original, {.mode = ModeOf(path)});
          !s.ok()) {
        return s;
      }
      if (state->original_name != *selected) {
        if (absl::Status s = RemoveFile(path); !s.ok()) return s;
      }
    } else {
      absl::StatusOr<PluginPlace> place = FindPlugin(*selected, *content);
      if (!place.ok()) return place.status();
      if (*place != PluginPlace::kAbsent) {
        absl::StatusOr<std::string> stripped = RemovePlugin(*selected, *content);
        if (!stripped.ok()) return stripped.status();
        if (absl::Status s = WriteFileAtomically(path, *stripped, {.mode = ModeOf(path)});
            !s.ok()) {
          return s;
        }
      }
    }
  }
  return RemoveFile(options_.state_file);
}

}  // namespace meshlet::cni

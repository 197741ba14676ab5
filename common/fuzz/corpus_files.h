#pragma once

// Writing a target's seeds and dictionary to files, for either driver (fuzz_target.h).

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/flags/flags.h"

namespace meshlet::fuzz {

// What --write_corpus=DIR and --write_dict=FILE ask for; empty: nothing.
struct WriteRequest {
  std::string corpus_dir;
  std::string dictionary_file;
};

// The two flags, writing into `request`.
std::vector<flags::Flag> WriteFlags(WriteRequest& request);

// Writes what `request` asks for and returns true (the caller exits), or returns false when it
// asks for nothing.
bool HandleWriteRequest(const WriteRequest& request);

// The contents of every regular file in `dir` (a committed corpus: <package>/fuzz_corpus/<target>),
// in file-name order. An error names the directory or file that could not be read.
absl::StatusOr<std::vector<std::string>> ReadCorpusDir(const std::string& dir);

// One dictionary entry in libFuzzer's syntax: "..." with \\, \" and \xNN escapes.
std::string DictionaryLine(absl::string_view token);

}  // namespace meshlet::fuzz

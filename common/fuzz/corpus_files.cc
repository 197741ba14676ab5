#include "common/fuzz/corpus_files.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fuzz/fuzz_target.h"

namespace meshlet::fuzz {

std::string DictionaryLine(absl::string_view token) {
  std::string line = "\"";
  for (char c : token) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '\\' || c == '"') {
      absl::StrAppend(&line, "\\", std::string(1, c));
    } else if (u >= 0x20 && u < 0x7f) {
      line.push_back(c);
    } else {
      static const char kHex[] = "0123456789abcdef";
      absl::StrAppend(&line, "\\x", std::string(1, kHex[u >> 4]), std::string(1, kHex[u & 15]));
    }
  }
  line.push_back('"');
  return line;
}

std::vector<flags::Flag> WriteFlags(WriteRequest& request) {
  return {flags::StringFlag("--write_corpus", "DIR", &request.corpus_dir,
                            "write the seeds to DIR, one file each, and exit"),
          flags::StringFlag("--write_dict", "FILE", &request.dictionary_file,
                            "write the dictionary in libFuzzer's format to FILE, and exit")};
}

absl::StatusOr<std::vector<std::string>> ReadCorpusDir(const std::string& dir) {
  std::error_code error;
  std::vector<std::filesystem::path> files;
  for (std::filesystem::directory_iterator it(dir, error), end; !error && it != end;
       it.increment(error)) {
    if (it->is_regular_file()) files.push_back(it->path());
  }
  if (error) return absl::NotFoundError(absl::StrCat("corpus ", dir, ": ", error.message()));
  std::sort(files.begin(), files.end());
  std::vector<std::string> inputs;
  inputs.reserve(files.size());
  for (const std::filesystem::path& file : files) {
    std::ifstream in(file, std::ios::binary);
    std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad())
      return absl::DataLossError(absl::StrCat("corpus file ", file.string(), ": unreadable"));
    inputs.push_back(std::move(content));
  }
  return inputs;
}

bool HandleWriteRequest(const WriteRequest& request) {
  if (!request.corpus_dir.empty()) {
    int n = 0;
    for (const std::string& s : SeedCorpus()) {
      std::ofstream(absl::StrCat(request.corpus_dir, "/seed_", n++), std::ios::binary) << s;
    }
    std::printf("wrote %d seeds to %s\n", n, request.corpus_dir.c_str());
  }
  if (!request.dictionary_file.empty()) {
    std::ofstream out{request.dictionary_file};
    int n = 0;
    for (const std::string& token : Dictionary()) {
      if (token.empty()) continue;
      out << DictionaryLine(token) << "\n";
      ++n;
    }
    std::printf("wrote %d dictionary entries to %s\n", n, request.dictionary_file.c_str());
  }
  return !request.corpus_dir.empty() || !request.dictionary_file.empty();
}

}  // namespace meshlet::fuzz

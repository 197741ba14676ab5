#include "common/fuzz/corpus_files.h"

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
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

bool HandleWriteFlags(int argc, char** argv) {
  bool wrote = false;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (absl::ConsumePrefix(&arg, "--write_corpus=")) {
      int n = 0;
      for (const std::string& s : SeedCorpus()) {
        std::ofstream(absl::StrCat(arg, "/seed_", n++), std::ios::binary) << s;
      }
      std::printf("wrote %d seeds to %s\n", n, std::string(arg).c_str());
      wrote = true;
    } else if (absl::ConsumePrefix(&arg, "--write_dict=")) {
      std::ofstream out{std::string(arg)};
      int n = 0;
      for (const std::string& token : Dictionary()) {
        if (token.empty()) continue;
        out << DictionaryLine(token) << "\n";
        ++n;
      }
      std::printf("wrote %d dictionary entries to %s\n", n, std::string(arg).c_str());
      wrote = true;
    }
  }
  return wrote;
}

}  // namespace meshlet::fuzz

#pragma once

// Writing a target's seeds and dictionary to files, for either driver (fuzz_target.h).

#include <string>

#include "absl/strings/string_view.h"

namespace meshlet::fuzz {

// Handles --write_corpus=DIR and --write_dict=FILE in argv: writes what they ask for and returns
// true (the caller exits), or returns false when neither is present.
bool HandleWriteFlags(int argc, char** argv);

// One dictionary entry in libFuzzer's syntax: "..." with \\, \" and \xNN escapes.
std::string DictionaryLine(absl::string_view token);

}  // namespace meshlet::fuzz

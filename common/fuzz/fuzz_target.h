#pragma once

// What every fuzz target provides. A target is one .cc file that defines LLVMFuzzerTestOneInput
// (the libFuzzer entry point: crash, abort or a sanitizer report on a bad input, return 0
// otherwise) plus a seed corpus and a dictionary of protocol tokens. It links either:
// - fuzz_main (the default build): a main() that replays the files named on the command line, or
//   runs the seeds and then --runs=N inputs mutated from them, deterministic for a given --seed=N.
//   The `<target>_test` rule runs it for a few thousand inputs as part of the test suite;
// - libfuzzer_init (bazel --config=fuzz, clang with -fsanitize=fuzzer,address,undefined):
//   libFuzzer's own main() drives the target; `./dev fuzz` runs it (docs/building.md).
// Both understand --write_corpus=DIR (the seeds as files) and --write_dict=FILE (the dictionary in
// libFuzzer's format), and exit after writing.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace meshlet::fuzz {

// Defined by each target: inputs that reach deep states (valid messages of every kind), and byte
// strings the mutator should splice in (syntax the target's grammar cares about).
std::vector<std::string> SeedCorpus();
std::vector<std::string> Dictionary();

}  // namespace meshlet::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

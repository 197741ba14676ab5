// libFuzzer build of a fuzz target (fuzz_target.h): libFuzzer provides main(); this only adds
// --write_corpus and --write_dict, which libFuzzer itself ignores (it skips flags starting "--").

#include <cstdlib>

#include "common/fuzz/corpus_files.h"

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  if (meshlet::fuzz::HandleWriteFlags(*argc, *argv)) std::exit(0);
  return 0;
}

// libFuzzer build of a fuzz target (fuzz_target.h): libFuzzer provides main(); this only adds
// --write_corpus and --write_dict, which libFuzzer itself ignores (it skips flags starting "--").

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/flags/flags.h"
#include "common/fuzz/corpus_files.h"

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  // The rest of the command line is libFuzzer's.
  std::vector<std::string> args(*argv + 1, *argv + *argc);
  meshlet::fuzz::WriteRequest request;
  if (absl::Status s = meshlet::flags::Extract(meshlet::fuzz::WriteFlags(request), args); !s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    std::exit(meshlet::flags::kUsageExitCode);
  }
  if (meshlet::fuzz::HandleWriteRequest(request)) std::exit(0);
  return 0;
}

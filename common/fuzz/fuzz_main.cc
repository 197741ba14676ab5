// The default driver of a fuzz target (fuzz_target.h): replays the files named on the command line
// (and nothing else, to reproduce a crash), or runs the seeds and the --corpus files and then
// --runs inputs mutated from them with a fixed --seed, so a test run is deterministic. The
// mutations are byte-level and biased towards the target's dictionary; libFuzzer (./dev fuzz)
// explores far more, this keeps every target exercised on every test run.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "common/base/file.h"
#include "common/flags/flags.h"
#include "common/fuzz/corpus_files.h"
#include "common/fuzz/fuzz_target.h"

namespace meshlet::fuzz {
namespace {

std::string Mutate(std::string s, const std::vector<std::string>& seeds,
                   const std::vector<std::string>& dictionary, std::mt19937_64& rng) {
  int rounds = 1 + static_cast<int>(rng() % 4);
  for (int r = 0; r < rounds; ++r) {
    size_t pos = s.empty() ? 0 : rng() % (s.size() + 1);
    switch (rng() % 7) {
      case 0:  // flip a byte
        if (pos < s.size()) s[pos] = static_cast<char>(rng());
        break;
      case 1:  // insert a dictionary token
        if (!dictionary.empty()) s.insert(pos, dictionary[rng() % dictionary.size()]);
        break;
      case 2:  // delete a range
        if (pos < s.size()) s.erase(pos, 1 + rng() % 8);
        break;
      case 3:  // duplicate a range
        if (pos < s.size()) s.insert(pos, s.substr(pos, 1 + rng() % 32));
        break;
      case 4: {  // splice in part of another seed
        const std::string& o = seeds[rng() % seeds.size()];
        if (!o.empty()) s.insert(pos, o.substr(rng() % o.size(), 1 + rng() % 48));
        break;
      }
      case 5:  // targets often read mode bytes first: change one of them
        if (!s.empty()) s[rng() % std::min<size_t>(s.size(), 2)] = static_cast<char>(rng());
        break;
      case 6:  // cut the input short
        if (pos < s.size()) s.resize(pos);
        break;
    }
  }
  return s;
}

void Run(const std::string& input) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

}  // namespace
}  // namespace meshlet::fuzz

int main(int argc, char** argv) {
  using meshlet::fuzz::Run;
  namespace flags = meshlet::flags;
  int64_t runs = 10000;
  uint64_t seed = 1;
  std::string corpus_dir;
  meshlet::fuzz::WriteRequest write;
  std::vector<flags::Flag> table = {
      flags::IntFlag<int64_t>("--runs", "N", &runs,
                              "mutated inputs to run after the seeds (default 10000)", 0),
      flags::IntFlag<uint64_t>("--seed", "N", &seed, "the mutations' random seed (default 1)", 0),
      flags::StringFlag("--corpus", "DIR", &corpus_dir,
                        "also replay every file in DIR (the committed corpus) and mutate them too"),
  };
  for (flags::Flag& flag : meshlet::fuzz::WriteFlags(write)) table.push_back(std::move(flag));
  absl::StatusOr<flags::ParsedArgs> parsed =
      flags::Parse(table, std::vector<std::string>(argv + 1, argv + argc), {.positional = true});
  if (!parsed.ok()) {
    std::fprintf(stderr, "%s: %s\n\nUsage: %s [FILE...] [flags]\n%s", argv[0],
                 std::string(parsed.status().message()).c_str(), argv[0],
                 flags::FlagTable(table).c_str());
    return flags::kUsageExitCode;
  }
  if (meshlet::fuzz::HandleWriteRequest(write)) return 0;
  const std::vector<std::string>& files = parsed->positional;
  for (const std::string& f : files) {
    absl::StatusOr<std::string> input = meshlet::ReadFile(f);
    if (!input.ok()) {
      std::fprintf(stderr, "%s\n", std::string(input.status().message()).c_str());
      return 2;
    }
    Run(*input);
  }
  if (!files.empty()) {
    std::printf("%s: %zu files: ok\n", argv[0], files.size());
    return 0;
  }
  std::vector<std::string> seeds = meshlet::fuzz::SeedCorpus();
  const std::vector<std::string> dictionary = meshlet::fuzz::Dictionary();
  if (seeds.empty()) {
    std::fprintf(stderr, "the target has no seeds\n");
    return 2;
  }
  const size_t built_in = seeds.size();
  if (!corpus_dir.empty()) {
    absl::StatusOr<std::vector<std::string>> corpus = meshlet::fuzz::ReadCorpusDir(corpus_dir);
    if (!corpus.ok()) {
      std::fprintf(stderr, "%s\n", std::string(corpus.status().message()).c_str());
      return 2;
    }
    for (std::string& input : *corpus) seeds.push_back(std::move(input));
  }
  for (const std::string& s : seeds) Run(s);
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < runs; ++i) {
    std::string input = seeds[rng() % seeds.size()];
    // Stack mutations sometimes so inputs drift further from the seeds.
    int generations = 1 + static_cast<int>(rng() % 3);
    for (int g = 0; g < generations; ++g) {
      input = meshlet::fuzz::Mutate(std::move(input), seeds, dictionary, rng);
    }
    Run(input);
  }
  std::printf("%s: %zu seeds, %zu corpus files, %lld mutated runs: ok\n", argv[0], built_in,
              seeds.size() - built_in, static_cast<long long>(runs));
  return 0;
}

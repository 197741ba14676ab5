// Fuzz target for the HTTP/1 parser.
//
// Input layout: byte 0 picks the mode (request/response, the request method a response answers,
// tight limits), byte 1 seeds the split points, the rest is the message bytes. Each input is
// parsed whole, split at pseudo-random points, and (when short) one byte at a time. Invariants:
// no crash or sanitizer report; identical callback records and outcome for every split; callback
// order and field syntax as documented (RecordingVisitor); never more body bytes than input;
// Execute never consumes more than it was given and does nothing once stopped.
//
// Built normally (Bazel), this file has its own main(): it replays files named on the command line
// and then runs --runs mutated inputs derived from a built-in seed corpus (deterministic for a
// given --seed). --write_corpus=DIR writes the seeds as files for a libFuzzer run.
// Built with -DMESHLET_LIBFUZZER and -fsanitize=fuzzer, libFuzzer provides main().

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/http/h1/parser.h"
#include "common/http/h1/parser_test_util.h"

namespace meshlet::http::h1 {
namespace {

using testing::ParseOptions;
using testing::ParseOutcome;

[[noreturn]] void Die(absl::string_view what, absl::string_view input, const std::string& a,
                      const std::string& b) {
  std::fprintf(stderr, "parser_fuzz invariant broken: %.*s\ninput (%zu bytes)\nA: %s\nB: %s\n",
               static_cast<int>(what.size()), what.data(), input.size(), a.c_str(), b.c_str());
  std::abort();
}

void CheckOutcome(absl::string_view input, const ParseOutcome& out) {
  if (!out.violations.empty()) Die("contract violation", input, out.log, out.violations);
  if (out.body_bytes > input.size()) Die("more body than input", input, out.log, "");
  if (out.consumed > input.size()) Die("consumed more than input", input, out.log, "");
}

void CheckSame(absl::string_view input, const ParseOutcome& whole, const ParseOutcome& split,
               absl::string_view how) {
  CheckOutcome(input, split);
  if (split.log != whole.log) Die(how, input, whole.log, split.log);
  if (split.status != whole.status || split.error != whole.error) {
    Die(how, input, whole.log, split.log);
  }
  if (whole.status != Parser::Status::kError && split.consumed != whole.consumed)
    Die(how, input, whole.log, split.log);
}

void FuzzOne(const uint8_t* data, size_t size) {
  if (size < 2) return;
  const uint8_t mode = data[0];
  const uint8_t split_seed = data[1];
  absl::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);

  ParseOptions options;
  options.type = (mode & 1) ? Parser::Type::kResponse : Parser::Type::kRequest;
  static const char* const kMethods[] = {"GET", "HEAD", "CONNECT", "POST"};
  options.request_method = kMethods[(mode >> 1) & 3];
  options.finish = (mode & 8) != 0;
  if (mode & 16) {
    // Tight limits reach the limit paths with short inputs.
    options.limits.max_start_line_bytes = 64;
    options.limits.max_uri_bytes = 32;
    options.limits.max_header_bytes = 128;
    options.limits.max_header_count = 4;
    options.limits.max_chunk_extension_bytes = 8;
  }

  ParseOutcome whole = testing::ParseWhole(input, options);
  CheckOutcome(input, whole);

  std::minstd_rand rng(split_seed * 2654435761u + static_cast<uint32_t>(input.size()));
  std::vector<size_t> cuts;
  size_t num_cuts = 1 + split_seed % 7;
  for (size_t i = 0; i < num_cuts && !input.empty(); ++i) cuts.push_back(rng() % input.size());
  std::sort(cuts.begin(), cuts.end());
  CheckSame(input, whole, testing::ParseSplit(input, cuts, options), "random split differs");

  if (input.size() <= 1024) {
    std::vector<size_t> every;
    for (size_t i = 1; i < input.size(); ++i) every.push_back(i);
    CheckSame(input, whole, testing::ParseSplit(input, every, options), "bytewise differs");
  }
}

}  // namespace
}  // namespace meshlet::http::h1

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  meshlet::http::h1::FuzzOne(data, size);
  return 0;
}

#ifndef MESHLET_LIBFUZZER
namespace {

// Seeds: mode byte, split byte, message. Valid messages of every framing, so mutations start
// from deep parser states.
std::vector<std::string> SeedCorpus() {
  const std::vector<std::string> requests = {
      "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
      "POST /p?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n"
      "0\r\nX-T: 1\r\n\r\n",
      "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.1\r\nHost: b\r\n\r\n",
      "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nraw",
      "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
      "PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2, 2\r\n\r\nok",
      "OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
  };
  const std::vector<std::string> responses = {
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n"
      "grpc-status: 0\r\n\r\n",
      "HTTP/1.0 200 OK\r\n\r\nuntil close",
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
      "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
  };
  std::vector<std::string> seeds;
  uint8_t split = 0;
  for (const std::string& r : requests) {
    for (uint8_t mode : {0, 8, 16}) seeds.push_back(std::string{char(mode), char(split++)} + r);
  }
  for (const std::string& r : responses) {
    for (uint8_t mode : {1, 3, 5, 9, 17})
      seeds.push_back(std::string{char(mode), char(split++)} + r);
  }
  return seeds;
}

// Byte-level mutations biased towards HTTP syntax.
std::string Mutate(std::string s, const std::vector<std::string>& seeds, std::mt19937_64& rng) {
  static const char* const kTokens[] = {
      "\r",
      "\n",
      "\r\n",
      " ",
      "\t",
      ":",
      ",",
      ";",
      "\0",
      "0",
      "9",
      "f",
      "\x7f",
      "\xff",
      "-",
      "+",
      "chunked",
      "Content-Length: ",
      "Transfer-Encoding: ",
      "Host: a\r\n",
      "0\r\n\r\n",
      "\r\n\r\n",
      "Connection: close\r\n",
      "HTTP/1.1",
      "\x0b",
      "18446744073709551616",
  };
  int rounds = 1 + static_cast<int>(rng() % 4);
  for (int r = 0; r < rounds; ++r) {
    size_t pos = s.size() <= 2 ? s.size() : 2 + rng() % (s.size() - 1);
    switch (rng() % 6) {
      case 0:  // flip a byte
        if (pos < s.size()) s[pos] = static_cast<char>(rng());
        break;
      case 1: {  // insert a token
        const char* t = kTokens[rng() % (sizeof(kTokens) / sizeof(kTokens[0]))];
        s.insert(pos, t[0] == '\0' ? std::string(1, '\0') : std::string(t));
        break;
      }
      case 2:  // delete a range
        if (pos < s.size()) s.erase(pos, 1 + rng() % 8);
        break;
      case 3:  // duplicate a range
        if (pos < s.size()) s.insert(pos, s.substr(pos, 1 + rng() % 32));
        break;
      case 4: {  // splice in part of another seed
        const std::string& o = seeds[rng() % seeds.size()];
        size_t from = 2 + rng() % (o.size() - 2);
        s.insert(pos, o.substr(from, 1 + rng() % 48));
        break;
      }
      case 5:  // new mode / split bytes
        s[rng() % 2] = static_cast<char>(rng());
        break;
    }
  }
  return s;
}

void Run(const std::string& input) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

}  // namespace

int main(int argc, char** argv) {
  long runs = 10000;
  uint64_t seed = 1;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (absl::ConsumePrefix(&arg, "--runs=")) {
      runs = std::strtol(std::string(arg).c_str(), nullptr, 10);
    } else if (absl::ConsumePrefix(&arg, "--seed=")) {
      seed = std::strtoull(std::string(arg).c_str(), nullptr, 10);
    } else if (absl::ConsumePrefix(&arg, "--write_corpus=")) {
      int n = 0;
      for (const std::string& s : SeedCorpus()) {
        std::ofstream(absl::StrCat(arg, "/seed_", n++), std::ios::binary) << s;
      }
      std::printf("wrote %d seeds\n", n);
      return 0;
    } else {
      files.emplace_back(arg);
    }
  }
  for (const std::string& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::stringstream buf;
    buf << in.rdbuf();
    Run(buf.str());
  }
  const std::vector<std::string> seeds = SeedCorpus();
  for (const std::string& s : seeds) Run(s);
  std::mt19937_64 rng(seed);
  for (long i = 0; i < runs; ++i) {
    std::string input = seeds[rng() % seeds.size()];
    // Stack mutations sometimes so inputs drift further from the seeds.
    int generations = 1 + static_cast<int>(rng() % 3);
    for (int g = 0; g < generations; ++g) input = Mutate(std::move(input), seeds, rng);
    Run(input);
  }
  std::printf("parser_fuzz: %zu files, %zu seeds, %ld mutated runs: ok\n", files.size(),
              seeds.size(), runs);
  return 0;
}
#endif  // MESHLET_LIBFUZZER

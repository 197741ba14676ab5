// Fuzz target for the HTTP/1 parser.
//
// Input layout: byte 0 picks the mode (request/response, the request method a response answers,
// tight limits), byte 1 seeds the split points, the rest is the message bytes. Each input is
// parsed whole, split at pseudo-random points, and (when short) one byte at a time. Invariants:
// no crash or sanitizer report; identical callback records and outcome for every split; callback
// order and field syntax as documented (RecordingVisitor); never more body bytes than input;
// Execute never consumes more than it was given and does nothing once stopped.
//
// Drivers (a deterministic test run, libFuzzer): common/fuzz/fuzz_target.h.

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
#include "common/fuzz/fuzz_target.h"
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

namespace meshlet::fuzz {

// Seeds: mode byte, split byte, message. Valid messages of every framing, so mutations start
// from deep parser states.
std::vector<std::string> SeedCorpus() {
  return meshlet::http::h1::testing::SampleSeeds({0, 8, 16}, {1, 3, 5, 9, 17});
}

std::vector<std::string> Dictionary() {
  return {
      "\r",
      "\n",
      "\r\n",
      " ",
      "\t",
      ":",
      ",",
      ";",
      std::string(1, '\0'),
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
}

}  // namespace meshlet::fuzz

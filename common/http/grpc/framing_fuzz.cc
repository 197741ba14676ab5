// Fuzz target for the gRPC message frame decoder (framing.h), and for the header values of
// status.h (grpc-timeout, grpc-status, grpc-message).
//
// Input layout: byte 0 picks the mode (bit 0: a 64-byte message limit instead of the default;
// bit 1: the rest is header values instead of a stream), byte 1 seeds the split points, the rest
// is the byte stream. Invariants: decoding the stream
// whole and split at pseudo-random points gives the same messages and the same error; the
// messages re-encoded with EncodeMessage are exactly the bytes consumed before the partial
// message or the error; no message exceeds the limit; HasPartialFrame() says whether bytes of an
// unfinished message remain. Header values: grpc-timeout parses to a non-negative duration or
// nothing; grpc-message percent-decoding inverts percent-encoding.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/fuzz/fuzz_target.h"
#include "common/http/grpc/framing.h"
#include "common/http/grpc/status.h"
#include "common/http/header_map.h"
#include "common/net/buffer.h"

namespace meshlet::http::grpc {
namespace {

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "grpc framing_fuzz invariant broken: %s\n", what);
  std::abort();
}

struct Outcome {
  std::string reencoded;  // the decoded messages, framed again
  size_t messages = 0;
  absl::Status status;
  bool partial = false;
};

Outcome Decode(absl::string_view input, const std::vector<size_t>& cuts, size_t limit) {
  FrameDecoder decoder(limit);
  Outcome out;
  net::Buffer encoded;
  size_t start = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(input.size());
  for (size_t end : ends) {
    net::Buffer piece;
    piece.Append(input.substr(start, end - start));
    start = end;
    std::vector<Frame> frames;
    absl::Status s = decoder.Decode(piece, frames);
    if (!piece.empty()) Die("Decode left input behind");
    for (Frame& f : frames) {
      if (f.message.length() > limit) Die("message over the limit");
      ++out.messages;
      EncodeMessage(f.message, encoded, f.compressed);
    }
    if (!s.ok()) {
      out.status = s;
      break;
    }
  }
  out.partial = decoder.HasPartialFrame();
  out.reencoded = encoded.ToString();
  return out;
}

void FuzzHeaderValues(absl::string_view input) {
  std::optional<Duration> timeout = ParseGrpcTimeout(input);
  if (timeout.has_value() && *timeout < Duration::zero()) Die("negative grpc-timeout");
  if (PercentDecode(PercentEncode(input)) != input) Die("percent-encoding does not round-trip");
  size_t newline = input.find('\n');
  HeaderMap trailers;
  trailers.Add("grpc-status", input.substr(0, newline));
  if (newline != absl::string_view::npos) trailers.Add("grpc-message", input.substr(newline + 1));
  std::optional<GrpcStatus> status = ParseStatus(trailers);
  if (!status.has_value()) Die("grpc-status present but not parsed");
  if (static_cast<int>(status->code) < 0 || static_cast<int>(status->code) > 16) {
    Die("status code out of range");
  }
}

void FuzzOne(const uint8_t* data, size_t size) {
  if (size < 2) return;
  if (data[0] & 2) {
    FuzzHeaderValues(absl::string_view(reinterpret_cast<const char*>(data + 2), size - 2));
    return;
  }
  const size_t limit = (data[0] & 1) ? 64 : kDefaultMaxMessageSize;
  absl::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);
  Outcome whole = Decode(input, {}, limit);
  if (input.substr(0, whole.reencoded.size()) != whole.reencoded) {
    Die("re-encoded messages differ from the input");
  }
  if (whole.status.ok() && whole.partial != (whole.reencoded.size() < input.size())) {
    Die("HasPartialFrame disagrees with the bytes left over");
  }
  std::minstd_rand rng(data[1] + 1);
  std::vector<size_t> cuts;
  for (int i = 0; i < 1 + data[1] % 6 && !input.empty(); ++i) cuts.push_back(rng() % input.size());
  std::sort(cuts.begin(), cuts.end());
  Outcome split = Decode(input, cuts, limit);
  if (split.reencoded != whole.reencoded || split.messages != whole.messages ||
      split.status != whole.status || split.partial != whole.partial) {
    Die("split input decodes differently");
  }
}

}  // namespace
}  // namespace meshlet::http::grpc

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  meshlet::http::grpc::FuzzOne(data, size);
  return 0;
}

namespace meshlet::fuzz {

std::vector<std::string> SeedCorpus() {
  using meshlet::http::grpc::EncodeMessage;
  std::vector<std::string> streams;
  for (const std::vector<std::string>& messages : std::vector<std::vector<std::string>>{
           {""}, {"hello"}, {"a", "", std::string(100, 'x')}, {std::string(70, 'y')}}) {
    meshlet::net::Buffer out;
    for (const std::string& m : messages) EncodeMessage(m, out, m.size() % 2 == 1);
    streams.push_back(out.ToString());
  }
  streams.push_back(streams[1].substr(0, 7));               // truncated message
  streams.push_back(std::string("\x02\0\0\0\0", 5));        // bad flag
  streams.push_back(std::string("\0\xff\xff\xff\xff", 5));  // 4 GiB length
  std::vector<std::string> seeds;
  uint8_t split = 0;
  for (const std::string& s : streams) {
    for (uint8_t mode : {0, 1}) seeds.push_back(std::string{char(mode), char(split++)} + s);
  }
  for (const char* value : {"1S", "99999999H", "100m", "5n", "14\nno%20healthy%ff upstream", "0\n%",
                            "16\n\xc3\xa9t\xc3\xa9"}) {
    seeds.push_back(std::string{char(2), char(split++)} + value);
  }
  return seeds;
}

std::vector<std::string> Dictionary() {
  return {"H",
          "M",
          "S",
          "m",
          "u",
          "n",
          "99999999",
          "%",
          "%2",
          "%25",
          "\n",
          std::string("\0\0\0\0\0", 5),
          std::string("\x01\0\0\0\x05", 5),
          std::string("\0\0\0\x40", 4),
          std::string("\0\0\0\x41", 4),
          std::string("\0\x7f\xff\xff\xff", 5)};
}

}  // namespace meshlet::fuzz

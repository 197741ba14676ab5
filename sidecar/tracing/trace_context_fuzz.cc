// Fuzz target for trace-context parsing (trace_context.h): W3C traceparent and tracestate, B3
// single and multi headers, and the precedence between them.
//
// Input layout: newline-separated values, in order: traceparent, tracestate, b3, x-b3-traceid,
// x-b3-spanid, x-b3-parentspanid, x-b3-sampled, x-b3-flags; a missing line is an absent header.
// Invariants: a parsed traceparent has a valid trace and span id, and formatting it parses back to
// the same ids and sampling decision; a tracestate rewritten for propagation is within the length
// limit and is kept as it is when checked again; B3 contexts have valid ids or none; the context
// extracted from a header map comes from a header that parses on its own.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/fuzz/fuzz_target.h"
#include "common/http/header_map.h"
#include "sidecar/tracing/trace_context.h"

namespace meshlet::sidecar::tracing {
namespace {

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "trace_context_fuzz invariant broken: %s\n", what);
  std::abort();
}

constexpr absl::string_view kHeaders[] = {"traceparent",  "tracestate",  "b3",
                                          "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid",
                                          "x-b3-sampled", "x-b3-flags"};
constexpr size_t kHeaderCount = sizeof(kHeaders) / sizeof(kHeaders[0]);

void CheckB3(const std::optional<ParentContext>& b3) {
  if (!b3.has_value()) return;
  // A sampling-only B3 header carries no ids; otherwise both must be usable.
  if (b3->trace_id.valid() && b3->span_id == 0) Die("B3 context with a zero span id");
}

void FuzzOne(absl::string_view input) {
  std::vector<absl::string_view> lines = absl::StrSplit(input, '\n');
  std::optional<absl::string_view> value[kHeaderCount];
  for (size_t i = 0; i < kHeaderCount && i < lines.size(); ++i) value[i] = lines[i];

  if (value[0].has_value()) {
    std::optional<ParentContext> tp = ParseTraceparent(*value[0]);
    if (tp.has_value()) {
      if (!tp->trace_id.valid() || tp->span_id == 0) Die("traceparent with a zero id");
      char formatted[kTraceparentLength];
      bool sampled = tp->sampling == SamplingHint::kSampled;
      FormatTraceparent(tp->trace_id, tp->span_id, sampled, formatted);
      std::optional<ParentContext> again =
          ParseTraceparent(absl::string_view(formatted, kTraceparentLength));
      if (!again.has_value() || !(again->trace_id == tp->trace_id) ||
          again->span_id != tp->span_id || again->sampling != tp->sampling) {
        Die("formatted traceparent does not parse back the same");
      }
    }
  }
  if (value[1].has_value()) {
    std::string rewritten;
    TracestateVerdict verdict = CheckTracestate(*value[1], &rewritten);
    if (verdict == TracestateVerdict::kRewrite) {
      if (rewritten.size() > kMaxTracestateLength) Die("rewritten tracestate too long");
      std::string twice;
      if (CheckTracestate(rewritten, &twice) != TracestateVerdict::kKeep) {
        Die("rewritten tracestate is not kept as it is");
      }
    }
  }
  if (value[2].has_value()) CheckB3(ParseB3Single(*value[2]));
  CheckB3(ParseB3Multi(value[3], value[4], value[5], value[6], value[7]));

  http::HeaderMap headers;
  for (size_t i = 0; i < kHeaderCount; ++i) {
    if (value[i].has_value()) headers.Add(kHeaders[i], *value[i]);
  }
  ParentContext parent = ExtractParent(headers);
  switch (parent.format) {
    case Propagation::kW3c:
      if (!value[0].has_value() || !ParseTraceparent(*value[0]).has_value()) {
        Die("W3C context without a valid traceparent");
      }
      break;
    case Propagation::kB3Single:
      if (!value[2].has_value() || !ParseB3Single(*value[2]).has_value()) {
        Die("B3 context without a valid b3 header");
      }
      break;
    case Propagation::kB3Multi:
      if (!ParseB3Multi(value[3], value[4], value[5], value[6], value[7]).has_value()) {
        Die("B3 context without valid X-B3 headers");
      }
      break;
    case Propagation::kNone:
      if (parent.trace_id.valid()) Die("a trace id from no header");
      break;
  }
}

}  // namespace
}  // namespace meshlet::sidecar::tracing

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  meshlet::sidecar::tracing::FuzzOne(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}

namespace meshlet::fuzz {

std::vector<std::string> SeedCorpus() {
  const std::string tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  return {
      tp,
      tp + "\ncongo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-extra\na=1,,b=2, c=3",
      tp + "\n" + std::string(600, 'k') + "=v,x@y=z",
      "\n\n80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
      "\n\na3ce929d0e0e4736-00f067aa0ba902b7-d",
      "\n\n0",
      "\n\n\n463ac35c9f6413ad48485a3953bb6124\na2fb4a1d1a96d312\n0020000000000001\n1\n1",
      "\n\n\na3ce929d0e0e4736\n00f067aa0ba902b7\n\n0",
      "\n\n\n\n\n\n\n1",
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01\n\nbad",
  };
}

std::vector<std::string> Dictionary() {
  return {"00-",
          "-01",
          "-00",
          "ff",
          "\n",
          ",",
          "=",
          "@",
          "-d",
          "-1",
          "-0",
          "true",
          "4bf92f3577b34da6a3ce929d0e0e4736",
          "00f067aa0ba902b7",
          "0000000000000000"};
}

}  // namespace meshlet::fuzz

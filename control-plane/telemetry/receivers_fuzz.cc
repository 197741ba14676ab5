// Fuzz target for the collector's span decoders (receivers.h): OTLP/HTTP protobuf and JSON, and
// Zipkin v2 JSON, with what they accept stored in a small TraceStore.
//
// Input layout: byte 0 picks the decoder (0 protobuf, 1 OTLP JSON, 2 Zipkin), the rest is the
// request body. Invariants: accepted spans have ids of the documented shape (32 and 16 lowercase
// hex digits, not all zero; the parent empty or 16 digits), end no earlier than start; the store
// stays within its limits and finds every trace it kept.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/fuzz/fuzz_target.h"
#include "control-plane/telemetry/receivers.h"
#include "control-plane/telemetry/trace_store.h"

namespace meshlet::controlplane::telemetry {
namespace {

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "receivers_fuzz invariant broken: %s\n", what);
  std::abort();
}

bool IsHexId(absl::string_view id, size_t digits) {
  if (id.size() != digits) return false;
  bool nonzero = false;
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    nonzero |= c != '0';
  }
  return nonzero;
}

void FuzzOne(const uint8_t* data, size_t size) {
  if (size < 1) return;
  absl::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  absl::StatusOr<std::vector<SpanRecord>> spans;
  switch (data[0] % 3) {
    case 0:
      spans = ParseOtlpProtobuf(body);
      break;
    case 1:
      spans = ParseOtlpJson(body);
      break;
    default:
      spans = ParseZipkinJson(body);
      break;
  }
  if (!spans.ok()) return;
  for (const SpanRecord& s : *spans) {
    if (!IsHexId(s.trace_id, 32)) Die("bad trace id accepted");
    if (!IsHexId(s.span_id, 16)) Die("bad span id accepted");
    if (!s.parent_span_id.empty() && !IsHexId(s.parent_span_id, 16)) Die("bad parent id");
    if (s.end_unix_nanos < s.start_unix_nanos) Die("span ends before it starts");
  }
  TraceStore store(TraceStoreLimits{.max_spans = 8, .max_bytes = 4096, .max_spans_per_trace = 4});
  std::vector<std::string> ids;
  for (const SpanRecord& s : *spans) ids.push_back(s.trace_id);
  store.Add(std::move(*spans));
  if (store.span_count() > 8 || store.byte_count() > 4096) Die("store over its limits");
  size_t found = 0;
  for (const std::string& id : ids) {
    if (store.Get(id).has_value()) ++found;
  }
  if (store.trace_count() > 0 && found == 0) Die("stored traces cannot be found");
  (void)store.Find(TraceQuery{});
  (void)store.Dependencies();
}

}  // namespace
}  // namespace meshlet::controlplane::telemetry

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  meshlet::controlplane::telemetry::FuzzOne(data, size);
  return 0;
}

namespace meshlet::fuzz {

std::vector<std::string> SeedCorpus() {
  const std::string otlp_json = R"({"resourceSpans":[{"resource":{"attributes":[
  {"key":"service.name","value":{"stringValue":"frontend"}}]},
  "scopeSpans":[{"scope":{"name":"meshlet"},"spans":[
    {"traceId":"4BF92F3577B34DA6A3CE929D0E0E4736","spanId":"00f067aa0ba902b7","name":"GET /a",
     "kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000050000000",
     "attributes":[{"key":"http.response.status_code","value":{"intValue":"503"}},
                   {"key":"ok","value":{"boolValue":true}},{"key":"d","value":{"doubleValue":1.5}},
                   {"key":"meshlet.response_flags","value":{"stringValue":"UF"}}],
     "status":{"code":2,"message":"upstream failed"}},
    {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b8",
     "parentSpanId":"00f067aa0ba902b7","name":"GET /a","kind":3,
     "startTimeUnixNano":1700000000001000000,"endTimeUnixNano":"1700000000049000000"}
  ]}]}]})";
  const std::string zipkin = R"([
  {"traceId":"a3ce929d0e0e4736","id":"00f067aa0ba902b7","name":"get /z","kind":"SERVER",
   "timestamp":1700000000000000,"duration":2500,"localEndpoint":{"serviceName":"zsvc"},
   "tags":{"http.status_code":"500","error":"boom"}},
  {"traceId":"463ac35c9f6413ad48485a3953bb6124","id":"00f067aa0ba902b8",
   "parentId":"00f067aa0ba902b7","name":"get /db","kind":"CLIENT","timestamp":1700000000000100,
   "duration":1000,"localEndpoint":{"serviceName":"zsvc"},"remoteEndpoint":{"serviceName":"db"},
   "debug":true,"shared":false}
])";
  // OTLP protobuf, written field by field (ExportTraceServiceRequest > ResourceSpans >
  // ScopeSpans > Span): trace_id (1), span_id (2), parent_span_id (4), name (5), kind (6),
  // start (7, fixed64), end (8, fixed64).
  auto field = [](int number, const std::string& bytes) {
    return std::string{char(number << 3 | 2), char(bytes.size())} + bytes;
  };
  auto fixed64 = [](int number, uint64_t v) {
    std::string s{char(number << 3 | 1)};
    for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
    return s;
  };
  std::string span = field(1, std::string("\x4b\xf9\x2f\x35\x77\xb3\x4d\xa6\xa3\xce\x92\x9d"
                                          "\x0e\x0e\x47\x36",
                                          16)) +
                     field(2, std::string("\0\0\0\0\0\0\0\x09", 8)) +
                     field(4, std::string("\0\xf0\x67\xaa\x0b\xa9\x02\xb8", 8)) +
                     field(5, "GET /a") + std::string{char(6 << 3), char(2)} +
                     fixed64(7, 1700000000002000000) + fixed64(8, 1700000000040000000);
  std::string proto = field(1, field(2, field(2, span)));
  return {std::string(1, '\0') + proto, std::string(1, '\1') + otlp_json,
          std::string(1, '\2') + zipkin, std::string(1, '\1') + "{}", std::string(1, '\2') + "[]"};
}

std::vector<std::string> Dictionary() {
  return {"\"traceId\":",
          "\"spanId\":",
          "\"parentSpanId\":",
          "\"id\":",
          "\"parentId\":",
          "\"timestamp\":",
          "\"duration\":",
          "\"startTimeUnixNano\":",
          "\"endTimeUnixNano\":",
          "\"attributes\":[",
          "\"intValue\":",
          "\"tags\":{",
          "\"kind\":",
          "9223372036854775807",
          "-1",
          "1e308",
          "\"\\u0000\"",
          "null",
          "4bf92f3577b34da6a3ce929d0e0e4736",
          "00f067aa0ba902b7"};
}

}  // namespace meshlet::fuzz

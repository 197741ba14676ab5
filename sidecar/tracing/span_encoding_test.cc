#include "sidecar/tracing/span_encoding.h"

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "sidecar/tracing/span.h"

namespace meshlet::sidecar::tracing {
namespace {

TEST(SpanEncodingTest, OtlpJsonHasIdsLinksAndAttributes) {
  Span span;
  span.trace_id = TraceId{1, 2};
  span.span_id = 3;
  span.parent_span_id = 4;
  span.kind = SpanKind::kClient;
  span.name = "GET \"x\"";
  span.start_ns = 1000;
  span.end_ns = 5000;
  span.status_code = 503;
  span.retry_attempt = 2;
  span.cluster = "backend";
  span.error = true;
  span.trace_state = "congo=\"t61\"";
  span.parent_remote = true;
  std::string out;
  EncodeOtlpJson({&span}, "svc", &out);
  EXPECT_NE(out.find(R"("traceState":"congo=\"t61\"","flags":769,"kind":3)"), std::string::npos)
      << out;
  EXPECT_NE(out.find(R"("traceId":"00000000000000010000000000000002")"), std::string::npos);
  EXPECT_NE(out.find(R"("spanId":"0000000000000003")"), std::string::npos);
  EXPECT_NE(out.find(R"("parentSpanId":"0000000000000004")"), std::string::npos);
  EXPECT_NE(out.find(R"("kind":3)"), std::string::npos);
  EXPECT_NE(out.find(R"("name":"GET \"x\"")"), std::string::npos);
  EXPECT_NE(out.find(R"("startTimeUnixNano":"1000","endTimeUnixNano":"5000")"), std::string::npos);
  EXPECT_NE(out.find(R"({"key":"meshlet.retry_attempt","value":{"intValue":"2"}})"),
            std::string::npos);
  EXPECT_NE(out.find(R"({"key":"meshlet.cluster","value":{"stringValue":"backend"}})"),
            std::string::npos);
  EXPECT_NE(out.find(R"("status":{"code":2)"), std::string::npos);
  EXPECT_NE(out.find(R"("stringValue":"svc")"), std::string::npos);

  out.clear();
  EncodeZipkinJson({&span}, "svc", &out);
  EXPECT_NE(out.find(R"("id":"0000000000000003","parentId":"0000000000000004")"),
            std::string::npos);
  EXPECT_NE(out.find(R"("kind":"CLIENT","timestamp":1,"duration":4)"), std::string::npos);
  EXPECT_NE(out.find(R"("meshlet.retry_attempt":"2")"), std::string::npos);
  // Zipkin v2 has neither a tracestate nor trace flags.
  EXPECT_EQ(out.find("congo"), std::string::npos);

  out.clear();
  EncodeOtlpProto({&span}, "svc", &out);
  // ExportTraceServiceRequest.resource_spans (field 1, length-delimited) first.
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out[0], '\x0a');
  EXPECT_NE(out.find("meshlet.retry_attempt"), std::string::npos);
  // The trace id as 16 big-endian bytes.
  EXPECT_NE(out.find(std::string("\x0a\x10\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x02", 18)),
            std::string::npos);
}

// An outbound sidecar's span of a call (CLIENT, the request's own span, not an attempt's): named
// by its path, with the peer attributes service-graph tools pair CLIENT and SERVER spans by, and
// Zipkin's remoteEndpoint naming the service called; a SERVER span has no remoteEndpoint.
TEST(SpanEncodingTest, ClientSpanOfACallNamesItsPeer) {
  Span span;
  span.trace_id = TraceId{1, 2};
  span.span_id = 3;
  span.kind = SpanKind::kClient;
  span.method = "GET";
  span.path = "/products";
  span.cluster = "outbound|8080||products.default";
  span.peer_service = "products.default";
  span.server_host = "products";
  span.server_port = 8080;
  span.endpoint = "10.0.0.7:8080";
  span.upstream_locality = "failover";
  span.start_ns = 1000;
  span.end_ns = 5000;
  std::string out;
  EncodeOtlpJson({&span}, "client.default", &out);
  EXPECT_NE(out.find(R"({"key":"meshlet.upstream.locality","value":{"stringValue":"failover"}})"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find(R"("name":"GET /products")"), std::string::npos) << out;
  EXPECT_NE(out.find(R"("kind":3)"), std::string::npos);
  EXPECT_NE(out.find(R"({"key":"server.address","value":{"stringValue":"products"}})"),
            std::string::npos);
  EXPECT_NE(out.find(R"({"key":"server.port","value":{"intValue":"8080"}})"), std::string::npos);
  EXPECT_NE(out.find(R"({"key":"peer.service","value":{"stringValue":"products.default"}})"),
            std::string::npos);
  EXPECT_NE(
      out.find(R"({"key":"meshlet.upstream.address","value":{"stringValue":"10.0.0.7:8080"}})"),
      std::string::npos);

  out.clear();
  EncodeZipkinJson({&span}, "client.default", &out);
  EXPECT_NE(out.find(R"("name":"GET /products","kind":"CLIENT")"), std::string::npos) << out;
  EXPECT_NE(out.find(R"("localEndpoint":{"serviceName":"client.default"},)"
                     R"("remoteEndpoint":{"serviceName":"products.default"},"tags":{)"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find(R"("peer.service":"products.default")"), std::string::npos);

  span.kind = SpanKind::kServer;
  span.peer_service = {};
  out.clear();
  EncodeZipkinJson({&span}, "products.default", &out);
  EXPECT_NE(out.find(R"("kind":"SERVER")"), std::string::npos) << out;
  EXPECT_EQ(out.find("remoteEndpoint"), std::string::npos) << out;
}

// A protobuf wire-format reader, enough to take an OTLP export apart again.
struct ProtoField {
  uint32_t number = 0;
  uint64_t varint = 0;      // varint, fixed64 and fixed32 fields
  absl::string_view bytes;  // length-delimited fields
};
// Every field of `message`; fails the test (and returns what it read) on malformed input.
std::vector<ProtoField> ReadFields(absl::string_view message) {
  std::vector<ProtoField> fields;
  auto varint = [&](uint64_t* out) {
    *out = 0;
    for (int shift = 0; shift < 64 && !message.empty(); shift += 7) {
      const uint8_t byte = static_cast<uint8_t>(message[0]);
      message.remove_prefix(1);
      *out |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return true;
    }
    return false;
  };
  while (!message.empty()) {
    uint64_t tag = 0;
    ProtoField field;
    if (!varint(&tag)) break;
    field.number = static_cast<uint32_t>(tag >> 3);
    switch (tag & 7) {
      case 0:
        EXPECT_TRUE(varint(&field.varint));
        break;
      case 1:
        if (message.size() < 8) {
          ADD_FAILURE() << "short fixed64";
          return fields;
        }
        std::memcpy(&field.varint, message.data(), 8);
        message.remove_prefix(8);
        break;
      case 5:
        if (message.size() < 4) {
          ADD_FAILURE() << "short fixed32";
          return fields;
        }
        std::memcpy(&field.varint, message.data(), 4);  // little-endian, as the test host
        message.remove_prefix(4);
        break;
      case 2: {
        uint64_t length = 0;
        if (!varint(&length) || length > message.size()) {
          ADD_FAILURE() << "bad length " << length;
          return fields;
        }
        field.bytes = message.substr(0, length);
        message.remove_prefix(length);
        break;
      }
      default:
        ADD_FAILURE() << "wire type " << (tag & 7);
        return fields;
    }
    fields.push_back(field);
  }
  return fields;
}
std::vector<ProtoField> FieldsNumbered(absl::string_view message, uint32_t number) {
  std::vector<ProtoField> out;
  for (const ProtoField& f : ReadFields(message)) {
    if (f.number == number) out.push_back(f);
  }
  return out;
}

// The protobuf body is sized exactly and decodes to what went in: several spans, long values
// (lengths of two and three varint bytes), a batch past 16 KiB, an error status, a set name.
TEST(SpanEncodingTest, OtlpProtoDecodesBackToTheSpans) {
  std::vector<Span> spans(60);
  for (size_t i = 0; i < spans.size(); ++i) {
    Span& span = spans[i];
    span.trace_id = TraceId{0x0102030405060708ULL, 0x1112131415161718ULL + i};
    span.span_id = 0xa1a2a3a4a5a6a7a8ULL + i;
    span.parent_span_id = i % 2 == 0 ? 0 : 0x55;
    // Request spans of both kinds, and attempts' (CLIENT).
    span.kind = i % 2 == 0 ? SpanKind::kServer : SpanKind::kClient;
    if (i % 4 == 1) span.retry_attempt = 1;
    if (i % 4 == 3) {
      span.peer_service = "backend.default";
      span.server_host = std::string(i * 3, 'h');
      span.server_port = static_cast<uint16_t>(i * 1000);
    }
    span.start_ns = 1'700'000'000'000'000'000 + i;
    span.end_ns = span.start_ns + 1234;
    span.method = "GET";
    span.path = std::string(i * 5, 'p');  // up to 295 bytes
    span.cluster = "backend";
    span.status_code = 200 + static_cast<int>(i);
    span.bytes_out = uint64_t{1} << (i % 40);
    if (i == 7) {
      span.error = true;
      span.status_message = "upstream reset";
    }
    if (i == 9) span.name = "custom name";
    span.parent_remote = i % 4 == 1;
    if (i % 3 == 0) span.trace_state = absl::StrCat("congo=", std::string(i * 3, 't'));
  }
  // Spans whose length takes one byte and three (the encoder leaves room for two).
  Span bare;
  bare.trace_id = TraceId{1, 2};
  bare.span_id = 3;
  spans.push_back(bare);
  Span huge = spans[7];
  huge.status_message = std::string(20000, 'e');
  spans.push_back(huge);
  std::vector<const Span*> batch;
  for (const Span& span : spans) batch.push_back(&span);
  std::string out = "prefix";  // appended to what is there
  EncodeOtlpProto(batch, "svc", &out);
  ASSERT_EQ(out.substr(0, 6), "prefix");
  const absl::string_view body = absl::string_view(out).substr(6);
  ASSERT_GT(body.size(), 16384u);

  // Built span by span and framed in parts, as the exporter sends it: the same bytes; and a
  // frame of the first spans only is a valid message of those.
  // Built span by span and handed over in parts, as the exporter sends it: the same bytes; and
  // a batch of the first spans only is a valid message of those.
  SpanBatchEncoder encoder(ExportProtocol::kOtlpProto, "svc");
  for (const Span* span : batch) encoder.Add(*span);
  auto detach = [&](size_t count) {
    SpanBatchEncoder::Batch detached;
    encoder.Detach(count, &detached);
    EXPECT_EQ(detached.spans, count);
    const SpanBatchEncoder::Body framed = encoder.Frame(detached);
    return absl::StrCat(framed.prefix, framed.spans, framed.suffix);
  };
  std::string first_two, next_fifty_six, last_two;  // the last ones: 58, 59, bare, huge
  EncodeOtlpProto({batch[0], batch[1]}, "svc", &first_two);
  EncodeOtlpProto(absl::MakeConstSpan(batch).subspan(2, 56), "svc", &next_fifty_six);
  EncodeOtlpProto(absl::MakeConstSpan(batch).subspan(58), "svc", &last_two);
  EXPECT_EQ(detach(2), first_two);
  EXPECT_EQ(detach(56), next_fifty_six);
  EXPECT_EQ(encoder.size(), 4u);
  EXPECT_EQ(detach(4), last_two);  // all that is left: the buffers are swapped, not copied
  EXPECT_EQ(encoder.size(), 0u);
  SpanBatchEncoder whole(ExportProtocol::kOtlpProto, "svc");
  for (const Span* span : batch) whole.Add(*span);
  SpanBatchEncoder::Batch all;
  whole.Detach(whole.size(), &all);
  const SpanBatchEncoder::Body framed = whole.Frame(all);
  EXPECT_EQ(absl::StrCat(framed.prefix, framed.spans, framed.suffix), body);

  const std::vector<ProtoField> resource_spans = FieldsNumbered(body, 1);
  ASSERT_EQ(resource_spans.size(), 1u);
  EXPECT_EQ(ReadFields(body).size(), 1u);
  const std::vector<ProtoField> resource = FieldsNumbered(resource_spans[0].bytes, 1);
  ASSERT_EQ(resource.size(), 1u);
  const ProtoField service = FieldsNumbered(resource[0].bytes, 1).at(0);
  EXPECT_EQ(FieldsNumbered(service.bytes, 1).at(0).bytes, "service.name");
  EXPECT_EQ(FieldsNumbered(FieldsNumbered(service.bytes, 2).at(0).bytes, 1).at(0).bytes, "svc");
  const std::vector<ProtoField> scope_spans = FieldsNumbered(resource_spans[0].bytes, 2);
  ASSERT_EQ(scope_spans.size(), 1u);
  const ProtoField scope = FieldsNumbered(scope_spans[0].bytes, 1).at(0);
  EXPECT_EQ(FieldsNumbered(scope.bytes, 1).at(0).bytes, "meshlet");
  const std::vector<ProtoField> encoded = FieldsNumbered(scope_spans[0].bytes, 2);
  ASSERT_EQ(encoded.size(), spans.size());
  for (size_t i = 0; i < spans.size(); ++i) {
    SCOPED_TRACE(i);
    const Span& span = spans[i];
    const absl::string_view message = encoded[i].bytes;
    std::string trace_id(16, '\0'), span_id(8, '\0');
    for (int b = 0; b < 8; ++b) {
      trace_id[b] = static_cast<char>(span.trace_id.high >> (56 - 8 * b));
      trace_id[8 + b] = static_cast<char>(span.trace_id.low >> (56 - 8 * b));
      span_id[b] = static_cast<char>(span.span_id >> (56 - 8 * b));
    }
    EXPECT_EQ(FieldsNumbered(message, 1).at(0).bytes, trace_id);
    EXPECT_EQ(FieldsNumbered(message, 2).at(0).bytes, span_id);
    EXPECT_EQ(FieldsNumbered(message, 4).size(), span.parent_span_id != 0 ? 1u : 0u);
    const std::vector<ProtoField> trace_state = FieldsNumbered(message, 3);
    ASSERT_EQ(trace_state.size(), span.trace_state.empty() ? 0u : 1u);
    if (!span.trace_state.empty()) {
      EXPECT_EQ(trace_state[0].bytes, span.trace_state);
    }
    EXPECT_EQ(FieldsNumbered(message, 16).at(0).varint, span.parent_remote ? 0x301u : 0x101u);
    const std::string name =
        !span.name.empty()
            ? span.name
            : absl::StrCat(span.method, " ", span.IsAttempt() ? span.cluster : span.path);
    EXPECT_EQ(FieldsNumbered(message, 5).at(0).bytes, name);
    EXPECT_EQ(FieldsNumbered(message, 6).at(0).varint, span.kind == SpanKind::kServer ? 2u : 3u);
    EXPECT_EQ(FieldsNumbered(message, 7).at(0).varint, static_cast<uint64_t>(span.start_ns));
    EXPECT_EQ(FieldsNumbered(message, 8).at(0).varint, static_cast<uint64_t>(span.end_ns));
    std::vector<std::pair<std::string, std::string>> expected, decoded;
    ForEachAttribute(
        span,
        [&](absl::string_view key, absl::string_view value) {
          expected.emplace_back(key, absl::StrCat("s:", value));
        },
        [&](absl::string_view key, int64_t value) {
          expected.emplace_back(key, absl::StrCat("i:", value));
        });
    for (const ProtoField& attribute : FieldsNumbered(message, 9)) {
      const absl::string_view any = FieldsNumbered(attribute.bytes, 2).at(0).bytes;
      const std::vector<ProtoField> value = ReadFields(any);
      ASSERT_EQ(value.size(), 1u);
      decoded.emplace_back(FieldsNumbered(attribute.bytes, 1).at(0).bytes,
                           value[0].number == 1 ? absl::StrCat("s:", value[0].bytes)
                                                : absl::StrCat("i:", value[0].varint));
    }
    EXPECT_EQ(decoded, expected);
    const std::vector<ProtoField> status = FieldsNumbered(message, 15);
    ASSERT_EQ(status.size(), span.error ? 1u : 0u);
    if (span.error) {
      EXPECT_EQ(FieldsNumbered(status[0].bytes, 2).at(0).bytes, span.status_message);
      EXPECT_EQ(FieldsNumbered(status[0].bytes, 3).at(0).varint, 2u);
    }
  }
}

// The JSON forms framed from part of the batch: the list's commas stay right.
TEST(SpanEncodingTest, JsonFramesOfPartOfTheBatchAreWholeDocuments) {
  for (ExportProtocol protocol : {ExportProtocol::kOtlpJson, ExportProtocol::kZipkin}) {
    SpanBatchEncoder encoder(protocol, "svc");
    std::vector<Span> spans(3);
    for (size_t i = 0; i < spans.size(); ++i) {
      spans[i].span_id = i + 1;
      spans[i].method = "GET";
      spans[i].path = "/a";
      encoder.Add(spans[i]);
    }
    auto detach = [&](size_t count) {
      SpanBatchEncoder::Batch batch;
      encoder.Detach(count, &batch);
      const SpanBatchEncoder::Body body = encoder.Frame(batch);
      return absl::StrCat(body.prefix, body.spans, body.suffix);
    };
    std::string expected;
    EncodeSpans(protocol, {&spans[0], &spans[1]}, "svc", &expected);
    EXPECT_EQ(detach(2), expected);
    expected.clear();
    EncodeSpans(protocol, {}, "svc", &expected);
    EXPECT_EQ(detach(0), expected);
    expected.clear();
    EncodeSpans(protocol, {&spans[2]}, "svc", &expected);
    EXPECT_EQ(detach(1), expected);
    EXPECT_EQ(expected.back(), protocol == ExportProtocol::kZipkin ? ']' : '}');
    EXPECT_EQ(expected.find(",]"), std::string::npos);
  }
}

// A span reset for reuse encodes exactly as a new one: nothing of its last request leaks.
TEST(SpanTest, ResetSpanIsANewSpan) {
  Span used;
  used.trace_id = TraceId{1, 2};
  used.span_id = 3;
  used.parent_span_id = 4;
  used.kind = SpanKind::kClient;
  used.name = "n";
  used.start_ns = 1'000'000'000;
  used.end_ns = 2'000'000'000;
  used.error = true;
  used.status_message = "m";
  used.method = "GET";
  used.path = "/p";
  used.status_code = 503;
  used.protocol = "HTTP/1.1";
  used.peer_identity = "spiffe://td/ns/a/sa/b";
  used.direction = "inbound";
  used.shed_reason = "memory";
  used.shed_limit = 512;
  used.shed_worker_limit = 256;
  used.discovery = "found";
  used.discovery_wait_us = 900;
  used.route = "r";
  used.cluster = "c";
  used.endpoint = "10.0.0.1:80";
  used.server_host = "backend";
  used.server_port = 8080;
  used.peer_service = "backend.default";
  used.response_flags = "UF";
  used.bytes_in = 5;
  used.bytes_out = 6;
  used.upstream_ready_us = 7;
  used.retry_attempt = 2;
  used.request_id = "id";
  used.Reset();
  const Span fresh;
  std::string reset_body, fresh_body;
  EncodeOtlpJson({&used}, "svc", &reset_body);
  EncodeOtlpJson({&fresh}, "svc", &fresh_body);
  EXPECT_EQ(reset_body, fresh_body);
  EXPECT_EQ(used.kind, fresh.kind);
  EXPECT_EQ(used.upstream_ready_us, fresh.upstream_ready_us);
}

}  // namespace
}  // namespace meshlet::sidecar::tracing

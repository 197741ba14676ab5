// What the sidecar's span encoder writes, read as OTLP: by protobuf itself (the collector's copy of
// opentelemetry-proto's trace messages, with the specification's field numbers) and by the
// control plane's receivers, for both OTLP encodings. The tracestate and flags of a span context
// are among what must arrive.

#include <string>
#include <vector>

#include "control-plane/telemetry/otlp_trace.pb.h"
#include "control-plane/telemetry/receivers.h"
#include "gtest/gtest.h"
#include "sidecar/tracing/span.h"
#include "sidecar/tracing/span_encoding.h"

namespace meshlet {
namespace {

namespace otlp = ::meshlet::telemetry::otlp;
using sidecar::tracing::Span;
using sidecar::tracing::SpanKind;
using sidecar::tracing::TraceId;

// A server span continuing a caller's sampled trace (traceparent and tracestate), and its client
// span: what one sampled request through a sidecar exports.
std::vector<Span> RequestSpans() {
  std::vector<Span> spans(2);
  Span& server = spans[0];
  server.trace_id = TraceId{0x4bf92f3577b34da6ULL, 0xa3ce929d0e0e4736ULL};
  server.span_id = 0x1111;
  server.parent_span_id = 0x00f067aa0ba902b7ULL;
  server.parent_remote = true;
  server.trace_state = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
  server.kind = SpanKind::kServer;
  server.method = "GET";
  server.path = "/items";
  server.start_ns = 1'700'000'000'000'000'000;
  server.end_ns = server.start_ns + 5'000'000;
  Span& client = spans[1];
  client = server;
  client.span_id = 0x2222;
  client.parent_span_id = server.span_id;
  client.parent_remote = false;
  client.kind = SpanKind::kClient;
  client.cluster = "backend";
  client.start_ns += 1000;
  client.end_ns -= 1000;
  return spans;
}

std::vector<const Span*> Batch(const std::vector<Span>& spans) {
  std::vector<const Span*> batch;
  for (const Span& span : spans) batch.push_back(&span);
  return batch;
}

TEST(SpanExportContractTest, ProtobufDecodesTheTracestateAndFlags) {
  const std::vector<Span> spans = RequestSpans();
  std::string body;
  sidecar::tracing::EncodeOtlpProto(Batch(spans), "frontend", &body);
  otlp::ExportTraceServiceRequest request;
  ASSERT_TRUE(request.ParseFromString(body));
  ASSERT_EQ(request.resource_spans_size(), 1);
  ASSERT_EQ(request.resource_spans(0).scope_spans_size(), 1);
  const auto& decoded = request.resource_spans(0).scope_spans(0).spans();
  ASSERT_EQ(decoded.size(), 2);
  const otlp::Span& server = decoded[0];
  EXPECT_EQ(server.trace_state(), "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
  // W3C flags 01 (sampled) | SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE | SPAN_FLAGS_CONTEXT_IS_REMOTE.
  EXPECT_EQ(server.flags(), 0x301u);
  EXPECT_EQ(server.kind(), 2);
  EXPECT_EQ(server.name(), "GET /items");
  EXPECT_EQ(server.parent_span_id(), std::string("\x00\xf0\x67\xaa\x0b\xa9\x02\xb7", 8));
  EXPECT_EQ(server.end_time_unix_nano() - server.start_time_unix_nano(), 5'000'000u);
  const otlp::Span& client = decoded[1];
  EXPECT_EQ(client.trace_state(), server.trace_state());
  EXPECT_EQ(client.flags(), 0x101u);  // its parent, the server span, is local
  EXPECT_EQ(client.kind(), 3);
  // Nothing the collector's messages do not know: every byte was a known field.
  EXPECT_TRUE(server.GetReflection()->GetUnknownFields(server).empty());
  EXPECT_TRUE(client.GetReflection()->GetUnknownFields(client).empty());
}

TEST(SpanExportContractTest, TheCollectorStoresTheTracestateAndFlags) {
  std::vector<Span> spans = RequestSpans();
  spans[1].trace_state.clear();  // a span without one
  for (sidecar::tracing::ExportProtocol protocol : {sidecar::tracing::ExportProtocol::kOtlpProto,
                                                    sidecar::tracing::ExportProtocol::kOtlpJson}) {
    SCOPED_TRACE(static_cast<int>(protocol));
    std::string body;
    sidecar::tracing::EncodeSpans(protocol, Batch(spans), "frontend", &body);
    const absl::StatusOr<std::vector<controlplane::telemetry::SpanRecord>> records =
        protocol == sidecar::tracing::ExportProtocol::kOtlpProto
            ? controlplane::telemetry::ParseOtlpProtobuf(body)
            : controlplane::telemetry::ParseOtlpJson(body);
    ASSERT_TRUE(records.ok()) << records.status() << "\n" << body;
    ASSERT_EQ(records->size(), 2u);
    EXPECT_EQ((*records)[0].trace_state, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
    EXPECT_EQ((*records)[0].flags, 0x301u);
    EXPECT_EQ((*records)[0].parent_span_id, "00f067aa0ba902b7");
    EXPECT_EQ((*records)[1].trace_state, "");
    EXPECT_EQ((*records)[1].flags, 0x101u);
    EXPECT_EQ((*records)[1].service, "frontend");
  }
}

// An OTLP/gRPC export names the sidecar's node in its resource's service.instance.id, where the
// discovery port looks for the registration to record the spans under; so do the OTLP/HTTP
// encodings when the node is known.
TEST(SpanExportContractTest, AnExportNamesTheNodeInItsResource) {
  const std::vector<Span> spans = RequestSpans();
  std::string body;
  sidecar::tracing::EncodeSpans(sidecar::tracing::ExportProtocol::kOtlpGrpc, Batch(spans),
                                "frontend.shop", &body, "frontend-0.shop");
  const absl::StatusOr<std::vector<controlplane::telemetry::OtlpResourceSpans>> resources =
      controlplane::telemetry::ParseOtlpProtobufResources(body);
  ASSERT_TRUE(resources.ok()) << resources.status();
  ASSERT_EQ(resources->size(), 1u);
  EXPECT_EQ((*resources)[0].service_instance_id, "frontend-0.shop");
  ASSERT_EQ((*resources)[0].spans.size(), 2u);
  EXPECT_EQ((*resources)[0].spans[0].service, "frontend.shop");
  EXPECT_EQ((*resources)[0].spans[0].flags, 0x301u);
  // The same message as OTLP/HTTP protobuf.
  std::string http_body;
  sidecar::tracing::EncodeSpans(sidecar::tracing::ExportProtocol::kOtlpProto, Batch(spans),
                                "frontend.shop", &http_body, "frontend-0.shop");
  EXPECT_EQ(body, http_body);
  otlp::ExportTraceServiceRequest request;
  ASSERT_TRUE(request.ParseFromString(body));
  EXPECT_TRUE(request.resource_spans(0)
                  .resource()
                  .GetReflection()
                  ->GetUnknownFields(request.resource_spans(0).resource())
                  .empty());
  std::string json;
  sidecar::tracing::EncodeSpans(sidecar::tracing::ExportProtocol::kOtlpJson, Batch(spans),
                                "frontend.shop", &json, "frontend-0.shop");
  ASSERT_TRUE(controlplane::telemetry::ParseOtlpJson(json).ok()) << json;
  EXPECT_NE(json.find(R"({"key":"service.instance.id","value":{"stringValue":"frontend-0.shop"}})"),
            std::string::npos)
      << json;
}

// Text a span carries from outside (an upstream's failure message) may hold control characters
// and bytes that are not UTF-8; the JSON encodings stay valid JSON, which the collector reads.
TEST(SpanExportContractTest, JsonEncodingsCarryTextThatIsNotUtf8) {
  std::vector<Span> spans = RequestSpans();
  spans[0].error = true;
  spans[0].status_message = "upstream said \"caf\xe9\"\n\x01";
  std::string body;
  sidecar::tracing::EncodeSpans(sidecar::tracing::ExportProtocol::kOtlpJson, Batch(spans),
                                "frontend", &body);
  const absl::StatusOr<std::vector<controlplane::telemetry::SpanRecord>> records =
      controlplane::telemetry::ParseOtlpJson(body);
  ASSERT_TRUE(records.ok()) << records.status() << "\n" << body;
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[0].status_message, "upstream said \"caf\xef\xbf\xbd\"\n\x01");
}

}  // namespace
}  // namespace meshlet

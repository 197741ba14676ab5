// The bootstrap's tracing section: defaults, values and every error named by its field.
#include <string>

#include "gtest/gtest.h"
#include "sidecar/config/bootstrap.h"
#include "sidecar/config/translate.h"

namespace meshlet::sidecar::config {
namespace {

using namespace std::chrono_literals;

TEST(BootstrapTest, TracingDefaultsAndValues) {
  auto off = ParseBootstrap("node: {id: n}\n", "b.yaml", "");
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_FALSE(off->tracing.enabled);

  auto minimal = ParseBootstrap(
      "node: {id: web-0}\ntracing: {collector_address: \"collector:4318\"}\n", "b.yaml", "");
  ASSERT_TRUE(minimal.ok()) << minimal.status();
  EXPECT_TRUE(minimal->tracing.enabled);
  EXPECT_EQ(minimal->tracing.sampling_percent, 1.0);
  EXPECT_EQ(minimal->tracing.protocol, tracing::ExportProtocol::kOtlpJson);
  EXPECT_EQ(minimal->tracing.EffectiveCollectorPath(), "/v1/traces");
  // Derived from the node by CompleteBootstrap, after the flags (bootstrap_test.cc).
  EXPECT_EQ(minimal->tracing.service_name, "");
  EXPECT_EQ(minimal->tracing.force_sample_header, "x-meshlet-force-trace");
  EXPECT_EQ(minimal->tracing.error_spans_per_second, 10u);
  auto named = ParseBootstrap(
      "node: {id: web-0, service: web}\ntracing: {collector_address: \"c:4318\"}\n", "b.yaml", "");
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_FALSE(named->tracing.span_per_attempt);  // attempt_spans: RETRIED

  auto full = ParseBootstrap(
      "tracing:\n"
      "  sampling_percent: 0\n"
      "  collector_address: \"zipkin:9411\"\n"
      "  protocol: ZIPKIN\n"
      "  batch_size: 10\n"
      "  flush_interval: 0.2s\n"
      "  queue_limit: 100\n"
      "  export_timeout: 1s\n"
      "  service_name: web\n"
      "  force_sample_header: X-Debug-Trace\n"
      "  attempt_spans: EVERY_ATTEMPT\n"
      "  error_spans_per_second: 0\n",
      "b.yaml", "");
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->tracing.error_spans_per_second, 0u);  // none
  EXPECT_EQ(full->tracing.sampling_percent, 0.0);
  EXPECT_EQ(full->tracing.protocol, tracing::ExportProtocol::kZipkin);
  EXPECT_EQ(full->tracing.EffectiveCollectorPath(), "/api/v2/spans");
  EXPECT_EQ(full->tracing.batch_size, 10u);
  EXPECT_EQ(full->tracing.queue_limit, 100u);
  EXPECT_EQ(full->tracing.flush_interval, std::chrono::milliseconds(200));
  EXPECT_EQ(full->tracing.export_timeout, std::chrono::seconds(1));
  EXPECT_EQ(full->tracing.service_name, "web");
  EXPECT_EQ(full->tracing.force_sample_header, "x-debug-trace");
  EXPECT_TRUE(full->tracing.span_per_attempt);
}

TEST(BootstrapTest, TracingErrorsNameTheFields) {
  auto bad = ParseBootstrap(
      "tracing:\n"
      "  sampling_percent: 150\n"
      "  collector_address: collector\n"
      "  collector_path: v1/traces\n"
      "  batch_size: 0\n"
      "  flush_interval: 0s\n"
      "  force_sample_header: \"x y\"\n"
      "  error_spans_per_second: 100001\n",
      "b.yaml", "");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "b.yaml: tracing.sampling_percent: must be within 0..100; "
            "tracing.collector_address: \"collector\" is not host:port; "
            "tracing.collector_path: must start with /; "
            "tracing.batch_size: must be within 1..65536; "
            "tracing.error_spans_per_second: must be within 0..100000; "
            "tracing.flush_interval: must be greater than 0 and at most 1h; "
            "tracing.force_sample_header: must be a header name");
  auto no_collector = ParseBootstrap("tracing: {sampling_percent: 5}\n", "b.yaml", "");
  ASSERT_FALSE(no_collector.ok());
  EXPECT_EQ(no_collector.status().message(),
            "b.yaml: tracing.collector_address: required (host:port)");
  auto unbracketed =
      ParseBootstrap("tracing: {collector_address: \"fd00::5:4318\"}\n", "b.yaml", "");
  ASSERT_FALSE(unbracketed.ok());
  EXPECT_EQ(unbracketed.status().message(),
            "b.yaml: tracing.collector_address: \"fd00::5:4318\": an IPv6 address goes in "
            "brackets, [addr]:port");
  EXPECT_TRUE(
      ParseBootstrap("tracing: {collector_address: \"[fd00::5]:4318\"}\n", "b.yaml", "").ok());
}

// OTLP_GRPC goes to the control plane: no collector needed (the xDS server's by default), or
// several replicas; no path.
TEST(BootstrapTest, OtlpGrpcTracing) {
  auto grpc = ParseBootstrap("tracing: {protocol: OTLP_GRPC}\n", "b.yaml", "");
  ASSERT_TRUE(grpc.ok()) << grpc.status();
  EXPECT_EQ(grpc->tracing.protocol, tracing::ExportProtocol::kOtlpGrpc);
  EXPECT_EQ(grpc->tracing.collector_address, "");
  auto replicas = ParseBootstrap(
      "tracing: {protocol: OTLP_GRPC, collector_address: \"cp-0:15012,cp-1:15012\"}\n", "b.yaml",
      "");
  ASSERT_TRUE(replicas.ok()) << replicas.status();
  auto bad = ParseBootstrap(
      "tracing: {protocol: OTLP_GRPC, collector_address: \"cp-0:15012,cp-1\", collector_path: "
      "/v1/traces}\n",
      "b.yaml", "");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "b.yaml: tracing.collector_address: \"cp-1\" is not host:port; "
            "tracing.collector_path: not used with protocol OTLP_GRPC");
}
}  // namespace
}  // namespace meshlet::sidecar::config

#include "sidecar/config/translate.h"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/net/address.h"
#include "sidecar/config/translate_internal.h"

namespace meshlet::sidecar::config {

using translate_internal::ToDuration;

absl::StatusOr<tracing::TracingConfig> TranslateTracing(const xds::Bootstrap::Tracing& tracing) {
  tracing::TracingConfig out;
  out.enabled = true;
  std::vector<std::string> errors;
  if (tracing.has_sampling_percent()) {
    const double percent = tracing.sampling_percent().value();
    if (!(percent >= 0 && percent <= 100)) {
      errors.push_back("tracing.sampling_percent: must be within 0..100");
    } else {
      out.sampling_percent = percent;
    }
  }
  const bool grpc = tracing.protocol() == xds::Bootstrap::Tracing::OTLP_GRPC;
  out.collector_address = tracing.collector_address();
  // OTLP/gRPC goes to the control plane: its replicas, the xDS server's by default.
  const std::vector<std::string> collectors =
      grpc ? absl::StrSplit(out.collector_address, ',', absl::SkipEmpty())
           : std::vector<std::string>{out.collector_address};
  if (out.collector_address.empty()) {
    if (!grpc) errors.push_back("tracing.collector_address: required (host:port)");
  } else {
    for (const std::string& collector : collectors) {
      if (absl::StatusOr<net::HostPort> split = net::SplitHostPort(collector); !split.ok()) {
        errors.push_back(absl::StrCat("tracing.collector_address: ", split.status().message()));
      } else if (split->unbracketed_ipv6()) {
        errors.push_back(absl::StrCat("tracing.collector_address: \"", collector,
                                      "\": an IPv6 address goes in brackets, [addr]:port"));
      }
    }
  }
  out.collector_path = tracing.collector_path();
  if (!out.collector_path.empty() && out.collector_path.front() != '/') {
    errors.push_back("tracing.collector_path: must start with /");
  }
  if (grpc && !out.collector_path.empty()) {
    errors.push_back("tracing.collector_path: not used with protocol OTLP_GRPC");
  }
  switch (tracing.protocol()) {
    case xds::Bootstrap::Tracing::OTLP_JSON:
      out.protocol = tracing::ExportProtocol::kOtlpJson;
      break;
    case xds::Bootstrap::Tracing::OTLP_PROTO:
      out.protocol = tracing::ExportProtocol::kOtlpProto;
      break;
    case xds::Bootstrap::Tracing::ZIPKIN:
      out.protocol = tracing::ExportProtocol::kZipkin;
      break;
    case xds::Bootstrap::Tracing::OTLP_GRPC:
      out.protocol = tracing::ExportProtocol::kOtlpGrpc;
      break;
    default:
      errors.push_back("tracing.protocol: must be OTLP_JSON, OTLP_PROTO, ZIPKIN or OTLP_GRPC");
  }
  auto read_count = [&](bool has, uint32_t value, absl::string_view path, uint32_t max,
                        uint32_t* field) {
    if (!has) return;
    if (value == 0 || value > max) {
      errors.push_back(absl::StrCat("tracing.", path, ": must be within 1..", max));
      return;
    }
    *field = value;
  };
  read_count(tracing.has_batch_size(), tracing.batch_size().value(), "batch_size", 65536,
             &out.batch_size);
  read_count(tracing.has_queue_limit(), tracing.queue_limit().value(), "queue_limit", 1 << 18,
             &out.queue_limit);
  if (tracing.has_error_spans_per_second()) {
    constexpr uint32_t kMaxErrorSpans = 100000;
    if (tracing.error_spans_per_second().value() > kMaxErrorSpans) {
      errors.push_back(
          absl::StrCat("tracing.error_spans_per_second: must be within 0..", kMaxErrorSpans));
    } else {
      out.error_spans_per_second = tracing.error_spans_per_second().value();
    }
  }
  auto read_duration = [&](bool has, const google::protobuf::Duration& value,
                           absl::string_view path, Duration* field) {
    if (!has) return;
    std::optional<Duration> d = ToDuration(value);
    if (!d.has_value() || *d <= Duration::zero() || *d > std::chrono::hours(1)) {
      errors.push_back(absl::StrCat("tracing.", path, ": must be greater than 0 and at most 1h"));
      return;
    }
    *field = *d;
  };
  read_duration(tracing.has_flush_interval(), tracing.flush_interval(), "flush_interval",
                &out.flush_interval);
  read_duration(tracing.has_export_timeout(), tracing.export_timeout(), "export_timeout",
                &out.export_timeout);
  out.service_name = tracing.service_name();
  if (!tracing.force_sample_header().empty()) {
    const std::string& header = tracing.force_sample_header();
    const bool token = std::all_of(header.begin(), header.end(), [](char c) {
      return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
    });
    if (!token) {
      errors.push_back("tracing.force_sample_header: must be a header name");
    } else {
      out.force_sample_header = absl::AsciiStrToLower(header);
    }
  }
  switch (tracing.attempt_spans()) {
    case xds::Bootstrap::Tracing::RETRIED:
      out.span_per_attempt = false;
      break;
    case xds::Bootstrap::Tracing::EVERY_ATTEMPT:
      out.span_per_attempt = true;
      break;
    default:
      errors.push_back("tracing.attempt_spans: must be RETRIED or EVERY_ATTEMPT");
  }
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "; "));
  return out;
}

}  // namespace meshlet::sidecar::config

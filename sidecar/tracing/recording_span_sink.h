#pragma once

// Tests and benchmarks: SpanSinks without the network.

#include <cstddef>
#include <deque>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

#include "sidecar/tracing/span_encoding.h"
#include "sidecar/tracing/span_sink.h"

namespace meshlet::sidecar::tracing {

// Keeps a copy of every span it takes, up to `capacity` of them, with its own copy of the text
// the span's views point to (that belongs to the request, which may be gone when a test looks).
class RecordingSpanSink final : public SpanSink {
 public:
  explicit RecordingSpanSink(size_t capacity = 1024) : capacity_(capacity) {}

  bool Take(const Span& span) override {
    if (spans.size() >= capacity_) return false;
    Span& copy = spans.emplace_back(span);
    copy.peer_identity = Keep(span.peer_identity);
    copy.direction = Keep(span.direction);
    copy.route = Keep(span.route);
    copy.cluster = Keep(span.cluster);
    copy.error_reason = Keep(span.error_reason);
    copy.policy_route = Keep(span.policy_route);
    copy.gateway_listener = Keep(span.gateway_listener);
    copy.subset = Keep(span.subset);
    copy.policy_traffic = Keep(span.policy_traffic);
    copy.authz = Keep(span.authz);
    copy.policy_authz = Keep(span.policy_authz);
    copy.timeout_origin = Keep(span.timeout_origin);
    copy.policy_timeout = Keep(span.policy_timeout);
    copy.policy_per_try = Keep(span.policy_per_try);
    copy.policy_destination = Keep(span.policy_destination);
    copy.policy_rate_limit = Keep(span.policy_rate_limit);
    copy.shed_reason = Keep(span.shed_reason);
    return true;
  }

  std::vector<Span> spans;

 private:
  absl::string_view Keep(absl::string_view text) { return text_.emplace_back(text); }

  size_t capacity_;
  std::deque<std::string> text_;  // never moves what it holds
};

// What a worker's exporter does with a span, without sending: encodes it into the batch.
class EncodingSpanSink final : public SpanSink {
 public:
  bool Take(const Span& span) override {
    encoder.Add(span);
    return true;
  }
  // As the exporter does when it sends them: the spans leave for a batch.
  void Detach() { encoder.Detach(encoder.size(), &batch); }

  SpanBatchEncoder encoder{ExportProtocol::kOtlpProto, "svc"};
  SpanBatchEncoder::Batch batch;
};

}  // namespace meshlet::sidecar::tracing

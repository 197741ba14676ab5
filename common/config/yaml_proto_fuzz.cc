// Fuzz target for the YAML/JSON configuration loader (yaml_proto.h): multi-document streams split
// by SplitYamlDocuments, each parsed into the sidecar's Bootstrap or a control-plane
// TrafficPolicy (byte 0 picks which first; both are tried), and duration text.
//
// Invariants: a document that parses writes back with ProtoToYaml to YAML that parses again into
// an equal message; every kept document's first line lies within the stream; parsed durations are
// not negative.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/config/yaml_proto.h"
#include "common/fuzz/fuzz_target.h"
#include "google/protobuf/util/message_differencer.h"
#include "xds/policy.pb.h"
#include "xds/resources.pb.h"

namespace meshlet::config {
namespace {

[[noreturn]] void Die(const char* what, const std::string& detail) {
  std::fprintf(stderr, "yaml_proto_fuzz invariant broken: %s\n%s\n", what, detail.c_str());
  std::abort();
}

void CheckRoundTrip(absl::string_view yaml, google::protobuf::Message& message) {
  message.Clear();
  if (!YamlToProto(yaml, message, {.ignore_unknown_fields = true}).ok()) return;
  const std::string written = ProtoToYaml(message);
  std::unique_ptr<google::protobuf::Message> again(message.New());
  absl::Status s = YamlToProto(written, *again);
  if (!s.ok()) Die("ProtoToYaml output does not parse", written + "\n" + s.ToString());
  if (!google::protobuf::util::MessageDifferencer::Equals(message, *again)) {
    Die("ProtoToYaml output parses into a different message", written);
  }
}

void FuzzOne(const uint8_t* data, size_t size) {
  if (size < 1) return;
  absl::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] & 1) {
    absl::StatusOr<absl::Duration> d = ParseDurationText(text);
    if (d.ok() && *d < absl::ZeroDuration()) Die("negative duration", std::string(text));
  }
  absl::StatusOr<std::vector<YamlDocument>> docs = SplitYamlDocuments(text);
  if (!docs.ok()) return;
  int lines = 1;
  for (char c : text) lines += c == '\n';
  xds::Bootstrap bootstrap;
  policy::TrafficPolicy policy;
  for (const YamlDocument& doc : *docs) {
    if (doc.first_line < 1 || doc.first_line > lines) Die("document outside the stream", doc.yaml);
    if (data[0] & 2) {
      CheckRoundTrip(doc.yaml, policy);
      CheckRoundTrip(doc.yaml, bootstrap);
    } else {
      CheckRoundTrip(doc.yaml, bootstrap);
      CheckRoundTrip(doc.yaml, policy);
    }
  }
}

}  // namespace
}  // namespace meshlet::config

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  meshlet::config::FuzzOne(data, size);
  return 0;
}

namespace meshlet::fuzz {

std::vector<std::string> SeedCorpus() {
  return {
      std::string(1, '\0') + R"(
node:
  id: frontend-1
  labels: {app: frontend, version: v1}
static_resources:
  listeners:
  - name: outbound
    address: 127.0.0.1:15001
    protocol: PROTOCOL_HTTP
    routeConfigName: local
    detect_timeout: 250ms
  clusters:
  - name: backend
    lb_policy: round_robin
    connect_timeout: 1.5s
    circuit_breakers:
      max_connections: 10
)",
      std::string(1, '\2') + R"(# policies
kind: TrafficPolicy
metadata: {name: reviews}
spec:
  target: reviews
  timeouts: {connect: 2s}
  retries: {attempts: 3, retryOn: [connect-failure, refused-stream], budget_percent: 12.5}
  rate_limit: {}
---
{"kind": "TrafficPolicy", "metadata": {"name": "x"}}
---
# only a comment
)",
      std::string(1, '\1') + "1h30m",
      std::string(1, '\1') + "1.5s",
      std::string(1, '\0') + "{a: [1, {b: c}], 'q': \"\\u00e9\"}\n",
      std::string(1, '\0') + "&a x: *a\n<<: {y: 1}\n",
  };
}

std::vector<std::string> Dictionary() {
  return {"---\n",
          ": ",
          "- ",
          "{",
          "}",
          "[",
          "]",
          "&a ",
          "*a",
          "<<: ",
          "!!str ",
          "|\n",
          ">\n",
          "\"",
          "'",
          "#",
          "ms",
          "s",
          "m",
          "h",
          "-1s",
          "1e400",
          "null",
          "~",
          "true",
          "kind: ",
          "static_resources:\n",
          "listeners:\n",
          "clusters:\n",
          "spec:\n"};
}

}  // namespace meshlet::fuzz

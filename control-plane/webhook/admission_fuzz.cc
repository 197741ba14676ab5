// Fuzz target for the injection webhook's Review (admission.h) on arbitrary request bodies: what
// anyone who reaches port 15017 may send.
//
// Invariants: Review never throws or crashes; every answer is an AdmissionReview v1 JSON object
// whose response has "allowed"; an answer with a patch is allowed and its patch decodes from
// base64 into a JSON array (that yaml-cpp reads, unless it has a key too long for YAML).

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "common/fuzz/fuzz_target.h"
#include "control-plane/inject/node.h"
#include "control-plane/webhook/admission.h"

namespace meshlet::controlplane::webhook {
namespace {

[[noreturn]] void Die(const char* what, const std::string& detail) {
  std::fprintf(stderr, "admission_fuzz invariant broken: %s\n%s\n", what, detail.c_str());
  std::abort();
}

// Whether JSON text has an object key longer than the 1024 characters YAML allows an implicit
// key: valid JSON that yaml-cpp refuses. Scans string tokens; a key is one followed by ':'.
bool HasKeyTooLongForYaml(const std::string& json) {
  for (size_t i = 0; i < json.size(); ++i) {
    if (json[i] != '"') continue;
    const size_t start = i;
    for (++i; i < json.size() && json[i] != '"'; ++i) {
      if (json[i] == '\\') ++i;
    }
    size_t next = i + 1;
    while (next < json.size() && (json[next] == ' ' || json[next] == '\n')) ++next;
    if (next < json.size() && json[next] == ':' && i + 1 - start > 1024) return true;
  }
  return false;
}

}  // namespace
}  // namespace meshlet::controlplane::webhook

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace meshlet::controlplane::webhook;  // NOLINT
  using meshlet::controlplane::inject::Field;
  using meshlet::controlplane::inject::Text;
  static const ReviewOptions* const options = [] {
    auto* o = new ReviewOptions();
    o->inject.proxy_image = "meshlet-proxy:0.1.0";
    o->inject.version = "0.1.0";
    return o;
  }();
  const std::string body(reinterpret_cast<const char*>(data), size);
  const ReviewResult result = Review(body, *options);
  YAML::Node answer;
  try {
    answer = YAML::Load(result.body);
  } catch (const YAML::Exception& e) {
    Die("the answer is not JSON", result.body);
  }
  const YAML::Node response = Field(answer, "response");
  if (Text(Field(answer, "kind")) != "AdmissionReview" || !Field(response, "allowed")) {
    Die("the answer is not an AdmissionReview response", result.body);
  }
  const YAML::Node patch = Field(response, "patch");
  if (patch) {
    if (Text(Field(response, "allowed")) != "true") Die("a refusal with a patch", result.body);
    std::string decoded;
    if (!absl::Base64Unescape(Text(patch), &decoded)) Die("the patch is not base64", result.body);
    try {
      if (!YAML::Load(decoded).IsSequence()) Die("the patch is not an array", decoded);
    } catch (const YAML::Exception& e) {
      // Valid JSON that yaml-cpp cannot read back: a key (from the request) too long for YAML.
      if (!HasKeyTooLongForYaml(decoded)) Die("the patch is not JSON", decoded);
    }
  }
  return 0;
}

namespace meshlet::fuzz {

std::vector<std::string> SeedCorpus() {
  const std::string head =
      R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u",)"
      R"("operation":"CREATE","namespace":"shop","object":)";
  return {
      head +
          R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"app":"a"}},)"
          R"("spec":{"containers":[{"name":"a","image":"a","ports":[{"containerPort":80}]}]}}}})",
      head + R"({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{)"
             R"("template":{"metadata":{"labels":{"app":"d"}},"spec":{"containers":[)"
             R"({"name":"d","image":"d"}]}}}}}})",
      head + R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","annotations":{)"
             R"("sidecar.meshlet.io/mode":"classic"}},"spec":{"containers":[{"name":"a",)"
             R"("image":"a"}]}},"dryRun":true}})",
      R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u",)"
      R"("operation":"UPDATE","namespace":"kube-system","object":{}}})",
  };
}

std::vector<std::string> Dictionary() {
  return {"\"apiVersion\":",
          "\"kind\":",
          "\"request\":",
          "\"uid\":",
          "\"object\":",
          "\"operation\":\"CREATE\"",
          "\"namespace\":",
          "\"metadata\":",
          "\"spec\":",
          "\"containers\":",
          "\"initContainers\":",
          "\"template\":",
          "\"annotations\":",
          "\"sidecar.meshlet.io/inject\":\"false\"",
          "admission.k8s.io/v1",
          "AdmissionReview",
          "{",
          "}",
          "[",
          "]",
          "null",
          "true"};
}

}  // namespace meshlet::fuzz

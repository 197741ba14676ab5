// Fuzz target for sidecar injection (inject.h) on arbitrary YAML or JSON documents: what a
// manifest file or an admission request may hold. Byte 0 picks the default sidecar mode.
//
// Invariants: Inject never fails but with InvalidArgument (a yaml-cpp exception inside would be
// Internal); an injected document written as YAML (ToYaml) or JSON (ToJson) reads back as the
// same tree and injects again unchanged (as JSON: unless a key is too long for a YAML reader).

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/fuzz/fuzz_target.h"
#include "control-plane/inject/inject.h"
#include "control-plane/inject/node.h"

namespace meshlet::controlplane::inject {
namespace {

[[noreturn]] void Die(const char* what, const std::string& detail) {
  std::fprintf(stderr, "inject_fuzz invariant broken: %s\n%s\n", what, detail.c_str());
  std::abort();
}

// Where `a` and `b` first differ, for the report.
std::string FirstDifference(const YAML::Node& a, const YAML::Node& b, const std::string& path) {
  if (a.Type() != b.Type() || (a.IsScalar() && !Equal(a, b)) || a.size() != b.size()) {
    return absl::StrCat(path, ": \"", a.IsScalar() ? a.Scalar() : "", "\" (", a.Tag(), ") vs \"",
                        b.IsScalar() ? b.Scalar() : "", "\" (", b.Tag(), ")");
  }
  if (a.IsMap()) {
    for (auto i = a.begin(), j = b.begin(); i != a.end(); ++i, ++j) {
      if (Text(i->first) != Text(j->first))
        return FirstDifference(i->first, j->first, path + " key");
      if (!Equal(i->second, j->second)) {
        return FirstDifference(i->second, j->second, absl::StrCat(path, ".", i->first.Scalar()));
      }
    }
  }
  for (size_t k = 0; a.IsSequence() && k < a.size(); ++k) {
    if (!Equal(a[k], b[k])) return FirstDifference(a[k], b[k], absl::StrCat(path, "[", k, "]"));
  }
  return path;
}

void CheckReinjection(const std::string& text, const YAML::Node& injected, const Options& options) {
  YAML::Node again;
  try {
    again = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    Die("the output does not parse", text + "\n" + e.what());
  }
  if (!Equal(again, injected)) {
    Die("the output reads back as another tree",
        absl::StrCat(FirstDifference(injected, again, ""), "\n", text));
  }
  absl::StatusOr<Result> second = Inject(again, options);
  if (!second.ok()) Die("injecting the output fails", text + "\n" + second.status().ToString());
  if (second->changed) Die("injecting the output changes it", text);
}

void FuzzOne(const uint8_t* data, size_t size) {
  if (size < 1) return;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  YAML::Node document;
  try {
    document = YAML::Load(text);
  } catch (const YAML::Exception&) {
    return;
  }
  Options options;
  options.proxy_image = "meshlet-proxy:0.1.0";
  options.version = "0.1.0";
  options.mode = data[0] & 1 ? SidecarMode::kClassic : SidecarMode::kNative;
  options.podman = (data[0] & 2) != 0;
  absl::StatusOr<Result> result = Inject(document, options);
  if (!result.ok()) {
    if (result.status().code() != absl::StatusCode::kInvalidArgument) {
      Die("an error other than InvalidArgument", result.status().ToString());
    }
    return;
  }
  if (!result->changed) return;
  CheckReinjection(ToYaml(result->document), result->document, options);
  if (!HasKeyTooLongForYaml(result->document)) {
    CheckReinjection(ToJson(result->document), result->document, options);
  }
}

}  // namespace
}  // namespace meshlet::controlplane::inject

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  meshlet::controlplane::inject::FuzzOne(data, size);
  return 0;
}

namespace meshlet::fuzz {

std::vector<std::string> SeedCorpus() {
  return {
      std::string(1, '\0') + R"(apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1}
spec:
  template:
    metadata:
      labels: {app: reviews, version: v1}
      annotations:
        sidecar.meshlet.io/proxyCPULimit: "1"
        traffic.meshlet.io/excludeOutboundIPRanges: 10.0.0.0/8,fd00::/8
    spec:
      initContainers: [{name: migrate, image: m}]
      containers:
      - name: reviews
        image: reviews:1
        ports: [{containerPort: 9080}, {containerPort: 53, protocol: UDP}]
      volumes: [{name: cache, emptyDir: {}}]
)",
      std::string(1, '\1') + R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p",
"annotations":{"sidecar.meshlet.io/identity":"join-token",
"sidecar.meshlet.io/joinTokenSecret":"t"}},"spec":{"containers":[{"name":"a","image":"a"}]}})",
      std::string(1, '\0') + R"(apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: job, image: job}]
)",
      // For podman (classic): a CronJob run's pod, named after its owner, restartPolicy set.
      std::string(1, '\3') + R"(apiVersion: v1
kind: Pod
metadata:
  generateName: nightly-report-29403540-
  namespace: shop
  labels: {app.kubernetes.io/version: "1.2", version: v1}
  annotations: {sidecar.meshlet.io/identity: join-token}
  ownerReferences: [{apiVersion: batch/v1, kind: Job, name: nightly-report-29403540, controller: true}]
spec:
  restartPolicy: Always
  containers:
  - name: report
    image: report:1
    readinessProbe: {httpGet: {path: "/ready?a=$(X)$$", port: 8080}}
)",
      std::string(1, '\0') + R"(apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Service, metadata: {name: s}}
- apiVersion: v1
  kind: Pod
  metadata: {name: q, labels: {sidecar.meshlet.io/inject: "false"}}
  spec: {containers: [{name: a, image: a}]}
)",
  };
}

std::vector<std::string> Dictionary() {
  return {"apiVersion: apps/v1\n",
          "kind: Deployment\n",
          "kind: Pod\n",
          "template:\n",
          "containers:\n",
          "initContainers:\n",
          "volumes:\n",
          "containerPort: ",
          "sidecar.meshlet.io/",
          "traffic.meshlet.io/",
          "sidecar.meshlet.io/status",
          "meshlet-proxy",
          "meshlet-init",
          "hostNetwork: true",
          "ownerReferences:",
          "controller: true",
          "generateName: ",
          "pod-template-hash",
          "restartPolicy: ",
          "annotations:",
          "labels:",
          "\"false\"",
          "classic",
          "join-token",
          "{}",
          "[]",
          "~",
          "null",
          "- "};
}

}  // namespace meshlet::fuzz

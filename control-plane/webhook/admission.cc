#include "control-plane/webhook/admission.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/json.h"
#include "control-plane/inject/node.h"
#include "control-plane/webhook/json_patch.h"

namespace meshlet::controlplane::webhook {
namespace {

using inject::Field;
using inject::Text;
using Verdict = ReviewResult::Verdict;

// How deep JSON objects and arrays nest in `body` (strings skipped), stopping past `limit`.
int NestingDepth(absl::string_view body, int limit) {
  int depth = 0;
  int deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return deepest;
}

std::string Response(const std::string& uid, bool allowed, absl::string_view extra) {
  return absl::StrCat(
      "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"response\":{"
      "\"uid\":",
      JsonQuote(uid), ",\"allowed\":", allowed ? "true" : "false", extra, "}}\n");
}

ReviewResult Refuse(Verdict verdict, const std::string& uid, std::string message) {
  ReviewResult result;
  result.verdict = verdict;
  result.body = Response(
      uid, false, absl::StrCat(",\"status\":{\"code\":400,\"message\":", JsonQuote(message), "}"));
  result.reason = std::move(message);
  return result;
}

// The response's "warnings" field (shown by kubectl), or nothing.
std::string WarningsField(const std::vector<std::string>& warnings) {
  if (warnings.empty()) return "";
  std::vector<std::string> quoted;
  for (const std::string& w : warnings) quoted.push_back(JsonQuote(w));
  return absl::StrCat(",\"warnings\":[", absl::StrJoin(quoted, ","), "]");
}

ReviewResult Allow(const std::string& uid, std::string reason,
                   const std::vector<std::string>& warnings) {
  ReviewResult result;
  result.verdict = Verdict::kUntouched;
  result.body = Response(uid, true, WarningsField(warnings));
  result.reason = std::move(reason);
  return result;
}

// `Pod "shop/web-7f9c"`, from the object and the request (a new pod may have only generateName).
std::string Describe(const YAML::Node& request, const YAML::Node& object) {
  const YAML::Node metadata = Field(object, "metadata");
  std::string name = Text(Field(metadata, "name"));
  if (name.empty()) name = Text(Field(request, "name"));
  if (name.empty() && !Text(Field(metadata, "generateName")).empty()) {
    name = absl::StrCat(Text(Field(metadata, "generateName")), "*");
  }
  const std::string ns = Text(Field(request, "namespace"));
  std::string kind = Text(Field(object, "kind"));
  if (kind.empty()) kind = Text(Field(Field(request, "kind"), "kind"));
  return absl::StrCat(kind.empty() ? "object" : kind, " \"", ns.empty() ? "" : ns + "/", name,
                      "\"");
}

}  // namespace

absl::string_view VerdictName(Verdict verdict) {
  switch (verdict) {
    case Verdict::kInjected:
      return "injected";
    case Verdict::kUntouched:
      return "untouched";
    case Verdict::kRefused:
      return "refused";
    case Verdict::kMalformed:
      return "malformed";
  }
  return "unknown";
}

ReviewResult Review(absl::string_view body, const ReviewOptions& options) {
  if (NestingDepth(body, kMaxDepth) > kMaxDepth) {
    return Refuse(Verdict::kMalformed, "",
                  absl::StrCat("the AdmissionReview nests deeper than ", kMaxDepth, " levels"));
  }
  YAML::Node review;
  try {
    review = YAML::Load(std::string(body));
  } catch (const YAML::Exception& e) {
    return Refuse(Verdict::kMalformed, "",
                  absl::StrCat("the request body is not JSON: ", e.what()));
  }
  if (!review.IsMap()) {
    return Refuse(Verdict::kMalformed, "", "the request body is not a JSON object");
  }
  const YAML::Node request = Field(review, "request");
  const std::string uid = Text(Field(request, "uid"));
  if (Text(Field(review, "apiVersion")) != "admission.k8s.io/v1" ||
      Text(Field(review, "kind")) != "AdmissionReview") {
    return Refuse(Verdict::kMalformed, uid,
                  absl::StrCat("expected apiVersion admission.k8s.io/v1 and kind AdmissionReview, "
                               "got apiVersion \"",
                               Text(Field(review, "apiVersion")), "\" and kind \"",
                               Text(Field(review, "kind")), "\""));
  }
  if (!request.IsMap()) return Refuse(Verdict::kMalformed, uid, "request: missing");
  if (uid.empty()) return Refuse(Verdict::kMalformed, uid, "request.uid: missing");
  const std::string operation = Text(Field(request, "operation"));
  const std::string ns = Text(Field(request, "namespace"));
  const YAML::Node object = Field(request, "object");
  if (operation != "CREATE") {
    return Allow(uid,
                 absl::StrCat("operation ", operation.empty() ? "(none)" : operation,
                              ": only CREATE is injected"),
                 {});
  }
  if (std::find(options.excluded_namespaces.begin(), options.excluded_namespaces.end(), ns) !=
      options.excluded_namespaces.end()) {
    return Allow(uid, absl::StrCat("namespace ", ns, " is never injected"), {});
  }
  if (!object.IsMap()) return Refuse(Verdict::kMalformed, uid, "request.object: missing");
  const std::string what = Describe(request, object);
  config::YamlParseOptions source;
  source.source_name = absl::StrCat("AdmissionReview ", uid);
  // A copy: the patch is the difference between what was sent and what injection made of it.
  absl::StatusOr<inject::Result> injected =
      inject::Inject(YAML::Clone(object), options.inject, source);
  if (!injected.ok()) {
    return Refuse(Verdict::kRefused, uid,
                  absl::StrCat("meshlet sidecar injection: ", injected.status().message()));
  }
  std::vector<std::string> warnings;
  std::vector<std::string> reasons;
  for (const inject::PodResult& pod : injected->pods) {
    for (const std::string& w : pod.warnings) warnings.push_back(absl::StrCat("meshlet: ", w));
    if (!pod.reason.empty()) reasons.push_back(pod.reason);
  }
  if (injected->pods.empty()) {
    return Allow(uid, absl::StrCat(what, ": not a kind injection applies to"), warnings);
  }
  if (!injected->changed) {
    return Allow(uid,
                 absl::StrCat(what, ": ",
                              reasons.empty() ? "already injected" : absl::StrJoin(reasons, "; ")),
                 warnings);
  }
  const std::string patch = JsonPatch(object, injected->document);
  ReviewResult result;
  result.verdict = Verdict::kInjected;
  result.body = Response(uid, true,
                         absl::StrCat(",\"patchType\":\"JSONPatch\",\"patch\":\"",
                                      absl::Base64Escape(patch), "\"", WarningsField(warnings)));
  result.reason = absl::StrCat(what, " injected");
  return result;
}

}  // namespace meshlet::controlplane::webhook

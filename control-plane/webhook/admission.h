#pragma once

// Review: the injection webhook's decision for one AdmissionReview (admission.k8s.io/v1), as the
// API server POSTs it to the control plane's webhook port (15017, webhook_service.h). It runs the
// same injection as `meshctl inject` (control-plane/inject) on the request's object and answers
// an AdmissionReview whose response carries the request's uid and, when the object changed, a
// JSONPatch (json_patch.h, base64 in `patch`).
//
// What is allowed, and how (docs/kubernetes.md, "The injection webhook"):
//   - a Pod, or a Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job or
//     CronJob (their pod template) on CREATE: injected, allowed with the patch; already injected
//     with the same options, opted out (sidecar.meshlet.io/inject: "false") or on the host
//     network: allowed with no patch; labelled for another revision, or injected already by
//     another revision's webhook (two configurations select it): allowed with no patch and a
//     warning saying why;
//   - any request in an excluded namespace (kube-system and the control plane's own), any other
//     operation (UPDATE, DELETE, CONNECT) and any other kind: allowed with no patch, untouched;
//   - an object injection refuses (a bad sidecar.meshlet.io/* annotation, a pod field the
//     injection cannot work with): refused (allowed false, code 400) with injection's message,
//     which names the object and field, so that a pod never runs without the sidecar its
//     namespace asked for;
//   - a body that is not an AdmissionReview v1 with a request (not JSON, nested deeper than
//     kMaxDepth, another apiVersion or kind, no uid, no object): refused (allowed false, code
//     400) with what was wrong; the response still has the uid when the request had one.
// A dry-run request (request.dryRun) gets the same answer: injection has no side effects.
//
// Plain function; no state; never throws (yaml-cpp's exceptions are caught).

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "control-plane/inject/inject.h"

namespace meshlet::controlplane::webhook {

// Objects nested deeper than this (JSON objects and arrays) are refused before parsing: the
// parser recurses once per level.
inline constexpr int kMaxDepth = 64;

struct ReviewOptions {
  inject::Options inject;
  // Requests in these namespaces are allowed untouched.
  std::vector<std::string> excluded_namespaces = {"kube-system", "meshlet-system"};
};

struct ReviewResult {
  enum class Verdict {
    kInjected,   // allowed with a patch
    kUntouched,  // allowed, no patch: unchanged, opted out, skipped, excluded, not applicable
    kRefused,    // allowed false: injection refused the object
    kMalformed,  // allowed false: not an AdmissionReview we can answer
  };
  Verdict verdict = Verdict::kMalformed;
  std::string body;    // the AdmissionReview response, JSON
  std::string reason;  // why, for logs: "Pod shop/web-0 injected", the error, ...
};

// "injected", "untouched", "refused", "malformed": the verdict's stats label.
absl::string_view VerdictName(ReviewResult::Verdict verdict);

ReviewResult Review(absl::string_view body, const ReviewOptions& options);

}  // namespace meshlet::controlplane::webhook

#include "control-plane/inject/annotations.h"

#include <algorithm>
#include <iterator>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/capture/annotations.h"
#include "common/config/field_path.h"
#include "control-plane/inject/pod_checks.h"

namespace meshlet::controlplane::inject {
namespace {

constexpr char kKubernetesTokenIdentity[] = "kubernetes-token";
constexpr char kJoinTokenIdentity[] = "join-token";

constexpr const char* kKnownAnnotations[] = {
    kInjectKey,
    kStatusAnnotation,
    kModeAnnotation,
    kIdentityAnnotation,
    kJoinTokenSecretAnnotation,
    kProxyImageAnnotation,
    kProxyCpuAnnotation,
    kProxyMemoryAnnotation,
    kProxyCpuLimitAnnotation,
    kProxyMemoryLimitAnnotation,
    kDrainTimeAnnotation,
    kLogLevelAnnotation,
    kCaptureCheckPortAnnotation,
    kRewriteProbesAnnotation,
    kRevisionAnnotation,
    kServiceAccountAnnotation,
    kExcludeInboundPortsAnnotation,
    kIncludeInboundPortsAnnotation,
    kExcludeOutboundPortsAnnotation,
    kExcludeOutboundRangesAnnotation,
    kIncludeOutboundRangesAnnotation,
};

bool IsPort(absl::string_view text) {
  int port = 0;
  return absl::SimpleAtoi(text, &port) && port >= 1 && port <= 65535;
}

}  // namespace

absl::StatusOr<SidecarMode> ParseSidecarMode(absl::string_view text) {
  if (text == "native") return SidecarMode::kNative;
  if (text == "classic") return SidecarMode::kClassic;
  return absl::InvalidArgumentError("must be native or classic");
}

absl::StatusOr<Identity> ParseIdentity(absl::string_view text) {
  if (text == kKubernetesTokenIdentity) return Identity::kKubernetesToken;
  if (text == kJoinTokenIdentity) return Identity::kJoinToken;
  return absl::InvalidArgumentError(
      absl::StrCat("must be ", kKubernetesTokenIdentity, " (the default) or ", kJoinTokenIdentity));
}

std::string DefaultJoinTokenSecret(absl::string_view service_account) {
  return absl::StrCat("meshlet-join-token-", service_account);
}

absl::Status PodReader::ReadStatus(Plan& plan) const {
  const YAML::Node status = Field(annotations_, kStatusAnnotation);
  if (!status) return absl::OkStatus();
  const std::string field = AnnotationField(kStatusAnnotation);
  const absl::Status not_ours = Error(
      status, field,
      "not a status written by meshctl inject (a JSON object listing what it added); remove the "
      "annotation to inject this pod");
  if (!IsString(status)) return not_ours;
  YAML::Node parsed;
  try {
    parsed = YAML::Load(status.Scalar());
  } catch (const YAML::Exception&) {
    return not_ours;
  }
  if (!parsed.IsMap()) return not_ours;
  if (!Field(parsed, "initContainers") && Field(parsed, "mode")) {
    // The short form (written for podman): the names follow from the mode.
    absl::StatusOr<SidecarMode> mode = ParseSidecarMode(Text(Field(parsed, "mode")));
    if (!mode.ok()) return not_ours;
    // "capture":"cni": no meshlet-init, and the podman annotation added.
    const bool cni = Text(Field(parsed, "capture")) == capture::kCaptureByCni;
    if (!cni) plan.injected_init_containers.insert(kInitContainerName);
    (*mode == SidecarMode::kNative ? plan.injected_init_containers : plan.injected_containers)
        .insert(kProxyContainerName);
    plan.injected_volumes = {kTrustVolume, kTokenVolume, kJoinTokenVolume, kDataVolume};
    if (IsTrue(Field(parsed, "podman")) || cni) {
      plan.injected_annotations.insert(kPodmanInitContainerTypeAnnotation);
    }
    plan.injected_for_podman = true;
    plan.restore_restart_policy = Text(Field(parsed, "rp")) == "1";
    return absl::OkStatus();
  }
  for (auto& [key, out] : {std::pair<const char*, std::set<std::string>*>{
                               "initContainers", &plan.injected_init_containers},
                           {"containers", &plan.injected_containers},
                           {"volumes", &plan.injected_volumes},
                           {"annotations", &plan.injected_annotations}}) {
    const YAML::Node names = Field(parsed, key);
    if (!names) continue;
    if (!names.IsSequence()) return not_ours;
    for (const YAML::Node& name : names) {
      if (!name.IsScalar()) return not_ours;
      out->insert(name.Scalar());
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> PodReader::Quantity(absl::string_view key,
                                                const std::string& fallback) const {
  std::optional<std::string> value = Annotation(key);
  if (!value) return fallback;
  if (absl::StatusOr<double> q = ParseQuantity(*value); !q.ok()) {
    return Error(Field(annotations_, key), AnnotationField(key), q.status().message());
  }
  return *value;
}

absl::Status PodReader::CaptureLists(Plan& plan) const {
  for (const capture::CaptureAnnotation& list : capture::kCaptureAnnotations) {
    std::optional<std::string> value = Annotation(list.key);
    if (!value) continue;
    absl::StatusOr<std::string> flag_value = capture::CaptureFlagValue(list, *value);
    if (!flag_value.ok()) {
      return Error(Field(annotations_, list.key), AnnotationField(list.key),
                   flag_value.status().message());
    }
    plan.capture_flags.emplace_back(list.flag, *std::move(flag_value));
  }
  return absl::OkStatus();
}

absl::Status PodReader::ReadAnnotations(Plan& plan) const {
  for (auto it = annotations_.begin(); annotations_ && it != annotations_.end(); ++it) {
    const std::string key = Text(it->first);
    if (!absl::StartsWith(key, "sidecar.meshlet.io/") &&
        !absl::StartsWith(key, "traffic.meshlet.io/")) {
      continue;
    }
    if (std::find(std::begin(kKnownAnnotations), std::end(kKnownAnnotations), key) ==
        std::end(kKnownAnnotations)) {
      return Error(
          it->first, AnnotationField(key),
          absl::StrCat("unknown annotation; known: ", absl::StrJoin(kKnownAnnotations, ", ")));
    }
    if (!IsString(it->second)) {
      return Error(it->second, AnnotationField(key),
                   "must be a string (annotation values are strings: quote it)");
    }
  }
  auto error = [&](absl::string_view key, absl::string_view reason) {
    return Error(Field(annotations_, key), AnnotationField(key), reason);
  };

  plan.mode = options_.mode;
  if (std::optional<std::string> mode = Annotation(kModeAnnotation)) {
    absl::StatusOr<SidecarMode> parsed = ParseSidecarMode(*mode);
    if (!parsed.ok()) return error(kModeAnnotation, parsed.status().message());
    plan.mode = *parsed;
  }
  Identity identity = options_.identity;
  if (std::optional<std::string> annotation = Annotation(kIdentityAnnotation)) {
    absl::StatusOr<Identity> parsed = ParseIdentity(*annotation);
    if (!parsed.ok()) return error(kIdentityAnnotation, parsed.status().message());
    identity = *parsed;
  }
  plan.join_token = identity == Identity::kJoinToken;
  const std::optional<std::string> secret = Annotation(kJoinTokenSecretAnnotation);
  if (secret && !plan.join_token) {
    return error(kJoinTokenSecretAnnotation,
                 absl::StrCat("only used with ", kIdentityAnnotation, ": ", kJoinTokenIdentity));
  }
  if (secret && !config::IsDnsSubdomain(*secret)) {
    return error(kJoinTokenSecretAnnotation, "must be a Secret's name (a DNS-1123 subdomain)");
  }
  plan.service_account = Text(Field(spec_, "serviceAccountName"));
  if (plan.service_account.empty()) plan.service_account = "default";
  plan.pod_namespace = Text(Field(metadata_, "namespace"));
  if (plan.pod_namespace.empty())
    plan.pod_namespace = Text(Field(where_.object_metadata, "namespace"));
  if (plan.pod_namespace.empty()) plan.pod_namespace = "default";
  if (plan.join_token) {
    plan.join_token_secret = secret.value_or(DefaultJoinTokenSecret(plan.service_account));
    if (!config::IsDnsSubdomain(plan.join_token_secret)) {
      return Error(
          Field(spec_, "serviceAccountName"), "spec.serviceAccountName",
          absl::StrCat("the join token's Secret would be named \"", plan.join_token_secret,
                       "\", which is not a Secret's name; set ", kJoinTokenSecretAnnotation));
    }
  }

  plan.image = Annotation(kProxyImageAnnotation).value_or(options_.proxy_image);
  if (plan.image.empty() || std::any_of(plan.image.begin(), plan.image.end(), [](char c) {
        return absl::ascii_isspace(static_cast<unsigned char>(c));
      })) {
    return error(kProxyImageAnnotation, "must be an image reference without spaces");
  }
  ASSIGN_OR_RETURN(plan.cpu, Quantity(kProxyCpuAnnotation, options_.proxy_cpu));
  ASSIGN_OR_RETURN(plan.memory, Quantity(kProxyMemoryAnnotation, options_.proxy_memory));
  ASSIGN_OR_RETURN(plan.cpu_limit, Quantity(kProxyCpuLimitAnnotation, ""));
  ASSIGN_OR_RETURN(plan.memory_limit, Quantity(kProxyMemoryLimitAnnotation, ""));
  for (const auto& [limit_key, limit, request] :
       {std::tuple{kProxyCpuLimitAnnotation, plan.cpu_limit, plan.cpu},
        {kProxyMemoryLimitAnnotation, plan.memory_limit, plan.memory}}) {
    if (!limit.empty() && *ParseQuantity(limit) < *ParseQuantity(request)) {
      return error(limit_key, absl::StrCat("\"", limit, "\" is below the request \"", request,
                                           "\"; a limit must be at least the request"));
    }
  }
  if (std::optional<std::string> drain = Annotation(kDrainTimeAnnotation)) {
    absl::Duration d;
    if (!absl::ParseDuration(*drain, &d) || d < absl::ZeroDuration()) {
      return error(kDrainTimeAnnotation, "must be a duration such as 30s or 1m30s");
    }
    plan.drain_time = *drain;
  }
  if (std::optional<std::string> level = Annotation(kLogLevelAnnotation)) {
    if (!ParseLogLevel(*level).has_value()) {
      return error(kLogLevelAnnotation,
                   "must be one of trace, debug, info, warn, error, critical, off");
    }
    plan.log_level = *level;
  }
  RETURN_IF_ERROR(CaptureLists(plan));
  RETURN_IF_ERROR(ReadCaptureCheck(plan));

  const YAML::Node podman = Field(annotations_, kPodmanInitContainerTypeAnnotation);
  if (options_.podman && podman &&
      plan.injected_annotations.count(kPodmanInitContainerTypeAnnotation) == 0 &&
      Text(podman) != "always") {
    plan.warnings.push_back(absl::StrCat(
        "the pod's annotation ", kPodmanInitContainerTypeAnnotation, " is \"", Text(podman),
        "\", not \"always\": podman with runc may fail removing the finished meshlet-init"));
  }
  if (options_.podman) {
    // podman 4.3 applies the pod's restart policy to init containers: under Always it runs
    // meshlet-init again as soon as it finishes, forever.
    const std::string policy = Text(Field(spec_, "restartPolicy"));
    plan.restart_on_failure = plan.restore_restart_policy || policy.empty() || policy == "Always";
    if (plan.mode == SidecarMode::kNative) {
      plan.warnings.push_back(
          "podman has no native sidecars: it would run the proxy as an init container that never "
          "finishes, and never start the app; inject with --mode classic");
    }
    if (!plan.join_token) {
      plan.warnings.push_back(
          "podman mounts no service-account tokens, so the proxy would get no certificate; inject "
          "with --identity join-token");
    }
  }
  return absl::OkStatus();
}

absl::Status PodReader::ReadCaptureCheck(Plan& plan) const {
  const std::optional<std::string> value = Annotation(kCaptureCheckPortAnnotation);
  if (value == "off") {
    plan.capture_check_port = 0;
    return absl::OkStatus();
  }
  if (value && (!IsPort(*value) || !absl::SimpleAtoi(*value, &plan.capture_check_port))) {
    return Error(Field(annotations_, kCaptureCheckPortAnnotation),
                 AnnotationField(kCaptureCheckPortAnnotation),
                 "must be a port (1-65535) that inbound capture redirects, or \"off\"");
  }
  const int port = plan.capture_check_port;
  const std::string what =
      value ? absl::StrCat("port ", port)
            : absl::StrCat("port ", port, " (the default of ", kCaptureCheckPortAnnotation, ")");
  const std::string fix =
      absl::StrCat("the sidecar dials it to see that capture is in effect; set ",
                   kCaptureCheckPortAnnotation, " to a port inbound capture redirects, or \"off\"");
  if (std::find(std::begin(kReservedPorts), std::end(kReservedPorts), port) !=
      std::end(kReservedPorts)) {
    return Error(
        Field(annotations_, kCaptureCheckPortAnnotation),
        AnnotationField(kCaptureCheckPortAnnotation),
        absl::StrCat(port, " is the sidecar's (it uses ", absl::StrJoin(kReservedPorts, ", "),
                     "), never captured inbound; ", fix));
  }
  // The ports a list annotation passed to `sidecar init` as `flag`, if it is set.
  auto listed = [&](absl::string_view flag) -> std::optional<std::vector<std::string>> {
    for (const auto& [f, items] : plan.capture_flags) {
      if (f == flag) return absl::StrSplit(items, ',');
    }
    return std::nullopt;
  };
  auto has = [&](const std::vector<std::string>& items) {
    return std::any_of(items.begin(), items.end(), [&](const std::string& item) {
      int listed_port = 0;
      return item == "*" || (absl::SimpleAtoi(item, &listed_port) && listed_port == port);
    });
  };
  if (auto excluded = listed("--exclude-inbound-ports"); excluded && has(*excluded)) {
    return Error(Field(annotations_, kExcludeInboundPortsAnnotation),
                 AnnotationField(kExcludeInboundPortsAnnotation),
                 absl::StrCat("excludes ", what, " from capture; ", fix));
  }
  if (auto included = listed("--include-inbound-ports"); included && !has(*included)) {
    return Error(Field(annotations_, kIncludeInboundPortsAnnotation),
                 AnnotationField(kIncludeInboundPortsAnnotation),
                 absl::StrCat("does not list ", what, ", so it is not captured; ", fix));
  }
  return absl::OkStatus();
}

std::string StatusAnnotation(const Plan& plan, const Options& options,
                             const std::vector<std::string>& init_containers,
                             const std::vector<std::string>& containers,
                             const std::vector<std::string>& volumes,
                             const std::vector<std::string>& annotations) {
  const char* mode = plan.mode == SidecarMode::kNative ? "\"native\"" : "\"classic\"";
  if (options.podman) {
    // Capture by meshlet-cni: the mark the plugin reads instead of "podman":true, which it
    // implies (63 characters at most).
    return absl::StrCat("{\"version\":", JsonQuote(options.version), ",\"mode\":", mode,
                        !annotations.empty() && !options.cni ? ",\"podman\":true" : "",
                        plan.restart_on_failure ? ",\"rp\":1" : "",
                        options.cni ? absl::StrCat(",", capture::kCniCaptureStatusMember) : "",
                        "}");
  }
  auto list = [](const std::vector<std::string>& names) {
    return absl::StrCat(
        "[",
        absl::StrJoin(names, ",",
                      [](std::string* out, const std::string& n) { out->append(JsonQuote(n)); }),
        "]");
  };
  return absl::StrCat(
      "{\"version\":", JsonQuote(options.version), ",\"mode\":", mode,
      options.cni ? absl::StrCat(",", capture::kCniCaptureStatusMember) : "",
      ",\"initContainers\":", list(init_containers), ",\"containers\":", list(containers),
      ",\"volumes\":", list(volumes),
      annotations.empty() ? "" : absl::StrCat(",\"annotations\":", list(annotations)), "}");
}

}  // namespace meshlet::controlplane::inject

#include "cni/plugin.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cni/json.h"
#include "common/base/json.h"
#include "common/capture/annotations.h"
#include "sidecar/capture/init_command.h"

namespace meshlet::cni {
namespace {

using sidecar::capture::Action;

bool Supported(absl::string_view version) {
  return std::find(std::begin(kSupportedVersions), std::end(kSupportedVersions), version) !=
         std::end(kSupportedVersions);
}

// The newest version this plugin speaks.
absl::string_view NewestVersion() { return kSupportedVersions[std::size(kSupportedVersions) - 1]; }

bool Fail(CniError* error, int code, std::string msg, std::string details = "") {
  *error = {.code = code, .msg = std::move(msg), .details = std::move(details)};
  return false;
}

// A string member, if present; false (and `*error`) when present but not a string.
bool OptionalString(const JsonValue& object, absl::string_view key, absl::string_view where,
                    std::string* out, CniError* error) {
  const JsonValue* value = object.Find(key);
  if (value == nullptr) return true;
  if (!value->IsString()) {
    return Fail(error, kInvalidConfig,
                absl::StrCat("the network configuration's ", where, key, " must be a string, not ",
                             JsonTypeName(value->type)));
  }
  *out = value->text;
  return true;
}

// An object whose members are all strings (annotations).
bool StringMap(const JsonValue& value, absl::string_view field,
               std::map<std::string, std::string>* out, CniError* error) {
  if (!value.IsObject()) {
    return Fail(
        error, kInvalidConfig,
        absl::StrCat(field, " must be an object of strings, not ", JsonTypeName(value.type)));
  }
  for (const auto& [key, member] : value.members) {
    if (!member.IsString()) {
      return Fail(
          error, kInvalidConfig,
          absl::StrCat(field, "[\"", key, "\"] must be a string, not ", JsonTypeName(member.type)));
    }
    (*out)[key] = member.text;
  }
  return true;
}

bool ParseKubernetes(const JsonValue& value, KubernetesSettings* out, CniError* error) {
  if (!value.IsObject()) {
    return Fail(error, kInvalidConfig, "the network configuration's kubernetes must be an object");
  }
  for (const auto& [key, member] : value.members) {
    if (key == "server" || key == "caFile" || key == "tokenFile") {
      std::string* field = key == "server"   ? &out->server
                           : key == "caFile" ? &out->ca_file
                                             : &out->token_file;
      if (!OptionalString(value, key, "kubernetes.", field, error)) return false;
    } else if (key == "timeoutSeconds" || key == "maxPodBytes") {
      int64_t number = 0;
      const bool seconds = key == "timeoutSeconds";
      const int64_t max = seconds ? 120 : int64_t{64} << 20;
      if (member.type != JsonValue::Type::kNumber || !absl::SimpleAtoi(member.text, &number) ||
          number < 1 || number > max) {
        return Fail(error, kInvalidConfig,
                    absl::StrCat("the network configuration's kubernetes.", key,
                                 " must be a whole number from 1 to ", max));
      }
      if (seconds) {
        out->timeout = absl::Seconds(number);
      } else {
        out->max_pod_bytes = static_cast<size_t>(number);
      }
    } else {
      return Fail(error, kInvalidConfig,
                  absl::StrCat("the network configuration's kubernetes.", key,
                               " is not a setting of meshlet-cni; it knows server, caFile, "
                               "tokenFile, timeoutSeconds and maxPodBytes"));
    }
  }
  if (!absl::StartsWith(out->server, "https://") || out->ca_file.empty() ||
      out->token_file.empty()) {
    return Fail(error, kInvalidConfig,
                "the network configuration's kubernetes needs server (https://HOST:PORT), caFile "
                "and tokenFile");
  }
  return true;
}

// The value of `key` in CNI_ARGS ("K=V;K=V"), if it is there.
std::optional<std::string> CniArg(absl::string_view args, absl::string_view key) {
  for (absl::string_view pair : absl::StrSplit(args, ';', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(pair, absl::MaxSplits('=', 1));
    if (kv.first == key) return std::string(kv.second);
  }
  return std::nullopt;
}

std::string PodName(const std::optional<PodRef>& pod) {
  return pod.has_value() ? absl::StrCat(pod->pod_namespace, "/", pod->name) : "-";
}

}  // namespace

Invocation InvocationFromEnvironment(const std::function<const char*(const char*)>& getenv) {
  auto get = [&](const char* name) {
    const char* value = getenv(name);
    return std::string(value != nullptr ? value : "");
  };
  return {.command = get("CNI_COMMAND"),
          .container_id = get("CNI_CONTAINERID"),
          .netns = get("CNI_NETNS"),
          .ifname = get("CNI_IFNAME"),
          .args = get("CNI_ARGS")};
}

bool ParseConfig(absl::string_view json, PluginConfig* config, CniError* error) {
  absl::StatusOr<JsonValue> parsed = ParseJson(json);
  if (!parsed.ok()) {
    return Fail(error, kDecodeFailure, "the network configuration on stdin is not JSON",
                std::string(parsed.status().message()));
  }
  if (!parsed->IsObject()) {
    return Fail(error, kDecodeFailure, "the network configuration on stdin is not a JSON object");
  }
  for (const auto& [key, field] : {std::pair{"cniVersion", &config->cni_version},
                                   {"name", &config->name},
                                   {"type", &config->type},
                                   {"logFile", &config->log_file},
                                   {"defaultNamespace", &config->default_namespace}}) {
    if (!OptionalString(*parsed, key, "", field, error)) return false;
  }
  if (config->cni_version.empty()) {
    return Fail(error, kInvalidConfig, "the network configuration has no cniVersion");
  }
  if (!Supported(config->cni_version)) {
    return Fail(error, kIncompatibleVersion,
                absl::StrCat("meshlet-cni speaks CNI ", absl::StrJoin(kSupportedVersions, " and "),
                             ", not ", config->cni_version),
                "set the conflist's cniVersion to one of them");
  }
  if (const JsonValue* excluded = parsed->Find("excludeNamespaces")) {
    if (excluded->type != JsonValue::Type::kArray) {
      return Fail(error, kInvalidConfig,
                  "the network configuration's excludeNamespaces must be an array of strings");
    }
    config->exclude_namespaces.clear();
    for (const JsonValue& item : excluded->items) {
      if (!item.IsString()) {
        return Fail(error, kInvalidConfig,
                    "the network configuration's excludeNamespaces must be an array of strings");
      }
      config->exclude_namespaces.push_back(item.text);
    }
  }
  if (const JsonValue* kubernetes = parsed->Find("kubernetes")) {
    config->kubernetes.emplace();
    if (!ParseKubernetes(*kubernetes, &*config->kubernetes, error)) return false;
  }
  if (const JsonValue* policy = parsed->Find("onMetadataError")) {
    if (policy->IsString() && policy->text == "fail") {
      config->on_metadata_error = MetadataErrorPolicy::kFail;
    } else if (policy->IsString() && policy->text == "skip") {
      config->on_metadata_error = MetadataErrorPolicy::kSkip;
    } else {
      return Fail(error, kInvalidConfig,
                  "the network configuration's onMetadataError must be \"fail\" or \"skip\"");
    }
  }
  if (const JsonValue* runtime = parsed->Find("runtimeConfig")) {
    if (!runtime->IsObject()) {
      return Fail(error, kInvalidConfig,
                  "the network configuration's runtimeConfig must be an object");
    }
    if (const JsonValue* annotations = runtime->Find(kPodAnnotationsCapability)) {
      config->pod_annotations.emplace();
      if (!StringMap(*annotations,
                     absl::StrCat("runtimeConfig[\"", kPodAnnotationsCapability, "\"]"),
                     &*config->pod_annotations, error)) {
        return false;
      }
    }
  }
  if (const JsonValue* prev = parsed->Find("prevResult")) {
    if (!prev->IsObject()) {
      return Fail(error, kInvalidConfig,
                  "the network configuration's prevResult must be an object");
    }
    config->prev_result = std::string(prev->raw);
  }
  return true;
}

std::optional<PodRef> PodFromArgs(absl::string_view cni_args, absl::string_view default_namespace) {
  std::optional<std::string> ns = CniArg(cni_args, "K8S_POD_NAMESPACE");
  std::optional<std::string> name = CniArg(cni_args, "K8S_POD_NAME");
  if (!name.has_value() || name->empty()) return std::nullopt;
  if (!ns.has_value() || ns->empty()) {
    if (default_namespace.empty()) return std::nullopt;
    return PodRef{.pod_namespace = std::string(default_namespace),
                  .name = *std::move(name),
                  .namespace_defaulted = true};
  }
  return PodRef{.pod_namespace = *std::move(ns), .name = *std::move(name)};
}

bool Decide(const std::map<std::string, std::string>& annotations, Decision* decision,
            CniError* error) {
  auto annotation = [&](absl::string_view key) -> std::optional<std::string> {
    auto it = annotations.find(std::string(key));
    if (it == annotations.end()) return std::nullopt;
    return it->second;
  };
  const std::optional<std::string> status = annotation(capture::kStatusAnnotation);
  if (!status.has_value()) {
    decision->reason = absl::StrCat("not injected (no ", capture::kStatusAnnotation, ")");
    return true;
  }
  if (annotation(capture::kInjectKey) == "false") {
    decision->reason = absl::StrCat("opted out (", capture::kInjectKey, ": \"false\")");
    return true;
  }
  absl::StatusOr<JsonValue> parsed = ParseJson(*status);
  const JsonValue* by = parsed.ok() ? parsed->Find("capture") : nullptr;
  if (by == nullptr || !by->IsString() || by->text != capture::kCaptureByCni) {
    decision->reason = "injected with the meshlet-init container, which captures its traffic";
    return true;
  }
  absl::StatusOr<std::vector<std::string>> args = capture::InitArgsFromAnnotations(annotation);
  absl::StatusOr<sidecar::capture::InitCommandLine> command_line =
      args.ok() ? sidecar::capture::ParseInitCommandLine(*args)
                : absl::StatusOr<sidecar::capture::InitCommandLine>(args.status());
  if (!command_line.ok()) {
    return Fail(error, kBadCaptureAnnotations,
                "the pod is marked for capture, but its capture annotations are invalid",
                std::string(command_line.status().message()));
  }
  decision->capture = true;
  decision->reason = absl::StrCat("sidecar init ", absl::StrJoin(*args, " "));
  decision->init_args = *std::move(args);
  decision->options = command_line->options;
  return true;
}

std::string ErrorJson(absl::string_view cni_version, const CniError& error) {
  std::string out = absl::StrCat("{\"cniVersion\":", JsonQuote(cni_version),
                                 ",\"code\":", error.code, ",\"msg\":", JsonQuote(error.msg));
  if (!error.details.empty()) absl::StrAppend(&out, ",\"details\":", JsonQuote(error.details));
  out += "}\n";
  return out;
}

std::string VersionJson(absl::string_view requested) {
  std::string out = absl::StrCat(
      "{\"cniVersion\":", JsonQuote(Supported(requested) ? requested : NewestVersion()),
      ",\"supportedVersions\":");
  AppendJsonStringArray(&out, {std::begin(kSupportedVersions), std::end(kSupportedVersions)});
  out += "}\n";
  return out;
}

std::string AddResult(absl::string_view cni_version, absl::string_view prev_result) {
  absl::StatusOr<JsonValue> parsed = ParseJson(prev_result);
  if (parsed.ok() && parsed->Find("cniVersion") == nullptr) {
    absl::string_view rest = absl::StripLeadingAsciiWhitespace(prev_result);
    absl::ConsumePrefix(&rest, "{");
    const bool empty = parsed->members.empty();
    return absl::StrCat("{\"cniVersion\":", JsonQuote(cni_version), empty ? "" : ",", rest, "\n");
  }
  return absl::StrCat(prev_result, "\n");
}

RunResult RunPlugin(const Invocation& invocation, absl::string_view stdin_text, const Host& host) {
  RunResult result;
  std::optional<PodRef> pod = PodFromArgs(invocation.args);
  std::string cni_version(NewestVersion());
  auto log = [&](absl::string_view outcome, absl::string_view detail) {
    result.log_line =
        absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", host.now(), absl::UTCTimeZone()),
                     " meshlet-cni ", invocation.command.empty() ? "-" : invocation.command,
                     " pod=", PodName(pod), " container=", invocation.container_id.substr(0, 12),
                     " outcome=", outcome, " detail=", JsonQuote(detail));
  };
  auto failed = [&](const CniError& error) {
    result.exit_code = 1;
    result.stdout_text = ErrorJson(cni_version, error);
    log("failed", absl::StrCat("code ", error.code, ": ", error.msg,
                               error.details.empty() ? "" : ": ", error.details));
    return result;
  };
  auto passed = [&](absl::string_view why, absl::string_view outcome = "skipped") {
    log(outcome, why);
    return result;
  };

  if (invocation.command == "VERSION") {
    absl::StatusOr<JsonValue> parsed = ParseJson(stdin_text);
    const JsonValue* requested = parsed.ok() ? parsed->Find("cniVersion") : nullptr;
    result.stdout_text = VersionJson(requested != nullptr ? requested->text : "");
    return passed("versions listed", "version");
  }
  if (invocation.command.empty()) {
    return failed({.code = kInvalidEnvironment,
                   .msg = "CNI_COMMAND is not set",
                   .details = "meshlet-cni is a CNI plugin: the container runtime runs it"});
  }
  PluginConfig config;
  CniError error;
  if (!ParseConfig(stdin_text, &config, &error)) return failed(error);
  cni_version = config.cni_version;
  result.log_file = config.log_file;
  if (!config.default_namespace.empty())
    pod = PodFromArgs(invocation.args, config.default_namespace);
  const std::string& command = invocation.command;
  if (command != "ADD" && command != "DEL" && command != "CHECK") {
    return failed({.code = kInvalidEnvironment,
                   .msg = absl::StrCat("CNI_COMMAND \"", command,
                                       "\" is not one of ADD, DEL, CHECK, VERSION")});
  }
  if (invocation.container_id.empty() || invocation.ifname.empty()) {
    return failed(
        {.code = kInvalidEnvironment,
         .msg = absl::StrCat(invocation.container_id.empty() ? "CNI_CONTAINERID" : "CNI_IFNAME",
                             " is not set")});
  }
  if (command == "ADD" && !config.prev_result.has_value()) {
    return failed({.code = kInvalidConfig,
                   .msg = "meshlet-cni got no prevResult: it is a chained plugin",
                   .details = "list it after the plugin that creates the pod's interface "
                              "(bridge, ptp, the cluster's CNI) in the conflist's plugins"});
  }
  auto done = [&](absl::string_view why, absl::string_view outcome) {
    if (command == "ADD") result.stdout_text = AddResult(cni_version, *config.prev_result);
    return passed(why, outcome);
  };
  if (pod.has_value() &&
      std::find(config.exclude_namespaces.begin(), config.exclude_namespaces.end(),
                pod->pod_namespace) != config.exclude_namespaces.end()) {
    return done(absl::StrCat("namespace ", pod->pod_namespace, " is excluded"), "skipped");
  }

  if (command == "DEL") {
    // The pod's settings may be gone with the pod: remove exactly the chains and jumps the
    // capture adds, which is nothing where there are none. The namespace itself may be gone.
    if (invocation.netns.empty()) return done("no network namespace; nothing to remove", "removed");
    if (absl::Status entered = host.enter_netns(invocation.netns); !entered.ok()) {
      return done(absl::StrCat("nothing to remove: ", entered.message()), "removed");
    }
    absl::Status removed = host.execute({}, Action::kCleanup, &result.execute_log);
    // A DEL that fails keeps the runtime retrying a sandbox whose namespace, rules and all, is
    // about to go: the failure is logged, not returned.
    if (!removed.ok()) return done(absl::StrCat("removing failed: ", removed.message()), "failed");
    return done("capture rules removed (if there were any)", "removed");
  }

  // ADD and CHECK: what the pod's annotations say.
  std::map<std::string, std::string> annotations;
  if (config.pod_annotations.has_value()) {
    annotations = *config.pod_annotations;
  } else if (!pod.has_value()) {
    return done(absl::StrCat("not a Kubernetes pod (CNI_ARGS has no K8S_POD_NAMESPACE and "
                             "K8S_POD_NAME, and no defaultNamespace is set) and no pod "
                             "annotations in runtimeConfig"),
                "skipped");
  } else {
    absl::StatusOr<std::map<std::string, std::string>> fetched =
        config.kubernetes.has_value()
            ? host.pod_annotations(*config.kubernetes, *pod)
            : absl::FailedPreconditionError(absl::StrCat(
                  "the runtime passed no pod annotations (runtimeConfig \"",
                  kPodAnnotationsCapability,
                  "\") and the network configuration has no kubernetes section to read them"));
    if (!fetched.ok() && pod->namespace_defaulted && absl::IsNotFound(fetched.status())) {
      return done(absl::StrCat("no pod ", PodName(pod),
                               " in the API server (named by K8S_POD_NAME alone, in the "
                               "defaultNamespace): not a Kubernetes pod"),
                  "skipped");
    }
    if (!fetched.ok()) {
      const std::string why = absl::StrCat("cannot read the annotations of pod ", PodName(pod),
                                           ": ", fetched.status().message());
      if (config.on_metadata_error == MetadataErrorPolicy::kSkip) {
        return done(absl::StrCat(why, "; passed through (onMetadataError: skip)"), "skipped");
      }
      const bool transient =
          absl::IsUnavailable(fetched.status()) || absl::IsDeadlineExceeded(fetched.status());
      return failed({.code = transient ? kTryAgainLater : kPodMetadataUnreadable,
                     .msg = why,
                     .details = "meshlet-cni must know whether the pod is injected before it "
                                "starts (onMetadataError: fail)"});
    }
    annotations = *std::move(fetched);
  }
  Decision decision;
  if (!Decide(annotations, &decision, &error)) return failed(error);
  if (!decision.capture) return done(decision.reason, "skipped");

  if (invocation.netns.empty()) {
    return failed({.code = kInvalidEnvironment, .msg = "CNI_NETNS is not set"});
  }
  if (absl::Status entered = host.enter_netns(invocation.netns); !entered.ok()) {
    return failed(
        {.code = absl::IsNotFound(entered) ? kUnknownContainer : kIoFailure,
         .msg = absl::StrCat("cannot enter the pod's network namespace ", invocation.netns),
         .details = std::string(entered.message())});
  }
  const Action action = command == "ADD" ? Action::kApply : Action::kCheck;
  if (absl::Status executed = host.execute(decision.options, action, &result.execute_log);
      !executed.ok()) {
    return failed({.code = kCaptureFailed,
                   .msg = command == "ADD" ? "the pod's capture rules could not be installed"
                                           : "the pod's capture rules are not as installed",
                   .details = std::string(executed.message())});
  }
  return done(decision.reason, command == "ADD" ? "captured" : "checked");
}

}  // namespace meshlet::cni

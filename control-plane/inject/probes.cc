#include "control-plane/inject/probes.h"

#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace meshlet::controlplane::inject {
namespace {

// "livenessProbe" -> "livez", "readinessProbe" -> "readyz", "startupProbe" -> "startupz".
std::string ProbeName(absl::string_view kind) {
  return kind == "livenessProbe" ? "livez" : kind == "readinessProbe" ? "readyz" : "startupz";
}

}  // namespace

std::string Plan::AppProbe::ProxyPath() const {
  return absl::StrCat(kAppHealthPrefix, container, "/", ProbeName(kind));
}

YAML::Node ProxyProbe(int64_t period, int64_t failures) {
  YAML::Node probe = MapNode();
  probe["httpGet"]["path"] = StringNode("/ready");
  probe["httpGet"]["port"] = IntNode(kPrometheusPort);
  probe["periodSeconds"] = IntNode(period);
  probe["timeoutSeconds"] = IntNode(3);
  probe["failureThreshold"] = IntNode(failures);
  return probe;
}

void AppendAppProbeArgs(const Plan& plan, bool podman, std::vector<std::string>& args) {
  for (const Plan::AppProbe& probe : plan.app_probes) {
    if (!probe.rewrite) continue;
    args.push_back(absl::StrCat("--app-probe=", probe.ProxyPath(), "=", probe.port,
                                podman ? probe.path : EscapeForArgs(probe.path)));
  }
}

void WriteAppProbes(const Plan& plan, YAML::Node containers) {
  for (const Plan::AppProbe& probe : plan.app_probes) {
    for (size_t i = 0; i < containers.size(); ++i) {
      YAML::Node c = containers[i];
      if (Text(Field(c, "name")) != probe.container) continue;
      YAML::Node get = c[probe.kind]["httpGet"];
      get["port"] = IntNode(probe.rewrite ? kPrometheusPort : probe.port);
      get["path"] = StringNode(probe.rewrite ? probe.ProxyPath() : probe.path);
    }
  }
}

absl::Status PodReader::ReadProbes(Plan& plan) const {
  bool rewrite = true;
  if (std::optional<std::string> value = Annotation(kRewriteProbesAnnotation)) {
    if (*value != "true" && *value != "false") {
      return Error(Field(annotations_, kRewriteProbesAnnotation),
                   AnnotationField(kRewriteProbesAnnotation), "must be \"true\" or \"false\"");
    }
    rewrite = *value == "true";
  }
  // What an earlier injection pointed at the proxy: the originals, from its --app-probe args.
  std::map<std::string, std::pair<int64_t, std::string>> earlier;  // proxy path -> port, path
  for (const char* list : {"initContainers", "containers"}) {
    const YAML::Node containers = Field(spec_, list);
    for (size_t i = 0; containers.IsSequence() && i < containers.size(); ++i) {
      if (Text(Field(containers[i], "name")) != kProxyContainerName) continue;
      const YAML::Node args = Field(containers[i], "args");
      for (size_t a = 0; args.IsSequence() && a < args.size(); ++a) {
        const std::string text = Text(args[a]);
        absl::string_view arg = text;
        if (!absl::ConsumePrefix(&arg, "--app-probe=")) continue;
        const size_t eq = arg.find('=');
        const size_t slash = eq == absl::string_view::npos ? eq : arg.find('/', eq);
        int64_t port = 0;
        if (slash == absl::string_view::npos ||
            !absl::SimpleAtoi(arg.substr(eq + 1, slash - eq - 1), &port)) {
          continue;
        }
        earlier[std::string(arg.substr(0, eq))] = {port, plan.injected_for_podman
                                                             ? std::string(arg.substr(slash))
                                                             : UnescapeArgs(arg.substr(slash))};
      }
    }
  }
  const YAML::Node containers = Field(spec_, "containers");
  for (size_t i = 0; i < containers.size(); ++i) {
    const YAML::Node c = containers[i];
    const std::string name = Text(Field(c, "name"));
    if (plan.injected_containers.count(name) > 0) continue;
    for (const char* kind : {"livenessProbe", "readinessProbe", "startupProbe"}) {
      const YAML::Node get = Field(Field(c, kind), "httpGet");
      if (!get.IsMap()) continue;
      Plan::AppProbe probe{.container = name, .kind = kind, .rewrite = rewrite};
      const std::string at = absl::StrCat("spec.containers[", i, "].", kind, ".httpGet");
      const YAML::Node port = Field(get, "port");
      const std::string path = Field(get, "path") ? Text(Field(get, "path")) : "/";
      if (Text(port) == absl::StrCat(kPrometheusPort) &&
          absl::StartsWith(path, probe.ProxyPath())) {
        auto it = earlier.find(path);
        if (it == earlier.end()) continue;  // not ours after all: left as it is
        probe.port = it->second.first;
        probe.path = it->second.second;
        plan.app_probes.push_back(probe);
        continue;
      }
      if (!rewrite) continue;
      const std::string scheme = Text(Field(get, "scheme"));
      if ((!scheme.empty() && scheme != "HTTP") || Field(get, "host") ||
          Field(get, "httpHeaders")) {
        plan.warnings.push_back(absl::StrCat(
            "container \"", name, "\" ", kind,
            ": an HTTPS probe, or one with a host or headers, is left as it is; under STRICT "
            "mTLS the kubelet's probe does not get through the inbound capture"));
        continue;
      }
      if (TypeOf(port) == ScalarType::kInt) {
        PlainInt(Text(port), &probe.port);
      } else {
        for (const YAML::Node& p : Field(c, "ports")) {
          if (Text(Field(p, "name")) == Text(port))
            PlainInt(Text(Field(p, "containerPort")), &probe.port);
        }
      }
      if (probe.port < 1 || probe.port > 65535) {
        return Error(port ? port : get, absl::StrCat(at, ".port"),
                     "must be a port number or the name of one of the container's ports");
      }
      if (!absl::StartsWith(path, "/")) {
        return Error(Field(get, "path"), absl::StrCat(at, ".path"), "must start with '/'");
      }
      probe.path = path;
      plan.app_probes.push_back(probe);
    }
  }
  return absl::OkStatus();
}

}  // namespace meshlet::controlplane::inject

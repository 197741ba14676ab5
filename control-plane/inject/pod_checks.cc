#include "control-plane/inject/pod_checks.h"

#include <cmath>
#include <cstdlib>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/config/field_path.h"
#include "control-plane/inject/node.h"

namespace meshlet::controlplane::inject {
namespace {

constexpr size_t kMaxAnnotationBytes = 256 * 1024;
constexpr int64_t kMaxId = 2147483647;

// The fieldRef paths the API server accepts for environment variables.
constexpr absl::string_view kFieldPaths[] = {"metadata.name",
                                             "metadata.namespace",
                                             "metadata.uid",
                                             "spec.nodeName",
                                             "spec.serviceAccountName",
                                             "status.hostIP",
                                             "status.hostIPs",
                                             "status.podIP",
                                             "status.podIPs"};

class Checker {
 public:
  explicit Checker(absl::string_view prefix) : prefix_(prefix) {}

  void Add(absl::string_view field, absl::string_view message) {
    problems_.push_back({absl::StrCat(prefix_, field), std::string(message)});
  }

  std::vector<PodProblem> Take() { return std::move(problems_); }

  // An integer node within [min, max]; adds a problem otherwise.
  bool Int(const YAML::Node& node, absl::string_view field, int64_t min, int64_t max,
           int64_t* value = nullptr) {
    int64_t v = 0;
    if (!node.IsScalar() || TypeOf(node) != ScalarType::kInt || !PlainInt(node.Scalar(), &v)) {
      Add(field, "must be an integer");
      return false;
    }
    if (v < min || v > max) {
      Add(field, absl::StrCat("must be from ", min, " to ", max));
      return false;
    }
    if (value != nullptr) *value = v;
    return true;
  }

  bool String(const YAML::Node& node, absl::string_view field) {
    if (IsString(node)) return true;
    Add(field, "must be a string");
    return false;
  }

  void StringMap(const YAML::Node& map, absl::string_view field, bool annotations) {
    if (!map) return;
    if (!map.IsMap()) {
      Add(field, "must be a map of strings");
      return;
    }
    size_t bytes = 0;
    for (auto it = map.begin(); it != map.end(); ++it) {
      const std::string key = it->first.Scalar();
      const std::string where = absl::StrCat(field, "['", key, "']");
      if (!IsQualifiedName(key)) {
        Add(where,
            "not a valid key: [prefix/]name, the name at most 63 letters, digits, '-', "
            "'_' or '.', starting and ending with a letter or digit");
      }
      if (String(it->second, where)) bytes += key.size() + it->second.Scalar().size();
    }
    if (annotations && bytes > kMaxAnnotationBytes) {
      Add(field, absl::StrCat("total size ", bytes, " bytes; at most ", kMaxAnnotationBytes));
    }
  }

  void Quantities(const YAML::Node& resources, absl::string_view field) {
    if (!resources) return;
    if (!resources.IsMap()) return Add(field, "must be a map");
    std::map<std::string, std::pair<double, std::string>> requests;  // value, text
    for (const char* part : {"requests", "limits"}) {
      const YAML::Node values = Field(resources, part);
      if (!values) continue;
      const std::string where = absl::StrCat(field, ".", part);
      if (!values.IsMap()) {
        Add(where, "must be a map of quantities");
        continue;
      }
      for (auto it = values.begin(); it != values.end(); ++it) {
        const std::string name = Text(it->first);
        const std::string at = absl::StrCat(where, ".", name);
        const std::string text = Text(it->second);
        absl::StatusOr<double> q = ParseQuantity(text);
        if (!q.ok()) {
          Add(at, q.status().message());
        } else if (part[0] == 'r') {
          requests[name] = {*q, text};
        } else if (auto r = requests.find(name); r != requests.end() && *q < r->second.first) {
          Add(at, absl::StrCat("must not be below the request (", r->second.second, ")"));
        }
      }
    }
  }

  void Probe(const YAML::Node& probe, absl::string_view field, bool success_must_be_one) {
    if (!probe) return;
    if (!probe.IsMap()) return Add(field, "must be a map");
    int handlers = 0;
    for (const char* h : {"httpGet", "tcpSocket", "exec", "grpc"}) {
      if (Field(probe, h)) ++handlers;
    }
    if (handlers != 1) Add(field, "must have exactly one of httpGet, tcpSocket, exec, grpc");
    if (const YAML::Node get = Field(probe, "httpGet")) {
      const YAML::Node port = Field(get, "port");
      const std::string at = absl::StrCat(field, ".httpGet.port");
      if (!port) {
        Add(at, "required");
      } else if (IsString(port)) {
        if (!IsIanaServiceName(port.Scalar())) Add(at, "not a port number or port name");
      } else {
        Int(port, at, 1, 65535);
      }
      if (Field(get, "path") &&
          (!IsString(Field(get, "path")) || !absl::StartsWith(Text(Field(get, "path")), "/"))) {
        Add(absl::StrCat(field, ".httpGet.path"), "must be an absolute path");
      }
    }
    for (const char* positive :
         {"periodSeconds", "timeoutSeconds", "failureThreshold", "successThreshold"}) {
      if (Field(probe, positive)) {
        Int(Field(probe, positive), absl::StrCat(field, ".", positive), 1, kMaxId);
      }
    }
    if (Field(probe, "initialDelaySeconds")) {
      Int(Field(probe, "initialDelaySeconds"), absl::StrCat(field, ".initialDelaySeconds"), 0,
          kMaxId);
    }
    int64_t success = 1;
    if (success_must_be_one && PlainInt(Text(Field(probe, "successThreshold")), &success) &&
        success != 1) {
      Add(absl::StrCat(field, ".successThreshold"), "must be 1");
    }
  }

  void Env(const YAML::Node& env, absl::string_view field) {
    if (!env) return;
    if (!env.IsSequence()) return Add(field, "must be a list");
    for (size_t i = 0; i < env.size(); ++i) {
      const YAML::Node var = env[i];
      const std::string at = absl::StrCat(field, "[", i, "]");
      if (!var.IsMap()) {
        Add(at, "must be a map");
        continue;
      }
      if (!Field(var, "name") || !IsEnvVarName(Text(Field(var, "name")))) {
        Add(absl::StrCat(at, ".name"), "must be [-._a-zA-Z][-._a-zA-Z0-9]*");
      }
      if (Field(var, "value") && Field(var, "valueFrom")) {
        Add(at, "value and valueFrom exclude each other");
      }
      if (Field(var, "value")) String(Field(var, "value"), absl::StrCat(at, ".value"));
      if (const YAML::Node from = Field(var, "valueFrom")) {
        if (!from.IsMap() || from.size() != 1) {
          Add(absl::StrCat(at, ".valueFrom"), "must have exactly one source");
        } else if (const YAML::Node ref = Field(from, "fieldRef")) {
          const std::string path = Text(Field(ref, "fieldPath"));
          bool known = absl::StartsWith(path, "metadata.labels['") ||
                       absl::StartsWith(path, "metadata.annotations['");
          for (absl::string_view p : kFieldPaths) known = known || path == p;
          if (!known) {
            Add(absl::StrCat(at, ".valueFrom.fieldRef.fieldPath"),
                absl::StrCat("\"", path, "\" is not a supported field path"));
          }
        }
      }
    }
  }

  void Ports(const YAML::Node& ports, absl::string_view field) {
    if (!ports) return;
    if (!ports.IsSequence()) return Add(field, "must be a list");
    std::set<std::string> names;
    for (size_t i = 0; i < ports.size(); ++i) {
      const YAML::Node port = ports[i];
      const std::string at = absl::StrCat(field, "[", i, "]");
      if (!port.IsMap()) {
        Add(at, "must be a map");
        continue;
      }
      Int(Field(port, "containerPort"), absl::StrCat(at, ".containerPort"), 1, 65535);
      if (const YAML::Node name = Field(port, "name")) {
        if (!IsIanaServiceName(name.Scalar())) {
          Add(absl::StrCat(at, ".name"),
              "at most 15 lowercase letters, digits and '-', with a letter, no \"--\", no '-' "
              "at either end");
        } else if (!names.insert(name.Scalar()).second) {
          Add(absl::StrCat(at, ".name"), absl::StrCat("\"", name.Scalar(), "\" is used twice"));
        }
      }
      if (const YAML::Node protocol = Field(port, "protocol")) {
        const std::string p = protocol.Scalar();
        if (p != "TCP" && p != "UDP" && p != "SCTP") {
          Add(absl::StrCat(at, ".protocol"), "must be TCP, UDP or SCTP");
        }
      }
    }
  }

  void SecurityContext(const YAML::Node& context, absl::string_view field) {
    if (!context) return;
    if (!context.IsMap()) return Add(field, "must be a map");
    int64_t user = -1;
    if (Field(context, "runAsUser")) {
      Int(Field(context, "runAsUser"), absl::StrCat(field, ".runAsUser"), 0, kMaxId, &user);
    }
    if (Field(context, "runAsGroup")) {
      Int(Field(context, "runAsGroup"), absl::StrCat(field, ".runAsGroup"), 0, kMaxId);
    }
    auto flag = [&](const char* name) {
      const YAML::Node n = Field(context, name);
      if (!n) return false;
      if (TypeOf(n) != ScalarType::kBool) {
        Add(absl::StrCat(field, ".", name), "must be true or false");
        return false;
      }
      return IsTrue(n);
    };
    if (flag("runAsNonRoot") && user == 0) {
      Add(absl::StrCat(field, ".runAsNonRoot"), "true contradicts runAsUser 0");
    }
    const bool privileged = flag("privileged");
    const YAML::Node escalation = Field(context, "allowPrivilegeEscalation");
    flag("readOnlyRootFilesystem");
    if (escalation && !flag("allowPrivilegeEscalation") && privileged) {
      Add(absl::StrCat(field, ".allowPrivilegeEscalation"), "false contradicts privileged true");
    }
    if (const YAML::Node caps = Field(context, "capabilities")) {
      for (const char* list : {"add", "drop"}) {
        const YAML::Node names = Field(caps, list);
        if (!names) continue;
        const std::string at = absl::StrCat(field, ".capabilities.", list);
        if (!names.IsSequence()) {
          Add(at, "must be a list");
          continue;
        }
        for (size_t i = 0; i < names.size(); ++i) String(names[i], absl::StrCat(at, "[", i, "]"));
      }
    }
  }

  void Volume(const YAML::Node& volume, absl::string_view at) {
    if (const YAML::Node config_map = Field(volume, "configMap")) {
      if (!Field(config_map, "name") || !config::IsDnsSubdomain(Text(Field(config_map, "name")))) {
        Add(absl::StrCat(at, ".configMap.name"), "must be a DNS-1123 subdomain");
      }
      Items(Field(config_map, "items"), absl::StrCat(at, ".configMap.items"));
    }
    if (const YAML::Node secret = Field(volume, "secret")) {
      if (!Field(secret, "secretName") ||
          !config::IsDnsSubdomain(Text(Field(secret, "secretName")))) {
        Add(absl::StrCat(at, ".secret.secretName"), "must be a DNS-1123 subdomain");
      }
      Items(Field(secret, "items"), absl::StrCat(at, ".secret.items"));
    }
    if (const YAML::Node projected = Field(volume, "projected")) {
      const YAML::Node sources = Field(projected, "sources");
      if (!sources.IsSequence() || sources.size() == 0) {
        return Add(absl::StrCat(at, ".projected.sources"), "must be a non-empty list");
      }
      for (size_t i = 0; i < sources.size(); ++i) {
        const YAML::Node token = Field(sources[i], "serviceAccountToken");
        if (!token) continue;
        const std::string where =
            absl::StrCat(at, ".projected.sources[", i, "].serviceAccountToken");
        if (!Field(token, "path") || !IsRelativePath(Text(Field(token, "path")))) {
          Add(absl::StrCat(where, ".path"), "must be a relative path without \"..\"");
        }
        if (Field(token, "expirationSeconds")) {
          Int(Field(token, "expirationSeconds"), absl::StrCat(where, ".expirationSeconds"), 600,
              int64_t{1} << 32);
        }
        if (Field(token, "audience"))
          String(Field(token, "audience"), absl::StrCat(where, ".audience"));
      }
    }
  }

  void Items(const YAML::Node& items, absl::string_view field) {
    if (!items) return;
    if (!items.IsSequence()) return Add(field, "must be a list");
    for (size_t i = 0; i < items.size(); ++i) {
      if (!Field(items[i], "key") || Text(Field(items[i], "key")).empty()) {
        Add(absl::StrCat(field, "[", i, "].key"), "required");
      }
      if (!Field(items[i], "path") || !IsRelativePath(Text(Field(items[i], "path")))) {
        Add(absl::StrCat(field, "[", i, "].path"), "must be a relative path without \"..\"");
      }
    }
  }

 private:
  std::string prefix_;
  std::vector<PodProblem> problems_;
};

}  // namespace

absl::StatusOr<double> ParseQuantity(absl::string_view text) {
  absl::string_view s = text;
  if (absl::ConsumePrefix(&s, "-")) {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\": must not be negative"));
  }
  absl::ConsumePrefix(&s, "+");
  size_t i = 0;
  size_t digits = 0;
  while (i < s.size() && (absl::ascii_isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) {
    if (s[i] != '.') ++digits;
    ++i;
  }
  const absl::string_view number = s.substr(0, i);
  const absl::string_view suffix = s.substr(i);
  const auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", text,
        "\" is not a quantity (a number with an optional suffix: m, k, M, G, T, P, E, Ki, Mi, "
        "Gi, Ti, Pi, Ei, or an exponent such as e3)"));
  };
  if (digits == 0 || std::count(number.begin(), number.end(), '.') > 1) return bad();
  double value = std::strtod(std::string(number).c_str(), nullptr);
  static const std::pair<absl::string_view, double> kSuffixes[] = {{"", 1},
                                                                   {"m", 1e-3},
                                                                   {"k", 1e3},
                                                                   {"M", 1e6},
                                                                   {"G", 1e9},
                                                                   {"T", 1e12},
                                                                   {"P", 1e15},
                                                                   {"E", 1e18},
                                                                   {"Ki", 1024},
                                                                   {"Mi", 1048576.0},
                                                                   {"Gi", 1073741824.0},
                                                                   {"Ti", 1099511627776.0},
                                                                   {"Pi", 1125899906842624.0},
                                                                   {"Ei", 1152921504606846976.0}};
  for (const auto& [name, scale] : kSuffixes) {
    if (suffix == name) return value * scale;
  }
  if (suffix.size() >= 2 && (suffix[0] == 'e' || suffix[0] == 'E')) {
    absl::string_view exponent = suffix.substr(1);
    const bool negative = absl::ConsumePrefix(&exponent, "-");
    if (!negative) absl::ConsumePrefix(&exponent, "+");
    int e = 0;
    if (!exponent.empty() && exponent.size() <= 3 &&
        std::all_of(exponent.begin(), exponent.end(),
                    [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); })) {
      e = std::atoi(std::string(exponent).c_str());
      return value * std::pow(10.0, negative ? -e : e);
    }
  }
  return bad();
}

bool IsIanaServiceName(absl::string_view name) {
  if (name.empty() || name.size() > 15 || name.front() == '-' || name.back() == '-') return false;
  if (absl::StrContains(name, "--")) return false;
  bool letter = false;
  for (char c : name) {
    if (absl::ascii_islower(static_cast<unsigned char>(c))) {
      letter = true;
    } else if (!absl::ascii_isdigit(static_cast<unsigned char>(c)) && c != '-') {
      return false;
    }
  }
  return letter;
}

bool IsQualifiedName(absl::string_view key) {
  absl::string_view name = key;
  if (size_t slash = key.find('/'); slash != absl::string_view::npos) {
    if (!config::IsDnsSubdomain(key.substr(0, slash))) return false;
    name = key.substr(slash + 1);
  }
  if (name.empty() || name.size() > 63) return false;
  auto alnum = [](char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)); };
  if (!alnum(name.front()) || !alnum(name.back())) return false;
  for (char c : name) {
    if (!alnum(c) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

bool IsEnvVarName(absl::string_view name) {
  if (name.empty() || absl::ascii_isdigit(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_') {
      return false;
    }
  }
  return true;
}

bool IsRelativePath(absl::string_view path) {
  if (path.empty() || path[0] == '/') return false;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") return false;
  }
  return true;
}

std::vector<PodProblem> CheckPod(const YAML::Node& metadata, const YAML::Node& spec,
                                 absl::string_view prefix, const std::set<std::string>& deep) {
  Checker check(prefix);
  if (metadata) {
    check.StringMap(Field(metadata, "annotations"), "metadata.annotations", true);
    check.StringMap(Field(metadata, "labels"), "metadata.labels", false);
  }
  if (!spec.IsDefined() || !spec.IsMap()) {
    check.Add("spec", "must be a map");
    return check.Take();
  }
  std::set<std::string> volume_names;
  if (const YAML::Node volumes = Field(spec, "volumes")) {
    if (!volumes.IsSequence()) check.Add("spec.volumes", "must be a list");
    for (size_t i = 0; volumes.IsSequence() && i < volumes.size(); ++i) {
      const YAML::Node volume = volumes[i];
      const std::string at = absl::StrCat("spec.volumes[", i, "]");
      const std::string name = Text(Field(volume, "name"));
      if (!config::IsDnsLabel(name)) {
        check.Add(absl::StrCat(at, ".name"), "must be a DNS-1123 label");
      } else if (!volume_names.insert(name).second) {
        check.Add(absl::StrCat(at, ".name"), absl::StrCat("\"", name, "\" is used twice"));
      }
      if (volume.IsMap() && volume.size() > 2) {
        check.Add(at, "must have at most one volume source (none is an emptyDir)");
      }
      if (deep.count(name) > 0) check.Volume(volume, at);
    }
  }
  std::set<std::string> container_names;
  for (const char* list : {"initContainers", "containers"}) {
    const YAML::Node containers = Field(spec, list);
    const bool init = list[0] == 'i';
    const std::string field = absl::StrCat("spec.", list);
    if (!containers) {
      if (!init) check.Add(field, "required");
      continue;
    }
    if (!containers.IsSequence() || (!init && containers.size() == 0)) {
      check.Add(field, init ? "must be a list" : "must be a non-empty list");
      continue;
    }
    for (size_t i = 0; i < containers.size(); ++i) {
      const YAML::Node c = containers[i];
      const std::string at = absl::StrCat(field, "[", i, "]");
      if (!c.IsMap()) {
        check.Add(at, "must be a map");
        continue;
      }
      const std::string name = Text(Field(c, "name"));
      if (!config::IsDnsLabel(name)) {
        check.Add(absl::StrCat(at, ".name"), "must be a DNS-1123 label");
      } else if (!container_names.insert(name).second) {
        check.Add(absl::StrCat(at, ".name"),
                  absl::StrCat("\"", name, "\" is used twice (containers and initContainers)"));
      }
      const YAML::Node restart = Field(c, "restartPolicy");
      if (restart && !init) {
        check.Add(absl::StrCat(at, ".restartPolicy"), "only init containers may have one");
      } else if (restart && restart.Scalar() != "Always") {
        check.Add(absl::StrCat(at, ".restartPolicy"), "must be Always (a sidecar) if set");
      }
      const bool sidecar = init && restart && restart.Scalar() == "Always";
      for (const char* field_name :
           {"readinessProbe", "livenessProbe", "startupProbe", "lifecycle"}) {
        if (init && !sidecar && Field(c, field_name)) {
          check.Add(absl::StrCat(at, ".", field_name),
                    "an init container without restartPolicy Always may not have one");
        }
      }
      if (const YAML::Node mounts = Field(c, "volumeMounts"); mounts && mounts.IsSequence()) {
        for (size_t m = 0; m < mounts.size(); ++m) {
          const std::string mount = Text(Field(mounts[m], "name"));
          if (volume_names.count(mount) == 0) {
            check.Add(absl::StrCat(at, ".volumeMounts[", m, "].name"),
                      absl::StrCat("no volume named \"", mount, "\""));
          }
          if (deep.count(name) > 0 &&
              (!Field(mounts[m], "mountPath") ||
               !absl::StartsWith(Text(Field(mounts[m], "mountPath")), "/"))) {
            check.Add(absl::StrCat(at, ".volumeMounts[", m, "].mountPath"),
                      "must be an absolute path");
          }
        }
      }
      if (deep.count(name) == 0) continue;
      if (!Field(c, "image") || !IsString(Field(c, "image")) || Text(Field(c, "image")).empty()) {
        check.Add(absl::StrCat(at, ".image"), "required");
      }
      check.Ports(Field(c, "ports"), absl::StrCat(at, ".ports"));
      check.Env(Field(c, "env"), absl::StrCat(at, ".env"));
      check.Probe(Field(c, "readinessProbe"), absl::StrCat(at, ".readinessProbe"), false);
      check.Probe(Field(c, "livenessProbe"), absl::StrCat(at, ".livenessProbe"), true);
      check.Probe(Field(c, "startupProbe"), absl::StrCat(at, ".startupProbe"), true);
      check.Quantities(Field(c, "resources"), absl::StrCat(at, ".resources"));
      check.SecurityContext(Field(c, "securityContext"), absl::StrCat(at, ".securityContext"));
      for (const char* strings : {"command", "args"}) {
        const YAML::Node list = Field(c, strings);
        if (!list) continue;
        if (!list.IsSequence()) {
          check.Add(absl::StrCat(at, ".", strings), "must be a list of strings");
          continue;
        }
        for (size_t k = 0; k < list.size(); ++k) {
          check.String(list[k], absl::StrCat(at, ".", strings, "[", k, "]"));
        }
      }
    }
  }
  return check.Take();
}

}  // namespace meshlet::controlplane::inject

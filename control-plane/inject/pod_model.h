#pragma once

// The pod model of injection (inject.h), shared by its files and private to this library: where
// a pod sits in a document (PodLocation), what it gets (Plan, decided from the input before
// anything is written), and the reader that checks a pod and makes its Plan (PodReader).
//
// PodReader's work is split by concern: the pod itself (its status annotation, containers,
// volumes, labels and workload) in pod_model.cc, the sidecar.meshlet.io/* and
// traffic.meshlet.io/* annotations in annotations.cc, the app's HTTP probes in probes.cc. What
// is written from a Plan: containers.h (the injected containers and volumes), probes.h (probes),
// annotations.h (the status annotation); inject.cc puts it together.
//
// Plain values and a reader that borrows its inputs for one Read(); no state; never throws.

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/config/yaml_proto.h"
#include "control-plane/inject/inject.h"
#include "control-plane/inject/node.h"

namespace meshlet::controlplane::inject {

// The volumes injection adds (a pod's own volume of one of these names is an error).
inline constexpr char kTrustVolume[] = "meshlet-trust";
inline constexpr char kTokenVolume[] = "meshlet-token";
inline constexpr char kJoinTokenVolume[] = "meshlet-join-token";
inline constexpr char kDataVolume[] = "meshlet-data";
inline constexpr char kDefaultContainerAnnotation[] = "kubectl.kubernetes.io/default-container";
// The sidecar's own ports: the app shares the pod's network namespace and cannot use them.
inline constexpr int kReservedPorts[] = {kAdminPort, kOutboundPort, kInboundPort, kPrometheusPort,
                                         kHealthPort};

// "$" doubled, so the kubelet's $(VAR) expansion of args leaves the text as it is.
std::string EscapeForArgs(absl::string_view text);
// EscapeForArgs undone.
std::string UnescapeArgs(absl::string_view text);

// One step of a path into the document: a map key or a sequence index.
using PathStep = std::variant<std::string, size_t>;

// A pod found in a document: where it is, and the input nodes.
struct PodLocation {
  std::vector<PathStep> path;  // from the document to the pod (or pod template)
  std::string field;           // the same as text: "spec.template", "items[1].spec.template"
  std::string object;          // `Deployment "reviews-v1"`
  std::string kind;
  std::string name;            // the object's name (the workload's, for a template)
  std::string object_prefix;   // the object's own fields: "" or "items[1]."
  YAML::Node object_metadata;  // the object's (the workload's, for a template)
  YAML::Node pod;              // has metadata and spec
  bool is_pod = false;         // a Pod (not a template): metadata.name is needed
};

// What one pod gets, decided from the input before anything is written.
struct Plan {
  Outcome outcome = Outcome::kInjected;
  std::string reason;
  std::vector<std::string> warnings;
  SidecarMode mode = SidecarMode::kNative;
  std::string image;
  bool join_token = false;
  std::string join_token_secret;
  std::string cpu, memory, cpu_limit, memory_limit;
  std::string drain_time, log_level;
  std::vector<std::pair<std::string, std::string>> capture_flags;  // --flag, value
  int capture_check_port = kCaptureCheckPort;                      // 0: no --capture-check
  std::string service;
  // The pod's revision ("" the unnamed one) and its control plane's discovery address and
  // service account.
  std::string revision;
  std::string control_plane_address;
  std::string control_plane_service_account;
  std::vector<std::pair<std::string, std::string>> labels;
  std::vector<int64_t> ports;
  std::string first_app_container;
  bool has_default_container = false;
  bool needs_metadata = false;  // a template without metadata: add it, before spec
  // The pod's namespace (its own, else its workload's, else "default") and service account
  // ("default" unless set): written as values for podman, which has no downward API for them.
  std::string pod_namespace;
  std::string service_account;
  // The pod's restartPolicy is to be OnFailure (Options::podman: podman 4.3 reruns init
  // containers under Always), or back to the default (an earlier --podman injection set it).
  bool restart_on_failure = false;
  bool restore_restart_policy = false;
  // The earlier injection was for podman (the short status): its arguments are not escaped.
  bool injected_for_podman = false;
  // What an earlier injection added (from its status annotation), taken out before injecting.
  std::set<std::string> injected_init_containers, injected_containers, injected_volumes,
      injected_annotations;
  // The app containers' HTTP probes: each as the app wrote it, and whether it goes through the
  // proxy (rewritten) or back as written (restored after an earlier rewrite).
  struct AppProbe {
    std::string container;
    std::string kind;  // "livenessProbe", "readinessProbe", "startupProbe"
    int64_t port = 0;
    std::string path;
    bool rewrite = true;
    // Where the rewritten probe points on the proxy: /app-health/<container>/<livez|...>.
    std::string ProxyPath() const;
  };
  std::vector<AppProbe> app_probes;
};

// InvalidArgument for the whole document (`object` empty) or one of its objects, at `node` (its
// line and column when it came from text).
absl::Status DocumentError(const config::YamlParseOptions& source, const YAML::Node& node,
                           absl::string_view object, absl::string_view field,
                           absl::string_view reason);

// Reads one pod (or pod template) and decides its Plan; errors name the object and the pod's
// field. Borrows `where`, `options` and `source` for its lifetime; one Read() per reader.
class PodReader {
 public:
  PodReader(const PodLocation& where, const Options& options,
            const config::YamlParseOptions& source)
      : where_(where),
        options_(options),
        source_(source),
        prefix_(where.field.empty() ? "" : absl::StrCat(where.field, ".")) {}

  absl::StatusOr<Plan> Read();

 private:
  // InvalidArgument at `node` (its position when it came from text) for the pod's `field`.
  absl::Status Error(const YAML::Node& node, absl::string_view field,
                     absl::string_view reason) const {
    return DocumentError(source_, node, where_.object, absl::StrCat(prefix_, field), reason);
  }

  // A map or nothing (absent or null) at `field`; the map, or an undefined node.
  absl::StatusOr<YAML::Node> OptionalMap(const YAML::Node& parent, absl::string_view key,
                                         absl::string_view field) const;
  // A list or nothing at `field`; an empty list for nothing.
  absl::StatusOr<YAML::Node> OptionalList(const YAML::Node& parent, absl::string_view key,
                                          absl::string_view field) const;

  std::string AnnotationField(absl::string_view key) const {
    return absl::StrCat("metadata.annotations['", key, "']");
  }

  // The annotation's value, if set.
  std::optional<std::string> Annotation(absl::string_view key) const {
    const YAML::Node value = Field(annotations_, key);
    if (!value) return std::nullopt;
    return Text(value);
  }

  // pod_model.cc
  // The service and version (workload.h), after the labels.
  absl::Status ReadWorkload(Plan& plan) const;
  absl::Status ReadContainers(Plan& plan) const;
  // The pod's revision (Options::revision) and its control plane; a pod of another revision is
  // kSkipped with Options::own_revision_only.
  absl::Status ReadRevision(Plan& plan) const;

  // annotations.cc
  // What an earlier injection added, from its status annotation.
  absl::Status ReadStatus(Plan& plan) const;
  absl::Status ReadAnnotations(Plan& plan) const;
  // The traffic.meshlet.io/* capture lists (common/capture), as `sidecar init` flags.
  absl::Status CaptureLists(Plan& plan) const;
  absl::StatusOr<std::string> Quantity(absl::string_view key, const std::string& fallback) const;
  // The --capture-check port: the annotation's or the default, captured by the pod's rules.
  absl::Status ReadCaptureCheck(Plan& plan) const;

  // probes.cc
  // The app containers' HTTP probes to rewrite, or to restore from an earlier injection.
  absl::Status ReadProbes(Plan& plan) const;

  const PodLocation& where_;
  const Options& options_;
  const config::YamlParseOptions& source_;
  const std::string prefix_;
  YAML::Node metadata_, annotations_, labels_, spec_;
};

}  // namespace meshlet::controlplane::inject

// upgrade: moves namespaces to another control-plane revision one at a time (docs/upgrades.md,
// ADR 0070): relabels the namespace, restarts its Deployments, StatefulSets and DaemonSets as
// `kubectl rollout restart` does (their controllers replace the pods, which the revision's
// webhook injects, as each one's strategy allows), and waits until every pod is on the revision
// and ready before the next namespace.
// Talks to the Kubernetes API server, not to the control plane.

#include "control-plane/cli/upgrade.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <initializer_list>
#include <map>
#include <optional>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/base/file.h"
#include "common/base/json.h"
#include "control-plane/cli/commands.h"
#include "control-plane/cli/http_client.h"
#include "control-plane/cli/output.h"
#include "control-plane/cli/webhook_overlap.h"
#include "control-plane/inject/node.h"
#include "control-plane/inject/revision.h"

namespace meshlet::controlplane::cli {
namespace {

constexpr char kInjectLabel[] = "meshlet.io/inject";
constexpr char kPodInjectLabel[] = "sidecar.meshlet.io/inject";
constexpr char kPodRevisionAnnotation[] = "sidecar.meshlet.io/revision";

// `node` when it is a list, else an empty one (iterating a map as a list throws).
YAML::Node ListOf(const YAML::Node& node) {
  return node.IsDefined() && node.IsSequence() ? node : YAML::Node(YAML::NodeType::Sequence);
}

int IntOf(const YAML::Node& node, int fallback = 0) {
  int value = fallback;
  if (node && node.IsScalar()) absl::SimpleAtoi(node.Scalar(), &value);
  return value;
}

std::string TargetName(absl::string_view target) { return inject::RevisionDisplayName(target); }

bool Selects(const YAML::Node& match_labels, const YAML::Node& labels) {
  if (!match_labels.IsMap() || match_labels.size() == 0) return false;
  for (auto it = match_labels.begin(); it != match_labels.end(); ++it) {
    const YAML::Node value = At(labels, {Scalar(it->first)});
    if (!value || Scalar(value) != Scalar(it->second)) return false;
  }
  return true;
}

bool PodReady(const YAML::Node& pod) {
  for (const YAML::Node& c : ListOf(At(pod, {"status", "conditions"}))) {
    if (Scalar(At(c, {"type"})) == "Ready") return Scalar(At(c, {"status"})) == "True";
  }
  return false;
}

absl::StatusOr<YAML::Node> LoadJson(absl::string_view text, absl::string_view what) {
  try {
    YAML::Node node = YAML::Load(std::string(text));
    if (node.IsMap()) return node;
  } catch (const YAML::Exception&) {
  }
  return absl::InvalidArgumentError(absl::StrCat(what, ": not a JSON object"));
}

}  // namespace

const std::vector<WorkloadKind>& WorkloadKinds() {
  static const auto* kinds =
      new std::vector<WorkloadKind>{{"Deployment", "deployments", "deployment"},
                                    {"StatefulSet", "statefulsets", "statefulset"},
                                    {"DaemonSet", "daemonsets", "daemonset"}};
  return *kinds;
}

std::string WorkloadState::Display() const {
  for (const WorkloadKind& k : WorkloadKinds()) {
    if (kind == k.kind) return absl::StrCat(k.display, "/", name);
  }
  return name;
}

bool WorkloadState::Done(absl::string_view target) const {
  const std::string want = TargetName(target);
  int on_target = 0, elsewhere = 0;
  for (const auto& [revision, count] : pods_by_revision) {
    (revision == want ? on_target : elsewhere) += count;
  }
  auto ready = ready_by_revision.find(want);
  return rolled_out && elsewhere == 0 && terminating == 0 && on_target == replicas &&
         ready != ready_by_revision.end() && ready->second == replicas;
}

std::string WorkloadState::PodsText() const {
  if (pods_by_revision.empty()) return "no pods";
  return absl::StrJoin(pods_by_revision, ", ", [](std::string* out, const auto& entry) {
    absl::StrAppend(out, entry.second, " on ", entry.first);
  });
}

std::string WorkloadState::Waiting(absl::string_view target) const {
  std::vector<std::string> what;
  if (!rolled_out) what.push_back(absl::StrCat("the ", kind, "'s rollout"));
  const std::string want = TargetName(target);
  for (const auto& [revision, count] : pods_by_revision) {
    if (revision != want) what.push_back(absl::StrCat(count, " pod(s) still on ", revision));
  }
  if (terminating > 0) what.push_back(absl::StrCat(terminating, " pod(s) terminating"));
  auto ready = ready_by_revision.find(want);
  const int ready_on_target = ready == ready_by_revision.end() ? 0 : ready->second;
  if (ready_on_target < replicas) {
    what.push_back(absl::StrCat(ready_on_target, "/", replicas, " ready on ", want));
  }
  return what.empty() ? "nothing" : absl::StrJoin(what, ", ");
}

absl::StatusOr<NamespaceState> ReadNamespace(absl::string_view ns_json,
                                             const std::vector<std::string>& workload_lists,
                                             absl::string_view pods_json) {
  absl::StatusOr<YAML::Node> ns = LoadJson(ns_json, "the Namespace");
  if (!ns.ok()) return ns.status();
  std::vector<std::pair<std::string, YAML::Node>> lists;
  for (size_t i = 0; i < workload_lists.size() && i < WorkloadKinds().size(); ++i) {
    const std::string kind = WorkloadKinds()[i].kind;
    absl::StatusOr<YAML::Node> list =
        LoadJson(workload_lists[i], absl::StrCat("the ", kind, "List"));
    if (!list.ok()) return list.status();
    lists.emplace_back(kind, *std::move(list));
  }
  absl::StatusOr<YAML::Node> pods = LoadJson(pods_json, "the PodList");
  if (!pods.ok()) return pods.status();
  NamespaceState state;
  state.name = Scalar(At(*ns, {"metadata", "name"}));
  const YAML::Node labels = At(*ns, {"metadata", "labels"});
  for (auto it = labels.begin(); labels.IsMap() && it != labels.end(); ++it) {
    state.labels[Scalar(it->first)] = Scalar(it->second);
  }
  if (At(labels, {inject::kRevisionLabel})) {
    state.revision = Scalar(At(labels, {inject::kRevisionLabel}));
  } else if (Scalar(At(labels, {kInjectLabel})) == "enabled") {
    state.revision = inject::kDefaultRevision;
  }
  for (const auto& [kind, list] : lists) {
    for (const YAML::Node& d : ListOf(At(list, {"items"}))) {
      WorkloadState w;
      w.kind = kind;
      w.name = Scalar(At(d, {"metadata", "name"}));
      w.generation = IntOf(At(d, {"metadata", "generation"}));
      const YAML::Node status = At(d, {"status"});
      w.replicas = kind == "DaemonSet" ? IntOf(At(status, {"desiredNumberScheduled"}))
                                       : IntOf(At(d, {"spec", "replicas"}), 1);
      const YAML::Node template_metadata = At(d, {"spec", "template", "metadata"});
      const std::string pinned = Scalar(At(template_metadata, {"labels", inject::kRevisionLabel}));
      if (!pinned.empty()) {
        w.skip_reason = absl::StrCat("its pods are labelled ", inject::kRevisionLabel, "=", pinned,
                                     ", which wins over the namespace's");
      } else if (Scalar(At(template_metadata, {"labels", kPodInjectLabel})) == "false" ||
                 Scalar(At(template_metadata, {"annotations", kPodInjectLabel})) == "false") {
        w.skip_reason = "its pods opt out of injection";
      } else if (Scalar(At(d, {"spec", "template", "spec", "hostNetwork"})) == "true") {
        w.skip_reason = "its pods are on the host's network, which is never injected";
      }
      w.restarted_at = Scalar(At(template_metadata, {"annotations", kRestartedAtAnnotation}));
      const bool observed = IntOf(At(status, {"observedGeneration"})) >= w.generation;
      if (kind == "DaemonSet") {
        w.rolled_out = observed && IntOf(At(status, {"updatedNumberScheduled"})) == w.replicas &&
                       IntOf(At(status, {"numberAvailable"})) == w.replicas;
      } else if (kind == "StatefulSet") {
        const std::string update = Scalar(At(status, {"updateRevision"}));
        w.rolled_out = observed && IntOf(At(status, {"updatedReplicas"})) == w.replicas &&
                       IntOf(At(status, {"readyReplicas"})) == w.replicas &&
                       IntOf(At(status, {"replicas"})) == w.replicas &&
                       (update.empty() || Scalar(At(status, {"currentRevision"})) == update);
      } else {
        w.rolled_out = observed && IntOf(At(status, {"updatedReplicas"})) == w.replicas &&
                       IntOf(At(status, {"replicas"})) == w.replicas &&
                       IntOf(At(status, {"availableReplicas"})) == w.replicas;
      }
      std::map<std::string, int> by_revision;
      const YAML::Node selector = At(d, {"spec", "selector", "matchLabels"});
      for (const YAML::Node& p : ListOf(At(*pods, {"items"}))) {
        if (!Selects(selector, At(p, {"metadata", "labels"}))) continue;
        if (At(p, {"metadata", "deletionTimestamp"})) {
          ++w.terminating;
          continue;
        }
        const std::string phase = Scalar(At(p, {"status", "phase"}));
        if (phase == "Succeeded" || phase == "Failed") continue;
        std::string revision = Scalar(At(p, {"metadata", "annotations", kPodRevisionAnnotation}));
        if (revision.empty()) revision = "none";
        ++by_revision[revision];
        if (PodReady(p)) ++w.ready_by_revision[revision];
        w.pod_names_by_revision[revision].push_back(Scalar(At(p, {"metadata", "name"})));
      }
      w.pods_by_revision.assign(by_revision.begin(), by_revision.end());
      state.workloads.push_back(std::move(w));
    }
  }
  // By kind (WorkloadKinds' order), then name.
  auto order = [](const WorkloadState& w) {
    size_t i = 0;
    while (i < WorkloadKinds().size() && WorkloadKinds()[i].kind != w.kind) ++i;
    return std::pair(i, w.name);
  };
  std::sort(state.workloads.begin(), state.workloads.end(),
            [&](const WorkloadState& a, const WorkloadState& b) { return order(a) < order(b); });
  return state;
}

std::string ProxiesNotConnected(absl::string_view proxies_json,
                                const std::vector<std::string>& pods, absl::string_view ns,
                                absl::string_view target) {
  absl::StatusOr<YAML::Node> proxies = LoadJson(proxies_json, "GET /api/v1/proxies");
  if (!proxies.ok()) return std::string(proxies.status().message());
  std::map<std::string, YAML::Node> by_id;
  for (const YAML::Node& p : ListOf(At(*proxies, {"items"}))) {
    by_id[Scalar(At(p, {"id"}))] = p;
  }
  const std::string want = TargetName(target);
  std::vector<std::string> missing;
  for (const std::string& pod : pods) {
    const std::string id = absl::StrCat(pod, ".", ns);
    auto it = by_id.find(id);
    if (it == by_id.end()) {
      missing.push_back(absl::StrCat("proxy ", id, " not connected"));
      continue;
    }
    const std::string revision = Scalar(At(it->second, {"revision"}));
    if (revision != want) {
      missing.push_back(
          absl::StrCat("proxy ", id, " reports revision ", revision.empty() ? "none" : revision));
      continue;
    }
    // Every type the sidecar subscribed to: an older sidecar does not subscribe to the types
    // added since its release (service_routes shows UNSUBSCRIBED for it).
    const YAML::Node types = At(it->second, {"types"});
    bool acked = types.IsMap();
    size_t subscribed = 0;
    for (auto t = types.begin(); acked && t != types.end(); ++t) {
      const std::string state = Scalar(At(t->second, {"state"}));
      if (state == "UNSUBSCRIBED") continue;
      ++subscribed;
      acked = state == "ACKED";
    }
    acked = acked && subscribed > 0;
    if (!acked) missing.push_back(absl::StrCat("proxy ", id, " has not ACKed its configuration"));
  }
  return absl::StrJoin(missing, ", ");
}

std::string NamespaceRevisionPatch(absl::string_view target) {
  if (target.empty()) {
    return absl::StrCat(R"({"metadata":{"labels":{)", JsonQuote(inject::kRevisionLabel), ":null,",
                        JsonQuote(kInjectLabel), R"(:"enabled"}}})");
  }
  return absl::StrCat(R"({"metadata":{"labels":{)", JsonQuote(inject::kRevisionLabel), ":",
                      JsonQuote(target), "}}}");
}

std::map<std::string, std::string> LabelsOnRevision(std::map<std::string, std::string> labels,
                                                    absl::string_view target) {
  if (target.empty()) {
    labels.erase(inject::kRevisionLabel);
    labels[kInjectLabel] = "enabled";
  } else {
    labels[inject::kRevisionLabel] = std::string(target);
  }
  return labels;
}

std::string RestartPatch(absl::string_view at) {
  return absl::StrCat(R"({"spec":{"template":{"metadata":{"annotations":{)",
                      JsonQuote(kRestartedAtAnnotation), ":", JsonQuote(at), "}}}}}");
}

namespace {

std::string Seconds(absl::Duration d) {
  return absl::StrCat(absl::StrFormat("%.1f", absl::ToDoubleSeconds(d)), " s");
}

class Upgrade final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    std::vector<flags::Flag> table = {
        RevisionFlag(&revision_,
                     "the revision to move to, or a tag (meshctl tag) whose revision to move "
                     "to (required); \"default\" is the control plane installed without one "
                     "(or the revision the tag default points at)",
                     /*required=*/true),
        {.name = "--namespace",
         .shorthand = "-n",
         .value = "NS",
         .help = "a namespace to move, in the order given; repeatable, at least one",
         .required = true,
         .set =
             [this](absl::string_view v) {
               namespaces_.emplace_back(v);
               return absl::OkStatus();
             }},
        DryRunFlag(&dry_run_, "print what would change, change nothing"),
        Switch("--check-proxies", "", &check_proxies_,
               "also ask the revision's control plane (the API meshctl's context or --server "
               "names, which must be that revision's: --revision implies its identity) that each "
               "moved pod's "
               "proxy is connected to it and has ACKed its configuration"),
        Switch("--force", "", &force_,
               "move a namespace even when more than one meshlet webhook configuration would "
               "select its pods (each such pod is sent to every one of them; the first called "
               "injects it)"),
        flags::PositiveDurationFlag(
            "--rollout-timeout", &timeout_,
            "how long one namespace may take to be on the revision (default 5m)", "5m"),
    };
    for (flags::Flag& flag : KubernetesFlagTable(kubernetes_)) table.push_back(std::move(flag));
    return table;
  }

  int Run(Session& session) override {
    if (!session.positional().empty()) return session.Fail(session.UsageFailure());
    std::ostream& out = session.io().out;
    absl::StatusOr<KubernetesClient> client = KubernetesClient::Connect(
        kubernetes_, session.environment(),
        "meshctl upgrade needs get, list and patch on namespaces, deployments, statefulsets and "
        "daemonsets, list on pods, and get and list on mutatingwebhookconfigurations");
    if (!client.ok()) return session.Fail({kExitUsage, std::string(client.status().message())});
    // A tag stands for the revision it points at; namespaces are labelled with the tag.
    absl::StatusOr<std::optional<std::string>> tagged =
        TagRevision(*client, revision_.empty() ? inject::kDefaultTag : revision_);
    if (!tagged.ok()) return session.Fail({kExitFailed, std::string(tagged.status().message())});
    resolved_ = tagged->value_or(revision_);
    const std::string target = TargetName(resolved_);
    const std::string tag_text =
        tagged->has_value() ? absl::StrCat(" (tag ", TargetName(revision_), ")") : "";
    // The revision's control plane: its Deployment has an available replica.
    absl::StatusOr<std::string> available =
        ControlPlaneAvailable(*client, kubernetes_.control_plane_namespace, resolved_);
    if (!available.ok()) {
      return session.Fail({absl::IsUnavailable(available.status()) ? kExitUnreachable : kExitFailed,
                           std::string(available.status().message())});
    }
    // --revision (global) implied the identity of the API --check-proxies asks: the tag's
    // revision's, not the tag's.
    if (std::optional<std::string>& implied = session.mutable_connection_flags().revision;
        implied.has_value() && *implied == revision_) {
      implied = resolved_;
    }
    if (check_proxies_) {
      if (std::optional<Failure> f = session.Connect()) return session.Fail(*f);
      absl::StatusOr<HttpResponse> version = session.api().SendPlain("GET", "/version");
      if (!version.ok() || version->status != 200) {
        return session.Fail(
            session.api().PlainFailure(absl::StrCat("--check-proxies: the control plane at ",
                                                    session.api().server(), ": unreachable"),
                                       version));
      }
      std::string api_revision;
      try {
        api_revision = Scalar(At(YAML::Load(version->body), {"revision"}));
      } catch (const YAML::Exception&) {
      }
      if (api_revision != target) {
        return session.Fail(
            {kExitFailed,
             absl::StrCat("--check-proxies: the control plane at ", session.api().server(),
                          " is revision ", api_revision.empty() ? "(none said)" : api_revision,
                          ", not ", target, ": point meshctl at revision ", target,
                          "'s API (--server; --revision ", target,
                          " implies its identity spiffe://.../sa/",
                          inject::ControlPlaneName(resolved_), ")")});
      }
    }
    // The webhooks that would inject the namespaces' pods (ADR 0082).
    absl::StatusOr<std::vector<InjectionWebhook>> webhooks = ClusterInjectionWebhooks(*client);
    if (!webhooks.ok()) {
      return session.Fail({absl::IsUnavailable(webhooks.status()) ? kExitUnreachable : kExitFailed,
                           std::string(webhooks.status().message())});
    }
    webhooks_ = *std::move(webhooks);
    out << "revision " << target << tag_text << ": " << *available
        << (dry_run_ ? "; dry run: nothing is changed" : "") << "\n";
    for (const std::string& ns : namespaces_) {
      if (int code = MoveNamespace(session, *client, ns); code != kExitOk) return code;
    }
    return kExitOk;
  }

 private:
  absl::StatusOr<NamespaceState> Read(const KubernetesClient& client, const std::string& ns) {
    absl::StatusOr<std::string> namespace_json =
        client.Fetch("GET", absl::StrCat("/api/v1/namespaces/", ns));
    if (!namespace_json.ok()) return namespace_json.status();
    std::vector<std::string> lists;
    for (const WorkloadKind& kind : WorkloadKinds()) {
      absl::StatusOr<std::string> list =
          client.Fetch("GET", absl::StrCat("/apis/apps/v1/namespaces/", ns, "/", kind.resource));
      if (!list.ok()) return list.status();
      lists.push_back(*std::move(list));
    }
    absl::StatusOr<std::string> pods =
        client.Fetch("GET", absl::StrCat("/api/v1/namespaces/", ns, "/pods"));
    if (!pods.ok()) return pods.status();
    return ReadNamespace(*namespace_json, lists, *pods);
  }

  // kExitOk when at most one meshlet webhook configuration selects the namespace's pods without
  // a meshlet.io/rev label of their own once it is labelled for the revision (or --force, with
  // a warning); otherwise the failure naming the configurations, their webhooks and the pods.
  int RefuseOverlaps(Session& session, const NamespaceState& state) {
    std::map<std::string, std::string> labels = LabelsOnRevision(state.labels, revision_);
    labels.emplace("kubernetes.io/metadata.name", state.name);
    std::vector<InjectionWebhook> selecting;
    for (const InjectionWebhook& hook : webhooks_) {
      if (hook.namespaces.Matches(labels)) selecting.push_back(hook);
    }
    const std::vector<WebhookOverlap> overlaps =
        OverlapsAmong(selecting, LabelSelector::Parse(absl::StrCat("!", inject::kRevisionLabel)));
    if (overlaps.empty()) return kExitOk;
    const std::string what =
        absl::StrCat("namespace ", state.name,
                     ": more than one meshlet webhook configuration selects its pods "
                     "on ",
                     TargetName(revision_),
                     "; the API server would send each such pod to all of them, "
                     "and the first called would inject it:\n",
                     DescribeOverlaps(overlaps, {{state.name, labels}}));
    if (force_) {
      session.io().err << "warning: " << what << "moved anyway (--force)\n";
      return kExitOk;
    }
    return session.Fail(
        {kExitFailed, absl::StrCat(what,
                                   "remove or narrow the configuration that should not "
                                   "select them (meshctl tag list shows the tags), or "
                                   "give --force")});
  }

  int MoveNamespace(Session& session, const KubernetesClient& client, const std::string& ns) {
    std::ostream& out = session.io().out;
    const std::string target = TargetName(resolved_);
    const absl::Time started = absl::Now();
    absl::StatusOr<NamespaceState> state = Read(client, ns);
    if (!state.ok()) {
      return session.Fail(
          {kExitFailed, absl::StrCat("namespace ", ns, ": ", state.status().message())});
    }
    const std::string from = state->revision.empty() ? "no revision (not injected)"
                                                     : absl::StrCat("revision ", state->revision);
    const bool relabel = state->revision != TargetName(revision_);
    out << "namespace " << ns << ": " << from
        << (relabel ? absl::StrCat(" -> ", TargetName(revision_)) : " already") << " ("
        << (revision_.empty()
                ? absl::StrCat(inject::kRevisionLabel, " removed, ", kInjectLabel, "=enabled")
                : absl::StrCat(inject::kRevisionLabel, "=", revision_))
        << ")\n";
    std::vector<const WorkloadState*> restart;
    for (const WorkloadState& w : state->workloads) {
      if (!w.skip_reason.empty()) {
        out << "  " << w.Display() << ": left alone: " << w.skip_reason << " (" << w.PodsText()
            << ")\n";
      } else if (w.Done(resolved_)) {
        out << "  " << w.Display() << ": already on " << target << " (" << w.PodsText() << ")\n";
      } else {
        out << "  " << w.Display() << ": restart (" << w.PodsText() << ")\n";
        restart.push_back(&w);
      }
    }
    if (int code = RefuseOverlaps(session, *state); code != kExitOk) return code;
    if (dry_run_) return kExitOk;
    if (relabel) {
      absl::StatusOr<std::string> patched = client.Fetch(
          "PATCH", absl::StrCat("/api/v1/namespaces/", ns), NamespaceRevisionPatch(revision_));
      if (!patched.ok())
        return session.Fail({kExitFailed, std::string(patched.status().message())});
    }
    const std::string at = absl::FormatTime(absl::RFC3339_sec, absl::Now(), absl::UTCTimeZone());
    std::vector<std::string> pending;  // Display() of each restarted workload
    for (const WorkloadState* w : restart) {
      const char* resource = "deployments";
      for (const WorkloadKind& kind : WorkloadKinds()) {
        if (w->kind == kind.kind) resource = kind.resource;
      }
      absl::StatusOr<std::string> patched = client.Fetch(
          "PATCH", absl::StrCat("/apis/apps/v1/namespaces/", ns, "/", resource, "/", w->name),
          RestartPatch(at));
      if (!patched.ok())
        return session.Fail({kExitFailed, std::string(patched.status().message())});
      pending.push_back(w->Display());
    }
    // Wait until every restarted workload has all its pods on the revision, ready.
    const absl::Time deadline = absl::Now() + timeout_;
    std::string waiting;
    while (!pending.empty()) {
      absl::StatusOr<NamespaceState> now = Read(client, ns);
      if (!now.ok()) {
        return session.Fail(
            {kExitFailed, absl::StrCat("namespace ", ns, ": ", now.status().message())});
      }
      std::string proxies_json;
      if (check_proxies_) {
        int exit_code = kExitOk;
        std::optional<ApiReply> reply =
            session.api().Call("GET", "/api/v1/proxies", "", &exit_code);
        if (!reply.has_value()) return exit_code;
        if (reply->http.status != 200) {
          return session.Fail(
              {kExitFailed, absl::StrCat("--check-proxies: ", reply->ErrorMessage())});
        }
        proxies_json = reply->http.body;
      }
      std::vector<std::string> left;
      waiting.clear();
      for (const WorkloadState& w : now->workloads) {
        if (std::find(pending.begin(), pending.end(), w.Display()) == pending.end()) continue;
        // Done only for our restart: an earlier rollout that happens to be complete is not.
        std::string not_connected;
        if (w.restarted_at == at && w.Done(resolved_) && check_proxies_) {
          auto names = w.pod_names_by_revision.find(target);
          not_connected = ProxiesNotConnected(
              proxies_json,
              names == w.pod_names_by_revision.end() ? std::vector<std::string>{} : names->second,
              ns, resolved_);
        }
        if (w.restarted_at == at && w.Done(resolved_) && not_connected.empty()) {
          out << "  " << w.Display() << ": " << w.replicas << "/" << w.replicas << " pods on "
              << target << ", ready"
              << (check_proxies_ ? ", their proxies connected to it and ACKed" : "") << " ("
              << Seconds(absl::Now() - started) << ")\n";
        } else {
          left.push_back(w.Display());
          absl::StrAppend(&waiting, waiting.empty() ? "" : "; ", w.Display(), ": ",
                          w.restarted_at != at     ? "the restart"
                          : !not_connected.empty() ? not_connected
                                                   : w.Waiting(resolved_));
        }
      }
      pending = std::move(left);
      if (pending.empty()) break;
      if (absl::Now() >= deadline) {
        return session.Fail(
            {kExitFailed,
             absl::StrCat("namespace ", ns, ": not on ", target, " after ",
                          absl::FormatDuration(timeout_), ": waiting for ", waiting,
                          ". The namespace is labelled for ", TargetName(revision_),
                          "; to go back: meshctl "
                          "upgrade --revision ",
                          state->revision.empty() ? "REVISION" : state->revision, " -n ", ns)});
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    out << "namespace " << ns << ": on " << target << " (" << Seconds(absl::Now() - started)
        << ")\n";
    return kExitOk;
  }

  std::string revision_;  // the --revision given: a revision, or a tag (the namespaces' label)
  std::string resolved_;  // the revision: revision_'s, or the one the tag revision_ points at
  std::vector<std::string> namespaces_;
  bool dry_run_ = false;
  bool check_proxies_ = false;
  bool force_ = false;
  absl::Duration timeout_ = absl::Minutes(5);
  std::vector<InjectionWebhook> webhooks_;  // every meshlet injection webhook in the cluster
  KubernetesFlags kubernetes_;
};

}  // namespace

CommandSpec UpgradeCommand() {
  return {
      .name = "upgrade",
      .summary = "move namespaces to another control-plane revision, one at a time",
      .about =
          "Moves each namespace given, in order, to the control-plane revision --revision "
          "(docs/upgrades.md): checks that the revision's control plane is available, labels "
          "the namespace meshlet.io/rev=NAME (for \"default\": removes the label and sets "
          "meshlet.io/inject=enabled), restarts each of its Deployments, StatefulSets and "
          "DaemonSets as `kubectl rollout restart` does (their controllers replace the pods, "
          "which the revision's webhook injects, as each one's strategy allows: a Deployment "
          "with maxUnavailable 0 starts each new pod before an old one stops), and waits until "
          "every pod of each is on the revision and ready (its proxy connected to that control "
          "plane) before the next namespace. Workloads whose pods carry their own "
          "meshlet.io/rev label, or opt out of injection, are left alone. A namespace whose pods "
          "more than one meshlet webhook configuration would select on the revision is refused "
          "before it is changed (--force). Rolling back is the "
          "same command with the old revision. Talks to the Kubernetes API server, by the "
          "kubeconfig (its context's server, CA and token or client certificate), "
          "--kubernetes-api, or inside a pod its service account (needs get, list and patch "
          "on namespaces, deployments, statefulsets and daemonsets, list on pods, get and list on "
          "mutatingwebhookconfigurations), not to the "
          "control plane; meshctl's context file is not read.",
      .examples = {{"see what would change", "meshctl upgrade --revision canary -n shop --dry-run"},
                   {"move two namespaces, one after the other",
                    "meshctl upgrade --revision canary -n shop -n payments"},
                   {"roll back", "meshctl upgrade --revision 0-2-0 -n shop"}},
      .needs_context = false,
      .make = [] { return std::make_unique<Upgrade>(); }};
}

}  // namespace meshlet::controlplane::cli

// tag: stable revision tags (docs/upgrades.md, "Revision tags"; ADR 0076). A tag is a name that
// namespaces and pods use as their meshlet.io/rev label and that points at a control-plane
// revision: the MutatingWebhookConfiguration meshlet-revision-tag-<tag> selects the tag's pods
// as the revision's own configuration selects the revision's, and sends them to that revision's
// webhook at /inject/tag/<tag>. Moving the tag rewrites that one object, so new pods of every
// namespace using it are injected by the new revision from then on; running pods move when
// their workloads restart (meshctl upgrade --revision TAG). The tag "default" selects what the
// unnamed revision's configuration selects, which it then deactivates.
// Talks to the Kubernetes API server, not to the control plane.

#include "control-plane/cli/tag.h"

#include <yaml-cpp/yaml.h>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "control-plane/cli/commands.h"
#include "control-plane/cli/kubernetes_client.h"
#include "control-plane/cli/output.h"
#include "control-plane/cli/webhook_overlap.h"
#include "control-plane/inject/node.h"
#include "control-plane/inject/revision.h"
#include "control-plane/install/install.h"

namespace meshlet::controlplane::cli {

namespace {

using inject::Field;
using inject::StringNode;

constexpr char kPermissions[] =
    "meshctl tag needs get, list, create, update, patch and delete on "
    "mutatingwebhookconfigurations, list on namespaces, and get on deployments in the control "
    "planes' namespace";

bool HasDeactivation(const YAML::Node& hook) {
  for (const YAML::Node& e : At(hook, {"namespaceSelector", "matchExpressions"})) {
    if (Scalar(At(e, {"key"})) == kDeactivatedLabel) return true;
  }
  return false;
}

}  // namespace

std::string TagNamespaceSelector(absl::string_view tag) {
  if (tag == inject::kDefaultTag) {
    return absl::StrCat("meshlet.io/inject=enabled,!", inject::kRevisionLabel);
  }
  return absl::StrCat(inject::kRevisionLabel, "=", tag);
}

absl::StatusOr<YAML::Node> TagConfiguration(absl::string_view tag, absl::string_view revision,
                                            const YAML::Node& revision_configuration,
                                            absl::string_view control_plane_namespace) {
  // The selectors are the install's: the unnamed revision's for "default", else those a
  // revision named like the tag would have.
  install::InstallOptions options;
  options.namespace_ = std::string(control_plane_namespace);
  options.revision = tag == inject::kDefaultTag ? "" : std::string(tag);
  ASSIGN_OR_RETURN(std::vector<YAML::Node> objects, install::Render(options, kMeshctlVersion));
  YAML::Node rendered;
  for (const YAML::Node& object : objects) {
    if (Scalar(At(object, {"kind"})) == "MutatingWebhookConfiguration") rendered = object;
  }
  if (!rendered.IsMap()) return absl::InternalError("the install renders no webhook configuration");
  const YAML::Node live_hooks = At(revision_configuration, {"webhooks"});
  if (!live_hooks.IsSequence() || live_hooks.size() == 0) {
    return absl::FailedPreconditionError(absl::StrCat("MutatingWebhookConfiguration ",
                                                      inject::InjectorConfigurationName(revision),
                                                      " has no webhooks"));
  }
  const YAML::Node live = live_hooks[0];
  const std::string ca_bundle = Scalar(At(live, {"clientConfig", "caBundle"}));
  if (ca_bundle.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "MutatingWebhookConfiguration ", inject::InjectorConfigurationName(revision),
        " has no caBundle yet: its control plane writes it when it starts; wait until it is "
        "available"));
  }
  YAML::Node configuration(YAML::NodeType::Map);
  configuration["apiVersion"] = StringNode("admissionregistration.k8s.io/v1");
  configuration["kind"] = StringNode("MutatingWebhookConfiguration");
  YAML::Node metadata(YAML::NodeType::Map);
  metadata["name"] = StringNode(inject::TagConfigurationName(tag));
  YAML::Node labels(YAML::NodeType::Map);
  const YAML::Node rendered_labels = At(rendered, {"metadata", "labels"});
  for (auto it = rendered_labels.begin(); rendered_labels.IsMap() && it != rendered_labels.end();
       ++it) {
    labels[Scalar(it->first)] = StringNode(Scalar(it->second));
  }
  labels[inject::kTagLabel] = StringNode(tag);
  labels[inject::kRevisionLabel] = StringNode(inject::RevisionDisplayName(revision));
  metadata["labels"] = labels;
  configuration["metadata"] = metadata;
  YAML::Node hooks(YAML::NodeType::Sequence);
  const YAML::Node rendered_hooks = At(rendered, {"webhooks"});
  for (size_t i = 0; i < rendered_hooks.size(); ++i) {
    YAML::Node hook = YAML::Clone(rendered_hooks[i]);
    hook["name"] = StringNode(
        absl::StrCat(i == 0 ? "namespace" : "object", ".tag-", tag, ".sidecar.meshlet.io"));
    // Where the revision's own configuration sends its pods, on the tag's path.
    YAML::Node client = YAML::Clone(At(live, {"clientConfig"}));
    client["service"]["path"] = StringNode(absl::StrCat(inject::kTagInjectPathPrefix, tag));
    hook["clientConfig"] = client;
    for (const char* key : {"failurePolicy", "timeoutSeconds"}) {
      if (const YAML::Node value = At(live, {key}); value && value.IsScalar()) {
        hook[key] = YAML::Clone(value);
      }
    }
    hooks.push_back(hook);
  }
  configuration["webhooks"] = hooks;
  return configuration;
}

YAML::Node DeactivationPatch(const YAML::Node& configuration, bool deactivate) {
  YAML::Node hooks(YAML::NodeType::Sequence);
  for (const YAML::Node& original : At(configuration, {"webhooks"})) {
    YAML::Node hook = YAML::Clone(original);
    YAML::Node expressions(YAML::NodeType::Sequence);
    for (const YAML::Node& e : At(hook, {"namespaceSelector", "matchExpressions"})) {
      if (Scalar(At(e, {"key"})) != kDeactivatedLabel) expressions.push_back(e);
    }
    if (deactivate) {
      YAML::Node never(YAML::NodeType::Map);
      never["key"] = StringNode(kDeactivatedLabel);
      never["operator"] = StringNode("In");
      YAML::Node values(YAML::NodeType::Sequence);
      values.push_back(StringNode("never-match"));
      never["values"] = values;
      expressions.push_back(never);
    }
    hook["namespaceSelector"]["matchExpressions"] = expressions;
    hooks.push_back(hook);
  }
  YAML::Node patch(YAML::NodeType::Map);
  patch["webhooks"] = hooks;
  return patch;
}

namespace {

class Tag final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    std::vector<flags::Flag> table = {
        RevisionFlag(&revision_,
                     "tag set: the revision the tag points at (\"default\": the control plane "
                     "installed without one)",
                     /*required=*/false, &revision_given_),
        Switch("--overwrite", "", &overwrite_,
               "tag set: move a tag that points at another revision"),
        Switch("--force", "", &force_,
               "tag set: even when another meshlet webhook configuration selects pods the "
               "tag's would (each such pod is sent to both webhooks; the first called injects "
               "it); tag remove: even while namespaces use the tag (their new pods get no "
               "sidecar unless another configuration selects them)"),
        DryRunFlag(&dry_run_,
                   "tag set, remove: print what would be written or deleted, change nothing"),
    };
    for (flags::Flag& flag : KubernetesFlagTable(kubernetes_)) table.push_back(std::move(flag));
    return table;
  }

  int Run(Session& session) override {
    std::vector<std::string>& args = session.positional();
    const std::string verb = args.empty() ? "" : args[0];
    const size_t want = verb == "list" ? 1 : 2;
    if ((verb != "set" && verb != "list" && verb != "remove") || args.size() != want) {
      return session.Fail(session.UsageFailure());
    }
    if (verb != "set" && revision_given_) {
      return session.Fail({kExitUsage, "--revision goes with tag set"});
    }
    if (verb == "set" && !revision_given_) {
      return session.Fail({kExitUsage, "tag set needs --revision NAME"});
    }
    std::string tag;
    if (verb != "list") {
      absl::StatusOr<std::string> parsed = inject::ParseTag(args[1]);
      if (!parsed.ok()) return session.Fail({kExitUsage, std::string(parsed.status().message())});
      tag = *std::move(parsed);
    }
    absl::StatusOr<KubernetesClient> client =
        KubernetesClient::Connect(kubernetes_, session.environment(), kPermissions);
    if (!client.ok()) return session.Fail({kExitUsage, std::string(client.status().message())});
    client_ = &*client;
    if (verb == "list") return List(session);
    if (verb == "remove") return Remove(session, tag);
    return Set(session, tag);
  }

 private:
  // Exit 3 when the API server did not answer, else 1.
  static int Failed(Session& session, const absl::Status& s) {
    return session.Fail(
        {absl::IsUnavailable(s) ? kExitUnreachable : kExitFailed, std::string(s.message())});
  }

  // The namespaces labelled for `tag`, by name.
  absl::StatusOr<std::vector<std::string>> NamespacesOf(absl::string_view tag) {
    ASSIGN_OR_RETURN(std::string body,
                     client_->Fetch("GET", absl::StrCat("/api/v1/namespaces?labelSelector=",
                                                        TagNamespaceSelector(tag))));
    std::vector<std::string> names;
    try {
      for (const YAML::Node& item : At(YAML::Load(body), {"items"})) {
        names.push_back(Scalar(At(item, {"metadata", "name"})));
      }
    } catch (const YAML::Exception&) {
      return absl::FailedPreconditionError("the namespace list is not JSON");
    }
    return names;
  }

  // The configuration `name`, or nullopt when there is none.
  absl::StatusOr<std::optional<YAML::Node>> Configuration(const std::string& name) {
    ASSIGN_OR_RETURN(HttpResponse response, client_->Call("GET", WebhookConfigurationPath(name)));
    if (response.status == 404) return std::optional<YAML::Node>();
    if (response.status != 200) {
      return absl::FailedPreconditionError(
          absl::StrCat("GET MutatingWebhookConfiguration ", name, ": HTTP ", response.status,
                       response.status == 403 ? absl::StrCat(" (", kPermissions, ")") : ""));
    }
    try {
      return std::optional<YAML::Node>(YAML::Load(response.body));
    } catch (const YAML::Exception&) {
      return absl::FailedPreconditionError(
          absl::StrCat("MutatingWebhookConfiguration ", name, ": not JSON"));
    }
  }

  // Turns the unnamed revision's own configuration off (the tag "default" points elsewhere) or
  // on again; nothing when there is none or it already is so.
  absl::Status SetUnnamedActive(Session& session, bool active) {
    const std::string name = inject::InjectorConfigurationName("");
    ASSIGN_OR_RETURN(std::optional<YAML::Node> unnamed, Configuration(name));
    if (!unnamed.has_value()) return absl::OkStatus();
    bool deactivated = false;
    for (const YAML::Node& hook : At(*unnamed, {"webhooks"})) deactivated |= HasDeactivation(hook);
    if (deactivated != active) return absl::OkStatus();
    const std::string patch = inject::ToJson(DeactivationPatch(*unnamed, !active));
    session.io().out << "MutatingWebhookConfiguration " << name << ": "
                     << (active ? "active again (it selects the unnamed revision's pods)"
                                : "deactivated (the tag default selects its pods)")
                     << (dry_run_ ? " (dry run)" : "") << "\n";
    if (dry_run_) return absl::OkStatus();
    return client_->Fetch("PATCH", WebhookConfigurationPath(name), patch).status();
  }

  // FailedPrecondition naming both configurations, their webhooks and the namespaces affected
  // when another meshlet configuration's webhooks select pods that `configuration`'s (the tag's)
  // would: each such pod would be sent to both. The tag's own configuration (replaced) and, for
  // the tag default, the unnamed revision's (deactivated next) do not count. With --force, the
  // same as a warning on stderr.
  absl::Status RefuseOverlaps(Session& session, const std::string& tag,
                              const YAML::Node& configuration) {
    ASSIGN_OR_RETURN(std::vector<InjectionWebhook> ours, InjectionWebhooks(configuration));
    ASSIGN_OR_RETURN(std::vector<InjectionWebhook> cluster, ClusterInjectionWebhooks(*client_));
    std::vector<InjectionWebhook> others;
    for (InjectionWebhook& hook : cluster) {
      if (hook.configuration == inject::TagConfigurationName(tag)) continue;
      if (tag == inject::kDefaultTag &&
          hook.configuration == inject::InjectorConfigurationName("")) {
        continue;
      }
      others.push_back(std::move(hook));
    }
    const std::vector<WebhookOverlap> overlaps = Overlaps(ours, others);
    if (overlaps.empty()) return absl::OkStatus();
    ASSIGN_OR_RETURN(std::vector<NamespaceLabels> namespaces, ClusterNamespaces(*client_));
    const std::string what = absl::StrCat(
        "tag ", tag, ": its MutatingWebhookConfiguration ", inject::TagConfigurationName(tag),
        " would select pods another meshlet webhook configuration selects; the API server "
        "would send each such pod to both webhooks, and the first called would inject it:\n",
        DescribeOverlaps(overlaps, namespaces));
    if (force_) {
      session.io().err << "warning: " << what << "written anyway (--force)\n";
      return absl::OkStatus();
    }
    return absl::FailedPreconditionError(absl::StrCat(
        what,
        "remove the other configuration or narrow its selectors (a revision installed under the "
        "tag's name?), or give --force"));
  }

  int Set(Session& session, const std::string& tag) {
    std::ostream& out = session.io().out;
    const std::string revision = revision_;
    const std::string& cp_namespace = kubernetes_.control_plane_namespace;
    if (tag == inject::kDefaultTag && revision.empty()) {
      out << "tag default -> the unnamed revision: that is what no tag means\n";
      return Remove(session, tag);
    }
    auto fail = [&](const absl::Status& s) { return Failed(session, s); };
    // A tag never hides a revision of the same name: both configurations would select its pods.
    if (tag != inject::kDefaultTag) {
      absl::StatusOr<HttpResponse> same =
          client_->Call("GET", absl::StrCat("/apis/apps/v1/namespaces/", cp_namespace,
                                            "/deployments/", inject::ControlPlaneName(tag)));
      if (!same.ok()) return fail(same.status());
      if (same->status == 200) {
        return session.Fail(
            {kExitFailed, absl::StrCat("\"", tag, "\" is a revision (Deployment ", cp_namespace,
                                       "/", inject::ControlPlaneName(tag),
                                       " exists): a tag may not share its name")});
      }
    }
    absl::StatusOr<std::string> available = ControlPlaneAvailable(*client_, cp_namespace, revision);
    if (!available.ok()) return fail(available.status());
    absl::StatusOr<std::optional<YAML::Node>> own =
        Configuration(inject::InjectorConfigurationName(revision));
    if (!own.ok()) return fail(own.status());
    if (!own->has_value()) {
      return session.Fail(
          {kExitFailed, absl::StrCat("revision ", inject::RevisionDisplayName(revision),
                                     " has no MutatingWebhookConfiguration ",
                                     inject::InjectorConfigurationName(revision))});
    }
    absl::StatusOr<YAML::Node> configuration = TagConfiguration(tag, revision, **own, cp_namespace);
    if (!configuration.ok()) return fail(configuration.status());
    const std::string name = inject::TagConfigurationName(tag);
    absl::StatusOr<std::optional<YAML::Node>> existing = Configuration(name);
    if (!existing.ok()) return fail(existing.status());
    std::string before;
    if (existing->has_value()) {
      before = Scalar(At(**existing, {"metadata", "labels", inject::kRevisionLabel}));
      if (before != inject::RevisionDisplayName(revision) && !overwrite_) {
        return session.Fail({kExitFailed, absl::StrCat("tag ", tag, " points at revision ",
                                                       before.empty() ? "(none)" : before,
                                                       "; give --overwrite to move it to ",
                                                       inject::RevisionDisplayName(revision))});
      }
      (*configuration)["metadata"]["resourceVersion"] =
          StringNode(Scalar(At(**existing, {"metadata", "resourceVersion"})));
    }
    // Nothing else may select the pods the tag's configuration selects (ADR 0082).
    if (absl::Status s = RefuseOverlaps(session, tag, *configuration); !s.ok()) return fail(s);
    if (dry_run_) {
      out << inject::ToYaml(*configuration);
    } else {
      absl::StatusOr<std::string> written =
          existing->has_value()
              ? client_->Fetch("PUT", WebhookConfigurationPath(name),
                               inject::ToJson(*configuration))
              : client_->Fetch("POST", WebhookConfigurationPath(), inject::ToJson(*configuration));
      if (!written.ok()) return fail(written.status());
    }
    out << "tag " << tag << " -> revision " << inject::RevisionDisplayName(revision)
        << (before.empty() ? "" : absl::StrCat(" (was ", before, ")")) << ": "
        << "MutatingWebhookConfiguration " << name
        << (dry_run_                ? " (dry run)"
            : existing->has_value() ? " updated"
                                    : " created")
        << "; " << *available << "\n";
    // The unnamed revision's own configuration would select the same pods.
    if (tag == inject::kDefaultTag) {
      if (absl::Status s = SetUnnamedActive(session, false); !s.ok()) return fail(s);
    }
    absl::StatusOr<std::vector<std::string>> namespaces = NamespacesOf(tag);
    if (!namespaces.ok()) return fail(namespaces.status());
    if (namespaces->empty()) {
      out << "no namespace uses it yet: label one " << TagNamespaceSelector(tag) << "\n";
    } else {
      out << "namespaces using it: " << absl::StrJoin(*namespaces, ", ")
          << "; their new pods get revision " << inject::RevisionDisplayName(revision)
          << "'s sidecar. To move their running pods, restart their workloads: meshctl "
             "upgrade --revision "
          << tag << " -n " << absl::StrJoin(*namespaces, " -n ") << "\n";
    }
    return kExitOk;
  }

  int Remove(Session& session, const std::string& tag) {
    std::ostream& out = session.io().out;
    auto fail = [&](const absl::Status& s) { return Failed(session, s); };
    const std::string name = inject::TagConfigurationName(tag);
    absl::StatusOr<std::optional<YAML::Node>> existing = Configuration(name);
    if (!existing.ok()) return fail(existing.status());
    if (!existing->has_value()) {
      if (tag == inject::kDefaultTag) {
        // No tag: only make sure the unnamed revision's configuration is on.
        if (absl::Status s = SetUnnamedActive(session, true); !s.ok()) return fail(s);
        out << "no tag default\n";
        return kExitOk;
      }
      return session.Fail({kExitFailed, absl::StrCat("no tag ", tag,
                                                     " (no "
                                                     "MutatingWebhookConfiguration ",
                                                     name, ")")});
    }
    absl::StatusOr<std::vector<std::string>> namespaces = NamespacesOf(tag);
    if (!namespaces.ok()) return fail(namespaces.status());
    bool unnamed_installed = false;
    if (tag == inject::kDefaultTag) {
      absl::StatusOr<std::optional<YAML::Node>> unnamed =
          Configuration(inject::InjectorConfigurationName(""));
      if (!unnamed.ok()) return fail(unnamed.status());
      unnamed_installed = unnamed->has_value();
    }
    // Without the tag, who injects its namespaces' new pods: for "default" the unnamed
    // revision, if installed; for another tag nobody.
    if (!namespaces->empty() && !unnamed_installed && !force_) {
      return session.Fail(
          {kExitFailed,
           absl::StrCat("namespaces ", absl::StrJoin(*namespaces, ", "), " use tag ", tag, " (",
                        TagNamespaceSelector(tag),
                        "): without it their new pods get no sidecar. Move them to a revision "
                        "first (meshctl upgrade --revision REVISION -n NS), or give --force")});
    }
    // The unnamed revision's configuration on before the tag goes, so no pod falls between.
    if (tag == inject::kDefaultTag) {
      if (absl::Status s = SetUnnamedActive(session, true); !s.ok()) return fail(s);
    }
    if (!dry_run_) {
      absl::StatusOr<std::string> deleted =
          client_->Fetch("DELETE", WebhookConfigurationPath(name));
      if (!deleted.ok()) return fail(deleted.status());
    }
    out << "tag " << tag << " removed (MutatingWebhookConfiguration " << name << " deleted"
        << (dry_run_ ? ", dry run" : "") << ")";
    if (!namespaces->empty()) {
      out << "; namespaces " << absl::StrJoin(*namespaces, ", ") << ": new pods "
          << (unnamed_installed ? "get the unnamed revision's sidecar" : "get no sidecar");
    }
    out << "\n";
    return kExitOk;
  }

  int List(Session& session) {
    absl::StatusOr<std::string> body = client_->Fetch(
        "GET", absl::StrCat(WebhookConfigurationPath(), "?labelSelector=", inject::kTagLabel));
    if (!body.ok()) return session.Fail({kExitFailed, std::string(body.status().message())});
    std::vector<std::vector<std::string>> rows = {{"TAG", "REVISION", "NAMESPACES"}};
    try {
      std::map<std::string, std::string> tags;
      for (const YAML::Node& item : At(YAML::Load(*body), {"items"})) {
        tags[Scalar(At(item, {"metadata", "labels", inject::kTagLabel}))] =
            Scalar(At(item, {"metadata", "labels", inject::kRevisionLabel}));
      }
      for (const auto& [tag, revision] : tags) {
        absl::StatusOr<std::vector<std::string>> namespaces = NamespacesOf(tag);
        if (!namespaces.ok()) {
          return session.Fail({kExitFailed, std::string(namespaces.status().message())});
        }
        rows.push_back({tag, revision.empty() ? "(none)" : revision,
                        namespaces->empty() ? "(none)" : absl::StrJoin(*namespaces, ",")});
      }
    } catch (const YAML::Exception&) {
      return session.Fail({kExitFailed, "the MutatingWebhookConfiguration list is not JSON"});
    }
    if (rows.size() == 1) {
      session.io().out << "no tags (meshctl tag set TAG --revision REVISION)\n";
      return kExitOk;
    }
    session.io().out << FormatTable(rows);
    return kExitOk;
  }

  std::string revision_;
  bool revision_given_ = false;
  bool overwrite_ = false;
  bool force_ = false;
  bool dry_run_ = false;
  KubernetesFlags kubernetes_;
  const KubernetesClient* client_ = nullptr;
};

}  // namespace

CommandSpec TagCommand() {
  return {
      .name = "tag",
      .args = "set TAG --revision NAME | list | remove TAG",
      .summary = "stable names for control-plane revisions (meshlet.io/rev=TAG)",
      .about =
          "A tag is a name namespaces and pods use as their meshlet.io/rev label instead of a "
          "revision's (docs/upgrades.md, \"Revision tags\"): tag set TAG --revision NAME writes "
          "the MutatingWebhookConfiguration meshlet-revision-tag-TAG, which selects the tag's "
          "pods like the revision's own configuration and sends them to that revision's "
          "webhook. Moving the tag (--overwrite) moves the injection of every new pod of the "
          "namespaces using it at once, without relabelling them; running pods move when their "
          "workloads restart (meshctl upgrade --revision TAG -n NS). The tag default stands for "
          "the namespaces labelled meshlet.io/inject=enabled and pods labelled "
          "sidecar.meshlet.io/inject=true without meshlet.io/rev: setting it deactivates the "
          "unnamed revision's own configuration, removing it activates that again. tag set "
          "refuses a tag whose configuration would select pods another meshlet webhook "
          "configuration selects, naming both and the namespaces (--force). tag list "
          "shows each tag, its revision and the namespaces using it; tag remove refuses while "
          "namespaces use the tag and nothing else would inject them (--force). Talks to the "
          "Kubernetes API server like meshctl upgrade (needs get, list, create, update, patch "
          "and delete on mutatingwebhookconfigurations, list on namespaces, get on "
          "deployments in the control planes' namespace).",
      .examples = {{"point the tag prod at revision canary",
                    "meshctl tag set prod --revision canary"},
                   {"move it", "meshctl tag set prod --revision 0-3-0 --overwrite"},
                   {"and the pods of a namespace using it",
                    "meshctl upgrade --revision prod -n shop"},
                   {"the unlabelled namespaces' pods to canary",
                    "meshctl tag set default --revision canary"},
                   {"", "meshctl tag list"}},
      .needs_context = false,
      .make = [] { return std::make_unique<Tag>(); }};
}

}  // namespace meshlet::controlplane::cli

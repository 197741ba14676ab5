#include "control-plane/server/kubernetes_policy.h"

#include <map>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "control-plane/inject/revision.h"
#include "control-plane/translate/backend_tls.h"
#include "control-plane/translate/route_status.h"

namespace meshlet::controlplane {
namespace {

flags::Flag DurationFlag(std::string name, Duration* out, std::string help) {
  return {.name = std::move(name),
          .value = "DURATION",
          .help = std::move(help),
          .set = [out](absl::string_view v) {
            absl::Duration d;
            if (!absl::ParseDuration(v, &d) || d < absl::Milliseconds(100)) {
              return absl::InvalidArgumentError("must be a duration of at least 100ms");
            }
            *out = absl::ToChronoNanoseconds(d);
            return absl::OkStatus();
          }};
}

}  // namespace

std::vector<flags::Flag> KubernetesPolicyFlags(KubernetesPolicyOptions& options) {
  return {
      flags::BoolFlag("--kubernetes-policy", &options.enabled,
                      "mirror meshlet.io and Gateway API policy objects from the cluster into the "
                      "store and write route status back, by the elected replica (default true "
                      "when an API server is known; =false turns it off)"),
      DurationFlag("--leader-election-lease-duration", &options.lease_duration,
                   "how long a replica's Lease holds without renewal before another replica may "
                   "take over (default 15s; whole seconds)"),
      DurationFlag("--leader-election-renew-deadline", &options.renew_deadline,
                   "how long the leader keeps leading without renewing its Lease (default 10s; "
                   "less than the lease duration)"),
      DurationFlag("--leader-election-retry-period", &options.retry_period,
                   "how often replicas renew or try to take the Lease (default 2s)"),
      DurationFlag("--revision-tags-interval", &options.tags_interval,
                   "how often the revision tags are read (default 10s): the revision the tag "
                   "default points at writes route status, and the namespaces of the tags "
                   "that point at this revision get its trust bundle"),
  };
}

absl::StatusOr<std::unique_ptr<KubernetesPolicy>> KubernetesPolicy::Create(
    ControlPlane& control_plane, const kubernetes::KubernetesApiOptions& api,
    const std::string& namespace_, KubernetesPolicyOptions options,
    const kubernetes::RevisionTags* tags) {
  if (options.renew_deadline >= options.lease_duration) {
    return absl::InvalidArgumentError(
        "--leader-election-renew-deadline must be shorter than --leader-election-lease-duration "
        "(a leader must stop before another may take over)");
  }
  kubernetes::KubernetesApiOptions client_options = api;
  client_options.max_response_bytes = options.max_response_bytes;
  absl::StatusOr<std::unique_ptr<kubernetes::KubernetesApi>> client =
      kubernetes::KubernetesApi::Create(control_plane.loop(), client_options);
  if (!client.ok()) return client.status();
  std::unique_ptr<KubernetesPolicy> out(new KubernetesPolicy(control_plane, options));
  out->api_ = *std::move(client);
  std::string identity = control_plane.replica_name();
  if (identity.empty()) identity = control_plane.options().replica_name;
  if (identity.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof(host) - 1);
    identity = host;
  }
  out->status_writer_ = std::make_unique<kubernetes::RouteStatusWriter>(
      control_plane.loop(), *out->api_, control_plane.stats(), control_plane.clock());
  kubernetes::RouteStatusWriter* writer = out->status_writer_.get();
  // The mirror's writes are API writes, on the store worker like meshctl's, and the only ones
  // that may change what it mirrored (HandleFromMirror: no network request takes this path).
  ControlPlane* cp = &control_plane;
  out->mirror_ = std::make_unique<kubernetes::PolicyMirror>(
      control_plane.loop(), *out->api_,
      [cp](http::ServerRequest request, std::function<void(http::ServerResponse)> done) {
        auto shared_done =
            std::make_shared<std::function<void(http::ServerResponse)>>(std::move(done));
        if (!cp->store_worker().Run<http::ServerResponse>(
                [cp, request = std::move(request)] { return cp->api().HandleFromMirror(request); },
                [shared_done](http::ServerResponse response) {
                  (*shared_done)(std::move(response));
                })) {
          (*shared_done)(cp->api().StoreBusy(cp->store_worker().pending()));
        }
      },
      control_plane.stats(), control_plane.clock(),
      kubernetes::PolicyMirrorOptions{
          .replica_name = identity,
          .refused_route = [writer](policy::RouteStatusUpdate update, bool refused) {
            writer->SetRefused(std::move(update), refused);
          }});
  kubernetes::PolicyMirror* mirror = out->mirror_.get();
  out->elector_ = std::make_unique<kubernetes::LeaderElector>(
      control_plane.loop(), *out->api_, control_plane.stats(), control_plane.clock(),
      kubernetes::LeaderElectionOptions{.namespace_ = namespace_,
                                        .name = options.lease_name,
                                        .identity = identity,
                                        .lease_duration = options.lease_duration,
                                        .renew_deadline = options.renew_deadline,
                                        .retry_period = options.retry_period},
      [self = out.get(), mirror](bool leading) {
        if (leading) {
          mirror->Start();
        } else {
          mirror->Stop();
        }
        if (self->gateway_deployer_ != nullptr) self->gateway_deployer_->SetActive(leading);
        self->CompeteForStatus(leading);
      });
  const std::string revision = options.revision;
  out->status_election_ = kubernetes::LeaderElectionOptions{
      .namespace_ = namespace_,
      .name = options.status_lease_name,
      .identity = identity,
      .lease_duration = options.lease_duration,
      .renew_deadline = options.renew_deadline,
      .retry_period = options.retry_period,
      .revision = inject::RevisionDisplayName(revision),
      // The default revision: the one the tag "default" points at, else the unnamed one.
      .preferred =
          [tags, revision] {
            return (tags == nullptr ? std::string() : tags->DefaultRevision()) == revision;
          },
      .stats_name = "meshlet_cp_route_status_leader",
      .role = "writes route status for every revision"};
  out->tags_ = tags;
  out->registry_watch_ =
      control_plane.registry().Watch([self = out.get()](uint64_t) { self->ScheduleStatus(); });
  return out;
}

KubernetesPolicy::KubernetesPolicy(ControlPlane& control_plane, KubernetesPolicyOptions options)
    : control_plane_(control_plane),
      options_(std::move(options)),
      status_timer_(control_plane.loop(), [this] { ComputeStatus(); }) {}

void KubernetesPolicy::EnableGatewayDeployments(GatewayDeployerOptions options) {
  if (options.default_revision == nullptr) {
    options.default_revision = [tags = tags_, revision = options_.revision] {
      return (tags == nullptr ? std::string() : tags->DefaultRevision()) == revision;
    };
  }
  gateway_deployer_ = std::make_unique<GatewayDeployer>(control_plane_.loop(), *api_,
                                                        control_plane_.stats(), std::move(options));
  if (policy_ != nullptr) gateway_deployer_->SetPolicy(*policy_);
}

void KubernetesPolicy::SetPolicy(std::shared_ptr<const policy::PolicySnapshot> policy) {
  policy_ = std::move(policy);
  if (gateway_deployer_ != nullptr) gateway_deployer_->SetPolicy(*policy_);
  ScheduleStatus();
}

void KubernetesPolicy::SetGatewaySecrets(
    std::optional<
        std::map<translate::GatewayEnvironment::Key, translate::GatewayEnvironment::Secret>>
        secrets) {
  if (gateway_secrets_ == secrets) return;
  gateway_secrets_ = std::move(secrets);
  ScheduleStatus();
}

void KubernetesPolicy::SetBackendCaBundles(std::optional<translate::BackendCaBundles> bundles) {
  if (backend_ca_bundles_ == bundles) return;
  backend_ca_bundles_ = std::move(bundles);
  ScheduleStatus();
}

void KubernetesPolicy::SetNamespaceLabels(
    std::map<std::string, std::map<std::string, std::string>> labels) {
  if (namespace_labels_ == labels) return;
  namespace_labels_ = std::move(labels);
  ScheduleStatus();
}

void KubernetesPolicy::ScheduleStatus() {
  if (!status_timer_.enabled()) status_timer_.Enable(options_.status_interval);
}

void KubernetesPolicy::CompeteForStatus(bool compete) {
  if (!compete) {
    if (status_elector_ != nullptr) {
      status_elector_->Release();  // on_change(false) first: the writer stops
      retired_status_elector_ = std::move(status_elector_);
    }
    return;
  }
  if (status_elector_ != nullptr || stopping_) return;
  kubernetes::RouteStatusWriter* writer = status_writer_.get();
  status_elector_ = std::make_unique<kubernetes::LeaderElector>(
      control_plane_.loop(), *api_, control_plane_.stats(), control_plane_.clock(),
      status_election_, [this, writer](bool leading) {
        writer->SetActive(leading);
        if (leading) ScheduleStatus();
      });
  status_elector_->Start();
}

void KubernetesPolicy::ComputeStatus() {
  if (policy_ == nullptr || status_elector_ == nullptr || !status_elector_->leading()) return;
  // The objects mirrored from Kubernetes, with the generation Kubernetes gave them.
  std::map<std::pair<std::string, std::string>, int64_t> mirrored;
  auto index = [&](const auto& objects, absl::string_view kind) {
    for (const auto& route : objects) {
      const auto& annotations = route.metadata().annotations();
      auto managed = annotations.find(kubernetes::kManagedByAnnotation);
      if (managed == annotations.end() || managed->second != kubernetes::kManagedByKubernetes) {
        continue;
      }
      int64_t generation = route.metadata().generation();
      if (auto g = annotations.find(kubernetes::kKubernetesGenerationAnnotation);
          g != annotations.end()) {
        (void)absl::SimpleAtoi(g->second, &generation);
      }
      mirrored[{absl::StrCat(kind, "/", route.metadata().namespace_()), route.metadata().name()}] =
          generation;
    }
  };
  index(policy_->gateway_http_routes, "HTTPRoute");
  index(policy_->grpc_routes, "GRPCRoute");
  index(policy_->gateways, "Gateway");
  index(policy_->gateway_classes, "GatewayClass");
  index(policy_->backend_tls_policies, "BackendTLSPolicy");
  std::shared_ptr<const registry::RegistrySnapshot> registry = control_plane_.registry().Snapshot();
  translate::GatewayEnvironment env;
  env.secrets = gateway_secrets_;
  env.namespace_labels = namespace_labels_;
  env.address_ranges = options_.gateway_address_ranges;
  env.ca_bundles = backend_ca_bundles_;
  env.proxy_addresses = translate::GatewayProxyAddresses(*policy_, *registry);
  std::vector<policy::RouteStatusUpdate> updates;
  std::vector<policy::RouteStatusUpdate> computed =
      translate::ComputeRouteStatuses(*policy_, *registry, env);
  for (policy::RouteStatusUpdate& update : translate::ComputeBackendTlsStatuses(*policy_, env)) {
    computed.push_back(std::move(update));
  }
  for (policy::RouteStatusUpdate& update : computed) {
    auto it = mirrored.find({absl::StrCat(update.kind, "/", update.namespace_), update.name});
    if (it == mirrored.end()) continue;  // applied with meshctl: no Kubernetes object
    update.generation = it->second;
    for (auto& parent : *update.status.mutable_parents()) {
      for (auto& condition : *parent.mutable_conditions()) {
        condition.set_observed_generation(it->second);
      }
    }
    updates.push_back(std::move(update));
  }
  status_writer_->Update(std::move(updates));

  // meshlet's GatewayClasses and Gateways, each condition observing the Kubernetes generation.
  std::vector<kubernetes::GatewayObjectStatus> objects;
  auto generation_of = [&](absl::string_view kind, const std::string& namespace_,
                           const std::string& name) -> std::optional<int64_t> {
    auto it = mirrored.find({absl::StrCat(kind, "/", namespace_), name});
    if (it == mirrored.end()) return std::nullopt;
    return it->second;
  };
  auto observe = [](auto& conditions, int64_t generation) {
    for (auto& condition : conditions) condition.set_observed_generation(generation);
  };
  translate::GatewayStatuses statuses = translate::ComputeGatewayStatuses(*policy_, env);
  for (translate::GatewayClassStatusUpdate& u : statuses.classes) {
    std::optional<int64_t> generation = generation_of("GatewayClass", "", u.name);
    if (!generation.has_value()) continue;
    observe(*u.status.mutable_conditions(), *generation);
    kubernetes::GatewayObjectStatus& o = objects.emplace_back();
    o.kind = "GatewayClass";
    o.name = u.name;
    o.generation = *generation;
    o.gateway_class = std::move(u.status);
  }
  for (translate::GatewayStatusUpdate& u : statuses.gateways) {
    std::optional<int64_t> generation = generation_of("Gateway", u.namespace_, u.name);
    if (!generation.has_value()) continue;
    observe(*u.status.mutable_conditions(), *generation);
    for (auto& listener : *u.status.mutable_listeners()) {
      observe(*listener.mutable_conditions(), *generation);
    }
    kubernetes::GatewayObjectStatus& o = objects.emplace_back();
    o.kind = "Gateway";
    o.namespace_ = u.namespace_;
    o.name = u.name;
    o.generation = *generation;
    o.gateway = std::move(u.status);
  }
  status_writer_->UpdateGateways(std::move(objects));
}

KubernetesPolicy::~KubernetesPolicy() {
  registry_watch_.reset();
  // The users of the client first.
  status_elector_.reset();
  retired_status_elector_.reset();
  elector_.reset();
  mirror_.reset();
  gateway_deployer_.reset();
  status_writer_.reset();
  api_.reset();
}

void KubernetesPolicy::Start() {
  elector_->Start();
  // A replica going away hands the Lease over instead of letting it expire.
  control_plane_.OnShutdown([this] {
    stopping_ = true;
    elector_->Release();  // which hands the route-status Lease back too
  });
  control_plane_.AwaitOnShutdown([this] {
    return elector_->released() &&
           (retired_status_elector_ == nullptr || retired_status_elector_->released());
  });
}

}  // namespace meshlet::controlplane

// install and uninstall: the control plane's Kubernetes manifests (control-plane/install), and
// check --pre's reading of them (check.cc calls PreCheck).

#include <yaml-cpp/yaml.h>

#include <functional>
#include <map>
#include <optional>
#include <variant>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/event/loop.h"
#include "control-plane/cli/commands.h"
#include "control-plane/cli/documents.h"
#include "control-plane/cli/kubernetes_client.h"
#include "control-plane/inject/node.h"
#include "control-plane/install/install.h"
#include "control-plane/install/secrets.h"
#include "control-plane/install/store_key_rotation.h"
#include "control-plane/kubernetes/api_client.h"
#include "control-plane/store/store_keys.h"

namespace meshlet::controlplane::cli {
namespace {

void Print(std::ostream& out, const std::vector<YAML::Node>& objects, absl::string_view output) {
  if (output == "json") {
    YAML::Node list(YAML::NodeType::Map);
    list["apiVersion"] = inject::StringNode("v1");
    list["kind"] = inject::StringNode("List");
    list["items"] = YAML::Node(YAML::NodeType::Sequence);
    for (const YAML::Node& o : objects) list["items"].push_back(o);
    out << inject::ToJson(list);
    return;
  }
  for (size_t i = 0; i < objects.size(); ++i) {
    if (i > 0) out << "---\n";
    out << inject::ToYaml(objects[i]);
  }
}

std::string SetHelp() {
  std::vector<std::string> keys;
  for (const auto& [key, what] : install::SetKeys()) keys.push_back(absl::StrCat(key, ": ", what));
  return absl::StrCat("KEY=VALUE, repeatable: ", absl::StrJoin(keys, "; "));
}

// One request to the Kubernetes API, waited for.
kubernetes::ApiResult CallApi(event::Loop& loop, kubernetes::KubernetesApi& api,
                              kubernetes::ApiRequest request) {
  std::optional<kubernetes::ApiResult> result;
  api.Call(std::move(request), [&result](kubernetes::ApiResult r) { result = std::move(r); });
  loop.RunUntil([&result] { return result.has_value(); },
                absl::ToChronoNanoseconds(api.options().timeout) + std::chrono::seconds(1));
  if (!result.has_value()) {
    return {.result = "timeout", .body = absl::UnavailableError("no answer in time")};
  }
  return *std::move(result);
}

// One request to the Kubernetes API, through whichever client reaches it.
using ApiCall = std::function<kubernetes::ApiResult(kubernetes::ApiRequest)>;

// One request through `client`, answered as KubernetesApi answers.
kubernetes::ApiResult CallClient(const KubernetesClient& client,
                                 const kubernetes::ApiRequest& request) {
  absl::StatusOr<HttpResponse> response = client.Call(request.method, request.path, request.body);
  if (!response.ok()) return {.result = "unreachable", .body = response.status()};
  kubernetes::ApiResult result;
  result.result = absl::StrCat(response->status);
  result.http_status = response->status;
  if (response->status / 100 == 2) {
    result.body = response->body;
  } else {
    const bool forbidden = response->status == 401 || response->status == 403;
    result.body = absl::UnavailableError(
        absl::StrCat("HTTP ", response->status, ": ", response->body,
                     forbidden && !request.forbidden_hint.empty()
                         ? absl::StrCat(" (needs ", request.forbidden_hint, ")")
                         : ""));
  }
  return result;
}

std::string SecretName(const YAML::Node& secret) {
  return inject::Text(secret["metadata"]["name"]);
}

class Install final : public Command {
 public:
  explicit Install(bool uninstall) : uninstall_(uninstall) {}

  std::vector<flags::Flag> Flags() override {
    std::vector<flags::Flag> out = {
        {.name = "--set",
         .value = "KEY=VALUE",
         .help = SetHelp(),
         .set = [this](absl::string_view v) { return install::SetOption(options_, v); }},
        OutputFlag(&output_, {"yaml", "json"}, "YAML documents (default), or JSON (a List)")};
    out.push_back(Switch("--crds", "", &crds_,
                         uninstall_ ? "instead of the install, meshlet's CustomResourceDefinitions "
                                      "(k8s/crds): deleting them deletes every meshlet.io "
                                      "policy object in the cluster"
                                    : "instead of the install, meshlet's CustomResourceDefinitions "
                                      "(k8s/crds), applied once per cluster and kept when "
                                      "meshlet is uninstalled"));
    if (uninstall_) {
      out.push_back(Switch("--keep-data", "", &keep_data_,
                           "leave out the namespace and the data claim (the CA root, policies "
                           "and API token survive for a later install)"));
      return out;
    }
    out.push_back(Switch("--secrets", "", &secrets_,
                         "instead of the manifests, the Secrets an install with etcd needs, "
                         "with fresh keys: the store encryption key, and for the bundled etcd "
                         "its members' and the control plane's certificates"));
    out.push_back(Switch("--create", "", &create_,
                         "with --secrets: create them through the Kubernetes API (in a pod: "
                         "its service account), keeping those that exist; what the install "
                         "Job runs"));
    out.push_back(Switch("--renew-etcd-certificates", "", &renew_etcd_certificates_,
                         "with --secrets and --set etcd=bundled: as --create, and re-issue the "
                         "etcd members' and the control plane's certificates under the kept CA "
                         "now rather than within etcd.renewBeforeDays of their end"));
    out.push_back(Switch("--rotate-store-key", "", &rotate_store_key_,
                         "with --secrets: put a fresh store key first in Secret "
                         "meshlet-store-key (or --store-key-file), keeping the older keys after "
                         "it; the control plane takes it without a restart and seals its "
                         "records again with it"));
    out.push_back(Switch("--finish", "", &finish_,
                         "with --rotate-store-key: drop every store key but the first, once the "
                         "control plane (meshctl's context) reports no record sealed with "
                         "another; refused before, naming the records"));
    out.push_back(flags::StringFlag("--store-key-file", "FILE", &store_key_file_,
                                    "with --rotate-store-key: the key file off Kubernetes "
                                    "(--store-encryption-key-file), rewritten atomically, its "
                                    "mode kept, instead of the Secret"));
    out.push_back(flags::StringFlag("--kubernetes-api", "HOST:PORT", &kubernetes_.api,
                                    "with --create, --renew-etcd-certificates or "
                                    "--rotate-store-key: the API server "
                                    "(default: in a pod, KUBERNETES_SERVICE_HOST and _PORT; "
                                    "with --rotate-store-key or --renew-etcd-certificates "
                                    "otherwise the kubeconfig's)"));
    out.push_back(flags::StringFlag("--kubernetes-token-file", "FILE", &kubernetes_.token_file,
                                    "with --kubernetes-api: the bearer token (default: the "
                                    "pod's service-account token)"));
    out.push_back(flags::StringFlag("--kubernetes-ca-file", "FILE", &kubernetes_.ca_file,
                                    "with --kubernetes-api: the CA of the API server's "
                                    "certificate (default: the pod's)"));
    out.push_back(flags::StringFlag("--kubeconfig", "FILE", &kubeconfig_,
                                    "with --rotate-store-key or --renew-etcd-certificates: the "
                                    "kubeconfig whose current "
                                    "context reaches the cluster (default: $KUBECONFIG, else "
                                    "~/.kube/config)"));
    return out;
  }

  int Run(Session& session) override {
    if (!session.positional().empty()) return session.Fail(session.UsageFailure());
    if ((create_ || renew_etcd_certificates_) && !secrets_) {
      return session.Fail({kExitUsage, "--create and --renew-etcd-certificates go with --secrets"});
    }
    if (renew_etcd_certificates_) {
      if (options_.etcd != install::kBundledEtcd || rotate_store_key_) {
        return session.Fail({kExitUsage,
                             "--renew-etcd-certificates: the bundled etcd's (--set etcd=bundled), "
                             "without --rotate-store-key"});
      }
      create_ = true;
    }
    if (rotate_store_key_ && (!secrets_ || create_)) {
      return session.Fail(
          {kExitUsage, "--rotate-store-key goes with --secrets, and without --create"});
    }
    if ((finish_ || !store_key_file_.empty()) && !rotate_store_key_) {
      return session.Fail({kExitUsage, "--finish and --store-key-file go with --rotate-store-key"});
    }
    if (rotate_store_key_) return RunRotateStoreKey(session);
    if (crds_) return RunCrds(session);
    if (secrets_) return RunSecrets(session);
    absl::StatusOr<std::vector<YAML::Node>> objects = install::Render(options_, kMeshctlVersion);
    if (!objects.ok()) {
      // A combination of --set values that does not go together is a usage error.
      return session.Fail({absl::IsInvalidArgument(objects.status()) ? kExitUsage : kExitFailed,
                           std::string(objects.status().message())});
    }
    Print(session.io().out,
          uninstall_ ? install::UninstallOrder(*objects, keep_data_, !options_.revision.empty())
                     : *objects,
          output_);
    return kExitOk;
  }

 private:
  // An API server that gave no answer is one meshctl could not reach (exit 3, as tag and upgrade
  // have it); an answer refusing the request is a failure (exit 1).
  static int ApiServerExit(const kubernetes::ApiResult& result) {
    return result.http_status == 0 ? kExitUnreachable : kExitFailed;
  }

  int RunCrds(Session& session) {
    if (secrets_) return session.Fail({kExitUsage, "--crds and --secrets go separately"});
    if (keep_data_) {
      return session.Fail({kExitUsage,
                           "--crds and --keep-data contradict each other: deleting the "
                           "CustomResourceDefinitions deletes the policies stored as them"});
    }
    absl::StatusOr<std::vector<YAML::Node>> crds = install::Crds();
    if (!crds.ok()) return session.Fail({kExitFailed, std::string(crds.status().message())});
    Print(session.io().out, *crds, output_);
    return kExitOk;
  }

  int RunSecrets(Session& session) {
    if (options_.etcd.empty()) {
      return session.Fail({kExitUsage,
                           "--secrets: an install makes Secrets only with etcd (--set "
                           "etcd=bundled or --set etcd=https://HOST:PORT)"});
    }
    absl::StatusOr<std::vector<YAML::Node>> secrets = install::MakeSecrets(options_, absl::Now());
    if (!secrets.ok()) {
      return session.Fail({absl::IsInvalidArgument(secrets.status()) ? kExitUsage : kExitFailed,
                           std::string(secrets.status().message())});
    }
    if (!create_) {
      Print(session.io().out, *secrets, output_);
      return kExitOk;
    }
    event::Loop loop;
    std::unique_ptr<kubernetes::KubernetesApi> in_cluster;
    std::optional<KubernetesClient> client;
    ApiCall call;
    if (renew_etcd_certificates_) {
      // Run by an operator as well as in a pod: the kubeconfig's context too, as
      // --rotate-store-key.
      absl::StatusOr<KubernetesClient> connected = KubernetesClient::Connect(
          ClientFlags(), session.environment(),
          absl::StrCat("meshctl install --renew-etcd-certificates needs get on Secrets ",
                       install::kEtcdCaSecret, ", ", install::kEtcdMemberSecret, " and ",
                       install::kEtcdClientSecret, " and update on the last two in ",
                       options_.namespace_));
      if (!connected.ok()) {
        return session.Fail({kExitUsage, std::string(connected.status().message())});
      }
      client = *std::move(connected);
      call = [&client](kubernetes::ApiRequest request) { return CallClient(*client, request); };
    } else {
      if (kubernetes_.api.empty()) kubernetes_.api = kubernetes::InClusterApiFromEnvironment();
      if (kubernetes_.api.empty()) {
        return session.Fail(
            {kExitUsage, "--create: no API server (not in a pod; give --kubernetes-api)"});
      }
      absl::StatusOr<std::unique_ptr<kubernetes::KubernetesApi>> api =
          kubernetes::KubernetesApi::Create(loop, kubernetes_);
      if (!api.ok()) return session.Fail({kExitUsage, std::string(api.status().message())});
      in_cluster = *std::move(api);
      call = [&loop, &in_cluster](kubernetes::ApiRequest request) {
        return CallApi(loop, *in_cluster, std::move(request));
      };
    }
    const std::string base = absl::StrCat("/api/v1/namespaces/", options_.namespace_, "/secrets");
    const std::string hint = absl::StrCat("get and create on secrets in ", options_.namespace_,
                                          " (the Role meshlet-install)");
    // Which exist, as read: those are kept.
    std::map<std::string, YAML::Node> existing;
    for (const YAML::Node& secret : *secrets) {
      const std::string name = SecretName(secret);
      kubernetes::ApiResult got =
          call({.method = "GET", .path = absl::StrCat(base, "/", name), .forbidden_hint = hint});
      if (got.body.ok()) {
        try {
          existing[name] = YAML::Load(*got.body);
        } catch (const YAML::Exception& e) {
          return session.Fail({kExitFailed, absl::StrCat("Secret ", options_.namespace_, "/", name,
                                                         ": not a JSON object: ", e.what())});
        }
      } else if (got.http_status != 404) {
        return session.Fail(
            {ApiServerExit(got), absl::StrCat("reading Secret ", options_.namespace_, "/", name,
                                              ": ", got.body.status().message())});
      }
    }
    // The certificates of an install made before the CA was kept: no CA to make (it would not be
    // theirs); renewal says what to do.
    const bool certificates_exist = existing.count(install::kEtcdMemberSecret) > 0 &&
                                    existing.count(install::kEtcdClientSecret) > 0;
    // A renewal run by hand in the wrong namespace must not install a second set of Secrets
    // there and report success: it renews what exists or nothing.
    if (renew_etcd_certificates_ && !certificates_exist) {
      return session.Fail(
          {kExitFailed,
           absl::StrCat("--renew-etcd-certificates: no Secrets ", install::kEtcdMemberSecret,
                        " and ", install::kEtcdClientSecret, " in namespace ", options_.namespace_,
                        "; nothing created. Give the install's --set namespace= (and its other "
                        "etcd.* values)")});
    }
    // A kept CA: a missing certificate is issued under it.
    const bool ca_exists = existing.count(install::kEtcdCaSecret) > 0;
    if (ca_exists && !certificates_exist) {
      absl::StatusOr<install::SecretData> ca = DecodedData(existing, install::kEtcdCaSecret);
      if (!ca.ok()) return session.Fail({kExitFailed, std::string(ca.status().message())});
      secrets = install::MakeSecrets(options_, absl::Now(), *std::move(ca));
      if (!secrets.ok()) {
        return session.Fail({kExitFailed, std::string(secrets.status().message())});
      }
    }
    for (const YAML::Node& secret : *secrets) {
      const std::string name = SecretName(secret);
      // Without a kept CA, a missing certificate beside an existing one is refused (a missing CA
      // alone is an older install's).
      if (existing.count(name) > 0 || ca_exists || name == install::kEtcdCaSecret) continue;
      std::vector<std::string> others;
      for (const auto& [other, unused] : existing) {
        if (install::SecretsShareACa(name, other)) others.push_back(other);
      }
      if (!others.empty()) {
        return session.Fail(
            {kExitFailed,
             absl::StrCat("Secret ", options_.namespace_, "/", others.front(), " exists but ", name,
                          " does not and the CA that signed it is gone. Delete ",
                          absl::StrJoin(others, " and "),
                          " too to make a new CA and certificates (then restart etcd and the "
                          "control plane)")});
      }
    }
    for (const YAML::Node& secret : *secrets) {
      const std::string name = SecretName(secret);
      if (existing.count(name) > 0) {
        session.io().out << "secret/" << name << " exists, kept\n";
        continue;
      }
      if (name == install::kEtcdCaSecret && certificates_exist) continue;
      if (renew_etcd_certificates_) continue;  // renews; creates nothing
      kubernetes::ApiResult created = call({.method = "POST",
                                            .path = base,
                                            .content_type = "application/json",
                                            .body = inject::ToCompactJson(secret),
                                            .forbidden_hint = hint});
      if (created.http_status == 409) {
        session.io().out << "secret/" << name << " exists, kept\n";
      } else if (created.body.ok()) {
        session.io().out << "secret/" << name << " created\n";
      } else {
        return session.Fail(
            {ApiServerExit(created), absl::StrCat("creating Secret ", options_.namespace_, "/",
                                                  name, ": ", created.body.status().message())});
      }
    }
    if (options_.etcd != install::kBundledEtcd || !certificates_exist) return kExitOk;
    return RenewEtcdCertificates(session, call, base, existing);
  }

  // How KubernetesClient reaches the API server: --kubernetes-api (in a pod, its service
  // account), else --kubeconfig or the default kubeconfig. For --rotate-store-key and
  // --renew-etcd-certificates, which operators run.
  KubernetesFlags ClientFlags() const {
    KubernetesFlags flags;
    flags.kubeconfig = kubeconfig_;
    flags.api = kubernetes_.api;
    // The in-pod defaults of KubernetesApiOptions are KubernetesClient's own with --kubernetes-api
    // and refused without it.
    if (kubernetes_.ca_file != kubernetes::kInClusterCaFile) flags.ca_file = kubernetes_.ca_file;
    if (kubernetes_.token_file != kubernetes::kInClusterTokenFile) {
      flags.token_file = kubernetes_.token_file;
    }
    return flags;
  }

  // The decoded data of Secret `name` in `existing` (name -> the Secret as read).
  absl::StatusOr<install::SecretData> DecodedData(const std::map<std::string, YAML::Node>& existing,
                                                  const std::string& name) {
    install::SecretData data;
    const YAML::Node node = existing.at(name)["data"];
    if (!node.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat("Secret ", options_.namespace_, "/", name, ": no data"));
    }
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (!it->second.IsScalar() ||
          !absl::Base64Unescape(it->second.Scalar(), &data[it->first.Scalar()])) {
        return absl::InvalidArgumentError(absl::StrCat("Secret ", options_.namespace_, "/", name,
                                                       ": ", it->first.Scalar(), " not base64"));
      }
    }
    return data;
  }

  // The bundled etcd's certificates in `existing` (name -> the Secret as read) renewed under the
  // kept CA when due (or with --renew-etcd-certificates), each Secret replaced as read: its
  // resourceVersion makes a concurrent change a conflict.
  int RenewEtcdCertificates(Session& session, const ApiCall& call, const std::string& base,
                            const std::map<std::string, YAML::Node>& existing) {
    auto decoded = [&](const std::string& name) { return DecodedData(existing, name); };
    install::EtcdSecrets secrets;
    for (const auto& [name, field] : {std::pair{install::kEtcdMemberSecret, &secrets.member},
                                      std::pair{install::kEtcdClientSecret, &secrets.client}}) {
      absl::StatusOr<install::SecretData> data = decoded(name);
      if (!data.ok()) return session.Fail({kExitFailed, std::string(data.status().message())});
      *field = *std::move(data);
    }
    if (existing.count(install::kEtcdCaSecret) > 0) {
      absl::StatusOr<install::SecretData> data = decoded(install::kEtcdCaSecret);
      if (!data.ok()) return session.Fail({kExitFailed, std::string(data.status().message())});
      secrets.ca = *std::move(data);
    }
    absl::StatusOr<install::EtcdRenewal> renewal =
        install::RenewEtcdCertificates(options_, secrets, absl::Now(), renew_etcd_certificates_);
    if (!renewal.ok()) return session.Fail({kExitFailed, std::string(renewal.status().message())});
    const std::string hint = absl::StrCat("get and update on Secrets ", install::kEtcdMemberSecret,
                                          " and ", install::kEtcdClientSecret, " in ",
                                          options_.namespace_, " (the Role meshlet-install)");
    for (const auto& [name, data] : renewal->renewed) {
      YAML::Node secret = YAML::Clone(existing.at(name));
      secret["data"] = YAML::Node(YAML::NodeType::Map);
      for (const auto& [key, value] : data) {
        secret["data"][key] = inject::StringNode(absl::Base64Escape(value));
      }
      kubernetes::ApiResult put = call({.method = "PUT",
                                        .path = absl::StrCat(base, "/", name),
                                        .content_type = "application/json",
                                        .body = inject::ToCompactJson(secret),
                                        .forbidden_hint = hint});
      if (put.http_status == 409) {
        return session.Fail(
            {kExitFailed, absl::StrCat("Secret ", options_.namespace_, "/", name,
                                       " changed while meshctl renewed it; it is as it was, run "
                                       "again")});
      }
      if (!put.body.ok()) {
        return session.Fail(
            {ApiServerExit(put), absl::StrCat("updating Secret ", options_.namespace_, "/", name,
                                              ": ", put.body.status().message())});
      }
    }
    for (const std::string& line : renewal->report) session.io().out << line << "\n";
    if (!renewal->renewed.empty()) {
      session.io().out << "The kubelet updates the mounted files within a minute or two; etcd and "
                          "the control plane take them for new connections, without a restart "
                          "(ca.crt unchanged)\n";
    }
    return kExitOk;
  }

  // Which key seals each ControlPlaneSecret record, from the control plane's /metrics through
  // meshctl's context; a Failure when it cannot be read.
  std::variant<std::map<std::string, std::string>, Failure> SealedRecords(Session& session) {
    if (std::optional<Failure> f = session.Connect()) return *f;
    absl::StatusOr<HttpResponse> metrics = session.api().SendPlain("GET", "/metrics");
    if (!metrics.ok() || metrics->status != 200) {
      Failure f = session.api().PlainFailure("reading the control plane's /metrics", metrics);
      f.message = absl::StrCat("--finish: ", f.message,
                               "; finishing needs the control plane to say which key seals each "
                               "record (meshctl context, or --server)");
      return f;
    }
    return install::SealedRecordsFromMetrics(metrics->body);
  }

  int RunRotateStoreKey(Session& session) {
    std::ostream& out = session.io().out;
    if (!store_key_file_.empty()) {
      if (!finish_) {
        absl::StatusOr<std::string> id = install::RotateKeyFile(store_key_file_);
        if (!id.ok()) return session.Fail({kExitFailed, std::string(id.status().message())});
        out << store_key_file_ << ": key " << *id
            << " first, the older keys kept after it. The control plane takes it within "
               "--store-key-check-interval; then run again with --finish\n";
        return kExitOk;
      }
      auto sealed = SealedRecords(session);
      if (auto* f = std::get_if<Failure>(&sealed)) return session.Fail(*f);
      absl::Status finished = install::FinishKeyFile(
          store_key_file_, std::get<std::map<std::string, std::string>>(sealed));
      if (!finished.ok()) return session.Fail({kExitFailed, std::string(finished.message())});
      out << store_key_file_ << ": the older keys dropped\n";
      return kExitOk;
    }
    // The Secret, through the Kubernetes API.
    absl::StatusOr<KubernetesClient> client = KubernetesClient::Connect(
        ClientFlags(), session.environment(),
        absl::StrCat("meshctl install --rotate-store-key needs get and update on Secret ",
                     install::kStoreKeySecret, " in ", options_.namespace_));
    if (!client.ok()) return session.Fail({kExitUsage, std::string(client.status().message())});
    const std::string name = absl::StrCat(options_.namespace_, "/", install::kStoreKeySecret);
    const std::string path = absl::StrCat("/api/v1/namespaces/", options_.namespace_, "/secrets/",
                                          install::kStoreKeySecret);
    absl::StatusOr<std::string> got = client->Fetch("GET", path);
    if (!got.ok()) {
      return session.Fail({absl::IsUnavailable(got.status()) ? kExitUnreachable : kExitFailed,
                           absl::StrCat("reading Secret ", name, ": ", got.status().message())});
    }
    YAML::Node secret;
    try {
      secret = YAML::Load(*got);
    } catch (const YAML::Exception& e) {
      return session.Fail(
          {kExitFailed, absl::StrCat("Secret ", name, ": not a JSON object: ", e.what())});
    }
    const std::string where = absl::StrCat("Secret ", name, ", ", install::kStoreKeyFile);
    std::string text;
    const YAML::Node data = secret.IsMap() ? secret["data"] : YAML::Node();
    if (!data.IsMap() || !data[install::kStoreKeyFile].IsScalar() ||
        !absl::Base64Unescape(data[install::kStoreKeyFile].Scalar(), &text)) {
      return session.Fail({kExitFailed, absl::StrCat(where,
                                                     ": missing, or not base64; nothing "
                                                     "changed")});
    }
    absl::StatusOr<std::string> changed = absl::InternalError("unset");
    if (finish_) {
      auto sealed = SealedRecords(session);
      if (auto* f = std::get_if<Failure>(&sealed)) return session.Fail(*f);
      changed = install::FinishedKeyText(text, where,
                                         std::get<std::map<std::string, std::string>>(sealed));
    } else {
      changed = StoreKeys::WithNewFirstKey(text, where);
    }
    if (!changed.ok()) {
      return session.Fail(
          {kExitFailed, absl::StrCat(changed.status().message(), "; nothing changed")});
    }
    const std::vector<std::string> ids = StoreKeys::Parse(*changed, where)->key_ids();
    // Replaced as read: the resourceVersion makes a concurrent change a conflict (409).
    secret["data"][install::kStoreKeyFile] = inject::StringNode(absl::Base64Escape(*changed));
    absl::StatusOr<HttpResponse> put = client->Call("PUT", path, inject::ToCompactJson(secret));
    if (!put.ok()) {
      return session.Fail(
          {kExitUnreachable, absl::StrCat("updating Secret ", name, ": ", put.status().message())});
    }
    if (put->status == 409) {
      return session.Fail({kExitFailed, absl::StrCat("Secret ", name,
                                                     " changed while meshctl updated it; "
                                                     "nothing changed, run again")});
    }
    if (put->status / 100 != 2) {
      return session.Fail({kExitFailed, absl::StrCat("updating Secret ", name, ": HTTP ",
                                                     put->status, ": ", put->body)});
    }
    if (finish_) {
      out << "secret/" << install::kStoreKeySecret << ": key " << ids.front()
          << " alone, the older keys dropped\n";
    } else {
      out << "secret/" << install::kStoreKeySecret << ": key " << ids.front() << " first, keys "
          << absl::StrJoin(ids.begin() + 1, ids.end(), ", ")
          << " kept after it. The control plane takes it once the kubelet updated the mounted "
             "Secret (a minute or two) and seals its records again; then run again with "
             "--finish\n";
    }
    return kExitOk;
  }

  const bool uninstall_;
  install::InstallOptions options_;
  std::string output_ = "yaml";
  bool keep_data_ = false;
  bool secrets_ = false;
  bool create_ = false;
  bool crds_ = false;
  bool rotate_store_key_ = false;
  bool renew_etcd_certificates_ = false;
  bool finish_ = false;
  std::string store_key_file_;
  std::string kubeconfig_;
  kubernetes::KubernetesApiOptions kubernetes_;
};

}  // namespace

int PreCheck(Session& session, const std::vector<std::string>& files) {
  std::vector<SourceFile> sources;
  if (!ReadYamlFiles(session, files, sources)) return kExitFailed;
  std::vector<YAML::Node> objects;
  for (const SourceFile& source : sources) {
    for (const config::YamlDocument& doc : source.documents) {
      YAML::Node node;
      try {
        node = YAML::Load(doc.yaml);
      } catch (const YAML::Exception& e) {
        return session.Fail({kExitFailed, absl::StrCat(source.name, " (document ", doc.index + 1,
                                                       "): ", e.what())});
      }
      if (node.IsMap()) objects.push_back(node);
    }
  }
  const std::vector<std::string> problems = install::CheckInstall(objects);
  std::ostream& out = session.io().out;
  if (problems.empty()) {
    out << "install checks passed: " << objects.size() << " objects\n";
    return kExitOk;
  }
  for (const std::string& p : problems) session.io().err << "error: " << p << "\n";
  session.io().err << problems.size() << " problem(s) in " << absl::StrJoin(files, ", ") << "\n";
  return kExitFailed;
}

CommandSpec InstallCommand() {
  return {.name = "install",
          .summary = "the control plane's Kubernetes manifests, for kubectl apply",
          .about =
              "Prints the manifests that install the control plane on Kubernetes: the objects "
              "of k8s/install (namespace, ServiceAccount, RBAC, data claim, Deployment, "
              "Service, PodDisruptionBudget, the injection webhook's configuration), changed "
              "by --set; with --crds, meshlet's CustomResourceDefinitions instead (apply them "
              "first: the control plane watches them with --kubernetes-policy). Applies "
              "nothing itself; the control plane fills in the webhook's "
              "caBundle once it runs (docs/kubernetes.md). Needs no control plane. With etcd "
              "the install holds a Job that makes its Secrets (keys, certificates) once; "
              "--secrets prints them instead, for those who keep Secrets elsewhere; "
              "--secrets --rotate-store-key rotates the store key (docs/control-plane.md, "
              "\"Secrets in the store\").",
          .examples = {{"install",
                        "meshctl install --crds | kubectl apply -f - && meshctl "
                        "install | kubectl apply -f -"},
                       {"check first",
                        "meshctl install --set namespace=mesh > install.yaml && meshctl check "
                        "--pre -f install.yaml"},
                       {"",
                        "meshctl install --set image=registry.example.com/meshlet-control-"
                        "plane:0.1.0 --set proxyImage=registry.example.com/meshlet-proxy:"
                        "0.1.0 --set injectMode=classic"},
                       {"replicas on the bundled etcd",
                        "meshctl install --set replicas=3 --set etcd=bundled | kubectl apply "
                        "-f -"},
                       {"the Secrets made offline",
                        "meshctl install --secrets --set etcd=bundled | kubectl create -f -"},
                       {"renew the bundled etcd's certificates now (the kubeconfig's context)",
                        "meshctl install --secrets --renew-etcd-certificates --set "
                        "etcd=bundled"},
                       {"rotate the store key, then drop the old one once re-sealed",
                        "meshctl install --secrets --rotate-store-key && meshctl install "
                        "--secrets --rotate-store-key --finish"}},
          .needs_context = false,
          .make = [] { return std::make_unique<Install>(false); }};
}

CommandSpec UninstallCommand() {
  return {.name = "uninstall",
          .summary = "what to delete to remove the control plane from Kubernetes",
          .about =
              "Prints the objects `meshctl install` creates, in the order to delete them (the "
              "webhook configuration first, so pod creation never waits on a control plane "
              "being removed). Give the same --set namespace as at install. Deletes nothing "
              "itself. Injected pods keep their sidecars until they are recreated.",
          .examples = {{"", "meshctl uninstall | kubectl delete -f -"},
                       {"and the policies of every namespace with them",
                        "meshctl uninstall --crds | kubectl delete -f -"},
                       {"keep the CA root and policies",
                        "meshctl uninstall --keep-data | kubectl delete -f -"}},
          .needs_context = false,
          .make = [] { return std::make_unique<Install>(true); }};
}

}  // namespace meshlet::controlplane::cli

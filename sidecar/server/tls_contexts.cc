#include "sidecar/server/tls_contexts.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/file.h"
#include "common/base/logging.h"
#include "common/base/status.h"

namespace meshlet::sidecar::server {

using cluster::ClusterConfig;
using cluster::UpstreamProtocol;
using cluster::UpstreamTlsConfig;

namespace {

// Upstream addresses per cluster whose session tickets are kept (a few hundred bytes each).
constexpr size_t kUpstreamSessionCacheSize = 1024;

const char* ModeName(tls::ClientCertificateMode mode) {
  switch (mode) {
    case tls::ClientCertificateMode::kNone:
      return "none";
    case tls::ClientCertificateMode::kRequest:
      return "request";
    case tls::ClientCertificateMode::kRequire:
      return "require";
  }
  return "?";
}

// Everything a context is built from, so equal strings mean an identical context.
std::string Fingerprint(absl::string_view role, const tls::TlsContextConfig& config,
                        const std::vector<std::string>& peer_ids) {
  return absl::StrCat(role, "\n", ModeName(config.client_certificate), "\n",
                      absl::StrJoin(config.alpn_protocols, ","), "\n", absl::StrJoin(peer_ids, ","),
                      "\n", config.certificate_chain_pem, "\n", config.private_key_pem, "\n",
                      config.trust_bundle_pem, "\n", config.session_tickets, "\n",
                      config.client_session_cache_size);
}

absl::Status NoWorkloadCertificate() {
  return absl::FailedPreconditionError(
      "tls.workload_certificate: this sidecar has no workload certificate (start it with "
      "--join-token-file and a CA: --ca-address or --xds)");
}

// The workload certificate and key into `out`, with the trust bundle of `trust_bundle_secret`
// (pushed over xDS, so root rotations arrive without a renewal) or else the CA's.
absl::Status UseWorkloadCertificate(const WorkloadTlsMaterial* workload,
                                    const std::string& trust_bundle_secret,
                                    const config::Snapshot& snapshot, tls::TlsContextConfig& out) {
  if (workload == nullptr) return NoWorkloadCertificate();
  out.certificate_chain_pem = workload->certificate_chain_pem;
  out.private_key_pem = workload->private_key_pem;
  out.trust_bundle_pem = workload->trust_bundle_pem;
  if (trust_bundle_secret.empty()) return absl::OkStatus();
  const config::SecretConfig* secret = snapshot.FindSecret(trust_bundle_secret);
  if (secret == nullptr || secret->trust_bundle_pem.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("tls.trust_bundle_secret \"",
                                                   trust_bundle_secret,
                                                   "\" names no Secret with a trust bundle"));
  }
  out.trust_bundle_pem = secret->trust_bundle_pem;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<tls::TlsContextConfig> ListenerTlsContextConfig(
    const config::ListenerConfig& listener, const config::Snapshot& snapshot,
    const WorkloadTlsMaterial* workload) {
  const config::DownstreamTlsConfig& in = listener.tls;
  tls::TlsContextConfig out;
  if (in.workload_certificate) {
    RETURN_IF_ERROR(UseWorkloadCertificate(workload, in.trust_bundle_secret, snapshot, out));
  } else {
    const config::SecretConfig* secret = snapshot.FindSecret(in.secret_name);
    if (secret == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("tls.secret_name \"", in.secret_name, "\" names no Secret"));
    }
    out.certificate_chain_pem = secret->certificate_chain_pem;
    out.private_key_pem = secret->private_key_pem;
    out.trust_bundle_pem = secret->trust_bundle_pem;
  }
  // Only protocols this listener can serve are offered.
  for (const std::string& protocol : in.alpn) {
    switch (listener.protocol) {
      case config::ListenerProtocol::kHttp1:
        if (protocol == "http/1.1") out.alpn_protocols.push_back(protocol);
        break;
      case config::ListenerProtocol::kHttp2:
        if (protocol == "h2") out.alpn_protocols.push_back(protocol);
        break;
      case config::ListenerProtocol::kHttp:
      case config::ListenerProtocol::kAuto:
        out.alpn_protocols.push_back(protocol);
        break;
      case config::ListenerProtocol::kTcp:
        break;  // opaque bytes: no application protocol to agree on
    }
  }
  if (in.require_client_certificate || !in.allowed_peer_ids.empty()) {
    out.client_certificate = tls::ClientCertificateMode::kRequire;
  } else if (!out.trust_bundle_pem.empty()) {
    // Clients that present a certificate are verified and identified; others are still served.
    out.client_certificate = tls::ClientCertificateMode::kRequest;
  }
  if (!in.allowed_peer_ids.empty()) {
    absl::StatusOr<tls::SpiffeIdMatcher> matcher =
        tls::SpiffeIdMatcher::FromPatterns(in.allowed_peer_ids);
    if (!matcher.ok()) return Annotate(matcher.status(), "tls.allowed_peer_ids");
    out.peer_identity = *std::move(matcher);
  }
  out.session_tickets = in.session_resumption;
  return out;
}

std::vector<std::string> ClusterAlpn(const ClusterConfig& cluster) {
  if (!cluster.tls.alpn.empty()) return cluster.tls.alpn;
  switch (cluster.protocol) {
    case UpstreamProtocol::kHttp1:
      return {"http/1.1"};
    case UpstreamProtocol::kHttp2:
    case UpstreamProtocol::kMeshHttp2:
      return {"h2"};
    case UpstreamProtocol::kSameAsDownstream:
      break;
  }
  return {};
}

absl::StatusOr<tls::TlsContextConfig> ClusterTlsContextConfig(const ClusterConfig& cluster,
                                                              const config::Snapshot& snapshot,
                                                              const WorkloadTlsMaterial* workload) {
  const UpstreamTlsConfig& in = cluster.tls;
  tls::TlsContextConfig out;
  if (in.workload_certificate) {
    RETURN_IF_ERROR(UseWorkloadCertificate(workload, in.trust_bundle_secret, snapshot, out));
  } else if (!in.secret_name.empty()) {
    const config::SecretConfig* secret = snapshot.FindSecret(in.secret_name);
    if (secret == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("tls.secret_name \"", in.secret_name, "\" names no Secret"));
    }
    out.certificate_chain_pem = secret->certificate_chain_pem;
    out.private_key_pem = secret->private_key_pem;
    out.trust_bundle_pem = secret->trust_bundle_pem;
  }
  if (!in.ca_file.empty()) {
    absl::StatusOr<std::string> bundle = ReadFile(in.ca_file);
    if (!bundle.ok()) return Annotate(bundle.status(), "tls.ca_file");
    out.trust_bundle_pem = *std::move(bundle);
  }
  if (out.trust_bundle_pem.empty()) {
    return absl::InvalidArgumentError(
        "tls: no trust bundle to verify the upstream with (a secret with one, or ca_file)");
  }
  out.alpn_protocols = ClusterAlpn(cluster);
  out.client_session_cache_size = in.session_resumption ? kUpstreamSessionCacheSize : 0;
  if (!in.expected_peer_ids.empty()) {
    absl::StatusOr<tls::SpiffeIdMatcher> matcher =
        tls::SpiffeIdMatcher::FromPatterns(in.expected_peer_ids);
    if (!matcher.ok()) return Annotate(matcher.status(), "tls.expected_peer_ids");
    out.peer_identity = *std::move(matcher);
  }
  return out;
}

absl::StatusOr<TlsContexts::Prepared> TlsContexts::Prepare(const config::Snapshot& snapshot) const {
  Prepared prepared;
  // Which fingerprints are live now, to skip rebuilding unchanged contexts.
  std::map<std::string, std::string> current_listeners;
  std::map<std::string, std::string> current_clusters;
  std::optional<WorkloadTlsMaterial> workload;
  {
    MutexLock lock(&mu_);
    workload = workload_;
    for (const auto& [name, entry] : listeners_) current_listeners[name] = entry.fingerprint;
    for (const auto& [name, entry] : clusters_) current_clusters[name] = entry.fingerprint;
  }
  for (const config::ListenerConfig& listener : snapshot.listeners) {
    if (listener.tls.mode == config::DownstreamTlsConfig::Mode::kDisable) continue;
    const std::string label = absl::StrCat("listener \"", listener.name, "\"");
    absl::StatusOr<tls::TlsContextConfig> config =
        ListenerTlsContextConfig(listener, snapshot, workload.has_value() ? &*workload : nullptr);
    if (!config.ok()) return Annotate(config.status(), label);
    Prepared::Entry entry;
    entry.fingerprint = Fingerprint("server", *config, listener.tls.allowed_peer_ids);
    auto it = current_listeners.find(listener.name);
    if (it == current_listeners.end() || it->second != entry.fingerprint) {
      absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
          tls::TlsContext::CreateServer(*config);
      if (!context.ok()) {
        return Annotate(context.status(), listener.tls.workload_certificate
                                              ? absl::StrCat(label, ": tls (workload certificate)")
                                              : absl::StrCat(label, ": tls (secret \"",
                                                             listener.tls.secret_name, "\")"));
      }
      entry.context = *std::move(context);
    }
    prepared.listeners[listener.name] = std::move(entry);
  }
  for (const auto& [name, cluster] : snapshot.clusters) {
    if (cluster == nullptr || !cluster->tls.enabled) continue;
    const std::string label = absl::StrCat("cluster \"", name, "\"");
    absl::StatusOr<tls::TlsContextConfig> config =
        ClusterTlsContextConfig(*cluster, snapshot, workload.has_value() ? &*workload : nullptr);
    if (!config.ok()) return Annotate(config.status(), label);
    Prepared::Entry entry;
    entry.fingerprint = Fingerprint("client", *config, cluster->tls.expected_peer_ids);
    auto it = current_clusters.find(name);
    if (it == current_clusters.end() || it->second != entry.fingerprint) {
      absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
          tls::TlsContext::CreateClient(*config);
      if (!context.ok()) return Annotate(context.status(), absl::StrCat(label, ": tls"));
      entry.context = *std::move(context);
    }
    prepared.clusters[name] = std::move(entry);
  }
  return prepared;
}

void TlsContexts::CommitInto(Map& published, std::map<std::string, Prepared::Entry>& prepared,
                             absl::string_view kind) {
  for (auto& [name, entry] : prepared) {
    if (entry.context == nullptr) continue;  // unchanged
    Published& slot = published[name];
    if (slot.provider == nullptr) {
      slot.provider = std::make_shared<tls::TlsContextProvider>(std::move(entry.context));
    } else {
      slot.provider->Update(std::move(entry.context));
      LOG(INFO) << kind << " " << name << ": TLS context replaced (generation "
                << slot.provider->generation() << "); open connections keep the previous one";
    }
    slot.fingerprint = std::move(entry.fingerprint);
  }
}

void TlsContexts::Commit(Prepared prepared) {
  MutexLock lock(&mu_);
  CommitInto(listeners_, prepared.listeners, "listener");
  CommitInto(clusters_, prepared.clusters, "cluster");
}

absl::Status TlsContexts::Apply(const config::Snapshot& snapshot) {
  ASSIGN_OR_RETURN(Prepared prepared, Prepare(snapshot));
  Commit(std::move(prepared));
  return absl::OkStatus();
}

void TlsContexts::SetWorkloadCertificate(WorkloadTlsMaterial material) {
  MutexLock lock(&mu_);
  workload_ = std::move(material);
}

bool TlsContexts::has_workload_certificate() const {
  MutexLock lock(&mu_);
  return workload_.has_value();
}

std::shared_ptr<const tls::TlsContextProvider> TlsContexts::ForListener(
    absl::string_view name) const {
  MutexLock lock(&mu_);
  auto it = listeners_.find(name);
  return it == listeners_.end() ? nullptr : it->second.provider;
}

std::shared_ptr<const tls::TlsContextProvider> TlsContexts::ForCluster(
    absl::string_view name) const {
  MutexLock lock(&mu_);
  auto it = clusters_.find(name);
  return it == clusters_.end() ? nullptr : it->second.provider;
}

}  // namespace meshlet::sidecar::server

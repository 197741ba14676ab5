#include "sidecar/server/tls_contexts.h"

#include <iterator>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/file.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/tls/digest.h"

namespace meshlet::sidecar::server {

using cluster::ClusterConfig;
using cluster::UpstreamProtocol;
using cluster::UpstreamTlsConfig;

namespace {

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

absl::Status NoWorkloadCertificate() {
  return absl::FailedPreconditionError(
      "tls.workload_certificate: this sidecar has no workload certificate (start it with "
      "--join-token-file and a CA: --ca-address or --xds)");
}

// The PEM texts a context is built from, viewing the snapshot's secrets, the workload material or
// a ca_file read into a MaterialCache; valid while those are.
struct Pems {
  absl::string_view chain;
  absl::string_view key;
  absl::string_view bundle;
  // SPIFFE federation (the trust-bundle Secret's federated bundles) and the local trust domain
  // they are told apart from; null without.
  const std::map<std::string, std::string>* federated = nullptr;
  const std::vector<std::string>* aliases = nullptr;
  absl::string_view local_domain;
  // A listener's certificates by SNI (DownstreamTls.server_certificates): names, chain, key.
  struct Sni {
    const std::vector<std::string>* server_names = nullptr;
    absl::string_view chain;
    absl::string_view key;
  };
  std::vector<Sni> sni;
};

// What one Prepare reads and hashes once however many listeners and clusters use it: ca_file
// contents by path, and the digest of each PEM text by its address (every text a Pems views lives
// until Prepare returns).
class MaterialCache {
 public:
  absl::StatusOr<absl::string_view> ReadCaFile(const std::string& path) {
    auto it = files_.find(path);
    if (it == files_.end()) {
      absl::StatusOr<std::string> contents = ReadFile(path);
      if (!contents.ok()) return contents.status();
      it = files_.emplace(path, *std::move(contents)).first;
    }
    return absl::string_view(it->second);
  }

  // SHA-256 of `pem`, raw; "" for an empty text.
  const std::string& Digest(absl::string_view pem) {
    static const std::string* const kNone = new std::string();
    if (pem.empty()) return *kNone;
    std::string& digest = digests_[std::make_pair(pem.data(), pem.size())];
    if (digest.empty()) digest = tls::Sha256(pem);
    return digest;
  }

 private:
  std::map<std::string, std::string, std::less<>> files_;
  // A map, not a hash map: Digest's references must survive later insertions.
  std::map<std::pair<const char*, size_t>, std::string> digests_;
};

Pems SecretPems(const config::SecretConfig& secret) {
  return Pems{.chain = secret.certificate_chain_pem,
              .key = secret.private_key_pem,
              .bundle = secret.trust_bundle_pem};
}

// The workload certificate and key, with the trust bundle of `trust_bundle_secret` (pushed over
// xDS, so root rotations arrive without a renewal) or else the CA's.
absl::StatusOr<Pems> WorkloadPems(const WorkloadTlsMaterial* workload,
                                  const std::string& trust_bundle_secret,
                                  const config::Snapshot& snapshot) {
  if (workload == nullptr) return NoWorkloadCertificate();
  Pems out{.chain = workload->certificate_chain_pem,
           .key = workload->private_key_pem,
           .bundle = workload->trust_bundle_pem};
  if (trust_bundle_secret.empty()) return out;
  const config::SecretConfig* secret = snapshot.FindSecret(trust_bundle_secret);
  if (secret == nullptr || secret->trust_bundle_pem.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("tls.trust_bundle_secret \"",
                                                   trust_bundle_secret,
                                                   "\" names no Secret with a trust bundle"));
  }
  out.bundle = secret->trust_bundle_pem;
  if ((!secret->federated_bundles.empty() || !secret->trust_domain_aliases.empty()) &&
      !workload->trust_domain.empty()) {
    out.federated = &secret->federated_bundles;
    out.aliases = &secret->trust_domain_aliases;
    out.local_domain = workload->trust_domain;
  }
  return out;
}

absl::StatusOr<Pems> NamedSecretPems(const std::string& secret_name,
                                     const config::Snapshot& snapshot) {
  const config::SecretConfig* secret = snapshot.FindSecret(secret_name);
  if (secret == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls.secret_name \"", secret_name, "\" names no Secret"));
  }
  return SecretPems(*secret);
}

absl::StatusOr<Pems> ListenerPems(const config::DownstreamTlsConfig& in,
                                  const config::Snapshot& snapshot,
                                  const WorkloadTlsMaterial* workload) {
  if (in.workload_certificate) return WorkloadPems(workload, in.trust_bundle_secret, snapshot);
  ASSIGN_OR_RETURN(Pems out, NamedSecretPems(in.secret_name, snapshot));
  for (const config::DownstreamTlsConfig::ServerCertificate& c : in.server_certificates) {
    const config::SecretConfig* secret = snapshot.FindSecret(c.secret_name);
    if (secret == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("tls.server_certificates: secret \"", c.secret_name, "\" names no Secret"));
    }
    const Pems pems = SecretPems(*secret);
    out.sni.push_back({.server_names = &c.server_names, .chain = pems.chain, .key = pems.key});
  }
  return out;
}

absl::StatusOr<Pems> ClusterPems(const UpstreamTlsConfig& in, const config::Snapshot& snapshot,
                                 const WorkloadTlsMaterial* workload, MaterialCache& cache) {
  Pems out;
  if (in.workload_certificate) {
    ASSIGN_OR_RETURN(out, WorkloadPems(workload, in.trust_bundle_secret, snapshot));
  } else if (!in.secret_name.empty()) {
    ASSIGN_OR_RETURN(out, NamedSecretPems(in.secret_name, snapshot));
  }
  if (!in.ca_file.empty()) {
    absl::StatusOr<absl::string_view> bundle = cache.ReadCaFile(in.ca_file);
    if (!bundle.ok()) return Annotate(bundle.status(), "tls.ca_file");
    out.bundle = *bundle;
  }
  if (out.bundle.empty()) {
    return absl::InvalidArgumentError(
        "tls: no trust bundle to verify the upstream with (a secret with one, or ca_file)");
  }
  return out;
}

// A listener's context settings but its PEM texts.
absl::StatusOr<tls::TlsContextConfig> ListenerSettings(const config::ListenerConfig& listener,
                                                       bool has_trust_bundle) {
  const config::DownstreamTlsConfig& in = listener.tls;
  tls::TlsContextConfig out;
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
  } else if (has_trust_bundle) {
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

// A cluster's context settings but its PEM texts (and, by design, its expected peer ids).
tls::TlsContextConfig ClusterSettings(const ClusterConfig& cluster,
                                      const TlsContextLimits& limits) {
  tls::TlsContextConfig out;
  out.alpn_protocols = ClusterAlpn(cluster);
  out.client_session_cache_size = cluster.tls.session_resumption ? limits.upstream_sessions : 0;
  out.verified_chain_cache_size = limits.verified_chains;
  return out;
}

void CopyPems(const Pems& pems, tls::TlsContextConfig& out) {
  out.certificate_chain_pem = std::string(pems.chain);
  out.private_key_pem = std::string(pems.key);
  out.trust_bundle_pem = std::string(pems.bundle);
  for (const Pems::Sni& sni : pems.sni) {
    out.sni_certificates.push_back({.server_names = *sni.server_names,
                                    .certificate_chain_pem = std::string(sni.chain),
                                    .private_key_pem = std::string(sni.key)});
  }
  if (pems.federated != nullptr) {
    out.local_trust_domain = std::string(pems.local_domain);
    out.federated_bundles_pem = *pems.federated;
    out.trust_domain_aliases = *pems.aliases;
  }
}

// Everything a context is built from, so equal strings mean an identical context: its settings
// and the digests of its PEM texts. `peer_ids` are a listener's allowed_peer_ids (a cluster's
// are checked per connection, so clusters that differ only there share a context).
std::string Fingerprint(absl::string_view role, const tls::TlsContextConfig& settings,
                        const std::vector<std::string>& peer_ids, const Pems& pems,
                        MaterialCache& cache) {
  std::string out =
      absl::StrCat(role, "\n", ModeName(settings.client_certificate), "\n",
                   absl::StrJoin(settings.alpn_protocols, ","), "\n", absl::StrJoin(peer_ids, ","),
                   "\n", settings.session_tickets, "\n", settings.client_session_cache_size, "\n",
                   cache.Digest(pems.chain), cache.Digest(pems.key), cache.Digest(pems.bundle));
  for (const Pems::Sni& sni : pems.sni) {
    absl::StrAppend(&out, "\nsni ", absl::StrJoin(*sni.server_names, ","), " ",
                    cache.Digest(sni.chain), cache.Digest(sni.key));
  }
  if (pems.federated != nullptr) {
    absl::StrAppend(&out, "\nfederated ", pems.local_domain, " ",
                    absl::StrJoin(*pems.aliases, ","));
    for (const auto& [domain, pem] : *pems.federated) {
      absl::StrAppend(&out, "\n", domain, " ", cache.Digest(pem));
    }
  }
  return out;
}

using ContextMap =
    std::map<std::string, std::shared_ptr<const TlsContexts::SharedContext>, std::less<>>;

// The context of `fingerprint`: one this snapshot already uses, else the live one, else built
// from `config` (PEMs added) by `create`.
absl::StatusOr<std::shared_ptr<const TlsContexts::SharedContext>> FindOrBuild(
    std::string fingerprint, const ContextMap& live, ContextMap& used, const Pems& pems,
    tls::TlsContextConfig& config,
    absl::StatusOr<std::shared_ptr<const tls::TlsContext>> (*create)(
        const tls::TlsContextConfig&)) {
  if (auto it = used.find(fingerprint); it != used.end()) return it->second;
  std::shared_ptr<const TlsContexts::SharedContext> shared;
  if (auto it = live.find(fingerprint); it != live.end()) {
    shared = it->second;
  } else {
    CopyPems(pems, config);
    ASSIGN_OR_RETURN(std::shared_ptr<const tls::TlsContext> context, create(config));
    shared = std::make_shared<const TlsContexts::SharedContext>(
        TlsContexts::SharedContext{.fingerprint = fingerprint, .context = std::move(context)});
  }
  used.emplace(std::move(fingerprint), shared);
  return shared;
}

// Prepares the context of cluster `name` (with TLS) into `prepared.clusters`.
absl::Status PrepareCluster(const std::string& name, const ClusterConfig& cluster,
                            const config::Snapshot& snapshot, const WorkloadTlsMaterial* workload,
                            const TlsContextLimits& limits, MaterialCache& cache,
                            const ContextMap& live, TlsContexts::Prepared& prepared) {
  const std::string label = absl::StrCat("cluster \"", name, "\"");
  absl::StatusOr<Pems> pems = ClusterPems(cluster.tls, snapshot, workload, cache);
  if (!pems.ok()) return Annotate(pems.status(), label);
  // Checked per connection (UpstreamTransportFactory), but refused here like before.
  if (!cluster.tls.expected_peer_ids.empty()) {
    if (absl::StatusOr<tls::SpiffeIdMatcher> matcher =
            tls::SpiffeIdMatcher::FromPatterns(cluster.tls.expected_peer_ids);
        !matcher.ok()) {
      return Annotate(Annotate(matcher.status(), "tls.expected_peer_ids"), label);
    }
  }
  tls::TlsContextConfig config = ClusterSettings(cluster, limits);
  absl::StatusOr<std::shared_ptr<const TlsContexts::SharedContext>> shared =
      FindOrBuild(Fingerprint("client", config, {}, *pems, cache), live, prepared.contexts, *pems,
                  config, &tls::TlsContext::CreateClient);
  if (!shared.ok()) return Annotate(shared.status(), absl::StrCat(label, ": tls"));
  prepared.clusters[name] = *std::move(shared);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<tls::TlsContextConfig> ListenerTlsContextConfig(
    const config::ListenerConfig& listener, const config::Snapshot& snapshot,
    const WorkloadTlsMaterial* workload) {
  ASSIGN_OR_RETURN(Pems pems, ListenerPems(listener.tls, snapshot, workload));
  ASSIGN_OR_RETURN(tls::TlsContextConfig out, ListenerSettings(listener, !pems.bundle.empty()));
  CopyPems(pems, out);
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
  MaterialCache cache;
  ASSIGN_OR_RETURN(Pems pems, ClusterPems(cluster.tls, snapshot, workload, cache));
  tls::TlsContextConfig out = ClusterSettings(cluster, TlsContextLimits{});
  CopyPems(pems, out);
  return out;
}

absl::StatusOr<TlsContexts::Prepared> TlsContexts::Prepare(
    const config::Snapshot& snapshot, const std::vector<std::string>* changed_clusters) const {
  Prepared prepared;
  // The contexts live now, to reuse rather than rebuild (few: one per material).
  ContextMap live;
  {
    MutexLock lock(&mu_);
    prepared.workload = workload_;
    live = listener_contexts_;
    for (const auto& [fingerprint, users] : cluster_contexts_)
      live.emplace(fingerprint, users.shared);
    // A new workload certificate changes the fingerprint of every cluster that uses it.
    prepared.whole = changed_clusters == nullptr || !committed_ || committed_workload_ != workload_;
  }
  const WorkloadTlsMaterial* workload = prepared.workload.get();
  MaterialCache cache;
  for (const config::ListenerConfig& listener : snapshot.listeners) {
    if (listener.tls.mode == config::DownstreamTlsConfig::Mode::kDisable) continue;
    const std::string label = absl::StrCat("listener \"", listener.name, "\"");
    absl::StatusOr<Pems> pems = ListenerPems(listener.tls, snapshot, workload);
    if (!pems.ok()) return Annotate(pems.status(), label);
    absl::StatusOr<tls::TlsContextConfig> config =
        ListenerSettings(listener, !pems->bundle.empty());
    if (!config.ok()) return Annotate(config.status(), label);
    config->verified_chain_cache_size = limits_.verified_chains;
    absl::StatusOr<std::shared_ptr<const SharedContext>> shared =
        FindOrBuild(Fingerprint("server", *config, listener.tls.allowed_peer_ids, *pems, cache),
                    live, prepared.contexts, *pems, *config, &tls::TlsContext::CreateServer);
    if (!shared.ok()) {
      return Annotate(shared.status(), listener.tls.workload_certificate
                                           ? absl::StrCat(label, ": tls (workload certificate)")
                                           : absl::StrCat(label, ": tls (secret \"",
                                                          listener.tls.secret_name, "\")"));
    }
    prepared.listeners[listener.name] = *std::move(shared);
  }
  if (prepared.whole) {
    for (const auto& [name, cluster] : snapshot.clusters) {
      ++prepared.clusters_examined;
      if (cluster == nullptr || !cluster->tls.enabled) continue;
      RETURN_IF_ERROR(
          PrepareCluster(name, *cluster, snapshot, workload, limits_, cache, live, prepared));
    }
    return prepared;
  }
  // Every other cluster is the committed snapshot's, with the same secrets and workload
  // certificate: its context stands.
  for (const std::string& name : *changed_clusters) {
    ++prepared.clusters_examined;
    auto it = snapshot.clusters.find(name);
    if (it == snapshot.clusters.end() || it->second == nullptr || !it->second->tls.enabled) {
      prepared.clusters[name] = nullptr;  // no TLS (any more)
      continue;
    }
    RETURN_IF_ERROR(
        PrepareCluster(name, *it->second, snapshot, workload, limits_, cache, live, prepared));
  }
  return prepared;
}

void TlsContexts::CommitInto(Map& published,
                             std::map<std::string, std::shared_ptr<const SharedContext>>& prepared,
                             absl::string_view kind) {
  size_t replaced = 0;
  const std::string* first_replaced = nullptr;
  for (auto& [name, shared] : prepared) {
    Published& slot = published[name];
    if (slot.shared == shared) continue;  // unchanged
    if (slot.provider == nullptr) {
      slot.provider = std::make_shared<tls::TlsContextProvider>(shared->context);
    } else {
      slot.provider->Update(shared->context);
      if (replaced++ == 0) first_replaced = &name;
    }
    slot.shared = std::move(shared);
  }
  LogReplaced(kind, replaced, first_replaced);
}

void TlsContexts::LogReplaced(absl::string_view kind, size_t replaced,
                              const std::string* first_replaced) {
  // One line per commit, not per name: a rotation replaces every cluster's context at once.
  if (replaced > 0) {
    LOG(INFO) << kind << " " << *first_replaced
              << (replaced > 1 ? absl::StrCat(" and ", replaced - 1, " more") : "")
              << ": TLS context replaced; open connections keep the previous one";
  }
}

void TlsContexts::Acquire(const std::shared_ptr<const SharedContext>& shared) {
  ContextUsers& entry = cluster_contexts_[shared->fingerprint];
  if (entry.shared == nullptr) entry.shared = shared;
  ++entry.users;
}

void TlsContexts::Release(const std::shared_ptr<const SharedContext>& shared) {
  auto it = cluster_contexts_.find(shared->fingerprint);
  if (it != cluster_contexts_.end() && --it->second.users == 0) cluster_contexts_.erase(it);
}

TlsContexts::Map::iterator TlsContexts::Retire(Map::iterator it,
                                               std::chrono::steady_clock::time_point now) {
  Release(it->second.shared);
  if (limits_.removed_cluster_grace > std::chrono::steady_clock::duration::zero()) {
    retired_order_.emplace_back(now, it->first);
    retired_.insert_or_assign(it->first, Retired{.published = std::move(it->second), .at = now});
  }
  return clusters_.erase(it);
}

void TlsContexts::ExpireRetired(std::chrono::steady_clock::time_point now) {
  while (!retired_order_.empty() &&
         now - retired_order_.front().first >= limits_.removed_cluster_grace) {
    const auto& [at, name] = retired_order_.front();
    auto it = retired_.find(name);
    if (it != retired_.end() && it->second.at == at) retired_.erase(it);
    retired_order_.pop_front();
  }
}

void TlsContexts::Commit(Prepared prepared) {
  MutexLock lock(&mu_);
  listener_contexts_.clear();
  for (const auto& [name, shared] : prepared.listeners) {
    listener_contexts_.emplace(shared->fingerprint, shared);
  }
  // Listeners gone or without TLS lose their providers (listeners are always prepared whole).
  // Workers' listener contexts and open sessions hold their own references, so nothing they use
  // is freed; the provider, its context and its SSL_CTX go with the last of them.
  for (auto it = listeners_.begin(); it != listeners_.end();) {
    it = prepared.listeners.contains(it->first) ? std::next(it) : listeners_.erase(it);
  }
  CommitInto(listeners_, prepared.listeners, "listener");

  const std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now();
  ExpireRetired(now);
  size_t examined = prepared.clusters.size();
  if (prepared.whole) {
    // Clusters the snapshot no longer has: their providers go (connections made from them keep
    // their own references), so a name that comes back starts afresh.
    for (auto it = clusters_.begin(); it != clusters_.end();) {
      ++examined;
      if (prepared.clusters.find(it->first) != prepared.clusters.end()) {
        ++it;
        continue;
      }
      it = Retire(it, now);
    }
  }
  size_t replaced = 0;
  const std::string* first_replaced = nullptr;
  for (auto& [name, shared] : prepared.clusters) {
    auto it = clusters_.find(name);
    if (shared == nullptr) {  // changed to no TLS, or removed
      if (it != clusters_.end()) Retire(it, now);
      continue;
    }
    if (it == clusters_.end()) {
      Acquire(shared);
      auto retired = retired_.find(name);
      if (retired != retired_.end()) {  // back within its grace: its provider again
        Published back = std::move(retired->second.published);
        retired_.erase(retired);
        if (back.shared != shared) back.provider->Update(shared->context);
        back.shared = shared;
        clusters_.emplace(name, std::move(back));
        continue;
      }
      clusters_.emplace(
          name, Published{.shared = shared,
                          .provider = std::make_shared<tls::TlsContextProvider>(shared->context)});
      continue;
    }
    Published& slot = it->second;
    if (slot.shared == shared) continue;  // unchanged
    Acquire(shared);
    Release(slot.shared);
    slot.provider->Update(shared->context);
    slot.shared = std::move(shared);
    if (replaced++ == 0) first_replaced = &name;
  }
  LogReplaced("cluster", replaced, first_replaced);
  committed_ = true;
  committed_workload_ = std::move(prepared.workload);
  commit_clusters_examined_ = examined;
}

absl::Status TlsContexts::Apply(const config::Snapshot& snapshot,
                                const std::vector<std::string>* changed_clusters) {
  ASSIGN_OR_RETURN(Prepared prepared, Prepare(snapshot, changed_clusters));
  Commit(std::move(prepared));
  return absl::OkStatus();
}

void TlsContexts::SetWorkloadCertificate(WorkloadTlsMaterial material) {
  auto shared = std::make_shared<const WorkloadTlsMaterial>(std::move(material));
  MutexLock lock(&mu_);
  workload_ = std::move(shared);
}

bool TlsContexts::has_workload_certificate() const {
  MutexLock lock(&mu_);
  return workload_ != nullptr;
}

size_t TlsContexts::context_count() const {
  MutexLock lock(&mu_);
  size_t count = listener_contexts_.size();
  for (const auto& [fingerprint, users] : cluster_contexts_) {
    if (!listener_contexts_.contains(fingerprint)) ++count;
  }
  return count;
}

size_t TlsContexts::commit_clusters_examined() const {
  MutexLock lock(&mu_);
  return commit_clusters_examined_;
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
  if (it != clusters_.end()) return it->second.provider;
  auto retired = retired_.find(name);
  return retired == retired_.end() ? nullptr : retired->second.published.provider;
}

}  // namespace meshlet::sidecar::server

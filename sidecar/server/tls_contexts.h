#pragma once

// TlsContexts: the TLS contexts of the sidecar's listeners (server side) and TLS clusters (client
// side), built from each configuration snapshot and published through one TlsContextProvider per
// listener or cluster name.
//
// Contexts are shared per material: one context per distinct fingerprint (role, client-certificate
// policy, ALPN, session settings, and a digest of the certificate chain, key and trust bundle),
// however many listeners or clusters use it. A cluster's expected_peer_ids are not part of its
// context: each connection checks them (UpstreamTransportFactory passes them as the session's
// peer identity), so a sidecar calling a thousand services on mutual TLS holds one client context,
// not one per service. A listener's allowed_peer_ids stay in its context (listeners are few).
// Each distinct PEM text is hashed once per Prepare, not once per user.
//
// Prepare(snapshot) builds every context the snapshot needs without publishing anything, so a
// secret that does not load (bad PEM, a key that does not match its certificate, an unreadable
// ca_file) refuses the whole snapshot with an error naming the first resource that uses it.
// Commit() then publishes them: a listener or cluster whose fingerprint did not change keeps its
// context; a changed one gets the new context swapped into its provider, so new connections use it
// and connections already open keep theirs (rotation, design.md §3).
//
// A snapshot built from the committed one by what changed (config::ChangedClusters) is prepared
// and committed by those cluster names alone: the others are the committed snapshot's with the
// same secrets, so their contexts stand, and an apply that adds one cluster to thousands looks at
// one. The whole set is walked for the first snapshot, one built whole, and after
// SetWorkloadCertificate; listeners (few) always are. A ca_file is therefore re-read only when a
// cluster using it changes or the set is walked whole.
//
// A cluster that leaves the configuration loses its provider (ForCluster returns null; transports
// made from it keep their own reference, so open connections are unaffected) and a name that
// comes back gets a fresh one; a context no cluster or listener of the committed snapshot uses is
// no longer held here. Likewise a listener that leaves the configuration or turns TLS off loses
// its provider, and one that comes back gets a fresh provider: a worker's listener context and
// each open session keep their own references, so they are unaffected, and the provider, context
// and SSL_CTX are freed with the last of them (a sidecar whose listeners churn does not grow). A
// worker still applying an older snapshot that has the removed listener finds no provider and
// refuses that listener's TLS connections (counted as tls_unavailable) until it applies the
// snapshot that removes the listener.
// A removed cluster's provider stays findable for TlsContextLimits::removed_cluster_grace (a
// worker still on the previous snapshot may build that cluster on first use, and finds it), and
// a name that comes back within the grace takes its provider back.
//
// A listener or cluster with `workload_certificate: true` takes its certificate, key and trust
// bundle from the sidecar's CA-issued workload certificate (SetWorkloadCertificate) instead of a
// Secret. Those PEMs are part of the fingerprint, so after each rotation Apply(snapshot) replaces
// exactly the contexts that use the workload certificate. A snapshot that asks for it while the
// sidecar has none (no CA configured, or no certificate yet) is refused with an error naming the
// listener or cluster.
//
// Threading: Prepare and Commit run on the main thread. ForListener/ForCluster may be called from
// any thread (workers call them when they apply a snapshot); they take a mutex, and the providers
// they return are lock-free.

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/sync.h"
#include "common/tls/tls_context.h"
#include "common/tls/tls_context_provider.h"
#include "sidecar/cluster/cluster_config.h"
#include "sidecar/config/snapshot.h"

namespace meshlet::sidecar::server {

// The sidecar's CA-issued identity as TLS needs it (sidecar/identity keeps the rest).
struct WorkloadTlsMaterial {
  std::string certificate_chain_pem;  // leaf first
  std::string private_key_pem;
  std::string trust_bundle_pem;
  // The mesh's trust domain: with federated bundles on the trust-bundle Secret, peers of this
  // domain verify against the mesh bundle only, and each foreign domain's against its own.
  std::string trust_domain;
};

// The server-side context settings for a listener with TLS (mode PERMISSIVE or STRICT).
// `workload` is the current workload certificate, null without one.
absl::StatusOr<tls::TlsContextConfig> ListenerTlsContextConfig(
    const config::ListenerConfig& listener, const config::Snapshot& snapshot,
    const WorkloadTlsMaterial* workload = nullptr);
// The client-side context settings for a cluster with tls.enabled. Reads tls.ca_file. Carries no
// peer identity: the cluster's expected_peer_ids are checked per connection (the context is shared
// by every cluster with the same material).
absl::StatusOr<tls::TlsContextConfig> ClusterTlsContextConfig(
    const cluster::ClusterConfig& cluster, const config::Snapshot& snapshot,
    const WorkloadTlsMaterial* workload = nullptr);
// ALPN a cluster offers: its tls.alpn, else what its upstream protocol implies ("h2" for HTTP/2,
// "http/1.1" for HTTP/1.1, nothing when the protocol follows the downstream one).
std::vector<std::string> ClusterAlpn(const cluster::ClusterConfig& cluster);

// Bounds of each context's handshake caches (tls::TlsContextConfig). A client context serves every
// cluster of its material together, so they bound all of those clusters' entries at once.
struct TlsContextLimits {
  // Client: upstream addresses whose session tickets are kept (clusters with session_resumption);
  // 0: none.
  size_t upstream_sessions = 4096;
  // Peer chains remembered as verified; 0: every chain is verified in full.
  size_t verified_chains = 4096;
  // How long ForCluster still finds a removed cluster's provider: a worker applies a new snapshot
  // after the main thread commits it, and one still on the previous snapshot may build a removed
  // cluster on first use (ADR 0091) in between. Expired at later commits; 0: dropped at once.
  std::chrono::steady_clock::duration removed_cluster_grace = std::chrono::seconds(30);
};

class TlsContexts {
 public:
  explicit TlsContexts(TlsContextLimits limits = {}) : limits_(limits) {}

  // One built context and the fingerprint of everything it was built from, shared by every
  // listener or cluster with that fingerprint.
  struct SharedContext {
    std::string fingerprint;
    std::shared_ptr<const tls::TlsContext> context;
  };

  // Contexts built for one snapshot, not yet published.
  struct Prepared {
    // Per listener / cluster name: its context, the committed object when its fingerprint was
    // already live (then nothing is rebuilt or republished).
    std::map<std::string, std::shared_ptr<const SharedContext>> listeners;
    // With `whole`, every cluster of the snapshot with TLS; else only the changed clusters, null
    // for one that no longer has TLS or is gone.
    std::map<std::string, std::shared_ptr<const SharedContext>> clusters;
    // The contexts this Prepare found or built, by fingerprint.
    std::map<std::string, std::shared_ptr<const SharedContext>, std::less<>> contexts;
    bool whole = true;
    // Clusters looked at (tests and benchmarks: the cost follows what changed).
    size_t clusters_examined = 0;
    // The workload certificate it was built with.
    std::shared_ptr<const WorkloadTlsMaterial> workload;
  };

  // Builds what `snapshot` needs. Errors name the listener or cluster. `changed_clusters`:
  // config::ChangedClusters(snapshot), or null to walk every cluster; it may be given only when
  // the snapshot was built from the last one committed here (as the server does: each snapshot
  // it keeps is committed before the next is built). Must be committed before another Prepare.
  absl::StatusOr<Prepared> Prepare(
      const config::Snapshot& snapshot,
      const std::vector<std::string>* changed_clusters = nullptr) const;
  void Commit(Prepared prepared);
  // Prepare + Commit.
  absl::Status Apply(const config::Snapshot& snapshot,
                     const std::vector<std::string>* changed_clusters = nullptr);

  // Sets the workload certificate contexts are built from (takes effect at the next Apply /
  // Prepare + Commit).
  void SetWorkloadCertificate(WorkloadTlsMaterial material);
  bool has_workload_certificate() const;

  // The provider of a listener / cluster that had TLS in a committed snapshot; null if none.
  std::shared_ptr<const tls::TlsContextProvider> ForListener(absl::string_view name) const;
  std::shared_ptr<const tls::TlsContextProvider> ForCluster(absl::string_view name) const;

  // Distinct contexts the committed snapshot uses (listeners and clusters together).
  size_t context_count() const;
  // Clusters the last Commit looked at (tests and benchmarks).
  size_t commit_clusters_examined() const;

 private:
  struct Published {
    std::shared_ptr<const SharedContext> shared;
    std::shared_ptr<tls::TlsContextProvider> provider;
  };
  using Map = std::map<std::string, Published, std::less<>>;

  // A cluster context and how many published clusters use it.
  struct ContextUsers {
    std::shared_ptr<const SharedContext> shared;
    size_t users = 0;
  };

  static void CommitInto(Map& published,
                         std::map<std::string, std::shared_ptr<const SharedContext>>& prepared,
                         absl::string_view kind);
  static void LogReplaced(absl::string_view kind, size_t replaced,
                          const std::string* first_replaced);
  void Acquire(const std::shared_ptr<const SharedContext>& shared)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Release(const std::shared_ptr<const SharedContext>& shared)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves a published cluster out of clusters_ (into retired_ for the grace) and returns the
  // iterator after it.
  Map::iterator Retire(Map::iterator it, std::chrono::steady_clock::time_point now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops the retired providers whose grace has passed.
  void ExpireRetired(std::chrono::steady_clock::time_point now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const TlsContextLimits limits_;
  mutable Mutex mu_;
  Map listeners_ ABSL_GUARDED_BY(mu_);
  Map clusters_ ABSL_GUARDED_BY(mu_);
  // Removed clusters' providers within their grace with their removal times, and those times
  // oldest first (an entry whose name came back, or was removed again later, is skipped when it
  // expires).
  struct Retired {
    Published published;
    std::chrono::steady_clock::time_point at;
  };
  std::map<std::string, Retired, std::less<>> retired_ ABSL_GUARDED_BY(mu_);
  std::deque<std::pair<std::chrono::steady_clock::time_point, std::string>> retired_order_
      ABSL_GUARDED_BY(mu_);
  // The committed snapshot's listener contexts, and cluster contexts with their users, by
  // fingerprint.
  std::map<std::string, std::shared_ptr<const SharedContext>, std::less<>> listener_contexts_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, ContextUsers, std::less<>> cluster_contexts_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const WorkloadTlsMaterial> workload_ ABSL_GUARDED_BY(mu_);
  // Whether anything was committed, and with which workload certificate.
  bool committed_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<const WorkloadTlsMaterial> committed_workload_ ABSL_GUARDED_BY(mu_);
  size_t commit_clusters_examined_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace meshlet::sidecar::server

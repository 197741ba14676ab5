#pragma once

// TlsContexts: the TLS contexts of the sidecar's listeners (server side) and TLS clusters (client
// side), built from each configuration snapshot and published through one TlsContextProvider per
// listener or cluster name.
//
// Prepare(snapshot) builds every context the snapshot needs without publishing anything, so a
// secret that does not load (bad PEM, a key that does not match its certificate, an unreadable
// ca_file) refuses the whole snapshot with an error naming the resource. Commit() then publishes
// them: a listener or cluster whose TLS inputs (secret PEMs, ALPN, client-certificate policy,
// allowed identities) did not change keeps its context; a changed one gets the new context swapped
// into its provider, so new connections use it and connections already open keep theirs (rotation,
// design.md §3). Providers are never removed: transports made from them hold references anyway, and
// a name that comes back reuses its provider.
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

#include <map>
#include <memory>
#include <optional>
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
};

// The server-side context settings for a listener with TLS (mode PERMISSIVE or STRICT).
// `workload` is the current workload certificate, null without one.
absl::StatusOr<tls::TlsContextConfig> ListenerTlsContextConfig(
    const config::ListenerConfig& listener, const config::Snapshot& snapshot,
    const WorkloadTlsMaterial* workload = nullptr);
// The client-side context settings for a cluster with tls.enabled. Reads tls.ca_file.
absl::StatusOr<tls::TlsContextConfig> ClusterTlsContextConfig(
    const cluster::ClusterConfig& cluster, const config::Snapshot& snapshot,
    const WorkloadTlsMaterial* workload = nullptr);
// ALPN a cluster offers: its tls.alpn, else what its upstream protocol implies ("h2" for HTTP/2,
// "http/1.1" for HTTP/1.1, nothing when the protocol follows the downstream one).
std::vector<std::string> ClusterAlpn(const cluster::ClusterConfig& cluster);

class TlsContexts {
 public:
  // Contexts built for one snapshot, not yet published.
  struct Prepared {
    struct Entry {
      std::string fingerprint;  // every input of the context; equal means "unchanged"
      std::shared_ptr<const tls::TlsContext> context;  // null: unchanged, keep the current one
    };
    std::map<std::string, Entry> listeners;
    std::map<std::string, Entry> clusters;
  };

  // Builds what `snapshot` needs. Errors name the listener or cluster.
  absl::StatusOr<Prepared> Prepare(const config::Snapshot& snapshot) const;
  void Commit(Prepared prepared);
  // Prepare + Commit.
  absl::Status Apply(const config::Snapshot& snapshot);

  // Sets the workload certificate contexts are built from (takes effect at the next Apply /
  // Prepare + Commit).
  void SetWorkloadCertificate(WorkloadTlsMaterial material);
  bool has_workload_certificate() const;

  // The provider of a listener / cluster that had TLS in a committed snapshot; null if none.
  std::shared_ptr<const tls::TlsContextProvider> ForListener(absl::string_view name) const;
  std::shared_ptr<const tls::TlsContextProvider> ForCluster(absl::string_view name) const;

 private:
  struct Published {
    std::string fingerprint;
    std::shared_ptr<tls::TlsContextProvider> provider;
  };
  using Map = std::map<std::string, Published, std::less<>>;

  static void CommitInto(Map& published, std::map<std::string, Prepared::Entry>& prepared,
                         absl::string_view kind);

  mutable Mutex mu_;
  Map listeners_ ABSL_GUARDED_BY(mu_);
  Map clusters_ ABSL_GUARDED_BY(mu_);
  std::optional<WorkloadTlsMaterial> workload_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshlet::sidecar::server

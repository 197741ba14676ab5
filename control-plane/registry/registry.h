#pragma once

// Registry: the workloads whose sidecars are (or were just) connected to this control plane, and
// the service endpoints derived from them: service discovery without Kubernetes. In a cluster it
// also holds what Kubernetes discovery (control-plane/kubernetes/discovery.h) last saw of the
// cluster's Services and their endpoints (SetKubernetesServices), so one version and one watch
// cover every input of translation but the policy.
//
// Lifecycle of one workload (keyed by the sidecar's node id):
//
//   Connect(node)      an ADS stream sent its Node: the workload is registered (or re-registered,
//                      which cancels a pending deregistration). Several streams may carry the same
//                      id for a moment (a reconnect racing the old stream's close); the workload
//                      stays connected while any of them is open.
//   Heartbeat(id)      any traffic on a stream; SetReady(id, ready) when the sidecar reports its
//                      readiness (not ready while it drains). A workload that is not ready stays
//                      registered; the translator leaves its endpoints out of callers' clusters.
//   Disconnect(id)     a stream closed. When the last one closes, the workload is kept for
//                      `deregister_grace` with its endpoints unchanged (a sidecar that lost its
//                      control-plane stream usually still serves), then ExpireDisconnected()
//                      removes it.
//
// Several control-plane replicas (shared_registrations.h): each replica's registry holds the
// workloads connected to it (local) and what the other replicas published of theirs (peers,
// keyed by the publishing replica's owner id, ApplyPeerChanges). Snapshots show one entry per
// workload id: a connected one before a disconnected one, then the local one, then the most
// recently registered. When a peer's connected entry vanishes (its replica died or stopped), it
// stays for `deregister_grace` as disconnected, like a local workload whose stream closed: its
// sidecar has most likely reconnected elsewhere, or will. TakeLocalChanges() tells the replicator
// what to publish.
//
// Pure logic on a Clock: the owner calls ExpireDisconnected() from a timer (NextExpiry() says
// when the next removal is due), tests drive time with FakeClock.
//
// Thread-safety: every method may be called from any thread. Watch callbacks run on the calling
// thread after the change, with no registry lock held; they must not block and may read the
// registry. Each callback receives the registry's new version.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "xds/node.pb.h"

namespace meshlet::controlplane::registry {

// A linked cluster's share of a Service (multicluster, ADR 0106) as its link last read it: the
// Service's ready members there, reached through that cluster's east-west gateway with mesh mTLS
// whose server name picks the Service (EastWestServerName).
struct RemoteEndpoint {
  std::string cluster;  // the linked cluster's name
  std::string host;     // its east-west gateway's address (an IP)
  uint32_t port = 0;    // and port
  // The gateway's region and zone (the cluster's, as far as callers here are concerned); its
  // `cluster` is the linked cluster's name.
  xds::Locality locality;
  std::vector<std::string> identities;  // SPIFFE ids of the members there, sorted
  uint32_t members = 0;                 // ready members there
  bool stale = false;                   // the link has not answered for a while: what it read last
  bool operator==(const RemoteEndpoint& other) const;
};

// Whether two linked endpoints (or lists of them) are the same: the same objects, or equal ones.
bool SameRemote(const std::shared_ptr<const RemoteEndpoint>& a,
                const std::shared_ptr<const RemoteEndpoint>& b);
bool SameRemote(const std::vector<std::shared_ptr<const RemoteEndpoint>>& a,
                const std::vector<std::shared_ptr<const RemoteEndpoint>>& b);

// What every link read, merged: each Service's endpoints in the linked clusters.
struct RemoteServices {
  // By (namespace, name); each list ordered by cluster, then host and port.
  std::map<std::pair<std::string, std::string>, std::vector<std::shared_ptr<const RemoteEndpoint>>>
      services;
  bool operator==(const RemoteServices& other) const;
};

// One registered workload, as plain data (what the translator and the API read).
struct Workload {
  std::string id;  // the sidecar's node id, unique
  std::string service;
  std::string namespace_;  // "default" when the node sent none
  std::string service_account;
  std::map<std::string, std::string> labels;
  std::vector<std::string> addresses;  // where peers reach this workload's sidecar
  std::vector<uint32_t> ports;         // ports the local app serves
  std::string sidecar_version;
  // Where the workload runs (Node.locality, the sidecar's --node-locality); empty: unknown.
  xds::Locality locality;
  // Where this sidecar listens for peers (the endpoint port others are sent to) and for its own
  // app's outbound calls. 0: the defaults 15006 / 15001 (pods with traffic interception); set
  // when several sidecars share one host (loopback demos, tests).
  uint32_t inbound_port = 0;
  uint32_t outbound_port = 0;
  // The sidecar holds a CA-issued workload certificate (label meshlet.io/workload-certificate,
  // set by the sidecar itself): it can serve and originate mesh mTLS.
  bool workload_certificate = false;
  // The pod's packet filter redirects the app's TCP to this sidecar (label meshlet.io/capture:
  // iptables, set with `sidecar init`): its listeners read original destinations, and peers
  // reach its app ports, not its inbound port.
  bool capture = false;

  // Set only on the members translation makes of a linked cluster's endpoints (RemoteServices):
  // the gateway standing for the Service's members there. Never registered.
  std::shared_ptr<const RemoteEndpoint> remote;

  // The control-plane replica its sidecar is connected to (RegistryOptions::replica, or another
  // replica's); empty with a single control plane.
  std::string replica;

  bool ready = true;      // the local app's readiness as the sidecar last reported it
  bool connected = true;  // at least one stream open
  int open_streams = 0;
  absl::Time registered_at;    // first Connect of this registration (wall clock)
  absl::Time last_heartbeat;   // wall clock
  absl::Time disconnected_at;  // wall clock; meaningful when !connected
  MonotonicTime expires_at{};  // when !connected: removal time
};

inline constexpr uint32_t kDefaultInboundPort = 15006;
inline constexpr uint32_t kDefaultOutboundPort = 15001;
// Node labels that set Workload::inbound_port / outbound_port (decimal). Labels under
// "meshlet.io/" are the mesh's own and never become endpoint labels.
inline constexpr char kInboundPortLabel[] = "meshlet.io/inbound-port";
inline constexpr char kOutboundPortLabel[] = "meshlet.io/outbound-port";
inline constexpr char kWorkloadCertificateLabel[] = "meshlet.io/workload-certificate";
// Traffic capture: "iptables" when `sidecar init` redirects the pod's TCP to the sidecar's
// outbound and inbound ports (Workload::capture); absent for sidecars used as explicit proxies.
inline constexpr char kCaptureLabel[] = "meshlet.io/capture";
inline constexpr char kCaptureIptables[] = "iptables";

// Reads the Node a sidecar sent into a Workload (registration fields only).
Workload WorkloadFromNode(const xds::Node& node);

// A Kubernetes Service port, its protocol decided as docs/kubernetes.md says (appProtocol, else
// the port name's prefix, else AUTO: HTTP when the first bytes are, else opaque TCP).
struct KubernetesPort {
  std::string name;
  uint32_t port = 0;
  std::string protocol;  // HTTP, HTTP2, GRPC, TCP or AUTO
  // The endpoints' port for it: the numeric targetPort, else what the EndpointSlices resolved
  // the named one to (0: none yet).
  uint32_t target_port = 0;
  bool operator==(const KubernetesPort&) const = default;
};

// One address of a Service's EndpointSlices that is ready, with its Pod's labels and service
// account when the Pod is known.
struct KubernetesEndpoint {
  std::string address;
  std::string pod;  // targetRef name; empty for endpoints that are not Pods
  std::string service_account;
  std::map<std::string, std::string> labels;
  // The Pod was injected (a sidecar answers mTLS for it as service_account), whichever control
  // plane its sidecar talks to.
  bool sidecar = false;
  // Where it runs: the EndpointSlice's zone and nodeName, and the region (and, where the slice
  // names no zone, the zone) of that Node's topology.kubernetes.io labels, else of the Pod's
  // (Kubernetes copies them onto Pods since 1.35). Empty when not known.
  std::string region;
  std::string zone;
  std::string node;
  bool operator==(const KubernetesEndpoint&) const = default;
};

// A Kubernetes Service with what its EndpointSlices say (UDP and SCTP ports left out).
struct KubernetesService {
  std::string namespace_;
  std::string name;
  std::vector<std::string> cluster_ips;       // spec.clusterIPs; none for a headless Service
  std::vector<KubernetesPort> ports;          // ordered by port
  std::vector<KubernetesEndpoint> endpoints;  // ordered by address
  // spec.trafficDistribution: PreferClose (callers prefer their zone: locality-aware balancing)
  // and spec.internalTrafficPolicy: Local (callers use only endpoints on their own node).
  bool prefer_close = false;
  bool node_local = false;
  // Label meshlet.io/export: "true": shared with linked clusters (ADR 0106).
  bool exported = false;
  bool operator==(const KubernetesService&) const = default;
};

// Everything Kubernetes discovery saw at one moment, ordered by "namespace/name". Each Service
// is shared and immutable: a publication that changes some Services' entries keeps the very
// objects of the others (discovery.h), so a reader may skip an entry pointer-identical to one
// it has seen. Entries are never null.
struct KubernetesServices {
  std::vector<std::shared_ptr<const KubernetesService>> services;
  // Compares the Services' values (an identical pointer is equal without a look).
  bool operator==(const KubernetesServices& other) const;
};

// An immutable view of the registry at one version, ordered by workload id.
struct RegistrySnapshot {
  uint64_t version = 0;
  std::vector<Workload> workloads;
  // Kubernetes discovery's services; null off Kubernetes and before its first complete list.
  std::shared_ptr<const KubernetesServices> kubernetes;
  // The linked clusters' endpoints (multicluster links); null: none linked.
  std::shared_ptr<const RemoteServices> remote;
  // Kubernetes discovery is on but has not listed everything yet: the mesh's services are not
  // all known, and configuration built now would withdraw some from every sidecar.
  bool kubernetes_pending = false;

  const Workload* Find(absl::string_view id) const;
  // Workloads of `service` in `namespace_`, ordered by id.
  std::vector<const Workload*> ForService(absl::string_view namespace_,
                                          absl::string_view service) const;
};

struct RegistryOptions {
  // How long a workload whose sidecar disconnected keeps its registration (and its endpoints).
  // Covers control-plane-side stream resets and sidecar restarts without endpoint churn.
  Duration deregister_grace = std::chrono::seconds(30);
  // Upper bound on registered workloads; Connect beyond it is refused (false).
  size_t max_workloads = 100000;
  // This replica's name (Workload::replica of local workloads), and whether TakeLocalChanges()
  // is used (several replicas share registrations).
  std::string replica;
  bool track_local_changes = false;
};

// One change of another replica's registrations.
struct PeerChange {
  std::string owner;  // the publishing replica's owner id (LeasedKeyEvent::owner)
  std::string id;
  std::optional<Workload> workload;  // nullopt: that replica's entry is gone
};

// One local registration changed: as it is now, or nullopt when it was removed.
struct LocalChange {
  std::string id;
  std::optional<Workload> workload;
};

class Registry {
 public:
  Registry(const Clock& clock, RegistryOptions options = {});
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Registers (or refreshes) the node's workload and counts one more open stream. Fields are
  // replaced by the node's; readiness is kept across reconnects (and from Restore) until
  // SetReady changes it: a stream reports its sidecar's readiness with its first request, and
  // the discovery service calls SetReady right after Connect, so a restarted sidecar that is
  // ready becomes ready again whatever the registry kept.
  // Returns false (and registers nothing) if the id is empty or the registry is full.
  bool Connect(const Workload& workload);
  // Registers a workload a previous run of the control plane knew (saved_registry.h) as
  // disconnected, with its readiness: its endpoints stay until its sidecar reconnects (Connect),
  // or the grace period passes without that. False (nothing changes) for an empty or already
  // registered id, or when the registry is full.
  // A workload saved as disconnected (connected false, disconnected_at set) gets only what is
  // left of its grace period, counted from disconnected_at, and none (false) once it is over.
  bool Restore(const Workload& workload);
  // Refreshes last_heartbeat; no change notification. False for an unknown id.
  bool Heartbeat(absl::string_view id);
  enum class ReadyChange { kUnknownWorkload, kUnchanged, kChanged };
  // Sets the workload's readiness and refreshes last_heartbeat. Notifies only on kChanged.
  ReadyChange SetReady(absl::string_view id, bool ready);
  // One stream of `id` closed. When none is left, the workload is kept until the grace period
  // passes. False for an unknown id.
  bool Disconnect(absl::string_view id);
  // Removes disconnected workloads whose grace period has passed. Returns how many.
  size_t ExpireDisconnected();
  // When the next ExpireDisconnected() has work, if any workload is disconnected.
  std::optional<MonotonicTime> NextExpiry() const;

  // Shared and cached until the next change; what the translator reads. Heartbeat times in it
  // are those of the workload's last change, not its last heartbeat.
  std::shared_ptr<const RegistrySnapshot> Snapshot() const;
  // A fresh copy including the latest heartbeat times (for people: the API's workload list).
  RegistrySnapshot CurrentWorkloads() const;
  uint64_t version() const;
  size_t size() const;
  // Workloads with at least one open stream (the rest wait out their grace period).
  size_t connected() const;
  // Workloads known only from other replicas.
  size_t peer_only() const;

  // Applies other replicas' registration changes (one notification for all).
  void ApplyPeerChanges(const std::vector<PeerChange>& changes);
  // Local registrations whose published fields (registration, readiness, connection state)
  // changed since the last call, ordered by id. Empty unless track_local_changes.
  std::vector<LocalChange> TakeLocalChanges();

  // Kubernetes discovery is on: snapshots say kubernetes_pending until the first
  // SetKubernetesServices.
  void ExpectKubernetesServices();
  // Replaces the Kubernetes services (a change: notifies).
  void SetKubernetesServices(std::shared_ptr<const KubernetesServices> services);
  // Replaces the linked clusters' endpoints; notifies when they differ from the current ones.
  void SetRemoteServices(std::shared_ptr<const RemoteServices> services);

  using WatchCallback = std::function<void(uint64_t version)>;
  class WatchHandle {
   public:
    virtual ~WatchHandle() = default;
  };
  // Calls `callback` after every change (registration, field change, readiness, connection state,
  // removal) until the handle is destroyed.
  std::unique_ptr<WatchHandle> Watch(WatchCallback callback);

  const RegistryOptions& options() const { return options_; }

 private:
  class Watcher;
  struct PeerEntry {
    Workload workload;
    bool ghost = false;  // its replica's entry vanished while connected: removed at expires_at
  };
  void NotifyLocked(std::unique_lock<std::mutex>& lock);
  void LocalChangedLocked(const std::string& id);
  // One entry per id, local and peers merged as the header says, ordered by id.
  std::vector<Workload> MergedLocked() const;

  const Clock& clock_;
  const RegistryOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, Workload, std::less<>> workloads_;  // local
  // Other replicas' entries: id → owner → entry.
  std::map<std::string, std::map<std::string, PeerEntry>, std::less<>> peers_;
  std::set<std::string> local_changed_;
  std::shared_ptr<const KubernetesServices> kubernetes_;
  std::shared_ptr<const RemoteServices> remote_;
  bool kubernetes_expected_ = false;
  uint64_t version_ = 0;
  mutable std::shared_ptr<const RegistrySnapshot> snapshot_;  // cached; reset on change
  uint64_t next_watch_id_ = 1;
  std::map<uint64_t, std::shared_ptr<WatchCallback>> watchers_;
};

}  // namespace meshlet::controlplane::registry

#pragma once

// EtcdStore: the Store on an etcd cluster, for several control-plane replicas sharing one state
// (docs/adr/0048-etcd-over-its-grpc-api.md). It speaks etcd's v3 gRPC API over meshlet's own gRPC
// client:
//
//   <prefix><kind>/<namespace>/<name>   one key per resource ("_cluster" = no namespace), the
//                                       value is the resource's JSON
//
// A resource's revision is the key's mod_revision, its create_revision etcd's; both come from the
// cluster-wide revision, so two replicas never hand out the same one. Writes are transactions
// that compare the revision the caller read (kMustNotExist: create_revision == 0), so of two
// replicas writing one resource from the same read exactly one succeeds; the other gets
// FailedPrecondition (AlreadyExists for two creates), which the API answers 409.
//
// Reads go to etcd (linearizable), so a replica reads what any replica wrote. Watch callbacks
// come from one etcd watch on the prefix, started at Open from the revision of the initial list;
// when the watch breaks it resumes from the revision after the last event it delivered, and when
// that revision was compacted away it lists again and reports the difference (puts for changed
// keys, deletes for vanished ones) before watching on: no change is missed or reported twice.
//
// Endpoints are tried in order; a call that finds one unavailable moves to the next. A write whose
// answer was lost may have been applied: the caller sees UNAVAILABLE and reads again.
//
// Leased keys (store/leased_keys.h) live under <prefix>_leased/<lease id, 16 hex digits>/<name>,
// written with a lease this store grants itself at the first SetLeased and keeps alive (every
// lease_ttl / 3). When the lease is lost (etcd says it expired: this store could not reach etcd
// for lease_ttl), the store takes a new one and writes every key again; at destruction it
// revokes it, so the keys vanish at once. Writes are batched (one transaction for up to 64 keys),
// one at a time, retried with backoff. The same watch reports other stores' leased keys.
//
// Threading: the store runs its own event loop on a thread of its own. Every Store method may be
// called from any other thread and blocks until etcd answered (or request_timeout per endpoint
// passed: UNAVAILABLE, or DEADLINE_EXCEEDED from etcd when it has no quorum); SetLeased and
// DeleteLeased never block. Watch callbacks run on the store's thread, in revision order, with no
// lock held; they must not block and must not call the store's blocking methods (that would wait
// on its own thread: FailedPrecondition).

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/base/sync.h"
#include "common/event/loop.h"
#include "common/net/address.h"
#include "common/net/transport.h"
#include "common/tls/tls_context_provider.h"
#include "control-plane/store/leased_keys.h"
#include "control-plane/store/store.h"

namespace meshlet::http::grpc {
class Channel;
class ClientCall;
}  // namespace meshlet::http::grpc

namespace meshlet::event {
class Timer;
}

namespace meshlet::controlplane {

// One etcd member's client address, and the name its certificate must carry under TLS.
struct EtcdEndpoint {
  std::string host;  // as given: a name or an IP address
  net::Address address;
};

struct EtcdStoreOptions {
  // Tried in order.
  std::vector<EtcdEndpoint> endpoints;
  // Every key starts with it; replicas of one mesh share it.
  std::string prefix = "/meshlet/";
  // TLS to etcd: the trust bundle that verifies the members' certificates (each must name its
  // endpoint's host) and, for client-certificate authentication, our chain and key. Null:
  // plaintext, which Open refuses unless `allow_plaintext`.
  std::shared_ptr<const tls::TlsContextProvider> tls;
  bool allow_plaintext = false;
  // etcd authentication (empty: none). The token etcd returns rides on every call.
  std::string username;
  std::string password;
  // Per call and endpoint.
  Duration request_timeout = std::chrono::seconds(5);
  // First wait before re-opening a broken watch; doubles up to watch_retry_cap.
  Duration watch_retry = std::chrono::milliseconds(200);
  Duration watch_retry_cap = std::chrono::seconds(5);
  // Leased keys vanish this long after the store stopped keeping its lease alive (whole seconds;
  // etcd may raise it to its minimum).
  Duration lease_ttl = std::chrono::seconds(10);
  // Up() is true while the last call that ended (a unary call, or a lease keep-alive answer) got
  // etcd's answer, and that answer is at most this old. The control plane's periodic store-key
  // check (every --store-key-check-interval, 10 s) and the lease keep-alive (every lease_ttl / 3)
  // call etcd well within it.
  Duration up_window = std::chrono::seconds(30);
};

struct EtcdUrl {
  bool tls = true;  // https://
  std::vector<EtcdEndpoint> endpoints;
};

// "https://host:port[,host:port...]" or "http://..." (control-plane/store/etcd_url.h) → the
// endpoints (names resolved now, the first address of each). InvalidArgument naming the part
// that is wrong.
absl::StatusOr<EtcdUrl> ParseEtcdUrl(absl::string_view url);

class EtcdStore final : public Store, public LeasedKeys {
 public:
  // Connects, authenticates if asked and lists the prefix (the watch starts after it). Fails with
  // the endpoint and reason when no endpoint answers; InvalidArgument without `tls` unless
  // `allow_plaintext`.
  static absl::StatusOr<std::unique_ptr<EtcdStore>> Open(EtcdStoreOptions options);
  ~EtcdStore() override;

  absl::StatusOr<StoredResource> Get(const ResourceKey& key) const override;
  absl::StatusOr<std::vector<StoredResource>> List(absl::string_view kind,
                                                   absl::string_view namespace_) const override;
  absl::StatusOr<int64_t> Put(const ResourceKey& key, absl::string_view body,
                              int64_t expected_revision) override;
  absl::StatusOr<int64_t> Delete(const ResourceKey& key, int64_t expected_revision) override;
  // The highest revision this store has seen (its own writes, reads and watch events).
  int64_t Revision() const override;
  std::unique_ptr<Store::WatchHandle> Watch(Store::WatchCallback callback) override;
  LeasedKeys* leased_keys() override { return this; }
  // See EtcdStoreOptions::up_window. UNAVAILABLE (no endpoint answered in time) and
  // DEADLINE_EXCEEDED (etcd without quorum) are no answer; any other outcome is one.
  bool Up() const override;

  void SetLeased(std::string name, std::string value) override;
  void DeleteLeased(std::string name) override;
  std::unique_ptr<LeasedKeys::WatchHandle> WatchLeased(std::string prefix,
                                                       LeasedKeys::WatchCallback callback) override;

  // Watches opened so far (1 + reconnects) and relists after a compaction, for tests and stats.
  uint64_t watches_started() const;
  uint64_t relists() const;
  // Leases granted so far (1 + those taken after losing one), and the current one (0: none).
  uint64_t leases_granted() const;
  int64_t lease() const;

 private:
  class Watcher;
  class LeasedWatcher;
  explicit EtcdStore(EtcdStoreOptions options);

  // One unary call: `method` with the serialized `request`, failing over between endpoints.
  // Any thread but the store's.
  absl::StatusOr<std::string> Call(absl::string_view method, std::string request) const;
  template <typename Response, typename Request>
  absl::StatusOr<Response> CallProto(absl::string_view method, const Request& request) const;

  std::string KeyFor(const ResourceKey& key) const;
  // The resource behind an etcd key of this prefix; nullopt for a key that is not one.
  std::optional<ResourceKey> KeyFrom(absl::string_view etcd_key) const;
  void SeenRevision(int64_t revision) const;
  // Notes how a call to etcd ended, for Up(). Any thread.
  void NoteOutcome(const absl::Status& status) const;

  // Store thread.
  void StartWatch();
  void OnWatchEnded(bool compacted);
  void Relist();
  void Deliver(const std::vector<WatchEvent>& events);

  // Leased keys, store thread.
  struct LeasedKey {
    std::string owner;
    std::string name;
  };
  // The owner and name of a leased key of this prefix written by another store; nullopt for
  // other keys and this store's own.
  std::optional<LeasedKey> LeasedFrom(absl::string_view etcd_key) const;
  // Folds a put (value) or delete (nullopt) of `etcd_key` into the other stores' leased keys;
  // appends the change to `events` when it is one.
  void NoteLeased(const std::string& etcd_key, std::optional<std::string> value,
                  std::vector<LeasedKeyEvent>& events);
  void DeliverLeased(const std::vector<LeasedKeyEvent>& events);
  void WriteLeased();  // grants a lease or writes the next batch, unless one is under way
  void GrantLease();
  void LeaseLost(absl::string_view why);
  void KeepAlive();
  void RetryLeased();
  const EtcdStoreOptions options_;
  const std::string leased_prefix_;  // <prefix>_leased/
  mutable event::Loop loop_;
  std::thread thread_;
  // Store thread only.
  std::vector<std::unique_ptr<http::grpc::Channel>> channels_;
  mutable size_t current_ = 0;  // the endpoint calls go to first (store thread)
  std::string token_;           // etcd auth token, set in Open before any other call
  std::shared_ptr<http::grpc::ClientCall> watch_;
  std::unique_ptr<event::Timer> watch_retry_timer_;
  Duration watch_backoff_{0};
  // Store thread: mod_revision of every key the watch has reported (for the relist's difference),
  // and the revision the next watch starts from.
  std::map<std::string, int64_t> known_;
  int64_t next_watch_revision_ = 0;
  bool relist_pending_ = false;  // the retry timer lists again instead of watching
  bool stopping_ = false;

  // Leased keys (store thread): what this store wants (name → value), what it wrote under the
  // current lease, the names whose write is due, and the other stores' keys (etcd key → owner,
  // name, value) as the watch last reported them.
  std::map<std::string, std::string> leased_desired_;
  std::map<std::string, std::string> leased_written_;
  std::set<std::string> leased_dirty_;
  std::map<std::string, LeasedKeyEvent> leased_others_;
  int64_t lease_id_ = 0;          // 0: none held
  std::set<int64_t> own_leases_;  // every lease this store held: their keys are its own
  bool leased_busy_ = false;      // a grant or a write is under way
  Duration leased_backoff_{0};
  std::unique_ptr<event::Timer> leased_retry_timer_;
  std::unique_ptr<event::Timer> keepalive_timer_;
  std::shared_ptr<http::grpc::ClientCall> keepalive_;
  // Steady-clock nanoseconds of the last call etcd answered and of the last it did not (Up()).
  mutable std::atomic<int64_t> last_answer_ns_{0};
  mutable std::atomic<int64_t> last_unanswered_ns_{0};
  mutable Mutex mu_;
  mutable int64_t revision_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_watch_id_ ABSL_GUARDED_BY(mu_) = 1;
  struct Registered {
    Store::WatchCallback callback;
    int64_t after;  // etcd's revision when Watch() was called: only later changes are reported
  };
  std::map<uint64_t, std::shared_ptr<Registered>> watchers_ ABSL_GUARDED_BY(mu_);
  uint64_t watches_started_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t relists_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t leases_granted_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t lease_ ABSL_GUARDED_BY(mu_) = 0;  // lease_id_, readable from any thread
  uint64_t next_leased_watch_id_ ABSL_GUARDED_BY(mu_) = 1;
  struct LeasedRegistered {
    std::string prefix;
    LeasedKeys::WatchCallback callback;
    // Calls the callback with the events under `prefix`, if any.
    void Deliver(const std::vector<LeasedKeyEvent>& events) const;
    bool primed = false;  // store thread: has had what existed when it started watching
  };
  std::map<uint64_t, std::shared_ptr<LeasedRegistered>> leased_watchers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshlet::controlplane

#pragma once

// The control plane's desired state: policy resources (Service, TrafficPolicy, HTTPRoute, ...)
// keyed by kind, namespace and name, each with a revision. Every write takes the next value of a
// store-wide revision that only goes up, so `resourceVersion` gives optimistic concurrency and
// watchers can tell old news from new. The default backend is FileStore (a data directory); an
// etcd backend can implement the same interface.
//
// Thread-safety: every method may be called from any thread. Watch callbacks run on the thread
// that made the change (or the store's own), after it is durable, with no store lock held, one
// at a time and in revision order, each change reported once (so a watcher may apply changes to
// what it read at a revision, skipping those not later than it); they must not block.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshlet::controlplane {

class LeasedKeys;  // control-plane/store/leased_keys.h

struct ResourceKey {
  std::string kind;        // "HTTPRoute"
  std::string namespace_;  // "default"; "" for cluster-wide kinds such as MeshConfig
  std::string name;

  std::string ToString() const;  // "HTTPRoute/default/reviews"
  friend bool operator==(const ResourceKey&, const ResourceKey&) = default;
  friend auto operator<=>(const ResourceKey&, const ResourceKey&) = default;
};

struct StoredResource {
  ResourceKey key;
  std::string body;             // the resource as the API accepted it (JSON)
  int64_t revision = 0;         // revision of the last write (the resourceVersion)
  int64_t create_revision = 0;  // revision that created it
};

// Pass as `expected_revision` to Put/Delete.
inline constexpr int64_t kMustNotExist = 0;  // create only
inline constexpr int64_t kAnyRevision = -1;  // unconditional

struct WatchEvent {
  enum class Type { kPut, kDelete };
  Type type;
  StoredResource resource;  // for kDelete: the key, and revision = the deleting revision
};

class Store {
 public:
  virtual ~Store() = default;

  // NotFound if absent.
  virtual absl::StatusOr<StoredResource> Get(const ResourceKey& key) const = 0;
  // All resources of `kind` (every kind if empty) in `namespace_` (every namespace if empty),
  // ordered by key.
  virtual absl::StatusOr<std::vector<StoredResource>> List(absl::string_view kind,
                                                           absl::string_view namespace_) const = 0;
  // Creates or replaces. `expected_revision`: kMustNotExist, kAnyRevision, or the revision the
  // caller read (FailedPrecondition on mismatch, AlreadyExists when creating over an existing
  // one). Returns the new revision.
  virtual absl::StatusOr<int64_t> Put(const ResourceKey& key, absl::string_view body,
                                      int64_t expected_revision) = 0;
  // NotFound if absent; FailedPrecondition if `expected_revision` (other than kAnyRevision)
  // does not match. Returns the deleting revision.
  virtual absl::StatusOr<int64_t> Delete(const ResourceKey& key, int64_t expected_revision) = 0;
  // The latest revision handed out.
  virtual int64_t Revision() const = 0;

  using WatchCallback = std::function<void(const WatchEvent&)>;
  // Calls `callback` for every change after this call until the returned handle is destroyed
  // (a call already running on another thread may still finish after that).
  class WatchHandle {
   public:
    virtual ~WatchHandle() = default;
  };
  virtual std::unique_ptr<WatchHandle> Watch(WatchCallback callback) = 0;

  // A store shared by several control-plane replicas (etcd) also offers leased keys, through
  // which the replicas share what lives only as long as each of them (registrations). Null for a
  // store only one replica uses (FileStore), the default. Owned by the store, valid as long as it.
  virtual LeasedKeys* leased_keys() { return nullptr; }

  // Whether the store answers, for the meshlet_cp_store_up gauge; any thread, cheap. A local
  // store (FileStore) always does; EtcdStore: etcd answered its last call, recently enough.
  virtual bool Up() const { return true; }
};

// Kinds, namespaces and names are DNS-1123 labels or subdomains (lowercase alphanumerics, '-'
// and '.', at most 253 bytes, starting and ending alphanumeric); kinds are alphanumeric
// (CamelCase allowed). Anything else is InvalidArgument with the reason.
absl::Status ValidateResourceKey(const ResourceKey& key);

}  // namespace meshlet::controlplane

#pragma once

// LeasedKeys: small values that live only as long as the replica that wrote them, shared by every
// control-plane replica of one mesh (the registry's registrations, control-plane/registry/
// shared_registrations.h). Each replica writes only its own keys; every replica hears the others'.
// A replica that stops (cleanly or not) loses its keys: at once when it says goodbye, within
// the lease's time to live when it dies.
//
// Writes are desired state, not commands: Set and Delete return at once, and the implementation
// keeps the shared copy equal to the latest Set or Delete of each name, writing again after an
// outage or after its lease was lost (an owner that was gone too long comes back under a new
// owner id).
//
// Threading: every method may be called from any thread. Watch callbacks run on a thread of the
// implementation's, in order, with no lock held; they must not block.

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace meshlet::controlplane {

struct LeasedKeyEvent {
  enum class Type { kPut, kDelete };
  Type type;
  // The writer: one id per replica lease (a replica that lost its lease gets a new one).
  std::string owner;
  std::string name;
  std::string value;  // empty for kDelete
};

class LeasedKeys {
 public:
  virtual ~LeasedKeys() = default;

  // This replica's key `name` (non-empty, no '\0') holds `value` from now on.
  virtual void SetLeased(std::string name, std::string value) = 0;
  // This replica's key `name` is gone (nothing if it never existed).
  virtual void DeleteLeased(std::string name) = 0;

  using WatchCallback = std::function<void(const std::vector<LeasedKeyEvent>& events)>;
  class WatchHandle {
   public:
    virtual ~WatchHandle() = default;
  };
  // Reports the other replicas' keys whose name starts with `prefix` (names in full): first every
  // such key that exists now (kPut), then every change, until the handle is destroyed (a call
  // already running may still finish after that). A callback never gets an empty batch. This
  // replica's own keys are never reported.
  virtual std::unique_ptr<WatchHandle> WatchLeased(std::string prefix, WatchCallback callback) = 0;
};

}  // namespace meshlet::controlplane

#pragma once

// FakeLeasedKeys: the leased keys of several replicas in memory, for tests
// (control-plane/store/leased_keys.h). Each Replica is one replica's LeasedKeys; changes reach the
// other replicas' watchers at once, on the calling thread (etcd would deliver them a little later
// on its own thread). Expire() plays a lease running out. Single-threaded.

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "control-plane/store/leased_keys.h"

namespace meshlet::controlplane {

class FakeLeasedKeys {
 public:
  class Replica final : public LeasedKeys {
   public:
    Replica(FakeLeasedKeys& keys, std::string owner) : keys_(keys), owner_(std::move(owner)) {}
    void SetLeased(std::string name, std::string value) override {
      keys_.Change(owner_, name, std::move(value));
    }
    void DeleteLeased(std::string name) override { keys_.Change(owner_, name, std::nullopt); }
    std::unique_ptr<LeasedKeys::WatchHandle> WatchLeased(std::string prefix,
                                                         WatchCallback callback) override {
      std::vector<LeasedKeyEvent> now;
      for (const auto& [key, value] : keys_.keys_) {
        if (key.first != owner_ && key.second.compare(0, prefix.size(), prefix) == 0) {
          now.push_back({LeasedKeyEvent::Type::kPut, key.first, key.second, value});
        }
      }
      auto watcher =
          std::make_shared<Watcher>(Watcher{owner_, std::move(prefix), std::move(callback)});
      keys_.watchers_.push_back(watcher);
      if (!now.empty()) watcher->callback(now);
      return std::make_unique<Handle>(watcher);
    }

   private:
    FakeLeasedKeys& keys_;
    std::string owner_;
  };

  // A replica's lease ran out: its keys vanish.
  void Expire(const std::string& owner) {
    std::vector<std::string> names;
    for (const auto& [key, value] : keys_) {
      if (key.first == owner) names.push_back(key.second);
    }
    for (const std::string& name : names) Change(owner, name, std::nullopt);
  }
  // Writes a key as `owner` (for values no replica would write).
  void Put(const std::string& owner, const std::string& name, std::string value) {
    Change(owner, name, std::move(value));
  }
  size_t size() const { return keys_.size(); }
  bool Has(const std::string& owner, const std::string& name) const {
    return keys_.count({owner, name}) > 0;
  }

 private:
  struct Watcher {
    std::string owner;
    std::string prefix;
    LeasedKeys::WatchCallback callback;
    bool alive = true;
  };
  class Handle final : public LeasedKeys::WatchHandle {
   public:
    explicit Handle(std::shared_ptr<Watcher> watcher) : watcher_(std::move(watcher)) {}
    ~Handle() override { watcher_->alive = false; }

   private:
    std::shared_ptr<Watcher> watcher_;
  };

  void Change(const std::string& owner, const std::string& name, std::optional<std::string> value) {
    LeasedKeyEvent event{LeasedKeyEvent::Type::kPut, owner, name, value.value_or("")};
    if (value.has_value()) {
      keys_[{owner, name}] = *value;
    } else {
      if (keys_.erase({owner, name}) == 0) return;
      event.type = LeasedKeyEvent::Type::kDelete;
    }
    for (const auto& watcher : watchers_) {
      if (watcher->alive && watcher->owner != owner &&
          name.compare(0, watcher->prefix.size(), watcher->prefix) == 0) {
        watcher->callback({event});
      }
    }
  }

  std::map<std::pair<std::string, std::string>, std::string> keys_;
  std::vector<std::shared_ptr<Watcher>> watchers_;
};

}  // namespace meshlet::controlplane

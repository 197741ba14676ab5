#pragma once

// ForwardingStore: a Store that hands every call to another one, for tests that change one call
// (count listings, let another replica write between a read and a write) and keep the rest.
// Threading as the store it forwards to; that store must outlive this one.

#include <memory>
#include <vector>

#include "control-plane/store/store.h"

namespace meshlet::controlplane {

class ForwardingStore : public Store {
 public:
  explicit ForwardingStore(Store& inner) : inner_(inner) {}

  absl::StatusOr<StoredResource> Get(const ResourceKey& key) const override {
    return inner_.Get(key);
  }
  absl::StatusOr<std::vector<StoredResource>> List(absl::string_view kind,
                                                   absl::string_view ns) const override {
    return inner_.List(kind, ns);
  }
  absl::StatusOr<int64_t> Put(const ResourceKey& key, absl::string_view body,
                              int64_t expected_revision) override {
    return inner_.Put(key, body, expected_revision);
  }
  absl::StatusOr<int64_t> Delete(const ResourceKey& key, int64_t expected_revision) override {
    return inner_.Delete(key, expected_revision);
  }
  int64_t Revision() const override { return inner_.Revision(); }
  bool Up() const override { return inner_.Up(); }
  std::unique_ptr<WatchHandle> Watch(WatchCallback callback) override {
    return inner_.Watch(std::move(callback));
  }

 protected:
  Store& inner() const { return inner_; }

 private:
  Store& inner_;
};

}  // namespace meshlet::controlplane

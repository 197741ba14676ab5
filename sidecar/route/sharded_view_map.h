#pragma once

// ShardedViewMap<Value, Hash, Eq>: a hash map from string views to values, split by hash into
// kShards flat_hash_maps that copies of the map share. A copy costs kShards pointer copies; a
// change copies the one shard it falls in, the first time it changes it (copy on write), so a
// map derived from another by a few changes costs per change (times a shard's size, the map's
// size / kShards), not per entry held. Lookups hash the key once: one shard pick, one hash
// lookup, no allocation.
//
// The route table's domain and destination indexes (route_table.h): a table rebuilt for one
// changed virtual host derives its index from the previous table's (ADR 0086, amended).
//
// Ownership: keys are views; whoever fills the map keeps the viewed strings alive as long as
// any map holding them (a copy too). A key stored must be followed by a NUL (a std::string's
// whole text or a tail of it): the map stores only its first char's address, 8 bytes a key
// instead of a view's 16. Lookups take any view. A map owns its shards jointly with its copies.
// Threading: one map is plain data (one thread at a time); maps sharing shards may be read and
// destroyed on different threads (a shared shard is never written: a change copies it first).

#include <array>
#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace meshlet::sidecar::route {

template <typename Value, typename Hash, typename Eq>
class ShardedViewMap {
 public:
  // 64 shards: a shard of a table of 50 000 domains holds about 800, copied on a change.
  static constexpr size_t kShards = 64;
  // A stored key: the address of a NUL-terminated text.
  using Key = const char*;
  struct KeyHash {
    using is_transparent = void;
    size_t operator()(absl::string_view key) const { return Hash{}(key); }
    size_t operator()(Key key) const { return Hash{}(absl::string_view(key)); }
  };
  struct KeyEq {
    using is_transparent = void;
    bool operator()(Key a, Key b) const { return Eq{}(absl::string_view(a), absl::string_view(b)); }
    // Reads no further than the view's length and the stored key's NUL.
    bool operator()(Key a, absl::string_view b) const {
      return std::strlen(a) == b.size() && Eq{}(absl::string_view(a, b.size()), b);
    }
    bool operator()(absl::string_view a, Key b) const { return (*this)(b, a); }
  };
  using Shard = absl::flat_hash_map<Key, Value, KeyHash, KeyEq>;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // The value held under `key`, or null. The pointer lives until the map's next change.
  const Value* Find(absl::string_view key) const {
    const size_t hash = Hash{}(key);
    const Shard* shard = shards_[ShardOf(hash)].get();
    if (shard == nullptr) return nullptr;
    auto it = shard->find(key, hash);
    return it == shard->end() ? nullptr : &it->second;
  }

  // Adds `key` → `value`; when `key` is held already, changes nothing and returns the value
  // held (else null). `key` must be followed by a NUL (see above).
  const Value* Insert(absl::string_view key, Value value) {
    assert(key.data()[key.size()] == '\0');
    const size_t hash = Hash{}(key);
    Shard& shard = Own(ShardOf(hash));
    if (auto it = shard.find(key, hash); it != shard.end()) return &it->second;
    auto [it, inserted] = shard.emplace(key.data(), std::move(value));
    if (!inserted) return &it->second;
    ++size_;
    return nullptr;
  }

  // Removes `key`; false when it was not held.
  bool Erase(absl::string_view key) {
    const size_t hash = Hash{}(key);
    const size_t at = ShardOf(hash);
    if (shards_[at] == nullptr || !shards_[at]->contains(key)) return false;
    Own(at).erase(key);
    --size_;
    return true;
  }

  void Clear() {
    for (auto& shard : shards_) shard.reset();
    size_ = 0;
  }

 private:
  static size_t ShardOf(size_t hash) {
    // The top bits of a multiplicative mix: independent of the bits the shard's own table uses.
    return static_cast<size_t>((static_cast<uint64_t>(hash) * 0x9E3779B97F4A7C15ull) >> 58);
  }
  static_assert(kShards == 64, "ShardOf takes the top 6 bits");

  Shard& Own(size_t at) {
    std::shared_ptr<Shard>& shard = shards_[at];
    if (shard == nullptr) {
      shard = std::make_shared<Shard>();
    } else if (shard.use_count() != 1) {
      shard = std::make_shared<Shard>(*shard);
    } else {
      // The last other holder may have let go on another thread: its reads happen before our
      // writes (use_count() is a relaxed load).
      std::atomic_thread_fence(std::memory_order_acquire);
    }
    return *shard;
  }

  std::array<std::shared_ptr<Shard>, kShards> shards_;
  size_t size_ = 0;
};

}  // namespace meshlet::sidecar::route

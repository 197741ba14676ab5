#pragma once

// ResourceMap: one type's resources by name, in name order, persistent. A copy shares every
// entry with the original (one pointer copied), and a change copies only the nodes on the path to
// the changed name (O(log n)), so a node's set taken from the shared outbound part, a stream's
// state after a push and a generation's maps derived from the previous one cost per changed name,
// not per resource (ADR 0088, amended).
//
// A treap whose priorities are a hash of the name: its shape depends only on the names it holds,
// so two maps derived one from the other share every subtree where they agree, and Diff() visits
// only where they differ. Every node keeps its subtree's sum of type-version entry hashes
// (xds/version.h), so TypeVersion() is O(1).
//
// The interface is the part of std::map the ADS server and the generator use; iterators are
// forward and const, and stay valid as long as the map they came from is not changed (a change
// may free the nodes they stand on). Ownership: a map owns its nodes jointly with its copies; a
// node is changed in place only while this map alone holds it.
// Threading: one map is plain data (one thread at a time); maps sharing nodes may be used and
// destroyed on different threads (shared nodes are never written; their counts are atomic).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"

namespace meshlet::controlplane::ads {

struct NamedResource;
using ResourcePtr = std::shared_ptr<const NamedResource>;

class ResourceMap {
  struct Node;
  using NodePtr = std::shared_ptr<Node>;

 public:
  using key_type = std::string;
  using mapped_type = ResourcePtr;
  using value_type = std::pair<const std::string, ResourcePtr>;

  class const_iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = ResourceMap::value_type;
    using difference_type = std::ptrdiff_t;
    using pointer = const value_type*;
    using reference = const value_type&;

    const_iterator() = default;
    reference operator*() const;
    pointer operator->() const { return &**this; }
    const_iterator& operator++();
    const_iterator operator++(int) {
      const_iterator before = *this;
      ++*this;
      return before;
    }
    friend bool operator==(const const_iterator& a, const const_iterator& b) {
      return a.current() == b.current();
    }

   private:
    friend class ResourceMap;
    const Node* current() const { return path_.empty() ? nullptr : path_.back(); }
    void PushLeftSpine(const Node* node);
    // The current node last, below it the ancestors still to visit (those it is left of). A
    // treap of 10^6 names is about 50 deep; deeper paths spill to the heap.
    absl::InlinedVector<const Node*, 48> path_;
  };
  using iterator = const_iterator;

  ResourceMap() = default;

  const_iterator begin() const;
  const_iterator end() const { return {}; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  const_iterator find(absl::string_view name) const;
  bool contains(absl::string_view name) const { return Get(name) != nullptr; }
  size_t count(absl::string_view name) const { return contains(name) ? 1 : 0; }
  // The resource named `name`; aborts when there is none (as std::map::at throws).
  const ResourcePtr& at(absl::string_view name) const;
  // The resource named `name`, or null.
  const ResourcePtr* Get(absl::string_view name) const;

  // Adds or replaces; true when added.
  bool insert_or_assign(std::string name, ResourcePtr resource);
  // Adds when absent (an existing entry stays); true when added.
  bool emplace(std::string name, ResourcePtr resource);
  // Removes `name`; the number removed (0 or 1).
  size_t erase(absl::string_view name);
  void erase(const_iterator it) { erase(absl::string_view(it->first)); }
  void clear() {
    root_.reset();
    size_ = 0;
  }

  // The sum of the entries' type-version hashes (xds::TypeVersionEntry of each name and version).
  uint64_t VersionSum() const;

  // Calls `changed(name, before, after)` in name order for every name whose entry differs
  // between `from` and `to` (a different ResourcePtr; `before` null for a name only `to` holds,
  // `after` null for one only `from` holds). Subtrees the two share are skipped, so maps derived
  // one from the other cost per difference, not per entry. Returns the entries it compared.
  using DiffFn = absl::FunctionRef<void(const std::string& name, const ResourcePtr* before,
                                        const ResourcePtr* after)>;
  static size_t Diff(const ResourceMap& from, const ResourceMap& to, DiffFn changed);

  // Whether `a` and `b` hold the same names with the same ResourcePtrs.
  friend bool operator==(const ResourceMap& a, const ResourceMap& b);

 private:
  static size_t DiffNodes(const Node* a, const Node* b, DiffFn changed);
  static size_t DiffWalk(const Node* a, const Node* b, DiffFn changed);
  static void Split(NodePtr node, absl::string_view name, NodePtr& left, NodePtr& right);
  static NodePtr Merge(NodePtr left, NodePtr right);
  // Inserts `fresh` (a new node, alone) under `node`; true when added, false when it replaced
  // (then `fresh`'s resource is moved into the existing node).
  static bool Insert(NodePtr& node, NodePtr& fresh);
  static void Remove(NodePtr& node, absl::string_view name);
  static void MakeOwn(NodePtr& node);
  static void Update(Node& node);

  NodePtr root_;
  size_t size_ = 0;
};

}  // namespace meshlet::controlplane::ads

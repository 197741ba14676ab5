#pragma once

// PersistentMap<Value, Summary>: values by name, in name order, persistent. A copy shares every
// entry with the original (one pointer copied), and a change copies only the nodes on the path to
// the changed name (O(log n)), so maps derived one from another (the next version of a set from
// the previous one) cost per changed name, not per entry held (ADR 0088 and 0086, amended).
//
// A treap whose priorities are a hash of the name: its shape depends only on the names it holds,
// so two maps derived one from the other share every subtree where they agree, and Diff() visits
// only where they differ. Every node keeps its subtree's sum of `Summary::Of(name, value)` (a
// uint64_t, wrapping), so Sum() is O(1): the control plane sums type-version entry hashes with it
// (xds/version.h); NoSummary sums nothing.
//
// The interface is the part of std::map its users need; iterators are forward and const, and
// stay valid as long as the map they came from is not changed (a change may free the nodes they
// stand on). Values compare with operator== (Diff, and insert_or_assign's no-op check).
// Ownership: a map owns its nodes jointly with its copies; a node is changed in place only while
// this map alone holds it.
// Threading: one map is plain data (one thread at a time); maps sharing nodes may be used and
// destroyed on different threads (shared nodes are never written; their counts are atomic).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/functional/function_ref.h"
#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"
#include "common/base/logging.h"

namespace meshlet {

// A PersistentMap summary of nothing: Sum() is 0.
struct NoSummary {
  template <typename Value>
  static uint64_t Of(const std::string& /*name*/, const Value& /*value*/) {
    return 0;
  }
};

template <typename Value, typename Summary = NoSummary>
class PersistentMap {
  struct Node;
  class NodePtr;

 public:
  using key_type = std::string;
  using mapped_type = Value;
  using value_type = std::pair<const std::string, Value>;

// GCC's -O2 flow analysis takes the inlined storage of a default-constructed iterator's path
// (end(), find()'s miss) for uninitialized where it is empty: a false -Wmaybe-uninitialized.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
  class const_iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = PersistentMap::value_type;
    using difference_type = std::ptrdiff_t;
    using pointer = const value_type*;
    using reference = const value_type&;

    const_iterator() = default;
    reference operator*() const { return current()->entry; }
    pointer operator->() const { return &**this; }
    const_iterator& operator++() {
      const Node* node = path_.back();
      path_.pop_back();
      PushLeftSpine(node->right.get());
      return *this;
    }
    const_iterator operator++(int) {
      const_iterator before = *this;
      ++*this;
      return before;
    }
    friend bool operator==(const const_iterator& a, const const_iterator& b) {
      return a.current() == b.current();
    }

   private:
    friend class PersistentMap;
    const Node* current() const { return path_.empty() ? nullptr : path_.back(); }
    void PushLeftSpine(const Node* node) {
      for (; node != nullptr; node = node->left.get()) path_.push_back(node);
    }
    // The current node last, below it the ancestors still to visit (those it is left of). A
    // treap of 10^6 names is about 50 deep; deeper paths spill to the heap.
    absl::InlinedVector<const Node*, 48> path_;
  };
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
  using iterator = const_iterator;

  PersistentMap() = default;

  const_iterator begin() const {
    const_iterator it;
    it.PushLeftSpine(root_.get());
    return it;
  }
  const_iterator end() const { return {}; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  const_iterator find(absl::string_view name) const;
  bool contains(absl::string_view name) const { return Get(name) != nullptr; }
  size_t count(absl::string_view name) const { return contains(name) ? 1 : 0; }
  // The value named `name`; aborts when there is none (as std::map::at throws).
  const Value& at(absl::string_view name) const {
    const Value* found = Get(name);
    CHECK(found != nullptr) << "PersistentMap::at: nothing named " << name;
    return *found;
  }
  // The value named `name`, or null.
  const Value* Get(absl::string_view name) const {
    for (const Node* node = root_.get(); node != nullptr;) {
      const int order = name.compare(node->entry.first);
      if (order == 0) return &node->entry.second;
      node = order < 0 ? node->left.get() : node->right.get();
    }
    return nullptr;
  }

  // Adds or replaces; true when added.
  bool insert_or_assign(std::string name, Value value) {
    if (const Value* held = Get(name); held != nullptr && *held == value) return false;
    NodePtr fresh = NodePtr::Make(std::move(name), std::move(value));
    const bool added = Insert(root_, fresh);
    if (added) ++size_;
    return added;
  }
  // Adds when absent (an existing entry stays); true when added.
  bool emplace(std::string name, Value value) {
    if (contains(name)) return false;
    NodePtr fresh = NodePtr::Make(std::move(name), std::move(value));
    Insert(root_, fresh);
    ++size_;
    return true;
  }
  bool insert(const value_type& item) { return emplace(item.first, item.second); }
  // std::map's operator[]: the value named `name`, added value-initialized when absent, to be
  // changed in place (the nodes on its path are copied first when shared, as by any change).
  // Only without a summary: a value changed through the reference would leave the sums stale.
  Value& operator[](absl::string_view name) {
    static_assert(std::is_same_v<Summary, NoSummary>,
                  "a summed map is changed by insert_or_assign");
    if (!contains(name)) emplace(std::string(name), Value());
    for (NodePtr* at = &root_;;) {
      MakeOwn(*at);
      const int order = name.compare((*at)->entry.first);
      if (order == 0) return (*at)->entry.second;
      at = order < 0 ? &(*at)->left : &(*at)->right;
    }
  }
  // Removes `name`; the number removed (0 or 1).
  size_t erase(absl::string_view name) {
    if (!contains(name)) return 0;
    Remove(root_, name);
    --size_;
    return 1;
  }
  void erase(const_iterator it) { erase(absl::string_view(it->first)); }
  void clear() {
    root_.reset();
    size_ = 0;
  }

  // What one node takes (one allocation per entry, plus the copies a change makes of the nodes
  // on its path while an older map still holds them).
  static constexpr size_t NodeBytes() { return sizeof(Node); }

  // The sum (wrapping) of Summary::Of(name, value) over the entries.
  uint64_t Sum() const {
    if constexpr (kSummed) {
      return root_ == nullptr ? 0 : root_->sum;
    } else {
      return 0;
    }
  }

  // Calls `changed(name, before, after)` in name order for every name whose value differs
  // between `from` and `to` (`before` null for a name only `to` holds, `after` null for one only
  // `from` holds). Subtrees the two share are skipped, so maps derived one from the other cost
  // per difference, not per entry. Returns the entries it compared.
  using DiffFn =
      absl::FunctionRef<void(const std::string& name, const Value* before, const Value* after)>;
  static size_t Diff(const PersistentMap& from, const PersistentMap& to, DiffFn changed) {
    return DiffNodes(from.root_.get(), to.root_.get(), changed);
  }

  // Whether `a` and `b` hold the same names with equal values.
  friend bool operator==(const PersistentMap& a, const PersistentMap& b) {
    if (a.size() != b.size()) return false;
    bool same = true;
    Diff(a, b, [&](const std::string&, const Value*, const Value*) { same = false; });
    return same;
  }

 private:
  static constexpr bool kSummed = !std::is_same_v<Summary, NoSummary>;

  // A node's share of its subtree's sum; nothing for NoSummary.
  struct Sums {
    uint64_t own = 0;  // Summary::Of(entry)
    uint64_t sum = 0;  // `own` over the subtree
  };
  struct NoSums {};

  // A node shared by the maps that hold it, counted in the node itself: one allocation per node
  // and a pointer per child, where std::shared_ptr took a control block and two pointers.
  class NodePtr {
   public:
    NodePtr() = default;
    NodePtr(std::nullptr_t) {}  // NOLINT(google-explicit-constructor): as shared_ptr
    template <typename... Args>
    static NodePtr Make(Args&&... args) {
      NodePtr out;
      out.node_ = new Node(std::forward<Args>(args)...);
      return out;
    }
    NodePtr(const NodePtr& other) : node_(other.node_) {
      if (node_ != nullptr) node_->refs.fetch_add(1, std::memory_order_relaxed);
    }
    NodePtr(NodePtr&& other) noexcept : node_(std::exchange(other.node_, nullptr)) {}
    NodePtr& operator=(NodePtr other) noexcept {
      std::swap(node_, other.node_);
      return *this;
    }
    ~NodePtr() { reset(); }

    void reset() {
      Node* node = std::exchange(node_, nullptr);
      // As shared_ptr: the last holder's delete happens after every other holder's reads.
      if (node != nullptr && node->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete node;
    }
    // The holders of the node (a relaxed load, as shared_ptr::use_count); 0 when null.
    uint32_t use_count() const {
      return node_ == nullptr ? 0 : node_->refs.load(std::memory_order_relaxed);
    }
    Node* get() const { return node_; }
    Node* operator->() const { return node_; }
    Node& operator*() const { return *node_; }
    explicit operator bool() const { return node_ != nullptr; }
    friend bool operator==(const NodePtr& a, std::nullptr_t) { return a.node_ == nullptr; }
    friend bool operator!=(const NodePtr& a, std::nullptr_t) { return a.node_ != nullptr; }

   private:
    Node* node_ = nullptr;
  };

  struct Node : std::conditional_t<kSummed, Sums, NoSums> {
    Node(std::string name, Value value)
        : entry(std::move(name), std::move(value)),
          priority(absl::HashOf(absl::string_view(entry.first))) {
      if constexpr (kSummed) this->sum = this->own = Summary::Of(entry.first, entry.second);
    }
    // A copy to change (MakeOwn): the same entry and children, held by one map.
    Node(const Node& other)
        : std::conditional_t<kSummed, Sums, NoSums>(other),
          entry(other.entry),
          priority(other.priority),
          left(other.left),
          right(other.right) {}
    Node& operator=(const Node&) = delete;

    value_type entry;
    // The maps holding this node (through their roots or parents).
    std::atomic<uint32_t> refs{1};
    // The heap order: a node's priority is above its children's (ties broken by name, so the
    // shape is a function of the names held).
    uint64_t priority;
    NodePtr left, right;
  };

  static bool Above(const Node& a, const Node& b) {
    return a.priority > b.priority || (a.priority == b.priority && a.entry.first < b.entry.first);
  }
  static size_t DiffNodes(const Node* a, const Node* b, DiffFn changed);
  static size_t DiffWalk(const Node* a, const Node* b, DiffFn changed);
  static void Split(NodePtr node, absl::string_view name, NodePtr& left, NodePtr& right);
  static NodePtr Merge(NodePtr left, NodePtr right);
  // Inserts `fresh` (a new node, alone) under `node`; true when added, false when it replaced
  // (then `fresh`'s value is moved into the existing node).
  static bool Insert(NodePtr& node, NodePtr& fresh);
  static void Remove(NodePtr& node, absl::string_view name);
  static void MakeOwn(NodePtr& node) {
    if (node.use_count() != 1) {
      node = NodePtr::Make(*node);
      return;
    }
    // The last other holder may have let go on another thread: its reads happen before ours
    // writes (use_count() is a relaxed load).
    std::atomic_thread_fence(std::memory_order_acquire);
  }
  static void Update(Node& node) {
    if constexpr (kSummed) {
      node.sum = node.own + (node.left ? node.left->sum : 0) + (node.right ? node.right->sum : 0);
    }
  }

  NodePtr root_;
  size_t size_ = 0;
};

template <typename Value, typename Summary>
typename PersistentMap<Value, Summary>::const_iterator PersistentMap<Value, Summary>::find(
    absl::string_view name) const {
  const_iterator it;
  for (const Node* node = root_.get(); node != nullptr;) {
    const int order = name.compare(node->entry.first);
    if (order == 0) {
      it.path_.push_back(node);
      return it;
    }
    if (order < 0) {
      it.path_.push_back(node);  // visited after its left subtree
      node = node->left.get();
    } else {
      node = node->right.get();
    }
  }
  return {};
}

template <typename Value, typename Summary>
void PersistentMap<Value, Summary>::Split(NodePtr node, absl::string_view name, NodePtr& left,
                                          NodePtr& right) {
  if (node == nullptr) {
    left.reset();
    right.reset();
    return;
  }
  MakeOwn(node);
  if (absl::string_view(node->entry.first) < name) {
    NodePtr child = std::move(node->right);
    Split(std::move(child), name, node->right, right);
    Update(*node);
    left = std::move(node);
  } else {
    NodePtr child = std::move(node->left);
    Split(std::move(child), name, left, node->left);
    Update(*node);
    right = std::move(node);
  }
}

template <typename Value, typename Summary>
typename PersistentMap<Value, Summary>::NodePtr PersistentMap<Value, Summary>::Merge(
    NodePtr left, NodePtr right) {
  if (left == nullptr) return right;
  if (right == nullptr) return left;
  if (Above(*left, *right)) {
    MakeOwn(left);
    left->right = Merge(std::move(left->right), std::move(right));
    Update(*left);
    return left;
  }
  MakeOwn(right);
  right->left = Merge(std::move(left), std::move(right->left));
  Update(*right);
  return right;
}

template <typename Value, typename Summary>
bool PersistentMap<Value, Summary>::Insert(NodePtr& node, NodePtr& fresh) {
  if (node == nullptr) {
    node = std::move(fresh);
    return true;
  }
  const int order = absl::string_view(fresh->entry.first).compare(node->entry.first);
  if (order != 0 && Above(*fresh, *node)) {
    // The new name is not below `node` (it would be above it): it takes node's place.
    Split(std::move(node), fresh->entry.first, fresh->left, fresh->right);
    Update(*fresh);
    node = std::move(fresh);
    return true;
  }
  MakeOwn(node);
  bool added = false;
  if (order == 0) {
    node->entry.second = std::move(fresh->entry.second);
    if constexpr (kSummed) node->own = fresh->own;
  } else {
    added = Insert(order < 0 ? node->left : node->right, fresh);
  }
  Update(*node);
  return added;
}

template <typename Value, typename Summary>
void PersistentMap<Value, Summary>::Remove(NodePtr& node, absl::string_view name) {
  const int order = name.compare(node->entry.first);
  if (order == 0) {
    node = Merge(node->left, node->right);
    return;
  }
  MakeOwn(node);
  Remove(order < 0 ? node->left : node->right, name);
  Update(*node);
}

template <typename Value, typename Summary>
size_t PersistentMap<Value, Summary>::DiffNodes(const Node* a, const Node* b, DiffFn changed) {
  if (a == b) return 0;
  if (a == nullptr || b == nullptr || a->priority != b->priority ||
      a->entry.first != b->entry.first) {
    return DiffWalk(a, b, changed);
  }
  // The same name at the top of both: below it, the same range of names on either side.
  size_t compared = 1 + DiffNodes(a->left.get(), b->left.get(), changed);
  if (!(a->entry.second == b->entry.second)) {
    changed(a->entry.first, &a->entry.second, &b->entry.second);
  }
  return compared + DiffNodes(a->right.get(), b->right.get(), changed);
}

template <typename Value, typename Summary>
size_t PersistentMap<Value, Summary>::DiffWalk(const Node* a, const Node* b, DiffFn changed) {
  // Shapes differ here (a name one side lacks sits above the other's): both subtrees hold the
  // same range of names, so one walk over the two in order finds the differences.
  const_iterator x, y;
  x.PushLeftSpine(a);
  y.PushLeftSpine(b);
  const const_iterator end;
  size_t compared = 0;
  while (x != end || y != end) {
    ++compared;
    if (y == end || (x != end && x->first < y->first)) {
      changed(x->first, &x->second, nullptr);
      ++x;
    } else if (x == end || y->first < x->first) {
      changed(y->first, nullptr, &y->second);
      ++y;
    } else {
      if (!(x->second == y->second)) changed(x->first, &x->second, &y->second);
      ++x;
      ++y;
    }
  }
  return compared;
}

}  // namespace meshlet

#include "control-plane/xds/resource_map.h"

#include <atomic>

#include "absl/hash/hash.h"
#include "common/base/logging.h"
#include "control-plane/xds/resource_set.h"
#include "xds/version.h"

namespace meshlet::controlplane::ads {

struct ResourceMap::Node {
  Node(std::string name, ResourcePtr resource)
      : entry(std::move(name), std::move(resource)),
        priority(absl::HashOf(absl::string_view(entry.first))),
        entry_hash(xds::TypeVersionEntry(entry.first, entry.second->version)),
        sum(entry_hash) {}

  value_type entry;
  // The heap order: a node's priority is above its children's (ties broken by name, so the
  // shape is a function of the names held).
  uint64_t priority;
  uint64_t entry_hash;  // xds::TypeVersionEntry(name, version)
  uint64_t sum;         // entry_hash over the subtree
  NodePtr left, right;
};

namespace {

template <typename Node>
bool Above(const Node& a, const Node& b) {
  return a.priority > b.priority || (a.priority == b.priority && a.entry.first < b.entry.first);
}

}  // namespace

const ResourceMap::value_type& ResourceMap::const_iterator::operator*() const {
  return current()->entry;
}

void ResourceMap::const_iterator::PushLeftSpine(const Node* node) {
  for (; node != nullptr; node = node->left.get()) path_.push_back(node);
}

ResourceMap::const_iterator& ResourceMap::const_iterator::operator++() {
  const Node* node = path_.back();
  path_.pop_back();
  PushLeftSpine(node->right.get());
  return *this;
}

ResourceMap::const_iterator ResourceMap::begin() const {
  const_iterator it;
  it.PushLeftSpine(root_.get());
  return it;
}

ResourceMap::const_iterator ResourceMap::find(absl::string_view name) const {
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

const ResourcePtr* ResourceMap::Get(absl::string_view name) const {
  for (const Node* node = root_.get(); node != nullptr;) {
    const int order = name.compare(node->entry.first);
    if (order == 0) return &node->entry.second;
    node = order < 0 ? node->left.get() : node->right.get();
  }
  return nullptr;
}

const ResourcePtr& ResourceMap::at(absl::string_view name) const {
  const ResourcePtr* found = Get(name);
  CHECK(found != nullptr) << "ResourceMap::at: no resource named " << name;
  return *found;
}

uint64_t ResourceMap::VersionSum() const { return root_ == nullptr ? 0 : root_->sum; }

void ResourceMap::MakeOwn(NodePtr& node) {
  if (node.use_count() != 1) {
    node = std::make_shared<Node>(*node);
    return;
  }
  // The last other holder may have let go on another thread: its reads happen before ours
  // writes (use_count() is a relaxed load).
  std::atomic_thread_fence(std::memory_order_acquire);
}

void ResourceMap::Update(Node& node) {
  node.sum =
      node.entry_hash + (node.left ? node.left->sum : 0) + (node.right ? node.right->sum : 0);
}

void ResourceMap::Split(NodePtr node, absl::string_view name, NodePtr& left, NodePtr& right) {
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

ResourceMap::NodePtr ResourceMap::Merge(NodePtr left, NodePtr right) {
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

bool ResourceMap::Insert(NodePtr& node, NodePtr& fresh) {
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
    node->entry_hash = fresh->entry_hash;
  } else {
    added = Insert(order < 0 ? node->left : node->right, fresh);
  }
  Update(*node);
  return added;
}

void ResourceMap::Remove(NodePtr& node, absl::string_view name) {
  const int order = name.compare(node->entry.first);
  if (order == 0) {
    node = Merge(node->left, node->right);
    return;
  }
  MakeOwn(node);
  Remove(order < 0 ? node->left : node->right, name);
  Update(*node);
}

bool ResourceMap::insert_or_assign(std::string name, ResourcePtr resource) {
  if (const ResourcePtr* held = Get(name); held != nullptr && *held == resource) return false;
  auto fresh = std::make_shared<Node>(std::move(name), std::move(resource));
  const bool added = Insert(root_, fresh);
  if (added) ++size_;
  return added;
}

bool ResourceMap::emplace(std::string name, ResourcePtr resource) {
  if (contains(name)) return false;
  auto fresh = std::make_shared<Node>(std::move(name), std::move(resource));
  Insert(root_, fresh);
  ++size_;
  return true;
}

size_t ResourceMap::erase(absl::string_view name) {
  if (!contains(name)) return 0;
  Remove(root_, name);
  --size_;
  return 1;
}

size_t ResourceMap::Diff(const ResourceMap& from, const ResourceMap& to, DiffFn changed) {
  return DiffNodes(from.root_.get(), to.root_.get(), changed);
}

size_t ResourceMap::DiffNodes(const Node* a, const Node* b, DiffFn changed) {
  if (a == b) return 0;
  if (a == nullptr || b == nullptr || a->priority != b->priority ||
      a->entry.first != b->entry.first) {
    return DiffWalk(a, b, changed);
  }
  // The same name at the top of both: below it, the same range of names on either side.
  size_t compared = 1 + DiffNodes(a->left.get(), b->left.get(), changed);
  if (a->entry.second != b->entry.second) {
    changed(a->entry.first, &a->entry.second, &b->entry.second);
  }
  return compared + DiffNodes(a->right.get(), b->right.get(), changed);
}

size_t ResourceMap::DiffWalk(const Node* a, const Node* b, DiffFn changed) {
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
      if (x->second != y->second) changed(x->first, &x->second, &y->second);
      ++x;
      ++y;
    }
  }
  return compared;
}

bool operator==(const ResourceMap& a, const ResourceMap& b) {
  if (a.size() != b.size()) return false;
  bool same = true;
  ResourceMap::Diff(
      a, b, [&](const std::string&, const ResourcePtr*, const ResourcePtr*) { same = false; });
  return same;
}

}  // namespace meshlet::controlplane::ads

#pragma once

// ResourceList<T>: the policy resources of one kind in a PolicySnapshot, ordered by
// (metadata.namespace, metadata.name), each held through a shared pointer so that copying a
// list copies pointers, not resources. A snapshot updated after one write (ApplyPolicyChange,
// snapshot.h) is a copy of the previous one with one element replaced, sharing every other
// element with it.
//
// Reads look like a std::vector<T>'s (size, [], iteration yielding const T&). Writes through a
// non-const list (tests build snapshots by hand) copy an element first if another list shares
// it (copy on write), so no write is ever seen through another list.
//
// Threading: a const list may be read from any number of threads; a non-const one is used by one
// thread at a time.

#include <algorithm>
#include <cstddef>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace meshlet::controlplane::policy {

template <typename T>
class ResourceList {
  using Slots = std::vector<std::shared_ptr<T>>;

  template <typename Value, typename Base>
  class Iterator {
   public:
    using iterator_category = std::random_access_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = Value*;
    using reference = Value&;

    Iterator() = default;
    explicit Iterator(Base it) : it_(it) {}
    reference operator*() const { return **it_; }
    pointer operator->() const { return it_->get(); }
    reference operator[](difference_type n) const { return *it_[n]; }
    Iterator& operator++() { return ++it_, *this; }
    Iterator operator++(int) { return Iterator(it_++); }
    Iterator& operator--() { return --it_, *this; }
    Iterator operator--(int) { return Iterator(it_--); }
    Iterator& operator+=(difference_type n) { return it_ += n, *this; }
    Iterator& operator-=(difference_type n) { return it_ -= n, *this; }
    friend Iterator operator+(Iterator a, difference_type n) { return a += n; }
    friend Iterator operator+(difference_type n, Iterator a) { return a += n; }
    friend Iterator operator-(Iterator a, difference_type n) { return a -= n; }
    friend difference_type operator-(const Iterator& a, const Iterator& b) { return a.it_ - b.it_; }
    friend bool operator==(const Iterator& a, const Iterator& b) { return a.it_ == b.it_; }
    friend auto operator<=>(const Iterator& a, const Iterator& b) { return a.it_ <=> b.it_; }
    const Base& base() const { return it_; }

   private:
    Base it_{};
  };

 public:
  using value_type = T;
  using size_type = size_t;
  using const_iterator = Iterator<const T, typename Slots::const_iterator>;
  using iterator = Iterator<T, typename Slots::iterator>;

  ResourceList() = default;
  ResourceList(std::initializer_list<T> items) {
    for (const T& item : items) push_back(item);
  }
  ResourceList& operator=(std::initializer_list<T> items) {
    clear();
    for (const T& item : items) push_back(item);
    return *this;
  }

  size_t size() const { return slots_.size(); }
  bool empty() const { return slots_.empty(); }
  void reserve(size_t n) { slots_.reserve(n); }
  void clear() { slots_.clear(); }

  const T& operator[](size_t i) const { return *slots_[i]; }
  T& operator[](size_t i) { return Own(slots_[i]); }
  const T& front() const { return *slots_.front(); }
  const T& back() const { return *slots_.back(); }
  T& front() { return Own(slots_.front()); }
  T& back() { return Own(slots_.back()); }

  const_iterator begin() const { return const_iterator(slots_.cbegin()); }
  const_iterator end() const { return const_iterator(slots_.cend()); }
  const_iterator cbegin() const { return begin(); }
  const_iterator cend() const { return end(); }
  // Non-const iteration may write any element: every shared one is copied first.
  iterator begin() {
    for (std::shared_ptr<T>& slot : slots_) Own(slot);
    return iterator(slots_.begin());
  }
  iterator end() { return iterator(slots_.end()); }

  // Appends in the order given (a hand-built list need not be sorted; Upsert keeps it sorted).
  void push_back(T item) { slots_.push_back(std::make_shared<T>(std::move(item))); }
  void push_back(std::shared_ptr<T> item) { slots_.push_back(std::move(item)); }
  iterator erase(const_iterator it) {
    return iterator(slots_.erase(slots_.begin() + (it.base() - slots_.cbegin())));
  }
  iterator erase(const_iterator first, const_iterator last) {
    return iterator(slots_.erase(slots_.begin() + (first.base() - slots_.cbegin()),
                                 slots_.begin() + (last.base() - slots_.cbegin())));
  }

  // For a list ordered by (namespace, name): replaces the element of `item`'s namespace and name,
  // or inserts it in order.
  void Upsert(std::shared_ptr<T> item) {
    auto it = LowerBound(item->metadata().namespace_(), item->metadata().name());
    if (it != slots_.end() &&
        Matches(**it, item->metadata().namespace_(), item->metadata().name())) {
      *it = std::move(item);
    } else {
      slots_.insert(it, std::move(item));
    }
  }
  // For a list ordered by (namespace, name): removes that element; false if there was none.
  bool Erase(absl::string_view namespace_, absl::string_view name) {
    auto it = LowerBound(namespace_, name);
    if (it == slots_.end() || !Matches(**it, namespace_, name)) return false;
    slots_.erase(it);
    return true;
  }
  // For a list ordered by (namespace, name): that element, or null.
  const T* Find(absl::string_view namespace_, absl::string_view name) const {
    auto it = std::lower_bound(slots_.begin(), slots_.end(), std::tuple(namespace_, name), Less);
    return it != slots_.end() && Matches(**it, namespace_, name) ? it->get() : nullptr;
  }

 private:
  static bool Less(const std::shared_ptr<T>& slot,
                   const std::tuple<absl::string_view, absl::string_view>& key) {
    return std::tuple(absl::string_view(slot->metadata().namespace_()),
                      absl::string_view(slot->metadata().name())) < key;
  }
  static bool Matches(const T& item, absl::string_view namespace_, absl::string_view name) {
    return item.metadata().namespace_() == namespace_ && item.metadata().name() == name;
  }
  typename Slots::iterator LowerBound(absl::string_view namespace_, absl::string_view name) {
    return std::lower_bound(slots_.begin(), slots_.end(), std::tuple(namespace_, name), Less);
  }
  static T& Own(std::shared_ptr<T>& slot) {
    if (slot.use_count() > 1) slot = std::make_shared<T>(*slot);
    return *slot;
  }

  Slots slots_;
};

}  // namespace meshlet::controlplane::policy

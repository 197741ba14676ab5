#pragma once

// Per-thread free lists for objects a worker makes and destroys once or more per request (the
// connection manager's stream, the router's upstream attempt, the pool's stream, header maps,
// list nodes). A worker thread runs its requests one after another, so the block a finished
// request gave back is the next request's: no malloc/free pair per object, no lock (each thread
// has its own lists), and the memory kept is bounded by kMaxCached blocks per size and thread.
//
//   class Stream : public ThreadRecycled<Stream> { ... };   // new/delete use the free list
//   std::list<T, RecyclingAllocator<T>> list;                 // so do the list's nodes
//   std::basic_string<char, std::char_traits<char>, RecyclingByteAllocator<char>> bytes;
//
// Blocks are ordinary operator new memory, so an object freed on another thread than the one
// that made it simply joins that thread's list; a thread's lists are freed when it exits.
// Under AddressSanitizer the lists are bypassed, so use-after-free is still caught.
// docs/adr/0024-recycled-timers-and-free-lists.md says why.

#include <cstddef>
#include <new>

namespace meshlet {
namespace free_list_internal {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kBypass = true;
#else
inline constexpr bool kBypass = false;
#endif

// Free blocks of kSize bytes on one thread, at most kMaxBlocks of them.
template <size_t kSize, size_t kMaxBlocks>
class BlockList {
 public:
  BlockList() = default;
  BlockList(const BlockList&) = delete;
  BlockList& operator=(const BlockList&) = delete;
  ~BlockList() {
    while (head_ != nullptr) {
      Node* n = head_;
      head_ = n->next;
      ::operator delete(n);
    }
  }

  void* Allocate() {
    if (head_ == nullptr) return ::operator new(kSize);
    Node* n = head_;
    head_ = n->next;
    --count_;
    return n;
  }

  void Free(void* p) {
    if (count_ >= kMaxBlocks) {
      ::operator delete(p);
      return;
    }
    Node* n = static_cast<Node*>(p);
    n->next = head_;
    head_ = n;
    ++count_;
  }

  size_t count() const { return count_; }

 private:
  struct Node {
    Node* next;
  };
  static_assert(kSize >= sizeof(Node), "blocks hold the list link while free");
  Node* head_ = nullptr;
  size_t count_ = 0;
};

template <size_t kSize, size_t kMaxBlocks>
BlockList<kSize, kMaxBlocks>& ThreadList() {
  thread_local BlockList<kSize, kMaxBlocks> list;
  return list;
}

template <size_t kSize, size_t kMaxBlocks>
void* Allocate() {
  if constexpr (kBypass) return ::operator new(kSize);
  return ThreadList<kSize, kMaxBlocks>().Allocate();
}

template <size_t kSize, size_t kMaxBlocks>
void Free(void* p) {
  if constexpr (kBypass) {
    ::operator delete(p);
  } else {
    ThreadList<kSize, kMaxBlocks>().Free(p);
  }
}

}  // namespace free_list_internal

// Base class that makes `new T` / `delete` use the calling thread's free list for T's size.
// A class derived from T (another size) gets plain operator new.
template <typename T, size_t kMaxCached = 64>
class ThreadRecycled {
 public:
  static void* operator new(size_t size) {
    if (size != sizeof(T)) return ::operator new(size);
    return free_list_internal::Allocate<sizeof(T), kMaxCached>();
  }
  static void operator delete(void* p, size_t size) {
    if (size != sizeof(T)) {
      ::operator delete(p);
      return;
    }
    free_list_internal::Free<sizeof(T), kMaxCached>(p);
  }

  // Free blocks of T's size cached on the calling thread (for tests).
  static size_t ThreadCachedCount() {
    return free_list_internal::ThreadList<sizeof(T), kMaxCached>().count();
  }
};

// A standard allocator over the same free lists, for node-based containers (std::list): single
// objects come from the thread's list for their size, arrays from operator new.
template <typename T, size_t kMaxCached = 64>
class RecyclingAllocator {
 public:
  using value_type = T;
  template <typename U>
  struct rebind {
    using other = RecyclingAllocator<U, kMaxCached>;
  };

  RecyclingAllocator() = default;
  template <typename U>
  RecyclingAllocator(const RecyclingAllocator<U, kMaxCached>&) {}  // NOLINT: rebinding

  T* allocate(size_t n) {
    if (n != 1) return static_cast<T*>(::operator new(n * sizeof(T)));
    return static_cast<T*>(free_list_internal::Allocate<sizeof(T), kMaxCached>());
  }
  void deallocate(T* p, size_t n) {
    if (n != 1) {
      ::operator delete(p);
      return;
    }
    free_list_internal::Free<sizeof(T), kMaxCached>(p);
  }

  friend bool operator==(const RecyclingAllocator&, const RecyclingAllocator&) { return true; }
  friend bool operator!=(const RecyclingAllocator&, const RecyclingAllocator&) { return false; }
};

// A standard allocator for growing byte storage (a std::basic_string arena): requests up to
// 4 KiB are rounded up to a power of two from 256 bytes and served from that size's thread
// list (kMaxCached blocks each); larger ones come from operator new.
template <typename T>
class RecyclingByteAllocator {
 public:
  static_assert(sizeof(T) == 1, "for byte storage");
  using value_type = T;
  static constexpr size_t kMaxCached = 32;

  RecyclingByteAllocator() = default;
  template <typename U>
  RecyclingByteAllocator(const RecyclingByteAllocator<U>&) {}  // NOLINT: rebinding

  T* allocate(size_t n) {
    using free_list_internal::Allocate;
    if (n <= 256) return static_cast<T*>(Allocate<256, kMaxCached>());
    if (n <= 512) return static_cast<T*>(Allocate<512, kMaxCached>());
    if (n <= 1024) return static_cast<T*>(Allocate<1024, kMaxCached>());
    if (n <= 2048) return static_cast<T*>(Allocate<2048, kMaxCached>());
    if (n <= 4096) return static_cast<T*>(Allocate<4096, kMaxCached>());
    return static_cast<T*>(::operator new(n));
  }
  void deallocate(T* p, size_t n) {
    using free_list_internal::Free;
    if (n <= 256) return Free<256, kMaxCached>(p);
    if (n <= 512) return Free<512, kMaxCached>(p);
    if (n <= 1024) return Free<1024, kMaxCached>(p);
    if (n <= 2048) return Free<2048, kMaxCached>(p);
    if (n <= 4096) return Free<4096, kMaxCached>(p);
    ::operator delete(p);
  }

  friend bool operator==(const RecyclingByteAllocator&, const RecyclingByteAllocator&) {
    return true;
  }
  friend bool operator!=(const RecyclingByteAllocator&, const RecyclingByteAllocator&) {
    return false;
  }
};

}  // namespace meshlet

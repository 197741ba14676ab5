#pragma once

// HeaderMap: the ordered header list shared by the HTTP/1 and HTTP/2 codecs, the filters and the
// router.
//
// - Names are stored lowercase (HTTP/2 requires it; HTTP/1 names are case-insensitive), so every
//   lookup is case-insensitive and output is canonical.
// - Insertion order is preserved, and so is every value of a repeated name (Set-Cookie, Via...).
// - Pseudo-headers (names starting with ':', e.g. ":method", ":path", ":authority", ":scheme",
//   ":status") are always kept before regular headers, as HTTP/2 requires.
// - ByteSize() tracks the bytes of names plus values so codecs can enforce header-size limits
//   without walking the list.
// - A 64-bit filter of the regular names added since the last Clear() (one bit per name, from its
//   length and first and last four bytes) answers most lookups of an absent name without walking
//   the list, inline: a proxied request looks up some fifteen names, most of them absent.
// - The position of the first of each of the six pseudo-headers HTTP defines (:method, :scheme,
//   :authority, :path, :status, :protocol) is kept, so looking one up (about half of a proxied
//   request's lookups) reads an index instead of walking the pseudo-headers.
//
// Ownership and memory: the map owns copies of every name and value. They live in one arena
// string and the entries are offsets into it, so a map of typical size costs two allocations
// (arena + entry vector, the latter only past kInlineEntries). Clear() keeps both capacities, so a
// map reused across requests on a keep-alive connection stops allocating after warm-up.
//
// Views returned by Get(), GetAll() and iteration point into the arena: they stay valid until the
// next mutating call (Add, Set, Remove, Clear, ...).
//
// Not thread-safe; a map belongs to one stream on one worker.
//
// The map does not validate names or values: the codecs do that on input, and code that builds
// headers from configuration validates there. Names are lowercased on insertion.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <optional>
#include <string>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/ascii.h"
#include "absl/strings/string_view.h"
#include "common/base/free_list.h"
#include "common/base/logging.h"

namespace meshlet::http {

// A name/value pair viewed from a HeaderMap.
struct HeaderView {
  absl::string_view name;
  absl::string_view value;

  friend bool operator==(const HeaderView& a, const HeaderView& b) {
    return a.name == b.name && a.value == b.value;
  }
};

// Heap-allocated maps (HeaderMapPtr) come from the worker thread's free list
// (common/base/free_list.h): a proxied request makes and drops two of them.
class HeaderMap : public ThreadRecycled<HeaderMap> {
 public:
  // Entries stored without a heap allocation for the vector; covers typical requests.
  static constexpr size_t kInlineEntries = 16;
  // Per-entry overhead HTTP/2 adds in SETTINGS_MAX_HEADER_LIST_SIZE accounting (RFC 9113 6.5.2).
  static constexpr size_t kHttp2EntryOverhead = 32;

  HeaderMap() = default;
  HeaderMap(std::initializer_list<std::pair<absl::string_view, absl::string_view>> headers);
  HeaderMap(const HeaderMap&) = default;
  HeaderMap& operator=(const HeaderMap&) = default;
  // Moves swap the entry vectors instead of using InlinedVector's move, which for trivially
  // copyable elements copies the whole inline buffer, slots never written included (GCC's
  // -Wmaybe-uninitialized rightly flags that read in optimised builds). A swap touches only live
  // entries. The moved-from map is left empty.
  HeaderMap(HeaderMap&& other) noexcept { *this = std::move(other); }
  HeaderMap& operator=(HeaderMap&& other) noexcept {
    if (this == &other) return *this;
    entries_.erase(entries_.begin(), entries_.end());
    entries_.swap(other.entries_);
    arena_ = std::move(other.arena_);
    other.arena_.clear();
    num_pseudo_ = std::exchange(other.num_pseudo_, 0);
    pseudo_at_ = other.pseudo_at_;
    other.pseudo_at_.fill(kAbsent);
    name_filter_ = std::exchange(other.name_filter_, 0);
    byte_size_ = std::exchange(other.byte_size_, 0);
    dead_bytes_ = std::exchange(other.dead_bytes_, 0);
    return *this;
  }

  // Appends a value. Pseudo-headers go after the existing pseudo-headers, ahead of every regular
  // header; regular headers go last. Existing values of `name` are kept.
  void Add(absl::string_view name, absl::string_view value);
  // Replaces every value of `name` with `value`, keeping the position of the first occurrence
  // (or appending if absent).
  void Set(absl::string_view name, absl::string_view value);
  // Add() and Set() for a field the proxy formats itself from bytes that can never split a line
  // (traceparent: hex digits and dashes). The codecs write a trusted field without checking it
  // again, and the map does not lowercase it first. `name` must be a lowercase regular header
  // name; `value` may view this map. Any later Set() of the name makes it untrusted again.
  void AddTrusted(absl::string_view name, absl::string_view value) {
    if (InArena(value)) [[unlikely]] {  // growing the arena would free what `value` views
      AddCopies(name, value, /*trusted=*/true);
      return;
    }
    char* const stored = AddTrustedInPlace(name, value.size());
    if (!value.empty()) std::memcpy(stored, value.data(), value.size());
  }
  void SetTrusted(absl::string_view name, absl::string_view value);
  // Add() for a field a codec has already checked on input as strictly as the encoders would:
  // `name` lowercase and free of CR, LF, NUL, SP, HTAB and ':' but for a pseudo-header's first
  // byte, `value` free of CR, LF and NUL (nghttp2 validates every field it decodes so, RFC 9113
  // 8.2.1). Stored as it is (not lowercased) and, for a regular name, trusted as AddTrusted()
  // makes it, so the codecs write it without checking its bytes again.
  void AddChecked(absl::string_view name, absl::string_view value) {
    if (IsPseudoName(name) || InArena(name) || InArena(value)) [[unlikely]] {
      Add(name, value);  // pseudo-headers keep their place ahead of the regular fields
      return;
    }
    DCHECK(!name.empty() && absl::AsciiStrToLower(name) == name) << name;
    entries_.push_back(NewEntry(name.size(), value.size(), /*trusted=*/true));
    name_filter_ |= NameFilterBit(name);
    char* const stored = arena_.Extend(name.size() + value.size());
    std::memcpy(stored, name.data(), name.size());
    if (!value.empty()) std::memcpy(stored + name.size(), value.data(), value.size());
  }
  // AddTrusted() for a value the caller writes itself: where its `value_size` bytes go, to be
  // written before the next call on the map. Inline, so a constant name is copied and filtered
  // at compile-time cost.
  char* AddTrustedInPlace(absl::string_view name, size_t value_size) {
    DCHECK(!name.empty() && !IsPseudoName(name) && absl::AsciiStrToLower(name) == name) << name;
    entries_.push_back(NewEntry(name.size(), value_size, /*trusted=*/true));
    name_filter_ |= NameFilterBit(name);
    char* const stored = arena_.Extend(name.size() + value_size);
    std::memcpy(stored, name.data(), name.size());
    return stored + name.size();
  }
  // Removes every value of `name`; returns how many were removed. Inline: the connection manager
  // removes names that are nearly always absent, which the name filter settles.
  size_t Remove(absl::string_view name) {
    if (!IsPseudoName(name) && !MayHaveAny(NameFilterBit(name))) return 0;
    return RemoveListed(name);
  }
  // Removes everything; keeps allocated capacity for reuse.
  void Clear();
  // Makes room for `bytes` of names and values in total without another allocation.
  void ReserveBytes(size_t bytes) { arena_.reserve(bytes); }

  // First value of `name`, if any.
  std::optional<absl::string_view> Get(absl::string_view name) const {
    const size_t i = Find(name, 0);
    if (i == kNotFound) return std::nullopt;
    return View(entries_[i]).value;
  }
  // Every value of `name`, in order.
  absl::InlinedVector<absl::string_view, 4> GetAll(absl::string_view name) const;
  // Every value of `name` joined with ", " (RFC 9110 5.3 combination); empty if absent.
  std::string GetJoined(absl::string_view name) const;
  bool Has(absl::string_view name) const { return Find(name, 0) != kNotFound; }
  // Number of values of `name`.
  size_t Count(absl::string_view name) const;

  // A pseudo-header name: starts with ':'.
  static bool IsPseudoName(absl::string_view name) { return !name.empty() && name[0] == ':'; }
  // `name` (lowercase) is one of the hop-by-hop fields RemoveHopByHopHeaders() looks at:
  // connection, keep-alive, proxy-connection, transfer-encoding, upgrade, te.
  static bool IsHopByHopName(absl::string_view name);

  // Removes hop-by-hop headers before forwarding (RFC 9110 7.6.1): Connection and every header
  // it names, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade, and TE unless it lists
  // "trailers" (then TE becomes exactly "trailers", which gRPC needs end to end).
  void RemoveHopByHopHeaders();

  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }

  // The name filter's bit for regular header `name` (case-insensitive). OR several for
  // MayHaveAny().
  static constexpr uint64_t NameFilterBit(absl::string_view name) {
    const size_t n = name.size();
    const auto byte = [&](size_t i) -> uint64_t { return static_cast<unsigned char>(name[i]); };
    // The first and last four bytes (a shorter name: its first, middle and last), case folded
    // (| 0x20 lowercases a letter; it also changes '_' and '^', but in a stored name and a
    // query alike), and the length; the top six bits of their product with an odd constant
    // pick the bit. The constant gives each of 22 common request names (host, user-agent,
    // accept, content-type, x-request-id, x-forwarded-proto, ...) a bit of its own, none of
    // them a trace header's (tests: header_map_test), so an edge request skips the tracer's
    // scan.
    uint64_t key;
    if (n >= 4) {
      key = byte(0) | byte(1) << 8 | byte(2) << 16 | byte(3) << 24 | byte(n - 4) << 32 |
            byte(n - 3) << 40 | byte(n - 2) << 48 | byte(n - 1) << 56;
    } else if (n > 0) {
      key = byte(0) | byte(n / 2) << 8 | byte(n - 1) << 16;
    } else {
      key = 0;
    }
    key = (key | 0x2020202020202020ULL) ^ n;
    return uint64_t{1} << ((key * 0x26d1c002aebb2d8bULL) >> 58);
  }
  // False: no regular header with a bit in `name_filter_bits` is in the map. True: one may be (a
  // name that shares a bit, or one since removed, also answers true).
  bool MayHaveAny(uint64_t name_filter_bits) const {
    return (name_filter_ & name_filter_bits) != 0;
  }
  // Sum of name and value lengths over all entries.
  size_t ByteSize() const { return byte_size_; }
  // ByteSize() plus kHttp2EntryOverhead per entry, as HTTP/2 header list limits count.
  size_t Http2ListSize() const { return byte_size_ + kHttp2EntryOverhead * entries_.size(); }

  HeaderView at(size_t i) const { return View(entries_[i]); }

  // Call fn(HeaderView) for every pseudo-header or every regular header, in order. For scans that
  // look at every name (one pass for several names): they walk the entries directly, without the
  // iterator's per-step indexing.
  template <typename Fn>
  void ForEachPseudo(Fn&& fn) const {
    ForEachIn(0, num_pseudo_, fn);
  }
  template <typename Fn>
  void ForEachRegular(Fn&& fn) const {
    ForEachIn(num_pseudo_, entries_.size(), fn);
  }
  // As ForEachRegular, calling fn(HeaderView, bool trusted): trusted for AddTrusted/SetTrusted
  // fields (for the codecs' output checks).
  template <typename Fn>
  void ForEachRegularWithTrust(Fn&& fn) const {
    ForEachEntryIn(num_pseudo_, entries_.size(),
                   [&](HeaderView header, const Entry& e) { fn(header, e.trusted != 0); });
  }

  class const_iterator {
   public:
    using iterator_category = std::random_access_iterator_tag;
    using value_type = HeaderView;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = HeaderView;

    const_iterator() = default;
    HeaderView operator*() const { return map_->at(index_); }
    const_iterator& operator++() {
      ++index_;
      return *this;
    }
    const_iterator operator++(int) {
      const_iterator old = *this;
      ++index_;
      return old;
    }
    friend bool operator==(const const_iterator& a, const const_iterator& b) {
      return a.index_ == b.index_;
    }
    friend bool operator!=(const const_iterator& a, const const_iterator& b) { return !(a == b); }

   private:
    friend class HeaderMap;
    const_iterator(const HeaderMap* map, size_t index) : map_(map), index_(index) {}
    const HeaderMap* map_ = nullptr;
    size_t index_ = 0;
  };

  const_iterator begin() const { return const_iterator(this, 0); }
  const_iterator end() const { return const_iterator(this, entries_.size()); }

  // Order-sensitive comparison of names and values.
  friend bool operator==(const HeaderMap& a, const HeaderMap& b);
  friend bool operator!=(const HeaderMap& a, const HeaderMap& b) { return !(a == b); }

  // "name: value\n" per entry, for tests and debug logs.
  std::string DebugString() const;

 private:
  // Offsets into arena_; 32 bits each because header sections are bounded far below 4 GiB.
  struct Entry {
    uint32_t name_offset;
    uint32_t name_size : 31;
    uint32_t trusted : 1;  // AddTrusted/SetTrusted: the codecs need not check its bytes
    uint32_t value_offset;
    uint32_t value_size;
  };
  static constexpr size_t kNotFound = static_cast<size_t>(-1);
  // The pseudo-headers whose first position pseudo_at_ keeps.
  enum KnownPseudo : uint8_t { kMethod, kScheme, kAuthority, kPath, kStatus, kProtocol, kKnown };
  static constexpr uint32_t kAbsent = UINT32_MAX;
  // Which one `name` is exactly, or kKnown. Inline and constexpr: a constant name folds to its
  // answer.
  static constexpr KnownPseudo KnownPseudoOf(absl::string_view name) {
    switch (name.size()) {
      case 5:
        return name == ":path" ? kPath : kKnown;
      case 7:
        if (name == ":method") return kMethod;
        if (name == ":scheme") return kScheme;
        return name == ":status" ? kStatus : kKnown;
      case 9:
        return name == ":protocol" ? kProtocol : kKnown;
      case 10:
        return name == ":authority" ? kAuthority : kKnown;
      default:
        return kKnown;
    }
  }
  // Sets pseudo_at_ from the pseudo-headers, after one was removed.
  void IndexPseudo();

  HeaderView View(const Entry& e) const {
    return {absl::string_view(arena_.data() + e.name_offset, e.name_size),
            absl::string_view(arena_.data() + e.value_offset, e.value_size)};
  }
  bool InArena(absl::string_view s) const {
    return !s.empty() && s.data() >= arena_.data() && s.data() < arena_.data() + arena_.size();
  }
  template <typename Fn>
  void ForEachIn(size_t first, size_t last, Fn& fn) const {
    ForEachEntryIn(first, last, [&](HeaderView header, const Entry&) { fn(header); });
  }
  // fn(HeaderView, const Entry&) for entries_[first, last). Raw pointers: InlinedVector's
  // operator[] checks where its storage is on every access.
  template <typename Fn>
  void ForEachEntryIn(size_t first, size_t last, Fn&& fn) const {
    const Entry* const entries = entries_.data();
    const char* const arena = arena_.data();
    for (const Entry* e = entries + first; e != entries + last; ++e) {
      fn(HeaderView{absl::string_view(arena + e->name_offset, e->name_size),
                    absl::string_view(arena + e->value_offset, e->value_size)},
         *e);
    }
  }

  // Index of the first entry at or after `from` whose name equals `name` ignoring case. Inline,
  // so a lookup of a constant name the filter rules out costs a test and a branch.
  size_t Find(absl::string_view name, size_t from) const {
    if (!IsPseudoName(name)) {
      if (!MayHaveAny(NameFilterBit(name))) return kNotFound;
    } else if (const KnownPseudo known = KnownPseudoOf(name); known != kKnown && from == 0) {
      const uint32_t at = pseudo_at_[known];
      return at == kAbsent ? kNotFound : at;
    }
    return FindInList(name, from);
  }
  size_t FindInList(absl::string_view name, size_t from) const;
  size_t RemoveListed(absl::string_view name);
  // An entry for a name and value about to be appended at the arena's end, counted in
  // byte_size_; the caller appends them. Inline: every Add goes through it.
  Entry NewEntry(size_t name_size, size_t value_size, bool trusted) {
    // Header sections are bounded by codec limits far below 4 GiB; anything near it is a bug.
    CHECK(arena_.size() + name_size + value_size < UINT32_MAX) << "header map overflow";
    // Names bounded by codec limits fit 31 bits with room to spare.
    CHECK(name_size < (uint32_t{1} << 31)) << "header name overflow";
    Entry e;
    e.name_offset = static_cast<uint32_t>(arena_.size());
    e.name_size = static_cast<uint32_t>(name_size);
    e.trusted = trusted ? 1 : 0;
    e.value_offset = static_cast<uint32_t>(arena_.size() + name_size);
    e.value_size = static_cast<uint32_t>(value_size);
    byte_size_ += name_size + value_size;
    return e;
  }
  // Add() of arguments that view this map's own arena: copies them first. Out of line, so Add(),
  // which runs for every parsed field, keeps a small frame.
  [[gnu::noinline]] void AddCopies(absl::string_view name, absl::string_view value,
                                   bool trusted = false);
  // Set()'s work once `first`, the first entry of `name`, is found.
  void Replace(size_t first, absl::string_view name, absl::string_view value);
  void EraseAt(size_t index);
  // Rewrites the arena without the bytes of removed entries once they dominate it.
  void MaybeCompact();

  // Names and values, back to back. A byte buffer rather than a std::string: growing it for an
  // entry does not zero-fill bytes about to be overwritten. Its storage comes from the thread's
  // free lists too (RecyclingByteAllocator), a capacity of one of their block sizes.
  class Arena {
   public:
    Arena() = default;
    Arena(const Arena& other) { *this = other; }
    Arena& operator=(const Arena& other) {
      if (this != &other) {
        size_ = 0;  // keeps the capacity: a map copied into a reserved one does not reallocate
        append(other.data_, other.size_);
      }
      return *this;
    }
    Arena(Arena&& other) noexcept { swap(other); }
    Arena& operator=(Arena&& other) noexcept {
      if (this != &other) {
        Arena dropped;
        dropped.swap(other);
        swap(dropped);
      }
      return *this;
    }
    ~Arena() { Release(); }

    const char* data() const { return data_; }
    char* data() { return data_; }
    size_t size() const { return size_; }
    void clear() { size_ = 0; }
    void reserve(size_t bytes) {
      if (bytes > capacity_) Reallocate(bytes);
    }
    // `n` more bytes at the end, uninitialised: where they start.
    char* Extend(size_t n) {
      if (capacity_ - size_ < n) Reallocate(std::max(size_ + n, 2 * capacity_));
      char* const at = data_ + size_;
      size_ += n;
      return at;
    }
    // `bytes` may view this buffer: it is read from where it is after any growth.
    void append(const char* bytes, size_t n) {
      if (n == 0) return;
      const auto at = reinterpret_cast<uintptr_t>(bytes);
      const auto begin = reinterpret_cast<uintptr_t>(data_);
      if (at >= begin && at < begin + size_) {
        char* const to = Extend(n);
        std::memcpy(to, data_ + (at - begin), n);
        return;
      }
      std::memcpy(Extend(n), bytes, n);
    }
    void swap(Arena& other) noexcept {
      std::swap(data_, other.data_);
      std::swap(size_, other.size_);
      std::swap(capacity_, other.capacity_);
    }

   private:
    // To at least `capacity` bytes (rounded up to the allocator's block), keeping the contents.
    void Reallocate(size_t capacity);
    void Release();

    char* data_ = nullptr;
    size_t size_ = 0;
    size_t capacity_ = 0;
  };

  absl::InlinedVector<Entry, kInlineEntries> entries_;
  Arena arena_;
  size_t num_pseudo_ = 0;     // entries_[0, num_pseudo_) are pseudo-headers
  // Where the first of each KnownPseudo is in entries_, or kAbsent.
  std::array<uint32_t, kKnown> pseudo_at_ = AllAbsent();
  static constexpr std::array<uint32_t, kKnown> AllAbsent() {
    std::array<uint32_t, kKnown> at{};
    at.fill(kAbsent);
    return at;
  }
  uint64_t name_filter_ = 0;  // NameFilterBit() of every regular name added since Clear()
  size_t byte_size_ = 0;      // live name + value bytes
  size_t dead_bytes_ = 0;     // arena bytes no entry refers to any more
};

}  // namespace meshlet::http

#pragma once

// Buffer: a byte queue made of a chain of fixed-size blocks, so bodies stream through the proxy
// without copies. Bytes are appended at the tail and consumed from the front. Moving bytes from
// one Buffer to another relinks blocks instead of copying payload (small fragments are copied into
// the destination's tail instead, so a buffer never holds many nearly empty 16 KiB blocks: its
// memory stays proportional to its length()).
//
// Blocks come from a bounded per-thread free list, so a connection that reads, forwards and drains
// does no heap allocation in steady state. A Buffer is owned by one thread at a time; it may be
// handed to another thread whole (its blocks then return to that thread's free list).
//
// Reading from a socket: Reserve() hands out writable space at the tail, the read fills it, and
// Commit(n) makes n of those bytes part of the buffer (libuv's alloc_cb/read_cb pair maps onto
// this directly). Writing to a socket: GetIovecs() exports the front of the buffer for writev,
// and Drain(n) drops what was written.

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace meshlet::net {

namespace buffer_internal {
// Header of one block; the payload follows it in the same allocation. Bytes [begin, end) of
// data() are readable; [end, capacity) is free space usable only when the block is the tail.
struct Block {
  Block* next = nullptr;
  uint32_t begin = 0;
  uint32_t end = 0;
  uint32_t capacity = 0;

  char* data() { return reinterpret_cast<char*>(this + 1); }
  const char* data() const { return reinterpret_cast<const char*>(this + 1); }
  size_t size() const { return end - begin; }
  size_t free_space() const { return capacity - end; }
};
}  // namespace buffer_internal

class Buffer {
 public:
  // Payload bytes per pooled block: one TLS record, and a good unit for read(2).
  static constexpr size_t kBlockSize = 16 * 1024;
  // Blocks each thread keeps for reuse (256 KiB); beyond this, freed blocks go back to malloc.
  // The cache is memory an idle process keeps (malloc_trim cannot return it), so it is small:
  // a 1 GiB stream through the proxy measured the same speed with 16 blocks as with 64, and an
  // idle sidecar keeps up to 768 KiB less per thread (docs/performance.md).
  static constexpr size_t kMaxFreeBlocksPerThread = 16;
  // Moved blocks holding at most this many bytes are copied into the destination's tail when
  // they fit, rather than linked (keeps memory proportional to length()).
  static constexpr size_t kCoalesceBytes = kBlockSize / 4;

  Buffer() = default;
  explicit Buffer(absl::string_view data) { Append(data); }
  ~Buffer();
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  size_t length() const { return length_; }
  bool empty() const { return length_ == 0; }
  // Number of blocks in the chain (for tests and memory accounting).
  size_t SliceCount() const;

  // Copies `data` to the tail.
  void Append(absl::string_view data);
  void Append(const void* data, size_t size) {
    Append(absl::string_view(static_cast<const char*>(data), size));
  }
  // Copies `data` to the front (e.g. to put back bytes a parser looked at).
  void Prepend(absl::string_view data);

  // Moves all of `other` to the tail of this buffer; `other` ends up empty. Relinks blocks.
  void Move(Buffer& other);
  // Moves the first min(n, other.length()) bytes of `other` to the tail of this buffer. Whole
  // blocks are relinked; a block split at `n` costs a copy of its smaller part.
  void Move(Buffer& other, size_t n);

  // Drops the first min(n, length()) bytes.
  void Drain(size_t n);
  // Drops everything after the first n bytes. The kept bytes stay where they are, so iovecs
  // GetIovecs() gave for them stay valid (a write in flight keeps its bytes). Not with a
  // reservation outstanding.
  void Truncate(size_t n);
  void Clear() { Drain(length_); }

  // Copies up to `n` bytes starting at `offset` into `dst`; returns how many were copied.
  size_t CopyOut(size_t offset, void* dst, size_t n) const;
  // Copies the whole content (tests, logging, small payloads).
  std::string ToString() const;

  // The first contiguous run of bytes (empty if the buffer is empty).
  absl::string_view FrontSlice() const;
  // Makes the first min(n, length()) bytes contiguous and returns them. Copies only if they span
  // blocks. The view is valid until the buffer is next modified.
  absl::string_view Linearize(size_t n);
  // Offset of the first occurrence of `needle` at or after `from`, or npos.
  size_t Find(absl::string_view needle, size_t from = 0) const;
  static constexpr size_t npos = static_cast<size_t>(-1);
  // True if the buffer starts with `prefix`.
  bool StartsWith(absl::string_view prefix) const;

  // Calls f(absl::string_view) for each block's bytes, front to back.
  template <typename F>
  void ForEachSlice(F&& f) const {
    for (const buffer_internal::Block* b = head_; b != nullptr; b = b->next) {
      f(absl::string_view(b->data() + b->begin, b->size()));
    }
  }

  // Fills up to `iov.size()` entries describing the first bytes of the buffer, at most
  // `max_bytes` in total; returns the number of entries filled. The memory stays valid while
  // those bytes are neither drained nor moved out (appending is fine).
  size_t GetIovecs(absl::Span<iovec> iov, size_t max_bytes = SIZE_MAX) const;

  // Returns writable space at the tail, at least `min_size` bytes (allocating a block if the
  // tail has less). Fill a prefix of it, then call Commit(bytes_written) before any other
  // modification. At most one reservation is outstanding.
  absl::Span<char> Reserve(size_t min_size = 1);
  // Makes the first `n` reserved bytes part of the buffer; Commit(0) cancels the reservation
  // (an unused block goes back to the free list, so an idle reader holds no memory).
  void Commit(size_t n);

  // Free blocks cached on the calling thread.
  static size_t ThreadFreeBlockCount();
  // Returns the calling thread's cached blocks to malloc.
  static void ReleaseThreadFreeBlocks();

 private:
  using Block = buffer_internal::Block;

  void PushBack(Block* b);
  void PushFront(Block* b);
  Block* PopFront();
  // Appends a block taken from another buffer, copying it instead when it is small and fits.
  void AppendMovedBlock(Block* b);

  Block* head_ = nullptr;
  Block* tail_ = nullptr;
  size_t length_ = 0;
  // A block handed out by Reserve() that is not linked yet (the tail had too little space).
  Block* reserved_block_ = nullptr;
  size_t reserved_size_ = 0;
};

}  // namespace meshlet::net

#include "common/net/buffer.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <utility>

#include "common/base/logging.h"

namespace meshlet::net {
namespace {

using buffer_internal::Block;

// Per-thread cache of standard-size blocks. Blocks are malloc-backed, so one freed on another
// thread simply joins that thread's cache.
class BlockPool {
 public:
  ~BlockPool() { ReleaseAll(); }

  Block* Allocate(size_t min_capacity) {
    if (min_capacity <= Buffer::kBlockSize) {
      if (head_ != nullptr) {
        Block* b = head_;
        head_ = b->next;
        --count_;
        b->next = nullptr;
        b->begin = b->end = 0;
        return b;
      }
      min_capacity = Buffer::kBlockSize;
    }
    CHECK(min_capacity <= UINT32_MAX) << "buffer block too large: " << min_capacity;
    void* mem = ::operator new(sizeof(Block) + min_capacity);
    Block* b = new (mem) Block();
    b->capacity = static_cast<uint32_t>(min_capacity);
    return b;
  }

  void Free(Block* b) {
    if (b->capacity == Buffer::kBlockSize && count_ < Buffer::kMaxFreeBlocksPerThread) {
      b->next = head_;
      head_ = b;
      ++count_;
      return;
    }
    Delete(b);
  }

  void ReleaseAll() {
    while (head_ != nullptr) {
      Block* b = head_;
      head_ = b->next;
      Delete(b);
    }
    count_ = 0;
  }

  size_t count() const { return count_; }

 private:
  static void Delete(Block* b) {
    b->~Block();
    ::operator delete(static_cast<void*>(b));
  }

  Block* head_ = nullptr;
  size_t count_ = 0;
};

BlockPool& Pool() {
  thread_local BlockPool pool;
  return pool;
}

}  // namespace

Buffer::~Buffer() {
  Clear();
  if (reserved_block_ != nullptr) Pool().Free(reserved_block_);
}

Buffer::Buffer(Buffer&& other) noexcept
    : head_(std::exchange(other.head_, nullptr)),
      tail_(std::exchange(other.tail_, nullptr)),
      length_(std::exchange(other.length_, 0)),
      reserved_block_(std::exchange(other.reserved_block_, nullptr)),
      reserved_size_(std::exchange(other.reserved_size_, 0)) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    Clear();
    if (reserved_block_ != nullptr) Pool().Free(reserved_block_);
    head_ = std::exchange(other.head_, nullptr);
    tail_ = std::exchange(other.tail_, nullptr);
    length_ = std::exchange(other.length_, 0);
    reserved_block_ = std::exchange(other.reserved_block_, nullptr);
    reserved_size_ = std::exchange(other.reserved_size_, 0);
  }
  return *this;
}

size_t Buffer::SliceCount() const {
  size_t n = 0;
  for (const Block* b = head_; b != nullptr; b = b->next) ++n;
  return n;
}

void Buffer::PushBack(Block* b) {
  DCHECK(b->size() > 0);
  b->next = nullptr;
  if (tail_ == nullptr) {
    head_ = tail_ = b;
  } else {
    tail_->next = b;
    tail_ = b;
  }
  length_ += b->size();
}

void Buffer::PushFront(Block* b) {
  DCHECK(b->size() > 0);
  b->next = head_;
  head_ = b;
  if (tail_ == nullptr) tail_ = b;
  length_ += b->size();
}

Buffer::Block* Buffer::PopFront() {
  Block* b = head_;
  DCHECK(b != nullptr);
  head_ = b->next;
  if (head_ == nullptr) tail_ = nullptr;
  length_ -= b->size();
  b->next = nullptr;
  return b;
}

void Buffer::Append(absl::string_view data) {
  DCHECK(reserved_size_ == 0) << "Append with an outstanding reservation";
  while (!data.empty()) {
    if (tail_ == nullptr || tail_->free_space() == 0) {
      Block* b = Pool().Allocate(kBlockSize);
      b->next = nullptr;
      if (tail_ == nullptr) {
        head_ = tail_ = b;
      } else {
        tail_->next = b;
        tail_ = b;
      }
    }
    size_t n = std::min(data.size(), tail_->free_space());
    std::memcpy(tail_->data() + tail_->end, data.data(), n);
    tail_->end += static_cast<uint32_t>(n);
    length_ += n;
    data.remove_prefix(n);
  }
}

void Buffer::Prepend(absl::string_view data) {
  if (data.empty()) return;
  // Use the head block's consumed space when it is large enough: a parser that drained a prefix
  // and puts part of it back costs no allocation.
  if (head_ != nullptr && head_->begin >= data.size()) {
    head_->begin -= static_cast<uint32_t>(data.size());
    std::memcpy(head_->data() + head_->begin, data.data(), data.size());
    length_ += data.size();
    return;
  }
  Block* b = Pool().Allocate(data.size());
  std::memcpy(b->data(), data.data(), data.size());
  b->end = static_cast<uint32_t>(data.size());
  PushFront(b);
}

void Buffer::AppendMovedBlock(Block* b) {
  size_t n = b->size();
  if (n <= kCoalesceBytes && tail_ != nullptr && tail_->free_space() >= n) {
    std::memcpy(tail_->data() + tail_->end, b->data() + b->begin, n);
    tail_->end += static_cast<uint32_t>(n);
    length_ += n;
    Pool().Free(b);
    return;
  }
  PushBack(b);
}

void Buffer::Move(Buffer& other) {
  if (&other == this || other.head_ == nullptr) return;
  DCHECK(reserved_size_ == 0 && other.reserved_size_ == 0) << "Move with a reservation";
  // A small first block is worth copying into our tail; everything after it is relinked whole.
  Block* first = other.PopFront();
  AppendMovedBlock(first);
  if (other.head_ == nullptr) return;
  if (tail_ == nullptr) {
    head_ = other.head_;
  } else {
    tail_->next = other.head_;
  }
  tail_ = other.tail_;
  length_ += other.length_;
  other.head_ = other.tail_ = nullptr;
  other.length_ = 0;
}

void Buffer::Move(Buffer& other, size_t n) {
  if (&other == this) return;
  n = std::min(n, other.length_);
  if (n == other.length_) {
    Move(other);
    return;
  }
  DCHECK(reserved_size_ == 0 && other.reserved_size_ == 0) << "Move with a reservation";
  while (n > 0) {
    Block* b = other.head_;
    size_t size = b->size();
    if (size <= n) {
      AppendMovedBlock(other.PopFront());
      n -= size;
      continue;
    }
    // The split block: copy whichever side is smaller.
    size_t rest = size - n;
    if (n <= rest) {
      Append(absl::string_view(b->data() + b->begin, n));
      b->begin += static_cast<uint32_t>(n);
      other.length_ -= n;
    } else {
      Block* front = other.PopFront();
      Block* remainder = Pool().Allocate(rest);
      std::memcpy(remainder->data(), front->data() + front->begin + n, rest);
      remainder->end = static_cast<uint32_t>(rest);
      other.PushFront(remainder);
      front->end = front->begin + static_cast<uint32_t>(n);
      AppendMovedBlock(front);
    }
    n = 0;
  }
}

void Buffer::Drain(size_t n) {
  n = std::min(n, length_);
  while (n > 0) {
    Block* b = head_;
    size_t size = b->size();
    if (size <= n) {
      Pool().Free(PopFront());
      n -= size;
    } else {
      b->begin += static_cast<uint32_t>(n);
      length_ -= n;
      n = 0;
    }
  }
}

void Buffer::Truncate(size_t n) {
  DCHECK(reserved_size_ == 0);
  if (n >= length_) return;
  if (n == 0) {
    Clear();
    return;
  }
  Block* last = head_;
  size_t kept = last->size();
  while (kept < n) {
    last = last->next;
    kept += last->size();
  }
  last->end -= static_cast<uint32_t>(kept - n);
  Block* rest = std::exchange(last->next, nullptr);
  tail_ = last;
  length_ = n;
  while (rest != nullptr) Pool().Free(std::exchange(rest, rest->next));
}

size_t Buffer::CopyOut(size_t offset, void* dst, size_t n) const {
  char* out = static_cast<char*>(dst);
  size_t copied = 0;
  for (const Block* b = head_; b != nullptr && copied < n; b = b->next) {
    size_t size = b->size();
    if (offset >= size) {
      offset -= size;
      continue;
    }
    size_t take = std::min(size - offset, n - copied);
    std::memcpy(out + copied, b->data() + b->begin + offset, take);
    copied += take;
    offset = 0;
  }
  return copied;
}

std::string Buffer::ToString() const {
  std::string out(length_, '\0');
  CopyOut(0, out.data(), length_);
  return out;
}

absl::string_view Buffer::FrontSlice() const {
  if (head_ == nullptr) return {};
  return absl::string_view(head_->data() + head_->begin, head_->size());
}

absl::string_view Buffer::Linearize(size_t n) {
  n = std::min(n, length_);
  if (n == 0) return {};
  if (head_->size() >= n) return absl::string_view(head_->data() + head_->begin, n);
  DCHECK(reserved_size_ == 0) << "Linearize with an outstanding reservation";
  Block* b = Pool().Allocate(n);
  CopyOut(0, b->data(), n);
  b->end = static_cast<uint32_t>(n);
  Drain(n);
  PushFront(b);
  return absl::string_view(b->data(), n);
}

bool Buffer::StartsWith(absl::string_view prefix) const {
  if (prefix.size() > length_) return false;
  for (const Block* b = head_; b != nullptr && !prefix.empty(); b = b->next) {
    size_t take = std::min(prefix.size(), b->size());
    if (std::memcmp(b->data() + b->begin, prefix.data(), take) != 0) return false;
    prefix.remove_prefix(take);
  }
  return true;
}

size_t Buffer::Find(absl::string_view needle, size_t from) const {
  if (needle.empty()) return from <= length_ ? from : npos;
  if (from >= length_ || needle.size() > length_ - from) return npos;
  size_t block_start = 0;  // offset of the current block's first byte
  for (const Block* b = head_; b != nullptr; b = b->next) {
    size_t size = b->size();
    if (from >= block_start + size) {
      block_start += size;
      continue;
    }
    const char* base = b->data() + b->begin;
    size_t pos = from - block_start;
    while (pos < size) {
      const void* hit = std::memchr(base + pos, needle[0], size - pos);
      if (hit == nullptr) break;
      pos = static_cast<const char*>(hit) - base;
      size_t abs = block_start + pos;
      if (needle.size() > length_ - abs) return npos;
      // Compare the rest, following the chain across block boundaries.
      size_t matched = 0;
      const Block* cb = b;
      size_t cpos = pos;
      while (matched < needle.size()) {
        size_t take = std::min(needle.size() - matched, cb->size() - cpos);
        if (std::memcmp(cb->data() + cb->begin + cpos, needle.data() + matched, take) != 0) break;
        matched += take;
        cb = cb->next;
        cpos = 0;
      }
      if (matched == needle.size()) return abs;
      ++pos;
    }
    block_start += size;
    from = block_start;
  }
  return npos;
}

size_t Buffer::GetIovecs(absl::Span<iovec> iov, size_t max_bytes) const {
  size_t count = 0;
  for (const Block* b = head_; b != nullptr && count < iov.size() && max_bytes > 0; b = b->next) {
    size_t take = std::min(b->size(), max_bytes);
    iov[count].iov_base = const_cast<char*>(b->data() + b->begin);
    iov[count].iov_len = take;
    ++count;
    max_bytes -= take;
  }
  return count;
}

absl::Span<char> Buffer::Reserve(size_t min_size) {
  CHECK(reserved_size_ == 0) << "only one reservation may be outstanding";
  min_size = std::max<size_t>(min_size, 1);
  if (tail_ != nullptr && tail_->free_space() >= min_size) {
    reserved_size_ = tail_->free_space();
    return absl::Span<char>(tail_->data() + tail_->end, reserved_size_);
  }
  reserved_block_ = Pool().Allocate(min_size);
  reserved_size_ = reserved_block_->capacity;
  return absl::Span<char>(reserved_block_->data(), reserved_size_);
}

void Buffer::Commit(size_t n) {
  CHECK(n <= reserved_size_) << "commit of " << n << " bytes exceeds the reservation of "
                             << reserved_size_;
  reserved_size_ = 0;
  if (reserved_block_ != nullptr) {
    Block* b = std::exchange(reserved_block_, nullptr);
    if (n == 0) {
      Pool().Free(b);
      return;
    }
    b->end = static_cast<uint32_t>(n);
    PushBack(b);
    return;
  }
  if (n == 0) return;
  tail_->end += static_cast<uint32_t>(n);
  length_ += n;
}

size_t Buffer::ThreadFreeBlockCount() { return Pool().count(); }

void Buffer::ReleaseThreadFreeBlocks() { Pool().ReleaseAll(); }

}  // namespace meshlet::net

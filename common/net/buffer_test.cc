#include "common/net/buffer.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace meshlet::net {
namespace {

std::string Pattern(size_t n, size_t seed = 0) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i + seed) % 26);
  return s;
}

std::vector<const void*> SliceAddresses(const Buffer& b) {
  std::vector<const void*> out;
  b.ForEachSlice([&](absl::string_view s) { out.push_back(s.data()); });
  return out;
}

TEST(BufferTest, AppendAndToString) {
  Buffer b;
  EXPECT_TRUE(b.empty());
  b.Append("hello ");
  b.Append(std::string("world"));
  EXPECT_EQ(b.length(), 11u);
  EXPECT_EQ(b.ToString(), "hello world");
  EXPECT_EQ(b.SliceCount(), 1u);
}

TEST(BufferTest, LargeAppendSpansBlocks) {
  std::string data = Pattern(3 * Buffer::kBlockSize + 100);
  Buffer b(data);
  EXPECT_EQ(b.SliceCount(), 4u);
  EXPECT_EQ(b.ToString(), data);
}

TEST(BufferTest, MoveRelinksWithoutCopying) {
  std::string data = Pattern(2 * Buffer::kBlockSize);
  Buffer src(data);
  std::vector<const void*> before = SliceAddresses(src);
  Buffer dst;
  dst.Move(src);
  EXPECT_TRUE(src.empty());
  EXPECT_EQ(src.SliceCount(), 0u);
  EXPECT_EQ(dst.ToString(), data);
  EXPECT_EQ(SliceAddresses(dst), before);  // same memory: payload was not copied
}

TEST(BufferTest, MoveAppendsBehindExistingData) {
  Buffer dst(Pattern(Buffer::kBlockSize));  // full block: nothing to coalesce into
  std::string more = Pattern(Buffer::kBlockSize, 3);
  Buffer src(more);
  const void* moved_block = src.FrontSlice().data();
  dst.Move(src);
  EXPECT_EQ(dst.length(), 2 * Buffer::kBlockSize);
  EXPECT_EQ(SliceAddresses(dst)[1], moved_block);
  EXPECT_EQ(dst.ToString(), Pattern(Buffer::kBlockSize) + more);
}

TEST(BufferTest, MoveCoalescesSmallFragments) {
  // Many small moves must not leave one mostly empty block per fragment.
  Buffer dst;
  for (int i = 0; i < 100; ++i) {
    Buffer src("0123456789");
    dst.Move(src);
  }
  EXPECT_EQ(dst.length(), 1000u);
  EXPECT_EQ(dst.SliceCount(), 1u);
}

TEST(BufferTest, PartialMoveRelinksWholeBlocksAndSplitsOne) {
  std::string data = Pattern(3 * Buffer::kBlockSize);
  Buffer src(data);
  std::vector<const void*> blocks = SliceAddresses(src);
  Buffer dst;
  // Two whole blocks plus most of the third: the third moves too, its short tail is copied back.
  size_t n = 3 * Buffer::kBlockSize - 10;
  dst.Move(src, n);
  EXPECT_EQ(dst.length(), n);
  EXPECT_EQ(src.length(), 10u);
  EXPECT_EQ(dst.ToString(), data.substr(0, n));
  EXPECT_EQ(src.ToString(), data.substr(n));
  EXPECT_EQ(SliceAddresses(dst), blocks);

  // A short prefix of a block is copied; the block stays where it is.
  Buffer src2(data);
  const void* first = src2.FrontSlice().data();
  Buffer dst2;
  dst2.Move(src2, 100);
  EXPECT_EQ(dst2.ToString(), data.substr(0, 100));
  EXPECT_EQ(src2.ToString(), data.substr(100));
  EXPECT_EQ(src2.FrontSlice().data(), static_cast<const char*>(first) + 100);
}

TEST(BufferTest, MoveMoreThanAvailableMovesAll) {
  Buffer src("abc");
  Buffer dst;
  dst.Move(src, 100);
  EXPECT_EQ(dst.ToString(), "abc");
  EXPECT_TRUE(src.empty());
}

TEST(BufferTest, DrainAcrossSlices) {
  std::string data = Pattern(2 * Buffer::kBlockSize + 500);
  Buffer b(data);
  b.Drain(10);
  EXPECT_EQ(b.ToString(), data.substr(10));
  b.Drain(Buffer::kBlockSize);  // crosses into the second block
  EXPECT_EQ(b.length(), data.size() - 10 - Buffer::kBlockSize);
  EXPECT_EQ(b.ToString(), data.substr(10 + Buffer::kBlockSize));
  EXPECT_EQ(b.SliceCount(), 2u);
  b.Drain(1'000'000);  // more than held: drains all
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.SliceCount(), 0u);
}

TEST(BufferTest, TruncateKeepsTheFrontInPlace) {
  Buffer b;
  const std::string data = std::string(Buffer::kBlockSize, 'a') +
                           std::string(Buffer::kBlockSize, 'b') + std::string(100, 'c');
  b.Append(data);
  ASSERT_EQ(b.SliceCount(), 3u);
  const absl::string_view front = b.FrontSlice();
  b.Truncate(Buffer::kBlockSize + 10);  // inside the second block
  EXPECT_EQ(b.length(), Buffer::kBlockSize + 10);
  EXPECT_EQ(b.SliceCount(), 2u);
  EXPECT_EQ(b.ToString(), data.substr(0, Buffer::kBlockSize + 10));
  EXPECT_EQ(b.FrontSlice().data(), front.data());  // not moved: an iovec on it stays valid
  b.Append("z");                                   // the tail is the truncated block
  EXPECT_EQ(b.ToString(), data.substr(0, Buffer::kBlockSize + 10) + "z");
  b.Truncate(Buffer::kBlockSize);  // at a block's end
  EXPECT_EQ(b.SliceCount(), 1u);
  EXPECT_EQ(b.ToString(), data.substr(0, Buffer::kBlockSize));
  b.Truncate(b.length() + 5);  // past the end: nothing changes
  EXPECT_EQ(b.length(), Buffer::kBlockSize);
  b.Truncate(0);
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.SliceCount(), 0u);
  b.Append("again");
  EXPECT_EQ(b.ToString(), "again");
}

TEST(BufferTest, CopyOutAndFind) {
  std::string data = Pattern(Buffer::kBlockSize - 2) + "\r\n\r\nbody";
  Buffer b(data);  // the terminator straddles the block boundary
  EXPECT_EQ(b.SliceCount(), 2u);
  EXPECT_EQ(b.Find("\r\n\r\n"), Buffer::kBlockSize - 2);
  EXPECT_EQ(b.Find("body"), Buffer::kBlockSize + 2);
  EXPECT_EQ(b.Find("nope"), Buffer::npos);
  EXPECT_EQ(b.Find("a", 1), 26u);
  char out[8];
  EXPECT_EQ(b.CopyOut(Buffer::kBlockSize - 4, out, 8), 8u);
  EXPECT_EQ(std::string(out, 8), data.substr(Buffer::kBlockSize - 4, 8));
  EXPECT_EQ(b.CopyOut(data.size() - 2, out, 8), 2u);
  EXPECT_TRUE(b.StartsWith(data.substr(0, Buffer::kBlockSize + 3)));
  EXPECT_FALSE(b.StartsWith("zz"));
}

TEST(BufferTest, LinearizeCopiesOnlyWhenSpanning) {
  std::string data = Pattern(Buffer::kBlockSize + 100);
  Buffer b(data);
  const char* front = b.FrontSlice().data();
  absl::string_view in_first = b.Linearize(50);
  EXPECT_EQ(in_first.data(), front);  // already contiguous: no copy
  absl::string_view spanning = b.Linearize(Buffer::kBlockSize + 20);
  EXPECT_EQ(spanning, data.substr(0, Buffer::kBlockSize + 20));
  EXPECT_EQ(b.FrontSlice().size(), Buffer::kBlockSize + 20);
  EXPECT_EQ(b.ToString(), data);
  EXPECT_EQ(b.Linearize(1'000'000), data);  // clamps to length()
}

TEST(BufferTest, PrependReusesDrainedSpace) {
  Buffer b("GET / HTTP/1.1");
  b.Drain(4);
  b.Prepend("GET ");
  EXPECT_EQ(b.ToString(), "GET / HTTP/1.1");
  EXPECT_EQ(b.SliceCount(), 1u);
  b.Prepend("xx");
  EXPECT_EQ(b.ToString(), "xxGET / HTTP/1.1");
}

TEST(BufferTest, ReserveCommitIntoTail) {
  Buffer b("abc");
  absl::Span<char> space = b.Reserve(16);
  ASSERT_GE(space.size(), 16u);
  EXPECT_EQ(space.data(), b.FrontSlice().data() + 3);  // the tail block's free space
  std::memcpy(space.data(), "defg", 4);
  b.Commit(4);
  EXPECT_EQ(b.ToString(), "abcdefg");
  EXPECT_EQ(b.SliceCount(), 1u);
}

TEST(BufferTest, ReserveNewBlockAndCancel) {
  Buffer::ReleaseThreadFreeBlocks();
  Buffer b;
  absl::Span<char> space = b.Reserve();
  EXPECT_EQ(space.size(), Buffer::kBlockSize);
  b.Commit(0);  // nothing read: the block goes back, the buffer holds no memory
  EXPECT_EQ(b.SliceCount(), 0u);
  EXPECT_EQ(Buffer::ThreadFreeBlockCount(), 1u);
  space = b.Reserve();
  std::memcpy(space.data(), "xyz", 3);
  b.Commit(3);
  EXPECT_EQ(b.ToString(), "xyz");
  EXPECT_EQ(Buffer::ThreadFreeBlockCount(), 0u);
}

TEST(BufferTest, ReserveLargerThanBlock) {
  Buffer b;
  absl::Span<char> space = b.Reserve(3 * Buffer::kBlockSize);
  ASSERT_GE(space.size(), 3 * Buffer::kBlockSize);
  std::string data = Pattern(3 * Buffer::kBlockSize);
  std::memcpy(space.data(), data.data(), data.size());
  b.Commit(data.size());
  EXPECT_EQ(b.ToString(), data);
}

TEST(BufferTest, FreeListReusesBlocksAndIsBounded) {
  Buffer::ReleaseThreadFreeBlocks();
  const void* block;
  {
    Buffer b("x");
    block = b.FrontSlice().data();
  }
  EXPECT_EQ(Buffer::ThreadFreeBlockCount(), 1u);
  Buffer again("y");
  EXPECT_EQ(again.FrontSlice().data(), block);  // same block, no malloc
  EXPECT_EQ(Buffer::ThreadFreeBlockCount(), 0u);
  { Buffer big(Pattern((Buffer::kMaxFreeBlocksPerThread + 10) * Buffer::kBlockSize)); }
  EXPECT_EQ(Buffer::ThreadFreeBlockCount(), Buffer::kMaxFreeBlocksPerThread);
  Buffer::ReleaseThreadFreeBlocks();
  EXPECT_EQ(Buffer::ThreadFreeBlockCount(), 0u);
}

TEST(BufferTest, IovecsDescribeFront) {
  std::string data = Pattern(2 * Buffer::kBlockSize + 7);
  Buffer b(data);
  iovec iov[8];
  size_t n = b.GetIovecs(absl::MakeSpan(iov));
  ASSERT_EQ(n, 3u);
  std::string joined;
  for (size_t i = 0; i < n; ++i) joined.append(static_cast<char*>(iov[i].iov_base), iov[i].iov_len);
  EXPECT_EQ(joined, data);
  n = b.GetIovecs(absl::MakeSpan(iov, 1));
  EXPECT_EQ(n, 1u);
  n = b.GetIovecs(absl::MakeSpan(iov), Buffer::kBlockSize + 3);
  ASSERT_EQ(n, 2u);
  EXPECT_EQ(iov[1].iov_len, 3u);
}

TEST(BufferTest, MoveAssignment) {
  Buffer a("one");
  Buffer b("two");
  b = std::move(a);
  EXPECT_EQ(b.ToString(), "one");
  Buffer c(std::move(b));
  EXPECT_EQ(c.ToString(), "one");
}

}  // namespace
}  // namespace meshlet::net

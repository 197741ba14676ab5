// Checks that Parser::Execute does not allocate in steady state. Replaces the global allocation
// functions for this test binary only, counting calls while a counter is armed.

#include <string>

#include "common/base/allocation_counter.h"
#include "common/http/h1/parser.h"
#include "gtest/gtest.h"

namespace meshlet::http::h1 {
namespace {

class NullVisitor : public ParserVisitor {
 public:
  Action OnHeader(absl::string_view, absl::string_view) override { return Action::kContinue; }
  Action OnHeadersComplete(const MessageInfo&) override { return Action::kContinue; }
  Action OnBody(absl::string_view data) override {
    body_bytes += data.size();
    return Action::kContinue;
  }
  Action OnTrailer(absl::string_view, absl::string_view) override { return Action::kContinue; }
  Action OnMessageComplete() override {
    ++completed;
    return Action::kContinue;
  }
  size_t body_bytes = 0;
  int completed = 0;
};

class ScopedCount {
 public:
  int count() const { return static_cast<int>(scope_.count()); }

 private:
  AllocationScope scope_;
};

TEST(ParserAllocTest, ExecuteDoesNotAllocate) {
  const std::string request =
      "POST /api/v1/items?id=42 HTTP/1.1\r\nHost: service.default.svc\r\n"
      "User-Agent: test\r\nAccept: */*\r\nTransfer-Encoding: chunked\r\n\r\n"
      "10;ext=1\r\n0123456789abcdef\r\n0\r\nX-Checksum: 1\r\n\r\n"
      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody";
  NullVisitor v;
  Parser parser(Parser::Type::kRequest, &v);
  ScopedCount count;
  for (int i = 0; i < 100; ++i) ASSERT_EQ(parser.Execute(request), request.size());
  // Byte at a time exercises the straddling-line buffer; lines here fit its initial capacity.
  for (char c : request) ASSERT_EQ(parser.Execute(absl::string_view(&c, 1)), 1u);
  EXPECT_EQ(count.count(), 0);
  EXPECT_EQ(v.completed, 202);
}

TEST(ParserAllocTest, BodySizeDoesNotDriveAllocation) {
  NullVisitor v;
  Parser parser(Parser::Type::kRequest, &v);
  std::string slice(16 * 1024, 'x');
  ScopedCount count;
  ASSERT_GT(parser.Execute("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 268435456\r\n\r\n"), 0u);
  for (int i = 0; i < (268435456 / 16384); ++i) ASSERT_EQ(parser.Execute(slice), slice.size());
  EXPECT_EQ(count.count(), 0);
  EXPECT_EQ(v.completed, 1);
  EXPECT_EQ(v.body_bytes, 268435456u);
}

}  // namespace
}  // namespace meshlet::http::h1

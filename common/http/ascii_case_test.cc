#include "common/http/ascii_case.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace meshlet::http::ascii_case {
namespace {

// Against absl's byte-at-a-time folding, for every length up to 40 (below four, four to seven
// and word-sized, with the overlapping last word) and bytes around the letters: '@', '[', '`',
// '{', digits, '-', and bytes with the top bit set (0xc1 is 'A' | 0x80, 0xe1 is 'a' | 0x80).
TEST(AsciiCaseTest, AgreesWithAbslForEveryLengthAndByte) {
  const std::string bytes = "aAzZmM09-_@[`{~\x7f\xc1\xe1\xff";
  for (size_t length = 0; length <= 40; ++length) {
    for (size_t at = 0; at < std::max<size_t>(length, 1); ++at) {
      for (char b : bytes) {
        std::string text(length, 'k');
        for (size_t i = 0; i < length; ++i) text[i] = "Kq7-x"[(i * 3 + length) % 5];
        if (length > 0) text[at] = b;
        const std::string lower = absl::AsciiStrToLower(text);
        SCOPED_TRACE(::testing::Message()
                     << "length " << length << " byte " << int{b} << " at " << at);
        EXPECT_TRUE(EqualsLowercase(text, lower));
        std::string copy(length, '\0');
        CopyLowercase(copy.data(), text.data(), length);
        EXPECT_EQ(copy, lower);
        // Every other byte at the same place: equal exactly when absl says so.
        for (char other : bytes) {
          if (length == 0) break;
          std::string changed = lower;
          changed[at] = absl::ascii_tolower(other);
          EXPECT_EQ(EqualsLowercase(text, changed), absl::EqualsIgnoreCase(text, changed))
              << "against byte " << int{other};
        }
      }
    }
  }
  EXPECT_FALSE(EqualsLowercase("host", "hos"));
  EXPECT_FALSE(EqualsLowercase("Hosts", "host"));
  EXPECT_TRUE(EqualsLowercase("CONTENT-LENGTH", "content-length"));
  EXPECT_TRUE(EqualsLowercase("", ""));
}

}  // namespace
}  // namespace meshlet::http::ascii_case

#include "common/base/json.h"

#include <string>

#include "gtest/gtest.h"

namespace meshlet {
namespace {

TEST(JsonQuoteTest, PlainTextIsQuotedAsItIs) {
  EXPECT_EQ(JsonQuote(""), R"("")");
  EXPECT_EQ(JsonQuote("backend /api?x=1"), R"("backend /api?x=1")");
}

TEST(JsonQuoteTest, QuotesBackslashesAndControlCharactersAreEscaped) {
  EXPECT_EQ(JsonQuote("say \"hi\""), R"("say \"hi\"")");
  EXPECT_EQ(JsonQuote("C:\\dir"), R"("C:\\dir")");
  EXPECT_EQ(JsonQuote("a\nb\rc\td"), R"("a\nb\rc\td")");
  EXPECT_EQ(JsonQuote(std::string("\0\x01\x1f\x7f", 4)), R"("\u0000\u0001\u001f)"
                                                         "\x7f\"");
  EXPECT_EQ(JsonQuote("\b\f"), R"("\u0008\u000c")");
}

TEST(JsonQuoteTest, WellFormedUtf8IsKept) {
  const std::string text = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
  EXPECT_EQ(JsonQuote(text), "\"" + text + "\"");
}

TEST(JsonQuoteTest, BytesThatAreNotUtf8BecomeReplacementCharacters) {
  EXPECT_EQ(JsonQuote("a\x80z"), R"("a\ufffdz")");
  EXPECT_EQ(JsonQuote("\xc3"), R"("\ufffd")");                                  // truncated
  EXPECT_EQ(JsonQuote("\xe0\x80\xaf"), R"("\ufffd\ufffd\ufffd")");              // overlong
  EXPECT_EQ(JsonQuote("\xed\xa0\x80"), R"("\ufffd\ufffd\ufffd")");              // surrogate
  EXPECT_EQ(JsonQuote("\xf4\x90\x80\x80!"), R"("\ufffd\ufffd\ufffd\ufffd!")");  // > U+10FFFF
  // A bad byte before a good sequence leaves the sequence whole.
  EXPECT_EQ(JsonQuote("\xff\xc3\xa9"), "\"\\ufffd\xc3\xa9\"");
}

TEST(JsonQuoteTest, AppendFormsAddToWhatIsThere) {
  std::string out = "{\"k\":";
  AppendJsonString(&out, "v\"");
  out += ",\"name\":\"";
  AppendJsonEscaped(&out, "GET ");
  AppendJsonEscaped(&out, "/a\\b");
  out += "\"}";
  EXPECT_EQ(out, R"({"k":"v\"","name":"GET /a\\b"})");
}

TEST(JsonQuoteTest, StringArrays) {
  std::string out;
  AppendJsonStringArray(&out, {});
  AppendJsonStringArray(&out, {"a", "b\"c"});
  EXPECT_EQ(out, R"([]["a","b\"c"])");
}

}  // namespace
}  // namespace meshlet

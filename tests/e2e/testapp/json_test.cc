#include "tests/e2e/testapp/json.h"

#include "gtest/gtest.h"

namespace meshlet::testapp {
namespace {

TEST(JsonTest, StringsAreEscaped) {
  EXPECT_EQ(JsonString("plain"), "\"plain\"");
  EXPECT_EQ(JsonString("a\"b\\c\nd\te\x01"), "\"a\\\"b\\\\c\\nd\\u0009e\\u0001\"");
  EXPECT_EQ(JsonString("caf\xc3\xa9"), "\"caf\xc3\xa9\"");  // valid UTF-8 stays as it is
  EXPECT_EQ(JsonString("bad \xff"), "\"bad \\u00ff\"");
  EXPECT_TRUE(IsJsonValue(JsonString("bad \xff\x01\"")));
}

TEST(JsonTest, RecognizesOneValue) {
  for (const char* ok : {"{}", "[]", " {\"a\": [1, -2.5e3, true, false, null, \"x\\u00e9\"]}\n",
                         "0", "\"s\"", "{\"a\":{\"b\":{}}}", "[[],[{}]]"}) {
    EXPECT_TRUE(IsJsonValue(ok)) << ok;
  }
  for (const char* bad :
       {"", "{", "{}{}", "{\"a\"}", "{\"a\":1,}", "[1,]", "01", "1.", "-", "tru", "{'a':1}",
        "\"unterminated", "\"bad \\q escape\"", "\"raw\ncontrol\"", "ok\n", "{} x", "\"\xff\""}) {
    EXPECT_FALSE(IsJsonValue(bad)) << bad;
  }
}

TEST(JsonTest, DepthIsLimited) {
  std::string deep(10, '[');
  deep += std::string(10, ']');
  EXPECT_TRUE(IsJsonValue(deep, 10));
  EXPECT_FALSE(IsJsonValue(deep, 9));
}

}  // namespace
}  // namespace meshlet::testapp

#include "cni/json.h"

#include "gtest/gtest.h"

namespace meshlet::cni {
namespace {

TEST(JsonTest, ValuesKeepTheTextTheyCameFrom) {
  const std::string text =
      R"( {"a": [1, -2.5e3, true, null], "b" : {"c":"d\u00e9\ud83d\ude00\n"}} )";
  absl::StatusOr<JsonValue> value = ParseJson(text);
  ASSERT_TRUE(value.ok()) << value.status();
  ASSERT_TRUE(value->IsObject());
  EXPECT_EQ(value->raw, R"({"a": [1, -2.5e3, true, null], "b" : {"c":"d\u00e9\ud83d\ude00\n"}})");
  const JsonValue* a = value->Find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->raw, "[1, -2.5e3, true, null]");
  ASSERT_EQ(a->items.size(), 4u);
  EXPECT_EQ(a->items[1].text, "-2.5e3");
  EXPECT_TRUE(a->items[2].boolean);
  EXPECT_EQ(a->items[3].type, JsonValue::Type::kNull);
  const JsonValue* c = value->Find("b")->Find("c");
  EXPECT_EQ(c->text, "d\xc3\xa9\xf0\x9f\x98\x80\n");
  EXPECT_EQ(value->Find("missing"), nullptr);
}

TEST(JsonTest, RefusesWhatIsNotJson) {
  for (const char* bad : {"", "{", "{\"a\":1,}", "[1 2]", "{\"a\":1}x", "01", "1.", "\"\t\"",
                          "{\"a\":1,\"a\":2}", "\"\\ud800\"", "tru", "{a:1}", "\"\\x\""}) {
    EXPECT_FALSE(ParseJson(bad).ok()) << bad;
  }
  EXPECT_FALSE(ParseJson("[[[[1]]]]", 3).ok());
  EXPECT_TRUE(ParseJson("[[[[1]]]]", 4).ok());
  EXPECT_EQ(ParseJson("[1,]").status().message(), "not valid JSON at byte 3: unexpected character");
}

}  // namespace
}  // namespace meshlet::cni

#include "control-plane/inject/node.h"

#include "gtest/gtest.h"

namespace meshlet::controlplane::inject {
namespace {

TEST(NodeTest, PlainScalarsReadAsKubernetesReadsYaml) {
  for (const char* s : {"", "~", "null", "Null", "NULL"}) {
    EXPECT_EQ(PlainScalarType(s), ScalarType::kNull) << s;
  }
  for (const char* s : {"true", "False", "yes", "No", "on", "OFF", "y", "N"}) {
    EXPECT_EQ(PlainScalarType(s), ScalarType::kBool) << s;
  }
  for (const char* s : {"0", "1337", "-5", "+7", "0x1F", "0o17", "017", "0b101", "1_000"}) {
    EXPECT_EQ(PlainScalarType(s), ScalarType::kInt) << s;
  }
  for (const char* s : {"1.5", ".5", "1e3", "-2.5E-3", "08", ".inf", "-.Inf", ".NaN"}) {
    EXPECT_EQ(PlainScalarType(s), ScalarType::kFloat) << s;
  }
  for (const char* s : {"100m", "64Mi", "nginx:1.25", "0x", "1.2.3", "TRUE1", "--xds=a:1", "e3"}) {
    EXPECT_EQ(PlainScalarType(s), ScalarType::kString) << s;
  }
  int64_t v = 0;
  ASSERT_TRUE(PlainInt("0x1F", &v));
  EXPECT_EQ(v, 31);
  ASSERT_TRUE(PlainInt("017", &v));
  EXPECT_EQ(v, 15);
  ASSERT_TRUE(PlainInt("-9223372036854775808", &v));
  EXPECT_EQ(v, INT64_MIN);
  EXPECT_FALSE(PlainInt("9223372036854775808", &v));
}

TEST(NodeTest, QuotedScalarsAreStringsAndMadeNodesKeepTheirType) {
  const YAML::Node doc = YAML::Load("a: \"80\"\nb: 80\nc: 'true'\nd: true\ne: ~\nf: !!str 5\n");
  EXPECT_EQ(TypeOf(doc["a"]), ScalarType::kString);
  EXPECT_EQ(TypeOf(doc["b"]), ScalarType::kInt);
  EXPECT_EQ(TypeOf(doc["c"]), ScalarType::kString);
  EXPECT_EQ(TypeOf(doc["d"]), ScalarType::kBool);
  EXPECT_EQ(TypeOf(doc["e"]), ScalarType::kNull);
  EXPECT_EQ(TypeOf(doc["f"]), ScalarType::kString);
  EXPECT_EQ(TypeOf(StringNode("1337")), ScalarType::kString);
  EXPECT_EQ(TypeOf(IntNode(1337)), ScalarType::kInt);
  EXPECT_EQ(TypeOf(BoolNode(false)), ScalarType::kBool);
  EXPECT_TRUE(IsTrue(doc["d"]));
  EXPECT_TRUE(IsTrue(YAML::Load("On")));
  EXPECT_FALSE(IsTrue(YAML::Load("off")));
  EXPECT_FALSE(IsTrue(doc["c"]));  // the string "true"
  // The same text, another type: not equal.
  EXPECT_FALSE(Equal(doc["a"], doc["b"]));
  EXPECT_TRUE(Equal(doc["b"], IntNode(80)));
  EXPECT_TRUE(Equal(doc["a"], StringNode("80")));
}

TEST(NodeTest, FieldNeverThrowsNorAddsKeys) {
  YAML::Node doc = YAML::Load("a: {b: 1}\ns: text\nl: [1]\n");
  EXPECT_FALSE(Field(doc, "missing"));
  EXPECT_FALSE(Field(Field(Field(doc, "missing"), "deeper"), "deepest"));
  EXPECT_FALSE(Field(doc["s"], "x"));  // a scalar: yaml-cpp's operator[] throws here
  EXPECT_FALSE(Field(doc["l"], "x"));
  EXPECT_EQ(Text(Field(Field(doc, "a"), "b")), "1");
  EXPECT_EQ(Text(Field(doc, "a")), "");
  EXPECT_EQ(Text(Field(doc, "nothing")), "");
  EXPECT_EQ(doc.size(), 3u);
}

TEST(NodeTest, YamlOutputQuotesStringsThatWouldReadAsAnotherType) {
  YAML::Node doc(YAML::NodeType::Map);
  doc["inject"] = StringNode("false");
  doc["uid"] = IntNode(1337);
  doc["port"] = StringNode("15020");
  doc["flag"] = StringNode("--xds=$(MESHLET_CONTROL_PLANE)");
  doc["on"] = StringNode("on");
  doc["empty"] = YAML::Node(YAML::NodeType::Map);
  doc["none"] = YAML::Node(YAML::NodeType::Sequence);
  doc["text"] = StringNode("two\nlines");
  doc["json"] = StringNode(R"({"a":["b"]})");
  doc["quote"] = StringNode(R"({"it's":1})");
  const std::string yaml = ToYaml(doc);
  EXPECT_EQ(yaml,
            "inject: \"false\"\nuid: 1337\nport: \"15020\"\nflag: --xds=$(MESHLET_CONTROL_PLANE)\n"
            "on: \"on\"\nempty: {}\nnone: []\ntext: \"two\\nlines\"\njson: '{\"a\":[\"b\"]}'\n"
            "quote: \"{\\\"it's\\\":1}\"\n");
  // It reads back as the same tree.
  EXPECT_TRUE(Equal(YAML::Load(yaml), doc));
  EXPECT_EQ(ToYaml(YAML::Load(yaml)), yaml);
}

TEST(NodeTest, YamlOutputWritesKeysTooLongForAnImplicitKeyExplicitly) {
  // 300 NUL bytes: 1200 characters escaped, past the 1024 YAML allows "key: value".
  const std::string nuls(300, '\0');
  const std::string plain(2000, 'k');
  YAML::Node doc(YAML::NodeType::Map);
  doc[StringNode(nuls)] = StringNode("a");
  doc[StringNode(plain)] = StringNode("b");
  doc["short"] = StringNode("c");
  const std::string yaml = ToYaml(doc);
  EXPECT_NE(yaml.find("? "), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("\nshort: c\n"), std::string::npos) << yaml;
  YAML::Node again;
  ASSERT_NO_THROW(again = YAML::Load(yaml)) << yaml;
  EXPECT_TRUE(Equal(again, doc));
  EXPECT_EQ(again[nuls].Scalar(), "a");
}

TEST(NodeTest, EqualComparesScalarsByTheirJsonValue) {
  // A YAML 1.1 octal port written back as JSON is the same port.
  const YAML::Node yaml = YAML::Load("p: 0766\nh: 0x10\nb: yes\nn: ~\ns: \"0766\"\nf: 1.\n");
  const YAML::Node json = YAML::Load(ToJson(yaml));
  EXPECT_EQ(json["p"].Scalar(), "502");
  EXPECT_TRUE(Equal(yaml, json)) << ToJson(yaml);
  EXPECT_TRUE(Equal(YAML::Load("0766"), YAML::Load("502")));
  EXPECT_TRUE(Equal(YAML::Load("yes"), YAML::Load("true")));
  EXPECT_TRUE(Equal(YAML::Load("1."), YAML::Load("1")));
  EXPECT_FALSE(Equal(YAML::Load("1.5"), YAML::Load("1")));
  EXPECT_FALSE(Equal(YAML::Load("0766"), YAML::Load("766")));
  EXPECT_FALSE(Equal(YAML::Load("yes"), YAML::Load("false")));
  // A string is compared by its text, and is never equal to a number.
  EXPECT_FALSE(Equal(YAML::Load("\"0766\""), YAML::Load("\"502\"")));
  EXPECT_FALSE(Equal(YAML::Load("\"502\""), YAML::Load("502")));
}

TEST(NodeTest, FindsKeysTooLongForYaml) {
  YAML::Node doc = YAML::Load("a: [{b: 1}]");
  EXPECT_FALSE(HasKeyTooLongForYaml(doc));
  // 200 NUL bytes are 1200 characters of JSON.
  doc["a"][0][StringNode(std::string(200, '\0'))] = StringNode("x");
  EXPECT_TRUE(HasKeyTooLongForYaml(doc));
  EXPECT_FALSE(HasKeyTooLongForYaml(YAML::Load(std::string(1000, 'k') + ": 1")));
}

TEST(NodeTest, YamlOutputWritesKeysThatAreCollectionsExplicitly) {
  // A null value, then a key that is an empty map: once written "{}: ~" indented under the null.
  const YAML::Node doc = YAML::Load("v: [{name: cache, emptyDir:, {}}]\nw: {[a, b]: 1, c: 2}\n");
  const std::string yaml = ToYaml(doc);
  YAML::Node again;
  ASSERT_NO_THROW(again = YAML::Load(yaml)) << yaml;
  EXPECT_TRUE(Equal(again, doc)) << yaml;
  EXPECT_TRUE(again["v"][0]["emptyDir"].IsNull()) << yaml;
  EXPECT_EQ(again["w"]["c"].Scalar(), "2") << yaml;
  // The key itself came back (Equal compares keys by their text, "" for a collection).
  ASSERT_TRUE(again["w"].begin()->first.IsSequence()) << yaml;
  EXPECT_EQ(again["w"].begin()->first[1].Scalar(), "b") << yaml;
}

TEST(NodeTest, YamlOutputKeepsEmptyScalarsWithATagOfTheirOwnNull) {
  const YAML::Node doc = YAML::Load("a: !v1\nb: !v1 x\nc: \"\"\nd: !!null x\n");
  ASSERT_EQ(TypeOf(doc["a"]), ScalarType::kNull);
  const std::string yaml = ToYaml(doc);
  YAML::Node again;
  ASSERT_NO_THROW(again = YAML::Load(yaml)) << yaml;
  EXPECT_TRUE(Equal(again, doc)) << yaml;
  EXPECT_EQ(TypeOf(again["a"]), ScalarType::kNull) << yaml;
  EXPECT_EQ(TypeOf(again["c"]), ScalarType::kString) << yaml;
  EXPECT_EQ(TypeOf(again["d"]), ScalarType::kNull) << yaml;
}

TEST(NodeTest, YamlOutputKeepsControlCharactersInStrings) {
  // {name: <CR>} reads as a one-character string, which yaml-cpp's emitter writes plain and so
  // loses.
  const YAML::Node doc = YAML::Load("a: {name: \r}\nb: \"x\\ty\\x14\"\n");
  ASSERT_EQ(doc["a"]["name"].Scalar(), "\r");
  const std::string yaml = ToYaml(doc);
  YAML::Node again;
  ASSERT_NO_THROW(again = YAML::Load(yaml)) << yaml;
  EXPECT_TRUE(Equal(again, doc)) << yaml;
  EXPECT_EQ(again["a"]["name"].Scalar(), "\r") << yaml;
  EXPECT_EQ(again["b"].Scalar(), "x\ty\x14") << yaml;
}

TEST(NodeTest, JsonOutputGivesEachValueItsJsonType) {
  const YAML::Node doc = YAML::Load(
      "a: 1\nb: \"1\"\nc: yes\nd: ~\ne: 0x10\nf: 1.50\ng: .inf\nh: [x, \"y\\\"z\"]\ni: {}\n"
      "j: []\nk: +3.5\n");
  EXPECT_EQ(ToJson(doc),
            "{\n  \"a\": 1,\n  \"b\": \"1\",\n  \"c\": true,\n  \"d\": null,\n  \"e\": 16,\n"
            "  \"f\": 1.50,\n  \"g\": \".inf\",\n  \"h\": [\n    \"x\",\n    \"y\\\"z\"\n  ],\n"
            "  \"i\": {},\n  \"j\": [],\n  \"k\": 3.5\n}\n");
  // JSON is YAML: it reads back as the same values.
  const YAML::Node back = YAML::Load(ToJson(doc));
  EXPECT_EQ(TypeOf(back["b"]), ScalarType::kString);
  EXPECT_EQ(TypeOf(back["c"]), ScalarType::kBool);
  EXPECT_EQ(back["e"].Scalar(), "16");
  EXPECT_EQ(ToCompactJson(doc),
            "{\"a\":1,\"b\":\"1\",\"c\":true,\"d\":null,\"e\":16,\"f\":1.50,\"g\":\".inf\","
            "\"h\":[\"x\",\"y\\\"z\"],\"i\":{},\"j\":[],\"k\":3.5}");
}

}  // namespace
}  // namespace meshlet::controlplane::inject

#include "control-plane/webhook/json_patch.h"

#include <gtest/gtest.h>

#include "control-plane/inject/node.h"

namespace meshlet::controlplane::webhook {
namespace {

std::string Patch(const char* before, const char* after) {
  return JsonPatch(YAML::Load(before), YAML::Load(after));
}

TEST(JsonPatchTest, EqualObjectsGiveAnEmptyPatch) {
  EXPECT_EQ(Patch("{a: 1, b: [x]}", "{a: 1, b: [x]}"), "[]");
}

TEST(JsonPatchTest, MapsAreComparedKeyByKey) {
  EXPECT_EQ(Patch("{a: 1, b: {c: x, d: y}, gone: 2}", "{a: 1, b: {c: z, d: y, e: [1]}}"),
            "[{\"op\":\"remove\",\"path\":\"/gone\"},"
            "{\"op\":\"replace\",\"path\":\"/b/c\",\"value\":\"z\"},"
            "{\"op\":\"add\",\"path\":\"/b/e\",\"value\":[1]}]");
}

TEST(JsonPatchTest, ValuesKeepTheirKubernetesTypes) {
  EXPECT_EQ(Patch("{}", "{port: 15020, quoted: \"15020\", on: true, off: \"false\"}"),
            "[{\"op\":\"add\",\"path\":\"/port\",\"value\":15020},"
            "{\"op\":\"add\",\"path\":\"/quoted\",\"value\":\"15020\"},"
            "{\"op\":\"add\",\"path\":\"/on\",\"value\":true},"
            "{\"op\":\"add\",\"path\":\"/off\",\"value\":\"false\"}]");
}

TEST(JsonPatchTest, ExtendedSequencesGetAppendsOthersAreReplaced) {
  EXPECT_EQ(Patch("{v: [a, b]}", "{v: [a, b, c, d]}"),
            "[{\"op\":\"add\",\"path\":\"/v/-\",\"value\":\"c\"},"
            "{\"op\":\"add\",\"path\":\"/v/-\",\"value\":\"d\"}]");
  // An item inserted first: the whole sequence, never shifted indexes.
  EXPECT_EQ(Patch("{v: [{name: app}]}", "{v: [{name: init}, {name: app}]}"),
            "[{\"op\":\"replace\",\"path\":\"/v\",\"value\":[{\"name\":\"init\"},"
            "{\"name\":\"app\"}]}]");
  EXPECT_EQ(Patch("{v: [a, b]}", "{v: [a]}"),
            "[{\"op\":\"replace\",\"path\":\"/v\",\"value\":[\"a\"]}]");
  // A type change at a key.
  EXPECT_EQ(Patch("{v: [a]}", "{v: {a: 1}}"),
            "[{\"op\":\"replace\",\"path\":\"/v\",\"value\":{\"a\":1}}]");
}

TEST(JsonPatchTest, KeysAreEscapedAsJsonPointerTokens) {
  EXPECT_EQ(EscapePointerToken("sidecar.meshlet.io/status"), "sidecar.meshlet.io~1status");
  EXPECT_EQ(EscapePointerToken("a~b/c"), "a~0b~1c");
  EXPECT_EQ(Patch("{metadata: {annotations: {}}}",
                  "{metadata: {annotations: {sidecar.meshlet.io/status: x}}}"),
            "[{\"op\":\"add\",\"path\":\"/metadata/annotations/sidecar.meshlet.io~1status\","
            "\"value\":\"x\"}]");
}

}  // namespace
}  // namespace meshlet::controlplane::webhook

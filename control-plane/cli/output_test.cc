#include "control-plane/cli/output.h"

#include <gtest/gtest.h>

namespace meshlet::controlplane::cli {
namespace {

TEST(JsonToYamlTest, KeepsOrderAndTypes) {
  absl::StatusOr<std::string> yaml = JsonToYaml(
      R"({"kind":"Service","metadata":{"name":"a","resourceVersion":"12","labels":{"on":"true"}},)"
      R"("spec":{"ports":[{"port":80}],"empty":""}})");
  ASSERT_TRUE(yaml.ok()) << yaml.status();
  EXPECT_EQ(*yaml,
            "kind: Service\n"
            "metadata:\n"
            "  name: a\n"
            "  resourceVersion: \"12\"\n"
            "  labels:\n"
            "    on: \"true\"\n"
            "spec:\n"
            "  ports:\n"
            "    - port: 80\n"
            "  empty: \"\"\n");
  EXPECT_FALSE(JsonToYaml("{\"a\": [").ok());
}

TEST(UnifiedDiffTest, ShowsRemovalsThenAdditionsWithContext) {
  EXPECT_EQ(UnifiedDiff("a\nb\n", "a\nb\n", "old", "new"), "");
  EXPECT_EQ(UnifiedDiff("1\n2\n3\n4\n5\n6\n7\n8\n", "1\n2\n3\n4\nfive\n6\n7\n8\n", "old", "new", 1),
            "--- old\n+++ new\n@@\n 4\n-5\n+five\n 6\n");
  EXPECT_EQ(UnifiedDiff("", "x\n", "/dev/null", "new"), "--- /dev/null\n+++ new\n+x\n");
}

TEST(FormatTableTest, PadsColumns) {
  EXPECT_EQ(FormatTable({{"NAME", "AGE"}, {"reviews", "5s"}}), "NAME      AGE\nreviews   5s\n");
}

TEST(AgeTest, Units) {
  const absl::Time now = absl::FromUnixSeconds(1000000);
  EXPECT_EQ(Age("1970-01-12T13:46:30Z", now), "10s");
  EXPECT_EQ(Age("1970-01-12T13:00:00Z", now), "46m");
  EXPECT_EQ(Age("", now), "<unknown>");
}

}  // namespace
}  // namespace meshlet::controlplane::cli

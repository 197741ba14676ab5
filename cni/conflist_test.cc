#include "cni/conflist.h"

#include <gtest/gtest.h>

#include <string>

namespace meshlet::cni {
namespace {

constexpr char kPlugin[] = R"({"type":"meshlet-cni","logFile":"/var/run/meshlet-cni/cni.log"})";

// As a primary plugin's agent writes it: its own indentation, a portmap after the bridge.
constexpr char kConflist[] = R"({
  "cniVersion": "1.0.0",
  "name": "pods",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.85.0.0/16"}]]}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
)";

TEST(SelectConfFile, FirstByNameWithACniExtension) {
  EXPECT_EQ(SelectConfFile({"20-b.conflist", "10-a.conf", "05-c.txt", ".00-hidden.conf"}),
            "10-a.conf");
  EXPECT_EQ(SelectConfFile({"99.json", "10-x.conflist.bak"}), "99.json");
  EXPECT_EQ(SelectConfFile({"README", "meshlet-cni"}), std::nullopt);
}

TEST(InsertPlugin, AppendsAfterTheLastPluginAndRemoveGivesTheBytesBack) {
  absl::StatusOr<EditedConf> edited = InsertPlugin("10-pods.conflist", kConflist, kPlugin);
  ASSERT_TRUE(edited.ok()) << edited.status();
  EXPECT_EQ(edited->name, "10-pods.conflist");
  const std::string expected = std::string(kConflist).insert(
      std::string(kConflist).find("true}}") + 6, std::string(", ") + kPlugin);
  EXPECT_EQ(edited->content, expected);
  EXPECT_EQ(FindPlugin(edited->name, edited->content).value(), PluginPlace::kLast);
  EXPECT_EQ(RemovePlugin(edited->name, edited->content).value(), kConflist);
}

TEST(InsertPlugin, IsIdempotentAndReplacesAStaleEntry) {
  EditedConf once = InsertPlugin("a.conflist", kConflist, kPlugin).value();
  EditedConf twice = InsertPlugin("a.conflist", once.content, kPlugin).value();
  EXPECT_EQ(twice.content, once.content);
  // An older entry, first in the list: replaced, and the new one is last.
  const std::string stale =
      R"({"cniVersion":"0.4.0","name":"n","plugins":[{"type":"meshlet-cni","old":1},)"
      R"( {"type":"ptp"}]})";
  EditedConf fixed = InsertPlugin("a.conflist", stale, kPlugin).value();
  EXPECT_EQ(fixed.content, std::string(R"({"cniVersion":"0.4.0","name":"n","plugins":[)"
                                       R"({"type":"ptp"}, )") +
                               kPlugin + "]}");
}

TEST(InsertPlugin, ConvertsASingleNetworkConfiguration) {
  const std::string conf =
      "{\"cniVersion\": \"0.4.0\", \"name\": \"bridge-net\", \"type\": \"bridge\"}\n";
  EditedConf edited = InsertPlugin("10-bridge.conf", conf, kPlugin).value();
  EXPECT_EQ(edited.name, "10-bridge.conflist");
  EXPECT_EQ(edited.content,
            std::string("{\"cniVersion\": \"0.4.0\", \"name\": \"bridge-net\", \"plugins\": [") +
                "{\"cniVersion\": \"0.4.0\", \"name\": \"bridge-net\", \"type\": \"bridge\"}, " +
                kPlugin + "]}\n");
  EXPECT_EQ(FindPlugin(edited.name, edited.content).value(), PluginPlace::kLast);
  EXPECT_EQ(InsertPlugin("x.json", "{\"type\":\"bridge\"}", kPlugin).status().code(),
            absl::StatusCode::kInvalidArgument);  // no cniVersion or name to lift
}

TEST(InsertPlugin, EmptyListAndNotLast) {
  EditedConf edited =
      InsertPlugin("a.conflist", R"({"cniVersion":"1.0.0","name":"n","plugins":[ ]})", kPlugin)
          .value();
  EXPECT_EQ(edited.content,
            std::string(R"({"cniVersion":"1.0.0","name":"n","plugins":[)") + kPlugin + " ]}");
  EXPECT_EQ(FindPlugin("a.conflist",
                       R"({"name":"n","plugins":[{"type":"meshlet-cni"},{"type":"bridge"}]})")
                .value(),
            PluginPlace::kNotLast);
}

TEST(InsertPlugin, RefusesWhatIsNotANetworkConfiguration) {
  for (const char* bad : {"", "{", "[]", R"({"plugins": {}})", R"({"plugins": [{"x": 1}]})",
                          R"({"name": "no type"})", R"({"plugins":[],"plugins":[]})"}) {
    absl::StatusOr<EditedConf> edited = InsertPlugin("10-x.conflist", bad, kPlugin);
    ASSERT_FALSE(edited.ok()) << bad;
    EXPECT_EQ(edited.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(edited.status().message().find("\"10-x.conflist\""), std::string::npos)
        << edited.status();
  }
  EXPECT_FALSE(InsertPlugin("a.conflist", kConflist, R"({"type":"bridge"})").ok());
}

}  // namespace
}  // namespace meshlet::cni

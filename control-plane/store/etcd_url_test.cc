#include "control-plane/store/etcd_url.h"

#include <gtest/gtest.h>

namespace meshlet::controlplane {
namespace {

std::string Error(absl::string_view url) {
  absl::StatusOr<EtcdUrlParts> parts = SplitEtcdUrl(url);
  EXPECT_FALSE(parts.ok()) << url;
  return parts.ok() ? "" : std::string(parts.status().message());
}

TEST(EtcdUrlTest, HttpsAndHttpWithOneSchemeForEveryEndpoint) {
  absl::StatusOr<EtcdUrlParts> tls = SplitEtcdUrl("https://a.example:2379,[::1]:2380,b:1");
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_TRUE(tls->tls);
  ASSERT_EQ(tls->endpoints.size(), 3u);
  EXPECT_EQ(tls->endpoints[0].host, "a.example");
  EXPECT_EQ(tls->endpoints[1].host, "::1");
  EXPECT_EQ(tls->endpoints[1].port, 2380);
  // etcd's own way of writing several: the scheme repeated.
  absl::StatusOr<EtcdUrlParts> repeated = SplitEtcdUrl("https://a:2379,https://b:2379");
  ASSERT_TRUE(repeated.ok()) << repeated.status();
  EXPECT_EQ(repeated->endpoints[1].host, "b");
  absl::StatusOr<EtcdUrlParts> plain = SplitEtcdUrl("http://127.0.0.1:2379");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->tls);
}

TEST(EtcdUrlTest, WrongFormsSayWhatIsWrong) {
  EXPECT_NE(Error("etcd://127.0.0.1:2379").find("expected https://HOST:PORT"), std::string::npos);
  EXPECT_NE(Error("127.0.0.1:2379").find("expected https://"), std::string::npos);
  EXPECT_NE(Error("https://a:2379,http://b:2379").find("\"http://b:2379\": every endpoint"),
            std::string::npos);
  EXPECT_NE(Error("http://a:2379,https://b:2379").find("(http://)"), std::string::npos);
  EXPECT_NE(Error("https://a:2379,nope").find("\"nope\" is not host:port"), std::string::npos);
  EXPECT_NE(Error("https://a:2379/").find("is not host:port"), std::string::npos);
  Error("https://");
  Error("https://a:0");
  Error("https://a:2379,");
}

}  // namespace
}  // namespace meshlet::controlplane

// The links' pieces without a second cluster: the exports answer parsed and turned into the
// registry's endpoints, link records sealed and read back, the API's link writes refused by field,
// and a link whose reads fail kept stale (multicluster_test in tests/integration links two
// control planes for real).

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/net/test_util.h"
#include "common/stats/stats.h"
#include "common/tls/test_certificates.h"
#include "control-plane/multicluster/link_manager.h"
#include "control-plane/multicluster/link_records.h"
#include "control-plane/multicluster/multicluster_api.h"
#include "control-plane/store/file_store.h"
#include "control-plane/store/shared_value.h"
#include "google/protobuf/util/json_util.h"

namespace meshlet::controlplane::multicluster {
namespace {

using meshlet::multicluster::ClusterExports;
using meshlet::multicluster::ClusterLink;

constexpr char kExports[] = R"({
  "kind": "ClusterExports", "cluster": "east", "trustDomain": "east.example",
  "gateways": [{"gateway": "default/east-west", "address": "198.18.1.6", "port": 15443,
                "region": "eu", "zone": "eu-b"},
               {"gateway": "default/east-west", "address": "198.18.1.5", "port": 15443}],
  "services": [
    {"namespace": "default", "name": "reviews", "ports": [9080], "members": 3,
     "identities": ["spiffe://east.example/ns/default/sa/reviews"]},
    {"namespace": "default", "name": "idle", "ports": [80], "members": 0}],
  "futureField": true})";

TEST(ExportsTest, AnAnswerBecomesOneEndpointPerGatewayForServicesWithMembers) {
  absl::StatusOr<ClusterExports> exports = ParseExports(kExports, "east");
  ASSERT_TRUE(exports.ok()) << exports.status();
  registry::RemoteServices remote;
  AddRemoteEndpoints(*exports, /*stale=*/false, remote);
  ASSERT_EQ(remote.services.size(), 1u);  // idle has no member there
  const auto& endpoints = remote.services.at({"default", "reviews"});
  ASSERT_EQ(endpoints.size(), 2u);
  EXPECT_EQ(endpoints[0]->host, "198.18.1.5");  // ordered by address
  EXPECT_EQ(endpoints[1]->host, "198.18.1.6");
  EXPECT_EQ(endpoints[1]->port, 15443u);
  EXPECT_EQ(endpoints[1]->locality.cluster(), "east");
  EXPECT_EQ(endpoints[1]->locality.zone(), "eu-b");
  EXPECT_EQ(endpoints[1]->members, 3u);
  EXPECT_EQ(endpoints[1]->identities,
            std::vector<std::string>{"spiffe://east.example/ns/default/sa/reviews"});
  EXPECT_FALSE(endpoints[1]->stale);
  registry::RemoteServices stale;
  AddRemoteEndpoints(*exports, /*stale=*/true, stale);
  EXPECT_TRUE(stale.services.at({"default", "reviews"})[0]->stale);
  EXPECT_FALSE(stale == remote);
}

TEST(ExportsTest, BadAnswersSayWhatIsWrong) {
  auto error = [](const std::string& json, const std::string& cluster = "east") {
    absl::StatusOr<ClusterExports> exports = ParseExports(json, cluster);
    return exports.ok() ? std::string("accepted") : std::string(exports.status().message());
  };
  EXPECT_EQ(error(kExports, "west"), "the answer is cluster \"east\"'s, not \"west\"'s");
  EXPECT_TRUE(absl::StartsWith(error("<html>"), "the answer is not ClusterExports JSON"));
  EXPECT_EQ(error(R"({"cluster":"east","gateways":[{"address":"gw.example","port":1}]})"),
            "gateways[0]: \"gw.example\" port 1 is not an IP address and port");
  EXPECT_EQ(error(R"({"cluster":"east","gateways":[{"address":"198.18.0.1","port":70000}]})"),
            "gateways[0]: \"198.18.0.1\" port 70000 is not an IP address and port");
  EXPECT_EQ(error(R"({"cluster":"east","services":[{"name":"x"}]})"),
            "services[0]: needs namespace and name");
  EXPECT_EQ(error(R"({"cluster":"east","services":[{"namespace":"a","name":"x",)"
                  R"("identities":["bob"]}]})"),
            "services[0]: identity \"bob\" is not a SPIFFE id");
}

ClusterLink Link(const std::string& cluster, const std::string& ca_pem) {
  ClusterLink link;
  link.set_cluster(cluster);
  link.set_server("198.18.1.2:15014");
  link.set_ca_pem(ca_pem);
  link.set_server_identity("spiffe://east.example/ns/meshlet-system/sa/meshlet-control-plane");
  link.set_token("mot1.link-west.secret");
  link.set_token_name("link-west");
  return link;
}

TEST(LinkRecordsTest, SealedWithTheStoreKeysAndReadBack) {
  const ClusterLink link = Link("east", "PEM");
  StoredResource record{.key = LinkKey("east")};
  EXPECT_EQ(record.key.kind, kSharedValueKind);
  EXPECT_EQ(record.key.name, "cluster-link.east");
  EXPECT_TRUE(IsLinkKey(record.key));
  EXPECT_FALSE(IsLinkKey({kSharedValueKind, "", "api-token"}));

  // Without store keys: JSON as it is.
  record.body = *EncodeLink(link, nullptr);
  EXPECT_TRUE(absl::StrContains(record.body, "link-west"));
  absl::StatusOr<ClusterLink> back = DecodeLink(record, nullptr);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->token(), "mot1.link-west.secret");

  // With them: the token never appears in the record.
  absl::StatusOr<StoreKeys> keys = StoreKeys::Parse(StoreKeys::GenerateKeyText(), "test");
  ASSERT_TRUE(keys.ok()) << keys.status();
  record.body = *EncodeLink(link, &*keys);
  EXPECT_TRUE(StoreKeys::IsSealed(record.body));
  EXPECT_FALSE(absl::StrContains(record.body, "secret"));
  back = DecodeLink(record, &*keys);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->server(), "198.18.1.2:15014");
  back = DecodeLink(record, nullptr);
  EXPECT_EQ(back.status().message(),
            "ControlPlaneSecret/cluster-link.east in the store is sealed, and this control "
            "plane has no store keys");
  // Sealed for one record, read as another: refused (the name is bound into the envelope).
  StoredResource moved{.key = LinkKey("north"), .body = record.body};
  EXPECT_FALSE(DecodeLink(moved, &*keys).ok());
  moved.body = *EncodeLink(link, nullptr);
  EXPECT_EQ(DecodeLink(moved, nullptr).status().message(),
            "ControlPlaneSecret/cluster-link.north in the store names cluster \"east\"");
  EXPECT_FALSE(ValidateClusterName("East").ok());
  EXPECT_FALSE(ValidateClusterName("-east").ok());
  EXPECT_TRUE(ValidateClusterName("east-1").ok());
}

class LinksApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(std::getenv("TEST_TMPDIR"), "/store");
    store_ = *FileStore::Open(dir_);
    links_ = std::make_unique<LinkManager>(loop_, RealClock::Get(), registry_, stats_,
                                           LinkManagerOptions{.cluster = "west"});
    exports_ = std::make_unique<ExportsSource>(registry_, "west", "west.example");
    api_ = std::make_unique<MulticlusterApi>(
        *store_, [] { return std::shared_ptr<const StoreKeys>(); }, *links_, *exports_,
        RealClock::Get());
  }

  http::ServerResponse Send(const std::string& method, const std::string& path,
                            const std::string& body = "") {
    http::ServerRequest request;
    request.headers = {{":method", method}, {":path", path}, {":authority", "cp"}};
    request.body = body;
    return api_->Handle(
        request, {.name = "alice", .credential = "operator-token", .role = access::Role::kAdmin});
  }

  static std::string Json(const ClusterLink& link) {
    std::string json;
    (void)google::protobuf::util::MessageToJsonString(link, &json);
    return json;
  }

  event::Loop loop_;
  StatsRegistry stats_;
  registry::Registry registry_{RealClock::Get()};
  std::string dir_;
  std::unique_ptr<FileStore> store_;
  std::unique_ptr<LinkManager> links_;
  std::unique_ptr<ExportsSource> exports_;
  std::unique_ptr<MulticlusterApi> api_;
  tls::testing::TestCa ca_ = tls::testing::ValueOrDie(tls::testing::TestCa::Create());
};

TEST_F(LinksApiTest, LinkWritesAreCheckedFieldByField) {
  auto refused = [&](void (*edit)(ClusterLink&)) {
    ClusterLink link = Link("east", ca_.cert_pem());
    edit(link);
    return Send("POST", "/api/v1/multicluster/links", Json(link));
  };
  struct Case {
    void (*edit)(ClusterLink&);
    std::string field;
  };
  for (const Case& c : std::vector<Case>{
           {[](ClusterLink& l) { l.set_cluster("East_1"); }, "cluster"},
           {[](ClusterLink& l) { l.set_cluster("west"); }, "cluster"},  // this cluster's own
           {[](ClusterLink& l) { l.set_server("198.18.1.2"); }, "server"},
           {[](ClusterLink& l) { l.set_server_identity("control-plane"); }, "serverIdentity"},
           {[](ClusterLink& l) { l.set_ca_pem(""); }, "caPem"},
           {[](ClusterLink& l) { l.set_ca_pem("not a certificate"); }, "caPem"},
           {[](ClusterLink& l) { l.set_token(""); }, "token"},
       }) {
    http::ServerResponse response = refused(c.edit);
    EXPECT_EQ(response.status, 422) << c.field << ": " << response.body;
    EXPECT_TRUE(absl::StrContains(response.body, absl::StrCat("\"field\":\"", c.field, "\"")))
        << response.body;
  }
  EXPECT_EQ(Send("POST", "/api/v1/multicluster/links", "{").status, 400);
  EXPECT_EQ(Send("PUT", "/api/v1/multicluster/links").status, 405);
  EXPECT_EQ(Send("DELETE", "/api/v1/multicluster/links/nowhere").status, 404);

  // Linked: stored (the token too, sealed when there are store keys), answered without it.
  http::ServerResponse created =
      Send("POST", "/api/v1/multicluster/links", Json(Link("east", ca_.cert_pem())));
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_FALSE(absl::StrContains(created.body, "mot1.")) << created.body;
  EXPECT_TRUE(absl::StrContains(created.body, "\"createdBy\":\"alice\"")) << created.body;
  absl::StatusOr<std::vector<ClusterLink>> stored = LoadLinks(*store_, nullptr);
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_EQ((*stored)[0].token(), "mot1.link-west.secret");
  // Unlinked: gone, the answer names the token to revoke there.
  http::ServerResponse removed = Send("DELETE", "/api/v1/multicluster/links/east");
  ASSERT_EQ(removed.status, 200) << removed.body;
  EXPECT_TRUE(absl::StrContains(removed.body, "\"tokenName\":\"link-west\"")) << removed.body;
  EXPECT_TRUE(LoadLinks(*store_, nullptr)->empty());
}

TEST_F(LinksApiTest, ALinkThatCannotBeReadIsStaleAndNamesWhy) {
  net::testing::RefusingPort refusing;
  ClusterLink unreachable = Link("east", ca_.cert_pem());
  unreachable.set_server(refusing.loopback());
  ClusterLink bad = Link("north", ca_.cert_pem());
  bad.set_server("no port");
  links_->SetLinks({unreachable, bad});
  EXPECT_TRUE(absl::StrContains(links_->StatusJson(), "\"state\":\"pending\""));
  ASSERT_TRUE(loop_.RunUntil(
      [&] {
        const std::string status = links_->StatusJson();
        return !absl::StrContains(status, "pending");
      },
      std::chrono::seconds(10)))
      << links_->StatusJson();
  const std::string status = links_->StatusJson();
  EXPECT_TRUE(absl::StrContains(status, "connect_failed")) << status;
  EXPECT_TRUE(absl::StrContains(status, "server: ")) << status;
  EXPECT_FALSE(absl::StrContains(status, "\"state\":\"up\"")) << status;
  EXPECT_EQ(registry_.Snapshot()->remote, nullptr);  // never read: nothing to keep
  http::ServerResponse answer = Send("GET", "/api/v1/multicluster/links");
  EXPECT_EQ(answer.status, 200);
  EXPECT_TRUE(absl::StrContains(answer.body, "\"cluster\":\"west\"")) << answer.body;
  // Removed: its state goes with it.
  links_->RemoveLink("east");
  links_->RemoveLink("north");
  EXPECT_FALSE(absl::StrContains(links_->StatusJson(), "east"));
}

TEST_F(LinksApiTest, ExportsWithoutPolicyOrMembersAreEmpty) {
  http::ServerResponse answer = Send("GET", "/api/v1/multicluster/exports");
  ASSERT_EQ(answer.status, 200);
  absl::StatusOr<ClusterExports> exports = ParseExports(answer.body, "west");
  ASSERT_TRUE(exports.ok()) << exports.status() << answer.body;
  EXPECT_EQ(exports->trust_domain(), "west.example");
  EXPECT_EQ(exports->services_size(), 0);
  EXPECT_EQ(Send("POST", "/api/v1/multicluster/exports").status, 405);
  EXPECT_EQ(Send("GET", "/api/v1/multicluster/other").status, 404);
}

}  // namespace
}  // namespace meshlet::controlplane::multicluster

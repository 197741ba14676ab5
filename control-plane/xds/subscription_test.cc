#include "control-plane/xds/subscription.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "xds/resources.pb.h"
#include "xds/version.h"

namespace meshlet::controlplane::ads {
namespace {

ResourceMap Clusters(std::initializer_list<std::pair<const char*, int>> items) {
  ResourceMap out;
  for (const auto& [name, timeout] : items) {
    xds::Cluster cluster;
    cluster.set_name(name);
    cluster.mutable_connect_timeout()->set_seconds(timeout);
    out.emplace(name, std::make_shared<NamedResource>(Pack(name, cluster)));
  }
  return out;
}

TEST(ResourceSetTest, VersionsAreContentHashes) {
  ResourceMap a = Clusters({{"a", 1}, {"b", 2}});
  ResourceMap same = Clusters({{"b", 2}, {"a", 1}});
  ResourceMap changed = Clusters({{"a", 1}, {"b", 3}});
  EXPECT_EQ(TypeVersion(a), TypeVersion(same));
  EXPECT_NE(TypeVersion(a), TypeVersion(changed));
  EXPECT_EQ(a.at("a")->version, changed.at("a")->version);
  EXPECT_NE(a.at("b")->version, changed.at("b")->version);
  EXPECT_EQ(TypeVersion(a).size(), 16u);
  // The resource version is the hash of the bytes in the Any (what a sidecar can recompute).
  EXPECT_EQ(a.at("a")->version, xds::ContentVersion(a.at("a")->resource.value()));
  EXPECT_EQ(a.at("a")->resource.type_url(), TypeUrl(ResourceType::kCluster));
}

TEST(ResourceSetTest, TypeUrlsRoundTripAndPushOrderPutsDependenciesFirst) {
  for (ResourceType type : kPushOrder) EXPECT_EQ(ParseTypeUrl(TypeUrl(type)), type);
  EXPECT_FALSE(ParseTypeUrl("type.googleapis.com/envoy.config.cluster.v3.Cluster").has_value());
  auto position = [](ResourceType type) {
    return std::find(kPushOrder.begin(), kPushOrder.end(), type) - kPushOrder.begin();
  };
  EXPECT_LT(position(ResourceType::kSecret), position(ResourceType::kCluster));
  EXPECT_LT(position(ResourceType::kCluster), position(ResourceType::kEndpoint));
  EXPECT_LT(position(ResourceType::kCluster), position(ResourceType::kRoute));
  EXPECT_LT(position(ResourceType::kRoute), position(ResourceType::kListener));
}

TEST(TypeSubscriptionTest, AckMovesAckedStateAndVersion) {
  TypeSubscription sub;
  sub.Subscribe({});
  EXPECT_TRUE(sub.wildcard());
  ResourceMap v1 = Clusters({{"a", 1}});
  ASSERT_TRUE(sub.ShouldSend(TypeVersion(v1)));
  sub.RecordSent("n1", TypeVersion(v1), v1, MonotonicTime{});
  EXPECT_TRUE(sub.awaiting_answer());
  EXPECT_FALSE(sub.ShouldSend(TypeVersion(v1)));  // already sent
  EXPECT_EQ(sub.OnAnswer("n1", std::nullopt), TypeSubscription::Answer::kAck);
  EXPECT_FALSE(sub.awaiting_answer());
  EXPECT_EQ(sub.acked_version(), TypeVersion(v1));
  EXPECT_EQ(sub.acked_state().size(), 1u);
  EXPECT_EQ(sub.acks(), 1u);
}

TEST(TypeSubscriptionTest, StaleAndUnknownNoncesChangeNothing) {
  TypeSubscription sub;
  sub.Subscribe({});
  ResourceMap v1 = Clusters({{"a", 1}});
  sub.RecordSent("n1", TypeVersion(v1), v1, MonotonicTime{});
  EXPECT_EQ(sub.OnAnswer("n0", std::nullopt), TypeSubscription::Answer::kStale);
  EXPECT_EQ(sub.OnAnswer("", std::nullopt), TypeSubscription::Answer::kStale);
  EXPECT_TRUE(sub.awaiting_answer());
  EXPECT_TRUE(sub.acked_version().empty());
  EXPECT_EQ(sub.stale_answers(), 2u);
  ASSERT_EQ(sub.OnAnswer("n1", std::nullopt), TypeSubscription::Answer::kAck);
  // Answering the same nonce twice: the second is stale.
  EXPECT_EQ(sub.OnAnswer("n1", std::nullopt), TypeSubscription::Answer::kStale);
}

TEST(TypeSubscriptionTest, NackIsKeptAndItsVersionNeverResent) {
  TypeSubscription sub;
  sub.Subscribe({});
  ResourceMap good = Clusters({{"a", 1}});
  ResourceMap bad = Clusters({{"a", 0}});
  sub.RecordSent("n1", TypeVersion(good), good, MonotonicTime{});
  ASSERT_EQ(sub.OnAnswer("n1", std::nullopt), TypeSubscription::Answer::kAck);
  sub.RecordSent("n2", TypeVersion(bad), bad, MonotonicTime{});
  ASSERT_EQ(sub.OnAnswer(
                "n2", TypeSubscription::Nack{.message = "connect_timeout: must be > 0", .code = 3}),
            TypeSubscription::Answer::kNack);
  EXPECT_TRUE(sub.nacked());
  ASSERT_TRUE(sub.last_nack().has_value());
  EXPECT_EQ(sub.last_nack()->version, TypeVersion(bad));
  EXPECT_EQ(sub.last_nack()->message, "connect_timeout: must be > 0");
  // The sidecar still runs the good version.
  EXPECT_EQ(sub.acked_version(), TypeVersion(good));
  EXPECT_EQ(sub.assumed_state().at("a")->version, good.at("a")->version);
  // Not again...
  EXPECT_FALSE(sub.ShouldSend(TypeVersion(bad)));
  // ...but a fix, or going back to the good version, goes out.
  EXPECT_TRUE(sub.ShouldSend(TypeVersion(Clusters({{"a", 2}}))));
  EXPECT_TRUE(sub.ShouldSend(TypeVersion(good)));
  // A later ACK clears the NACKED state but the error text stays for proxy-status.
  ResourceMap fixed = Clusters({{"a", 2}});
  sub.RecordSent("n3", TypeVersion(fixed), fixed, MonotonicTime{});
  ASSERT_EQ(sub.OnAnswer("n3", std::nullopt), TypeSubscription::Answer::kAck);
  EXPECT_FALSE(sub.nacked());
  EXPECT_TRUE(sub.last_nack().has_value());
  EXPECT_EQ(sub.nacks(), 1u);
}

TEST(TypeSubscriptionTest, AnsweringALaterNonceImpliesTheEarlierOnes) {
  TypeSubscription sub;
  sub.Subscribe({});
  ResourceMap v1 = Clusters({{"a", 1}});
  ResourceMap v2 = Clusters({{"a", 1}, {"b", 1}});
  sub.RecordSent("n1", TypeVersion(v1), v1, MonotonicTime{});
  sub.RecordSent("n2", TypeVersion(v2), v2, MonotonicTime{});
  ASSERT_EQ(sub.OnAnswer("n2", std::nullopt), TypeSubscription::Answer::kAck);
  EXPECT_FALSE(sub.awaiting_answer());
  EXPECT_EQ(sub.OnAnswer("n1", std::nullopt), TypeSubscription::Answer::kStale);
  EXPECT_EQ(sub.acked_version(), TypeVersion(v2));
}

TEST(TypeSubscriptionTest, NackOfAnEarlierResponseTaintsTheLaterOnes) {
  TypeSubscription sub;
  sub.Subscribe({});
  ResourceMap base = Clusters({{"a", 1}});
  sub.RecordSent("n0", TypeVersion(base), base, MonotonicTime{});
  ASSERT_EQ(sub.OnAnswer("n0", std::nullopt), TypeSubscription::Answer::kAck);
  ResourceMap v1 = Clusters({{"a", 1}, {"b", 0}});
  ResourceMap v2 = Clusters({{"b", 0}});
  sub.RecordSent("n1", TypeVersion(v1), v1, MonotonicTime{});
  sub.RecordSent("n2", TypeVersion(v2), v2, MonotonicTime{});
  ASSERT_EQ(sub.OnAnswer("n1", TypeSubscription::Nack{.message = "bad b"}),
            TypeSubscription::Answer::kNack);
  ASSERT_EQ(sub.OnAnswer("n2", std::nullopt), TypeSubscription::Answer::kAck);
  // n2 was computed on top of the refused n1: the state stays the last one known for sure.
  EXPECT_EQ(sub.acked_state().size(), 1u);
  EXPECT_TRUE(sub.acked_state().contains("a"));
}

TEST(TypeSubscriptionTest, NamedSubscriptionsFilter) {
  TypeSubscription sub;
  EXPECT_TRUE(sub.Filter(Clusters({{"a", 1}})).empty());  // not subscribed
  sub.Subscribe({"b"});
  EXPECT_FALSE(sub.wildcard());
  ResourceMap all = Clusters({{"a", 1}, {"b", 1}});
  ResourceMap filtered = sub.Filter(all);
  ASSERT_EQ(filtered.size(), 1u);
  EXPECT_TRUE(filtered.contains("b"));
  EXPECT_TRUE(sub.SameNames({"b"}));
  EXPECT_FALSE(sub.SameNames({}));
  sub.Subscribe({"*"});
  EXPECT_TRUE(sub.wildcard());
}

TEST(TypeSubscriptionTest, DeltaSubscribeAndUnsubscribe) {
  TypeSubscription sub;
  sub.UpdateDeltaSubscription({}, {});
  EXPECT_TRUE(sub.wildcard());
  sub.UpdateDeltaSubscription({}, {"*"});
  EXPECT_FALSE(sub.wildcard());
  sub.UpdateDeltaSubscription({"a"}, {});
  EXPECT_TRUE(sub.Wants("a"));
  EXPECT_FALSE(sub.Wants("b"));
  sub.UpdateDeltaSubscription({}, {"a"});
  EXPECT_FALSE(sub.Wants("a"));
}

TEST(TypeSubscriptionTest, ReportedVersionSuppressesTheSamePush) {
  TypeSubscription sub;
  sub.Subscribe({});
  ResourceMap v1 = Clusters({{"a", 1}});
  sub.SetReportedVersion(TypeVersion(v1));
  EXPECT_FALSE(sub.ShouldSend(TypeVersion(v1)));
  EXPECT_TRUE(sub.ShouldSend(TypeVersion(Clusters({{"a", 2}}))));
}

// A reconnected sidecar that runs the version about to be pushed holds exactly its resources:
// learned once, before anything is sent, like an ACKed state.
TEST(TypeSubscriptionTest, ReportedStateIsKnownOnlyBeforeAnythingIsSent) {
  TypeSubscription sub;
  sub.Subscribe({});
  EXPECT_EQ(sub.reported_version(), "");
  ResourceMap v1 = Clusters({{"a", 1}, {"b", 1}});
  sub.SetReportedVersion(TypeVersion(v1));
  EXPECT_EQ(sub.reported_version(), TypeVersion(v1));
  EXPECT_TRUE(sub.assumed_state().empty());
  sub.SetReportedState(v1);
  EXPECT_EQ(sub.reported_version(), "");
  EXPECT_EQ(sub.assumed_state().size(), 2u);
  EXPECT_EQ(sub.acked_state().size(), 2u);

  TypeSubscription other;
  other.Subscribe({});
  other.SetReportedVersion(TypeVersion(v1));
  other.RecordSent("n1", "v2", Clusters({{"a", 2}}), MonotonicTime{});
  EXPECT_EQ(other.reported_version(), "");
}

TEST(TypeSubscriptionTest, OutstandingResponsesAreBounded) {
  TypeSubscription sub;
  sub.Subscribe({});
  ResourceMap v = Clusters({{"a", 1}});
  for (size_t i = 0; i < TypeSubscription::kMaxOutstanding + 3; ++i) {
    sub.RecordSent(absl::StrCat("n", i), absl::StrCat("v", i), v, MonotonicTime{});
  }
  EXPECT_EQ(sub.OnAnswer("n0", std::nullopt), TypeSubscription::Answer::kStale);
  EXPECT_EQ(sub.OnAnswer(absl::StrCat("n", TypeSubscription::kMaxOutstanding + 2), std::nullopt),
            TypeSubscription::Answer::kAck);
}

// Lookup keys are never names: held apart in first-subscribed order, deduplicated, each with the
// answer last sent, forgotten with their answer when unsubscribed.
TEST(TypeSubscriptionTest, LookupKeysAreHeldApartFromNames) {
  TypeSubscription sub;
  sub.UpdateDeltaSubscription({"a", "host:reviews"}, {});
  EXPECT_FALSE(sub.wildcard());
  EXPECT_TRUE(sub.Wants("a"));
  EXPECT_FALSE(sub.Wants("host:reviews"));
  EXPECT_TRUE(sub.keys().empty());  // the stream decides which keys it holds
  const MonotonicTime t1 = MonotonicTime{} + std::chrono::seconds(1);
  const MonotonicTime t2 = MonotonicTime{} + std::chrono::seconds(2);
  EXPECT_TRUE(sub.AddKey("host:reviews", t1));
  EXPECT_TRUE(sub.AddKey("addr:10.0.0.1:80", t2));
  EXPECT_FALSE(sub.AddKey("host:reviews", t2));
  EXPECT_EQ(sub.keys(), (std::vector<std::string>{"host:reviews", "addr:10.0.0.1:80"}));
  // Filter keeps the names asked for; keys play no part.
  ResourceMap all = Clusters({{"a", 1}, {"b", 1}});
  all.emplace("host:reviews", all.at("b"));
  ResourceMap filtered = sub.Filter(all);
  EXPECT_EQ(filtered.size(), 1u);
  EXPECT_TRUE(filtered.contains("a"));

  EXPECT_EQ(sub.LastAnswer("host:reviews"), nullptr);
  EXPECT_EQ(sub.RecordKeyAnswer("host:reviews", "reviews.shop:80"), t1);  // first: asked at t1
  EXPECT_EQ(sub.RecordKeyAnswer("host:reviews", ""), std::nullopt);
  ASSERT_NE(sub.LastAnswer("host:reviews"), nullptr);
  EXPECT_EQ(*sub.LastAnswer("host:reviews"), "");
  EXPECT_EQ(sub.RecordKeyAnswer("host:unknown", ""), std::nullopt);  // not held: ignored
  EXPECT_FALSE(sub.HasKey("host:unknown"));

  // Unsubscribing a key as a name changes nothing; RemoveKey forgets it and its answer.
  // Removals are counted (the generator extends a set only while there was none).
  sub.UpdateDeltaSubscription({}, {"host:reviews"});
  EXPECT_TRUE(sub.HasKey("host:reviews"));
  EXPECT_EQ(sub.keys_removed(), 0u);
  EXPECT_TRUE(sub.RemoveKey("host:reviews"));
  EXPECT_FALSE(sub.RemoveKey("host:reviews"));
  EXPECT_EQ(sub.keys_removed(), 1u);
  EXPECT_EQ(sub.keys(), std::vector<std::string>{"addr:10.0.0.1:80"});
  EXPECT_TRUE(sub.AddKey("host:reviews", t2));
  EXPECT_EQ(sub.LastAnswer("host:reviews"), nullptr);
  EXPECT_EQ(sub.keys(), (std::vector<std::string>{"addr:10.0.0.1:80", "host:reviews"}));
}

// A state-of-the-world list naming only keys subscribes to nothing (not the wildcard), and the
// same list repeated is the same subscription.
TEST(TypeSubscriptionTest, StateOfTheWorldKeysAreNotNames) {
  TypeSubscription sub;
  sub.Subscribe({"host:reviews"});
  EXPECT_TRUE(sub.subscribed());
  EXPECT_FALSE(sub.wildcard());
  EXPECT_FALSE(sub.Wants("host:reviews"));
  EXPECT_TRUE(sub.Filter(Clusters({{"a", 1}})).empty());
  EXPECT_TRUE(sub.keys().empty());
  EXPECT_TRUE(sub.SameNames({"host:reviews"}));
}

}  // namespace
}  // namespace meshlet::controlplane::ads

// LeaderElector against FakeApiServer holding one Lease (resourceVersion checked on PUT, as the
// API server does): of two replicas exactly one leads, the Lease names it, and when it dies the
// other takes over within the lease duration (plus a retry period); when it shuts down it hands
// the Lease over and the other leads at its next retry.

#include "control-plane/kubernetes/leader_election.h"

#include <yaml-cpp/yaml.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/stats/stats.h"
#include "control-plane/kubernetes/fake_api_server.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::kubernetes {
namespace {

using testing::FakeApiServer;
using testing::RunUntil;

constexpr char kLease[] = "/apis/coordination.k8s.io/v1/namespaces/meshlet-system/leases";

class LeaderElectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.set_handler([this](const http::ServerRequest& request, http::Responder respond) {
      const std::string path(request.path());
      const std::string method(request.method());
      if (method == "GET" && path == absl::StrCat(kLease, "/meshlet-control-plane")) {
        if (lease_.empty()) {
          respond(http::ServerResponse::Json(404, R"({"kind":"Status","code":404})"));
        } else {
          respond(http::ServerResponse::Json(200, lease_));
        }
        return;
      }
      YAML::Node body = YAML::Load(request.body);
      if (method == "POST" && path == kLease) {
        if (!lease_.empty()) {
          respond(http::ServerResponse::Json(409, R"({"kind":"Status","code":409})"));
          return;
        }
      } else if (method == "PUT" && path == absl::StrCat(kLease, "/meshlet-control-plane")) {
        if (body["metadata"]["resourceVersion"].as<std::string>("") != absl::StrCat(version_)) {
          respond(http::ServerResponse::Json(409, R"({"kind":"Status","code":409})"));
          return;
        }
      } else {
        respond(http::ServerResponse::Json(404, R"({"kind":"Status","code":404})"));
        return;
      }
      body["metadata"]["resourceVersion"] = absl::StrCat(++version_);
      holder_ = body["spec"]["holderIdentity"].as<std::string>("");
      if (!holder_.empty()) holders_.push_back(holder_);
      YAML::Emitter out;
      out << YAML::DoubleQuoted << YAML::Flow << body;
      lease_ = out.c_str();
      respond(http::ServerResponse::Json(method == "POST" ? 201 : 200, lease_));
    });
    api_ = server_.Api();
  }

  // `preferred` (may be null: no preference) is read at each try.
  std::unique_ptr<LeaderElector> Replica(const std::string& name, bool* leading,
                                         const std::string& revision = "",
                                         const bool* preferred = nullptr) {
    auto elector = std::make_unique<LeaderElector>(
        loop_, *api_, stats_, RealClock::Get(),
        LeaderElectionOptions{.namespace_ = "meshlet-system",
                              .identity = name,
                              // The Lease counts in whole seconds.
                              .lease_duration = std::chrono::seconds(1),
                              .renew_deadline = std::chrono::milliseconds(600),
                              .retry_period = std::chrono::milliseconds(50),
                              .revision = revision,
                              .preferred = preferred == nullptr
                                               ? std::function<bool()>()
                                               : [preferred] { return *preferred; }},
        [this, leading](bool now) {
          *leading = now;
          leaders_ += now ? 1 : -1;
          max_leaders_ = std::max(max_leaders_, leaders_);
        });
    elector->Start();
    return elector;
  }

  event::Loop loop_;
  StatsRegistry stats_;
  FakeApiServer server_{loop_};
  std::unique_ptr<KubernetesApi> api_;
  std::string lease_;
  int version_ = 0;
  std::string holder_;
  std::vector<std::string> holders_;  // every non-empty holder written, in order
  int leaders_ = 0;
  int max_leaders_ = 0;
};

TEST_F(LeaderElectionTest, OneLeadsAndAnotherTakesOverWhenItDies) {
  bool a_leads = false, b_leads = false;
  std::unique_ptr<LeaderElector> a = Replica("cp-a", &a_leads);
  std::unique_ptr<LeaderElector> b = Replica("cp-b", &b_leads);
  ASSERT_TRUE(RunUntil(loop_, [&] { return a_leads || b_leads; }));
  // Both keep competing for a while: never two leaders, and the Lease names the one.
  loop_.RunUntil([] { return false; }, std::chrono::milliseconds(1500));
  EXPECT_EQ(max_leaders_, 1);
  EXPECT_NE(a_leads, b_leads);
  EXPECT_EQ(holder_, a_leads ? "cp-a" : "cp-b");
  EXPECT_GT(version_, 10);  // renewed every retry period

  // The leader dies without a word; the other leads within the lease duration and a retry.
  bool* survivor = a_leads ? &b_leads : &a_leads;
  const std::string survivor_name = a_leads ? "cp-b" : "cp-a";
  if (a_leads) {
    a.reset();
  } else {
    b.reset();
  }
  leaders_ = 0;
  const MonotonicTime died = RealClock::Get().Now();
  ASSERT_TRUE(RunUntil(loop_, [&] { return *survivor; }));
  const Duration took = RealClock::Get().Now() - died;
  EXPECT_LT(took, std::chrono::milliseconds(1000 + 50 + 300)) << "took " << took.count() << " ns";
  EXPECT_GE(took, std::chrono::milliseconds(900));  // not before the dead one's lease ran out
  EXPECT_EQ(holder_, survivor_name);
}

TEST_F(LeaderElectionTest, ALeaderShuttingDownHandsTheLeaseOver) {
  bool a_leads = false, b_leads = false;
  std::unique_ptr<LeaderElector> a = Replica("cp-a", &a_leads);
  ASSERT_TRUE(RunUntil(loop_, [&] { return a_leads; }));
  std::unique_ptr<LeaderElector> b = Replica("cp-b", &b_leads);
  loop_.RunUntil([] { return false; }, std::chrono::milliseconds(200));
  ASSERT_TRUE(a_leads);
  ASSERT_FALSE(b_leads);
  // A replica that does not lead has nothing to hand over.
  b->Release();
  EXPECT_TRUE(b->released());
  b = Replica("cp-b2", &b_leads);

  const MonotonicTime released = RealClock::Get().Now();
  a->Release();
  EXPECT_FALSE(a_leads);  // stops leading before the Lease says so
  ASSERT_TRUE(RunUntil(loop_, [&] { return a->released(); }));
  ASSERT_TRUE(RunUntil(loop_, [&] { return b_leads; }));
  const Duration took = RealClock::Get().Now() - released;
  // At its next retry (50 ms), not after the lease duration (1 s).
  EXPECT_LT(took, std::chrono::milliseconds(500)) << "took " << took.count() << " ns";
  EXPECT_EQ(holder_, "cp-b2");
  EXPECT_EQ(max_leaders_, 1);
  // The released one stays out.
  loop_.RunUntil([] { return false; }, std::chrono::milliseconds(300));
  EXPECT_FALSE(a_leads);
  EXPECT_EQ(holder_, "cp-b2");
}

// The route-status Lease among revisions: the preferred candidate (the default revision's) gets
// it from whoever holds it, by a claim the holder answers at its next renewal, never with two
// leading at once; preference moving back moves it back.
TEST_F(LeaderElectionTest, APreferredCandidateTakesTheLeaseOverWithoutTwoLeaders) {
  bool a_leads = false, b_leads = false;
  bool a_preferred = false, b_preferred = false;
  std::unique_ptr<LeaderElector> a = Replica("cp-a", &a_leads, "0-2-0", &a_preferred);
  ASSERT_TRUE(RunUntil(loop_, [&] { return a_leads; }));
  std::unique_ptr<LeaderElector> b = Replica("cp-b", &b_leads, "canary", &b_preferred);
  // Neither preferred: the holder keeps it.
  loop_.RunUntil([] { return false; }, std::chrono::milliseconds(300));
  EXPECT_TRUE(a_leads);
  EXPECT_FALSE(b_leads);
  // The Lease records the holder's revision.
  EXPECT_EQ(YAML::Load(lease_)["metadata"]["annotations"]["meshlet.io/revision"].as<std::string>(),
            "0-2-0");

  b_preferred = true;
  const MonotonicTime moved = RealClock::Get().Now();
  ASSERT_TRUE(RunUntil(loop_, [&] { return b_leads; }));
  const Duration took = RealClock::Get().Now() - moved;
  // A claim, the holder's hand-over at its next renewal, the claimant's take: a few retry
  // periods (50 ms), well before a lease duration (1 s) would pass.
  EXPECT_LT(took, std::chrono::milliseconds(500)) << "took " << took.count() << " ns";
  EXPECT_FALSE(a_leads);
  EXPECT_EQ(max_leaders_, 1);
  EXPECT_EQ(holder_, "cp-b");
  const YAML::Node annotations = YAML::Load(lease_)["metadata"]["annotations"];
  EXPECT_EQ(annotations["meshlet.io/revision"].as<std::string>(), "canary");
  EXPECT_FALSE(annotations["meshlet.io/claimed-by"]) << lease_;  // the claim is dropped
  // No one but the claimant took it in between.
  ASSERT_GE(holders_.size(), 2u);
  EXPECT_EQ(holders_.back(), "cp-b");
  for (size_t i = 0; i + 1 < holders_.size(); ++i) {
    EXPECT_NE(holders_[i], "cp-b") << "cp-b held it before the claim was answered";
  }
  // Stays with the preferred one.
  loop_.RunUntil([] { return false; }, std::chrono::milliseconds(300));
  EXPECT_TRUE(b_leads);
  EXPECT_FALSE(a_leads);

  // The preference moves back.
  b_preferred = false;
  a_preferred = true;
  ASSERT_TRUE(RunUntil(loop_, [&] { return a_leads; }));
  EXPECT_FALSE(b_leads);
  EXPECT_EQ(max_leaders_, 1);
  EXPECT_EQ(holder_, "cp-a");
}

// A claimant that died before taking the Lease holds it up only as long as a dead holder would.
TEST_F(LeaderElectionTest, AClaimOfADeadClaimantLastsTheLeaseDuration) {
  lease_ = absl::StrCat(
      R"({"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":)"
      R"("meshlet-control-plane","namespace":"meshlet-system","resourceVersion":"1",)"
      R"("annotations":{"meshlet.io/claimed-by":"cp-gone"}},"spec":{"holderIdentity":"",)"
      R"("leaseDurationSeconds":1,"renewTime":"2026-01-01T00:00:00.000000Z"}})");
  version_ = 1;
  bool leads = false;
  const MonotonicTime started = RealClock::Get().Now();
  std::unique_ptr<LeaderElector> a = Replica("cp-a", &leads, "0-2-0");
  ASSERT_TRUE(RunUntil(loop_, [&] { return leads; }));
  const Duration took = RealClock::Get().Now() - started;
  EXPECT_GE(took, std::chrono::milliseconds(950)) << "took " << took.count() << " ns";
  EXPECT_LT(took, std::chrono::milliseconds(1000 + 50 + 300)) << "took " << took.count() << " ns";
  EXPECT_EQ(holder_, "cp-a");
}

// A leader renews with one PUT per retry period, reading the Lease only to become leader.
TEST_F(LeaderElectionTest, ALeaderRenewsWithoutReadingTheLeaseFirst) {
  bool leads = false;
  std::unique_ptr<LeaderElector> a = Replica("cp-a", &leads);
  ASSERT_TRUE(RunUntil(loop_, [&] { return leads; }));
  const size_t seen = server_.requests().size();
  const int version = version_;
  loop_.RunUntil([] { return false; }, std::chrono::milliseconds(600));
  EXPECT_TRUE(leads);
  EXPECT_GT(version_ - version, 5);  // renewed every retry period (50 ms)
  size_t reads = 0;
  for (size_t i = seen; i < server_.requests().size(); ++i) {
    reads += server_.requests()[i].method == "GET";
  }
  EXPECT_EQ(reads, 0u);
}

TEST_F(LeaderElectionTest, ALeaderThatCannotRenewStopsLeading) {
  bool leads = false;
  std::unique_ptr<LeaderElector> a = Replica("cp-a", &leads);
  ASSERT_TRUE(RunUntil(loop_, [&] { return leads; }));
  // The API server refuses everything from now on: the leader gives up after renew_deadline,
  // before any other replica could take over (lease_duration).
  server_.set_handler([](const http::ServerRequest&, http::Responder respond) {
    respond(http::ServerResponse::Json(500, R"({"kind":"Status","code":500})"));
  });
  const MonotonicTime cut = RealClock::Get().Now();
  ASSERT_TRUE(RunUntil(loop_, [&] { return !leads; }));
  const Duration took = RealClock::Get().Now() - cut;
  EXPECT_LT(took, std::chrono::milliseconds(1000));
}

}  // namespace
}  // namespace meshlet::controlplane::kubernetes

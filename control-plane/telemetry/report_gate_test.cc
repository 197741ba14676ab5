#include "control-plane/telemetry/report_gate.h"

#include "common/base/fake_clock.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::telemetry {
namespace {

net::PeerInfo Certificate(const std::string& spiffe_id) {
  net::PeerInfo peer;
  peer.tls = true;
  peer.peer_certificate_presented = true;
  peer.uri_sans = {spiffe_id};
  peer.peer_not_after = absl::Now() + absl::Hours(1);
  return peer;
}

registry::RegistrySnapshot Registered() {
  registry::RegistrySnapshot snapshot;
  registry::Workload cart;
  cart.id = "cart-0.shop";
  cart.service = "cart";
  cart.namespace_ = "shop";
  cart.service_account = "cart";
  snapshot.workloads.push_back(cart);
  registry::Workload pay;
  pay.id = "payments-0.shop";
  pay.service = "payments";
  pay.namespace_ = "shop";
  pay.service_account = "payments";
  snapshot.workloads.push_back(pay);
  return snapshot;
}

metrics::v1::MetricsReport Report(const std::string& node, const std::string& service) {
  metrics::v1::MetricsReport report;
  report.set_node_id(node);
  report.set_service(service);
  report.set_namespace_("shop");
  return report;
}

uint64_t Refusals(const StatsRegistry& stats, const std::string& reason) {
  StatsSnapshot snapshot = stats.Snapshot();
  const SeriesSnapshot* series =
      snapshot.Find("meshlet_cp_metrics_report_refusals_total", {{"reason", reason}});
  return series == nullptr ? 0 : series->counter;
}

class ReportGateTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  StatsRegistry stats_;
  registry::RegistrySnapshot registry_ = Registered();
};

TEST_F(ReportGateTest, RecordsUnderTheRegistrationNotWhatTheReportSays) {
  ReportGate gate(clock_, {}, "cluster.local", /*authenticate=*/true, &stats_);
  metrics::v1::MetricsReport report = Report("cart-0.shop", "frontend");
  report.set_namespace_("prod");
  ASSERT_TRUE(
      gate.Admit(Certificate("spiffe://cluster.local/ns/shop/sa/cart"), registry_, report).ok());
  EXPECT_EQ(report.service(), "cart");
  EXPECT_EQ(report.namespace_(), "shop");
}

TEST_F(ReportGateTest, RefusesForgedReports) {
  ReportGate gate(clock_, {}, "cluster.local", /*authenticate=*/true, &stats_);
  // No certificate at all.
  metrics::v1::MetricsReport report = Report("payments-0.shop", "payments");
  EXPECT_TRUE(absl::IsUnauthenticated(gate.Admit(net::PeerInfo(), registry_, report)));
  EXPECT_EQ(Refusals(stats_, "no_certificate"), 1u);
  // Another workload's node with cart's certificate.
  EXPECT_TRUE(absl::IsPermissionDenied(
      gate.Admit(Certificate("spiffe://cluster.local/ns/shop/sa/cart"), registry_, report)));
  // A node nobody registered.
  report = Report("ghost-0.shop", "ghost");
  EXPECT_TRUE(absl::IsPermissionDenied(
      gate.Admit(Certificate("spiffe://cluster.local/ns/shop/sa/cart"), registry_, report)));
  EXPECT_EQ(Refusals(stats_, "unknown_node"), 2u);
  // A certificate of another trust domain.
  report = Report("cart-0.shop", "cart");
  EXPECT_TRUE(absl::IsPermissionDenied(
      gate.Admit(Certificate("spiffe://evil.example/ns/shop/sa/cart"), registry_, report)));
  EXPECT_EQ(Refusals(stats_, "not_a_workload"), 1u);
}

TEST_F(ReportGateTest, LimitsRatePerIdentity) {
  ReportGate gate(clock_, {.reports_per_second = 10, .burst = 3}, "cluster.local", true, &stats_);
  const net::PeerInfo cart = Certificate("spiffe://cluster.local/ns/shop/sa/cart");
  int admitted = 0;
  for (int i = 0; i < 10; ++i) {
    metrics::v1::MetricsReport report = Report("cart-0.shop", "cart");
    if (gate.Admit(cart, registry_, report).ok()) ++admitted;
  }
  EXPECT_EQ(admitted, 3);
  EXPECT_EQ(Refusals(stats_, "rate_limited"), 7u);
  // Another identity has its own bucket.
  metrics::v1::MetricsReport other = Report("payments-0.shop", "payments");
  EXPECT_TRUE(
      gate.Admit(Certificate("spiffe://cluster.local/ns/shop/sa/payments"), registry_, other).ok());
  // The bucket refills at the rate.
  clock_.Advance(std::chrono::milliseconds(100));
  metrics::v1::MetricsReport again = Report("cart-0.shop", "cart");
  EXPECT_TRUE(gate.Admit(cart, registry_, again).ok());
  EXPECT_FALSE(gate.Admit(cart, registry_, again).ok());
}

TEST_F(ReportGateTest, LimitsSizeAndCallers) {
  ReportGate gate(clock_, {.max_report_bytes = 64, .max_callers = 1}, "cluster.local", true,
                  &stats_);
  metrics::v1::MetricsReport big = Report("cart-0.shop", std::string(100, 'x'));
  EXPECT_TRUE(absl::IsResourceExhausted(
      gate.Admit(Certificate("spiffe://cluster.local/ns/shop/sa/cart"), registry_, big)));
  EXPECT_EQ(Refusals(stats_, "too_large"), 1u);
  metrics::v1::MetricsReport cart = Report("cart-0.shop", "cart");
  EXPECT_TRUE(
      gate.Admit(Certificate("spiffe://cluster.local/ns/shop/sa/cart"), registry_, cart).ok());
  metrics::v1::MetricsReport pay = Report("payments-0.shop", "payments");
  EXPECT_TRUE(absl::IsResourceExhausted(
      gate.Admit(Certificate("spiffe://cluster.local/ns/shop/sa/payments"), registry_, pay)));
  EXPECT_EQ(Refusals(stats_, "too_many_callers"), 1u);
}

TEST_F(ReportGateTest, PlaintextPortLimitsByNode) {
  ReportGate gate(clock_, {.reports_per_second = 1, .burst = 1}, "cluster.local",
                  /*authenticate=*/false, &stats_);
  metrics::v1::MetricsReport report = Report("anything", "whatever");
  EXPECT_TRUE(gate.Admit(net::PeerInfo(), registry_, report).ok());
  EXPECT_EQ(report.service(), "whatever");
  EXPECT_TRUE(absl::IsResourceExhausted(gate.Admit(net::PeerInfo(), registry_, report)));
}

}  // namespace
}  // namespace meshlet::controlplane::telemetry

#include "control-plane/telemetry/telemetry_gate.h"

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

// `service`-0.shop, of service `service` in namespace shop, under service account `service`.
registry::Workload ShopWorkload(const std::string& service) {
  registry::Workload workload;
  workload.id = service + "-0.shop";
  workload.service = service;
  workload.namespace_ = "shop";
  workload.service_account = service;
  return workload;
}

registry::RegistrySnapshot Registered() {
  registry::RegistrySnapshot snapshot;
  snapshot.workloads = {ShopWorkload("cart"), ShopWorkload("payments")};
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
  // The report gate as the control plane builds it, with `limits`.
  struct ReportGate {
    ReportGate(const Clock& clock, TelemetryLimits limits, std::string trust_domain,
               bool authenticate, StatsRegistry* stats)
        : gate(clock, ReportGateOptions(limits, std::move(trust_domain), authenticate), stats) {}
    absl::Status Admit(const net::PeerInfo& peer, const registry::RegistrySnapshot& registry,
                       metrics::v1::MetricsReport& report) {
      return AdmitReport(gate, peer, registry, report);
    }
    TelemetryGate gate;
  };

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
  ReportGate gate(clock_, {.per_second = 10, .burst = 3}, "cluster.local", true, &stats_);
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
  ReportGate gate(clock_, {.max_bytes = 64, .max_callers = 1}, "cluster.local", true, &stats_);
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
  ReportGate gate(clock_, {.per_second = 1, .burst = 1}, "cluster.local",
                  /*authenticate=*/false, &stats_);
  metrics::v1::MetricsReport report = Report("anything", "whatever");
  EXPECT_TRUE(gate.Admit(net::PeerInfo(), registry_, report).ok());
  EXPECT_EQ(report.service(), "whatever");
  EXPECT_TRUE(absl::IsResourceExhausted(gate.Admit(net::PeerInfo(), registry_, report)));
}

TEST_F(ReportGateTest, APodsCertificateReportsForItsOwnPodOnly) {
  ReportGate gate(clock_, {}, "cluster.local", /*authenticate=*/true, &stats_);
  registry::Workload sibling;
  sibling.id = "cart-1.shop";
  sibling.service = "cart-admin";
  sibling.namespace_ = "shop";
  sibling.service_account = "cart";
  registry_.workloads.push_back(sibling);
  net::PeerInfo pod = Certificate("spiffe://cluster.local/ns/shop/sa/cart");
  pod.peer_attestation = "kubernetes:shop/cart-0/0f9c2a6e-5b1d-4c1e-9a51-0e6f7b1c2d3e";
  metrics::v1::MetricsReport own = Report("cart-0.shop", "cart");
  EXPECT_TRUE(gate.Admit(pod, registry_, own).ok());
  // Same identity, another pod's node: refused.
  metrics::v1::MetricsReport other = Report("cart-1.shop", "cart-admin");
  EXPECT_TRUE(absl::IsPermissionDenied(gate.Admit(pod, registry_, other)));
  EXPECT_EQ(Refusals(stats_, "not_its_pod"), 1u);
}

// Span batches: a bucket of spans per identity, and the refusals the caller adds.
class SpanGateTest : public ::testing::Test {
 protected:
  TelemetryGateOptions Options(TelemetryLimits limits) {
    return TelemetryGateOptions{.counter_name = "meshlet_test_span_refusals_total",
                                .counter_help = "Span batches refused.",
                                .what = "span batch",
                                .extra_reasons = {"no_node"},
                                .limits = limits};
  }
  uint64_t Refused(const std::string& reason) {
    StatsSnapshot snapshot = stats_.Snapshot();
    const SeriesSnapshot* series =
        snapshot.Find("meshlet_test_span_refusals_total", {{"reason", reason}});
    return series == nullptr ? 0 : series->counter;
  }

  FakeClock clock_;
  StatsRegistry stats_;
};

TEST_F(SpanGateTest, TakesOneUnitPerSpan) {
  TelemetryGate gate(clock_, Options({.per_second = 100, .burst = 100}), &stats_);
  absl::StatusOr<std::optional<identity::Caller>> cart =
      gate.Authenticate(Certificate("spiffe://cluster.local/ns/shop/sa/cart"));
  ASSERT_TRUE(cart.ok() && cart->has_value());
  EXPECT_TRUE(gate.Take(*cart, "", 60).ok());
  EXPECT_TRUE(absl::IsResourceExhausted(gate.Take(*cart, "", 60)));
  EXPECT_EQ(Refused("rate_limited"), 1u);
  EXPECT_TRUE(gate.Take(*cart, "", 40).ok());
  // Refills at 100 a second: 50 after half a second.
  clock_.Advance(std::chrono::milliseconds(500));
  EXPECT_TRUE(absl::IsResourceExhausted(gate.Take(*cart, "", 51)));
  EXPECT_TRUE(gate.Take(*cart, "", 50).ok());
  // More than the burst at once can never pass: too large, not a rate to wait out.
  clock_.Advance(std::chrono::seconds(10));
  EXPECT_TRUE(absl::IsResourceExhausted(gate.Take(*cart, "", 101)));
  EXPECT_EQ(Refused("too_large"), 1u);
  EXPECT_EQ(Refused("rate_limited"), 2u);
}

// Several replicas: each admits its share of the configured rate and burst, rescaled as replicas
// come and go without handing anyone a full bucket.
TEST_F(SpanGateTest, EachReplicaAdmitsItsShareOfTheLimits) {
  TelemetryGate gate(clock_, Options({.per_second = 100, .burst = 100}), &stats_);
  absl::StatusOr<std::optional<identity::Caller>> cart =
      gate.Authenticate(Certificate("spiffe://cluster.local/ns/shop/sa/cart"));
  ASSERT_TRUE(cart.ok() && cart->has_value());
  gate.SetReplicas(3);
  EXPECT_EQ(gate.replicas(), 3u);
  EXPECT_DOUBLE_EQ(gate.share_per_second(), 100.0 / 3);
  EXPECT_EQ(gate.share_burst(), 34);  // rounded up
  // A third of the burst at once, not the whole.
  EXPECT_TRUE(gate.Take(*cart, "", 34).ok());
  EXPECT_TRUE(absl::IsResourceExhausted(gate.Take(*cart, "", 1)));
  // A third of the rate: 10 units take 300 ms to come back.
  clock_.Advance(std::chrono::milliseconds(290));
  EXPECT_TRUE(absl::IsResourceExhausted(gate.Take(*cart, "", 10)));
  clock_.Advance(std::chrono::milliseconds(20));
  EXPECT_TRUE(gate.Take(*cart, "", 10).ok());
  EXPECT_EQ(Refused("rate_limited"), 2u);

  // Another replica goes: the share grows to half, and cart's bucket, empty, stays empty
  // rather than starting over with 50.
  gate.SetReplicas(2);
  EXPECT_DOUBLE_EQ(gate.share_per_second(), 50);
  EXPECT_EQ(gate.share_burst(), 50);
  EXPECT_TRUE(absl::IsResourceExhausted(gate.Take(*cart, "", 1)));
  // It refills at the new share: 25 units in half a second.
  clock_.Advance(std::chrono::milliseconds(500));
  EXPECT_TRUE(gate.Take(*cart, "", 25).ok());
  EXPECT_TRUE(absl::IsResourceExhausted(gate.Take(*cart, "", 1)));
  // About half used (24.5 of 50) when back to one replica: about half of the whole burst is
  // left, not the 75 the units owed would leave.
  clock_.Advance(std::chrono::milliseconds(500));
  gate.SetReplicas(1);
  EXPECT_DOUBLE_EQ(gate.share_per_second(), 100);
  EXPECT_EQ(gate.share_burst(), 100);
  EXPECT_TRUE(absl::IsResourceExhausted(gate.Take(*cart, "", 53)));
  EXPECT_TRUE(gate.Take(*cart, "", 50).ok());

  // A call above a replica's share but within the configured burst passes a full bucket there,
  // and its debt drains at the share's rate (a 100-unit call with ten replicas: 10 s).
  clock_.Advance(std::chrono::seconds(10));
  gate.SetReplicas(10);
  EXPECT_EQ(gate.share_burst(), 10);
  EXPECT_TRUE(gate.Take(*cart, "", 100).ok());
  clock_.Advance(std::chrono::milliseconds(9000));
  EXPECT_TRUE(absl::IsResourceExhausted(gate.Take(*cart, "", 1)));
  clock_.Advance(std::chrono::milliseconds(1100));
  EXPECT_TRUE(gate.Take(*cart, "", 1).ok());
  // Above the configured burst is still too large.
  clock_.Advance(std::chrono::seconds(10));
  EXPECT_TRUE(absl::IsResourceExhausted(gate.Take(*cart, "", 101)));
  EXPECT_EQ(Refused("too_large"), 1u);
}

TEST_F(SpanGateTest, CountsTheCallersOwnReasons) {
  TelemetryGate gate(clock_, Options({}), &stats_);
  EXPECT_TRUE(absl::IsInvalidArgument(
      gate.Refuse("no_node", absl::InvalidArgumentError("no service.instance.id"))));
  EXPECT_EQ(Refused("no_node"), 1u);
  EXPECT_TRUE(absl::IsUnauthenticated(gate.Authenticate(net::PeerInfo()).status()));
  EXPECT_EQ(Refused("no_certificate"), 1u);
}

TEST_F(SpanGateTest, RegistrationIsTheCertificatesOwn) {
  TelemetryGate gate(clock_, Options({}), &stats_);
  const registry::RegistrySnapshot registry = Registered();
  absl::StatusOr<std::optional<identity::Caller>> cart =
      gate.Authenticate(Certificate("spiffe://cluster.local/ns/shop/sa/cart"));
  ASSERT_TRUE(cart.ok() && cart->has_value());
  absl::StatusOr<const registry::Workload*> own =
      gate.Registration(**cart, registry, "cart-0.shop");
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_EQ((*own)->service, "cart");
  EXPECT_TRUE(
      absl::IsPermissionDenied(gate.Registration(**cart, registry, "payments-0.shop").status()));
  EXPECT_EQ(Refused("unknown_node"), 1u);
}

}  // namespace
}  // namespace meshlet::controlplane::telemetry

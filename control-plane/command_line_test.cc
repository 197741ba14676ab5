#include "control-plane/command_line.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace meshlet::controlplane {
namespace {

TEST(CommandLineTest, Defaults) {
  absl::StatusOr<CommandLine> parsed = ParseCommandLine({});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->action, CommandLine::Action::kRun);
  EXPECT_EQ(parsed->control_plane.data_dir, "/var/lib/meshlet");
  EXPECT_EQ(parsed->control_plane.api_address, "127.0.0.1:15014");
  EXPECT_EQ(parsed->xds.address, "0.0.0.0:15012");
  // The discovery port is served with the CA's certificate for the control plane's identity.
  EXPECT_TRUE(parsed->xds.self_issued());
  EXPECT_EQ(parsed->serving_certificate.namespace_, "meshlet-system");
  EXPECT_EQ(parsed->serving_certificate.service_account, "meshlet-control-plane");
  EXPECT_TRUE(parsed->serving_certificate.dns_names.empty());
  EXPECT_EQ(parsed->ca.authority.trust_domain, "cluster.local");
  EXPECT_EQ(parsed->telemetry.otlp_address, "0.0.0.0:4318");
  EXPECT_FALSE(parsed->telemetry.otlp_address_explicit);
}

// The golden metrics' per-report cluster limit: 1000 unless set, at least 1.
TEST(CommandLineTest, GoldenMaxClustersPerReport) {
  absl::StatusOr<CommandLine> parsed = ParseCommandLine({});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->telemetry.golden_limits.max_clusters_per_report, 1000u);
  parsed = ParseCommandLine({"--golden-max-clusters-per-report", "5000"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->telemetry.golden_limits.max_clusters_per_report, 5000u);
  parsed = ParseCommandLine({"--golden-max-clusters-per-report=0"});
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.status().message().find("--golden-max-clusters-per-report"), std::string::npos)
      << parsed.status();
}

// The trace receivers mark spans from unverified senders unless told to refuse them.
TEST(CommandLineTest, TraceRefuseUnverified) {
  absl::StatusOr<CommandLine> parsed = ParseCommandLine({});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_FALSE(parsed->telemetry.refuse_unverified_spans);
  parsed = ParseCommandLine({"--trace-refuse-unverified"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->telemetry.refuse_unverified_spans);
  parsed = ParseCommandLine({"--trace-refuse-unverified=false"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_FALSE(parsed->telemetry.refuse_unverified_spans);
  parsed = ParseCommandLine({"--trace-refuse-unverified=yes"});
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().message(), "--trace-refuse-unverified=\"yes\": must be true or false");
}

TEST(CommandLineTest, GoldenHistory) {
  absl::StatusOr<CommandLine> parsed = ParseCommandLine(
      {"--golden-history-resolution=5s", "--golden-history-retention=2h",
       "--golden-history-max-series=7", "--golden-history-max-points=99", "--config-events-max=5"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const telemetry::GoldenHistoryLimits& history = parsed->telemetry.golden_limits.history;
  EXPECT_EQ(history.resolution, std::chrono::seconds(5));
  EXPECT_EQ(history.retention, std::chrono::hours(2));
  EXPECT_EQ(history.max_series, 7u);
  EXPECT_EQ(history.max_points, 99u);
  EXPECT_EQ(history.open_for, std::chrono::seconds(30));
  EXPECT_EQ(parsed->telemetry.config_events.max_events, 5u);
  parsed = ParseCommandLine({"--golden-history-resolution=1m"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  // At least three slots stay open for late reports.
  EXPECT_EQ(parsed->telemetry.golden_limits.history.open_for, std::chrono::minutes(3));
}

// One command line mixes the control plane's own flags with every service's, in any order.
TEST(CommandLineTest, EveryTableInOneCommandLine) {
  absl::StatusOr<CommandLine> parsed = ParseCommandLine(
      {"--xds-address", "127.0.0.1:15012", "--data-dir=/d", "--xds-plaintext", "--cert-ttl=1h",
       "--api-address", "127.0.0.1:1", "--otlp-address=", "--log-level=debug",
       "--deregister-grace=2s", "--kubernetes-api=", "--golden-retention=1m",
       "--trace-store-max-spans", "50", "--trust-domain=example.org", "--identity-namespace=mesh",
       "--identity-service-account", "cp", "--xds-dns-names=cp.mesh.svc,cp"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->control_plane.data_dir, "/d");
  EXPECT_EQ(parsed->control_plane.api_address, "127.0.0.1:1");
  EXPECT_EQ(parsed->control_plane.log_level, LogLevel::kDebug);
  EXPECT_EQ(parsed->control_plane.deregister_grace, std::chrono::seconds(2));
  EXPECT_EQ(parsed->xds.address, "127.0.0.1:15012");
  EXPECT_TRUE(parsed->xds.plaintext);
  EXPECT_EQ(parsed->ca.authority.default_ttl, absl::Hours(1));
  EXPECT_EQ(parsed->ca.authority.trust_domain, "example.org");
  EXPECT_EQ(parsed->ca.kubernetes.api, "");
  EXPECT_EQ(parsed->serving_certificate.namespace_, "mesh");
  EXPECT_EQ(parsed->serving_certificate.service_account, "cp");
  EXPECT_EQ(parsed->serving_certificate.dns_names, (std::vector<std::string>{"cp.mesh.svc", "cp"}));
  EXPECT_EQ(parsed->telemetry.otlp_address, "");
  EXPECT_TRUE(parsed->telemetry.otlp_address_explicit);
  EXPECT_EQ(parsed->telemetry.golden_limits.retention, std::chrono::minutes(1));
  EXPECT_EQ(parsed->telemetry.store_limits.max_spans, 50u);
}

// --revision names the control plane's objects, the certificate and the webhook's injection,
// unless a flag for one of them says otherwise.
TEST(CommandLineTest, RevisionNamesWhatFollowsFromIt) {
  absl::StatusOr<CommandLine> parsed = ParseCommandLine({"--revision=canary"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->control_plane.revision, "canary");
  EXPECT_EQ(parsed->webhook.revision, "canary");
  EXPECT_EQ(parsed->serving_certificate.service_account, "meshlet-control-plane-canary");
  EXPECT_EQ(parsed->serving_certificate.dns_names,
            (std::vector<std::string>{"meshlet-control-plane-canary",
                                      "meshlet-control-plane-canary.meshlet-system",
                                      "meshlet-control-plane-canary.meshlet-system.svc",
                                      "meshlet-control-plane-canary.meshlet-system.svc.cluster."
                                      "local"}));
  EXPECT_EQ(parsed->webhook.ca_bundle.configuration_name, "meshlet-sidecar-injector-canary");
  EXPECT_EQ(parsed->webhook.trust_bundle.namespace_selector, "meshlet.io/rev=canary");
  EXPECT_EQ(parsed->kubernetes_policy.lease_name, "meshlet-control-plane-canary");

  parsed = ParseCommandLine({"--identity-service-account=cp", "--revision", "0-2-0",
                             "--xds-dns-names=cp.mesh.svc", "--webhook-configuration=hook",
                             "--trust-bundle-namespaces=team=a"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->serving_certificate.service_account, "cp");
  EXPECT_EQ(parsed->serving_certificate.dns_names, std::vector<std::string>{"cp.mesh.svc"});
  EXPECT_EQ(parsed->webhook.ca_bundle.configuration_name, "hook");
  EXPECT_EQ(parsed->webhook.trust_bundle.namespace_selector, "team=a");

  // "default" is the unnamed revision: nothing changes.
  parsed = ParseCommandLine({"--revision=default"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->control_plane.revision, "");
  EXPECT_EQ(parsed->serving_certificate.service_account, "meshlet-control-plane");
  EXPECT_TRUE(parsed->serving_certificate.dns_names.empty());
  EXPECT_EQ(parsed->webhook.trust_bundle.namespace_selector, "meshlet.io/inject=enabled");

  absl::StatusOr<CommandLine> bad = ParseCommandLine({"--revision=Canary"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("--revision"), std::string::npos) << bad.status();
  EXPECT_NE(bad.status().message().find("is not a revision name"), std::string::npos);
}

// In a pod the downward API's POD_NAMESPACE is the control plane's namespace; a bad one is an
// error only where the self-issued certificate uses it.
TEST(CommandLineTest, IdentityNamespaceDefaultsToPodNamespace) {
  ::setenv("POD_NAMESPACE", "mesh-ops", 1);
  absl::StatusOr<CommandLine> parsed = ParseCommandLine({});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->serving_certificate.namespace_, "mesh-ops");
  parsed = ParseCommandLine({"--identity-namespace=other"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->serving_certificate.namespace_, "other");
  ::setenv("POD_NAMESPACE", "Mesh_Ops", 1);
  parsed = ParseCommandLine({});
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(
      parsed.status().message().find("--identity-namespace=\"Mesh_Ops\" (from $POD_NAMESPACE)"),
      std::string::npos)
      << parsed.status();
  EXPECT_TRUE(ParseCommandLine({"--identity-namespace=ok"}).ok());
  // The certificate serves the API too: only without TLS on both ports is the namespace unused.
  EXPECT_FALSE(ParseCommandLine({"--xds-plaintext"}).ok());
  EXPECT_TRUE(ParseCommandLine({"--xds-plaintext", "--api-plaintext"}).ok());
  ::unsetenv("POD_NAMESPACE");
}

// The self-issued certificate (the API's, and the discovery port's without certificate files)
// needs a --cert-ttl of 2s or more; with neither using it, shorter workload lifetimes are allowed.
TEST(CommandLineTest, AShortCertTtlIsRefusedOnlyForTheSelfIssuedCertificate) {
  EXPECT_FALSE(ParseCommandLine({"--cert-ttl=1s"}).ok());
  EXPECT_TRUE(ParseCommandLine({"--cert-ttl=2s"}).ok());
  EXPECT_FALSE(ParseCommandLine({"--cert-ttl=1s", "--xds-plaintext"}).ok());
  EXPECT_TRUE(ParseCommandLine({"--cert-ttl=1s", "--xds-plaintext", "--api-plaintext"}).ok());
  EXPECT_TRUE(ParseCommandLine({"--cert-ttl=1s", "--xds-tls-cert=c.pem", "--xds-tls-key=k.pem",
                                "--api-plaintext"})
                  .ok());
}

TEST(CommandLineTest, HelpAndVersionEndParsing) {
  absl::StatusOr<CommandLine> parsed = ParseCommandLine({"--data-dir=/d", "--help", "--nosuch"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->action, CommandLine::Action::kHelp);
  EXPECT_EQ(ParseCommandLine({"-h"})->action, CommandLine::Action::kHelp);
  // Checks across flags do not apply either.
  parsed = ParseCommandLine({"--xds-tls-cert=c.pem", "--version"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->action, CommandLine::Action::kVersion);
}

TEST(CommandLineTest, ErrorsNameTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  for (const Case& c : std::vector<Case>{
           {{"--api-address", "nonsense"}, "--api-address=\"nonsense\": "},
           {{"--data-dir="}, "--data-dir=\"\": must not be empty"},
           {{"--log-level=loud"}, "--log-level=\"loud\": unknown level; one of trace"},
           {{"--deregister-grace=soon"}, "--deregister-grace=\"soon\": "},
           {{"--data-dir"}, "--data-dir needs a value (DIR)"},
           {{"--colour=red"}, "unknown flag --colour (see --help)"},
           {{"--xds-colour=red"}, "unknown flag --xds-colour"},
           {{"serve"}, "unexpected argument \"serve\""},
           {{"--xds-tls-key=k.pem"}, "--xds-tls-cert and --xds-tls-key go together"},
           {{"--ca-cert=c.pem"}, "--ca-cert and --ca-key go together"},
           {{"--cert-ttl=0s"}, "--cert-ttl=\"0s\": must be a positive duration such as 24h"},
           {{"--cert-ttl=48h"}, "CA flags: "},
           {{"--kubernetes-audience="}, "--kubernetes-audience=\"\": must not be empty"},
           {{"--cert-ttl=1s"}, "--cert-ttl=1s: the discovery port's own certificate"},
           {{"--identity-namespace=Mesh"}, "--identity-namespace=\"Mesh\": must be a namespace"},
           {{"--identity-service-account=a b"}, "--identity-service-account=\"a b\": "},
           {{"--xds-dns-names=cp,a_b"}, "--xds-dns-names=\"cp,a_b\": \"a_b\" is not a host name"},
           {{"--zipkin-address=nowhere"}, "--zipkin-address=\"nowhere\": "},
           {{"--trace-store-max-bytes=0"},
            "--trace-store-max-bytes=\"0\": must be a positive integer"},
           {{"--golden-retention=5s"},
            "--golden-retention=\"5s\": must be a duration of at least 10s"},
           {{"--golden-history-resolution=2.5s"},
            "--golden-history-resolution=\"2.5s\": must be whole seconds from 1s to 10m"},
           {{"--golden-history-retention=30d"},
            "--golden-history-retention=\"30d\": must be a duration from 1m to 7d"},
           {{"--webhook-ca-bundle-interval=0s"},
            "--webhook-ca-bundle-interval=\"0s\": must be a positive duration such as 30s"},
           {{"--trust-bundle-interval=often"},
            "--trust-bundle-interval=\"often\": must be a positive duration such as 30s"},
           {{"--kubernetes-timeout=inf"}, "--kubernetes-timeout=\"inf\": must be at most 876000h"},
           {{"--kubernetes-watch-timeout=inf"},
            "--kubernetes-watch-timeout=\"inf\": must be at most 876000h"},
           {{"--kubernetes-watch-timeout=500ms"},
            "--kubernetes-watch-timeout=\"500ms\": must be a duration of at least 1s such as 5m"},
           {{"--etcd-timeout=-5s"},
            "--etcd-timeout=\"-5s\": must be a positive duration such as 5s"},
           {{"--http-idle-timeout=-1s"},
            "--http-idle-timeout=\"-1s\": must be a duration of 0 or more such as 120s"},
           {{"--deregister-grace=-30s"},
            "--deregister-grace=\"-30s\": must be a duration of 0 or more such as 30s"},
       }) {
    absl::StatusOr<CommandLine> parsed = ParseCommandLine(c.args);
    ASSERT_FALSE(parsed.ok()) << c.expected;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find(c.expected), absl::string_view::npos)
        << parsed.status();
  }
}

TEST(CommandLineTest, HelpListsEveryFlagInItsSection) {
  const std::string help = UsageText();
  size_t last = 0;
  for (const char* line : {"usage: control-plane [flags]",
                           "\nFlags:\n",
                           "  --data-dir DIR ",
                           "  --api-plaintext ",
                           "  --log-level LEVEL ",
                           "  -h, --help ",
                           "\nDiscovery (ADS",
                           "  --xds-plaintext ",
                           "  --xds-keepalive-timeout DURATION ",
                           "\nThe control plane's certificate",
                           "  --identity-namespace NS ",
                           "  --xds-dns-names NAMES ",
                           "renewed at half of it",
                           "\nWorkload CA",
                           "  --cert-max-ttl ",
                           "\nKubernetes service-account attestation",
                           "  --kubernetes-timeout DURATION ",
                           "\nTrace collector",
                           "  --otlp-address HOST:PORT ",
                           "  --golden-retention DURATION "}) {
    const size_t at = help.find(line, last);
    ASSERT_NE(at, std::string::npos) << line << " after offset " << last << " in:\n" << help;
    last = at;
  }
}

}  // namespace
}  // namespace meshlet::controlplane

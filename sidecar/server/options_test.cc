#include "sidecar/server/options.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::server {
namespace {

TEST(OptionsTest, Defaults) {
  absl::StatusOr<ParsedCommandLine> parsed = ParseCommandLine({"--config", "s.yaml"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->action, ParsedCommandLine::Action::kRun);
  EXPECT_EQ(parsed->options.config_path, "s.yaml");
  EXPECT_EQ(parsed->options.concurrency, 2);
  EXPECT_EQ(parsed->options.admin_address.ToString(), "127.0.0.1:15000");
  EXPECT_EQ(parsed->options.log_level, LogLevel::kInfo);
  EXPECT_EQ(parsed->options.drain_time, std::chrono::seconds(30));
  EXPECT_EQ(parsed->options.access_log_path, "");
  EXPECT_EQ(parsed->options.malloc_trim_threshold, size_t{4} << 20);
}

TEST(OptionsTest, MallocTrimThresholdTakesSizes) {
  for (const auto& [text, bytes] :
       std::vector<std::pair<std::string, size_t>>{{"0", 0},
                                                   {"65536", 65536},
                                                   {"512KiB", 512 << 10},
                                                   {"16MiB", 16 << 20},
                                                   {"1GiB", size_t{1} << 30}}) {
    absl::StatusOr<ParsedCommandLine> parsed =
        ParseCommandLine({"--config=a.yaml", "--malloc-trim-threshold=" + text});
    ASSERT_TRUE(parsed.ok()) << text << ": " << parsed.status();
    EXPECT_EQ(parsed->options.malloc_trim_threshold, bytes) << text;
  }
}

TEST(OptionsTest, StatsBudgets) {
  absl::StatusOr<ParsedCommandLine> parsed = ParseCommandLine({"--config=a.yaml"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->options.stats_max_series, 100000u);
  EXPECT_EQ(parsed->options.stats_max_cluster_series, 100000u);
  parsed = ParseCommandLine(
      {"--config=a.yaml", "--stats-max-series=20000", "--stats-max-cluster-series", "0"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->options.stats_max_series, 20000u);
  EXPECT_EQ(parsed->options.stats_max_cluster_series, 0u);
  // Below 10000 the process's own series might not fit.
  parsed = ParseCommandLine({"--config=a.yaml", "--stats-max-series=9999"});
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.status().message().find("--stats-max-series"), std::string::npos)
      << parsed.status();
}

TEST(OptionsTest, TlsCacheFlags) {
  absl::StatusOr<ParsedCommandLine> parsed = ParseCommandLine({"--config=a.yaml"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->options.upstream_tls_session_cache, 4096u);
  EXPECT_EQ(parsed->options.tls_verified_chain_cache, 4096u);
  parsed = ParseCommandLine(
      {"--config=a.yaml", "--upstream-tls-session-cache=0", "--tls-verified-chain-cache=100"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->options.upstream_tls_session_cache, 0u);
  EXPECT_EQ(parsed->options.tls_verified_chain_cache, 100u);
}

TEST(OptionsTest, OnDemandFlags) {
  absl::StatusOr<ParsedCommandLine> parsed = ParseCommandLine({"--config=a.yaml"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->options.on_demand_max_keys, 4096u);
  EXPECT_EQ(parsed->options.on_demand_missing_ttl, std::chrono::seconds(30));
  EXPECT_EQ(parsed->options.on_demand_idle_time, std::chrono::minutes(15));
  parsed =
      ParseCommandLine({"--config=a.yaml", "--on-demand-max-keys=100", "--on-demand-missing-ttl",
                        "5s", "--on-demand-max-waiting=7", "--on-demand-idle-time=90s"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->options.on_demand_max_keys, 100u);
  EXPECT_EQ(parsed->options.on_demand_max_waiting, 7u);
  EXPECT_EQ(parsed->options.on_demand_missing_ttl, std::chrono::seconds(5));
  EXPECT_EQ(parsed->options.on_demand_idle_time, std::chrono::seconds(90));
  // A table of no keys could answer nothing; a ttl under a second would ask on every request.
  for (const char* bad : {"--on-demand-max-keys=0", "--on-demand-missing-ttl=100ms",
                          "--on-demand-max-waiting=0", "--on-demand-idle-time=5s"}) {
    parsed = ParseCommandLine({"--config=a.yaml", bad});
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_NE(parsed.status().message().find(std::string(bad).substr(0, 15)), std::string::npos)
        << parsed.status();
  }
}

TEST(OptionsTest, EveryFlagBothSpellings) {
  absl::StatusOr<ParsedCommandLine> parsed =
      ParseCommandLine({"--config=a.yaml", "--concurrency", "4", "--admin_address=127.0.0.1:0",
                        "--log-level=debug", "--drain-time=1500ms", "--access_log", "/dev/stdout",
                        "--admin-host=web-1.pods", "--admin_host", "sidecar.local"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->options.admin_hosts, (std::vector<std::string>{"web-1.pods", "sidecar.local"}));
  EXPECT_EQ(parsed->options.config_path, "a.yaml");
  EXPECT_EQ(parsed->options.concurrency, 4);
  EXPECT_EQ(parsed->options.admin_address.port(), 0);
  EXPECT_EQ(parsed->options.log_level, LogLevel::kDebug);
  EXPECT_EQ(parsed->options.drain_time, std::chrono::milliseconds(1500));
  EXPECT_EQ(parsed->options.access_log_path, "/dev/stdout");
}

// A gateway proxy: its namespace and label from --gateway.
TEST(OptionsTest, GatewayFlag) {
  absl::StatusOr<ParsedCommandLine> parsed =
      ParseCommandLine({"--xds=cp.mesh:15012", "--node-id=edge-0", "--gateway=shop/edge"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const config::BootstrapFlags flags = parsed->options.bootstrap_flags();
  EXPECT_EQ(flags.node_namespace, "shop");
  ASSERT_EQ(flags.node_labels.size(), 1u);
  EXPECT_EQ(flags.node_labels[0].first, "meshlet.io/gateway");
  EXPECT_EQ(flags.node_labels[0].second, "shop/edge");
}

// --node-locality as the injector writes it from the downward API: any part may be empty (a
// cluster that does not copy its nodes' topology labels onto pods gives only the node).
TEST(OptionsTest, NodeLocalityPartsMayBeEmpty) {
  auto locality = [](const char* value) -> absl::StatusOr<xds::Locality> {
    absl::StatusOr<ParsedCommandLine> parsed =
        ParseCommandLine({"--xds=127.0.0.1:17012", "--xds-plaintext=true", "--node-id=a", value});
    if (!parsed.ok()) return parsed.status();
    absl::StatusOr<config::BootstrapConfig> bootstrap =
        config::LoadBootstrap("", parsed->options.bootstrap_flags());
    if (!bootstrap.ok()) return bootstrap.status();
    return bootstrap->node.locality();
  };
  absl::StatusOr<xds::Locality> l = locality("--node-locality=eu/eu-a/node-1");
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->region(), "eu");
  EXPECT_EQ(l->zone(), "eu-a");
  EXPECT_EQ(l->node(), "node-1");
  l = locality("--node-locality=//node-1");
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->region(), "");
  EXPECT_EQ(l->zone(), "");
  EXPECT_EQ(l->node(), "node-1");
  l = locality("--node-locality=eu-a");
  ASSERT_FALSE(l.ok());
  EXPECT_TRUE(absl::StrContains(l.status().message(), "--node-locality")) << l.status();
}

TEST(OptionsTest, XdsFlags) {
  absl::StatusOr<ParsedCommandLine> parsed = ParseCommandLine(
      {"--xds=cp.mesh:15012", "--xds-ca", "ca.pem", "--xds-delta=false", "--xds-cache-dir=/var/x",
       "--node-id=web-1", "--node-service=web", "--node-label=app=web", "--node-label=v=2",
       "--node-address=10.0.0.5", "--node-port=8080", "--node-port=9090"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const ServerOptions& o = parsed->options;
  EXPECT_TRUE(o.config_path.empty());
  EXPECT_EQ(o.xds_address, "cp.mesh:15012");
  EXPECT_EQ(o.xds_ca_file, "ca.pem");
  EXPECT_FALSE(o.xds_delta);  // state of the world, asked for
  // The incremental stream is the default.
  absl::StatusOr<ParsedCommandLine> by_default = ParseCommandLine({"--xds=cp.mesh:15012"});
  ASSERT_TRUE(by_default.ok()) << by_default.status();
  EXPECT_TRUE(by_default->options.xds_delta);
  EXPECT_FALSE(o.xds_plaintext);
  EXPECT_EQ(o.xds_cache_dir, "/var/x");
  EXPECT_EQ(o.node_id, "web-1");
  EXPECT_EQ(o.node_service, "web");
  ASSERT_EQ(o.node_labels.size(), 2u);
  EXPECT_EQ(o.node_labels[0].first, "app");
  EXPECT_EQ(o.node_labels[0].second, "web");
  EXPECT_EQ(o.node_addresses, std::vector<std::string>{"10.0.0.5"});
  EXPECT_EQ(o.node_ports, (std::vector<uint32_t>{8080, 9090}));
}

TEST(OptionsTest, CaptureCheckTakesThePodAddressAsDownwardApiExpandsIt) {
  const std::pair<const char*, const char*> cases[] = {
      {"10.1.2.3:15008", "10.1.2.3:15008"},
      {"[fd00::5]:15008", "[fd00::5]:15008"},
      {"fd00::5:15008", "[fd00::5]:15008"},  // $(POD_IP):15008 with an IPv6 POD_IP
  };
  for (const auto& [flag, want] : cases) {
    absl::StatusOr<ParsedCommandLine> parsed =
        ParseCommandLine({"--config=c.yaml", absl::StrCat("--capture-check=", flag)});
    ASSERT_TRUE(parsed.ok()) << flag << ": " << parsed.status();
    ASSERT_TRUE(parsed->options.capture_check.has_value()) << flag;
    EXPECT_EQ(parsed->options.capture_check->ToString(), want) << flag;
  }
  for (const char* bad : {"10.1.2.3", "fd00::5", "pod:15008", "10.1.2.3:99999", "::1:x"}) {
    EXPECT_FALSE(ParseCommandLine({"--config=c.yaml", absl::StrCat("--capture-check=", bad)}).ok())
        << bad;
  }
}

TEST(OptionsTest, AutoValuesComeFromThePodsHostNameAndInterfaces) {
  // What `meshctl inject --podman` writes: podman 4.3 expands no $(VAR) and has no status.podIP.
  absl::StatusOr<ParsedCommandLine> parsed =
      ParseCommandLine({"--xds=10.0.0.9:15012", "--node-id=auto", "--node-namespace=shop",
                        "--node-address=auto", "--capture-check=auto:15008"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ServerOptions o = parsed->options;
  EXPECT_TRUE(HasAutoValues(o));
  EXPECT_FALSE(o.capture_check.has_value());
  const PodEnvironment pod{
      .host_name = "web-pod-0",
      .addresses = {*net::Address::Parse("10.88.0.7:0"), *net::Address::Parse("[fd00::7]:0")}};
  ASSERT_TRUE(ResolveAutoValues(o, pod).ok());
  EXPECT_FALSE(HasAutoValues(o));
  EXPECT_EQ(o.node_id, "web-pod-0.shop");
  EXPECT_EQ(o.node_addresses, (std::vector<std::string>{"10.88.0.7", "fd00::7"}));
  ASSERT_TRUE(o.capture_check.has_value());
  EXPECT_EQ(o.capture_check->ToString(), "10.88.0.7:15008");
  EXPECT_EQ(o.bootstrap_flags().node_id, "web-pod-0.shop");

  // Given addresses stay, auto ones come after; without a namespace the id is the host name.
  parsed = ParseCommandLine(
      {"--xds=cp:15012", "--node-id=auto", "--node-address=10.0.0.1", "--node-address=auto"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  o = parsed->options;
  ASSERT_TRUE(ResolveAutoValues(o, pod).ok());
  EXPECT_EQ(o.node_id, "web-pod-0");
  EXPECT_EQ(o.node_addresses, (std::vector<std::string>{"10.0.0.1", "10.88.0.7", "fd00::7"}));

  // Nothing to find: a clear error rather than a node without an address.
  o = parsed->options;
  absl::Status none = ResolveAutoValues(o, PodEnvironment{.host_name = "web-pod-0"});
  EXPECT_EQ(none.message(),
            "--node-address=auto: no network interface has an address other than loopback and "
            "link-local ones");
  parsed = ParseCommandLine({"--config=c.yaml", "--capture-check=auto:15008"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  o = parsed->options;
  EXPECT_NE(ResolveAutoValues(o, PodEnvironment{}).message().find("--capture-check=auto:PORT"),
            std::string::npos);
  parsed = ParseCommandLine({"--xds=cp:15012", "--node-id=auto"});
  o = parsed->options;
  EXPECT_EQ(ResolveAutoValues(o, PodEnvironment{}).message(),
            "--node-id=auto: this host has no name");
  // Without auto values nothing is looked up or changed.
  parsed = ParseCommandLine({"--xds=cp:15012", "--node-id=web-1", "--node-address=10.0.0.5"});
  EXPECT_FALSE(HasAutoValues(parsed->options));
  for (const char* bad : {"auto", "auto:0", "auto:x", "auto:70000"}) {
    EXPECT_FALSE(ParseCommandLine({"--config=c.yaml", absl::StrCat("--capture-check=", bad)}).ok())
        << bad;
  }
  // A later --capture-check replaces an earlier auto one, and the other way round.
  parsed = ParseCommandLine(
      {"--config=c.yaml", "--capture-check=auto:15008", "--capture-check=10.1.2.3:15008"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_FALSE(parsed->options.capture_check_auto_port.has_value());
  EXPECT_TRUE(parsed->options.capture_check.has_value());
}

TEST(OptionsTest, ThisProcessHasAPodEnvironment) {
  absl::StatusOr<PodEnvironment> pod = ReadPodEnvironment();
  ASSERT_TRUE(pod.ok()) << pod.status();
  EXPECT_FALSE(pod->host_name.empty());
  for (const net::Address& a : pod->addresses) EXPECT_FALSE(a.IsLoopback()) << a.ToString();
}

TEST(OptionsTest, HelpAndVersionNeedNoConfig) {
  EXPECT_EQ(ParseCommandLine({"--help"})->action, ParsedCommandLine::Action::kHelp);
  EXPECT_EQ(ParseCommandLine({"-h"})->action, ParsedCommandLine::Action::kHelp);
  EXPECT_EQ(ParseCommandLine({"--version"})->action, ParsedCommandLine::Action::kVersion);
  EXPECT_NE(UsageText().find("--drain-time"), std::string::npos);
}

TEST(OptionsTest, ErrorsNameTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  for (const Case& c : std::vector<Case>{
           {{}, "--config is required, or --xds"},
           {{"--config=x", "--concurrency=0"}, "--concurrency=\"0\""},
           {{"--config=x", "--concurrency=two"}, "--concurrency=\"two\""},
           {{"--config=x", "--admin-address=localhost:1"}, "--admin-address"},
           {{"--config=x", "--log-level=loud"}, "--log-level"},
           {{"--config=x", "--admin-host=sidecar.local:15000"}, "--admin-host"},
           {{"--config=x", "--admin-host="}, "must be a host name without port"},
           {{"--config=x", "--drain-time=soon"}, "--drain-time"},
           {{"--config=x", "--drain-time=-1s"}, "--drain-time"},
           {{"--config=x", "--malloc-trim-threshold=4MB"}, "--malloc-trim-threshold=\"4MB\""},
           {{"--config=x", "--malloc-trim-threshold=2GiB"}, "at most 1GiB"},
           {{"--config=x", "--malloc-trim-threshold=-1"}, "--malloc-trim-threshold"},
           {{"--config=x", "--colour"}, "unknown flag --colour"},
           {{"--config"}, "--config needs a value"},
           {{"--config=x", "extra"}, "unexpected argument \"extra\""},
           {{"--xds=control-plane"}, "--xds=\"control-plane\": must be host:port"},
           {{"--xds=cp-a:15012,cp-b"}, "\"cp-b\" must be host:port (a list"},
           {{"--xds=cp:15012", "--xds-plaintext=yes"}, "--xds-plaintext"},
           {{"--xds=cp:15012", "--xds-plaintext=true", "--xds-ca=ca.pem"}, "exclude each other"},
           {{"--xds=cp:15012", "--node-label=novalue"}, "--node-label"},
           {{"--xds=cp:15012", "--node-port=0"}, "--node-port"},
           {{"--xds=cp:15012", "--gateway=edge"}, "must be NAMESPACE/NAME"},
           {{"--xds=cp:15012", "--gateway=shop/"}, "must be NAMESPACE/NAME"},
           {{"--xds=cp:15012", "--gateway=shop/edge", "--node-namespace=web"}, "own namespace"},
           {{"--xds=cp:15012", "--gateway=shop/edge", "--node-service=web"}, "no --node-service"},
           {{"--xds=cp:15012", "--xds-server-identity=control-plane"}, "must be a spiffe:// id"},
       }) {
    absl::StatusOr<ParsedCommandLine> parsed = ParseCommandLine(c.args);
    ASSERT_FALSE(parsed.ok()) << c.expected;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find(c.expected), absl::string_view::npos)
        << parsed.status();
  }
}

}  // namespace
}  // namespace meshlet::sidecar::server

namespace meshlet::sidecar::server {
namespace {

TEST(OptionsTest, WorkloadCertificateFlags) {
  absl::StatusOr<ParsedCommandLine> parsed = ParseCommandLine(
      {"--xds=127.0.0.1:15012", "--xds-plaintext=true", "--node-id=a", "--join-token-file=t",
       "--ca-address=127.0.0.1:15013", "--ca-plaintext=true", "--trust-domain=example.org",
       "--cert-ttl=1h", "--ca-startup-timeout=5s"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const ServerOptions& o = parsed->options;
  EXPECT_TRUE(o.workload_identity());
  EXPECT_EQ(o.join_token_file, "t");
  EXPECT_EQ(o.ca_address, "127.0.0.1:15013");
  EXPECT_TRUE(o.ca_plaintext);
  EXPECT_EQ(o.trust_domain, "example.org");
  EXPECT_EQ(o.cert_ttl, std::chrono::hours(1));
  EXPECT_EQ(o.ca_startup_timeout, std::chrono::seconds(5));

  auto error = [](std::vector<std::string> args) {
    absl::StatusOr<ParsedCommandLine> p = ParseCommandLine(args);
    return p.ok() ? std::string("ok") : std::string(p.status().message());
  };
  EXPECT_EQ(error({"--config=c", "--ca-address=h:1"}),
            "--ca-address needs a CA credential: --join-token-file or --kubernetes-token-file");
  EXPECT_EQ(error({"--config=c", "--join-token-file=a", "--kubernetes-token-file=b"}),
            "--join-token-file and --kubernetes-token-file exclude each other");
  EXPECT_EQ(error({"--xds=h:1", "--xds-ca=ca.pem", "--join-token-file=a", "--ca-plaintext=true"}),
            "--ca-plaintext: the xDS channel uses TLS (--xds-ca), so the CA channel must too");
  EXPECT_EQ(error({"--config=c", "--trust-domain=Bad Domain"})
                .rfind("--trust-domain=\"Bad Domain\": ", 0),
            0u);
  EXPECT_EQ(error({"--config=c", "--join-token-file=a", "--cert-ttl=0s"}),
            "--cert-ttl=\"0s\": must be a duration of at least 1s such as 24h");
}

// Every DURATION flag names itself, the value and what it takes, and none takes "inf" or more than
// a clock's now can have added to it.
TEST(OptionsTest, DurationFlagsSayWhatTheyTakeAndRefuseUnboundedValues) {
  auto error = [](std::vector<std::string> args) {
    args.insert(args.begin(), "--config=c");
    absl::StatusOr<ParsedCommandLine> p = ParseCommandLine(args);
    return p.ok() ? std::string("ok") : std::string(p.status().message());
  };
  EXPECT_EQ(error({"--drain-time=-1s"}),
            "--drain-time=\"-1s\": must be a duration of 0 or more such as 30s");
  EXPECT_EQ(error({"--drain-listen-time=soon"}),
            "--drain-listen-time=\"soon\": must be a duration of 0 or more such as 1s");
  EXPECT_EQ(error({"--hand-over-timeout=500ms"}),
            "--hand-over-timeout=\"500ms\": must be a duration of at least 1s such as 60s");
  EXPECT_EQ(error({"--hand-over-confirm-timeout=0"}),
            "--hand-over-confirm-timeout=\"0\": must be a duration of at least 1s such as 10s");
  EXPECT_EQ(error({"--ca-startup-timeout=0s"}),
            "--ca-startup-timeout=\"0s\": must be a positive duration such as 30s");
  for (const char* flag : {"--drain-time", "--drain-listen-time", "--hand-over-timeout",
                           "--hand-over-confirm-timeout", "--cert-ttl", "--ca-startup-timeout"}) {
    EXPECT_EQ(error({absl::StrCat(flag, "=inf")}),
              absl::StrCat(flag, "=\"inf\": must be at most 876000h"));
    EXPECT_EQ(error({absl::StrCat(flag, "=3000000h")}),
              absl::StrCat(flag, "=\"3000000h\": must be at most 876000h"));
  }
  absl::StatusOr<ParsedCommandLine> parsed =
      ParseCommandLine({"--config=c", "--drain-time=0", "--hand-over-timeout=1s"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->options.drain_time, Duration(0));
  EXPECT_EQ(parsed->options.hand_over_timeout, std::chrono::seconds(1));
}

}  // namespace
}  // namespace meshlet::sidecar::server

namespace meshlet::sidecar::server {
namespace {

// The command line `./dev demo` gives a sidecar (as Kubernetes injection will): everything that
// defaults to the control plane goes to the --xds address, the names come from --node-*.
TEST(OptionsTest, BootstrapDefaultsFollowTheFlags) {
  absl::StatusOr<ParsedCommandLine> parsed = ParseCommandLine(
      {"--xds=127.0.0.1:17012", "--xds-plaintext=true", "--xds-cache-dir=/var/x",
       "--node-id=frontend-0", "--node-service=frontend", "--node-namespace=default",
       "--node-service-account=frontend", "--node-label=version=v1", "--node-address=127.0.0.1",
       "--node-port=17080", "--join-token-file=t", "--ca-plaintext=true"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  absl::StatusOr<config::BootstrapConfig> bootstrap =
      config::LoadBootstrap("", parsed->options.bootstrap_flags());
  ASSERT_TRUE(bootstrap.ok()) << bootstrap.status();
  EXPECT_EQ(bootstrap->xds.address, "127.0.0.1:17012");
  EXPECT_EQ(bootstrap->data_dir, "/var/x");
  EXPECT_EQ(bootstrap->node.id(), "frontend-0");
  EXPECT_EQ(bootstrap->node.labels().at("version"), "v1");
  EXPECT_EQ(bootstrap->node.ports(0), 17080u);
  EXPECT_EQ(bootstrap->metrics_report.address, "127.0.0.1:17012");
  EXPECT_FALSE(bootstrap->metrics_report.xds_tls);
  EXPECT_EQ(bootstrap->metrics_report.service, "frontend");
  EXPECT_EQ(bootstrap->ca.address, "127.0.0.1:17012");

  // --ca-address moves only the CA.
  parsed = ParseCommandLine({"--xds=127.0.0.1:17012", "--xds-plaintext=true", "--node-id=a",
                             "--node-namespace=n", "--node-service-account=s",
                             "--kubernetes-token-file=t", "--ca-address=127.0.0.1:17013"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  bootstrap = config::LoadBootstrap("", parsed->options.bootstrap_flags());
  ASSERT_TRUE(bootstrap.ok()) << bootstrap.status();
  EXPECT_EQ(bootstrap->ca.address, "127.0.0.1:17013");
  EXPECT_EQ(bootstrap->metrics_report.address, "127.0.0.1:17012");

  // Without a CA credential there is no workload certificate to check.
  parsed = ParseCommandLine({"--xds=127.0.0.1:17012", "--xds-plaintext=true", "--node-id=a"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(config::LoadBootstrap("", parsed->options.bootstrap_flags()).ok());
}

}  // namespace
}  // namespace meshlet::sidecar::server

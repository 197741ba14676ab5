// xds_load: N simulated sidecars — the sidecar's real XdsClient, each with its own connection and
// stream, each validating every update with the real BuildSnapshot — against one control plane,
// timing how long a change takes to reach all of them. Two ways to drive changes:
//
//   file mode (--resources FILE): the control plane is an xds-file-server process; each round
//     rewrites its resources file with a new marker and sends it SIGHUP.
//   policy mode (--meshctl PATH --api HOST:PORT --token-file FILE --ca-file FILE): the control
//     plane is the real control-plane binary (--ca-file: the roots that verify its API). The
//     clients register as workloads of --services services (labels version=v1|v2); each round runs
//     `meshctl apply` with a new weighted split of an HTTPRoute, which goes policy API → store →
//     translator → ADS, and the round ends when every client applied the route table carrying the
//     new weight.
//
//   driver mode (--driver-stdio): something else changes the mesh (tests/bench/mesh_scale.py
//     changes an EndpointSlice in a fake Kubernetes API server). Each round xds_load prints
//     "change N" on stdout and reads one line from stdin; the change is made when that line is
//     "ok". With --endpoint-marker CLUSTER the round a configuration carries is read from that
//     cluster's load assignment: the endpoint whose address is 10.255.X.Y:PORT marks round
//     X * 256 + Y. The clients register under --node-namespace / --node-service (no app ports,
//     so they add no endpoints), with --dependencies as their meshlet.io/dependencies label.
//
// Prints p50/p99 of the per-round "all applied" time and of the per-client apply latency, and
// the control plane's CPU time and RSS (from /proc).
//
// Several control-plane replicas (xds_load_replicas.sh): --address and --server-pid take lists;
// client i talks to replica i % N first (the others after it, as a sidecar given them all), the
// rounds' applies go to the first replica's API, and CPU and RSS are printed per replica.
// --etcd-pids adds the etcd members' CPU and RSS.
//
// TLS (--tls-ca FILE --tls-cert FILE --tls-key FILE): every client connects over TLS as a sidecar
// does (ALPN h2, no session resumption), verifies the control plane against the trust bundle
// --tls-ca (and its SPIFFE id with --server-identity) and presents the client certificate
// --tls-cert, one workload identity shared by all clients; in policy mode their Node then carries
// that identity's namespace (default) and --service-account. Without them: plaintext h2c.
//
// Usage: xds_load --server-pid PID[,PID...] --address 127.0.0.1:PORT[,...] [--etcd-pids PID,...]
//                 (--resources FILE | --meshctl PATH --api HOST:PORT --token-file FILE
//                  --ca-file FILE [--services 10] [--scoped] [--work-dir DIR])
//                 [--clients 1000] [--rounds 20] [--delta] [--no-validate]
//                 [--tls-ca FILE --tls-cert FILE --tls-key FILE [--server-identity ID]]
//                 [--service-account NAME]
//        xds_load ... --driver-stdio --endpoint-marker CLUSTER [--node-namespace NS]
//                 [--node-service NAME] [--dependencies LIST]
//
// --scoped applies a MeshConfig with scopeToDependencies and gives every client the label
// meshlet.io/dependencies=svc-0, so each gets only its own service and svc-0.
//
// All clients share one thread here, so with validation on, the time measured includes 1000
// BuildSnapshot calls in a row (the clients' CPU, not the control plane's); --no-validate keeps
// only parsing, which isolates the control plane's push latency.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/base/logging.h"
#include "common/base/random.h"
#include "common/base/version.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/flags/flags.h"
#include "common/stats/stats.h"
#include "common/tls/certificate.h"
#include "common/tls/tls_context.h"
#include "common/tls/tls_context_provider.h"
#include "common/tls/tls_transport.h"
#include "sidecar/config/translate.h"
#include "sidecar/config/xds_client.h"
#include "xds/capabilities.h"

namespace {

using meshlet::Duration;
using meshlet::MonotonicTime;
namespace config = meshlet::sidecar::config;

std::string ResourcesYaml(const std::string& marker) {
  // A node-sized configuration: 20 clusters, one route table naming them, two listeners.
  std::string text = "static_resources:\n  listeners:\n";
  for (int i = 0; i < 2; ++i) {
    absl::StrAppend(&text, "  - name: listener-", i, "\n    address: 127.0.0.1:0\n",
                    "    direction: OUTBOUND\n    protocol: PROTOCOL_HTTP\n",
                    "    route_config_name: routes\n");
  }
  text += "  routes:\n  - name: routes\n    virtual_hosts:\n";
  for (int i = 0; i < 20; ++i) {
    absl::StrAppend(&text, "    - name: svc-", i, "\n      domains: [\"svc-", i,
                    "\"]\n      routes:\n      - match: {prefix: /}\n        route: {cluster: svc-",
                    i, "}\n");
  }
  absl::StrAppend(&text, "    - name: marker\n      domains: [\"marker\"]\n      routes:\n",
                  "      - match: {prefix: /}\n        direct_response: {status: 200, body: \"",
                  marker, "\"}\n");
  text += "  clusters:\n";
  for (int i = 0; i < 20; ++i) {
    absl::StrAppend(&text, "  - name: svc-", i, "\n    connect_timeout: 1s\n    load_assignment:\n",
                    "      endpoints:\n      - address: 10.0.", i, ".1:8080\n",
                    "      - address: 10.0.", i, ".2:8080\n");
  }
  return text;
}

void WriteFile(const std::string& path, const std::string& text) {
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out << text;
  }
  std::rename(temp.c_str(), path.c_str());
}

// utime+stime in seconds and VmRSS in MiB of `pid`.
std::pair<double, double> ProcessUsage(int pid) {
  double cpu = 0, rss = 0;
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  std::getline(stat, line);
  size_t paren = line.rfind(')');
  if (paren != std::string::npos) {
    std::vector<std::string> fields = absl::StrSplit(line.substr(paren + 2), ' ');
    // After the command: state is field 0; utime and stime are fields 11 and 12.
    uint64_t utime = 0, stime = 0;
    if (fields.size() > 12 && absl::SimpleAtoi(fields[11], &utime) &&
        absl::SimpleAtoi(fields[12], &stime)) {
      cpu = static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
    }
  }
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      uint64_t kb = 0;
      std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (parts.size() >= 2 && absl::SimpleAtoi(parts[1], &kb)) rss = kb / 1024.0;
    }
  }
  return {cpu, rss};
}

double Percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t index = static_cast<size_t>(q * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(index, values.size() - 1)];
}

// Policy mode: the Services, one TrafficPolicy and the HTTPRoute whose weight marks a round.
constexpr char kSplitRoute[] = "load.split";  // "<HTTPRoute name>.<rule name>"

std::string PolicyYaml(int services, int round, bool scoped) {
  std::string text;
  // Scoped: each sidecar gets only the services it declares it calls (meshlet.io/dependencies).
  if (scoped)
    text += "kind: MeshConfig\nmetadata: {name: mesh}\nspec: {scopeToDependencies: true}\n---\n";
  for (int s = 0; s < services; ++s) {
    absl::StrAppend(&text, "kind: Service\nmetadata: {name: svc-", s,
                    "}\nspec:\n  ports: [{name: http, port: 8080}]\n---\n");
  }
  absl::StrAppend(&text,
                  "kind: TrafficPolicy\nmetadata: {name: svc-0}\nspec:\n  target: svc-0\n"
                  "  retries: {attempts: 2, retryOn: [connect-failure, reset]}\n---\n",
                  "kind: HTTPRoute\nmetadata: {name: load}\nspec:\n  target: svc-0\n"
                  "  rules:\n  - name: split\n    backends:\n",
                  "    - {service: svc-0, subset: {version: v1}, weight: ", 1000 + round, "}\n",
                  "    - {service: svc-0, subset: {version: v2}, weight: 1000}\n");
  return text;
}

// The round `cluster`'s load assignment in `set` carries: its endpoint 10.255.X.Y:PORT marks
// round X * 256 + Y. Empty when absent.
std::string EndpointMarkerOf(const config::ResourceSet& set, const std::string& cluster) {
  for (const auto& assignment : set.endpoints) {
    if (assignment.cluster_name() != cluster) continue;
    for (const auto& endpoint : assignment.endpoints()) {
      absl::string_view address = endpoint.address();
      if (!absl::ConsumePrefix(&address, "10.255.")) continue;
      std::vector<absl::string_view> parts = absl::StrSplit(address, absl::ByAnyChar(".:"));
      int high = 0, low = 0;
      if (parts.size() >= 2 && absl::SimpleAtoi(parts[0], &high) &&
          absl::SimpleAtoi(parts[1], &low)) {
        return absl::StrCat("round-", high * 256 + low);
      }
    }
  }
  return "";
}

// The round a virtual host carries: in file mode the marker host's body, in policy mode the
// split route's first weight (1000 + round). Empty when absent.
std::string MarkerOf(const meshlet::xds::VirtualHost& vhost, bool policy_mode) {
  for (const auto& r : vhost.routes()) {
    if (policy_mode) {
      if (r.name() != kSplitRoute || r.route().weighted_clusters().clusters_size() == 0) continue;
      return absl::StrCat("round-", r.route().weighted_clusters().clusters(0).weight() - 1000);
    }
    if (vhost.name() == "marker") return r.direct_response().body();
  }
  return "";
}

// The round a configuration carries, in a route table's own hosts or a ServiceRoute's (the
// control plane splits the table for clients that announce service-routes).
std::string MarkerOf(const config::ResourceSet& set, bool policy_mode) {
  for (const auto& route : set.routes) {
    for (const auto& vhost : route.virtual_hosts()) {
      std::string marker = MarkerOf(vhost, policy_mode);
      if (!marker.empty()) return marker;
    }
  }
  for (const auto& service_route : set.service_routes) {
    std::string marker = MarkerOf(service_route.virtual_host(), policy_mode);
    if (!marker.empty()) return marker;
  }
  return "";
}

// Starts `meshctl apply -f FILE`; the caller reaps it with waitpid.
pid_t StartApply(const std::string& meshctl, const std::string& api, const std::string& token_file,
                 const std::string& ca_file, const std::string& file) {
  std::vector<std::string> args = {meshctl, "apply",        "-f",       file,        "--server",
                                   api,     "--token-file", token_file, "--ca-file", ca_file};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // Its report ("... configured") is not wanted here; errors still reach stderr.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const int error = posix_spawn(&pid, meshctl.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return error == 0 ? pid : -1;
}

bool WaitApply(pid_t pid) {
  int status = 0;
  if (pid <= 0 || waitpid(pid, &status, 0) != pid) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// The clients' TLS: the sidecar's own settings for its xDS channel (XdsTlsConfigFromCaFile: the
// trust bundle, ALPN h2, the control plane's SPIFFE id when given) with the client certificate
// every client presents. One context for all clients; it keeps no sessions, so every connection
// is a full handshake, as each sidecar's first one is.
absl::StatusOr<meshlet::net::TransportFactory> ClientTls(const std::string& ca_file,
                                                         const std::string& server_identity,
                                                         const std::string& cert_file,
                                                         const std::string& key_file) {
  namespace tls = meshlet::tls;
  absl::StatusOr<tls::TlsContextConfig> config =
      config::XdsTlsConfigFromCaFile(ca_file, server_identity);
  if (!config.ok()) return config.status();
  for (auto [path, out] : {std::pair{&cert_file, &config->certificate_chain_pem},
                           std::pair{&key_file, &config->private_key_pem}}) {
    absl::StatusOr<std::string> pem = tls::ReadSmallFile(*path);
    if (!pem.ok()) return pem.status();
    *out = *std::move(pem);
  }
  absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
      tls::TlsContext::CreateClient(*config);
  if (!context.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--tls-cert ", cert_file, ", --tls-key ",
                                                   key_file, ": ", context.status().message()));
  }
  return tls::TlsTransport::Factory(std::make_shared<tls::TlsContextProvider>(*context));
}

}  // namespace

int main(int argc, char** argv) {
  namespace flags = meshlet::flags;
  int clients = 1000, rounds = 20, services = 10, connect_timeout = 180;
  std::string server_pids_text, etcd_pids_text;
  bool delta = false;
  bool no_validate = false;
  bool scoped = false;
  bool help = false;
  std::string address, resources, meshctl, api, token_file, ca_file, work_dir = "/tmp";
  std::string tls_ca, tls_cert, tls_key, server_identity, service_account = "load";
  bool driver_stdio = false;
  std::string endpoint_marker, node_namespace = "default", node_service = "load", dependencies;
  const std::vector<flags::Flag> table = {
      flags::Required(
          flags::StringFlag("--server-pid", "PID[,PID...]", &server_pids_text,
                            "the control plane's process (each replica's), for CPU time and RSS")),
      flags::Required(flags::StringFlag("--address", "IP:PORT[,IP:PORT...]", &address,
                                        "the discovery address (each replica's)")),
      flags::StringFlag("--etcd-pids", "PID,...", &etcd_pids_text,
                        "etcd members, for their CPU time and RSS"),
      flags::StringFlag("--resources", "FILE", &resources,
                        "file mode: the xds-file-server's resources file"),
      flags::StringFlag("--meshctl", "PATH", &meshctl, "policy mode: the meshctl binary"),
      flags::StringFlag("--api", "HOST:PORT", &api, "policy mode: the control plane's API"),
      flags::StringFlag("--token-file", "FILE", &token_file, "policy mode: the API token"),
      flags::StringFlag("--ca-file", "FILE", &ca_file,
                        "policy mode: the CA roots that verify the API's certificate"),
      flags::IntFlag("--services", "N", &services,
                     "policy mode: services the clients register in (default 10)"),
      flags::SwitchFlag("--scoped", &scoped, "policy mode: scope each client to its dependencies"),
      flags::StringFlag("--work-dir", "DIR", &work_dir, "policy mode: where policy files go"),
      flags::IntFlag("--clients", "N", &clients, "simulated sidecars (default 1000)"),
      flags::IntFlag("--rounds", "N", &rounds, "changes (default 20)"),
      flags::IntFlag("--connect-timeout", "SECONDS", &connect_timeout,
                     "how long all clients may take to get their first configuration (default "
                     "180)"),
      flags::SwitchFlag("--delta", &delta, "incremental streams"),
      flags::SwitchFlag("--no-validate", &no_validate, "parse updates without BuildSnapshot"),
      flags::StringFlag("--tls-ca", "FILE", &tls_ca,
                        "TLS: the trust bundle that verifies the control plane (else h2c)"),
      flags::StringFlag("--tls-cert", "FILE", &tls_cert,
                        "TLS: the client certificate chain every client presents"),
      flags::StringFlag("--tls-key", "FILE", &tls_key, "TLS: its private key"),
      flags::StringFlag("--server-identity", "SPIFFE_ID", &server_identity,
                        "TLS: the SPIFFE id the control plane's certificate must carry"),
      flags::StringFlag("--service-account", "NAME", &service_account,
                        "policy mode: the clients' service account (default load)"),
      flags::SwitchFlag("--driver-stdio", &driver_stdio,
                        "driver mode: print \"change N\" per round, wait for \"ok\" on stdin"),
      flags::StringFlag("--endpoint-marker", "CLUSTER", &endpoint_marker,
                        "driver mode: read the round from this cluster's endpoint 10.255.X.Y"),
      flags::StringFlag("--node-namespace", "NS", &node_namespace,
                        "driver mode: the clients' namespace (default default)"),
      flags::StringFlag("--node-service", "NAME", &node_service,
                        "driver mode: the clients' service (default load)"),
      flags::StringFlag("--dependencies", "LIST", &dependencies,
                        "driver mode: the clients' meshlet.io/dependencies label"),
      flags::HelpFlag(&help, "this help"),
  };
  absl::StatusOr<flags::ParsedArgs> parsed =
      flags::Parse(table, std::vector<std::string>(argv + 1, argv + argc));
  if (parsed.ok() && help) {
    std::fputs(flags::FlagTable(table).c_str(), stdout);
    return 0;
  }
  std::vector<int> server_pids, etcd_pids;
  for (auto [text, out] :
       {std::pair{&server_pids_text, &server_pids}, std::pair{&etcd_pids_text, &etcd_pids}}) {
    for (absl::string_view part : absl::StrSplit(*text, ',', absl::SkipEmpty())) {
      int pid = 0;
      if (!absl::SimpleAtoi(part, &pid) || pid <= 0) {
        parsed = absl::InvalidArgumentError(absl::StrCat("\"", part, "\" is not a process id"));
      }
      out->push_back(pid);
    }
  }
  const bool policy_mode = !meshctl.empty();
  if (parsed.ok() && driver_stdio) {
    if (policy_mode || !resources.empty() || endpoint_marker.empty()) {
      parsed = absl::InvalidArgumentError(
          "--driver-stdio needs --endpoint-marker and neither --resources nor --meshctl");
    }
  } else if (parsed.ok() && (policy_mode ? api.empty() || token_file.empty() || ca_file.empty()
                                         : resources.empty())) {
    parsed = absl::InvalidArgumentError(
        "give --resources FILE, or --meshctl PATH --api HOST:PORT --token-file FILE --ca-file "
        "FILE, or --driver-stdio --endpoint-marker CLUSTER");
  }
  const bool use_tls = !tls_ca.empty();
  if (parsed.ok() && (use_tls != !tls_cert.empty() || use_tls != !tls_key.empty())) {
    parsed = absl::InvalidArgumentError("--tls-ca, --tls-cert and --tls-key go together");
  }
  if (parsed.ok() && !use_tls && !server_identity.empty()) {
    parsed = absl::InvalidArgumentError("--server-identity needs --tls-ca");
  }
  if (!parsed.ok()) {
    std::fprintf(stderr, "xds_load: %s\n\n%s", std::string(parsed.status().message()).c_str(),
                 flags::FlagTable(table).c_str());
    return flags::kUsageExitCode;
  }
  const bool validate = !no_validate;
  meshlet::SetLogLevel(meshlet::LogLevel::kError);
  // A write to a stream the control plane reset (an overloaded one closes some) must end that
  // client's stream, not the whole tool, as in the sidecar and the control plane.
  ::signal(SIGPIPE, SIG_IGN);
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);

  auto server_addresses = config::ResolveHostPorts(address);
  if (!server_addresses.ok()) {
    std::fprintf(stderr, "%s\n", std::string(server_addresses.status().message()).c_str());
    return 2;
  }
  const size_t replicas = server_addresses->size();
  meshlet::net::TransportFactory transport;
  if (use_tls) {
    absl::StatusOr<meshlet::net::TransportFactory> factory =
        ClientTls(tls_ca, server_identity, tls_cert, tls_key);
    if (!factory.ok()) {
      std::fprintf(stderr, "xds_load: %s\n", std::string(factory.status().message()).c_str());
      return 2;
    }
    transport = *std::move(factory);
  }
  // CPU seconds and RSS MiB of each of `pids`.
  auto usage = [](const std::vector<int>& pids) {
    std::vector<std::pair<double, double>> out;
    for (int pid : pids) out.push_back(ProcessUsage(pid));
    return out;
  };
  const std::string policy_file = absl::StrCat(work_dir, "/load-policy-", getpid(), ".yaml");
  // Starts round `round`'s change; returns false when it could not be made. In policy mode
  // meshctl runs while the clients keep serving; `finish` reaps it.
  pid_t apply_pid = -1;
  auto change = [&](int round) {
    const std::string marker = absl::StrCat("round-", round);
    if (driver_stdio) {
      // The driver makes the change, then answers; the clients wait meanwhile (a few ms).
      std::printf("change %d\n", round);
      std::fflush(stdout);
      char answer[64] = {};
      return std::fgets(answer, sizeof(answer), stdin) != nullptr &&
             absl::string_view(answer) == "ok\n";
    }
    if (!policy_mode) {
      WriteFile(resources, ResourcesYaml(marker));
      return kill(server_pids[0], SIGHUP) == 0;
    }
    WriteFile(policy_file, PolicyYaml(services, round, scoped));
    apply_pid = StartApply(meshctl, api, token_file, ca_file, policy_file);
    return apply_pid > 0;
  };
  auto finish = [&]() {
    if (!policy_mode) return true;
    const bool ok = WaitApply(apply_pid);
    apply_pid = -1;
    if (!ok) std::fprintf(stderr, "meshctl apply failed\n");
    return ok;
  };
  meshlet::event::Loop loop;
  meshlet::StatsRegistry stats;
  std::string expected_marker = "round-0";
  if (!change(0) || !finish()) return 1;

  struct Sim {
    std::unique_ptr<config::XdsClient> client;
    std::string marker;  // of the configuration it last applied
    // What it runs, so the next BuildSnapshot reuses the unchanged parts as a sidecar does.
    std::shared_ptr<const config::Snapshot> snapshot;
    MonotonicTime applied_at{};
  };
  std::vector<std::unique_ptr<Sim>> sims;
  int applied = 0;
  for (int i = 0; i < clients; ++i) {
    auto sim = std::make_unique<Sim>();
    Sim* raw = sim.get();
    config::XdsClientOptions options;
    // Replica i % N first, then the others in turn.
    for (size_t r = 0; r < replicas; ++r) {
      options.server_addresses.push_back((*server_addresses)[(i + r) % replicas]);
    }
    options.node.set_id(absl::StrCat("load-", i));
    // This release's sidecar, reading what it reads (large responses included), as its bootstrap
    // says.
    options.node.set_sidecar_version(
        absl::StrCat(meshlet::xds::kSidecarVersionPrefix, meshlet::kMeshletVersion));
    for (const std::string& name : meshlet::xds::CapabilitySet::All().Names()) {
      options.node.add_capabilities(name);
    }
    options.transport_factory = transport;
    if (driver_stdio) {
      // A workload without app ports: it adds no endpoint to any service.
      options.node.set_service(node_service);
      options.node.set_namespace_(node_namespace);
      options.node.set_service_account(service_account);
      options.node.add_addresses(
          absl::StrCat("10.", i / 65536, ".", (i / 256) % 256, ".", i % 256));
      if (!dependencies.empty()) {
        (*options.node.mutable_labels())["meshlet.io/dependencies"] = dependencies;
      }
    } else if (policy_mode) {
      // A workload of svc-(i % services), versions alternating, at its own address.
      options.node.set_service(absl::StrCat("svc-", i % services));
      options.node.set_namespace_("default");
      options.node.set_service_account(service_account);
      options.node.add_addresses(
          absl::StrCat("10.", i / 65536, ".", (i / 256) % 256, ".", i % 256));
      options.node.add_ports(8080);
      (*options.node.mutable_labels())["version"] = (i / services) % 2 == 0 ? "v1" : "v2";
      // Every client calls svc-0 (the service whose route changes each round).
      if (scoped) (*options.node.mutable_labels())["meshlet.io/dependencies"] = "svc-0";
    } else {
      options.node.set_service("load");
    }
    options.delta = delta;
    raw->client = std::make_unique<config::XdsClient>(
        loop, options, config::ResourceSet{},
        [raw, &applied, &expected_marker, validate, policy_mode,
         &endpoint_marker](const config::ResourceSet& set) -> absl::Status {
          // The real validation a sidecar does; listeners are not bound here.
          if (validate) {
            auto snapshot = config::BuildSnapshot(set, raw->snapshot.get());
            if (!snapshot.ok()) return snapshot.status();
            raw->snapshot = *std::move(snapshot);
          }
          const std::string marker = endpoint_marker.empty()
                                         ? MarkerOf(set, policy_mode)
                                         : EndpointMarkerOf(set, endpoint_marker);
          if (marker == expected_marker && raw->marker != marker) {
            raw->marker = marker;
            raw->applied_at = std::chrono::steady_clock::now();
            ++applied;
          }
          return absl::OkStatus();
        },
        stats.shared_shard(), meshlet::RealRandom::ThreadLocal());
    sims.push_back(std::move(sim));
  }
  auto run_for = [&](Duration d) {
    meshlet::event::Timer pause(loop, [] {});
    pause.Enable(d);
    loop.RunUntil([&] { return !pause.enabled(); }, d + std::chrono::seconds(1));
  };
  const auto servers_at_connect = usage(server_pids);
  const double own_cpu_at_connect = ProcessUsage(getpid()).first;
  const MonotonicTime connect_start = std::chrono::steady_clock::now();
  for (auto& sim : sims) sim->client->Start();
  bool all =
      loop.RunUntil([&] { return applied == clients; }, std::chrono::seconds(connect_timeout));
  const double connect_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - connect_start).count();
  const auto servers_connected = usage(server_pids);
  const double own_connect_cpu = ProcessUsage(getpid()).first - own_cpu_at_connect;
  if (!all) {
    std::fprintf(stderr, "only %d of %d clients got the initial configuration\n", applied, clients);
    for (const auto& sim : sims) {
      if (sim->marker.empty()) {
        std::fprintf(stderr, "the first client without it: %s\n",
                     sim->client->StatusJson().c_str());
        break;
      }
    }
    return 1;
  }
  // In policy mode every registration changed the endpoints of its service: let the pushes
  // those caused finish before measuring.
  if (policy_mode || driver_stdio) run_for(std::chrono::seconds(3));
  const auto servers_before = usage(server_pids);
  const auto etcd_before = usage(etcd_pids);
  const double own_cpu_before = ProcessUsage(getpid()).first;
  double load_before = 0;
  getloadavg(&load_before, 1);

  std::vector<double> round_seconds, client_seconds;
  for (int round = 1; round <= rounds; ++round) {
    applied = 0;
    expected_marker = absl::StrCat("round-", round);
    const MonotonicTime start = std::chrono::steady_clock::now();
    if (!change(round)) return 1;
    if (!loop.RunUntil([&] { return applied == clients; }, std::chrono::seconds(60))) {
      std::fprintf(stderr, "round %d: only %d of %d clients applied\n", round, applied, clients);
      return 1;
    }
    round_seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    for (const auto& sim : sims) {
      client_seconds.push_back(std::chrono::duration<double>(sim->applied_at - start).count());
    }
    if (!finish()) return 1;
    // Let the last ACKs reach the server before the next change.
    run_for(std::chrono::milliseconds(200));
  }
  const auto servers_after = usage(server_pids);
  const auto etcd_after = usage(etcd_pids);
  const double own_cpu = ProcessUsage(getpid()).first - own_cpu_before;
  double load_after = 0;
  getloadavg(&load_after, 1);
  std::printf("clients=%d mode=%s transport=%s driver=%s rounds=%d validate=%s\n", clients,
              delta ? "delta" : "sotw", use_tls ? "TLS, client certificate" : "plaintext h2c",
              driver_stdio  ? "external (stdio)"
              : policy_mode ? absl::StrCat("meshctl apply (", services, " services",
                                           scoped ? ", scoped to dependencies" : "", ")")
                                  .c_str()
                            : "file+SIGHUP",
              rounds, validate ? "yes" : "no");
  double servers_connect_cpu = 0;
  for (size_t r = 0; r < servers_connected.size(); ++r) {
    servers_connect_cpu += servers_connected[r].first - servers_at_connect[r].first;
  }
  std::printf(
      "initial connect+configure all: %.3f s (control plane CPU %.2f s, load tool CPU %.2f s)\n",
      connect_seconds, servers_connect_cpu, own_connect_cpu);
  std::printf(
      "change -> all applied+ACKed: p50 %.3f s, p99 %.3f s, max %.3f s "
      "(includes the 100 ms debounce)\n",
      Percentile(round_seconds, 0.5), Percentile(round_seconds, 0.99),
      Percentile(round_seconds, 1.0));
  std::printf("change -> one client applied: p50 %.3f s, p99 %.3f s\n",
              Percentile(client_seconds, 0.5), Percentile(client_seconds, 0.99));
  for (size_t r = 0; r < servers_before.size(); ++r) {
    const double cpu = servers_after[r].first - servers_before[r].first;
    const size_t streams = clients / replicas + (r < clients % replicas ? 1 : 0);
    std::printf(
        "control plane%s: RSS %.1f MiB with %zu streams (%.1f MiB after the rounds), "
        "CPU %.2f s for %d rounds (%.3f s per round)\n",
        servers_before.size() > 1 ? absl::StrCat(" replica ", r).c_str() : "",
        servers_before[r].second, streams, servers_after[r].second, cpu, rounds,
        cpu / std::max(rounds, 1));
  }
  for (size_t m = 0; m < etcd_before.size(); ++m) {
    const double cpu = etcd_after[m].first - etcd_before[m].first;
    std::printf("etcd member %zu: RSS %.1f MiB, CPU %.2f s for %d rounds (%.3f s per round)\n", m,
                etcd_after[m].second, cpu, rounds, cpu / std::max(rounds, 1));
  }
  // On a shared machine the wall-clock times above depend on what else runs; CPU times do not.
  std::printf(
      "load tool (all %d clients, one thread): CPU %.2f s for %d rounds (%.3f s per round); "
      "machine load average %.1f before, %.1f after\n",
      clients, own_cpu, rounds, own_cpu / std::max(rounds, 1), load_before, load_after);
  for (auto& sim : sims) sim->client->Stop();
  sims.clear();
  loop.RunUntilIdle();
  if (policy_mode) std::remove(policy_file.c_str());
  return 0;
}

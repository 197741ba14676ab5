// xds_load: N simulated sidecars — the sidecar's real XdsClient, each with its own connection and
// stream, each validating every update with the real BuildSnapshot — against one control plane
// (an xds-file-server process). Each round rewrites the control plane's resources file with a new
// marker, sends it SIGHUP, and measures the time until every client applied (and so ACKed) the
// new configuration. Prints p50/p99 of the per-round "all applied" time and of the per-client
// apply latency, and the control plane's CPU time and RSS (from /proc).
//
// Usage: xds_load --server-pid PID --address 127.0.0.1:PORT --resources FILE
//                 [--clients 1000] [--rounds 20] [--delta] [--no-validate]
//
// All clients share one thread here, so with validation on, the time measured includes 1000
// BuildSnapshot calls in a row (the clients' CPU, not the control plane's); --no-validate keeps
// only parsing, which isolates the control plane's push latency.

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/logging.h"
#include "common/base/random.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/stats/stats.h"
#include "sidecar/config/translate.h"
#include "sidecar/config/xds_client.h"

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

}  // namespace

int main(int argc, char** argv) {
  int server_pid = 0, clients = 1000, rounds = 20;
  bool delta = false;
  bool validate = true;
  std::string address, resources;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (arg == "--server-pid") {
      (void)absl::SimpleAtoi(value(), &server_pid);
    } else if (arg == "--address") {
      address = value();
    } else if (arg == "--resources") {
      resources = value();
    } else if (arg == "--clients") {
      (void)absl::SimpleAtoi(value(), &clients);
    } else if (arg == "--rounds") {
      (void)absl::SimpleAtoi(value(), &rounds);
    } else if (arg == "--delta") {
      delta = true;
    } else if (arg == "--no-validate") {
      validate = false;
    } else {
      std::fprintf(stderr, "unknown argument %s\n", arg.c_str());
      return 2;
    }
  }
  if (server_pid <= 0 || address.empty() || resources.empty() || clients <= 0) {
    std::fprintf(stderr,
                 "usage: xds_load --server-pid PID --address IP:PORT --resources FILE "
                 "[--clients N] [--rounds N] [--delta]\n");
    return 2;
  }
  meshlet::SetLogLevel(meshlet::LogLevel::kError);
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);

  auto server_address = config::ResolveHostPort(address);
  if (!server_address.ok()) {
    std::fprintf(stderr, "%s\n", std::string(server_address.status().message()).c_str());
    return 2;
  }
  meshlet::event::Loop loop;
  meshlet::StatsRegistry stats;
  std::string expected_marker = "round-0";
  WriteFile(resources, ResourcesYaml(expected_marker));
  kill(server_pid, SIGHUP);

  struct Sim {
    std::unique_ptr<config::XdsClient> client;
    std::string marker;  // of the configuration it last applied
    MonotonicTime applied_at{};
  };
  std::vector<std::unique_ptr<Sim>> sims;
  int applied = 0;
  for (int i = 0; i < clients; ++i) {
    auto sim = std::make_unique<Sim>();
    Sim* raw = sim.get();
    config::XdsClientOptions options;
    options.server_address = *server_address;
    options.node.set_id(absl::StrCat("load-", i));
    options.node.set_service("load");
    options.delta = delta;
    raw->client = std::make_unique<config::XdsClient>(
        loop, options, config::ResourceSet{},
        [raw, &applied, &expected_marker,
         validate](const config::ResourceSet& set) -> absl::Status {
          // The real validation a sidecar does; listeners are not bound here.
          if (validate) {
            auto snapshot = config::BuildSnapshot(set);
            if (!snapshot.ok()) return snapshot.status();
          }
          for (const auto& route : set.routes) {
            for (const auto& vhost : route.virtual_hosts()) {
              if (vhost.name() != "marker" || vhost.routes_size() == 0) continue;
              const std::string& body = vhost.routes(0).direct_response().body();
              if (body == expected_marker && raw->marker != body) {
                raw->marker = body;
                raw->applied_at = std::chrono::steady_clock::now();
                ++applied;
              }
            }
          }
          return absl::OkStatus();
        },
        stats.shared_shard(), meshlet::RealRandom::ThreadLocal());
    sims.push_back(std::move(sim));
  }
  const MonotonicTime connect_start = std::chrono::steady_clock::now();
  for (auto& sim : sims) sim->client->Start();
  bool all = loop.RunUntil([&] { return applied == clients; }, std::chrono::seconds(120));
  const double connect_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - connect_start).count();
  if (!all) {
    std::fprintf(stderr, "only %d of %d clients got the initial configuration\n", applied, clients);
    return 1;
  }
  auto [cpu_before, rss_connected] = ProcessUsage(server_pid);

  std::vector<double> round_seconds, client_seconds;
  for (int round = 1; round <= rounds; ++round) {
    applied = 0;
    expected_marker = absl::StrCat("round-", round);
    WriteFile(resources, ResourcesYaml(expected_marker));
    const MonotonicTime start = std::chrono::steady_clock::now();
    kill(server_pid, SIGHUP);
    if (!loop.RunUntil([&] { return applied == clients; }, std::chrono::seconds(60))) {
      std::fprintf(stderr, "round %d: only %d of %d clients applied\n", round, applied, clients);
      return 1;
    }
    round_seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    for (const auto& sim : sims) {
      client_seconds.push_back(std::chrono::duration<double>(sim->applied_at - start).count());
    }
    // Let the last ACKs reach the server before the next change.
    meshlet::event::Timer pause(loop, [] {});
    pause.Enable(std::chrono::milliseconds(200));
    loop.RunUntil([&] { return !pause.enabled(); }, std::chrono::seconds(1));
  }
  auto [cpu_after, rss_after] = ProcessUsage(server_pid);
  std::printf("clients=%d mode=%s rounds=%d validate=%s\n", clients, delta ? "delta" : "sotw",
              rounds, validate ? "yes" : "no");
  std::printf("initial connect+configure all: %.3f s\n", connect_seconds);
  std::printf(
      "change -> all applied+ACKed: p50 %.3f s, p99 %.3f s, max %.3f s "
      "(includes the 100 ms debounce)\n",
      Percentile(round_seconds, 0.5), Percentile(round_seconds, 0.99),
      Percentile(round_seconds, 1.0));
  std::printf("change -> one client applied: p50 %.3f s, p99 %.3f s\n",
              Percentile(client_seconds, 0.5), Percentile(client_seconds, 0.99));
  std::printf(
      "control plane: RSS %.1f MiB with %d streams (%.1f MiB after the rounds), "
      "CPU %.2f s for %d rounds (%.3f s per round)\n",
      rss_connected, clients, rss_after, cpu_after - cpu_before, rounds,
      (cpu_after - cpu_before) / std::max(rounds, 1));
  for (auto& sim : sims) sim->client->Stop();
  sims.clear();
  loop.RunUntilIdle();
  return 0;
}

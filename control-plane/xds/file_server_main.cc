// xds-file-server: an ADS server that gives every sidecar the resources of one file (the
// `static_resources` section of a sidecar bootstrap file, YAML or JSON). For tests, demos, the
// xDS load benchmark, and small meshes run without the policy API. SIGHUP re-reads the file and
// pushes what changed (an invalid file is logged and ignored); SIGTERM/SIGINT stop with a
// graceful GOAWAY.
//
// The status address serves GET /proxy-status, GET /proxy-config?node=ID and GET /metrics.

#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/file.h"
#include "common/base/logging.h"
#include "common/config/yaml_proto.h"
#include "common/event/loop.h"
#include "common/event/signal.h"
#include "common/flags/flags.h"
#include "common/http/grpc/server.h"
#include "common/http/server.h"
#include "common/net/address.h"
#include "common/stats/exposition.h"
#include "common/stats/stats.h"
#include "control-plane/xds/ads_server.h"
#include "control-plane/xds/tls_files.h"
#include "xds/resources.pb.h"

namespace meshlet::controlplane::ads {
namespace {

struct Flags {
  std::string resources;
  std::string address = "0.0.0.0:15012";
  std::string status_address = "127.0.0.1:15014";
  std::string tls_cert;
  std::string tls_key;
  bool plaintext = false;
  size_t max_concurrent_pushes = 100;
  LogLevel log_level = LogLevel::kInfo;
  bool help = false;

  std::vector<flags::Flag> Table() {
    return {
        flags::Required(flags::StringFlag(
            "--resources", "FILE", &resources,
            "the resources to serve: a sidecar bootstrap file's static_resources (YAML or JSON)")),
        flags::StringFlag("--address", "IP:PORT", &address,
                          "discovery (gRPC) address, default 0.0.0.0:15012"),
        flags::StringFlag("--tls-cert", "FILE", &tls_cert,
                          "server certificate chain (PEM); the port speaks TLS with h2"),
        flags::StringFlag("--tls-key", "FILE", &tls_key, "its key (PEM)"),
        flags::SwitchFlag("--plaintext", &plaintext,
                          "serve h2c without TLS (local tests and demos only)"),
        flags::StringFlag("--status-address", "IP:PORT", &status_address,
                          "HTTP status endpoints, default 127.0.0.1:15014"),
        flags::IntFlag<size_t>("--max-concurrent-pushes", "N", &max_concurrent_pushes,
                               "pushes in flight at once, default 100"),
        {.name = "--log-level",
         .value = "LEVEL",
         .help = "trace, debug, info, warn, error, critical, off; default info",
         .set =
             [this](absl::string_view v) {
               std::optional<LogLevel> level = ParseLogLevel(v);
               if (!level) return absl::InvalidArgumentError("unknown level");
               log_level = *level;
               return absl::OkStatus();
             }},
        flags::HelpFlag(&help, "this help"),
    };
  }
};

std::string Usage() {
  Flags scratch;
  return absl::StrCat(
      "Usage: xds-file-server --resources FILE (--tls-cert FILE --tls-key FILE | --plaintext)\n"
      "                       [--address IP:PORT] [--status-address IP:PORT]\n"
      "                       [--max-concurrent-pushes N] [--log-level LEVEL]\n"
      "\n"
      "Serves the static_resources of FILE (sidecar bootstrap format) to every sidecar over ADS.\n"
      "SIGHUP re-reads FILE; SIGTERM/SIGINT stop gracefully.\n\n",
      flags::FlagTable(scratch.Table()));
}

absl::StatusOr<Flags> ParseFlags(const std::vector<std::string>& args) {
  Flags parsed;
  absl::StatusOr<flags::ParsedArgs> result = flags::Parse(parsed.Table(), args);
  if (!result.ok()) return result.status();
  if (result->stopped) return parsed;
  if (parsed.plaintext == !parsed.tls_cert.empty()) {
    return absl::InvalidArgumentError(
        "give --tls-cert and --tls-key, or --plaintext to serve without TLS");
  }
  if (parsed.tls_cert.empty() != parsed.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  return parsed;
}

absl::StatusOr<NodeResourceSet> LoadResources(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  xds::Bootstrap bootstrap;
  meshlet::config::YamlParseOptions options;
  options.source_name = path;
  if (absl::Status status = meshlet::config::YamlToProto(*text, bootstrap, options); !status.ok()) {
    return status;
  }
  const auto& r = bootstrap.static_resources();
  NodeResourceSet out;
  for (const auto& x : r.secrets()) out.Add(ResourceType::kSecret, x.name(), x);
  for (const auto& x : r.clusters()) out.Add(ResourceType::kCluster, x.name(), x);
  for (const auto& x : r.endpoints()) out.Add(ResourceType::kEndpoint, x.cluster_name(), x);
  for (const auto& x : r.routes()) out.Add(ResourceType::kRoute, x.name(), x);
  for (const auto& x : r.service_routes()) out.Add(ResourceType::kServiceRoute, x.name(), x);
  for (const auto& x : r.listeners()) out.Add(ResourceType::kListener, x.name(), x);
  return out;
}

int Run(const Flags& flags) {
  SetLogLevel(flags.log_level);
  ::signal(SIGPIPE, SIG_IGN);
  absl::StatusOr<NodeResourceSet> initial = LoadResources(flags.resources);
  if (!initial.ok()) {
    std::fprintf(stderr, "xds-file-server: %s\n", std::string(initial.status().message()).c_str());
    return 1;
  }
  auto resources = std::make_shared<NodeResourceSet>(*std::move(initial));

  event::Loop loop;
  StatsRegistry stats;
  http::grpc::ServerOptions grpc_options;
  if (!flags.plaintext) {
    absl::StatusOr<net::TransportFactory> tls = ServerTlsFromFiles(flags.tls_cert, flags.tls_key);
    if (!tls.ok()) {
      std::fprintf(stderr, "xds-file-server: %s\n", std::string(tls.status().message()).c_str());
      return 1;
    }
    grpc_options.transport_factory = *tls;
  }
  absl::StatusOr<net::Address> address = net::Address::Parse(flags.address);
  absl::StatusOr<net::Address> status_address = net::Address::Parse(flags.status_address);
  if (!address.ok() || !status_address.ok()) {
    std::fprintf(stderr, "xds-file-server: bad address: %s\n",
                 std::string((address.ok() ? status_address : address).status().message()).c_str());
    return 2;
  }
  {
    http::grpc::Server grpc_server(loop, grpc_options);
    AdsServer ads(
        loop, stats,
        [&resources](const GenerateRequest&) -> absl::StatusOr<NodeResourceSet> {
          return *resources;
        },
        AdsServerOptions{.max_concurrent_pushes = flags.max_concurrent_pushes});
    CHECK_OK(ads.Register(grpc_server));
    if (absl::Status status = grpc_server.Start(*address); !status.ok()) {
      std::fprintf(stderr, "xds-file-server: %s: %s\n", flags.address.c_str(),
                   std::string(status.message()).c_str());
      return 1;
    }
    absl::StatusOr<std::unique_ptr<http::HttpServer>> status_server = http::HttpServer::Create(
        loop, *status_address, {}, [&](const http::ServerRequest& request) {
          if (request.path() == "/proxy-status") {
            return http::ServerResponse::Json(200, ProxyStatusJson(ads.ProxyStatuses()));
          }
          if (request.path() == "/proxy-config") {
            auto params = request.QueryParams();
            std::optional<std::string> json = ads.ProxyConfigJson(params["node"]);
            if (!json) return http::ServerResponse::Json(404, "{\"error\":\"node not connected\"}");
            return http::ServerResponse::Json(200, *json);
          }
          if (request.path() == "/metrics") {
            return http::ServerResponse::Text(200, FormatPrometheus(stats.Snapshot()));
          }
          return http::ServerResponse::Text(404, "not found\n");
        });
    if (!status_server.ok()) {
      std::fprintf(stderr, "xds-file-server: %s: %s\n", flags.status_address.c_str(),
                   std::string(status_server.status().message()).c_str());
      return 1;
    }
    bool stopping = false;
    auto stop_timer = std::make_unique<event::Timer>(loop, [&] { loop.Stop(); });
    std::vector<std::unique_ptr<event::Signal>> signals;
    for (int signum : {SIGHUP, SIGTERM, SIGINT}) {
      auto signal = event::Signal::Create(loop, signum, [&](int s) {
        if (s == SIGHUP) {
          absl::StatusOr<NodeResourceSet> next = LoadResources(flags.resources);
          if (!next.ok()) {
            LOG(ERROR) << "reload refused: " << next.status().message();
            return;
          }
          resources = std::make_shared<NodeResourceSet>(*std::move(next));
          LOG(INFO) << "reloaded " << flags.resources;
          ads.NotifyChanged();
          return;
        }
        if (stopping) {
          loop.Stop();
          return;
        }
        stopping = true;
        LOG(INFO) << "stopping: GOAWAY to every sidecar";
        (*status_server)->Shutdown();
        grpc_server.Shutdown(std::chrono::seconds(2));
        // Give the final GOAWAY a moment to leave before the loop stops.
        stop_timer->Enable(std::chrono::milliseconds(300));
      });
      CHECK_OK(signal.status());
      signals.push_back(*std::move(signal));
    }
    LOG(INFO) << "xds-file-server: ADS on " << grpc_server.address().ToString()
              << (flags.plaintext ? " (plaintext)" : " (TLS)") << ", status on "
              << (*status_server)->address().ToString();
    loop.Run();
    ads.Stop();
    stop_timer.reset();
    signals.clear();
    status_server->reset();
  }
  loop.RunUntilIdle();
  return 0;
}

}  // namespace
}  // namespace meshlet::controlplane::ads

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  absl::StatusOr<meshlet::controlplane::ads::Flags> flags =
      meshlet::controlplane::ads::ParseFlags(args);
  if (!flags.ok()) {
    std::fprintf(stderr, "xds-file-server: %s\n%s", std::string(flags.status().message()).c_str(),
                 meshlet::controlplane::ads::Usage().c_str());
    return meshlet::flags::kUsageExitCode;
  }
  if (flags->help) {
    std::fputs(meshlet::controlplane::ads::Usage().c_str(), stdout);
    return 0;
  }
  return meshlet::controlplane::ads::Run(*flags);
}

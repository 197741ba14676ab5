// The test app's binary: command line (options.h) → serve (App on a Server, and a BannerServer
// with --tcp-listen), serve-tcp (a BannerServer), get (load.h) or tcp (tcp_client.h).

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/base/logging.h"
#include "common/base/random.h"
#include "common/event/loop.h"
#include "common/event/signal.h"
#include "common/event/timer.h"
#include "common/net/address.h"
#include "tests/e2e/testapp/app.h"
#include "tests/e2e/testapp/load.h"
#include "tests/e2e/testapp/options.h"
#include "tests/e2e/testapp/server.h"
#include "tests/e2e/testapp/tcp_client.h"
#include "tests/e2e/testapp/tcp_server.h"

namespace meshlet::testapp {
namespace {

// The address of a listen flag (`flag`), none for "".
absl::StatusOr<std::optional<net::Address>> ListenAddress(absl::string_view flag,
                                                          const std::string& text) {
  if (text.empty()) return std::nullopt;
  absl::StatusOr<net::Address> address = net::Address::Parse(text);
  if (!address.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", address.status().message()));
  }
  return *address;
}

// serve and serve-tcp: HTTP on --listen unless it is "", the banner protocol on --tcp-listen
// unless it is "".
int Serve(ServeOptions options) {
  event::Loop loop;
  RealRandom random;
  absl::StatusOr<std::optional<net::Address>> http_address =
      ListenAddress("--listen", options.listen);
  absl::StatusOr<std::optional<net::Address>> tcp_address =
      ListenAddress("--tcp-listen", options.tcp_listen);
  for (const auto* address : {&http_address, &tcp_address}) {
    if (!address->ok()) {
      std::fprintf(stderr, "testapp: %s\n", std::string(address->status().message()).c_str());
      return 2;
    }
  }
  std::vector<std::string> calls;
  for (const HttpUrl& url : options.calls) calls.push_back(url.ToString());
  const Duration drain_time = options.drain_time;
  App app(loop, std::move(options), random);
  const ServeOptions& o = app.options();
  std::unique_ptr<Server> http_server;
  if (http_address->has_value()) {
    ServerOptions server_options;
    server_options.max_connections = o.max_connections;
    server_options.max_request_body_bytes = o.max_request_body_bytes;
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Create(
        loop, **http_address, server_options,
        [&app](std::shared_ptr<Exchange> exchange) { app.Handle(std::move(exchange)); });
    if (!server.ok()) {
      std::fprintf(stderr, "testapp: listen on %s: %s\n", (*http_address)->ToString().c_str(),
                   std::string(server.status().message()).c_str());
      return 1;
    }
    http_server = *std::move(server);
    LOG(INFO) << "testapp " << o.service << " " << o.version << " (pod " << o.pod
              << ") serving HTTP on " << http_server->address().ToString()
              << "; calls: " << (calls.empty() ? "none" : absl::StrJoin(calls, ", "))
              << "; failures: " << FailurePlan::Create(o.fail_pattern, o.fail_fraction)->Describe();
  }
  std::unique_ptr<BannerServer> tcp_server;
  if (tcp_address->has_value()) {
    BannerServerOptions tcp_options;
    tcp_options.service = o.service;
    tcp_options.pod = o.pod;
    tcp_options.banner = o.banner;
    tcp_options.max_connections = o.max_connections;
    tcp_options.log_connections = o.log_requests;
    absl::StatusOr<std::unique_ptr<BannerServer>> server =
        BannerServer::Create(loop, **tcp_address, std::move(tcp_options));
    if (!server.ok()) {
      std::fprintf(stderr, "testapp: listen on %s: %s\n", (*tcp_address)->ToString().c_str(),
                   std::string(server.status().message()).c_str());
      return 1;
    }
    tcp_server = *std::move(server);
    LOG(INFO) << "testapp " << o.service << " (pod " << o.pod << ") serving the banner protocol on "
              << tcp_server->address().ToString() << ": \"" << tcp_server->banner() << "\"";
  }

  // SIGTERM/SIGINT: stop accepting, let requests in flight finish (at most --drain-time) and
  // close the banner protocol's connections; a second signal stops at once.
  bool draining = false;
  event::Timer drain_check(loop, [&] {
    if (app.in_progress() == 0 && (http_server == nullptr || http_server->connections() == 0) &&
        (tcp_server == nullptr || tcp_server->connections() == 0)) {
      loop.Stop();
    }
  });
  event::Timer drain_deadline(loop, [&] { loop.Stop(); });
  auto on_signal = [&](int signum) {
    if (draining) {
      loop.Stop();
      return;
    }
    draining = true;
    LOG(INFO) << "signal " << signum << ": draining (" << app.in_progress()
              << " requests in progress)";
    if (http_server != nullptr) http_server->Shutdown();
    if (tcp_server != nullptr) tcp_server->Shutdown();
    drain_check.EnableRepeating(std::chrono::milliseconds(50));
    drain_deadline.Enable(drain_time);
  };
  auto sigterm = event::Signal::Create(loop, SIGTERM, on_signal);
  auto sigint = event::Signal::Create(loop, SIGINT, on_signal);
  if (!sigterm.ok() || !sigint.ok()) {
    std::fprintf(stderr, "testapp: cannot watch signals\n");
    return 1;
  }
  loop.Run();
  LOG(INFO) << "stopped after " << app.stats().requests << " requests"
            << (tcp_server == nullptr
                    ? ""
                    : absl::StrCat(", ", tcp_server->accepted(), " tcp connections"));
  // Everything with handles goes before the loop.
  http_server.reset();
  tcp_server.reset();
  return 0;
}

int Get(const GetOptions& options) {
  event::Loop loop;
  RealRandom random;
  if (options.count == 1 && options.duration == Duration(0)) {
    LoadSummary summary = RunLoad(loop, options, random);
    for (const std::string& id : summary.traces) std::fprintf(stderr, "trace %s\n", id.c_str());
    const FetchResult& r = summary.last;
    if (!r.error.ok()) {
      std::fprintf(stderr, "testapp: %s\n", r.error.ToString().c_str());
      return 3;
    }
    std::fwrite(r.body.data(), 1, r.body.size(), stdout);
    if (r.status < 200 || r.status > 299) {
      std::fprintf(stderr, "testapp: %s answered %d\n", options.url.ToString().c_str(), r.status);
      // A proxy's own answer says which proxy made it and the request's id (meshctl explain).
      for (absl::string_view name : {kProxyErrorHeader, kRequestIdHeader}) {
        if (std::optional<absl::string_view> value = r.headers.Get(name)) {
          std::fprintf(stderr, "%.*s: %.*s\n", static_cast<int>(name.size()), name.data(),
                       static_cast<int>(value->size()), value->data());
        }
      }
      return 1;
    }
    return 0;
  }
  Load load(loop, options, random);
  if (absl::Status s = load.StopOnSignals(); !s.ok()) {
    std::fprintf(stderr, "testapp: cannot watch signals: %s\n", s.ToString().c_str());
    return 1;
  }
  LoadSummary summary = load.Run();
  std::printf("%s\n", summary.ToJson().c_str());
  return summary.all_succeeded() ? 0 : 1;
}

int Tcp(const TcpOptions& options) {
  event::Loop loop;
  TcpSummary summary = RunTcp(loop, options);
  if (options.count == 1) {
    const TcpResult& r = summary.last;
    if (!r.banner.empty()) std::printf("%s\n", r.banner.c_str());
    for (const std::string& answer : r.answers) std::printf("%s\n", answer.c_str());
    if (r.error.ok()) return 0;
    std::fprintf(stderr, "testapp: %s\n", r.error.ToString().c_str());
    return r.error.code() == absl::StatusCode::kDataLoss ? 1 : 3;
  }
  std::printf("%s\n", summary.ToJson().c_str());
  return summary.all_succeeded() ? 0 : 1;
}

}  // namespace
}  // namespace meshlet::testapp

int main(int argc, char** argv) {
  using meshlet::testapp::CommandLine;
  ::signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args(argv + 1, argv + argc);
  auto command_line = meshlet::testapp::ParseCommandLine(
      args, [](const std::string& name) -> std::optional<std::string> {
        const char* value = std::getenv(name.c_str());
        if (value == nullptr) return std::nullopt;
        return std::string(value);
      });
  if (!command_line.ok()) {
    std::fprintf(stderr, "testapp: %s\n", std::string(command_line.status().message()).c_str());
    return 2;
  }
  switch (command_line->command) {
    case CommandLine::Command::kHelp:
      std::fputs(meshlet::testapp::Usage().c_str(), stdout);
      return 0;
    case CommandLine::Command::kVersion:
      std::printf("meshlet testapp %s\n", std::string(meshlet::testapp::kVersion).c_str());
      return 0;
    case CommandLine::Command::kGet:
      return meshlet::testapp::Get(command_line->get);
    case CommandLine::Command::kTcp:
      return meshlet::testapp::Tcp(command_line->tcp);
    case CommandLine::Command::kServe:
    case CommandLine::Command::kServeTcp:
      break;
  }
  return meshlet::testapp::Serve(std::move(command_line->serve));
}

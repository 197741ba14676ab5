// The test app's binary: command line (options.h) → serve (App on a Server) or get (load.h).

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

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

namespace meshlet::testapp {
namespace {

int Serve(ServeOptions options) {
  event::Loop loop;
  RealRandom random;
  absl::StatusOr<net::Address> address = net::Address::Parse(options.listen);
  if (!address.ok()) {
    std::fprintf(stderr, "testapp: --listen: %s\n",
                 std::string(address.status().message()).c_str());
    return 2;
  }
  std::vector<std::string> calls;
  for (const HttpUrl& url : options.calls) calls.push_back(url.ToString());
  const Duration drain_time = options.drain_time;
  App app(loop, std::move(options), random);
  ServerOptions server_options;
  server_options.max_connections = app.options().max_connections;
  server_options.max_request_body_bytes = app.options().max_request_body_bytes;
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Create(
      loop, *address, server_options,
      [&app](std::shared_ptr<Exchange> exchange) { app.Handle(std::move(exchange)); });
  if (!server.ok()) {
    std::fprintf(stderr, "testapp: listen on %s: %s\n", address->ToString().c_str(),
                 std::string(server.status().message()).c_str());
    return 1;
  }
  const ServeOptions& o = app.options();
  LOG(INFO) << "testapp " << o.service << " " << o.version << " (pod " << o.pod << ") serving on "
            << (*server)->address().ToString()
            << "; calls: " << (calls.empty() ? "none" : absl::StrJoin(calls, ", "))
            << "; failures: " << FailurePlan::Create(o.fail_pattern, o.fail_fraction)->Describe();

  // SIGTERM/SIGINT: stop accepting, let requests in flight finish (at most --drain-time); a
  // second signal stops at once.
  bool draining = false;
  event::Timer drain_check(loop, [&] {
    if (app.in_progress() == 0 && (*server)->connections() == 0) loop.Stop();
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
    (*server)->Shutdown();
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
  LOG(INFO) << "stopped after " << app.stats().requests << " requests";
  // Everything with handles goes before the loop.
  server->reset();
  return 0;
}

int Get(const GetOptions& options) {
  event::Loop loop;
  LoadSummary summary = RunLoad(loop, options);
  if (options.count == 1) {
    const FetchResult& r = summary.last;
    if (!r.error.ok()) {
      std::fprintf(stderr, "testapp: %s\n", r.error.ToString().c_str());
      return 3;
    }
    std::fwrite(r.body.data(), 1, r.body.size(), stdout);
    if (r.status < 200 || r.status > 299) {
      std::fprintf(stderr, "testapp: %s answered %d\n", options.url.ToString().c_str(), r.status);
      return 1;
    }
    return 0;
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
    case CommandLine::Command::kServe:
      break;
  }
  return meshlet::testapp::Serve(std::move(command_line->serve));
}

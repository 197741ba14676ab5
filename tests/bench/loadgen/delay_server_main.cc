// delay_server: answers every HTTP request after a fixed delay, optionally stalling once
// (delay_server.h); a known server to check the load generator against. Prints
// "listening on IP:PORT" on stdout once it accepts connections, then serves until killed.

#include <signal.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/base/file.h"
#include "common/event/loop.h"
#include "common/flags/flags.h"
#include "common/net/address.h"
#include "common/tls/tls_context.h"
#include "common/tls/tls_context_provider.h"
#include "common/tls/tls_transport.h"
#include "tests/bench/loadgen/delay_server.h"
#include "tests/bench/loadgen/load_generator.h"

namespace meshlet::loadgen {
namespace {

int Fail(const std::string& message, int code = 1) {
  std::fprintf(stderr, "delay_server: %s\n", message.c_str());
  return code;
}

int Main(int argc, char** argv) {
  DelayServerOptions options;
  std::string listen = "127.0.0.1:0";
  std::string tls_cert, tls_key, tls_client_ca;
  int cpu = -1;
  bool help = false;
  const std::vector<flags::Flag> table = {
      flags::StringFlag("--listen", "IP:PORT", &listen, "where to listen (default 127.0.0.1:0)"),
      flags::NonNegativeDurationFlag("--delay", &options.delay,
                                     "each answer this long after its request (default 0)", "10ms"),
      flags::NonNegativeDurationFlag("--stall", &options.stall,
                                     "stall once for this long (default: never)", "10ms"),
      flags::NonNegativeDurationFlag(
          "--stall-after", &options.stall_after,
          "the stall begins this long after the first request (default 0)", "10ms"),
      flags::IntFlag<size_t>("--response-bytes", "N", &options.response_bytes,
                             "response body size (default 0)", 0),
      flags::StringFlag("--grpc-method", "/PKG.SERVICE/METHOD", &options.grpc_method,
                        "serve gRPC: this unary method answers one message of --response-bytes "
                        "and status OK"),
      flags::IntFlag<size_t>("--max-connections", "N", &options.max_connections,
                             "connections at most (default 1024)"),
      flags::StringFlag("--tls-cert", "FILE", &tls_cert, "serve TLS with this chain (PEM)"),
      flags::StringFlag("--tls-key", "FILE", &tls_key, "its key (PEM)"),
      flags::StringFlag("--tls-client-ca", "FILE", &tls_client_ca,
                        "require client certificates issued by these roots (mutual TLS)"),
      flags::IntFlag<int>("--cpu", "N", &cpu, "pins the server to CPU N", 0),
      flags::HelpFlag(&help, "this help"),
  };
  absl::StatusOr<flags::ParsedArgs> parsed =
      flags::Parse(table, std::vector<std::string>(argv + 1, argv + argc));
  if (!parsed.ok()) return Fail(std::string(parsed.status().message()), flags::kUsageExitCode);
  if (help) {
    std::printf(
        "Usage: delay_server [--listen IP:PORT] [--delay D] [--stall S --stall-after A]\n"
        "                    [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]\n\n%s",
        flags::FlagTable(table).c_str());
    return 0;
  }
  absl::StatusOr<net::Address> address = net::Address::Parse(listen);
  if (!address.ok()) {
    return Fail(absl::StrCat("--listen \"", listen, "\": ", address.status().message()),
                flags::kUsageExitCode);
  }
  options.listen = *address;
  if (tls_cert.empty() != tls_key.empty() || (tls_cert.empty() && !tls_client_ca.empty())) {
    return Fail("--tls-cert and --tls-key go together, and --tls-client-ca needs them",
                flags::kUsageExitCode);
  }
  if (!tls_cert.empty()) {
    tls::TlsContextConfig config;
    for (auto [path, pem] : {std::pair{&tls_cert, &config.certificate_chain_pem},
                             std::pair{&tls_key, &config.private_key_pem},
                             std::pair{&tls_client_ca, &config.trust_bundle_pem}}) {
      if (path->empty()) continue;
      absl::StatusOr<std::string> text = ReadFile(*path, 1 << 20);
      if (!text.ok()) return Fail(std::string(text.status().message()));
      *pem = *std::move(text);
    }
    config.alpn_protocols = {"h2", "http/1.1"};
    if (!tls_client_ca.empty()) config.client_certificate = tls::ClientCertificateMode::kRequire;
    absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
        tls::TlsContext::CreateServer(config);
    if (!context.ok()) return Fail(std::string(context.status().message()));
    options.transport_factory =
        tls::TlsTransport::Factory(std::make_shared<tls::TlsContextProvider>(*context));
  }
  if (cpu >= 0) {
    if (absl::Status pinned = PinToCpu(cpu); !pinned.ok())
      return Fail(std::string(pinned.message()));
  }
  ::signal(SIGPIPE, SIG_IGN);
  event::Loop loop;
  absl::StatusOr<std::unique_ptr<DelayServer>> server = DelayServer::Create(loop, options);
  if (!server.ok()) return Fail(std::string(server.status().message()));
  std::printf("listening on %s\n", (*server)->address().ToString().c_str());
  std::fflush(stdout);
  loop.Run();
  return 0;
}

}  // namespace
}  // namespace meshlet::loadgen

int main(int argc, char** argv) { return meshlet::loadgen::Main(argc, argv); }

// loadgen: an open-loop (or closed-loop) HTTP load generator; see load_generator.h for what it
// measures and tests/bench/README.md for the flags and the JSON it prints.

#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/base/file.h"
#include "common/event/loop.h"
#include "common/flags/flags.h"
#include "common/net/address.h"
#include "tests/bench/loadgen/load_generator.h"

namespace meshlet::loadgen {
namespace {

struct CommandLine {
  LoadOptions load;
  std::string address;
  std::string protocol = "http/1.1";
  std::string tls_ca, tls_cert, tls_key;
  std::string output;
  int cpu = -1;
  bool poisson = false;
  bool quiet = false;
  bool help = false;

  std::vector<flags::Flag> Table() {
    return {
        flags::Required(
            flags::StringFlag("--address", "IP:PORT", &address, "where to send the requests")),
        flags::StringFlag("--protocol", "PROTO", &protocol,
                          "http/1.1 (one request in flight per connection) or h2 (default "
                          "http/1.1)"),
        {.name = "--rate",
         .value = "R",
         .help = "requests/s on a fixed schedule (open loop); 0 or absent: closed loop",
         .set =
             [this](absl::string_view v) {
               double r = 0;
               if (!absl::SimpleAtod(v, &r) || !(r >= 0)) {
                 return absl::InvalidArgumentError("must be a number of requests/s, at least 0");
               }
               load.rate = r;
               return absl::OkStatus();
             }},
        flags::SwitchFlag("--poisson", &poisson,
                          "Poisson arrivals of mean rate R instead of evenly spaced ones"),
        flags::IntFlag<size_t>("--connections", "N", &load.connections,
                               "connections opened before the run (default 1)"),
        flags::IntFlag<uint32_t>("--max-streams", "S", &load.max_streams,
                                 "h2: streams in flight per connection at most (default 100)"),
        flags::IntFlag<size_t>("--concurrency", "C", &load.concurrency,
                               "closed loop: requests in flight (default: connections x streams)"),
        flags::NonNegativeDurationFlag("--duration", &load.duration,
                                       "the measured period (default 10s)", "10s"),
        flags::NonNegativeDurationFlag(
            "--warmup", &load.warmup,
            "load sent before the measured period and not counted (default 1s)", "1s"),
        flags::NonNegativeDurationFlag(
            "--request-timeout", &load.request_timeout,
            "a request without its whole response this long after it was sent fails "
            "(default 10s)",
            "10s"),
        flags::NonNegativeDurationFlag("--connect-timeout", &load.connect_timeout,
                                       "for each connection attempt (default 2s)", "2s"),
        flags::NonNegativeDurationFlag(
            "--late-threshold", &load.late_threshold,
            "a request sent more than this after its intended time counts as late "
            "(default 1ms)",
            "1ms"),
        flags::IntFlag<size_t>("--max-queued", "N", &load.max_queued,
                               "requests waiting for a connection at most; more are dropped "
                               "(default 1000000)"),
        flags::StringFlag("--method", "METHOD", &load.method, "request method (default GET)"),
        flags::StringFlag("--path", "PATH", &load.path, "request path (default /)"),
        flags::StringFlag("--authority", "HOST", &load.authority,
                          "Host / :authority (default: the address)"),
        {.name = "--header",
         .value = "'NAME: VALUE'",
         .help = "an extra request field; repeatable",
         .set =
             [this](absl::string_view v) {
               const size_t colon = v.find(':');
               if (colon == absl::string_view::npos || colon == 0) {
                 return absl::InvalidArgumentError("must be NAME: VALUE");
               }
               load.headers.emplace_back(
                   absl::AsciiStrToLower(absl::StripAsciiWhitespace(v.substr(0, colon))),
                   std::string(absl::StripAsciiWhitespace(v.substr(colon + 1))));
               return absl::OkStatus();
             }},
        flags::IntFlag<size_t>("--body-bytes", "N", &load.body_bytes,
                               "request body of N bytes, with content-length (default 0: none)", 0),
        flags::SwitchFlag("--grpc", &load.grpc,
                          "gRPC calls (h2): POST application/grpc, one message of --body-bytes, "
                          "ok only with grpc-status 0"),
        flags::SwitchFlag("--tls", &load.tls.enabled, "TLS to the server"),
        flags::StringFlag("--tls-ca", "FILE", &tls_ca,
                          "PEM roots that must issue the server's certificate (with --tls)"),
        flags::StringFlag("--tls-cert", "FILE", &tls_cert,
                          "client certificate chain (PEM), for mutual TLS"),
        flags::StringFlag("--tls-key", "FILE", &tls_key, "its private key (PEM)"),
        flags::StringFlag("--tls-server-name", "NAME", &load.tls.server_name,
                          "SNI, and the name the server certificate must carry (default: the "
                          "address's IP)"),
        flags::IntFlag<uint64_t>("--seed", "N", &load.seed, "seeds the Poisson arrivals", 0),
        flags::IntFlag<size_t>("--slowest", "N", &load.slowest,
                               "lists the N slowest responses with their intended send times "
                               "in the JSON (default 0)",
                               0),
        flags::IntFlag<int>("--cpu", "N", &cpu, "pins the generator's thread to CPU N", 0),
        flags::StringFlag("--output", "FILE", &output,
                          "writes the JSON result there instead of stdout"),
        flags::SwitchFlag("--quiet", &quiet, "no summary line on stderr"),
        flags::HelpFlag(&help, "this help"),
    };
  }
};

std::string Usage() {
  CommandLine scratch;
  return absl::StrCat(
      "Usage: loadgen --address IP:PORT [--rate R [--poisson]] [--protocol http/1.1|h2]\n"
      "               [--connections N] [--max-streams S] [--concurrency C]\n"
      "               [--duration D] [--warmup D] [--tls --tls-ca FILE [--tls-cert FILE "
      "--tls-key FILE]] ...\n"
      "\n"
      "Sends HTTP requests on a fixed schedule (--rate, open loop) or as fast as answers come\n"
      "(closed loop) and prints one JSON object: counts, achieved rate, and latency from each\n"
      "request's intended send time (percentiles in microseconds). One thread.\n\n",
      flags::FlagTable(scratch.Table()));
}

int Fail(const std::string& message, int code = 1) {
  std::fprintf(stderr, "loadgen: %s\n", message.c_str());
  return code;
}

int Main(int argc, char** argv) {
  CommandLine command_line;
  absl::StatusOr<flags::ParsedArgs> parsed =
      flags::Parse(command_line.Table(), std::vector<std::string>(argv + 1, argv + argc));
  if (!parsed.ok()) return Fail(std::string(parsed.status().message()), flags::kUsageExitCode);
  if (command_line.help) {
    std::fputs(Usage().c_str(), stdout);
    return 0;
  }
  LoadOptions& load = command_line.load;
  absl::StatusOr<net::Address> address = net::Address::Parse(command_line.address);
  if (!address.ok()) {
    return Fail(
        absl::StrCat("--address \"", command_line.address, "\": ", address.status().message()),
        flags::kUsageExitCode);
  }
  load.address = *address;
  if (command_line.protocol == "h2") {
    load.protocol = HttpVersion::kHttp2;
  } else if (command_line.protocol != "http/1.1" && command_line.protocol != "h1") {
    return Fail(
        absl::StrCat("--protocol \"", command_line.protocol, "\": must be http/1.1 (or h1) or h2"),
        flags::kUsageExitCode);
  }
  if (command_line.poisson) {
    if (load.rate == 0) return Fail("--poisson needs --rate", flags::kUsageExitCode);
    load.arrivals = Arrivals::kPoisson;
  }
  for (auto [path, pem] : {std::pair{&command_line.tls_ca, &load.tls.trust_bundle_pem},
                           std::pair{&command_line.tls_cert, &load.tls.certificate_chain_pem},
                           std::pair{&command_line.tls_key, &load.tls.private_key_pem}}) {
    if (path->empty()) continue;
    absl::StatusOr<std::string> text = ReadFile(*path, 1 << 20);
    if (!text.ok()) return Fail(std::string(text.status().message()));
    *pem = *std::move(text);
  }
  if (absl::Status valid = ValidateOptions(load); !valid.ok()) {
    return Fail(std::string(valid.message()), flags::kUsageExitCode);
  }
  if (command_line.cpu >= 0) {
    if (absl::Status pinned = PinToCpu(command_line.cpu); !pinned.ok()) {
      return Fail(std::string(pinned.message()));
    }
  }
  ::signal(SIGPIPE, SIG_IGN);

  event::Loop loop;
  absl::StatusOr<LoadResult> result = RunLoad(loop, load);
  if (!result.ok()) return Fail(std::string(result.status().message()));
  const std::string json = ResultJson(load, *result) + "\n";
  if (command_line.output.empty()) {
    std::fputs(json.c_str(), stdout);
  } else {
    FILE* out = std::fopen(command_line.output.c_str(), "w");
    if (out == nullptr || std::fputs(json.c_str(), out) < 0 || std::fclose(out) != 0) {
      return Fail(absl::StrCat("cannot write \"", command_line.output, "\""));
    }
  }
  if (!command_line.quiet) {
    std::fprintf(stderr, "%s\n", ResultSummary(load, *result).c_str());
  }
  return 0;
}

}  // namespace
}  // namespace meshlet::loadgen

int main(int argc, char** argv) { return meshlet::loadgen::Main(argc, argv); }

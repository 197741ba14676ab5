// fetch_certificate: runs the sidecar's certificate machinery (CertificateManager over the gRPC
// CA client) against a control plane, outside the sidecar, until it has rotated N times. Each
// certificate is written to OUT_DIR/cert-<n>.pem with the trust bundle in OUT_DIR/bundle-<n>.pem
// and reported on stdout as "rotation <n> serial <hex> not_after <unix seconds>".
//
//   fetch_certificate --ca HOST:PORT --join-token TOKEN --spiffe-id ID --ttl-seconds N
//                     --rotations N --out-dir DIR        (plaintext h2c: tests and demos)

#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/event/loop.h"
#include "common/flags/flags.h"
#include "common/net/address.h"
#include "sidecar/identity/ca_client.h"
#include "sidecar/identity/certificate_manager.h"

int main(int argc, char** argv) {
  using namespace meshlet;  // NOLINT: a small tool
  std::optional<net::Address> address;
  std::optional<tls::SpiffeId> id;
  std::string join_token, out_dir;
  int64_t ttl_seconds = 0;
  int rotations = 0;
  bool help = false;
  const std::vector<flags::Flag> table = {
      {.name = "--ca",
       .value = "HOST:PORT",
       .help = "the control plane's CA (plaintext h2c)",
       .required = true,
       .set =
           [&address](absl::string_view v) {
             absl::StatusOr<net::Address> parsed = net::Address::Parse(v);
             if (!parsed.ok()) return parsed.status();
             address = *parsed;
             return absl::OkStatus();
           }},
      flags::StringFlag("--join-token", "TOKEN", &join_token, "the workload's join token"),
      {.name = "--spiffe-id",
       .value = "ID",
       .help = "the identity to ask for",
       .required = true,
       .set =
           [&id](absl::string_view v) {
             absl::StatusOr<tls::SpiffeId> parsed = tls::SpiffeId::Parse(v);
             if (!parsed.ok()) return parsed.status();
             id = *parsed;
             return absl::OkStatus();
           }},
      flags::Required(
          flags::IntFlag<int64_t>("--ttl-seconds", "N", &ttl_seconds, "the lifetime to ask for")),
      flags::Required(
          flags::IntFlag("--rotations", "N", &rotations, "certificates to fetch before exiting")),
      {.name = "--out-dir",
       .value = "DIR",
       .help = "where the certificates go",
       .required = true,
       .set =
           [&out_dir](absl::string_view v) {
             if (v.empty()) return absl::InvalidArgumentError("must not be empty");
             out_dir = std::string(v);
             return absl::OkStatus();
           }},
      flags::HelpFlag(&help, "this help"),
  };
  absl::StatusOr<flags::ParsedArgs> parsed =
      flags::Parse(table, std::vector<std::string>(argv + 1, argv + argc));
  if (!parsed.ok()) {
    std::fprintf(stderr, "fetch_certificate: %s\n", std::string(parsed.status().message()).c_str());
    return flags::kUsageExitCode;
  }
  if (help) {
    std::fputs(flags::FlagTable(table).c_str(), stdout);
    return 0;
  }
  event::Loop loop;
  sidecar::identity::GrpcCertificateSigner signer(
      loop, {.server_addresses = {*address}, .join_token = join_token});
  int seen = 0;
  sidecar::identity::CertificateManagerOptions options;
  options.ttl = absl::Seconds(ttl_seconds);
  options.rotation.retry_backoff = {.base = std::chrono::milliseconds(100),
                                    .cap = std::chrono::seconds(1)};
  sidecar::identity::CertificateManager manager(
      loop, signer, *id, options, [&](const sidecar::identity::WorkloadCertificate& cert) {
        ++seen;
        std::ofstream(absl::StrCat(out_dir, "/cert-", seen, ".pem")) << cert.certificate_chain_pem;
        std::ofstream(absl::StrCat(out_dir, "/bundle-", seen, ".pem")) << cert.trust_bundle_pem;
        std::printf("rotation %d serial %s not_after %lld\n", seen, cert.serial_hex.c_str(),
                    static_cast<long long>(absl::ToUnixSeconds(cert.not_after)));
        std::fflush(stdout);
      });
  manager.Start();
  const bool done = loop.RunUntil([&] { return seen >= rotations; },
                                  std::chrono::seconds(ttl_seconds * (rotations + 1) + 10));
  return done ? 0 : 1;
}

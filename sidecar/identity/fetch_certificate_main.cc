// fetch_certificate: runs the sidecar's certificate machinery (CertificateManager over the gRPC
// CA client) against a control plane, outside the sidecar, until it has rotated N times. Each
// certificate is written to OUT_DIR/cert-<n>.pem with the trust bundle in OUT_DIR/bundle-<n>.pem
// and reported on stdout as "rotation <n> serial <hex> not_after <unix seconds>".
//
//   fetch_certificate --ca HOST:PORT --join-token TOKEN --spiffe-id ID --ttl-seconds N
//                     --rotations N --out-dir DIR        (plaintext h2c: tests and demos)

#include <cstdio>
#include <fstream>
#include <map>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/event/loop.h"
#include "common/net/address.h"
#include "sidecar/config/ca_client.h"
#include "sidecar/identity/certificate_manager.h"

int main(int argc, char** argv) {
  using namespace meshlet;  // NOLINT: a small tool
  std::map<std::string, std::string> flags;
  for (int i = 1; i + 1 < argc; i += 2) flags[argv[i]] = argv[i + 1];
  int64_t ttl_seconds = 0;
  int rotations = 0;
  auto address = net::Address::Parse(flags["--ca"]);
  auto id = tls::SpiffeId::Parse(flags["--spiffe-id"]);
  if (!address.ok() || !id.ok() || !absl::SimpleAtoi(flags["--ttl-seconds"], &ttl_seconds) ||
      !absl::SimpleAtoi(flags["--rotations"], &rotations) || flags["--out-dir"].empty()) {
    std::fprintf(stderr,
                 "usage: fetch_certificate --ca HOST:PORT --join-token TOKEN --spiffe-id ID "
                 "--ttl-seconds N --rotations N --out-dir DIR\n");
    return 2;
  }
  event::Loop loop;
  sidecar::config::GrpcCertificateSigner signer(
      loop, {.server_address = *address, .join_token = flags["--join-token"]});
  int seen = 0;
  sidecar::identity::CertificateManagerOptions options;
  options.ttl = absl::Seconds(ttl_seconds);
  options.rotation.retry_backoff = {.base = std::chrono::milliseconds(100),
                                    .cap = std::chrono::seconds(1)};
  sidecar::identity::CertificateManager manager(
      loop, signer, *id, options, [&](const sidecar::identity::WorkloadCertificate& cert) {
        ++seen;
        std::ofstream(absl::StrCat(flags["--out-dir"], "/cert-", seen, ".pem"))
            << cert.certificate_chain_pem;
        std::ofstream(absl::StrCat(flags["--out-dir"], "/bundle-", seen, ".pem"))
            << cert.trust_bundle_pem;
        std::printf("rotation %d serial %s not_after %lld\n", seen, cert.serial_hex.c_str(),
                    static_cast<long long>(absl::ToUnixSeconds(cert.not_after)));
        std::fflush(stdout);
      });
  manager.Start();
  const bool done = loop.RunUntil([&] { return seen >= rotations; },
                                  std::chrono::seconds(ttl_seconds * (rotations + 1) + 10));
  return done ? 0 : 1;
}

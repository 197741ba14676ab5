// sign_csr: signs one CSR with the workload CA, outside any server, so tests (and an operator
// debugging a CA setup) can inspect exactly what the CA issues with standard tools.
//
//   sign_csr --ca-dir DIR                          (the generated root, created if absent)
//   sign_csr --ca-cert CHAIN --ca-key KEY [--ca-roots ROOTS]   (an operator's CA)
//            --csr FILE --spiffe-id ID [--ttl-seconds N] --out-chain FILE --out-bundle FILE
//
// Exit status 0 on success; 1 with the reason on stderr when the CA refuses; 2 for a bad command
// line.

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "common/flags/flags.h"
#include "common/tls/certificate.h"
#include "control-plane/ca/authority.h"

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "sign_csr: %s\n", message.c_str());
  return 1;
}

bool WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  return static_cast<bool>(out);
}

}  // namespace

int main(int argc, char** argv) {
  using meshlet::controlplane::ca::CertificateAuthority;
  namespace flags = meshlet::flags;
  std::string ca_dir, ca_cert, ca_key, ca_roots, csr_file, spiffe_id, out_chain, out_bundle;
  int64_t ttl_seconds = 0;
  bool help = false;
  const std::vector<flags::Flag> table = {
      flags::StringFlag("--ca-dir", "DIR", &ca_dir, "the generated root, created if absent"),
      flags::StringFlag("--ca-cert", "CHAIN", &ca_cert, "an operator's signing chain"),
      flags::StringFlag("--ca-key", "KEY", &ca_key, "its key"),
      flags::StringFlag("--ca-roots", "ROOTS", &ca_roots, "extra trusted roots"),
      flags::Required(flags::StringFlag("--csr", "FILE", &csr_file, "the CSR (PEM)")),
      flags::Required(flags::StringFlag("--spiffe-id", "ID", &spiffe_id, "the identity to issue")),
      flags::IntFlag<int64_t>("--ttl-seconds", "N", &ttl_seconds,
                              "the lifetime asked for (default: the CA's)", 0),
      flags::Required(flags::StringFlag("--out-chain", "FILE", &out_chain, "where the chain goes")),
      flags::Required(
          flags::StringFlag("--out-bundle", "FILE", &out_bundle, "where the trust bundle goes")),
      flags::HelpFlag(&help, "this help"),
  };
  absl::StatusOr<flags::ParsedArgs> parsed =
      flags::Parse(table, std::vector<std::string>(argv + 1, argv + argc));
  if (!parsed.ok()) {
    std::fprintf(stderr, "sign_csr: %s\n", std::string(parsed.status().message()).c_str());
    return flags::kUsageExitCode;
  }
  if (help) {
    std::printf(
        "Usage: sign_csr (--ca-dir DIR | --ca-cert CHAIN --ca-key KEY) --csr FILE "
        "--spiffe-id ID --out-chain FILE --out-bundle FILE\n\n%s",
        flags::FlagTable(table).c_str());
    return 0;
  }
  meshlet::controlplane::ca::AuthorityOptions options;
  absl::StatusOr<std::unique_ptr<CertificateAuthority>> ca;
  if (!ca_dir.empty()) {
    ca = CertificateAuthority::LoadOrGenerateRoot(ca_dir, options);
  } else if (!ca_cert.empty() && !ca_key.empty()) {
    ca = CertificateAuthority::FromFiles(ca_cert, ca_key, ca_roots, options);
  } else {
    std::fprintf(stderr, "sign_csr: give --ca-dir, or --ca-cert and --ca-key\n");
    return flags::kUsageExitCode;
  }
  if (!ca.ok()) return Fail(std::string(ca.status().message()));
  absl::StatusOr<std::string> csr = meshlet::tls::ReadSmallFile(csr_file);
  if (!csr.ok()) return Fail(std::string(csr.status().message()));
  absl::StatusOr<meshlet::tls::SpiffeId> id = meshlet::tls::SpiffeId::Parse(spiffe_id);
  if (!id.ok()) return Fail(std::string(id.status().message()));
  auto issued = (*ca)->Sign(*csr, *id, absl::Seconds(ttl_seconds));
  if (!issued.ok()) return Fail(std::string(issued.status().message()));
  if (!WriteFile(out_chain, issued->chain_pem) ||
      !WriteFile(out_bundle, issued->trust_bundle_pem)) {
    return Fail("cannot write the output files");
  }
  std::printf("serial %s\n", issued->serial_hex.c_str());
  return 0;
}

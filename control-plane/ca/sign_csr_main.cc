// sign_csr: signs one CSR with the workload CA, outside any server, so tests (and an operator
// debugging a CA setup) can inspect exactly what the CA issues with standard tools.
//
//   sign_csr --ca-dir DIR                          (the generated root, created if absent)
//   sign_csr --ca-cert CHAIN --ca-key KEY [--ca-roots ROOTS]   (an operator's CA)
//            --csr FILE --spiffe-id ID [--ttl-seconds N] --out-chain FILE --out-bundle FILE
//
// Exit status 0 on success; 1 with the reason on stderr when the CA refuses.

#include <cstdio>
#include <fstream>
#include <map>
#include <string>

#include "absl/strings/numbers.h"
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
  std::map<std::string, std::string> flags;
  for (int i = 1; i + 1 < argc; i += 2) flags[argv[i]] = argv[i + 1];
  if (argc % 2 != 1) return Fail("flags come in --name value pairs");
  for (const char* required : {"--csr", "--spiffe-id", "--out-chain", "--out-bundle"}) {
    if (!flags.count(required)) return Fail(std::string(required) + " is required");
  }
  int64_t ttl_seconds = 0;
  if (flags.count("--ttl-seconds") && !absl::SimpleAtoi(flags["--ttl-seconds"], &ttl_seconds)) {
    return Fail("--ttl-seconds: not a number");
  }
  meshlet::controlplane::ca::AuthorityOptions options;
  absl::StatusOr<std::unique_ptr<CertificateAuthority>> ca;
  if (flags.count("--ca-dir")) {
    ca = CertificateAuthority::LoadOrGenerateRoot(flags["--ca-dir"], options);
  } else if (flags.count("--ca-cert") && flags.count("--ca-key")) {
    ca = CertificateAuthority::FromFiles(flags["--ca-cert"], flags["--ca-key"],
                                         flags.count("--ca-roots") ? flags["--ca-roots"] : "",
                                         options);
  } else {
    return Fail("give --ca-dir, or --ca-cert and --ca-key");
  }
  if (!ca.ok()) return Fail(std::string(ca.status().message()));
  absl::StatusOr<std::string> csr = meshlet::tls::ReadSmallFile(flags["--csr"]);
  if (!csr.ok()) return Fail(std::string(csr.status().message()));
  absl::StatusOr<meshlet::tls::SpiffeId> id = meshlet::tls::SpiffeId::Parse(flags["--spiffe-id"]);
  if (!id.ok()) return Fail(std::string(id.status().message()));
  auto issued = (*ca)->Sign(*csr, *id, absl::Seconds(ttl_seconds));
  if (!issued.ok()) return Fail(std::string(issued.status().message()));
  if (!WriteFile(flags["--out-chain"], issued->chain_pem) ||
      !WriteFile(flags["--out-bundle"], issued->trust_bundle_pem)) {
    return Fail("cannot write the output files");
  }
  std::printf("serial %s\n", issued->serial_hex.c_str());
  return 0;
}

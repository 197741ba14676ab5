// Fuzz target for the CA's CSR handling (CertificateAuthority::Sign): what any workload holding a
// join token, a Kubernetes token or a mesh certificate can send the control plane.
//
// Input layout: byte 0 picks the requested lifetime ((b - 128) hours: negative, zero, within and
// beyond the limit); the rest is the CSR, PEM or DER, as the request's csr_pem field carries it.
// Invariants: a refusal is InvalidArgument (never another code, never a crash); a certificate is
// issued only over a CSR that BoringSSL parses and whose self-signature verifies with its own
// P-256 key; the leaf carries that key, exactly the requested SPIFFE id and nothing the CSR asked
// for, is no CA, and lives at most max_ttl (plus the backdate).

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/fuzz/fuzz_target.h"
#include "common/tls/certificate.h"
#include "common/tls/spiffe.h"
#include "control-plane/ca/authority.h"
#include "control-plane/ca/test_csr.h"
#include "openssl/bio.h"
#include "openssl/pem.h"
#include "openssl/x509.h"

namespace meshlet::controlplane::ca {
namespace {

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "csr_fuzz invariant broken: %s\n", what);
  std::abort();
}

struct Fixture {
  std::unique_ptr<CertificateAuthority> ca;
  std::optional<tls::SpiffeId> identity;
};

const Fixture& GetFixture() {
  static const Fixture* fixture = [] {
    auto* f = new Fixture;
    // A root generated once per process in a private directory (the CA writes its key there).
    char dir_template[] = "/tmp/meshlet-csr-fuzz-XXXXXX";
    if (mkdtemp(dir_template) == nullptr) Die("mkdtemp");
    AuthorityOptions options;
    options.max_ttl = absl::Hours(24);
    auto ca = CertificateAuthority::LoadOrGenerateRoot(std::string(dir_template) + "/ca", options);
    std::error_code ignored;
    std::filesystem::remove_all(dir_template, ignored);
    if (!ca.ok()) Die("no CA");
    f->ca = std::move(*ca);
    auto id = WorkloadSpiffeId("cluster.local", "default", "reviews");
    if (!id.ok()) Die("no identity");
    f->identity = *id;
    return f;
  }();
  return *fixture;
}

// The CSR as BoringSSL reads it, independently of the CA's own parsing.
bssl::UniquePtr<X509_REQ> ReadCsr(absl::string_view csr) {
  if (absl::StrContains(csr, "-----BEGIN")) {
    bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(csr.data(), static_cast<ptrdiff_t>(csr.size())));
    return bssl::UniquePtr<X509_REQ>(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  }
  const uint8_t* p = reinterpret_cast<const uint8_t*>(csr.data());
  return bssl::UniquePtr<X509_REQ>(d2i_X509_REQ(nullptr, &p, static_cast<long>(csr.size())));
}

void FuzzOne(absl::string_view input) {
  if (input.empty()) return;
  const Fixture& f = GetFixture();
  const absl::Duration ttl = absl::Hours(static_cast<int>(static_cast<uint8_t>(input[0])) - 128);
  const absl::string_view csr = input.substr(1);

  absl::StatusOr<IssuedCertificate> issued = f.ca->Sign(csr, *f.identity, ttl);
  ERR_clear_error();
  if (!issued.ok()) {
    if (!absl::IsInvalidArgument(issued.status())) Die("a refusal other than InvalidArgument");
    return;
  }
  bssl::UniquePtr<X509_REQ> req = ReadCsr(csr);
  if (req == nullptr) Die("issued over a CSR BoringSSL does not parse");
  bssl::UniquePtr<EVP_PKEY> csr_key(X509_REQ_get_pubkey(req.get()));
  if (csr_key == nullptr || X509_REQ_verify(req.get(), csr_key.get()) != 1) {
    Die("issued over a CSR whose signature does not verify");
  }
  absl::StatusOr<tls::CertificateChain> leaf = tls::ParsePemCertificates(issued->certificate_pem);
  if (!leaf.ok() || leaf->size() != 1) Die("the issued PEM is not one certificate");
  const X509& cert = *(*leaf)[0];
  bssl::UniquePtr<EVP_PKEY> cert_key(X509_get_pubkey(const_cast<X509*>(&cert)));
  if (cert_key == nullptr || EVP_PKEY_cmp(cert_key.get(), csr_key.get()) != 1) {
    Die("the leaf does not carry the CSR's key");
  }
  if (EVP_PKEY_id(cert_key.get()) != EVP_PKEY_EC) Die("a leaf over a key that is not EC");
  absl::StatusOr<tls::SpiffeId> id = tls::ExtractSpiffeId(cert);
  if (!id.ok() || id->ToString() != f.identity->ToString()) Die("the leaf's identity is not ours");
  if (!tls::DnsSans(cert).empty()) Die("the leaf carries DNS names");
  if (tls::IsCa(cert)) Die("the leaf is a CA");
  const AuthorityOptions& options = f.ca->options();
  if (tls::NotAfter(cert) - tls::NotBefore(cert) > options.max_ttl + options.backdate) {
    Die("the leaf outlives max_ttl");
  }
  if (issued->spiffe_id != f.identity->ToString()) Die("IssuedCertificate.spiffe_id differs");
}

}  // namespace

namespace fuzz_seeds {

std::vector<std::string> Seeds() {
  using testing::CsrKeyType;
  using testing::CsrOptions;
  std::vector<CsrOptions> kinds;
  kinds.push_back({});
  kinds.push_back({.common_name = "reviews",
                   .uri_sans = {"spiffe://cluster.local/ns/kube-system/sa/admin"},
                   .dns_sans = {"evil.example"}});
  kinds.push_back({.key_type = CsrKeyType::kEcdsaP384});
  kinds.push_back({.key_type = CsrKeyType::kRsa2048});
  kinds.push_back({.corrupt_signature = true});
  std::vector<std::string> seeds;
  const char ttl_bytes[] = {static_cast<char>(128 + 1), static_cast<char>(0),
                            static_cast<char>(255)};
  size_t i = 0;
  for (const CsrOptions& options : kinds) {
    absl::StatusOr<testing::TestCsr> csr = testing::MakeCsr(options);
    if (!csr.ok()) Die("MakeCsr failed");
    const char ttl = ttl_bytes[i++ % 3];
    seeds.push_back(std::string(1, ttl) + csr->csr_der);
    seeds.push_back(std::string(1, ttl) + csr->csr_pem);
  }
  return seeds;
}

}  // namespace fuzz_seeds
}  // namespace meshlet::controlplane::ca

namespace meshlet::fuzz {

std::vector<std::string> SeedCorpus() { return controlplane::ca::fuzz_seeds::Seeds(); }

std::vector<std::string> Dictionary() {
  return {"-----BEGIN CERTIFICATE REQUEST-----\n",
          "\n-----END CERTIFICATE REQUEST-----\n",
          std::string("\x30\x82", 2),
          std::string("\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07", 10),  // prime256v1
          std::string("\x06\x07\x2a\x86\x48\xce\x3d\x02\x01", 9),       // id-ecPublicKey
          std::string("\x06\x03\x55\x1d\x11", 5),                       // subjectAltName
          std::string("\xa0\x00", 2),
          "spiffe://cluster.local/ns/default/sa/reviews"};
}

}  // namespace meshlet::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  meshlet::controlplane::ca::FuzzOne(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}

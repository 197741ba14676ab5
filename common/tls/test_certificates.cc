#include "common/tls/test_certificates.h"

#include <openssl/bn.h>
#include <openssl/rsa.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/tls/certificate.h"
#include "common/tls/certificate_builder.h"

namespace meshlet::tls::testing {
namespace {

absl::Status Failed(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", DrainBoringSslErrors()));
}

absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> GenerateKey(TestKeyType type) {
  if (type == TestKeyType::kEcdsaP256) return GenerateEcdsaP256Key();
  bssl::UniquePtr<EVP_PKEY> pkey(EVP_PKEY_new());
  bssl::UniquePtr<RSA> rsa(RSA_new());
  bssl::UniquePtr<BIGNUM> e(BN_new());
  if (pkey == nullptr || rsa == nullptr || e == nullptr || !BN_set_word(e.get(), RSA_F4) ||
      !RSA_generate_key_ex(rsa.get(), 2048, e.get(), nullptr) ||
      !EVP_PKEY_assign_RSA(pkey.get(), rsa.get())) {
    return Failed("generating an RSA 2048 key");
  }
  rsa.release();  // owned by pkey
  return pkey;
}

// The test profile: subject O=meshlet test, validity relative to now, leaves for server and
// client use.
struct CertSpec {
  std::string common_name;
  bool is_ca = false;
  absl::Duration not_before_offset;
  absl::Duration not_after_offset;
  std::vector<std::string> uri_sans;
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;
  std::string attestation;
};

// Builds and signs a certificate for `subject_key`. A null `issuer` means self-signed.
absl::StatusOr<bssl::UniquePtr<X509>> MakeCertificate(const CertSpec& spec, EVP_PKEY* subject_key,
                                                      X509* issuer, EVP_PKEY* issuer_key) {
  const absl::Time now = absl::Now();
  return BuildCertificate({.common_name = spec.common_name,
                           .organization = "meshlet test",
                           .is_ca = spec.is_ca,
                           .not_before = now + spec.not_before_offset,
                           .not_after = now + spec.not_after_offset,
                           .uri_sans = spec.uri_sans,
                           .dns_names = spec.dns_names,
                           .ip_addresses = spec.ip_addresses,
                           .attestation = spec.attestation},
                          subject_key, issuer, issuer_key);
}

}  // namespace

absl::StatusOr<TestCa> TestCa::Create(absl::string_view common_name) {
  TestCa ca;
  ASSIGN_OR_RETURN(ca.key_, GenerateKey(TestKeyType::kEcdsaP256));
  CertSpec spec{.common_name = std::string(common_name),
                .is_ca = true,
                .not_before_offset = -absl::Hours(24 * 365 * 10),
                .not_after_offset = absl::Hours(24 * 365 * 10)};
  ASSIGN_OR_RETURN(ca.cert_, MakeCertificate(spec, ca.key_.get(), nullptr, nullptr));
  ASSIGN_OR_RETURN(ca.cert_pem_, CertificateToPem(*ca.cert_));
  ASSIGN_OR_RETURN(ca.key_pem_, PrivateKeyToPem(*ca.key_));
  return ca;
}

absl::StatusOr<TestCa> TestCa::CreateIntermediate(absl::string_view common_name) const {
  TestCa ca;
  ASSIGN_OR_RETURN(ca.key_, GenerateKey(TestKeyType::kEcdsaP256));
  CertSpec spec{.common_name = std::string(common_name),
                .is_ca = true,
                .not_before_offset = -absl::Hours(24 * 365),
                .not_after_offset = absl::Hours(24 * 365)};
  ASSIGN_OR_RETURN(ca.cert_, MakeCertificate(spec, ca.key_.get(), cert_.get(), key_.get()));
  ASSIGN_OR_RETURN(ca.cert_pem_, CertificateToPem(*ca.cert_));
  ASSIGN_OR_RETURN(ca.key_pem_, PrivateKeyToPem(*ca.key_));
  ca.is_root_ = false;
  // The root stays out of chains: peers already hold it in their trust bundle.
  ca.parents_pem_ = is_root_ ? "" : absl::StrCat(cert_pem_, parents_pem_);
  return ca;
}

absl::StatusOr<TestCertificate> TestCa::Issue(const LeafOptions& options) const {
  ASSIGN_OR_RETURN(bssl::UniquePtr<EVP_PKEY> key, GenerateKey(options.key_type));
  CertSpec spec{.common_name = options.common_name,
                .is_ca = options.is_ca,
                .not_before_offset = options.not_before_offset,
                .not_after_offset = options.not_after_offset,
                .uri_sans = {},
                .dns_names = options.dns_names,
                .ip_addresses = options.ip_addresses,
                .attestation = options.attestation};
  if (!options.spiffe_id.empty()) spec.uri_sans.push_back(options.spiffe_id);
  spec.uri_sans.insert(spec.uri_sans.end(), options.extra_uri_sans.begin(),
                       options.extra_uri_sans.end());
  ASSIGN_OR_RETURN(bssl::UniquePtr<X509> cert,
                   MakeCertificate(spec, key.get(), cert_.get(), key_.get()));
  TestCertificate out;
  ASSIGN_OR_RETURN(std::string cert_pem, CertificateToPem(*cert));
  out.chain_pem = is_root_ ? cert_pem : absl::StrCat(cert_pem, cert_pem_, parents_pem_);
  ASSIGN_OR_RETURN(out.key_pem, PrivateKeyToPem(*key));
  return out;
}

}  // namespace meshlet::tls::testing

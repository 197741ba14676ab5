#include "common/tls/test_certificates.h"

#include <arpa/inet.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/digest.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/tls/certificate.h"

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

absl::Status AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509V3_set_ctx_nodb(&ctx);
  bssl::UniquePtr<X509_EXTENSION> ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value));
  if (ext == nullptr || !X509_add_ext(cert, ext.get(), -1)) {
    return Failed(absl::StrCat("adding extension ", OBJ_nid2sn(nid), "=", value));
  }
  return absl::OkStatus();
}

absl::Status AddName(bssl::UniquePtr<GENERAL_NAMES>& names, int type, absl::string_view value) {
  bssl::UniquePtr<GENERAL_NAME> name(GENERAL_NAME_new());
  // An IP address SAN is its 4 or 16 bytes in an OCTET STRING; the others are IA5 text.
  std::string bytes(value);
  if (type == GEN_IPADD) {
    unsigned char ip[16];
    if (::inet_pton(AF_INET, bytes.c_str(), ip) == 1) {
      bytes.assign(reinterpret_cast<char*>(ip), 4);
    } else if (::inet_pton(AF_INET6, bytes.c_str(), ip) == 1) {
      bytes.assign(reinterpret_cast<char*>(ip), 16);
    } else {
      return Failed(absl::StrCat("not an IP address: ", value));
    }
    value = bytes;
  }
  bssl::UniquePtr<ASN1_STRING> str(type == GEN_IPADD ? ASN1_OCTET_STRING_new()
                                                     : ASN1_IA5STRING_new());
  if (name == nullptr || str == nullptr ||
      !ASN1_STRING_set(str.get(), value.data(), static_cast<int>(value.size()))) {
    return Failed("building a SAN");
  }
  GENERAL_NAME_set0_value(name.get(), type, str.release());
  if (!bssl::PushToStack(names.get(), std::move(name))) return Failed("building SANs");
  return absl::OkStatus();
}

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
  bssl::UniquePtr<X509> cert(X509_new());
  if (cert == nullptr || !X509_set_version(cert.get(), X509_VERSION_3)) return Failed("X509_new");

  // 127 random bits: positive, unique, as RFC 5280 asks.
  uint8_t serial_bytes[16];
  RAND_bytes(serial_bytes, sizeof(serial_bytes));
  serial_bytes[0] &= 0x7f;
  bssl::UniquePtr<BIGNUM> serial(BN_bin2bn(serial_bytes, sizeof(serial_bytes), nullptr));
  if (serial == nullptr || !BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get()))) {
    return Failed("setting the serial number");
  }

  absl::Time now = absl::Now();
  if (!ASN1_TIME_set(X509_getm_notBefore(cert.get()),
                     absl::ToTimeT(now + spec.not_before_offset)) ||
      !ASN1_TIME_set(X509_getm_notAfter(cert.get()), absl::ToTimeT(now + spec.not_after_offset))) {
    return Failed("setting validity");
  }

  X509_NAME* subject = X509_get_subject_name(cert.get());
  const auto* cn = reinterpret_cast<const uint8_t*>(spec.common_name.data());
  const auto* org = reinterpret_cast<const uint8_t*>("meshlet test");
  if (!X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_UTF8, org, -1, -1, 0) ||
      !X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, cn,
                                  static_cast<int>(spec.common_name.size()), -1, 0)) {
    return Failed("setting the subject");
  }
  X509* signer = issuer != nullptr ? issuer : cert.get();
  if (!X509_set_issuer_name(cert.get(), X509_get_subject_name(signer)) ||
      !X509_set_pubkey(cert.get(), subject_key)) {
    return Failed("setting issuer or public key");
  }

  X509* cert_ptr = cert.get();
  if (spec.is_ca) {
    RETURN_IF_ERROR(AddExtension(cert_ptr, signer, NID_basic_constraints, "critical,CA:TRUE"));
    RETURN_IF_ERROR(AddExtension(cert_ptr, signer, NID_key_usage, "critical,keyCertSign,cRLSign"));
  } else {
    RETURN_IF_ERROR(AddExtension(cert_ptr, signer, NID_basic_constraints, "critical,CA:FALSE"));
    RETURN_IF_ERROR(
        AddExtension(cert_ptr, signer, NID_key_usage, "critical,digitalSignature,keyEncipherment"));
    RETURN_IF_ERROR(AddExtension(cert_ptr, signer, NID_ext_key_usage, "serverAuth,clientAuth"));
  }
  RETURN_IF_ERROR(AddExtension(cert_ptr, signer, NID_subject_key_identifier, "hash"));
  RETURN_IF_ERROR(AddExtension(cert_ptr, signer, NID_authority_key_identifier, "keyid:always"));

  if (!spec.uri_sans.empty() || !spec.dns_names.empty() || !spec.ip_addresses.empty()) {
    bssl::UniquePtr<GENERAL_NAMES> names(sk_GENERAL_NAME_new_null());
    if (names == nullptr) return Failed("building SANs");
    for (const std::string& uri : spec.uri_sans) RETURN_IF_ERROR(AddName(names, GEN_URI, uri));
    for (const std::string& dns : spec.dns_names) RETURN_IF_ERROR(AddName(names, GEN_DNS, dns));
    for (const std::string& ip : spec.ip_addresses) RETURN_IF_ERROR(AddName(names, GEN_IPADD, ip));
    // SPIFFE: the SAN extension is critical when the subject is empty; harmless otherwise.
    if (!X509_add1_ext_i2d(cert_ptr, NID_subject_alt_name, names.get(), /*crit=*/1,
                           X509V3_ADD_DEFAULT)) {
      return Failed("adding SANs");
    }
  }

  if (!spec.attestation.empty()) RETURN_IF_ERROR(AddAttestation(*cert_ptr, spec.attestation));

  if (!X509_sign(cert_ptr, issuer_key != nullptr ? issuer_key : subject_key, EVP_sha256())) {
    return Failed("signing");
  }
  return cert;
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

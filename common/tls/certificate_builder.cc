#include "common/tls/certificate_builder.h"

#include <arpa/inet.h>

#include <openssl/bn.h>
#include <openssl/digest.h>
#include <openssl/nid.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/tls/certificate.h"

namespace meshlet::tls {
namespace {

absl::Status Failed(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", DrainBoringSslErrors()));
}

absl::Status AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509V3_set_ctx_nodb(&ctx);
  bssl::UniquePtr<X509_EXTENSION> ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value.c_str()));
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
      return absl::InvalidArgumentError(absl::StrCat("not an IP address: ", value));
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

}  // namespace

absl::StatusOr<bssl::UniquePtr<X509>> BuildCertificate(const CertificateSpec& spec,
                                                       EVP_PKEY* subject_key, X509* issuer,
                                                       EVP_PKEY* issuer_key) {
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
  if (!ASN1_TIME_set(X509_getm_notBefore(cert.get()), absl::ToTimeT(spec.not_before)) ||
      !ASN1_TIME_set(X509_getm_notAfter(cert.get()), absl::ToTimeT(spec.not_after))) {
    return Failed("setting validity");
  }

  X509_NAME* subject = X509_get_subject_name(cert.get());
  const auto* cn = reinterpret_cast<const uint8_t*>(spec.common_name.data());
  const auto* org = reinterpret_cast<const uint8_t*>(spec.organization.data());
  if (!X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_UTF8, org,
                                  static_cast<int>(spec.organization.size()), -1, 0) ||
      !X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, cn,
                                  static_cast<int>(spec.common_name.size()), -1, 0)) {
    return Failed("setting the subject");
  }
  X509* signer = issuer != nullptr ? issuer : cert.get();
  if (!X509_set_issuer_name(cert.get(), X509_get_subject_name(signer)) ||
      !X509_set_pubkey(cert.get(), subject_key)) {
    return Failed("setting issuer or public key");
  }

  X509* c = cert.get();
  if (spec.is_ca) {
    RETURN_IF_ERROR(AddExtension(c, signer, NID_basic_constraints,
                                 spec.path_length >= 0
                                     ? absl::StrCat("critical,CA:TRUE,pathlen:", spec.path_length)
                                     : std::string("critical,CA:TRUE")));
    RETURN_IF_ERROR(AddExtension(c, signer, NID_key_usage, "critical,keyCertSign,cRLSign"));
  } else {
    RETURN_IF_ERROR(AddExtension(c, signer, NID_basic_constraints, "critical,CA:FALSE"));
    RETURN_IF_ERROR(
        AddExtension(c, signer, NID_key_usage, "critical,digitalSignature,keyEncipherment"));
    if (spec.server_auth || spec.client_auth) {
      RETURN_IF_ERROR(AddExtension(c, signer, NID_ext_key_usage,
                                   spec.server_auth && spec.client_auth ? "serverAuth,clientAuth"
                                   : spec.server_auth                   ? "serverAuth"
                                                                        : "clientAuth"));
    }
  }
  RETURN_IF_ERROR(AddExtension(c, signer, NID_subject_key_identifier, "hash"));
  RETURN_IF_ERROR(AddExtension(c, signer, NID_authority_key_identifier, "keyid:always"));

  if (!spec.uri_sans.empty() || !spec.dns_names.empty() || !spec.ip_addresses.empty()) {
    bssl::UniquePtr<GENERAL_NAMES> names(sk_GENERAL_NAME_new_null());
    if (names == nullptr) return Failed("building SANs");
    for (const std::string& uri : spec.uri_sans) RETURN_IF_ERROR(AddName(names, GEN_URI, uri));
    for (const std::string& dns : spec.dns_names) RETURN_IF_ERROR(AddName(names, GEN_DNS, dns));
    for (const std::string& ip : spec.ip_addresses) RETURN_IF_ERROR(AddName(names, GEN_IPADD, ip));
    // SPIFFE: the SAN extension is critical when the subject is empty; harmless otherwise.
    if (!X509_add1_ext_i2d(c, NID_subject_alt_name, names.get(), /*crit=*/1, X509V3_ADD_DEFAULT)) {
      return Failed("adding SANs");
    }
  }

  if (!spec.attestation.empty()) RETURN_IF_ERROR(AddAttestation(*c, spec.attestation));

  if (!X509_sign(c, issuer_key != nullptr ? issuer_key : subject_key, EVP_sha256())) {
    return Failed("signing");
  }
  return cert;
}

}  // namespace meshlet::tls

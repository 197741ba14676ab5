#include "control-plane/ca/test_csr.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/digest.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/tls/certificate.h"

namespace meshlet::controlplane::ca::testing {
namespace {

absl::Status Failed(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", tls::DrainBoringSslErrors()));
}

absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> GenerateKey(CsrKeyType type) {
  bssl::UniquePtr<EVP_PKEY> pkey(EVP_PKEY_new());
  if (type == CsrKeyType::kRsa2048) {
    bssl::UniquePtr<RSA> rsa(RSA_new());
    bssl::UniquePtr<BIGNUM> e(BN_new());
    if (!BN_set_word(e.get(), RSA_F4) || !RSA_generate_key_ex(rsa.get(), 2048, e.get(), nullptr) ||
        !EVP_PKEY_assign_RSA(pkey.get(), rsa.get())) {
      return Failed("RSA key");
    }
    rsa.release();
    return pkey;
  }
  bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(
      type == CsrKeyType::kEcdsaP256 ? NID_X9_62_prime256v1 : NID_secp384r1));
  if (ec == nullptr || !EC_KEY_generate_key(ec.get()) ||
      !EVP_PKEY_assign_EC_KEY(pkey.get(), ec.get())) {
    return Failed("EC key");
  }
  ec.release();
  return pkey;
}

absl::Status AddName(GENERAL_NAMES* names, int type, const std::string& value) {
  bssl::UniquePtr<GENERAL_NAME> name(GENERAL_NAME_new());
  bssl::UniquePtr<ASN1_IA5STRING> str(ASN1_IA5STRING_new());
  if (!ASN1_STRING_set(str.get(), value.data(), static_cast<int>(value.size()))) {
    return Failed("SAN");
  }
  GENERAL_NAME_set0_value(name.get(), type, str.release());
  if (!bssl::PushToStack(names, std::move(name))) return Failed("SAN stack");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TestCsr> MakeCsr(const CsrOptions& options) {
  ASSIGN_OR_RETURN(bssl::UniquePtr<EVP_PKEY> key, GenerateKey(options.key_type));
  bssl::UniquePtr<X509_REQ> req(X509_REQ_new());
  if (!X509_REQ_set_version(req.get(), X509_REQ_VERSION_1) ||
      !X509_REQ_set_pubkey(req.get(), key.get())) {
    return Failed("X509_REQ");
  }
  if (!options.common_name.empty()) {
    X509_NAME* name = X509_REQ_get_subject_name(req.get());
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                    reinterpret_cast<const uint8_t*>(options.common_name.data()),
                                    static_cast<int>(options.common_name.size()), -1, 0)) {
      return Failed("subject");
    }
  }
  if (!options.uri_sans.empty() || !options.dns_sans.empty()) {
    bssl::UniquePtr<GENERAL_NAMES> names(sk_GENERAL_NAME_new_null());
    for (const auto& uri : options.uri_sans) RETURN_IF_ERROR(AddName(names.get(), GEN_URI, uri));
    for (const auto& dns : options.dns_sans) RETURN_IF_ERROR(AddName(names.get(), GEN_DNS, dns));
    bssl::UniquePtr<STACK_OF(X509_EXTENSION)> exts(sk_X509_EXTENSION_new_null());
    bssl::UniquePtr<X509_EXTENSION> ext(X509V3_EXT_i2d(NID_subject_alt_name, 0, names.get()));
    if (ext == nullptr || !bssl::PushToStack(exts.get(), std::move(ext)) ||
        !X509_REQ_add_extensions(req.get(), exts.get())) {
      return Failed("CSR extensions");
    }
  }
  if (!X509_REQ_sign(req.get(), key.get(), EVP_sha256())) return Failed("signing the CSR");

  uint8_t* der = nullptr;
  int der_len = i2d_X509_REQ(req.get(), &der);
  if (der_len <= 0) return Failed("encoding the CSR");
  TestCsr out;
  out.csr_der.assign(reinterpret_cast<const char*>(der), static_cast<size_t>(der_len));
  OPENSSL_free(der);
  if (options.corrupt_signature) {
    // The signature BIT STRING is the last element: flipping the last byte breaks it while the
    // structure still parses.
    out.csr_der.back() ^= 0x01;
  }
  const uint8_t* p = reinterpret_cast<const uint8_t*>(out.csr_der.data());
  bssl::UniquePtr<X509_REQ> reparsed(d2i_X509_REQ(nullptr, &p, static_cast<long>(der_len)));
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (reparsed == nullptr || !PEM_write_bio_X509_REQ(bio.get(), reparsed.get())) {
    return Failed("CSR PEM");
  }
  const uint8_t* data = nullptr;
  size_t len = 0;
  BIO_mem_contents(bio.get(), &data, &len);
  out.csr_pem.assign(reinterpret_cast<const char*>(data), len);
  bssl::UniquePtr<BIO> key_bio(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr)) {
    return Failed("key PEM");
  }
  BIO_mem_contents(key_bio.get(), &data, &len);
  out.key_pem.assign(reinterpret_cast<const char*>(data), len);
  return out;
}

}  // namespace meshlet::controlplane::ca::testing

#include "sidecar/identity/workload_key.h"

#include <openssl/bio.h>
#include <openssl/digest.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/tls/certificate.h"

namespace meshlet::sidecar::identity {
namespace {

absl::Status Failed(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", tls::DrainBoringSslErrors()));
}

std::string BioContents(BIO* bio) {
  const uint8_t* data = nullptr;
  size_t len = 0;
  BIO_mem_contents(bio, &data, &len);
  return std::string(reinterpret_cast<const char*>(data), len);
}

}  // namespace

absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> GenerateWorkloadKey() {
  return tls::GenerateEcdsaP256Key();
}

absl::StatusOr<std::string> BuildCsrPem(EVP_PKEY& key, const tls::SpiffeId& id) {
  bssl::UniquePtr<X509_REQ> req(X509_REQ_new());
  if (req == nullptr || !X509_REQ_set_version(req.get(), X509_REQ_VERSION_1) ||
      !X509_REQ_set_pubkey(req.get(), &key)) {
    return Failed("building the CSR");
  }
  const std::string uri = id.ToString();
  bssl::UniquePtr<GENERAL_NAMES> names(sk_GENERAL_NAME_new_null());
  bssl::UniquePtr<GENERAL_NAME> name(GENERAL_NAME_new());
  bssl::UniquePtr<ASN1_IA5STRING> value(ASN1_IA5STRING_new());
  if (names == nullptr || name == nullptr || value == nullptr ||
      !ASN1_STRING_set(value.get(), uri.data(), static_cast<int>(uri.size()))) {
    return Failed("building the CSR's SAN");
  }
  GENERAL_NAME_set0_value(name.get(), GEN_URI, value.release());
  if (!bssl::PushToStack(names.get(), std::move(name))) return Failed("building the CSR's SAN");
  bssl::UniquePtr<STACK_OF(X509_EXTENSION)> extensions(sk_X509_EXTENSION_new_null());
  bssl::UniquePtr<X509_EXTENSION> san(
      X509V3_EXT_i2d(NID_subject_alt_name, /*crit=*/1, names.get()));
  if (extensions == nullptr || san == nullptr ||
      !bssl::PushToStack(extensions.get(), std::move(san)) ||
      !X509_REQ_add_extensions(req.get(), extensions.get())) {
    return Failed("adding the CSR's extensions");
  }
  if (!X509_REQ_sign(req.get(), &key, EVP_sha256())) return Failed("signing the CSR");
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || !PEM_write_bio_X509_REQ(bio.get(), req.get())) {
    return Failed("encoding the CSR");
  }
  return BioContents(bio.get());
}

absl::StatusOr<std::string> PrivateKeyPem(EVP_PKEY& key) { return tls::PrivateKeyToPem(key); }

}  // namespace meshlet::sidecar::identity

#include "control-plane/ca/signer.h"

#include <openssl/bytestring.h>
#include <openssl/digest.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/obj.h>

#include "absl/strings/str_cat.h"
#include "common/tls/certificate.h"

namespace meshlet::controlplane::ca {
namespace {

absl::Status SslError(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", tls::DrainBoringSslErrors()));
}

class InMemorySigner final : public Signer {
 public:
  explicit InMemorySigner(bssl::UniquePtr<EVP_PKEY> key) : key_(std::move(key)) {}

  SignerKeyType key_type() const override {
    return EVP_PKEY_id(key_.get()) == EVP_PKEY_RSA ? SignerKeyType::kRsa
                                                   : SignerKeyType::kEcdsaP256;
  }

  absl::StatusOr<std::string> SignSha256(absl::string_view data) const override {
    bssl::ScopedEVP_MD_CTX ctx;
    size_t len = 0;
    if (!EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key_.get()) ||
        !EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const uint8_t*>(data.data()),
                        data.size())) {
      return SslError("signing");
    }
    std::string sig(len, '\0');
    if (!EVP_DigestSign(ctx.get(), reinterpret_cast<uint8_t*>(sig.data()), &len,
                        reinterpret_cast<const uint8_t*>(data.data()), data.size())) {
      return SslError("signing");
    }
    sig.resize(len);
    return sig;
  }

  std::string Describe() const override { return "in-memory key"; }

 private:
  bssl::UniquePtr<EVP_PKEY> key_;
};

}  // namespace

std::unique_ptr<Signer> NewInMemorySigner(bssl::UniquePtr<EVP_PKEY> key) {
  return std::make_unique<InMemorySigner>(std::move(key));
}

absl::Status SignCertificate(const Signer& signer, X509& cert) {
  bssl::UniquePtr<X509_ALGOR> algo(X509_ALGOR_new());
  if (algo == nullptr) return SslError("X509_ALGOR_new");
  const bool rsa = signer.key_type() == SignerKeyType::kRsa;
  if (!X509_ALGOR_set0(algo.get(),
                       OBJ_nid2obj(rsa ? NID_sha256WithRSAEncryption : NID_ecdsa_with_SHA256),
                       rsa ? V_ASN1_NULL : V_ASN1_UNDEF, nullptr) ||
      !X509_set1_signature_algo(&cert, algo.get())) {
    return SslError("setting the signature algorithm");
  }
  uint8_t* tbs = nullptr;
  const int tbs_len = i2d_re_X509_tbs(&cert, &tbs);
  if (tbs_len <= 0) return SslError("encoding the TBSCertificate");
  bssl::UniquePtr<uint8_t> tbs_owner(tbs);
  absl::StatusOr<std::string> sig =
      signer.SignSha256(absl::string_view(reinterpret_cast<const char*>(tbs), tbs_len));
  if (!sig.ok()) return sig.status();
  if (!X509_set1_signature_value(&cert, reinterpret_cast<const uint8_t*>(sig->data()),
                                 sig->size())) {
    return SslError("storing the signature");
  }
  return absl::OkStatus();
}

absl::Status CheckSignerMatchesCertificate(const Signer& signer, const X509& cert) {
  static constexpr absl::string_view kProbe = "meshlet CA signer key check";
  absl::StatusOr<std::string> sig = signer.SignSha256(kProbe);
  if (!sig.ok()) return sig.status();
  bssl::UniquePtr<EVP_PKEY> pub(X509_get_pubkey(const_cast<X509*>(&cert)));
  bssl::ScopedEVP_MD_CTX ctx;
  if (pub == nullptr ||
      !EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, pub.get()) ||
      !EVP_DigestVerify(ctx.get(), reinterpret_cast<const uint8_t*>(sig->data()), sig->size(),
                        reinterpret_cast<const uint8_t*>(kProbe.data()), kProbe.size())) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(
        signer.Describe(), ": the key does not match the CA certificate (", tls::SubjectName(cert),
        "): a signature it made does not verify under the certificate"));
  }
  return absl::OkStatus();
}

}  // namespace meshlet::controlplane::ca

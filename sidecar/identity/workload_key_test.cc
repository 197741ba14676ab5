#include "sidecar/identity/workload_key.h"

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/tls/certificate.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::identity {
namespace {

constexpr char kId[] = "spiffe://cluster.local/ns/default/sa/frontend";

TEST(WorkloadKeyTest, KeysAreFreshP256) {
  auto a = GenerateWorkloadKey();
  auto b = GenerateWorkloadKey();
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(EVP_PKEY_id(a->get()), EVP_PKEY_EC);
  EXPECT_EQ(EC_GROUP_get_curve_name(EC_KEY_get0_group(EVP_PKEY_get0_EC_KEY(a->get()))),
            NID_X9_62_prime256v1);
  EXPECT_NE(EVP_PKEY_cmp(a->get(), b->get()), 1);
  auto pem = PrivateKeyPem(**a);
  ASSERT_TRUE(pem.ok());
  auto parsed = tls::ParsePemPrivateKey(*pem);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(EVP_PKEY_cmp(parsed->get(), a->get()), 1);
}

TEST(WorkloadKeyTest, CsrIsSelfSignedAndNamesTheSpiffeId) {
  auto key = GenerateWorkloadKey();
  ASSERT_TRUE(key.ok());
  auto csr_pem = BuildCsrPem(**key, *tls::SpiffeId::Parse(kId));
  ASSERT_TRUE(csr_pem.ok()) << csr_pem.status();
  bssl::UniquePtr<BIO> bio(
      BIO_new_mem_buf(csr_pem->data(), static_cast<ptrdiff_t>(csr_pem->size())));
  bssl::UniquePtr<X509_REQ> req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  ASSERT_NE(req, nullptr);
  bssl::UniquePtr<EVP_PKEY> public_key(X509_REQ_get_pubkey(req.get()));
  ASSERT_NE(public_key, nullptr);
  EXPECT_EQ(X509_REQ_verify(req.get(), public_key.get()), 1);
  EXPECT_EQ(EVP_PKEY_cmp(public_key.get(), key->get()), 1);

  bssl::UniquePtr<STACK_OF(X509_EXTENSION)> extensions(X509_REQ_get_extensions(req.get()));
  ASSERT_NE(extensions, nullptr);
  ASSERT_EQ(sk_X509_EXTENSION_num(extensions.get()), 1u);
  bssl::UniquePtr<GENERAL_NAMES> names(
      static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(sk_X509_EXTENSION_value(extensions.get(), 0))));
  ASSERT_NE(names, nullptr);
  ASSERT_EQ(sk_GENERAL_NAME_num(names.get()), 1u);
  const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), 0);
  ASSERT_EQ(name->type, GEN_URI);
  const ASN1_STRING* uri = name->d.uniformResourceIdentifier;
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                        static_cast<size_t>(ASN1_STRING_length(uri))),
            kId);
  // No subject: the identity is the SAN.
  EXPECT_EQ(X509_NAME_entry_count(X509_REQ_get_subject_name(req.get())), 0);
}

}  // namespace
}  // namespace meshlet::sidecar::identity

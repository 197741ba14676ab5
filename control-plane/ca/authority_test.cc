#include "control-plane/ca/authority.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/base/fake_clock.h"
#include "common/tls/certificate.h"
#include "common/tls/certificate_builder.h"
#include "common/tls/test_certificates.h"
#include "control-plane/ca/test_csr.h"
#include "control-plane/store/file_store.h"
#include "control-plane/store/shared_value.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::ca {
namespace {

using testing::CsrKeyType;
using testing::MakeCsr;

constexpr char kFrontend[] = "spiffe://cluster.local/ns/default/sa/frontend";

tls::SpiffeId Id(absl::string_view text) { return *tls::SpiffeId::Parse(text); }

std::string TempDir() {
  std::string templ = absl::StrCat(std::getenv("TEST_TMPDIR"), "/ca.XXXXXX");
  return std::string(::mkdtemp(templ.data()));
}

// Verifies `chain_pem` (leaf first) against `bundle_pem` as a TLS client would verify a server,
// at `when`. Returns the X509 error string, or "" when it verifies.
std::string VerifyChain(const std::string& chain_pem, const std::string& bundle_pem,
                        absl::Time when, const char* purpose = "sslserver") {
  auto chain = tls::ParsePemCertificates(chain_pem);
  auto bundle = tls::ParsePemCertificates(bundle_pem);
  if (!chain.ok() || !bundle.ok()) return "unparsable";
  bssl::UniquePtr<X509_STORE> store(X509_STORE_new());
  for (const auto& root : *bundle) X509_STORE_add_cert(store.get(), root.get());
  bssl::UniquePtr<STACK_OF(X509)> untrusted(sk_X509_new_null());
  for (size_t i = 1; i < chain->size(); ++i) {
    bssl::PushToStack(untrusted.get(), bssl::UpRef((*chain)[i]));
  }
  bssl::UniquePtr<X509_STORE_CTX> ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), (*chain)[0].get(), untrusted.get());
  X509_STORE_CTX_set_time(ctx.get(), 0, absl::ToTimeT(when));
  X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_get_by_sname(const_cast<char*>(purpose)));
  if (X509_verify_cert(ctx.get()) == 1) return "";
  std::string error = X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
  ERR_clear_error();
  return error;
}

bssl::UniquePtr<X509> Leaf(const IssuedCertificate& issued) {
  auto certs = tls::ParsePemCertificates(issued.certificate_pem);
  EXPECT_TRUE(certs.ok());
  return std::move(certs->front());
}

// A CA certificate and key built at test time with what the validation refuses.
struct Material {
  bssl::UniquePtr<X509> cert;
  bssl::UniquePtr<EVP_PKEY> key;
  std::string cert_pem;
  std::string key_pem;
};

struct CaSpec {
  std::string name;
  int path_length = -1;
  absl::Duration not_before_offset = -absl::Hours(1);
  absl::Duration not_after_offset = absl::Hours(24 * 30);
  // Replaces keyUsage with digitalSignature alone.
  bool without_cert_sign = false;
  // Adds nameConstraints (critical) with this value, e.g. "permitted;URI:other.example".
  std::string name_constraints;
};

// Re-signs `cert` after replacing or adding extension `nid` with `value`.
void SetExtension(X509* cert, int nid, const std::string& value, X509* issuer, EVP_PKEY* key) {
  const int at = X509_get_ext_by_NID(cert, nid, -1);
  if (at >= 0) X509_EXTENSION_free(X509_delete_ext(cert, at));
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509V3_set_ctx_nodb(&ctx);
  bssl::UniquePtr<X509_EXTENSION> ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value.c_str()));
  ASSERT_NE(ext, nullptr) << value;
  ASSERT_TRUE(X509_add_ext(cert, ext.get(), -1));
  ASSERT_TRUE(X509_sign(cert, key, EVP_sha256()));
}

// A CA certificate for `spec`, signed by `issuer` (null: self-signed).
Material MakeCa(const CaSpec& spec, const Material* issuer = nullptr) {
  Material out;
  out.key = tls::testing::ValueOrDie(tls::GenerateEcdsaP256Key());
  const absl::Time now = absl::Now();
  out.cert = tls::testing::ValueOrDie(tls::BuildCertificate(
      {.common_name = spec.name,
       .is_ca = true,
       .path_length = spec.path_length,
       .not_before = now + spec.not_before_offset,
       .not_after = now + spec.not_after_offset},
      out.key.get(), issuer ? issuer->cert.get() : nullptr, issuer ? issuer->key.get() : nullptr));
  X509* signer = issuer ? issuer->cert.get() : out.cert.get();
  EVP_PKEY* signer_key = issuer ? issuer->key.get() : out.key.get();
  if (spec.without_cert_sign) {
    SetExtension(out.cert.get(), NID_key_usage, "critical,digitalSignature", signer, signer_key);
  }
  if (!spec.name_constraints.empty()) {
    SetExtension(out.cert.get(), NID_name_constraints, "critical," + spec.name_constraints, signer,
                 signer_key);
  }
  out.cert_pem = tls::testing::ValueOrDie(tls::CertificateToPem(*out.cert));
  out.key_pem = tls::testing::ValueOrDie(tls::PrivateKeyToPem(*out.key));
  return out;
}

class AuthorityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // FakeClock's wall time is fixed; move it to the real present so that test CAs (issued
    // with the real time) are valid at it.
    clock_.Advance(absl::ToChronoNanoseconds(absl::Now() - clock_.WallNow()));
  }
  FakeClock clock_;
};

TEST_F(AuthorityTest, GeneratesRootOnFirstStartAndReloadsIt) {
  const std::string dir = absl::StrCat(TempDir(), "/ca");
  auto first = CertificateAuthority::LoadOrGenerateRoot(dir, {}, clock_);
  ASSERT_TRUE(first.ok()) << first.status();
  const X509& root = (*first)->signing_certificate();
  EXPECT_TRUE(tls::IsCa(root));
  tls::CertificateInfo info = tls::DescribeCertificate(root);
  EXPECT_EQ(info.key_algorithm, tls::KeyAlgorithm::kEcdsa);
  EXPECT_EQ(info.key_bits, 256);
  EXPECT_GE(info.not_after - clock_.WallNow(), absl::Hours(24 * 365 * 10) - absl::Minutes(1));
  EXPECT_EQ((*first)->trust_bundle().size(), 1u);

  struct stat key_stat;
  ASSERT_EQ(::stat(absl::StrCat(dir, "/root-key.pem").c_str(), &key_stat), 0);
  EXPECT_EQ(key_stat.st_mode & 0777, 0600u);
  struct stat dir_stat;
  ASSERT_EQ(::stat(dir.c_str(), &dir_stat), 0);
  EXPECT_EQ(dir_stat.st_mode & 0077, 0u);

  auto second = CertificateAuthority::LoadOrGenerateRoot(dir, {}, clock_);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ((*second)->trust_bundle_pem(), (*first)->trust_bundle_pem());

  // A certificate issued before the restart verifies with the bundle after it.
  auto csr = MakeCsr();
  ASSERT_TRUE(csr.ok());
  auto issued = (*first)->Sign(csr->csr_pem, Id(kFrontend), absl::Hours(1));
  ASSERT_TRUE(issued.ok()) << issued.status();
  EXPECT_EQ(VerifyChain(issued->chain_pem, (*second)->trust_bundle_pem(), clock_.WallNow()), "");
}

TEST_F(AuthorityTest, RefusesHalfAGeneratedCa) {
  const std::string dir = TempDir();
  ASSERT_TRUE(CertificateAuthority::LoadOrGenerateRoot(dir, {}, clock_).ok());
  ASSERT_EQ(::unlink(absl::StrCat(dir, "/root-key.pem").c_str()), 0);
  auto again = CertificateAuthority::LoadOrGenerateRoot(dir, {}, clock_);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("root-key.pem is missing"), std::string::npos)
      << again.status();
}

TEST_F(AuthorityTest, ReplicasOnOneStoreShareOneGeneratedRoot) {
  auto store = FileStore::Open(absl::StrCat(TempDir(), "/store"));
  ASSERT_TRUE(store.ok()) << store.status();
  absl::StatusOr<StoreKeys> keys = StoreKeys::Parse(StoreKeys::GenerateKeyText(), "test");
  ASSERT_TRUE(keys.ok()) << keys.status();
  auto a = CertificateAuthority::LoadOrGenerateSharedRoot(**store, *keys, {}, clock_);
  auto b = CertificateAuthority::LoadOrGenerateSharedRoot(**store, *keys, {}, clock_);
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
  EXPECT_EQ((*a)->trust_bundle_pem(), (*b)->trust_bundle_pem());
  // What one replica signs, a sidecar configured by the other verifies.
  auto csr = MakeCsr();
  ASSERT_TRUE(csr.ok());
  auto issued = (*b)->Sign(csr->csr_pem, Id(kFrontend), absl::Hours(1));
  ASSERT_TRUE(issued.ok()) << issued.status();
  EXPECT_EQ(VerifyChain(issued->chain_pem, (*a)->trust_bundle_pem(), clock_.WallNow()), "");
  // The store holds the root encrypted, never its key in PEM.
  const ResourceKey key{kSharedValueKind, "", "ca-root"};
  absl::StatusOr<StoredResource> stored = (*store)->Get(key);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_TRUE(StoreKeys::IsSealed(stored->body));
  EXPECT_EQ(stored->body.find("PRIVATE KEY"), std::string::npos);
  // A damaged value is an error naming it, never a new root.
  ASSERT_TRUE((*store)->Put(key, *keys->Seal("ca-root", "garbage"), kAnyRevision).ok());
  auto damaged = CertificateAuthority::LoadOrGenerateSharedRoot(**store, *keys, {}, clock_);
  ASSERT_FALSE(damaged.ok());
  EXPECT_NE(damaged.status().message().find("shared CA root in the store"), std::string::npos)
      << damaged.status();
}

TEST_F(AuthorityTest, IssuesExactlyTheAttestedIdentityIgnoringTheCsrNames) {
  auto ca = CertificateAuthority::LoadOrGenerateRoot(TempDir(), {}, clock_);
  ASSERT_TRUE(ca.ok());
  auto csr = MakeCsr({.common_name = "admin",
                      .uri_sans = {"spiffe://cluster.local/ns/kube-system/sa/admin"},
                      .dns_sans = {"evil.example"}});
  ASSERT_TRUE(csr.ok()) << csr.status();
  auto issued = (*ca)->Sign(csr->csr_pem, Id(kFrontend), absl::Hours(24));
  ASSERT_TRUE(issued.ok()) << issued.status();
  bssl::UniquePtr<X509> leaf = Leaf(*issued);

  EXPECT_EQ(tls::UriSans(*leaf), std::vector<std::string>{kFrontend});
  EXPECT_TRUE(tls::DnsSans(*leaf).empty());
  EXPECT_EQ(tls::SubjectName(*leaf), "");
  EXPECT_FALSE(tls::IsCa(*leaf));
  EXPECT_EQ(issued->spiffe_id, kFrontend);
  auto spiffe = tls::ExtractSpiffeId(*leaf);
  ASSERT_TRUE(spiffe.ok());
  EXPECT_EQ(spiffe->ToString(), kFrontend);

  EXPECT_EQ(X509_get_key_usage(leaf.get()), static_cast<uint32_t>(KU_DIGITAL_SIGNATURE));
  EXPECT_EQ(X509_get_extended_key_usage(leaf.get()),
            static_cast<uint32_t>(XKU_SSL_SERVER | XKU_SSL_CLIENT));
  // Lifetime: 24 h from now, notBefore backdated 5 minutes.
  const absl::Time now = clock_.WallNow();
  EXPECT_LE(absl::AbsDuration(issued->not_after - (now + absl::Hours(24))), absl::Seconds(1));
  EXPECT_LE(absl::AbsDuration(issued->not_before - (now - absl::Minutes(5))), absl::Seconds(1));
  // 128-bit random serial: 32 hex digits (33+ only with a leading zero octet).
  EXPECT_GE(issued->serial_hex.size(), 31u);
  EXPECT_LE(issued->serial_hex.size(), 32u);

  // The issued key is the CSR's.
  auto key = tls::ParsePemPrivateKey(csr->key_pem);
  ASSERT_TRUE(key.ok());
  EXPECT_TRUE(tls::CheckKeyMatchesCertificate(*leaf, **key).ok());

  // Usable both as a server and as a client certificate.
  EXPECT_EQ(VerifyChain(issued->chain_pem, issued->trust_bundle_pem, now, "sslserver"), "");
  EXPECT_EQ(VerifyChain(issued->chain_pem, issued->trust_bundle_pem, now, "sslclient"), "");
  // And not after it expired.
  EXPECT_NE(VerifyChain(issued->chain_pem, issued->trust_bundle_pem, now + absl::Hours(25)), "");
}

// The control plane's own serving certificate: the workload profile over a key it holds, plus
// DNS SANs after the one URI SAN.
TEST_F(AuthorityTest, IssuesOverAKeyWithDnsNamesInTheWorkloadProfile) {
  auto ca = CertificateAuthority::LoadOrGenerateRoot(TempDir(), {}, clock_);
  ASSERT_TRUE(ca.ok());
  auto key = tls::GenerateEcdsaP256Key();
  ASSERT_TRUE(key.ok());
  const char kControlPlane[] = "spiffe://cluster.local/ns/meshlet-system/sa/meshlet-control-plane";
  auto issued = (*ca)->Issue(**key, Id(kControlPlane), absl::Hours(2),
                             {"meshlet-control-plane", "meshlet-control-plane.meshlet-system.svc"});
  ASSERT_TRUE(issued.ok()) << issued.status();
  bssl::UniquePtr<X509> leaf = Leaf(*issued);
  EXPECT_EQ(tls::UriSans(*leaf), std::vector<std::string>{kControlPlane});
  EXPECT_EQ(tls::DnsSans(*leaf),
            (std::vector<std::string>{"meshlet-control-plane",
                                      "meshlet-control-plane.meshlet-system.svc"}));
  // Still exactly one SPIFFE id, so the sidecar's server-identity check reads it.
  auto spiffe = tls::ExtractSpiffeId(*leaf);
  ASSERT_TRUE(spiffe.ok()) << spiffe.status();
  EXPECT_EQ(spiffe->ToString(), kControlPlane);
  int critical = -1;
  GENERAL_NAMES_free(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(leaf.get(), NID_subject_alt_name, &critical, nullptr)));
  EXPECT_EQ(critical, 1);
  EXPECT_EQ(tls::SubjectName(*leaf), "");
  EXPECT_FALSE(tls::IsCa(*leaf));
  EXPECT_EQ(X509_get_key_usage(leaf.get()), static_cast<uint32_t>(KU_DIGITAL_SIGNATURE));
  EXPECT_EQ(X509_get_extended_key_usage(leaf.get()),
            static_cast<uint32_t>(XKU_SSL_SERVER | XKU_SSL_CLIENT));
  EXPECT_TRUE(tls::CheckKeyMatchesCertificate(*leaf, **key).ok());
  const absl::Time now = clock_.WallNow();
  EXPECT_LE(absl::AbsDuration(issued->not_after - (now + absl::Hours(2))), absl::Seconds(1));
  EXPECT_EQ(VerifyChain(issued->chain_pem, issued->trust_bundle_pem, now, "sslserver"), "");

  // Without names: the workload leaf exactly.
  auto plain = (*ca)->Issue(**key, Id(kFrontend), absl::Hours(1));
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_TRUE(tls::DnsSans(*Leaf(*plain)).empty());

  // Refusals: a name that is no host name, another trust domain, a key that is not P-256.
  auto bad_name = (*ca)->Issue(**key, Id(kControlPlane), absl::Hours(1), {"a b"});
  EXPECT_EQ(bad_name.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad_name.status().message().find("\"a b\" is not a host name"), std::string::npos)
      << bad_name.status();
  EXPECT_EQ(
      (*ca)->Issue(**key, Id("spiffe://other.example/ns/a/sa/b"), absl::Hours(1)).status().code(),
      absl::StatusCode::kPermissionDenied);
  auto p384 = MakeCsr({.key_type = CsrKeyType::kEcdsaP384});
  ASSERT_TRUE(p384.ok());
  auto p384_key = tls::ParsePemPrivateKey(p384->key_pem);
  ASSERT_TRUE(p384_key.ok());
  auto wrong_curve = (*ca)->Issue(**p384_key, Id(kFrontend), absl::Hours(1));
  EXPECT_EQ(wrong_curve.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(wrong_curve.status().message().find("another curve"), std::string::npos)
      << wrong_curve.status();
}

TEST_F(AuthorityTest, SerialsDiffer) {
  auto ca = CertificateAuthority::LoadOrGenerateRoot(TempDir(), {}, clock_);
  auto csr = MakeCsr();
  ASSERT_TRUE(ca.ok() && csr.ok());
  auto a = (*ca)->Sign(csr->csr_der, Id(kFrontend), absl::Hours(1));
  auto b = (*ca)->Sign(csr->csr_der, Id(kFrontend), absl::Hours(1));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->serial_hex, b->serial_hex);
}

TEST_F(AuthorityTest, TtlDefaultsAndIsCapped) {
  auto ca = CertificateAuthority::LoadOrGenerateRoot(
      TempDir(), {.default_ttl = absl::Hours(2), .max_ttl = absl::Hours(4)}, clock_);
  auto csr = MakeCsr();
  ASSERT_TRUE(ca.ok() && csr.ok());
  const absl::Time now = clock_.WallNow();
  auto defaulted = (*ca)->Sign(csr->csr_pem, Id(kFrontend), absl::ZeroDuration());
  auto capped = (*ca)->Sign(csr->csr_pem, Id(kFrontend), absl::Hours(100));
  auto short_lived = (*ca)->Sign(csr->csr_pem, Id(kFrontend), absl::Seconds(10));
  ASSERT_TRUE(defaulted.ok() && capped.ok() && short_lived.ok());
  EXPECT_EQ(defaulted->not_after, absl::FromUnixSeconds(absl::ToUnixSeconds(now + absl::Hours(2))));
  EXPECT_EQ(capped->not_after, absl::FromUnixSeconds(absl::ToUnixSeconds(now + absl::Hours(4))));
  EXPECT_EQ(short_lived->not_after,
            absl::FromUnixSeconds(absl::ToUnixSeconds(now + absl::Seconds(10))));
}

TEST_F(AuthorityTest, RefusesBadCsrs) {
  auto ca = CertificateAuthority::LoadOrGenerateRoot(TempDir(), {}, clock_);
  ASSERT_TRUE(ca.ok());
  auto sign = [&](const std::string& csr) {
    return (*ca)->Sign(csr, Id(kFrontend), absl::Hours(1)).status();
  };
  auto rsa = MakeCsr({.key_type = CsrKeyType::kRsa2048});
  auto p384 = MakeCsr({.key_type = CsrKeyType::kEcdsaP384});
  auto forged = MakeCsr({.corrupt_signature = true});
  ASSERT_TRUE(rsa.ok() && p384.ok() && forged.ok());

  absl::Status status = sign(rsa->csr_pem);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("ECDSA P-256"), std::string::npos) << status;
  status = sign(p384->csr_pem);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("another curve"), std::string::npos) << status;
  status = sign(forged->csr_der);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("signature does not verify"), std::string::npos) << status;
  status = sign("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sign("").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sign(std::string(20000, 'x')).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(AuthorityTest, RefusesIdentityOutsideTheTrustDomain) {
  auto ca = CertificateAuthority::LoadOrGenerateRoot(TempDir(), {}, clock_);
  auto csr = MakeCsr();
  ASSERT_TRUE(ca.ok() && csr.ok());
  auto issued = (*ca)->Sign(csr->csr_pem, Id("spiffe://other.example/ns/a/sa/b"), absl::Hours(1));
  EXPECT_EQ(issued.status().code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(AuthorityTest, SignsWithAnOperatorIntermediate) {
  auto root = tls::testing::TestCa::Create("operator root");
  ASSERT_TRUE(root.ok());
  auto intermediate = root->CreateIntermediate("operator intermediate");
  ASSERT_TRUE(intermediate.ok());

  // Without the root there is nothing to anchor the chain.
  auto no_root = CertificateAuthority::FromPem(intermediate->cert_pem(), intermediate->key_pem(),
                                               "", {}, clock_);
  EXPECT_EQ(no_root.status().code(), absl::StatusCode::kInvalidArgument);

  auto ca = CertificateAuthority::FromPem(intermediate->cert_pem(), intermediate->key_pem(),
                                          root->cert_pem(), {}, clock_);
  ASSERT_TRUE(ca.ok()) << ca.status();
  EXPECT_EQ((*ca)->trust_bundle_pem(), root->cert_pem());
  auto csr = MakeCsr();
  ASSERT_TRUE(csr.ok());
  auto issued = (*ca)->Sign(csr->csr_pem, Id(kFrontend), absl::Hours(1));
  ASSERT_TRUE(issued.ok()) << issued.status();
  auto chain = tls::ParsePemCertificates(issued->chain_pem);
  ASSERT_TRUE(chain.ok());
  ASSERT_EQ(chain->size(), 2u);  // leaf + intermediate, not the root
  EXPECT_EQ(tls::SubjectName(*(*chain)[1]), tls::SubjectName((*ca)->signing_certificate()));
  EXPECT_EQ(VerifyChain(issued->chain_pem, root->cert_pem(), clock_.WallNow()), "");
  // Without the intermediate the leaf alone does not verify.
  EXPECT_NE(VerifyChain(issued->certificate_pem, root->cert_pem(), clock_.WallNow()), "");

  // The chain file may also end with the root.
  auto with_root =
      CertificateAuthority::FromPem(absl::StrCat(intermediate->cert_pem(), root->cert_pem()),
                                    intermediate->key_pem(), "", {}, clock_);
  ASSERT_TRUE(with_root.ok()) << with_root.status();
  auto issued2 = (*with_root)->Sign(csr->csr_pem, Id(kFrontend), absl::Hours(1));
  ASSERT_TRUE(issued2.ok());
  EXPECT_EQ(tls::ParsePemCertificates(issued2->chain_pem)->size(), 2u);
}

TEST_F(AuthorityTest, LeafNeverOutlivesTheSigningCertificate) {
  auto root = tls::testing::TestCa::Create("operator root");
  ASSERT_TRUE(root.ok());
  auto intermediate = root->CreateIntermediate("short intermediate");  // valid one year
  ASSERT_TRUE(intermediate.ok());
  auto ca = CertificateAuthority::FromPem(intermediate->cert_pem(), intermediate->key_pem(),
                                          root->cert_pem(), {}, clock_);
  ASSERT_TRUE(ca.ok()) << ca.status();
  const absl::Time signer_expiry = tls::NotAfter((*ca)->signing_certificate());
  clock_.Advance(absl::ToChronoNanoseconds(signer_expiry - clock_.WallNow() - absl::Hours(1)));
  auto csr = MakeCsr();
  ASSERT_TRUE(csr.ok());
  auto issued = (*ca)->Sign(csr->csr_pem, Id(kFrontend), absl::Hours(24));
  ASSERT_TRUE(issued.ok()) << issued.status();
  EXPECT_EQ(issued->not_after, signer_expiry);

  clock_.Advance(absl::ToChronoNanoseconds(absl::Hours(2)));
  EXPECT_EQ((*ca)->Sign(csr->csr_pem, Id(kFrontend), absl::Hours(1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(AuthorityTest, RefusesBadSigningMaterial) {
  auto root = tls::testing::TestCa::Create("root");
  auto other = tls::testing::TestCa::Create("other");
  ASSERT_TRUE(root.ok() && other.ok());
  auto leaf = root->Issue({.spiffe_id = kFrontend});
  ASSERT_TRUE(leaf.ok());

  auto not_ca =
      CertificateAuthority::FromPem(leaf->chain_pem, leaf->key_pem, root->cert_pem(), {}, clock_);
  ASSERT_FALSE(not_ca.ok());
  EXPECT_NE(not_ca.status().message().find("not a CA certificate"), std::string::npos);

  auto wrong_key =
      CertificateAuthority::FromPem(root->cert_pem(), other->key_pem(), "", {}, clock_);
  ASSERT_FALSE(wrong_key.ok());
  EXPECT_NE(wrong_key.status().message().find("CA key"), std::string::npos) << wrong_key.status();

  auto intermediate = root->CreateIntermediate("intermediate");
  ASSERT_TRUE(intermediate.ok());
  auto foreign_root = CertificateAuthority::FromPem(
      intermediate->cert_pem(), intermediate->key_pem(), other->cert_pem(), {}, clock_);
  ASSERT_FALSE(foreign_root.ok());
  EXPECT_NE(foreign_root.status().message().find("does not verify"), std::string::npos)
      << foreign_root.status();

  EXPECT_FALSE(CertificateAuthority::FromPem("garbage", root->key_pem(), "", {}, clock_).ok());
  EXPECT_FALSE(CertificateAuthority::FromPem(root->cert_pem(), root->key_pem(), "",
                                             {.trust_domain = "Not Valid"}, clock_)
                   .ok());
  EXPECT_FALSE(CertificateAuthority::FromPem(root->cert_pem(), root->key_pem(), "",
                                             {.default_ttl = absl::Hours(48)}, clock_)
                   .ok());
}

TEST_F(AuthorityTest, TrustBundleHoldsOldAndNewRootDuringRotation) {
  auto old_root = tls::testing::TestCa::Create("old root");
  auto new_root = tls::testing::TestCa::Create("new root");
  ASSERT_TRUE(old_root.ok() && new_root.ok());
  auto csr = MakeCsr();
  ASSERT_TRUE(csr.ok());

  // Step 1: the old root signs, the bundle already carries the new one.
  auto step1 = CertificateAuthority::FromPem(old_root->cert_pem(), old_root->key_pem(),
                                             new_root->cert_pem(), {}, clock_);
  ASSERT_TRUE(step1.ok()) << step1.status();
  EXPECT_EQ((*step1)->trust_bundle().size(), 2u);
  auto old_leaf = (*step1)->Sign(csr->csr_pem, Id(kFrontend), absl::Hours(1));
  ASSERT_TRUE(old_leaf.ok());

  // Step 2: the new root signs, the old one stays in the bundle.
  auto step2 = CertificateAuthority::FromPem(new_root->cert_pem(), new_root->key_pem(),
                                             old_root->cert_pem(), {}, clock_);
  ASSERT_TRUE(step2.ok()) << step2.status();
  auto new_leaf = (*step2)->Sign(csr->csr_pem, Id(kFrontend), absl::Hours(1));
  ASSERT_TRUE(new_leaf.ok());
  // Both generations verify against either step's bundle: no connection breaks mid-rotation.
  for (const auto* bundle : {&old_leaf->trust_bundle_pem, &new_leaf->trust_bundle_pem}) {
    EXPECT_EQ(VerifyChain(old_leaf->chain_pem, *bundle, clock_.WallNow()), "");
    EXPECT_EQ(VerifyChain(new_leaf->chain_pem, *bundle, clock_.WallNow()), "");
  }

  // Step 3: old root removed; its leaves no longer verify.
  auto step3 =
      CertificateAuthority::FromPem(new_root->cert_pem(), new_root->key_pem(), "", {}, clock_);
  ASSERT_TRUE(step3.ok());
  EXPECT_EQ((*step3)->trust_bundle().size(), 1u);
  EXPECT_NE(VerifyChain(old_leaf->chain_pem, (*step3)->trust_bundle_pem(), clock_.WallNow()), "");
  EXPECT_EQ(VerifyChain(new_leaf->chain_pem, (*step3)->trust_bundle_pem(), clock_.WallNow()), "");

  // A duplicate root is kept once; a non-CA certificate is refused.
  auto dup = TrustBundle::FromPem(absl::StrCat(old_root->cert_pem(), old_root->cert_pem()));
  ASSERT_TRUE(dup.ok());
  EXPECT_EQ(dup->size(), 1u);
  auto leaf = old_root->Issue({.spiffe_id = kFrontend});
  ASSERT_TRUE(leaf.ok());
  EXPECT_FALSE(TrustBundle::FromPem(leaf->chain_pem).ok());
}

// Each reason the CA refuses signing material, with the message an operator reads; a good
// intermediate of the same root is taken.
TEST_F(AuthorityTest, RefusesEachKindOfInvalidIntermediate) {
  const Material root = MakeCa({.name = "root", .path_length = 2});
  auto refused = [&](const Material& signing, const std::string& key_pem,
                     const std::string& extra = "") -> std::string {
    auto ca = CertificateAuthority::FromPem(absl::StrCat(signing.cert_pem, extra), key_pem,
                                            root.cert_pem, {}, clock_);
    return ca.ok() ? "" : std::string(ca.status().message());
  };
  const Material good = MakeCa({.name = "good"}, &root);
  EXPECT_EQ(refused(good, good.key_pem), "");

  const Material other = MakeCa({.name = "other"}, &root);
  EXPECT_NE(refused(good, other.key_pem).find("CA key"), std::string::npos)
      << refused(good, other.key_pem);

  const Material no_sign = MakeCa({.name = "no sign", .without_cert_sign = true}, &root);
  EXPECT_NE(refused(no_sign, no_sign.key_pem).find("key usage lacks keyCertSign"),
            std::string::npos)
      << refused(no_sign, no_sign.key_pem);

  const Material expired = MakeCa({.name = "expired",
                                   .not_before_offset = -absl::Hours(48),
                                   .not_after_offset = -absl::Hours(1)},
                                  &root);
  EXPECT_NE(refused(expired, expired.key_pem).find("\"CN=expired,O=meshlet\" expired at"),
            std::string::npos)
      << refused(expired, expired.key_pem);

  const Material early = MakeCa(
      {.name = "early", .not_before_offset = absl::Hours(1), .not_after_offset = absl::Hours(48)},
      &root);
  EXPECT_NE(refused(early, early.key_pem).find("is not valid before"), std::string::npos)
      << refused(early, early.key_pem);

  const Material stranger_root = MakeCa({.name = "stranger root"});
  const Material stranger = MakeCa({.name = "stranger"}, &stranger_root);
  EXPECT_NE(refused(stranger, stranger.key_pem).find("does not verify up to a root"),
            std::string::npos)
      << refused(stranger, stranger.key_pem);

  // pathlen:0 on the intermediate above: the signing CA below it may not sign leaves.
  const Material tight = MakeCa({.name = "tight", .path_length = 0}, &root);
  const Material below_tight = MakeCa({.name = "below tight"}, &tight);
  const std::string pathlen = refused(below_tight, below_tight.key_pem, tight.cert_pem);
  EXPECT_NE(pathlen.find("\"CN=tight,O=meshlet\" has pathlen:0"), std::string::npos) << pathlen;
  // The same depth under an intermediate with room is taken.
  const Material roomy = MakeCa({.name = "roomy", .path_length = 1}, &root);
  const Material below_roomy = MakeCa({.name = "below roomy"}, &roomy);
  EXPECT_EQ(refused(below_roomy, below_roomy.key_pem, roomy.cert_pem), "");

  // Name constraints that leave out the trust domain (cluster.local).
  const Material constrained =
      MakeCa({.name = "constrained", .name_constraints = "permitted;URI:other.example"}, &root);
  const std::string names = refused(constrained, constrained.key_pem);
  EXPECT_NE(names.find("a certificate this CA issues for spiffe://cluster.local/"),
            std::string::npos)
      << names;
  const Material allowed =
      MakeCa({.name = "allowed", .name_constraints = "permitted;URI:cluster.local"}, &root);
  EXPECT_EQ(refused(allowed, allowed.key_pem), "");
}

TEST(WorkloadSpiffeIdTest, BuildsAndValidates) {
  auto id = WorkloadSpiffeId("cluster.local", "default", "frontend");
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(id->ToString(), kFrontend);
  EXPECT_FALSE(WorkloadSpiffeId("cluster.local", "", "frontend").ok());
  EXPECT_FALSE(WorkloadSpiffeId("cluster.local", "default", "").ok());
  EXPECT_FALSE(WorkloadSpiffeId("cluster.local", "a/b", "c").ok());
}

}  // namespace
}  // namespace meshlet::controlplane::ca

namespace meshlet::controlplane::ca {
namespace {

// A key held behind the Signer interface (as a PKCS#11 token holds it) signs leaves that verify,
// and a key that is not the CA certificate's is refused at start.
TEST(SignerTest, ExternalSignerIssuesVerifiableLeavesAndMismatchedKeyIsRefused) {
  FakeClock clock;
  clock.Advance(absl::ToChronoNanoseconds(absl::Now() - clock.WallNow()));
  auto root = tls::testing::TestCa::Create("signer root");
  ASSERT_TRUE(root.ok());
  auto key = tls::ParsePemPrivateKey(root->key_pem());
  ASSERT_TRUE(key.ok());
  auto ca = CertificateAuthority::FromPemWithSigner(
      root->cert_pem(), NewInMemorySigner(std::move(*key)), "", {}, clock);
  ASSERT_TRUE(ca.ok()) << ca.status();
  auto csr = MakeCsr();
  ASSERT_TRUE(csr.ok());
  auto issued = (*ca)->Sign(csr->csr_pem, Id("spiffe://cluster.local/ns/a/sa/b"), absl::Hours(1));
  ASSERT_TRUE(issued.ok()) << issued.status();
  EXPECT_EQ(VerifyChain(issued->chain_pem, root->cert_pem(), clock.WallNow()), "");

  auto other = tls::GenerateEcdsaP256Key();
  ASSERT_TRUE(other.ok());
  auto mismatched = CertificateAuthority::FromPemWithSigner(
      root->cert_pem(), NewInMemorySigner(std::move(*other)), "", {}, clock);
  EXPECT_EQ(mismatched.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(mismatched.status().message().find("does not match"), absl::string_view::npos)
      << mismatched.status();
}

}  // namespace
}  // namespace meshlet::controlplane::ca

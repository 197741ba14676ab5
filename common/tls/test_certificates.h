#pragma once

// Test-only certificate factory: generates, at test time, a CA and certificates signed by it, so
// no key material is ever committed to the repository. Output is PEM, exactly what production
// code loads from files or receives from the control-plane CA.
//
//   ASSIGN_OR_RETURN(TestCa ca, TestCa::Create("root"));
//   ASSIGN_OR_RETURN(TestCertificate frontend,
//                    ca.Issue({.spiffe_id = "spiffe://cluster.local/ns/default/sa/frontend"}));
//
// TestCa is move-only and not thread-safe; keys are generated fresh per object (RSA takes tens of
// milliseconds, so share RSA leaves across test cases where it matters).

#include <string>
#include <utility>
#include <vector>

#include <openssl/base.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/base/logging.h"

namespace meshlet::tls::testing {

// The value of `v`, which a test expects to be OK (it stops the test binary otherwise).
template <typename T>
T ValueOrDie(absl::StatusOr<T> v) {
  CHECK(v.ok()) << v.status();
  return *std::move(v);
}

enum class TestKeyType { kEcdsaP256, kRsa2048 };

struct TestCertificate {
  // The certificate followed by any intermediates between it and the root (not the root).
  std::string chain_pem;
  // PKCS#8 "PRIVATE KEY" PEM.
  std::string key_pem;
};

struct LeafOptions {
  // Becomes the URI SAN; empty means no URI SAN.
  std::string spiffe_id;
  // Further URI SANs, for negative tests (a SPIFFE certificate has exactly one).
  std::vector<std::string> extra_uri_sans;
  std::vector<std::string> dns_names;
  // IP address SANs ("127.0.0.1", "::1"), for servers reached by address.
  std::vector<std::string> ip_addresses;
  std::string common_name = "meshlet test leaf";
  TestKeyType key_type = TestKeyType::kEcdsaP256;
  // Validity relative to the time of issue. An already expired certificate:
  // {.not_before_offset = -absl::Hours(48), .not_after_offset = -absl::Hours(24)}.
  absl::Duration not_before_offset = -absl::Hours(1);
  absl::Duration not_after_offset = absl::Hours(24);
  // Marks the leaf CA:TRUE, for tests that a CA certificate is refused as a workload identity.
  bool is_ca = false;
  // meshlet's attestation extension (certificate.h, AddAttestation); empty: none.
  std::string attestation;
};

class TestCa {
 public:
  // A self-signed root: ECDSA P-256, CA:TRUE, keyUsage keyCertSign + cRLSign, valid +-10 years.
  static absl::StatusOr<TestCa> Create(absl::string_view common_name = "meshlet test root CA");

  TestCa(TestCa&&) = default;
  TestCa& operator=(TestCa&&) = default;

  // A leaf signed by this CA (serverAuth + clientAuth, CA:FALSE).
  absl::StatusOr<TestCertificate> Issue(const LeafOptions& options) const;
  // A subordinate CA signed by this one; leaves it issues carry it in their chain_pem.
  absl::StatusOr<TestCa> CreateIntermediate(absl::string_view common_name) const;

  // This CA's own certificate: for a root, the trust-bundle entry.
  const std::string& cert_pem() const { return cert_pem_; }
  const std::string& key_pem() const { return key_pem_; }

 private:
  TestCa() = default;

  bssl::UniquePtr<X509> cert_;
  bssl::UniquePtr<EVP_PKEY> key_;
  std::string cert_pem_;
  std::string key_pem_;
  // Intermediates above this CA up to (not including) the root, PEM, nearest first.
  std::string parents_pem_;
  bool is_root_ = true;
};

}  // namespace meshlet::tls::testing

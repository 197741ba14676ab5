#pragma once

// Test-only CSR factory: what a workload sends the CA, plus the malformed and hostile variants
// the CA must refuse or neutralise (foreign SANs, RSA or P-384 keys, broken signatures).

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace meshlet::controlplane::ca::testing {

enum class CsrKeyType { kEcdsaP256, kEcdsaP384, kRsa2048 };

struct CsrOptions {
  CsrKeyType key_type = CsrKeyType::kEcdsaP256;
  std::string common_name;            // empty: no subject
  std::vector<std::string> uri_sans;  // requested in the CSR (the CA must ignore them)
  std::vector<std::string> dns_sans;
  bool corrupt_signature = false;
};

struct TestCsr {
  std::string csr_pem;
  std::string csr_der;
  std::string key_pem;  // PKCS#8
};

absl::StatusOr<TestCsr> MakeCsr(const CsrOptions& options = {});

}  // namespace meshlet::controlplane::ca::testing

#pragma once

// Building and signing X.509 certificates: for meshlet's own tooling (the install's etcd
// certificates, control-plane/install) and for tests (test_certificates.h). The workload CA
// has a profile of its own (control-plane/ca/authority.h).
//
// Every certificate: X.509 v3, a random positive 127-bit serial, SHA-256 signature, subject
// O=<organization>, CN=<common_name>, subject and authority key identifiers. A CA:
// basicConstraints critical CA:TRUE (with pathlen when path_length >= 0), keyUsage critical
// keyCertSign + cRLSign. A leaf: basicConstraints critical CA:FALSE, keyUsage critical
// digitalSignature + keyEncipherment, extendedKeyUsage as asked. SANs (URI, DNS, IP) in one
// critical extension when there are any; meshlet's attestation extension when asked.
//
// Plain functions; no state.

#include <string>
#include <vector>

#include <openssl/base.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace meshlet::tls {

struct CertificateSpec {
  std::string common_name;
  std::string organization = "meshlet";
  bool is_ca = false;
  int path_length = -1;  // a CA's pathlen; < 0: none
  absl::Time not_before;
  absl::Time not_after;
  std::vector<std::string> uri_sans;
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;  // "127.0.0.1", "::1"
  // A leaf's extendedKeyUsage (neither: none).
  bool server_auth = true;
  bool client_auth = true;
  // Non-empty: the attestation extension with this value (certificate.h, AddAttestation).
  std::string attestation;
};

// A certificate for `subject_key` as `spec` says, signed by `issuer` with `issuer_key`; both null:
// self-signed with `subject_key`. InvalidArgument for an IP address that does not parse,
// Internal for BoringSSL failures.
absl::StatusOr<bssl::UniquePtr<X509>> BuildCertificate(const CertificateSpec& spec,
                                                       EVP_PKEY* subject_key, X509* issuer,
                                                       EVP_PKEY* issuer_key);

}  // namespace meshlet::tls

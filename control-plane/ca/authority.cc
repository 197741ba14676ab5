#include "control-plane/ca/authority.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/digest.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/atomic_file.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/config/field_path.h"
#include "control-plane/identity/workload_identity.h"
#include "control-plane/store/shared_value.h"

namespace meshlet::controlplane::ca {
namespace {

// Annotate() for a StatusOr: prefixes the error with where it came from.
template <typename T>
absl::StatusOr<T> In(absl::StatusOr<T> value, absl::string_view context) {
  if (value.ok()) return value;
  return Annotate(value.status(), context);
}

absl::Status BoringSslError(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", tls::DrainBoringSslErrors()));
}

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

absl::Status MakeDirectory(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) == 0 || errno == EEXIST) return absl::OkStatus();
  return ErrnoError("creating directory", dir);
}

// A random positive serial of 128 bits (RFC 5280 allows up to 20 octets; the encoding may add a
// leading zero octet).
absl::Status SetRandomSerial(X509* cert) {
  uint8_t bytes[16];
  RAND_bytes(bytes, sizeof(bytes));
  bytes[0] |= 0x01;  // never zero, never shorter than needed to be unique in practice
  bssl::UniquePtr<BIGNUM> serial(BN_bin2bn(bytes, sizeof(bytes), nullptr));
  if (serial == nullptr || !BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert))) {
    return BoringSslError("setting the serial number");
  }
  return absl::OkStatus();
}

absl::Status AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509V3_set_ctx_nodb(&ctx);
  bssl::UniquePtr<X509_EXTENSION> ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value));
  if (ext == nullptr || !X509_add_ext(cert, ext.get(), -1)) {
    return BoringSslError(absl::StrCat("adding extension ", OBJ_nid2sn(nid), "=", value));
  }
  return absl::OkStatus();
}

absl::Status SetValidity(X509* cert, absl::Time not_before, absl::Time not_after) {
  if (!ASN1_TIME_set(X509_getm_notBefore(cert), absl::ToTimeT(not_before)) ||
      !ASN1_TIME_set(X509_getm_notAfter(cert), absl::ToTimeT(not_after))) {
    return BoringSslError("setting validity");
  }
  return absl::OkStatus();
}

absl::StatusOr<bssl::UniquePtr<X509>> MakeSelfSignedRoot(EVP_PKEY* key, absl::string_view td,
                                                         absl::Time now, absl::Duration life) {
  bssl::UniquePtr<X509> cert(X509_new());
  if (cert == nullptr || !X509_set_version(cert.get(), X509_VERSION_3)) {
    return BoringSslError("X509_new");
  }
  RETURN_IF_ERROR(SetRandomSerial(cert.get()));
  RETURN_IF_ERROR(SetValidity(cert.get(), now - absl::Hours(1), now + life));
  X509_NAME* name = X509_get_subject_name(cert.get());
  const std::string cn = absl::StrCat("meshlet root CA ", td);
  if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                  reinterpret_cast<const uint8_t*>(td.data()),
                                  static_cast<int>(td.size()), -1, 0) ||
      !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                  reinterpret_cast<const uint8_t*>(cn.data()),
                                  static_cast<int>(cn.size()), -1, 0) ||
      !X509_set_issuer_name(cert.get(), name) || !X509_set_pubkey(cert.get(), key)) {
    return BoringSslError("setting the root's names and key");
  }
  X509* c = cert.get();
  // pathlen 1: the root may sign an intermediate, which may sign only leaves.
  RETURN_IF_ERROR(AddExtension(c, c, NID_basic_constraints, "critical,CA:TRUE,pathlen:1"));
  RETURN_IF_ERROR(AddExtension(c, c, NID_key_usage, "critical,keyCertSign,cRLSign"));
  RETURN_IF_ERROR(AddExtension(c, c, NID_subject_key_identifier, "hash"));
  if (!X509_sign(c, key, EVP_sha256())) return BoringSslError("self-signing the root");
  return cert;
}

bool IsSelfSigned(const X509& cert) {
  X509* c = const_cast<X509*>(&cert);
  return X509_NAME_cmp(X509_get_subject_name(c), X509_get_issuer_name(c)) == 0 &&
         X509_check_issued(c, c) == X509_V_OK;
}

absl::StatusOr<bssl::UniquePtr<X509_REQ>> ParseCsr(absl::string_view csr, size_t max_bytes) {
  if (csr.empty()) return absl::InvalidArgumentError("csr: empty");
  if (csr.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("csr: ", csr.size(), " bytes, more than the limit of ", max_bytes));
  }
  bssl::UniquePtr<X509_REQ> req;
  if (absl::StrContains(csr, "-----BEGIN")) {
    bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(csr.data(), static_cast<ptrdiff_t>(csr.size())));
    req.reset(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  } else {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(csr.data());
    req.reset(d2i_X509_REQ(nullptr, &p, static_cast<long>(csr.size())));
  }
  if (req == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("csr: not a PKCS#10 certificate request: ", tls::DrainBoringSslErrors()));
  }
  return req;
}

// InvalidArgument unless `key` is ECDSA P-256; `what` starts the message ("csr").
absl::Status CheckP256(const EVP_PKEY& key, absl::string_view what) {
  if (EVP_PKEY_id(&key) != EVP_PKEY_EC) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": the key must be ECDSA P-256"));
  }
  const EC_KEY* ec = EVP_PKEY_get0_EC_KEY(&key);
  if (ec == nullptr || EC_GROUP_get_curve_name(EC_KEY_get0_group(ec)) != NID_X9_62_prime256v1) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": the key must be ECDSA P-256 (another curve was used)"));
  }
  return absl::OkStatus();
}

// The CSR's public key after checking it signed the request and is ECDSA P-256.
absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> VerifiedCsrKey(X509_REQ* req) {
  bssl::UniquePtr<EVP_PKEY> key(X509_REQ_get_pubkey(req));
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("csr: unreadable public key: ", tls::DrainBoringSslErrors()));
  }
  if (X509_REQ_verify(req, key.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "csr: signature does not verify with its own key: ", tls::DrainBoringSslErrors()));
  }
  RETURN_IF_ERROR(CheckP256(*key, "csr"));
  return key;
}

absl::Status PushSan(GENERAL_NAMES* names, int type, const std::string& value) {
  bssl::UniquePtr<GENERAL_NAME> name(GENERAL_NAME_new());
  bssl::UniquePtr<ASN1_IA5STRING> str(ASN1_IA5STRING_new());
  if (name == nullptr || str == nullptr ||
      !ASN1_STRING_set(str.get(), value.data(), static_cast<int>(value.size()))) {
    return BoringSslError("building a SAN");
  }
  GENERAL_NAME_set0_value(name.get(), type, str.release());
  if (!bssl::PushToStack(names, std::move(name))) return BoringSslError("building SANs");
  return absl::OkStatus();
}

// The SAN extension: the URI first, then the DNS names.
absl::Status AddSans(X509* cert, const std::string& uri,
                     const std::vector<std::string>& dns_names) {
  bssl::UniquePtr<GENERAL_NAMES> names(sk_GENERAL_NAME_new_null());
  if (names == nullptr) return BoringSslError("building SANs");
  RETURN_IF_ERROR(PushSan(names.get(), GEN_URI, uri));
  for (const std::string& dns : dns_names) RETURN_IF_ERROR(PushSan(names.get(), GEN_DNS, dns));
  // Critical because the subject is empty (RFC 5280 4.2.1.6, X509-SVID 4.3).
  if (!X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), /*crit=*/1, X509V3_ADD_DEFAULT)) {
    return BoringSslError("adding the SANs");
  }
  return absl::OkStatus();
}

// Verifies that `chain[0]` chains up to a root in `bundle` through the rest of `chain`, at
// `now`, and returns the path found: chain[0] first, the root last. `what` names chain[0] in the
// error.
absl::StatusOr<tls::CertificateChain> VerifiedPath(const tls::CertificateChain& chain,
                                                   const TrustBundle& bundle, absl::Time now,
                                                   absl::string_view what) {
  bssl::UniquePtr<X509_STORE> store(X509_STORE_new());
  bssl::UniquePtr<STACK_OF(X509)> untrusted(sk_X509_new_null());
  bssl::UniquePtr<X509_STORE_CTX> ctx(X509_STORE_CTX_new());
  if (store == nullptr || untrusted == nullptr || ctx == nullptr) {
    return BoringSslError("allocating a verifier");
  }
  for (const auto& root : bundle.roots()) {
    if (!X509_STORE_add_cert(store.get(), root.get())) return BoringSslError("X509_STORE_add_cert");
  }
  for (size_t i = 1; i < chain.size(); ++i) {
    if (!bssl::PushToStack(untrusted.get(), bssl::UpRef(chain[i]))) {
      return BoringSslError("building the chain");
    }
  }
  if (!X509_STORE_CTX_init(ctx.get(), store.get(), chain[0].get(), untrusted.get())) {
    return BoringSslError("X509_STORE_CTX_init");
  }
  X509_STORE_CTX_set_time(ctx.get(), 0, absl::ToTimeT(now));
  if (X509_verify_cert(ctx.get()) != 1) {
    int error = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(what,
                                                   " does not verify up to a root of the trust "
                                                   "bundle: ",
                                                   X509_verify_cert_error_string(error)));
  }
  tls::CertificateChain path;
  STACK_OF(X509)* verified = X509_STORE_CTX_get0_chain(ctx.get());
  for (size_t i = 0; i < sk_X509_num(verified); ++i) {
    path.push_back(bssl::UpRef(sk_X509_value(verified, i)));
  }
  return path;
}

// Each certificate of `chain` is valid at `now`.
absl::Status CheckValidityWindows(const tls::CertificateChain& chain, absl::Time now) {
  for (const auto& cert : chain) {
    if (tls::NotBefore(*cert) > now) {
      return absl::InvalidArgumentError(absl::StrCat("CA certificate \"", tls::SubjectName(*cert),
                                                     "\" is not valid before ",
                                                     absl::FormatTime(tls::NotBefore(*cert))));
    }
    if (tls::NotAfter(*cert) <= now) {
      return absl::InvalidArgumentError(absl::StrCat("CA certificate \"", tls::SubjectName(*cert),
                                                     "\" expired at ",
                                                     absl::FormatTime(tls::NotAfter(*cert))));
    }
  }
  return absl::OkStatus();
}

// The path-length constraints of `path` (the signing certificate first, the root last) leave
// room for the signing certificate to sign leaves: the k-th CA above it has k CAs below it in
// a workload's chain, so its pathlen, when it has one, must be at least k.
absl::Status CheckPathLengths(const tls::CertificateChain& path) {
  for (size_t k = 1; k < path.size(); ++k) {
    const long pathlen = X509_get_pathlen(path[k].get());
    if (pathlen >= 0 && static_cast<size_t>(pathlen) < k) {
      return absl::InvalidArgumentError(
          absl::StrCat("CA certificate \"", tls::SubjectName(*path[k]), "\" has pathlen:", pathlen,
                       ", which forbids the ", k,
                       " CA certificate(s) below it from signing workload "
                       "certificates"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<bssl::UniquePtr<X509_REQ>> ParseCertificateRequest(absl::string_view csr,
                                                                  size_t max_bytes) {
  return ParseCsr(csr, max_bytes);
}

absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> VerifiedRequestKey(X509_REQ* req) {
  return VerifiedCsrKey(req);
}

absl::StatusOr<tls::CertificateChain> VerifyUpToBundle(const tls::CertificateChain& chain,
                                                       const TrustBundle& bundle, absl::Time now,
                                                       absl::string_view what) {
  return VerifiedPath(chain, bundle, now, what);
}

absl::Status ValidateAuthorityOptions(const AuthorityOptions& options) {
  RETURN_IF_ERROR(Annotate(tls::ValidateTrustDomain(options.trust_domain), "trust_domain"));
  if (options.default_ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("default_ttl: must be > 0");
  }
  if (options.max_ttl < options.default_ttl) {
    return absl::InvalidArgumentError("max_ttl: must be >= default_ttl");
  }
  if (options.backdate < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("backdate: must be >= 0");
  }
  if (options.generated_root_lifetime <= options.max_ttl) {
    return absl::InvalidArgumentError("generated_root_lifetime: must be longer than max_ttl");
  }
  return absl::OkStatus();
}

absl::StatusOr<tls::SpiffeId> WorkloadSpiffeId(absl::string_view trust_domain,
                                               absl::string_view namespace_,
                                               absl::string_view service_account) {
  RETURN_IF_ERROR(identity::ValidateWorkloadName("namespace", namespace_));
  RETURN_IF_ERROR(identity::ValidateWorkloadName("service account", service_account));
  return tls::SpiffeId::Parse(
      absl::StrCat("spiffe://", trust_domain, "/ns/", namespace_, "/sa/", service_account));
}

// ---- TrustBundle ----------------------------------------------------------------------------

absl::StatusOr<TrustBundle> TrustBundle::FromPem(absl::string_view pem) {
  ASSIGN_OR_RETURN(tls::CertificateChain certs, tls::ParsePemCertificates(pem));
  TrustBundle bundle;
  for (size_t i = 0; i < certs.size(); ++i) {
    RETURN_IF_ERROR(Annotate(bundle.Add(*certs[i]), absl::StrCat("certificate ", i + 1)));
  }
  return bundle;
}

absl::Status TrustBundle::Add(const X509& cert) {
  if (!tls::IsCa(cert)) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", tls::SubjectName(cert), "\" is not a CA certificate (CA:TRUE)"));
  }
  if (Contains(cert)) return absl::OkStatus();
  roots_.push_back(bssl::UpRef(const_cast<X509*>(&cert)));
  return absl::OkStatus();
}

bool TrustBundle::Contains(const X509& cert) const {
  for (const auto& root : roots_) {
    if (X509_cmp(root.get(), &cert) == 0) return true;
  }
  return false;
}

std::string TrustBundle::ToPem() const {
  std::string out;
  for (const auto& root : roots_) {
    absl::StatusOr<std::string> pem = tls::CertificateToPem(*root);
    CHECK(pem.ok()) << pem.status();  // re-encoding a parsed certificate cannot fail
    out += *pem;
  }
  return out;
}

// ---- CertificateAuthority -------------------------------------------------------------------

namespace {

constexpr char kSharedRootName[] = "ca-root";

struct GeneratedRoot {
  std::string cert_pem;
  std::string key_pem;
};

// A new self-signed root (ECDSA P-256, CA:TRUE, pathlen 1), logged as kept in `where`.
absl::StatusOr<GeneratedRoot> GenerateRoot(const AuthorityOptions& options, const Clock& clock,
                                           absl::string_view where) {
  ASSIGN_OR_RETURN(bssl::UniquePtr<EVP_PKEY> key, tls::GenerateEcdsaP256Key());
  ASSIGN_OR_RETURN(bssl::UniquePtr<X509> root,
                   MakeSelfSignedRoot(key.get(), options.trust_domain, clock.WallNow(),
                                      options.generated_root_lifetime));
  GeneratedRoot out;
  ASSIGN_OR_RETURN(out.key_pem, tls::PrivateKeyToPem(*key));
  ASSIGN_OR_RETURN(out.cert_pem, tls::CertificateToPem(*root));
  LOG(INFO) << "generated a new root CA for trust domain " << options.trust_domain << " in "
            << where << " (serial " << tls::SerialNumberHex(*root) << ", expires "
            << absl::FormatTime(tls::NotAfter(*root)) << ")";
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CertificateAuthority>> CertificateAuthority::LoadOrGenerateRoot(
    const std::string& dir, const AuthorityOptions& options, const Clock& clock,
    const std::string& extra_roots_file) {
  RETURN_IF_ERROR(ValidateAuthorityOptions(options));
  const std::string cert_path = absl::StrCat(dir, "/", kRootCertFile);
  const std::string key_path = absl::StrCat(dir, "/", kRootKeyFile);
  const bool have_cert = FileExists(cert_path);
  const bool have_key = FileExists(key_path);
  if (have_cert && have_key) {
    return FromFiles(cert_path, key_path, extra_roots_file, options, clock);
  }
  if (have_cert != have_key) {
    return absl::FailedPreconditionError(absl::StrCat(
        have_cert ? key_path : cert_path, " is missing but ", have_cert ? cert_path : key_path,
        " exists; restore it, or remove both to generate a new root (every "
        "workload certificate will then be re-issued)"));
  }
  RETURN_IF_ERROR(MakeDirectory(dir));
  ASSIGN_OR_RETURN(GeneratedRoot root, GenerateRoot(options, clock, dir));
  // Key first: a crash in between leaves a key without a certificate, which the next start
  // reports instead of silently generating a second root. Each file is whole or absent after a
  // crash, and the key is never readable by others even for a moment.
  RETURN_IF_ERROR(WriteFileAtomically(key_path, root.key_pem, {.mode = 0600}));
  RETURN_IF_ERROR(WriteFileAtomically(cert_path, root.cert_pem, {.mode = 0644}));
  std::string extra_pem;
  if (!extra_roots_file.empty()) {
    ASSIGN_OR_RETURN(extra_pem, In(tls::ReadSmallFile(extra_roots_file), extra_roots_file));
  }
  return FromPem(root.cert_pem, root.key_pem, extra_pem, options, clock);
}

absl::StatusOr<std::unique_ptr<CertificateAuthority>>
CertificateAuthority::LoadOrGenerateSharedRoot(Store& store, const StoreKeys& keys,
                                               const AuthorityOptions& options, const Clock& clock,
                                               const std::string& extra_roots_file) {
  RETURN_IF_ERROR(ValidateAuthorityOptions(options));
  // The value: the root's certificate, then its key (PEM).
  ASSIGN_OR_RETURN(
      std::string shared,
      LoadOrCreateSharedValue(store, keys, kSharedRootName, [&]() -> absl::StatusOr<std::string> {
        ASSIGN_OR_RETURN(GeneratedRoot root, GenerateRoot(options, clock, "the store"));
        return absl::StrCat(root.cert_pem, root.key_pem);
      }));
  static constexpr char kCertEnd[] = "-----END CERTIFICATE-----";
  const size_t split = shared.find(kCertEnd);
  if (split == std::string::npos) {
    return absl::DataLossError("the shared CA root in the store has no certificate");
  }
  const absl::string_view cert_pem =
      absl::string_view(shared).substr(0, split + sizeof(kCertEnd) - 1);
  const absl::string_view key_pem = absl::string_view(shared).substr(split + sizeof(kCertEnd) - 1);
  std::string extra_pem;
  if (!extra_roots_file.empty()) {
    ASSIGN_OR_RETURN(extra_pem, In(tls::ReadSmallFile(extra_roots_file), extra_roots_file));
  }
  absl::StatusOr<std::unique_ptr<CertificateAuthority>> authority =
      FromPem(cert_pem, key_pem, extra_pem, options, clock);
  if (!authority.ok()) {
    return absl::Status(authority.status().code(), absl::StrCat("the shared CA root in the store: ",
                                                                authority.status().message()));
  }
  return authority;
}

absl::StatusOr<std::unique_ptr<CertificateAuthority>> CertificateAuthority::FromFiles(
    const std::string& chain_file, const std::string& key_file, const std::string& extra_roots_file,
    const AuthorityOptions& options, const Clock& clock) {
  ASSIGN_OR_RETURN(std::string chain_pem, In(tls::ReadSmallFile(chain_file), chain_file));
  ASSIGN_OR_RETURN(std::string key_pem, In(tls::ReadSmallFile(key_file), key_file));
  std::string extra_pem;
  if (!extra_roots_file.empty()) {
    ASSIGN_OR_RETURN(extra_pem, In(tls::ReadSmallFile(extra_roots_file), extra_roots_file));
  }
  // Re-run the parse so errors name the file they came from.
  RETURN_IF_ERROR(Annotate(tls::ParsePemCertificates(chain_pem).status(), chain_file));
  RETURN_IF_ERROR(Annotate(tls::ParsePemPrivateKey(key_pem).status(), key_file));
  return FromPem(chain_pem, key_pem, extra_pem, options, clock);
}

absl::StatusOr<std::unique_ptr<CertificateAuthority>> CertificateAuthority::FromPem(
    absl::string_view chain_pem, absl::string_view key_pem, absl::string_view extra_roots_pem,
    const AuthorityOptions& options, const Clock& clock) {
  RETURN_IF_ERROR(ValidateAuthorityOptions(options));
  ASSIGN_OR_RETURN(tls::CertificateChain chain,
                   In(tls::ParsePemCertificates(chain_pem), "CA certificate chain"));
  ASSIGN_OR_RETURN(bssl::UniquePtr<EVP_PKEY> key, In(tls::ParsePemPrivateKey(key_pem), "CA key"));
  RETURN_IF_ERROR(Annotate(tls::CheckKeyMatchesCertificate(*chain.front(), *key), "CA key"));
  return FromChainAndSigner(std::move(chain), NewInMemorySigner(std::move(key)), extra_roots_pem,
                            options, clock);
}

absl::StatusOr<std::unique_ptr<CertificateAuthority>> CertificateAuthority::FromPemWithSigner(
    absl::string_view chain_pem, std::unique_ptr<Signer> signer, absl::string_view extra_roots_pem,
    const AuthorityOptions& options, const Clock& clock) {
  RETURN_IF_ERROR(ValidateAuthorityOptions(options));
  ASSIGN_OR_RETURN(tls::CertificateChain chain,
                   In(tls::ParsePemCertificates(chain_pem), "CA certificate chain"));
  RETURN_IF_ERROR(CheckSignerMatchesCertificate(*signer, *chain.front()));
  return FromChainAndSigner(std::move(chain), std::move(signer), extra_roots_pem, options, clock);
}

absl::StatusOr<std::unique_ptr<CertificateAuthority>> CertificateAuthority::FromChainAndSigner(
    tls::CertificateChain chain, std::unique_ptr<Signer> signer, absl::string_view extra_roots_pem,
    const AuthorityOptions& options, const Clock& clock) {
  TrustBundle bundle;
  if (IsSelfSigned(*chain.back())) {
    RETURN_IF_ERROR(Annotate(bundle.Add(*chain.back()), "CA certificate chain root"));
  }
  if (!extra_roots_pem.empty()) {
    ASSIGN_OR_RETURN(TrustBundle extra, In(TrustBundle::FromPem(extra_roots_pem), "trust bundle"));
    for (const auto& root : extra.roots()) RETURN_IF_ERROR(bundle.Add(*root));
  }
  if (bundle.size() == 0) {
    return absl::InvalidArgumentError(
        "trust bundle: empty; the CA chain does not end in a self-signed root, so give the root "
        "separately");
  }
  return Build(std::move(chain), std::move(signer), std::move(bundle), options, clock);
}

absl::StatusOr<std::unique_ptr<CertificateAuthority>> CertificateAuthority::Build(
    tls::CertificateChain chain, std::unique_ptr<Signer> signer, TrustBundle bundle,
    const AuthorityOptions& options, const Clock& clock) {
  const X509& signing = *chain.front();
  if (!tls::IsCa(signing)) {
    return absl::InvalidArgumentError(absl::StrCat("CA certificate \"", tls::SubjectName(signing),
                                                   "\" is not a CA certificate (CA:TRUE)"));
  }
  if (!(X509_get_key_usage(const_cast<X509*>(&signing)) & KU_KEY_CERT_SIGN)) {
    return absl::InvalidArgumentError(absl::StrCat("CA certificate \"", tls::SubjectName(signing),
                                                   "\": key usage lacks keyCertSign"));
  }
  const absl::Time now = clock.WallNow();
  RETURN_IF_ERROR(CheckValidityWindows(chain, now));
  ASSIGN_OR_RETURN(tls::CertificateChain path,
                   VerifiedPath(chain, bundle, now, "the signing certificate"));
  RETURN_IF_ERROR(CheckPathLengths(path));

  std::unique_ptr<CertificateAuthority> ca(new CertificateAuthority(options, clock));
  // Everything but a trailing self-signed root goes into issued chains: peers hold the root.
  for (const auto& cert : chain) {
    if (IsSelfSigned(*cert)) break;
    ASSIGN_OR_RETURN(std::string pem, tls::CertificateToPem(*cert));
    ca->intermediates_pem_ += pem;
  }
  ca->signer_fingerprint_ = tls::Sha256Fingerprint(*chain.front());
  if (!path.empty()) ca->root_fingerprint_ = tls::Sha256Fingerprint(*path.back());
  ca->signing_cert_ = std::move(chain.front());
  ca->signer_ = std::move(signer);
  ca->trust_bundle_pem_ = bundle.ToPem();
  ca->trust_bundle_ = std::move(bundle);
  RETURN_IF_ERROR(ca->CheckIssuedLeafVerifies());
  return ca;
}

namespace {

// Signs with another authority's Signer (WithTrustBundle); that authority outlives it.
class BorrowedSigner : public Signer {
 public:
  explicit BorrowedSigner(const Signer& signer) : signer_(signer) {}
  SignerKeyType key_type() const override { return signer_.key_type(); }
  absl::StatusOr<std::string> SignSha256(absl::string_view data) const override {
    return signer_.SignSha256(data);
  }
  std::string Describe() const override { return signer_.Describe(); }

 private:
  const Signer& signer_;
};

}  // namespace

absl::StatusOr<std::shared_ptr<const CertificateAuthority>> CertificateAuthority::WithTrustBundle(
    std::shared_ptr<const CertificateAuthority> base, absl::string_view trust_bundle_pem) {
  ASSIGN_OR_RETURN(TrustBundle bundle, TrustBundle::FromPem(trust_bundle_pem));
  tls::CertificateChain chain;
  chain.push_back(bssl::UpRef(base->signing_cert_));
  if (!base->intermediates_pem_.empty()) {
    ASSIGN_OR_RETURN(tls::CertificateChain rest,
                     tls::ParsePemCertificates(base->intermediates_pem_));
    for (auto& cert : rest) {
      if (X509_cmp(cert.get(), base->signing_cert_.get()) != 0) chain.push_back(std::move(cert));
    }
  }
  // The authority that owns the key: `base`, or the one `base` itself borrows from.
  std::shared_ptr<const CertificateAuthority> owner = base->base_ != nullptr ? base->base_ : base;
  ASSIGN_OR_RETURN(std::unique_ptr<CertificateAuthority> ca,
                   Build(std::move(chain), std::make_unique<BorrowedSigner>(*owner->signer_),
                         std::move(bundle), base->options_, base->clock_));
  ca->base_ = std::move(owner);
  return std::shared_ptr<const CertificateAuthority>(std::move(ca));
}

absl::Status CertificateAuthority::CheckIssuedLeafVerifies() const {
  ASSIGN_OR_RETURN(tls::SpiffeId probe,
                   WorkloadSpiffeId(options_.trust_domain, "meshlet-system", "ca-probe"));
  ASSIGN_OR_RETURN(bssl::UniquePtr<EVP_PKEY> key, tls::GenerateEcdsaP256Key());
  ASSIGN_OR_RETURN(IssuedCertificate issued, Issue(*key, probe, absl::Minutes(1)));
  ASSIGN_OR_RETURN(tls::CertificateChain chain, tls::ParsePemCertificates(issued.chain_pem));
  return VerifiedPath(chain, trust_bundle_, clock_.WallNow(),
                      absl::StrCat("a certificate this CA issues for ", probe.ToString()))
      .status();
}

absl::StatusOr<IssuedCertificate> CertificateAuthority::Sign(absl::string_view csr,
                                                             const tls::SpiffeId& identity,
                                                             absl::Duration ttl,
                                                             absl::string_view attestation) const {
  ASSIGN_OR_RETURN(bssl::UniquePtr<X509_REQ> req, ParseCsr(csr, options_.max_csr_bytes));
  ASSIGN_OR_RETURN(bssl::UniquePtr<EVP_PKEY> subject_key, VerifiedCsrKey(req.get()));
  return Issue(*subject_key, identity, ttl, {}, attestation);
}

absl::StatusOr<IssuedCertificate> CertificateAuthority::Issue(
    const EVP_PKEY& public_key, const tls::SpiffeId& identity, absl::Duration ttl,
    const std::vector<std::string>& dns_names, absl::string_view attestation) const {
  if (identity.trust_domain() != options_.trust_domain) {
    return absl::PermissionDeniedError(absl::StrCat("identity ", identity.ToString(),
                                                    " is outside this CA's trust domain ",
                                                    options_.trust_domain));
  }
  RETURN_IF_ERROR(CheckP256(public_key, "subject key"));
  for (const std::string& dns : dns_names) {
    if (!config::IsHostName(dns)) {
      return absl::InvalidArgumentError(absl::StrCat("DNS name \"", dns, "\" is not a host name"));
    }
  }
  const absl::Time now = clock_.WallNow();
  const absl::Time signer_expiry = tls::NotAfter(*signing_cert_);
  if (signer_expiry <= now) {
    return absl::FailedPreconditionError(
        absl::StrCat("the CA's signing certificate expired at ", absl::FormatTime(signer_expiry)));
  }
  if (ttl <= absl::ZeroDuration()) ttl = options_.default_ttl;
  ttl = std::min(ttl, options_.max_ttl);
  // A leaf never outlives its issuer: peers would reject the chain from that moment on.
  const absl::Time not_after = std::min(now + ttl, signer_expiry);
  const absl::Time not_before = now - options_.backdate;

  bssl::UniquePtr<X509> cert(X509_new());
  if (cert == nullptr || !X509_set_version(cert.get(), X509_VERSION_3)) {
    return BoringSslError("X509_new");
  }
  X509* c = cert.get();
  RETURN_IF_ERROR(SetRandomSerial(c));
  RETURN_IF_ERROR(SetValidity(c, not_before, not_after));
  // Empty subject: the identity is the URI SAN, nothing else.
  if (!X509_set_issuer_name(c, X509_get_subject_name(signing_cert_.get())) ||
      !X509_set_pubkey(c, const_cast<EVP_PKEY*>(&public_key))) {
    return BoringSslError("setting issuer and public key");
  }
  X509* issuer = signing_cert_.get();
  RETURN_IF_ERROR(AddExtension(c, issuer, NID_basic_constraints, "critical,CA:FALSE"));
  RETURN_IF_ERROR(AddExtension(c, issuer, NID_key_usage, "critical,digitalSignature"));
  RETURN_IF_ERROR(AddExtension(c, issuer, NID_ext_key_usage, "serverAuth,clientAuth"));
  RETURN_IF_ERROR(AddExtension(c, issuer, NID_subject_key_identifier, "hash"));
  RETURN_IF_ERROR(AddExtension(c, issuer, NID_authority_key_identifier, "keyid:always"));
  RETURN_IF_ERROR(AddSans(c, identity.ToString(), dns_names));
  if (!attestation.empty()) RETURN_IF_ERROR(tls::AddAttestation(*c, attestation));
  RETURN_IF_ERROR(SignCertificate(*signer_, *c));

  IssuedCertificate out;
  ASSIGN_OR_RETURN(out.certificate_pem, tls::CertificateToPem(*c));
  out.chain_pem = absl::StrCat(out.certificate_pem, intermediates_pem_);
  out.trust_bundle_pem = trust_bundle_pem_;
  out.serial_hex = tls::SerialNumberHex(*c);
  out.spiffe_id = identity.ToString();
  out.not_before = tls::NotBefore(*c);
  out.not_after = tls::NotAfter(*c);
  return out;
}

}  // namespace meshlet::controlplane::ca

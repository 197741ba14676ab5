#include "common/tls/certificate.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/obj.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/base/file.h"
#include "common/tls/digest.h"

namespace meshlet::tls {
namespace {

constexpr size_t kMaxFileSize = 1 << 20;

// BoringSSL's non-const accessors do not modify the certificate; they only fill internal
// caches. Keeping the const in our API documents that intent.
X509* Mutable(const X509& cert) { return const_cast<X509*>(&cert); }

// Never prompt for a passphrase: an encrypted key is a configuration error.
int NoPassword(char*, int, int, void*) { return 0; }

bssl::UniquePtr<BIO> MemoryBio(absl::string_view data) {
  return bssl::UniquePtr<BIO>(BIO_new_mem_buf(data.data(), static_cast<ptrdiff_t>(data.size())));
}

bool IsNoMorePemBlocks(uint32_t error) {
  return ERR_GET_LIB(error) == ERR_LIB_PEM && ERR_GET_REASON(error) == PEM_R_NO_START_LINE;
}

std::vector<std::string> SansOfType(const X509& cert, int type) {
  std::vector<std::string> out;
  bssl::UniquePtr<GENERAL_NAMES> names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(&cert, NID_subject_alt_name, /*out_critical=*/nullptr, nullptr)));
  ERR_clear_error();  // absence or a malformed extension both mean "no SANs" here
  if (names == nullptr) return out;
  for (size_t i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type != type) continue;
    const ASN1_STRING* value =
        type == GEN_URI ? name->d.uniformResourceIdentifier : name->d.dNSName;
    out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(value)),
                     static_cast<size_t>(ASN1_STRING_length(value)));
  }
  return out;
}

absl::Time AsnTimeToAbsl(const ASN1_TIME* time) {
  if (time == nullptr) return absl::InfinitePast();
  bssl::UniquePtr<ASN1_TIME> epoch(ASN1_TIME_set(nullptr, 0));
  int days = 0;
  int seconds = 0;
  if (epoch == nullptr || !ASN1_TIME_diff(&days, &seconds, epoch.get(), time)) {
    ERR_clear_error();
    return absl::InfinitePast();
  }
  return absl::UnixEpoch() + absl::Hours(24) * days + absl::Seconds(seconds);
}

std::string NameToString(const X509_NAME* name) {
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || name == nullptr ||
      X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) {
    ERR_clear_error();
    return "";
  }
  const uint8_t* data = nullptr;
  size_t len = 0;
  BIO_mem_contents(bio.get(), &data, &len);
  return std::string(reinterpret_cast<const char*>(data), len);
}

absl::Status CheckKeyStrength(const EVP_PKEY& key) {
  switch (EVP_PKEY_id(&key)) {
    case EVP_PKEY_EC: {
      const EC_KEY* ec = EVP_PKEY_get0_EC_KEY(&key);
      int curve = ec == nullptr ? NID_undef : EC_GROUP_get_curve_name(EC_KEY_get0_group(ec));
      if (curve != NID_X9_62_prime256v1 && curve != NID_secp384r1) {
        return absl::InvalidArgumentError("ECDSA private key must use curve P-256 or P-384");
      }
      return absl::OkStatus();
    }
    case EVP_PKEY_RSA:
      if (EVP_PKEY_bits(&key) < 2048) {
        return absl::InvalidArgumentError(absl::StrCat("RSA private key has ", EVP_PKEY_bits(&key),
                                                       " bits; at least 2048 are required"));
      }
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError("private key must be ECDSA or RSA");
  }
}

}  // namespace

absl::string_view KeyAlgorithmName(KeyAlgorithm algorithm) {
  switch (algorithm) {
    case KeyAlgorithm::kEcdsa:
      return "ECDSA";
    case KeyAlgorithm::kRsa:
      return "RSA";
    case KeyAlgorithm::kOther:
      break;
  }
  return "other";
}

std::string DrainBoringSslErrors() {
  std::vector<std::string> parts;
  while (uint32_t error = ERR_get_error()) {
    const char* lib = ERR_lib_error_string(error);
    const char* reason = ERR_reason_error_string(error);
    parts.push_back(absl::StrCat(lib != nullptr ? lib : "unknown library", ": ",
                                 reason != nullptr ? reason : absl::StrCat("error ", error)));
  }
  return absl::StrJoin(parts, "; ");
}

absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> GenerateEcdsaP256Key() {
  bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
  bssl::UniquePtr<EVP_PKEY> key(EVP_PKEY_new());
  if (ec == nullptr || key == nullptr || !EC_KEY_generate_key(ec.get()) ||
      !EVP_PKEY_assign_EC_KEY(key.get(), ec.get())) {
    return absl::InternalError(
        absl::StrCat("generating an ECDSA P-256 key: ", DrainBoringSslErrors()));
  }
  ec.release();  // owned by key
  return key;
}

namespace {
std::string MemoryBioContents(BIO* bio) {
  const uint8_t* data = nullptr;
  size_t len = 0;
  BIO_mem_contents(bio, &data, &len);
  return std::string(reinterpret_cast<const char*>(data), len);
}
}  // namespace

absl::StatusOr<std::string> CertificateToPem(const X509& cert) {
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || !PEM_write_bio_X509(bio.get(), Mutable(cert))) {
    return absl::InternalError(
        absl::StrCat("encoding a certificate as PEM: ", DrainBoringSslErrors()));
  }
  return MemoryBioContents(bio.get());
}

absl::StatusOr<std::string> PrivateKeyToPem(const EVP_PKEY& key) {
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  // The write only reads the key; BoringSSL's signature lacks the const.
  if (bio == nullptr || !PEM_write_bio_PrivateKey(bio.get(), const_cast<EVP_PKEY*>(&key), nullptr,
                                                  nullptr, 0, nullptr, nullptr)) {
    return absl::InternalError(
        absl::StrCat("encoding a private key as PEM: ", DrainBoringSslErrors()));
  }
  return MemoryBioContents(bio.get());
}

absl::StatusOr<CertificateChain> ParsePemCertificates(absl::string_view pem) {
  ERR_clear_error();
  bssl::UniquePtr<BIO> bio = MemoryBio(pem);
  if (bio == nullptr) return absl::ResourceExhaustedError("out of memory");
  CertificateChain chain;
  while (true) {
    bssl::UniquePtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, NoPassword, nullptr));
    if (cert == nullptr) break;
    chain.push_back(std::move(cert));
  }
  uint32_t error = ERR_peek_last_error();
  if (error != 0 && !IsNoMorePemBlocks(error)) {
    return absl::InvalidArgumentError(absl::StrCat("malformed PEM certificate #", chain.size() + 1,
                                                   ": ", DrainBoringSslErrors()));
  }
  ERR_clear_error();
  if (chain.empty()) {
    return absl::InvalidArgumentError("no PEM CERTIFICATE block found");
  }
  return chain;
}

absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> ParsePemPrivateKey(absl::string_view pem) {
  ERR_clear_error();
  bssl::UniquePtr<BIO> bio = MemoryBio(pem);
  if (bio == nullptr) return absl::ResourceExhaustedError("out of memory");
  bssl::UniquePtr<EVP_PKEY> key(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassword, nullptr));
  if (key == nullptr) {
    uint32_t error = ERR_peek_last_error();
    if (IsNoMorePemBlocks(error)) {
      ERR_clear_error();
      return absl::InvalidArgumentError("no PEM private key block found");
    }
    return absl::InvalidArgumentError(
        absl::StrCat("malformed or encrypted PEM private key: ", DrainBoringSslErrors()));
  }
  if (absl::Status s = CheckKeyStrength(*key); !s.ok()) return s;
  return key;
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  return ReadFile(path, kMaxFileSize);
}

absl::StatusOr<CertificateChain> LoadPemCertificatesFile(const std::string& path) {
  absl::StatusOr<std::string> pem = ReadSmallFile(path);
  if (!pem.ok()) return pem.status();
  absl::StatusOr<CertificateChain> chain = ParsePemCertificates(*pem);
  if (!chain.ok()) {
    return absl::Status(chain.status().code(), absl::StrCat(path, ": ", chain.status().message()));
  }
  return chain;
}

absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> LoadPemPrivateKeyFile(const std::string& path) {
  absl::StatusOr<std::string> pem = ReadSmallFile(path);
  if (!pem.ok()) return pem.status();
  absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> key = ParsePemPrivateKey(*pem);
  // The key bytes are secret: wipe our copy before returning.
  OPENSSL_cleanse(pem->data(), pem->size());
  if (!key.ok()) {
    return absl::Status(key.status().code(), absl::StrCat(path, ": ", key.status().message()));
  }
  return key;
}

absl::Status CheckKeyMatchesCertificate(const X509& cert, const EVP_PKEY& key) {
  ERR_clear_error();
  if (!X509_check_private_key(Mutable(cert), &key)) {
    return absl::InvalidArgumentError(absl::StrCat("private key does not match the certificate (",
                                                   SubjectName(cert),
                                                   "): ", DrainBoringSslErrors()));
  }
  return absl::OkStatus();
}

std::vector<std::string> UriSans(const X509& cert) { return SansOfType(cert, GEN_URI); }
std::vector<std::string> DnsSans(const X509& cert) { return SansOfType(cert, GEN_DNS); }

absl::StatusOr<SpiffeId> SpiffeIdFromUriSans(const std::vector<std::string>& uri_sans) {
  if (uri_sans.empty()) {
    return absl::NotFoundError("certificate has no URI SAN, so no SPIFFE id");
  }
  if (uri_sans.size() > 1) {
    return absl::InvalidArgumentError(absl::StrCat("certificate has ", uri_sans.size(),
                                                   " URI SANs [", absl::StrJoin(uri_sans, ", "),
                                                   "]; a SPIFFE certificate has exactly one"));
  }
  return SpiffeId::Parse(uri_sans.front());
}

absl::StatusOr<SpiffeId> ExtractSpiffeId(const X509& cert) {
  return SpiffeIdFromUriSans(UriSans(cert));
}

absl::Time NotBefore(const X509& cert) { return AsnTimeToAbsl(X509_get0_notBefore(&cert)); }
absl::Time NotAfter(const X509& cert) { return AsnTimeToAbsl(X509_get0_notAfter(&cert)); }

namespace {

// The DER of kAttestationExtensionOid. Its last arc needs 127 bits, more than BoringSSL's text
// parser takes (OBJ_txt2obj stops at 64), so it is encoded here: 2.25 is 0x69, then the arc in
// base 128 (CertificateTest.AttestationExtensionRoundTrips checks it against the text).
constexpr uint8_t kAttestationOidDer[] = {0x06, 0x14, 0x69, 0x81, 0x89, 0xeb, 0xfd, 0xba,
                                          0xed, 0x92, 0xa2, 0x8a, 0xf3, 0x9a, 0x85, 0xab,
                                          0xab, 0x91, 0xdb, 0xc9, 0xcb, 0x3f};

bssl::UniquePtr<ASN1_OBJECT> AttestationOid() {
  const uint8_t* der = kAttestationOidDer;
  return bssl::UniquePtr<ASN1_OBJECT>(
      d2i_ASN1_OBJECT(nullptr, &der, static_cast<long>(sizeof(kAttestationOidDer))));
}

}  // namespace

std::string AttestationOf(const X509& cert) {
  bssl::UniquePtr<ASN1_OBJECT> oid = AttestationOid();
  if (oid == nullptr) {
    ERR_clear_error();
    return "";
  }
  const int index = X509_get_ext_by_OBJ(&cert, oid.get(), -1);
  if (index < 0) return "";
  const ASN1_OCTET_STRING* data = X509_EXTENSION_get_data(X509_get_ext(&cert, index));
  if (data == nullptr) return "";
  CBS der, value;
  CBS_init(&der, ASN1_STRING_get0_data(data), ASN1_STRING_length(data));
  if (!CBS_get_asn1(&der, &value, CBS_ASN1_UTF8STRING) || CBS_len(&der) != 0 ||
      CBS_len(&value) > kMaxAttestationBytes) {
    return "";
  }
  return std::string(reinterpret_cast<const char*>(CBS_data(&value)), CBS_len(&value));
}

absl::Status AddAttestation(X509& cert, absl::string_view value) {
  if (value.empty() || value.size() > kMaxAttestationBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("an attestation must have 1 to ", kMaxAttestationBytes, " bytes"));
  }
  bssl::ScopedCBB cbb;
  CBB utf8;
  uint8_t* der = nullptr;
  size_t der_len = 0;
  if (!CBB_init(cbb.get(), value.size() + 8) ||
      !CBB_add_asn1(cbb.get(), &utf8, CBS_ASN1_UTF8STRING) ||
      !CBB_add_bytes(&utf8, reinterpret_cast<const uint8_t*>(value.data()), value.size()) ||
      !CBB_finish(cbb.get(), &der, &der_len)) {
    return absl::InternalError(absl::StrCat("encoding the attestation: ", DrainBoringSslErrors()));
  }
  bssl::UniquePtr<uint8_t> der_owner(der);
  bssl::UniquePtr<ASN1_OCTET_STRING> octets(ASN1_OCTET_STRING_new());
  bssl::UniquePtr<ASN1_OBJECT> oid = AttestationOid();
  if (octets == nullptr || oid == nullptr ||
      !ASN1_OCTET_STRING_set(octets.get(), der, static_cast<int>(der_len))) {
    return absl::InternalError(absl::StrCat("encoding the attestation: ", DrainBoringSslErrors()));
  }
  bssl::UniquePtr<X509_EXTENSION> extension(
      X509_EXTENSION_create_by_OBJ(nullptr, oid.get(), /*crit=*/0, octets.get()));
  if (extension == nullptr || !X509_add_ext(&cert, extension.get(), -1)) {
    return absl::InternalError(
        absl::StrCat("adding the attestation extension: ", DrainBoringSslErrors()));
  }
  return absl::OkStatus();
}

std::string SerialNumberHex(const X509& cert) {
  bssl::UniquePtr<BIGNUM> bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(&cert), nullptr));
  if (bn == nullptr) {
    ERR_clear_error();
    return "";
  }
  bssl::UniquePtr<char> hex(BN_bn2hex(bn.get()));
  return hex == nullptr ? "" : std::string(hex.get());
}

std::string Sha256Fingerprint(const X509& cert) {
  uint8_t* der = nullptr;
  const int length = i2d_X509(Mutable(cert), &der);
  if (length <= 0) {
    ERR_clear_error();
    return "";
  }
  bssl::UniquePtr<uint8_t> owned(der);
  return absl::StrCat("sha256:", Sha256Hex(absl::string_view(reinterpret_cast<const char*>(der),
                                                             static_cast<size_t>(length))));
}

absl::StatusOr<std::string> ParseSha256Fingerprint(absl::string_view text) {
  absl::string_view hex = absl::StripAsciiWhitespace(text);
  for (absl::string_view prefix : {"sha256 fingerprint=", "sha256:"}) {
    if (absl::StartsWithIgnoreCase(hex, prefix)) {
      hex.remove_prefix(prefix.size());
      break;
    }
  }
  std::string digits = absl::AsciiStrToLower(absl::StrReplaceAll(hex, {{":", ""}}));
  if (digits.size() != 2 * SHA256_DIGEST_LENGTH ||
      digits.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text,
                     "\" is not a SHA-256 fingerprint: expected sha256: and 64 hex digits (colons "
                     "between the bytes allowed), as openssl x509 -noout -fingerprint -sha256 "
                     "prints"));
  }
  return absl::StrCat("sha256:", digits);
}

std::string SubjectName(const X509& cert) { return NameToString(X509_get_subject_name(&cert)); }
std::string IssuerName(const X509& cert) { return NameToString(X509_get_issuer_name(&cert)); }

bool IsCa(const X509& cert) { return (X509_get_extension_flags(Mutable(cert)) & EXFLAG_CA) != 0; }

CertificateInfo DescribeCertificate(const X509& cert) {
  CertificateInfo info;
  info.subject = SubjectName(cert);
  info.issuer = IssuerName(cert);
  info.serial_hex = SerialNumberHex(cert);
  info.not_before = NotBefore(cert);
  info.not_after = NotAfter(cert);
  info.uri_sans = UriSans(cert);
  info.dns_sans = DnsSans(cert);
  if (absl::StatusOr<SpiffeId> id = SpiffeIdFromUriSans(info.uri_sans); id.ok()) {
    info.spiffe_id = id->ToString();
  }
  info.is_ca = IsCa(cert);
  bssl::UniquePtr<EVP_PKEY> key(X509_get_pubkey(Mutable(cert)));
  if (key != nullptr) {
    int id = EVP_PKEY_id(key.get());
    info.key_algorithm = id == EVP_PKEY_EC    ? KeyAlgorithm::kEcdsa
                         : id == EVP_PKEY_RSA ? KeyAlgorithm::kRsa
                                              : KeyAlgorithm::kOther;
    info.key_bits = EVP_PKEY_bits(key.get());
  }
  ERR_clear_error();
  return info;
}

}  // namespace meshlet::tls

namespace meshlet::tls {

std::string IssuerFingerprint(const X509& leaf, const CertificateChain& candidates) {
  X509* subject = const_cast<X509*>(&leaf);
  for (const auto& candidate : candidates) {
    if (X509_check_issued(candidate.get(), subject) != X509_V_OK) continue;
    bssl::UniquePtr<EVP_PKEY> key(X509_get_pubkey(candidate.get()));
    if (key != nullptr && X509_verify(subject, key.get()) == 1)
      return Sha256Fingerprint(*candidate);
  }
  return "";
}

}  // namespace meshlet::tls

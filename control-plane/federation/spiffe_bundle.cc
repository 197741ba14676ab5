#include "control-plane/federation/spiffe_bundle.h"

#include <openssl/x509.h>

#include <cmath>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/tls/spiffe.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace meshlet::controlplane::federation {
namespace {

using google::protobuf::Value;

// Adds `cert` (already checked to be a CA) to `out`.
absl::Status AddRoot(const X509& cert, const BundleLimits& limits, FederatedBundle& out) {
  if (out.roots.size() >= limits.max_roots) {
    return absl::InvalidArgumentError(
        absl::StrCat("more than ", limits.max_roots, " roots (the limit)"));
  }
  const size_t index = out.roots.size() + 1;
  if (!tls::IsCa(cert)) {
    return absl::InvalidArgumentError(
        absl::StrCat("root #", index, " (", tls::SubjectName(cert), ") is not a CA certificate"));
  }
  absl::StatusOr<std::string> pem = tls::CertificateToPem(cert);
  if (!pem.ok()) return pem.status();
  out.roots_pem += *pem;
  out.roots.push_back(tls::DescribeCertificate(cert));
  return absl::OkStatus();
}

// A whole number in 0..2^53 (JSON numbers are doubles), or an error naming `field`.
absl::StatusOr<uint64_t> WholeNumber(const Value& value, absl::string_view field) {
  const double n = value.number_value();
  if (value.kind_case() != Value::kNumberValue || n < 0 || n > 9007199254740992.0 ||
      std::floor(n) != n) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": not a whole number >= 0"));
  }
  return static_cast<uint64_t>(n);
}

// One JWK of the bundle: an x509-svid key's root into `out`, anything else into out.skipped.
absl::Status ParseKey(const Value& key, const std::string& where, const BundleLimits& limits,
                      FederatedBundle& out) {
  if (key.kind_case() != Value::kStructValue) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": not an object"));
  }
  const auto& fields = key.struct_value().fields();
  auto use = fields.find("use");
  if (use == fields.end() || use->second.kind_case() != Value::kStringValue) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".use: missing or not a string"));
  }
  if (use->second.string_value() != "x509-svid") {
    out.skipped.push_back(
        absl::StrCat(where, ": use \"", use->second.string_value(), "\" is not for X.509"));
    return absl::OkStatus();
  }
  auto x5c = fields.find("x5c");
  if (x5c == fields.end() || x5c->second.kind_case() != Value::kListValue) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".x5c: missing or not an array"));
  }
  const auto& certs = x5c->second.list_value().values();
  if (certs.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": x509-svid key needs exactly one x5c certificate, has ", certs.size()));
  }
  const std::string field = absl::StrCat(where, ".x5c[0]");
  std::string der;
  if (certs[0].kind_case() != Value::kStringValue ||
      !absl::Base64Unescape(certs[0].string_value(), &der) || der.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": not base64"));
  }
  const uint8_t* p = reinterpret_cast<const uint8_t*>(der.data());
  bssl::UniquePtr<X509> cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (cert == nullptr || p != reinterpret_cast<const uint8_t*>(der.data()) + der.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": not a DER X.509 certificate: ", tls::DrainBoringSslErrors()));
  }
  absl::Status status = AddRoot(*cert, limits, out);
  if (!status.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", status.message()));
  return absl::OkStatus();
}

absl::StatusOr<FederatedBundle> ParseJwksBundle(absl::string_view text,
                                                const BundleLimits& limits) {
  google::protobuf::Struct root;
  google::protobuf::util::JsonParseOptions options;
  if (auto status = google::protobuf::util::JsonStringToMessage(
          google::protobuf::StringPiece(text.data(), text.size()), &root, options);
      !status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("neither PEM nor a JSON SPIFFE bundle: ", status.ToString()));
  }
  FederatedBundle out;
  const auto& fields = root.fields();
  if (auto it = fields.find("spiffe_sequence"); it != fields.end()) {
    absl::StatusOr<uint64_t> n = WholeNumber(it->second, "spiffe_sequence");
    if (!n.ok()) return n.status();
    out.sequence = *n;
  }
  if (auto it = fields.find("spiffe_refresh_hint"); it != fields.end()) {
    absl::StatusOr<uint64_t> n = WholeNumber(it->second, "spiffe_refresh_hint");
    if (!n.ok()) return n.status();
    out.refresh_hint = absl::Seconds(*n);
  }
  auto keys = fields.find("keys");
  if (keys == fields.end() || keys->second.kind_case() != Value::kListValue) {
    return absl::InvalidArgumentError("keys: missing or not an array");
  }
  const auto& list = keys->second.list_value().values();
  for (int i = 0; i < list.size(); ++i) {
    if (absl::Status status = ParseKey(list[i], absl::StrCat("keys[", i, "]"), limits, out);
        !status.ok()) {
      return status;
    }
  }
  if (out.roots.empty()) {
    return absl::InvalidArgumentError(
        out.skipped.empty() ? std::string("no x509-svid key")
                            : absl::StrCat("no x509-svid key (", out.skipped.front(), ")"));
  }
  return out;
}

}  // namespace

absl::StatusOr<FederatedBundle> ParseFederatedBundle(absl::string_view domain,
                                                     absl::string_view text,
                                                     const BundleLimits& limits) {
  if (absl::Status status = tls::ValidateTrustDomain(domain); !status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("trust domain \"", domain, "\": ", status.message()));
  }
  if (text.size() > limits.max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("bundle of ", text.size(), " bytes is over the limit of ", limits.max_bytes));
  }
  if (!absl::StartsWith(absl::StripLeadingAsciiWhitespace(text), "-----BEGIN")) {
    return ParseJwksBundle(text, limits);
  }
  absl::StatusOr<tls::CertificateChain> certs = tls::ParsePemCertificates(text);
  if (!certs.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("PEM: ", certs.status().message()));
  }
  FederatedBundle out;
  for (const auto& cert : *certs) {
    if (absl::Status status = AddRoot(*cert, limits, out); !status.ok()) return status;
  }
  if (out.roots.empty()) return absl::InvalidArgumentError("PEM: no certificate");
  return out;
}

}  // namespace meshlet::controlplane::federation

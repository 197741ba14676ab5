#include "sidecar/config/translate_internal.h"

#include <optional>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/file.h"
#include "common/tls/certificate.h"
#include "common/tls/spiffe.h"

namespace meshlet::sidecar::config::translate_internal {

bool ValidServerName(absl::string_view name) {
  if (absl::StartsWith(name, "*.")) name.remove_prefix(2);
  if (name.empty() || name.size() > 253) return false;
  for (absl::string_view label : absl::StrSplit(name, '.')) {
    if (label.empty() || label.size() > 63) return false;
    for (char c : label) {
      if (!absl::ascii_islower(static_cast<unsigned char>(c)) &&
          !absl::ascii_isdigit(static_cast<unsigned char>(c)) && c != '-') {
        return false;
      }
    }
  }
  return true;
}

namespace {

// One PEM piece of a secret, inline or from a file (not both).
std::string ReadPemPiece(Errors::Scope& scope, absl::string_view pem_field,
                         absl::string_view inline_pem, absl::string_view file_field,
                         const std::string& file) {
  if (!inline_pem.empty() && !file.empty()) {
    scope.Add("", absl::StrCat(pem_field, " and ", file_field, ": set only one"));
    return "";
  }
  std::string pem;
  absl::string_view where = pem_field;
  if (!file.empty()) {
    absl::StatusOr<std::string> content = ReadFile(file);
    if (!content.ok()) {
      scope.Add(file_field, content.status());
      return "";
    }
    pem = *std::move(content);
    where = file_field;
  } else {
    pem = std::string(inline_pem);
  }
  if (!pem.empty() && !absl::StrContains(pem, "-----BEGIN ")) {
    scope.Add(where, "holds no PEM block (\"-----BEGIN ...\")");
    return "";
  }
  return pem;
}

std::optional<SecretConfig> TranslateSecret(Errors::Scope& scope, const xds::Secret& secret) {
  const size_t before = scope.count();
  SecretConfig out;
  out.name = secret.name();
  out.certificate_chain_pem =
      ReadPemPiece(scope, "certificate_chain_pem", secret.certificate_chain_pem(),
                   "certificate_chain_file", secret.certificate_chain_file());
  out.private_key_pem = ReadPemPiece(scope, "private_key_pem", secret.private_key_pem(),
                                     "private_key_file", secret.private_key_file());
  out.trust_bundle_pem = ReadPemPiece(scope, "trust_bundle_pem", secret.trust_bundle_pem(),
                                      "trust_bundle_file", secret.trust_bundle_file());
  if (scope.count() != before) return std::nullopt;
  const bool has_cert = !out.certificate_chain_pem.empty();
  const bool has_key = !out.private_key_pem.empty();
  if (has_cert && !has_key) scope.Add("private_key_pem", "required with a certificate chain");
  if (has_key && !has_cert) scope.Add("certificate_chain_pem", "required with a private key");
  if (!has_cert && !has_key && out.trust_bundle_pem.empty()) {
    scope.Add("", "needs a certificate chain and private key, a trust bundle, or both");
  }
  for (const auto& [domain, pem] : secret.federated_bundles()) {
    if (!tls::ValidateTrustDomain(domain).ok()) {
      scope.Add(absl::StrCat("federated_bundles[", domain, "]"), "is not a trust domain");
    } else if (pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      scope.Add(absl::StrCat("federated_bundles[", domain, "]"), "holds no PEM certificate");
    } else {
      out.federated_bundles.emplace(domain, pem);
    }
  }
  for (const std::string& alias : secret.trust_domain_aliases()) {
    if (!tls::ValidateTrustDomain(alias).ok()) {
      scope.Add("trust_domain_aliases", absl::StrCat("\"", alias, "\" is not a trust domain"));
    } else {
      out.trust_domain_aliases.push_back(alias);
    }
  }
  if (secret.has_renewal()) {
    const xds::CertificateRenewal& r = secret.renewal();
    absl::StatusOr<std::string> signer = tls::ParseSha256Fingerprint(r.signer());
    if (!signer.ok()) {
      scope.Add("renewal.signer", signer.status().message());
    } else if (r.round() == 0) {
      scope.Add("renewal.round", "must be above 0");
    } else if (r.window_seconds() > 86400) {
      scope.Add("renewal.window_seconds", "must be at most 86400 (a day)");
    }
    if (signer.ok()) out.renewal_signer = *signer;
    out.renewal_round = r.round();
    out.renewal_window = absl::Seconds(r.window_seconds());
  }
  if (scope.count() != before) return std::nullopt;
  return out;
}

// tls.trust_bundle_secret: with workload_certificate only, naming a Secret with a trust bundle.
void TranslateTrustBundleSecret(Errors::Scope& scope, bool workload_certificate,
                                const std::string& name,
                                const Snapshot::ByName<SecretConfig>& secrets, std::string& out) {
  out = name;
  if (name.empty()) return;
  if (!workload_certificate) {
    scope.Add("tls.trust_bundle_secret", "needs tls.workload_certificate: true");
    return;
  }
  auto it = secrets.find(name);
  if (it == secrets.end()) {
    scope.Add("", absl::StrCat("tls.trust_bundle_secret ", Quote(name), " names no Secret"));
  } else if (it->second.trust_bundle_pem.empty()) {
    scope.Add("tls.trust_bundle_secret",
              absl::StrCat("secret ", Quote(name), " has no trust bundle"));
  }
}

// DownstreamTls.server_certificates: names valid and each listed once, Secrets with a chain and
// key; beside secret_name only (the default certificate).
void TranslateServerCertificates(Errors::Scope& scope, const xds::DownstreamTls& in,
                                 const Snapshot::ByName<SecretConfig>& secrets,
                                 DownstreamTlsConfig& out) {
  if (in.server_certificates_size() > 0 && in.secret_name().empty()) {
    scope.Add("tls.server_certificates", "needs tls.secret_name (the default certificate)");
  }
  std::set<std::string> seen;
  for (int i = 0; i < in.server_certificates_size(); ++i) {
    const xds::ServerCertificate& c = in.server_certificates(i);
    const std::string path = Index("tls.server_certificates", i);
    if (c.server_names_size() == 0) scope.Add(Join(path, "server_names"), "required");
    for (int n = 0; n < c.server_names_size(); ++n) {
      const std::string& name = c.server_names(n);
      if (!ValidServerName(name)) {
        scope.Add(Index(Join(path, "server_names"), n),
                  absl::StrCat(Quote(name), " is not a lower-case host name or *.suffix"));
      } else if (!seen.insert(name).second) {
        scope.Add(Index(Join(path, "server_names"), n),
                  absl::StrCat(Quote(name), " is listed twice"));
      }
    }
    auto it = secrets.find(c.secret_name());
    if (it == secrets.end()) {
      scope.Add(Join(path, "secret_name"),
                absl::StrCat(Quote(c.secret_name()), " names no Secret"));
    } else if (it->second.certificate_chain_pem.empty()) {
      scope.Add(Join(path, "secret_name"),
                absl::StrCat("secret ", Quote(c.secret_name()),
                             " has no certificate chain and private key"));
    }
    out.server_certificates.push_back(
        {.server_names = {c.server_names().begin(), c.server_names().end()},
         .secret_name = c.secret_name()});
  }
}

}  // namespace

void AddSecrets(SnapshotBuild& build, const ResourceList<xds::Secret>& secrets) {
  absl::flat_hash_map<absl::string_view, size_t> seen;
  for (size_t i = 0; i < secrets.size(); ++i) {
    const xds::Secret& secret = secrets[i];
    if (!build.Named("secret", "secrets", i, secret.name(), seen)) continue;
    Errors::Scope scope(build.errors, Label("secret", secret.name()));
    if (std::optional<SecretConfig> out = TranslateSecret(scope, secret)) {
      build.memo->secret_has_trust_bundle.emplace(secret.name(), !out->trust_bundle_pem.empty());
      build.snapshot->secrets.emplace(secret.name(), *std::move(out));
    }
  }
  // What clusters and listeners check of a secret; when that is unchanged, so is every check.
  build.secrets_as_before = build.before != nullptr && build.before->secret_has_trust_bundle ==
                                                           build.memo->secret_has_trust_bundle;
}

namespace {

// A subjectAltName's DNS name: a host name, or "*." and one.
bool ValidSanHostname(absl::string_view name) {
  if (absl::StartsWith(name, "*.")) name.remove_prefix(2);
  if (name.empty() || name.size() > 253 || absl::StrContains(name, ':')) return false;
  return ValidHost(name) && !absl::StrContains(name, '*');
}

// A URI: scheme ":" and something, no spaces or control characters.
bool ValidSanUri(absl::string_view uri) {
  const size_t colon = uri.find(':');
  if (colon == 0 || colon == absl::string_view::npos || colon + 1 == uri.size()) return false;
  if (!absl::ascii_isalpha(uri[0])) return false;
  for (size_t i = 0; i < colon; ++i) {
    const char c = uri[i];
    if (!absl::ascii_isalnum(c) && c != '+' && c != '-' && c != '.') return false;
  }
  for (char c : uri) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return false;
  }
  return uri.size() <= 2048;
}

}  // namespace

void TranslateUpstreamTls(Errors::Scope& scope, const xds::UpstreamTls& in,
                          const Snapshot::ByName<SecretConfig>& secrets,
                          cluster::UpstreamTlsConfig& out) {
  out.enabled = in.enabled();
  if (!in.enabled()) return;
  out.workload_certificate = in.workload_certificate();
  if (in.workload_certificate()) {
    // The workload certificate brings the key, the chain and the mesh trust bundle.
    if (!in.secret_name().empty()) {
      scope.Add("tls.workload_certificate", "excludes tls.secret_name");
    }
    if (!in.ca_file().empty()) scope.Add("tls.workload_certificate", "excludes tls.ca_file");
  } else if (!in.secret_name().empty()) {
    auto it = secrets.find(in.secret_name());
    if (it == secrets.end()) {
      scope.Add("", absl::StrCat("tls.secret_name ", Quote(in.secret_name()), " names no Secret"));
    } else if (in.ca_file().empty() && it->second.trust_bundle_pem.empty()) {
      scope.Add("tls.secret_name",
                absl::StrCat("secret ", Quote(in.secret_name()),
                             " has no trust bundle to verify the upstream with (or set ca_file)"));
    }
  }
  out.secret_name = in.secret_name();
  TranslateTrustBundleSecret(scope, in.workload_certificate(), in.trust_bundle_secret(), secrets,
                             out.trust_bundle_secret);
  out.session_resumption = !in.disable_session_resumption();
  if (!in.sni().empty() && !ValidHost(in.sni())) {
    scope.Add("tls.sni", absl::StrCat(Quote(in.sni()), " is not a host name"));
  }
  out.sni = in.sni();
  for (int i = 0; i < in.subject_alt_names_size(); ++i) {
    const xds::SubjectAltName& san = in.subject_alt_names(i);
    const std::string path = Index("tls.subject_alt_names", i);
    switch (san.name_case()) {
      case xds::SubjectAltName::kDns:
        if (!ValidSanHostname(san.dns())) {
          scope.Add(path + ".dns",
                    absl::StrCat(Quote(san.dns()), " is not a host name (or \"*.\" and one)"));
        }
        out.subject_alt_names.Mutable().push_back(absl::StrCat("dns:", san.dns()));
        break;
      case xds::SubjectAltName::kUri:
        if (!ValidSanUri(san.uri())) {
          scope.Add(path + ".uri", absl::StrCat(Quote(san.uri()), " is not a URI (scheme:rest)"));
        }
        out.subject_alt_names.Mutable().push_back(absl::StrCat("uri:", san.uri()));
        break;
      case xds::SubjectAltName::NAME_NOT_SET:
        scope.Add(path, "sets neither dns nor uri");
        break;
    }
  }
  if (in.subject_alt_names_size() > 0 &&
      (in.workload_certificate() || in.expected_peer_ids_size() > 0)) {
    scope.Add("tls.subject_alt_names",
              "applies to non-mesh upstreams only (not with workload_certificate or "
              "expected_peer_ids)");
  }
  // A non-mesh upstream (verified by ca_file alone: no client certificate, no SPIFFE id) is
  // only authenticated by the name in its certificate, so that name must be known.
  if (!in.workload_certificate() && in.secret_name().empty() && in.expected_peer_ids_size() == 0 &&
      in.sni().empty() && in.subject_alt_names_size() == 0) {
    scope.Add("tls.sni",
              "required when the upstream is verified by ca_file alone: its certificate must "
              "name this host (subjectAltName), unless subject_alt_names are given");
  }
  for (int i = 0; i < in.alpn_size(); ++i) {
    if (in.alpn(i).empty() || in.alpn(i).size() > 255) {
      scope.Add(Index("tls.alpn", i), "must be 1 to 255 bytes");
    }
    out.alpn.push_back(in.alpn(i));
  }
  for (int i = 0; i < in.expected_peer_ids_size(); ++i) {
    if (!tls::SpiffeIdMatcher::FromPatterns({in.expected_peer_ids(i)}).ok()) {
      scope.Add(Index("tls.expected_peer_ids", i),
                absl::StrCat(Quote(in.expected_peer_ids(i)), " is not a SPIFFE id (spiffe://...)"));
    }
    out.expected_peer_ids.push_back(in.expected_peer_ids(i));
  }
  out.ca_file = in.ca_file();
}

void TranslateDownstreamTls(Errors::Scope& scope, const xds::DownstreamTls& in,
                            const Snapshot::ByName<SecretConfig>& secrets,
                            DownstreamTlsConfig& out) {
  switch (in.mode()) {
    case xds::DownstreamTls::DISABLE:
      out.mode = DownstreamTlsConfig::Mode::kDisable;
      return;  // the other fields do not apply
    case xds::DownstreamTls::PERMISSIVE:
      out.mode = DownstreamTlsConfig::Mode::kPermissive;
      break;
    case xds::DownstreamTls::STRICT:
      out.mode = DownstreamTlsConfig::Mode::kStrict;
      break;
    case xds::DownstreamTls::TLS:
      out.mode = DownstreamTlsConfig::Mode::kTls;
      break;
    default:
      scope.Add("tls.mode", absl::StrCat("unknown value ", in.mode()));
      return;
  }
  const std::string mode_name = xds::DownstreamTls::Mode_Name(in.mode());
  out.require_client_certificate =
      in.require_client_certificate() || out.mode == DownstreamTlsConfig::Mode::kStrict;
  out.workload_certificate = in.workload_certificate();
  if (in.workload_certificate()) {
    if (!in.secret_name().empty()) {
      scope.Add("tls.workload_certificate", "excludes tls.secret_name");
    }
  } else if (in.secret_name().empty()) {
    scope.Add("tls.secret_name", absl::StrCat("required when mode is ", mode_name,
                                              " (or set tls.workload_certificate: true)"));
  } else {
    auto it = secrets.find(in.secret_name());
    if (it == secrets.end()) {
      scope.Add("", absl::StrCat("tls.secret_name ", Quote(in.secret_name()), " names no Secret"));
    } else {
      const SecretConfig& secret = it->second;
      if (secret.certificate_chain_pem.empty()) {
        scope.Add("tls.secret_name", absl::StrCat("secret ", Quote(secret.name),
                                                  " has no certificate chain and private key"));
      }
      if (out.require_client_certificate && secret.trust_bundle_pem.empty()) {
        scope.Add("tls.secret_name",
                  absl::StrCat("secret ", Quote(secret.name),
                               " has no trust bundle to verify client certificates with"));
      }
    }
  }
  out.secret_name = in.secret_name();
  TranslateServerCertificates(scope, in, secrets, out);
  TranslateTrustBundleSecret(scope, in.workload_certificate(), in.trust_bundle_secret(), secrets,
                             out.trust_bundle_secret);
  out.session_resumption = !in.disable_session_resumption();
  if (in.alpn_size() > 0) {
    out.alpn.clear();
    for (int i = 0; i < in.alpn_size(); ++i) {
      if (in.alpn(i).empty() || in.alpn(i).size() > 255) {
        scope.Add(Index("tls.alpn", i), "must be 1 to 255 bytes");
      }
      out.alpn.push_back(in.alpn(i));
    }
  }
  for (int i = 0; i < in.allowed_peer_ids_size(); ++i) {
    if (!tls::SpiffeIdMatcher::FromPatterns({in.allowed_peer_ids(i)}).ok()) {
      scope.Add(Index("tls.allowed_peer_ids", i),
                absl::StrCat(Quote(in.allowed_peer_ids(i)),
                             " is not a SPIFFE id (spiffe://<trust-domain>/... or "
                             "spiffe://<trust-domain>/*)"));
    }
    out.allowed_peer_ids.push_back(in.allowed_peer_ids(i));
  }
}

}  // namespace meshlet::sidecar::config::translate_internal

#include "control-plane/ca/kubernetes_csr_signer.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/stats/or_discard.h"
#include "common/tls/certificate.h"
#include "control-plane/ca/authority.h"
#include "control-plane/kubernetes/yaml_fields.h"

namespace meshlet::controlplane::ca {
namespace {

constexpr char kCsrPath[] = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
constexpr size_t kMaxCsrBytes = 16 * 1024;
constexpr const char* kResults[] = {"issued", "denied", "failed", "timeout", "error"};
constexpr char kRbacHint[] =
    " (the control plane needs create, get and delete on certificatesigningrequests: "
    "docs/kubernetes.md)";

// The URI SANs of a request's extensions.
std::vector<std::string> RequestUriSans(X509_REQ* req) {
  std::vector<std::string> uris;
  bssl::UniquePtr<STACK_OF(X509_EXTENSION)> extensions(X509_REQ_get_extensions(req));
  if (extensions == nullptr) return uris;
  for (size_t i = 0; i < sk_X509_EXTENSION_num(extensions.get()); ++i) {
    X509_EXTENSION* ext = sk_X509_EXTENSION_value(extensions.get(), i);
    if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) != NID_subject_alt_name) continue;
    bssl::UniquePtr<GENERAL_NAMES> names(static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(ext)));
    if (names == nullptr) continue;
    for (size_t j = 0; j < sk_GENERAL_NAME_num(names.get()); ++j) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), j);
      if (name->type != GEN_URI) continue;
      const ASN1_STRING* value = name->d.uniformResourceIdentifier;
      uris.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(value)),
                        static_cast<size_t>(ASN1_STRING_length(value)));
    }
  }
  return uris;
}

}  // namespace

absl::Status CheckCsrForSigner(const std::string& csr_pem, const std::string& spiffe_id) {
  absl::StatusOr<bssl::UniquePtr<X509_REQ>> req = ParseCertificateRequest(csr_pem, kMaxCsrBytes);
  if (!req.ok()) return req.status();
  absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> key = VerifiedRequestKey(req->get());
  if (!key.ok()) return key.status();
  const std::vector<std::string> uris = RequestUriSans(req->get());
  if (uris.size() != 1 || uris[0] != spiffe_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("csr: for an external signer its SubjectAlternativeName must be exactly the "
                     "URI ",
                     spiffe_id, " (it holds ", uris.size(), " URI SAN(s)",
                     uris.empty() ? "" : absl::StrCat(", the first ", uris[0]), ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckIssuedChain(const std::string& chain_pem, const std::string& csr_pem,
                              const std::string& spiffe_id, const std::string& trust_bundle_pem,
                              absl::Time now, absl::Time* not_before, absl::Time* not_after,
                              std::string* serial_hex) {
  absl::StatusOr<tls::CertificateChain> chain = tls::ParsePemCertificates(chain_pem);
  if (!chain.ok() || chain->empty()) {
    return absl::InvalidArgumentError("the signer's answer holds no PEM certificate");
  }
  const X509& leaf = *chain->front();
  if (tls::IsCa(leaf)) {
    return absl::InvalidArgumentError("the signer's certificate is a CA certificate, not a leaf");
  }
  absl::StatusOr<bssl::UniquePtr<X509_REQ>> req = ParseCertificateRequest(csr_pem, kMaxCsrBytes);
  if (!req.ok()) return req.status();
  bssl::UniquePtr<EVP_PKEY> requested(X509_REQ_get_pubkey(req->get()));
  bssl::UniquePtr<EVP_PKEY> issued(X509_get_pubkey(const_cast<X509*>(&leaf)));
  if (requested == nullptr || issued == nullptr ||
      EVP_PKEY_cmp(requested.get(), issued.get()) != 1) {
    return absl::InvalidArgumentError("the signer's certificate is not for the requested key");
  }
  const std::vector<std::string> uris = tls::UriSans(leaf);
  if (uris.size() != 1 || uris[0] != spiffe_id) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the signer's certificate does not name exactly ", spiffe_id, " (", uris.size(),
        " URI SAN(s)", uris.empty() ? "" : absl::StrCat(", the first ", uris[0]), ")"));
  }
  absl::StatusOr<TrustBundle> bundle = TrustBundle::FromPem(trust_bundle_pem);
  if (!bundle.ok()) return bundle.status();
  absl::StatusOr<tls::CertificateChain> path =
      VerifyUpToBundle(*chain, *bundle, now, "the signer's certificate");
  if (!path.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path.status().message(), " (add the signer's root to --ca-trust-bundle)"));
  }
  *not_before = tls::NotBefore(leaf);
  *not_after = tls::NotAfter(leaf);
  *serial_hex = tls::SerialNumberHex(leaf);
  return absl::OkStatus();
}

struct KubernetesCsrSigner::Pending {
  std::string name;  // the CertificateSigningRequest's, once created
  std::string spiffe_id;
  absl::Time deadline;
  Done done;
  std::unique_ptr<event::Timer> timer;
};

KubernetesCsrSigner::KubernetesCsrSigner(event::Loop& loop, kubernetes::KubernetesApi& api,
                                         StatsRegistry& stats, KubernetesCsrSignerOptions options)
    : loop_(loop), api_(api), options_(std::move(options)) {
  StatsShard& shard = stats.shared_shard();
  for (const char* result : kResults) {
    results_[result] = OrDiscard(
        shard.RegisterCounter("meshlet_cp_ca_csr_total",
                              "Workload certificates asked of the Kubernetes CSR API's signer, by "
                              "result: issued, denied (by the signer), failed (its Failed "
                              "condition, or a certificate that does not check), timeout "
                              "(--ca-csr-timeout), error (the API refused or was unreachable).",
                              {{"result", result}}),
        "meshlet_cp_ca_csr_total");
  }
  pending_gauge_ =
      OrDiscard(shard.RegisterGauge("meshlet_cp_ca_csr_pending",
                                    "CertificateSigningRequests created and not answered yet."),
                "meshlet_cp_ca_csr_pending");
  delete_failures_ = OrDiscard(
      shard.RegisterCounter("meshlet_cp_ca_csr_delete_failures_total",
                            "CertificateSigningRequests that could not be deleted once answered."),
      "meshlet_cp_ca_csr_delete_failures_total");
}

KubernetesCsrSigner::~KubernetesCsrSigner() { *alive_ = false; }

void KubernetesCsrSigner::Sign(const std::string& csr_pem, const std::string& spiffe_id,
                               absl::Duration ttl, Done done) {
  const uint64_t id = next_id_++;
  auto pending = std::make_unique<Pending>();
  pending->spiffe_id = spiffe_id;
  pending->deadline = absl::Now() + options_.timeout;
  pending->done = std::move(done);
  pending->timer = std::make_unique<event::Timer>(loop_, [this, id] { Poll(id); });
  pending_.emplace(id, std::move(pending));
  pending_gauge_.Set(static_cast<int64_t>(pending_.size()));

  std::string body = absl::StrCat(
      R"({"apiVersion":"certificates.k8s.io/v1","kind":"CertificateSigningRequest",)"
      R"("metadata":{"generateName":"meshlet-","labels":{"app.kubernetes.io/managed-by":)"
      R"("meshlet"},"annotations":{"meshlet.io/spiffe-id":)",
      JsonQuote(spiffe_id), R"(}},"spec":{"request":)", JsonQuote(absl::Base64Escape(csr_pem)),
      R"(,"signerName":)", JsonQuote(options_.signer_name));
  if (ttl > absl::ZeroDuration()) {
    // The API's minimum is 600 s; the signer may shorten it, never lengthen (the CA's cap).
    absl::StrAppend(&body, R"(,"expirationSeconds":)",
                    std::max<int64_t>(600, absl::ToInt64Seconds(ttl)));
  }
  body += R"(,"usages":["digital signature","key encipherment","client auth","server auth"]}})";
  api_.Call({.method = "POST",
             .path = kCsrPath,
             .content_type = "application/json",
             .body = std::move(body),
             .forbidden_hint = kRbacHint},
            [this, alive = alive_, id](kubernetes::ApiResult result) {
              if (!*alive) return;
              auto it = pending_.find(id);
              if (it == pending_.end()) return;
              if (!result.body.ok()) {
                return Finish(
                    id, "error",
                    absl::UnavailableError(absl::StrCat("creating the CertificateSigningRequest: ",
                                                        result.body.status().message())));
              }
              YAML::Node created;
              try {
                created = YAML::Load(*result.body);
              } catch (const YAML::Exception&) {
              }
              it->second->name =
                  kubernetes::ScalarAt(kubernetes::NodeAt(created, "metadata"), "name");
              if (it->second->name.empty()) {
                return Finish(id, "error",
                              absl::UnavailableError("the API server's answer to creating the "
                                                     "CertificateSigningRequest names none"));
              }
              // The answer may hold the certificate already (an auto-approving signer is fast).
              OnRead(id, std::move(result));
            });
}

void KubernetesCsrSigner::Poll(uint64_t id) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  if (absl::Now() >= it->second->deadline) {
    return Finish(
        id, "timeout",
        absl::DeadlineExceededError(absl::StrCat(
            "CertificateSigningRequest ", it->second->name, " (signerName ", options_.signer_name,
            ") was not answered within ", absl::FormatDuration(options_.timeout),
            ": is a signer for that signerName running and approving?")));
  }
  api_.Call({.method = "GET",
             .path = absl::StrCat(kCsrPath, "/", it->second->name),
             .forbidden_hint = kRbacHint,
             .replay_safe = true},
            [this, alive = alive_, id](kubernetes::ApiResult result) {
              if (*alive) OnRead(id, std::move(result));
            });
}

void KubernetesCsrSigner::OnRead(uint64_t id, kubernetes::ApiResult result) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  Pending& p = *it->second;
  if (!result.body.ok()) {
    // A read that failed is tried again until the deadline.
    LOG_EVERY_N_SEC(WARN, 10) << "ca: reading CertificateSigningRequest " << p.name << ": "
                              << result.body.status().message();
    p.timer->Enable(absl::ToChronoNanoseconds(options_.poll_interval));
    return;
  }
  YAML::Node csr;
  try {
    csr = YAML::Load(*result.body);
  } catch (const YAML::Exception&) {
  }
  const YAML::Node status = kubernetes::NodeAt(csr, "status");
  const YAML::Node conditions = kubernetes::NodeAt(status, "conditions");
  if (conditions.IsSequence()) {
    for (const YAML::Node& c : conditions) {
      const std::string type = kubernetes::ScalarAt(c, "type");
      if (kubernetes::ScalarAt(c, "status") == "False") continue;
      const std::string message = kubernetes::ScalarAt(c, "message");
      if (type == "Denied") {
        return Finish(id, "denied",
                      absl::PermissionDeniedError(absl::StrCat(
                          "the signer ", options_.signer_name, " denied CertificateSigningRequest ",
                          p.name, message.empty() ? "" : absl::StrCat(": ", message))));
      }
      if (type == "Failed") {
        return Finish(id, "failed",
                      absl::InternalError(absl::StrCat(
                          "the signer ", options_.signer_name, " failed CertificateSigningRequest ",
                          p.name, message.empty() ? "" : absl::StrCat(": ", message))));
      }
    }
  }
  const std::string certificate = kubernetes::ScalarAt(status, "certificate");
  if (!certificate.empty()) {
    std::string pem;
    if (!absl::Base64Unescape(certificate, &pem)) {
      return Finish(id, "failed",
                    absl::InternalError(absl::StrCat("CertificateSigningRequest ", p.name,
                                                     ": status.certificate is not base64")));
    }
    return Finish(id, "issued", std::move(pem));
  }
  p.timer->Enable(absl::ToChronoNanoseconds(options_.poll_interval));
}

void KubernetesCsrSigner::Finish(uint64_t id, absl::string_view result,
                                 absl::StatusOr<std::string> chain) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  std::unique_ptr<Pending> p = std::move(it->second);
  pending_.erase(it);
  pending_gauge_.Set(static_cast<int64_t>(pending_.size()));
  if (auto counter = results_.find(result); counter != results_.end()) counter->second.Inc();
  if (!chain.ok()) {
    LOG(WARN) << "ca: no certificate for " << p->spiffe_id
              << " from the CSR API: " << chain.status().message();
  }
  if (!p->name.empty()) {
    // Answered: the request has served its purpose (signers keep no state in it).
    api_.Call({.method = "DELETE", .path = absl::StrCat(kCsrPath, "/", p->name)},
              [this, alive = alive_, name = p->name](kubernetes::ApiResult r) {
                if (!*alive || r.body.ok() || r.http_status == 404) return;
                delete_failures_.Inc();
                LOG_EVERY_N_SEC(WARN, 30) << "ca: deleting CertificateSigningRequest " << name
                                          << ": " << r.body.status().message();
              });
  }
  // Called back on a later turn at the earliest (Sign()'s caller is never re-entered).
  loop_.Post(
      [done = std::move(p->done), chain = std::move(chain)]() mutable { done(std::move(chain)); });
}

}  // namespace meshlet::controlplane::ca

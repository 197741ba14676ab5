#include "control-plane/ca/ca_source.h"

#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/tls/certificate.h"
#include "common/tls/digest.h"
#include "control-plane/identity/workload_identity.h"
#include "control-plane/kubernetes/yaml_fields.h"

namespace meshlet::controlplane::ca {
namespace {

// The file's content; errors name it.
absl::StatusOr<std::string> ReadNamedFile(const std::string& path) {
  absl::StatusOr<std::string> text = tls::ReadSmallFile(path);
  if (!text.ok()) return Annotate(text.status(), path);
  return text;
}

constexpr char kSecretRbacHint[] =
    "the control plane needs get on that Secret (k8s/base/rbac.yaml, Role "
    "meshlet-control-plane-ca)";

absl::StatusOr<std::string> Required(const YAML::Node& data, const char* key,
                                     absl::string_view layout) {
  ASSIGN_OR_RETURN(std::optional<std::string> value, kubernetes::SecretData(data, key));
  if (!value.has_value() || value->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the ", layout, " layout needs data.", key, ", which is missing or empty"));
  }
  return *std::move(value);
}

}  // namespace

absl::StatusOr<SecretLayout> ParseSecretLayout(absl::string_view text) {
  if (text == "auto") return SecretLayout::kAuto;
  if (text == "tls") return SecretLayout::kTls;
  if (text == "cacerts") return SecretLayout::kCacerts;
  return absl::InvalidArgumentError(
      absl::StrCat("\"", text, "\": expected auto, tls (kubernetes.io/tls) or cacerts"));
}

absl::StatusOr<SecretRef> ParseSecretRef(absl::string_view text) {
  std::vector<std::string> parts = absl::StrSplit(text, '/');
  if (parts.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\": expected NAMESPACE/NAME"));
  }
  RETURN_IF_ERROR(identity::ValidateWorkloadName("namespace", parts[0]));
  RETURN_IF_ERROR(identity::ValidateWorkloadName("name", parts[1]));
  return SecretRef{.namespace_ = parts[0], .name = parts[1]};
}

absl::StatusOr<CaMaterial> MaterialFromSecret(absl::string_view secret_json, SecretLayout layout) {
  YAML::Node data;
  try {
    data = kubernetes::NodeAt(YAML::Load(std::string(secret_json)), "data");
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("the Secret is not JSON: ", e.what()));
  }
  if (!data.IsMap()) return absl::InvalidArgumentError("the Secret has no data");
  if (layout == SecretLayout::kAuto) {
    if (data["tls.key"]) {
      layout = SecretLayout::kTls;
    } else if (data["ca-key.pem"]) {
      layout = SecretLayout::kCacerts;
    } else {
      std::string keys;
      for (const auto& entry : data) {
        absl::StrAppend(&keys, keys.empty() ? "" : ", ", entry.first.as<std::string>());
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "the Secret holds neither tls.key (kubernetes.io/tls) nor ca-key.pem (cacerts); its "
          "keys: ",
          keys.empty() ? "none" : keys));
    }
  }
  CaMaterial material;
  if (layout == SecretLayout::kTls) {
    ASSIGN_OR_RETURN(material.chain_pem, Required(data, "tls.crt", "kubernetes.io/tls"));
    ASSIGN_OR_RETURN(material.key_pem, Required(data, "tls.key", "kubernetes.io/tls"));
    ASSIGN_OR_RETURN(std::optional<std::string> roots, kubernetes::SecretData(data, "ca.crt"));
    material.roots_pem = roots.value_or("");
    return material;
  }
  // cacerts: cert-chain.pem is the signing certificate up to the root; ca-cert.pem alone when
  // there is no chain.
  ASSIGN_OR_RETURN(material.key_pem, Required(data, "ca-key.pem", "cacerts"));
  ASSIGN_OR_RETURN(std::optional<std::string> chain,
                   kubernetes::SecretData(data, "cert-chain.pem"));
  if (chain.has_value() && !chain->empty()) {
    material.chain_pem = *std::move(chain);
  } else {
    ASSIGN_OR_RETURN(material.chain_pem, Required(data, "ca-cert.pem", "cacerts"));
  }
  ASSIGN_OR_RETURN(material.roots_pem, Required(data, "root-cert.pem", "cacerts"));
  return material;
}

CaSource::CaSource(event::Loop& loop, const Clock& clock, kubernetes::KubernetesApi* api,
                   CaSourceOptions options, ValidFn on_valid, InvalidFn on_invalid)
    : loop_(loop),
      clock_(clock),
      api_(api),
      options_(std::move(options)),
      on_valid_(std::move(on_valid)),
      on_invalid_(std::move(on_invalid)),
      timer_(loop, [this] { Poll(); }) {}

CaSource::~CaSource() { *alive_ = false; }

std::string CaSource::Name() const {
  if (options_.secret.has_value()) return absl::StrCat("Secret ", options_.secret->ToString());
  return absl::StrCat("files ", options_.chain_file, ", ", options_.key_file);
}

absl::StatusOr<std::shared_ptr<const CertificateAuthority>> CaSource::LoadInitial(
    std::string* description) {
  absl::StatusOr<std::shared_ptr<const CertificateAuthority>> authority = LoadFirst();
  if (!authority.ok()) return Annotate(authority.status(), Name());
  *description = Name();
  return authority;
}

absl::StatusOr<std::shared_ptr<const CertificateAuthority>> CaSource::LoadFirst() {
  CaMaterial material;
  if (options_.secret.has_value()) {
    CHECK(api_ != nullptr) << "a CA Secret needs the Kubernetes API";
    // Shared with the callback: an answer after the deadline lands there, not on this stack.
    auto answer = std::make_shared<std::optional<absl::StatusOr<std::string>>>();
    GetSecret([answer](absl::StatusOr<std::string> body) { *answer = std::move(body); });
    loop_.RunUntil([&answer] { return answer->has_value(); },
                   absl::ToChronoNanoseconds(api_->options().timeout + absl::Seconds(1)));
    if (!answer->has_value()) return absl::DeadlineExceededError("no answer from the API server");
    if (!(*answer)->ok()) return (*answer)->status();
    ASSIGN_OR_RETURN(material, MaterialFromSecret(***answer, options_.layout));
  } else {
    seen_signature_ = FilesSignature();
    ASSIGN_OR_RETURN(material, ReadFiles());
  }
  ASSIGN_OR_RETURN(material, WithExtraRoots(std::move(material)));
  last_digest_ = Digest(material);
  return Build(material);
}

void CaSource::Start() {
  if (options_.interval > Duration::zero()) timer_.EnableRepeating(options_.interval);
}

void CaSource::LoadNow() {
  if (!options_.secret.has_value()) {
    // The files are read at once rather than after a poll of settling.
    seen_signature_ = FilesSignature();
    settling_ = true;
  }
  Poll();
  Start();
}

void CaSource::Poll() {
  if (options_.secret.has_value()) {
    PollSecret();
  } else {
    PollFiles();
  }
}

std::string CaSource::FilesSignature() const {
  std::string out;
  for (const std::string* path :
       {&options_.chain_file, &options_.key_file, &options_.trust_bundle_file}) {
    if (path->empty()) continue;
    struct stat st;
    if (::stat(path->c_str(), &st) != 0) {
      absl::StrAppend(&out, *path, ":", std::strerror(errno), ";");
      continue;
    }
    absl::StrAppend(&out, *path, ":", st.st_dev, ":", st.st_ino, ":", st.st_size, ":",
                    st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec, ";");
  }
  return out;
}

absl::StatusOr<CaMaterial> CaSource::ReadFiles() const {
  CaMaterial material;
  ASSIGN_OR_RETURN(material.chain_pem, ReadNamedFile(options_.chain_file));
  ASSIGN_OR_RETURN(material.key_pem, ReadNamedFile(options_.key_file));
  return material;
}

void CaSource::PollFiles() {
  const std::string signature = FilesSignature();
  if (signature != seen_signature_) {
    // Changed since the last poll: wait until it stays put for one poll.
    seen_signature_ = signature;
    settling_ = true;
    return;
  }
  if (!settling_) return;
  settling_ = false;
  absl::StatusOr<CaMaterial> material = ReadFiles();
  if (!material.ok()) {
    LOG_EVERY_N_SEC(WARN, 60) << "ca: " << Name() << ": " << material.status().message();
    on_invalid_(/*unreadable=*/true, material.status());
    return;
  }
  Try(*std::move(material), Name());
}

void CaSource::GetSecret(std::function<void(absl::StatusOr<std::string>)> done) {
  secret_in_flight_ = true;
  api_->Call({.method = "GET",
              .path = absl::StrCat("/api/v1/namespaces/", options_.secret->namespace_, "/secrets/",
                                   options_.secret->name),
              .forbidden_hint = kSecretRbacHint},
             [this, alive = alive_, done = std::move(done)](kubernetes::ApiResult result) {
               if (!*alive) return;
               secret_in_flight_ = false;
               done(std::move(result.body));
             });
}

void CaSource::PollSecret() {
  if (secret_in_flight_) return;
  GetSecret([this](absl::StatusOr<std::string> body) {
    if (!body.ok()) {
      LOG_EVERY_N_SEC(WARN, 60) << "ca: " << Name() << ": " << body.status().message();
      on_invalid_(/*unreadable=*/true, body.status());
      return;
    }
    std::string version;
    try {
      version = kubernetes::ScalarAt(kubernetes::NodeAt(YAML::Load(*body), "metadata"),
                                     "resourceVersion");
    } catch (const YAML::Exception&) {
    }
    absl::StatusOr<CaMaterial> material = MaterialFromSecret(*body, options_.layout);
    if (!material.ok()) {
      const std::string digest = tls::Sha256(*body);
      if (digest == last_digest_) return;
      last_digest_ = digest;
      on_invalid_(/*unreadable=*/false, Annotate(material.status(), Name()));
      return;
    }
    Try(*std::move(material), absl::StrCat(Name(), " resourceVersion ", version));
  });
}

void CaSource::Try(CaMaterial material, const std::string& description) {
  absl::StatusOr<CaMaterial> whole = WithExtraRoots(std::move(material));
  if (!whole.ok()) {
    LOG_EVERY_N_SEC(WARN, 60) << "ca: " << description << ": " << whole.status().message();
    on_invalid_(/*unreadable=*/true, whole.status());
    return;
  }
  const std::string digest = Digest(*whole);
  if (digest == last_digest_) return;
  last_digest_ = digest;
  absl::StatusOr<std::shared_ptr<const CertificateAuthority>> authority = Build(*whole);
  if (!authority.ok()) {
    on_invalid_(/*unreadable=*/false, Annotate(authority.status(), description));
    return;
  }
  on_valid_(*std::move(authority), description);
}

absl::StatusOr<CaMaterial> CaSource::WithExtraRoots(CaMaterial material) const {
  if (options_.trust_bundle_file.empty()) return material;
  ASSIGN_OR_RETURN(std::string extra, ReadNamedFile(options_.trust_bundle_file));
  if (!material.roots_pem.empty() && material.roots_pem.back() != '\n') {
    material.roots_pem += '\n';
  }
  material.roots_pem += extra;
  return material;
}

std::string CaSource::Digest(const CaMaterial& material) {
  return tls::Sha256(absl::StrCat(material.chain_pem.size(), ":", material.chain_pem,
                                  material.key_pem.size(), ":", material.key_pem,
                                  material.roots_pem));
}

absl::StatusOr<std::shared_ptr<const CertificateAuthority>> CaSource::Build(
    const CaMaterial& material) {
  ASSIGN_OR_RETURN(std::unique_ptr<CertificateAuthority> authority,
                   CertificateAuthority::FromPem(material.chain_pem, material.key_pem,
                                                 material.roots_pem, options_.authority, clock_));
  return std::shared_ptr<const CertificateAuthority>(std::move(authority));
}

}  // namespace meshlet::controlplane::ca

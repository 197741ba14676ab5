#pragma once

// CaSource: where an operator's signing material comes from, watched, so that the CA switches to
// a new version without a restart (docs/security.md#reloading-the-ca-live, ADR 0097).
//
// Two sources:
//   files   --ca-cert (chain, signing certificate first), --ca-key and --ca-trust-bundle (extra
//           roots), stat-polled every `interval`: a change of any file's inode, size or mtime
//           (an atomic rename, the ..data symlink swap of a mounted Secret, an edit in place) is
//           read once the three files have stayed the same for one more poll, so that a pair
//           written one file after the other is not taken half-way.
//   Secret  --ca-secret NAMESPACE/NAME, read with GET every `interval` (RBAC: get on that one
//           Secret): the kubernetes.io/tls layout cert-manager writes (tls.crt the chain, tls.key,
//           ca.crt the roots) or Istio's cacerts layout (ca-cert.pem, ca-key.pem, cert-chain.pem,
//           root-cert.pem); SecretLayout::kAuto tells them apart by their keys.
// Either way a version whose bytes differ from the last one tried is validated in full
// (CertificateAuthority::FromPem: key matches, CA:TRUE, keyCertSign, validity, path length, chain
// to a root, trust-domain name constraints) and, when valid, handed to `on_valid`; an invalid
// one is handed to `on_invalid` with the reason, once per version, and the CA in use stays.
// The trust bundle of a new version is its own roots (ca.crt / root-cert.pem / a self-signed end
// of the chain) plus the roots of --ca-trust-bundle, read again with every version.
//
// Threading: the loop thread. `on_valid` and `on_invalid` run on it, from a timer or an API
// answer, never from inside Start(). The loop, clock and API client must outlive this;
// destroying it cancels the timer and drops an answer in flight.

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "control-plane/ca/authority.h"
#include "control-plane/kubernetes/api_client.h"

namespace meshlet::controlplane::ca {

enum class SecretLayout { kAuto, kTls, kCacerts };
// "auto", "tls" (kubernetes.io/tls with ca.crt), "cacerts" (Istio's).
absl::StatusOr<SecretLayout> ParseSecretLayout(absl::string_view text);

// One version of the signing material, PEM.
struct CaMaterial {
  std::string chain_pem;  // the signing certificate first, then intermediates (maybe the root)
  std::string key_pem;
  std::string roots_pem;  // roots named by the source itself (ca.crt, root-cert.pem); may be ""
};

// The material in a Secret as the API server returns it (JSON; `data` values base64).
// InvalidArgument naming the missing key, or the keys found when the layout cannot be told.
absl::StatusOr<CaMaterial> MaterialFromSecret(absl::string_view secret_json, SecretLayout layout);

// "NAMESPACE/NAME" of --ca-secret, checked.
struct SecretRef {
  std::string namespace_;
  std::string name;
  std::string ToString() const { return namespace_ + "/" + name; }
};
absl::StatusOr<SecretRef> ParseSecretRef(absl::string_view text);

struct CaSourceOptions {
  // Files: set chain_file and key_file. Secret: set secret (and api).
  std::string chain_file;
  std::string key_file;
  std::string trust_bundle_file;  // extra roots; may be "" (also with a Secret)
  std::optional<SecretRef> secret;
  SecretLayout layout = SecretLayout::kAuto;
  // How often the source is looked at; zero: never after the first load.
  Duration interval = std::chrono::seconds(10);
  AuthorityOptions authority;
};

class CaSource {
 public:
  // A valid new version, built; `description` says where it came from ("files ...", "Secret
  // ns/name resourceVersion 42").
  using ValidFn = std::function<void(std::shared_ptr<const CertificateAuthority> authority,
                                     const std::string& description)>;
  // A version that was refused (`unreadable`: it could not be read or parsed; otherwise it was
  // read and failed validation), with the reason.
  using InvalidFn = std::function<void(bool unreadable, const absl::Status& reason)>;

  // `api` is needed (not owned) for a Secret, ignored for files.
  CaSource(event::Loop& loop, const Clock& clock, kubernetes::KubernetesApi* api,
           CaSourceOptions options, ValidFn on_valid, InvalidFn on_invalid);
  ~CaSource();
  CaSource(const CaSource&) = delete;
  CaSource& operator=(const CaSource&) = delete;

  // The first version, read and validated before serving: synchronously for files; for a
  // Secret the loop runs until the API server answers (at most the API client's timeout).
  // Errors name the file or the Secret and the reason; the control plane does not start then.
  absl::StatusOr<std::shared_ptr<const CertificateAuthority>> LoadInitial(std::string* description);
  // Polls every `interval` from now on (nothing with a zero interval).
  void Start();
  // Instead of LoadInitial() and Start(), without blocking: reads the source now (on_valid or
  // on_invalid with the first version; for a Secret once the API server answers), then polls as
  // Start() does.
  void LoadNow();

  const CaSourceOptions& options() const { return options_; }
  // "files <chain>, <key>" or "Secret <ns>/<name>".
  std::string Name() const;

 private:
  absl::StatusOr<std::shared_ptr<const CertificateAuthority>> LoadFirst();
  void Poll();
  void PollFiles();
  void PollSecret();
  // Adds the --ca-trust-bundle roots to `material`, then builds it when its bytes differ from
  // the last version tried.
  void Try(CaMaterial material, const std::string& description);
  absl::StatusOr<CaMaterial> WithExtraRoots(CaMaterial material) const;
  static std::string Digest(const CaMaterial& material);
  absl::StatusOr<std::shared_ptr<const CertificateAuthority>> Build(const CaMaterial& material);
  absl::StatusOr<CaMaterial> ReadFiles() const;
  // inode, size and mtime of each file, as text.
  std::string FilesSignature() const;
  void GetSecret(std::function<void(absl::StatusOr<std::string>)> done);

  event::Loop& loop_;
  const Clock& clock_;
  kubernetes::KubernetesApi* const api_;
  const CaSourceOptions options_;
  const ValidFn on_valid_;
  const InvalidFn on_invalid_;
  event::Timer timer_;
  // Files: the signature seen at the last poll, and whether it changed since the last read.
  std::string seen_signature_;
  bool settling_ = false;
  // SHA-256 of the last version tried (valid or not): the same bytes are not tried again.
  std::string last_digest_;
  bool secret_in_flight_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace meshlet::controlplane::ca

#include "common/tls/tls_session.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pool.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/tls/certificate.h"

namespace meshlet::tls {
namespace {

// Longest chain (leaf, intermediates, root) we walk; mesh chains are 2-3 long.
constexpr int kMaxVerifyDepth = 8;

int SessionExDataIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

int ClampToInt(size_t n) { return static_cast<int>(std::min<size_t>(n, INT_MAX)); }

// SHA-256 over the peer's chain as sent (each certificate's length, then its bytes).
std::string ChainKey(const STACK_OF(CRYPTO_BUFFER) * buffers) {
  SHA256_CTX sha;
  SHA256_Init(&sha);
  for (size_t i = 0; i < sk_CRYPTO_BUFFER_num(buffers); ++i) {
    const CRYPTO_BUFFER* cert = sk_CRYPTO_BUFFER_value(buffers, i);
    const uint64_t length = CRYPTO_BUFFER_len(cert);
    SHA256_Update(&sha, &length, sizeof(length));
    SHA256_Update(&sha, CRYPTO_BUFFER_data(cert), CRYPTO_BUFFER_len(cert));
  }
  std::string digest(SHA256_DIGEST_LENGTH, '\0');
  SHA256_Final(reinterpret_cast<uint8_t*>(digest.data()), &sha);
  return digest;
}

using tls_internal::BioEnd;

// A BIO over a BioEnd (its data pointer): the SSL reads ciphertext from one and writes to
// another, each a queue and, while attached, the owner's wire. Reading when neither has bytes is
// "retry later", which BoringSSL reports as WANT_READ.
int QueueBioCreate(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

int QueueBioRead(BIO* bio, char* out, int len) {
  BIO_clear_retry_flags(bio);
  auto* end = static_cast<BioEnd*>(BIO_get_data(bio));
  absl::Span<char> dst(out, static_cast<size_t>(len));
  size_t n = end->queue.empty() ? 0 : end->queue.Read(dst);
  if (n == 0 && end->wire != nullptr) n = end->wire->ReadWire(dst);
  if (n == 0) {
    BIO_set_retry_read(bio);
    return -1;
  }
  return static_cast<int>(n);
}

int QueueBioWrite(BIO* bio, const char* in, int len) {
  BIO_clear_retry_flags(bio);
  auto* end = static_cast<BioEnd*>(BIO_get_data(bio));
  if (end->wire == nullptr) {
    end->queue.Append(in, static_cast<size_t>(len));
    return len;
  }
  if (!end->queue.empty()) {
    end->wire->WriteWire(end->queue.view());
    end->queue.Consume(end->queue.size());
  }
  end->wire->WriteWire(absl::string_view(in, static_cast<size_t>(len)));
  return len;
}

long QueueBioCtrl(BIO* /*bio*/, int cmd, long /*larg*/, void* /*parg*/) {
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

const BIO_METHOD* QueueBioMethod() {
  // Created once and kept for the life of the process.
  static const BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_TYPE_SOURCE_SINK | BIO_get_new_index(), "meshlet queue");
    CHECK(m != nullptr && BIO_meth_set_create(m, &QueueBioCreate) &&
          BIO_meth_set_read(m, &QueueBioRead) && BIO_meth_set_write(m, &QueueBioWrite) &&
          BIO_meth_set_ctrl(m, &QueueBioCtrl))
        << "cannot create the TLS BIO method";
    return m;
  }();
  return method;
}

bssl::UniquePtr<BIO> NewQueueBio(BioEnd* end) {
  bssl::UniquePtr<BIO> bio(BIO_new(QueueBioMethod()));
  if (bio != nullptr) BIO_set_data(bio.get(), end);
  return bio;
}

// How to name a certificate in an error: its SPIFFE id if it has one, else its subject.
std::string Describe(const X509& cert) {
  if (absl::StatusOr<SpiffeId> id = ExtractSpiffeId(cert); id.ok()) return id->ToString();
  return absl::StrCat("\"", SubjectName(cert), "\"");
}

// The class of a failed verification of the peer's certificate, from the alert it chose.
HandshakeFailure FailureForAlert(uint8_t alert) {
  switch (alert) {
    case SSL_AD_CERTIFICATE_REQUIRED:
      return HandshakeFailure::kNoCertificate;
    case SSL_AD_CERTIFICATE_EXPIRED:
      return HandshakeFailure::kExpired;
    case SSL_AD_ACCESS_DENIED:
      return HandshakeFailure::kIdentityDenied;
    case SSL_AD_UNKNOWN_CA:
    case SSL_AD_BAD_CERTIFICATE:
      return HandshakeFailure::kUntrusted;
    default:
      return HandshakeFailure::kOther;
  }
}

// A TLS alert the peer sent us, as a status for our caller.
absl::Status PeerAlertStatus(int alert) {
  std::string message = absl::StrCat("peer aborted the connection with TLS alert \"",
                                     SSL_alert_desc_string_long(alert), "\"");
  switch (alert) {
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
    case SSL_AD_CERTIFICATE_EXPIRED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_UNKNOWN_CA:
      return absl::UnauthenticatedError(
          absl::StrCat(message, ": the peer did not accept our certificate"));
    case SSL_AD_CERTIFICATE_REQUIRED:
      return absl::UnauthenticatedError(
          absl::StrCat(message, ": the peer requires a client certificate"));
    case SSL_AD_ACCESS_DENIED:
      return absl::PermissionDeniedError(
          absl::StrCat(message, ": the peer does not allow our identity"));
    case SSL_AD_NO_APPLICATION_PROTOCOL:
      return absl::FailedPreconditionError(absl::StrCat(message, ": no ALPN protocol in common"));
    case SSL_AD_PROTOCOL_VERSION:
      return absl::FailedPreconditionError(absl::StrCat(message, ": no TLS version in common"));
    default:
      return absl::UnavailableError(message);
  }
}

// Whether `cert` carries one of `names`: a DNS name as X509_check_host matches it (wildcards in
// the certificate), a URI byte for byte.
bool HasSubjectAltName(const X509& cert, const std::vector<SubjectAltName>& names) {
  std::vector<std::string> uris;
  bool uris_read = false;
  for (const SubjectAltName& name : names) {
    if (name.type == SubjectAltName::Type::kDns) {
      if (X509_check_host(const_cast<X509*>(&cert), name.value.data(), name.value.size(),
                          X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, nullptr) == 1) {
        return true;
      }
      continue;
    }
    if (!uris_read) {
      uris = UriSans(cert);
      uris_read = true;
    }
    if (std::find(uris.begin(), uris.end(), name.value) != uris.end()) return true;
  }
  return false;
}

}  // namespace

absl::string_view HandshakeFailureName(HandshakeFailure failure) {
  switch (failure) {
    case HandshakeFailure::kNone:
      return "none";
    case HandshakeFailure::kNoCertificate:
      return "no_certificate";
    case HandshakeFailure::kUntrusted:
      return "untrusted";
    case HandshakeFailure::kExpired:
      return "expired";
    case HandshakeFailure::kIdentityDenied:
      return "identity_denied";
    case HandshakeFailure::kPeerAlert:
      return "peer_alert";
    case HandshakeFailure::kProtocol:
      return "protocol";
    case HandshakeFailure::kOther:
      return "other";
  }
  return "other";
}

namespace tls_internal {

void ByteQueue::Append(const char* bytes, size_t n) {
  // Reclaim the consumed front before growing, so the string stays proportional to size().
  if (offset_ > 0 && offset_ >= data_.size() / 2) {
    data_.erase(0, offset_);
    offset_ = 0;
  }
  data_.append(bytes, n);
}

size_t ByteQueue::Read(absl::Span<char> dst) {
  size_t n = std::min(dst.size(), size());
  if (n > 0) std::memcpy(dst.data(), data_.data() + offset_, n);
  Consume(n);
  return n;
}

void ByteQueue::Consume(size_t n) {
  offset_ += std::min(n, size());
  if (offset_ == data_.size()) {
    std::string().swap(data_);  // free the allocation: idle sessions hold no buffers
    offset_ = 0;
  }
}

}  // namespace tls_internal

std::string SubjectAltNamesText(const std::vector<SubjectAltName>& names) {
  return absl::StrCat(
      "[",
      absl::StrJoin(names, ", ",
                    [](std::string* out, const SubjectAltName& n) { out->append(n.ToString()); }),
      "]");
}

std::string SubjectAltName::ToString() const {
  return absl::StrCat(type == Type::kDns ? "dns:" : "uri:", value);
}

absl::StatusOr<std::unique_ptr<TlsSession>> TlsSession::Create(
    std::shared_ptr<const TlsContext> context, Options options) {
  // Default options (a listener's sessions) share one instance: no allocation per session.
  const bool defaults = options.server_name.empty() && options.verify_peer_name.empty() &&
                        options.verify_subject_alt_names.empty() &&
                        !options.peer_identity.has_value() && options.alpn_protocols.empty();
  return Create(std::move(context),
                defaults ? nullptr : std::make_shared<const Options>(std::move(options)));
}

absl::StatusOr<std::unique_ptr<TlsSession>> TlsSession::Create(
    std::shared_ptr<const TlsContext> context, std::shared_ptr<const Options> options) {
  if (context == nullptr) return absl::InvalidArgumentError("TLS session needs a context");
  if (options == nullptr) {
    // Never destroyed: sessions may end during static destruction.
    static const auto* const kDefaults =
        new std::shared_ptr<const Options>(std::make_shared<const Options>());
    options = *kDefaults;
  }
  std::unique_ptr<TlsSession> session(new TlsSession(std::move(context), std::move(options)));
  ERR_clear_error();
  absl::Status status = session->Init();
  ERR_clear_error();
  if (!status.ok()) return status;
  return session;
}

TlsSession::TlsSession(std::shared_ptr<const TlsContext> context,
                       std::shared_ptr<const Options> options)
    : context_(std::move(context)), options_(std::move(options)) {}

TlsSession::~TlsSession() = default;

absl::Status TlsSession::Init() {
  const bool server = context_->is_server();
  if (server && options_->peer_identity.has_value() &&
      context_->client_certificate() == ClientCertificateMode::kNone) {
    return absl::InvalidArgumentError(
        "peer_identity needs a server context that asks for client certificates");
  }
  ssl_.reset(SSL_new(context_->ssl_ctx_.get()));
  if (ssl_ == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("SSL_new: ", DrainBoringSslErrors()));
  }
  bssl::UniquePtr<BIO> rbio = NewQueueBio(&input_);
  bssl::UniquePtr<BIO> wbio = NewQueueBio(&output_);
  if (rbio == nullptr || wbio == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("BIO_new: ", DrainBoringSslErrors()));
  }
  SSL_set_bio(ssl_.get(), rbio.release(), wbio.release());  // ssl_ owns both now

  SSL_set_ex_data(ssl_.get(), SessionExDataIndex(), this);
  SSL_set_renegotiate_mode(ssl_.get(), ssl_renegotiate_never);
  SSL_set_info_callback(ssl_.get(), &TlsSession::InfoCallback);

  if (server) {
    SSL_set_accept_state(ssl_.get());
    switch (context_->client_certificate()) {
      case ClientCertificateMode::kNone:
        SSL_set_verify(ssl_.get(), SSL_VERIFY_NONE, nullptr);
        break;
      case ClientCertificateMode::kRequest:
        SSL_set_custom_verify(ssl_.get(), SSL_VERIFY_PEER, &TlsSession::VerifyCallback);
        break;
      case ClientCertificateMode::kRequire:
        SSL_set_custom_verify(ssl_.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                              &TlsSession::VerifyCallback);
        break;
    }
  } else {
    SSL_set_connect_state(ssl_.get());
    SSL_set_custom_verify(ssl_.get(), SSL_VERIFY_PEER, &TlsSession::VerifyCallback);
    if (!options_->alpn_protocols.empty()) {
      absl::StatusOr<std::string> wire = AlpnWireFormat(options_->alpn_protocols);
      if (!wire.ok()) return wire.status();
      // Unusually, 0 means success here.
      if (SSL_set_alpn_protos(ssl_.get(), reinterpret_cast<const uint8_t*>(wire->data()),
                              wire->size()) != 0) {
        return absl::ResourceExhaustedError(
            absl::StrCat("setting ALPN protocols: ", DrainBoringSslErrors()));
      }
    }
    if (!options_->server_name.empty()) {
      if (!SSL_set_tlsext_host_name(ssl_.get(), options_->server_name.c_str())) {
        return absl::InvalidArgumentError(
            absl::StrCat("invalid SNI \"", options_->server_name, "\": ", DrainBoringSslErrors()));
      }
    }
  }
  return absl::OkStatus();
}

void TlsSession::SetResumptionKey(std::string peer_key) {
  if (context_->is_server() || handshake_complete_) return;
  // The name asked for is part of the key: one address may serve several names. So is this
  // session's own identity policy: a context shared by upstreams that expect different identities
  // never offers one upstream's session to a connection expecting another's.
  resumption_key_ =
      absl::StrCat(peer_key, "|", options_->server_name, "|", options_->verify_peer_name,
                   options_->peer_identity.has_value() ? options_->peer_identity->Describe() : "",
                   "|", SubjectAltNamesText(options_->verify_subject_alt_names));
  if (bssl::UniquePtr<SSL_SESSION> kept = context_->TakeSession(resumption_key_)) {
    SSL_set_session(ssl_.get(), kept.get());  // takes its own reference
  }
}

int TlsSession::OnNewClientSession(SSL* ssl, SSL_SESSION* session) {
  auto* self = static_cast<TlsSession*>(SSL_get_ex_data(ssl, SessionExDataIndex()));
  if (self == nullptr || self->resumption_key_.empty()) return 0;  // BoringSSL frees it
  self->context_->KeepSession(self->resumption_key_, bssl::UniquePtr<SSL_SESSION>(session));
  return 1;
}

const std::optional<SpiffeIdMatcher>& TlsSession::identity_policy() const {
  return options_->peer_identity.has_value() ? options_->peer_identity : context_->peer_identity();
}

enum ssl_verify_result_t TlsSession::VerifyCallback(SSL* ssl, uint8_t* out_alert) {
  auto* self = static_cast<TlsSession*>(SSL_get_ex_data(ssl, SessionExDataIndex()));
  if (self == nullptr) {
    *out_alert = SSL_AD_INTERNAL_ERROR;
    return ssl_verify_invalid;
  }
  absl::Status status = self->VerifyPeer(out_alert);
  if (!status.ok()) {
    self->verify_error_ = std::move(status);
    self->OnVerifyFailed(*out_alert);
    return ssl_verify_invalid;
  }
  self->peer_verified_ = true;
  return ssl_verify_ok;
}

void TlsSession::InfoCallback(const SSL* ssl, int type, int value) {
  if (type != SSL_CB_WRITE_ALERT || (value >> 8) != SSL3_AL_FATAL) return;
  auto* self = static_cast<TlsSession*>(SSL_get_ex_data(ssl, SessionExDataIndex()));
  if (self != nullptr && self->alert_sent_ < 0) self->alert_sent_ = value & 0xff;
}

void TlsSession::OnVerifyFailed(uint8_t alert) {
  verify_failure_ = FailureForAlert(alert);
  const STACK_OF(CRYPTO_BUFFER)* buffers = SSL_get0_peer_certificates(ssl_.get());
  if (buffers == nullptr || sk_CRYPTO_BUFFER_num(buffers) == 0) return;
  bssl::UniquePtr<X509> leaf(X509_parse_from_buffer(sk_CRYPTO_BUFFER_value(buffers, 0)));
  if (leaf == nullptr) return;
  if (absl::StatusOr<SpiffeId> id = ExtractSpiffeId(*leaf); id.ok()) {
    refused_spiffe_id_ = id->ToString();
  }
}

absl::Status TlsSession::VerifyPeer(uint8_t* out_alert) {
  const std::optional<SpiffeIdMatcher>& policy = identity_policy();
  const STACK_OF(CRYPTO_BUFFER)* buffers = SSL_get0_peer_certificates(ssl_.get());
  if (buffers == nullptr || sk_CRYPTO_BUFFER_num(buffers) == 0) {
    const bool optional = context_->is_server() &&
                          context_->client_certificate() == ClientCertificateMode::kRequest &&
                          !policy.has_value();
    if (optional) return absl::OkStatus();
    *out_alert = SSL_AD_CERTIFICATE_REQUIRED;
    return absl::UnauthenticatedError(
        policy.has_value() ? absl::StrCat("peer presented no certificate; expected a SPIFFE id in ",
                                          policy->Describe())
                           : "peer presented no certificate");
  }

  // Parse the chain as sent: leaf first, then whatever the peer offers as intermediates.
  bssl::UniquePtr<STACK_OF(X509)> untrusted(sk_X509_new_null());
  if (untrusted == nullptr) {
    *out_alert = SSL_AD_INTERNAL_ERROR;
    return absl::ResourceExhaustedError("out of memory");
  }
  for (size_t i = 0; i < sk_CRYPTO_BUFFER_num(buffers); ++i) {
    bssl::UniquePtr<X509> cert(X509_parse_from_buffer(sk_CRYPTO_BUFFER_value(buffers, i)));
    if (cert == nullptr) {
      *out_alert = SSL_AD_BAD_CERTIFICATE;
      return absl::UnauthenticatedError(
          absl::StrCat("peer certificate #", i + 1, " is malformed: ", DrainBoringSslErrors()));
    }
    if (!bssl::PushToStack(untrusted.get(), std::move(cert))) {
      *out_alert = SSL_AD_INTERNAL_ERROR;
      return absl::ResourceExhaustedError("out of memory");
    }
  }
  X509* leaf = sk_X509_value(untrusted.get(), 0);
  const absl::Time now = context_->clock_ != nullptr ? context_->clock_->WallNow() : absl::Now();
  // The chain's exact bytes name a verification already done against this context's trust
  // bundle and role; a host name check (verify_peer_name) is per session, so never cached.
  std::string chain_key;
  const bool checks_names =
      !options_->verify_peer_name.empty() || !options_->verify_subject_alt_names.empty();
  if (!checks_names && context_->RemembersVerifiedChains()) {
    chain_key = ChainKey(buffers);
  }
  if (!chain_key.empty() && context_->ChainVerifiedBefore(chain_key, now)) {
    return CheckIdentityPolicy(*leaf, out_alert);
  }

  if (context_->trust_store_ == nullptr) {  // prevented by TlsContext's config checks
    *out_alert = SSL_AD_INTERNAL_ERROR;
    return absl::InternalError("no trust bundle to verify the peer against");
  }
  // Federation: the roots of the peer's own trust domain only (TlsContext::TrustStoreFor).
  absl::StatusOr<X509_STORE*> store = context_->TrustStoreFor(*leaf);
  if (!store.ok()) {
    *out_alert = SSL_AD_UNKNOWN_CA;
    return store.status();
  }
  bssl::UniquePtr<X509_STORE_CTX> store_ctx(X509_STORE_CTX_new());
  if (store_ctx == nullptr ||
      !X509_STORE_CTX_init(store_ctx.get(), *store, leaf, untrusted.get()) ||
      // Our peer's role: a server checks client certificates and vice versa (extendedKeyUsage).
      !X509_STORE_CTX_set_default(store_ctx.get(),
                                  context_->is_server() ? "ssl_client" : "ssl_server")) {
    *out_alert = SSL_AD_INTERNAL_ERROR;
    return absl::InternalError(
        absl::StrCat("setting up certificate verification: ", DrainBoringSslErrors()));
  }
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(store_ctx.get());
  X509_VERIFY_PARAM_set_depth(param, kMaxVerifyDepth);
  if (context_->clock_ != nullptr) X509_VERIFY_PARAM_set_time(param, absl::ToTimeT(now));
  if (const std::string& name = options_->verify_peer_name;
      !name.empty() && options_->verify_subject_alt_names.empty()) {
    const bool set = X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str()) ||
                     X509_VERIFY_PARAM_set1_host(param, name.data(), name.size());
    if (!set) {
      *out_alert = SSL_AD_INTERNAL_ERROR;
      return absl::InternalError(absl::StrCat("invalid peer name \"", name, "\""));
    }
  }

  if (X509_verify_cert(store_ctx.get()) != 1) {
    const int error = X509_STORE_CTX_get_error(store_ctx.get());
    X509* bad = X509_STORE_CTX_get_current_cert(store_ctx.get());
    if (bad == nullptr) bad = leaf;
    const std::string who =
        bad == leaf ? absl::StrCat("peer certificate ", Describe(*leaf))
                    : absl::StrCat("certificate \"", SubjectName(*bad), "\" in the peer's chain");
    ERR_clear_error();
    switch (error) {
      case X509_V_ERR_CERT_HAS_EXPIRED:
        *out_alert = SSL_AD_CERTIFICATE_EXPIRED;
        return absl::UnauthenticatedError(
            absl::StrCat(who, " expired at ",
                         absl::FormatTime(absl::RFC3339_sec, NotAfter(*bad), absl::UTCTimeZone())));
      case X509_V_ERR_CERT_NOT_YET_VALID:
        *out_alert = SSL_AD_CERTIFICATE_EXPIRED;
        return absl::UnauthenticatedError(absl::StrCat(
            who, " is not valid until ",
            absl::FormatTime(absl::RFC3339_sec, NotBefore(*bad), absl::UTCTimeZone())));
      case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
      case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
      case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
      case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        *out_alert = SSL_AD_UNKNOWN_CA;
        return absl::UnauthenticatedError(
            absl::StrCat(who, " is not issued by a trusted CA (issuer \"", IssuerName(*bad),
                         "\" is not in the trust bundle",
                         context_->local_trust_domain_.empty() ? "" : " of its trust domain", ")"));
      case X509_V_ERR_HOSTNAME_MISMATCH:
      case X509_V_ERR_IP_ADDRESS_MISMATCH:
        *out_alert = SSL_AD_BAD_CERTIFICATE;
        return absl::UnauthenticatedError(
            absl::StrCat(who, " is not for \"", options_->verify_peer_name, "\" (subjectAltName)"));
      default:
        *out_alert = SSL_AD_BAD_CERTIFICATE;
        return absl::UnauthenticatedError(
            absl::StrCat(who, " failed verification: ", X509_verify_cert_error_string(error)));
    }
  }

  if (!options_->verify_subject_alt_names.empty() &&
      !HasSubjectAltName(*leaf, options_->verify_subject_alt_names)) {
    *out_alert = SSL_AD_BAD_CERTIFICATE;
    return absl::UnauthenticatedError(
        absl::StrCat("peer certificate ", Describe(*leaf), " carries none of the subjectAltNames ",
                     SubjectAltNamesText(options_->verify_subject_alt_names)));
  }

  if (!chain_key.empty()) {
    // The verified path's validity window: the latest notBefore, the earliest notAfter.
    absl::Time not_before = absl::InfinitePast();
    absl::Time not_after = absl::InfiniteFuture();
    STACK_OF(X509)* path = X509_STORE_CTX_get0_chain(store_ctx.get());
    for (size_t i = 0; path != nullptr && i < sk_X509_num(path); ++i) {
      const X509& cert = *sk_X509_value(path, i);
      not_before = std::max(not_before, NotBefore(cert));
      not_after = std::min(not_after, NotAfter(cert));
    }
    if (path != nullptr) {
      context_->RememberVerifiedChain(std::move(chain_key), not_before, not_after);
    }
  }
  return CheckIdentityPolicy(*leaf, out_alert);
}

absl::Status TlsSession::CheckIdentityPolicy(X509& leaf, uint8_t* out_alert) const {
  const std::optional<SpiffeIdMatcher>& policy = identity_policy();
  if (policy.has_value()) {
    if (IsCa(leaf)) {
      *out_alert = SSL_AD_BAD_CERTIFICATE;
      return absl::PermissionDeniedError(absl::StrCat(
          "peer certificate ", Describe(leaf), " is a CA certificate, not a workload identity"));
    }
    absl::StatusOr<SpiffeId> id = ExtractSpiffeId(leaf);
    if (!id.ok()) {
      *out_alert = SSL_AD_ACCESS_DENIED;
      return absl::PermissionDeniedError(absl::StrCat("peer has no usable SPIFFE id (",
                                                      id.status().message(), "); expected one of ",
                                                      policy->Describe()));
    }
    if (!policy->Matches(*id)) {
      *out_alert = SSL_AD_ACCESS_DENIED;
      return absl::PermissionDeniedError(absl::StrCat("peer identity ", id->ToString(),
                                                      " is not allowed; expected one of ",
                                                      policy->Describe()));
    }
  }
  return absl::OkStatus();
}

absl::Status TlsSession::OnHandshakeComplete() {
  const uint8_t* alpn = nullptr;
  unsigned alpn_len = 0;
  SSL_get0_alpn_selected(ssl_.get(), &alpn, &alpn_len);
  alpn_.assign(reinterpret_cast<const char*>(alpn), alpn_len);
  if (const char* sni = SSL_get_servername(ssl_.get(), TLSEXT_NAMETYPE_host_name)) {
    server_name_ = sni;
  }

  // Resumption skips the verify callback; verify the remembered peer chain again now so a
  // resumed session never carries an identity the current policy or clock rejects.
  const bool resumed = SSL_session_reused(ssl_.get());
  if (resumed || !peer_verified_) {
    uint8_t alert = SSL_AD_INTERNAL_ERROR;
    const bool asks_for_cert =
        !context_->is_server() || context_->client_certificate() != ClientCertificateMode::kNone;
    if (asks_for_cert) {
      if (absl::Status status = VerifyPeer(&alert); !status.ok()) {
        OnVerifyFailed(alert);
        SSL_send_fatal_alert(ssl_.get(), alert);
        return Fail(std::move(status), verify_failure_);
      }
    }
  }

  const STACK_OF(CRYPTO_BUFFER)* buffers = SSL_get0_peer_certificates(ssl_.get());
  if (buffers != nullptr && sk_CRYPTO_BUFFER_num(buffers) > 0) {
    peer_leaf_.reset(X509_parse_from_buffer(sk_CRYPTO_BUFFER_value(buffers, 0)));
    if (peer_leaf_ == nullptr) {
      return Fail(absl::InternalError("re-parsing the verified peer certificate failed"));
    }
    peer_uri_sans_ = UriSans(*peer_leaf_);
    if (absl::StatusOr<SpiffeId> id = SpiffeIdFromUriSans(peer_uri_sans_); id.ok()) {
      peer_spiffe_id_ = id->ToString();
    }
  }
  handshake_complete_ = true;
  ERR_clear_error();
  return absl::OkStatus();
}

// SSL_do_handshake, SSL_read and SSL_write clear the thread's error queue themselves before they
// start (BoringSSL's ssl_reset_error_state), so SSL_get_error never reads an error left by other
// code on the thread: no ERR_clear_error() of ours before them (it cost about 220 instructions a
// call, one for each of the queue's sixteen slots). StaleErrorsOnTheThreadDoNotFailReads
// (tls_session_test) holds the library to that.
absl::Status TlsSession::Handshake() {
  if (!status_.ok()) return status_;
  if (handshake_complete_) return absl::OkStatus();
  int ret = SSL_do_handshake(ssl_.get());
  if (ret == 1) return OnHandshakeComplete();
  if (SSL_get_error(ssl_.get(), ret) == SSL_ERROR_WANT_READ) return absl::OkStatus();
  return FailFromSsl(ret);
}

// Out of line: inlined into a caller that attaches a local, GCC 12 warns of a dangling pointer
// although the caller detaches it before returning.
void TlsSession::AttachWire(Wire* wire) {
  input_.wire = wire;
  output_.wire = wire;
}

size_t TlsSession::FeedCiphertext(absl::string_view wire) {
  if (!status_.ok() || peer_closed_) return wire.size();
  size_t room = kCiphertextInputCapacity - std::min(input_.queue.size(), kCiphertextInputCapacity);
  size_t n = std::min(wire.size(), room);
  input_.queue.Append(wire.data(), n);
  return n;
}

absl::StatusOr<size_t> TlsSession::ReadPlaintext(absl::Span<char> dst) {
  RETURN_IF_ERROR(Handshake());
  if (!handshake_complete_ || peer_closed_ || dst.empty()) return 0;
  int n = SSL_read(ssl_.get(), dst.data(), ClampToInt(dst.size()));
  if (n > 0) return static_cast<size_t>(n);
  switch (SSL_get_error(ssl_.get(), n)) {
    case SSL_ERROR_WANT_READ:
      return 0;
    case SSL_ERROR_ZERO_RETURN:
      peer_closed_ = true;
      return 0;
    default:
      return FailFromSsl(n);
  }
}

absl::StatusOr<size_t> TlsSession::WritePlaintext(absl::string_view plaintext) {
  if (!status_.ok()) return status_;
  if (shutdown_sent_) {
    return absl::FailedPreconditionError("TLS write after shutdown (close_notify sent)");
  }
  if (!handshake_complete_ || plaintext.empty() ||
      PendingCiphertextSize() >= kMaxPendingCiphertext) {
    return 0;
  }
  size_t chunk = std::min(plaintext.size(), kMaxWriteChunk);
  int n = SSL_write(ssl_.get(), plaintext.data(), static_cast<int>(chunk));
  if (n > 0) return static_cast<size_t>(n);
  return FailFromSsl(n);
}

void TlsSession::Shutdown() {
  if (shutdown_sent_) return;
  shutdown_sent_ = true;
  if (!status_.ok() || !handshake_complete_) return;
  ERR_clear_error();
  // 0 (our close_notify queued, the peer's not yet seen) and 1 are both fine; the caller learns
  // about the peer's through peer_closed().
  SSL_shutdown(ssl_.get());
  ERR_clear_error();
}

bool TlsSession::session_resumed() const { return SSL_session_reused(ssl_.get()) != 0; }

absl::string_view TlsSession::protocol_version() const { return SSL_get_version(ssl_.get()); }

absl::string_view TlsSession::cipher_name() const {
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl_.get());
  return cipher != nullptr ? SSL_CIPHER_get_name(cipher) : "";
}

absl::Status TlsSession::Fail(absl::Status status, HandshakeFailure failure) {
  if (status_.ok()) {
    status_ = std::move(status);
    if (!handshake_complete_) handshake_failure_ = failure;
  }
  ERR_clear_error();
  return status_;
}

absl::Status TlsSession::FailFromSsl(int ret) {
  const int ssl_error = SSL_get_error(ssl_.get(), ret);
  if (!verify_error_.ok()) return Fail(verify_error_, verify_failure_);
  const uint32_t error = ERR_peek_error();
  const int reason = ERR_GET_LIB(error) == ERR_LIB_SSL ? ERR_GET_REASON(error) : 0;
  if (reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256) {
    return Fail(PeerAlertStatus(reason - SSL_AD_REASON_OFFSET), HandshakeFailure::kPeerAlert);
  }
  switch (reason) {
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
      return Fail(absl::UnauthenticatedError(
                      "peer presented no certificate, but a client certificate is required"),
                  HandshakeFailure::kNoCertificate);
    case SSL_R_NO_APPLICATION_PROTOCOL:
      return Fail(absl::FailedPreconditionError(
                      absl::StrCat("no ALPN protocol in common with the peer (ours: ",
                                   absl::StrJoin(context_->alpn_protocols(), ","), ")")),
                  HandshakeFailure::kProtocol);
    case SSL_R_UNSUPPORTED_PROTOCOL:
      return Fail(absl::FailedPreconditionError("no TLS version in common with the peer"),
                  HandshakeFailure::kProtocol);
    case SSL_R_NO_SHARED_CIPHER:
      return Fail(absl::FailedPreconditionError("no cipher suite in common with the peer"),
                  HandshakeFailure::kProtocol);
    default:
      break;
  }
  std::string detail = DrainBoringSslErrors();
  if (detail.empty()) detail = absl::StrCat("SSL error ", ssl_error);
  // With memory BIOs and no I/O of its own, what is left is the peer's bytes breaking TLS.
  return Fail(
      absl::UnavailableError(absl::StrCat(
          handshake_complete_ ? "TLS connection failed: " : "TLS handshake failed: ", detail)),
      HandshakeFailure::kProtocol);
}

}  // namespace meshlet::tls

#include "common/tls/tls_context.h"

#include <openssl/bytestring.h>
#include <openssl/err.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/base/sync.h"
#include "common/tls/tls_session.h"

namespace meshlet::tls {
namespace {

// ECDHE for forward secrecy, AEADs only. ECDSA first: mesh workload keys are ECDSA P-256.
constexpr char kDefaultCipherList[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:"
    "ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:"
    "ECDHE-RSA-CHACHA20-POLY1305";

constexpr char kDefaultCurves[] = "X25519:P-256";

// Signature algorithms we accept from peers: no SHA-1, no P-521.
constexpr uint16_t kVerifyAlgorithms[] = {
    SSL_SIGN_ECDSA_SECP256R1_SHA256, SSL_SIGN_RSA_PSS_RSAE_SHA256, SSL_SIGN_RSA_PKCS1_SHA256,
    SSL_SIGN_ECDSA_SECP384R1_SHA384, SSL_SIGN_RSA_PSS_RSAE_SHA384, SSL_SIGN_RSA_PKCS1_SHA384,
    SSL_SIGN_RSA_PSS_RSAE_SHA512,    SSL_SIGN_RSA_PKCS1_SHA512,
};

// Identifies our sessions for resumption; sessions from other applications never resume here.
constexpr char kSessionIdContext[] = "meshlet";

uint16_t WireVersion(TlsVersion version) {
  return version == TlsVersion::kTls13 ? TLS1_3_VERSION : TLS1_2_VERSION;
}

absl::Status BoringSslError(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": ", DrainBoringSslErrors()));
}

}  // namespace

class TlsContext::HandshakeCache {
 public:
  // A verified path's validity: the latest notBefore and the earliest notAfter of its
  // certificates.
  struct Window {
    absl::Time not_before;
    absl::Time not_after;
  };
  // TLS 1.3 servers send two tickets per handshake; a few cover connections opened together.
  static constexpr size_t kSessionsPerPeer = 4;

  size_t max_verified_chains = 0;
  size_t max_session_peers = 0;
  std::atomic<uint64_t> verified_hits{0};
  Mutex mu;
  absl::flat_hash_map<std::string, Window> verified ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, std::deque<bssl::UniquePtr<SSL_SESSION>>> sessions
      ABSL_GUARDED_BY(mu);
};

TlsContext::TlsContext() : cache_(std::make_unique<HandshakeCache>()) {}
TlsContext::~TlsContext() = default;

uint64_t TlsContext::verified_chain_cache_hits() const {
  return cache_->verified_hits.load(std::memory_order_relaxed);
}

size_t TlsContext::resumable_peers() const {
  MutexLock lock(&cache_->mu);
  return cache_->sessions.size();
}

bool TlsContext::RemembersVerifiedChains() const { return cache_->max_verified_chains > 0; }

bool TlsContext::ChainVerifiedBefore(const std::string& chain_key, absl::Time now) const {
  MutexLock lock(&cache_->mu);
  auto it = cache_->verified.find(chain_key);
  if (it == cache_->verified.end()) return false;
  if (now < it->second.not_before || now > it->second.not_after) {
    cache_->verified.erase(it);  // verified again in full, which names what is wrong
    return false;
  }
  cache_->verified_hits.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void TlsContext::RememberVerifiedChain(std::string chain_key, absl::Time not_before,
                                       absl::Time not_after) const {
  MutexLock lock(&cache_->mu);
  // Full: drop any one entry. Chains repeat per peer workload, so a mesh of fewer peers than
  // the bound never evicts, and a larger one still verifies correctly, only more often.
  if (cache_->verified.size() >= cache_->max_verified_chains) {
    cache_->verified.erase(cache_->verified.begin());
  }
  cache_->verified.insert_or_assign(std::move(chain_key),
                                    HandshakeCache::Window{not_before, not_after});
}

absl::StatusOr<std::string> AlpnWireFormat(const std::vector<std::string>& protocols) {
  std::string wire;
  for (const std::string& protocol : protocols) {
    if (protocol.empty() || protocol.size() > 255) {
      return absl::InvalidArgumentError(
          absl::StrCat("ALPN protocol \"", protocol, "\" must be 1..255 bytes"));
    }
    wire.push_back(static_cast<char>(protocol.size()));
    wire += protocol;
  }
  return wire;
}

bool TlsContext::KeepsClientSessions() const { return cache_->max_session_peers > 0; }

bssl::UniquePtr<SSL_SESSION> TlsContext::TakeSession(const std::string& peer_key) const {
  if (cache_->max_session_peers == 0) return nullptr;
  MutexLock lock(&cache_->mu);
  auto it = cache_->sessions.find(peer_key);
  if (it == cache_->sessions.end()) return nullptr;
  std::deque<bssl::UniquePtr<SSL_SESSION>>& kept = it->second;
  bssl::UniquePtr<SSL_SESSION> session = std::move(kept.back());  // the newest
  kept.pop_back();
  if (!SSL_SESSION_should_be_single_use(session.get())) {
    SSL_SESSION_up_ref(session.get());  // a TLS 1.2 ticket may be offered again
    kept.push_back(bssl::UniquePtr<SSL_SESSION>(session.get()));
  }
  if (kept.empty()) cache_->sessions.erase(it);
  return session;
}

void TlsContext::KeepSession(const std::string& peer_key,
                             bssl::UniquePtr<SSL_SESSION> session) const {
  if (cache_->max_session_peers == 0 || !SSL_SESSION_is_resumable(session.get())) return;
  MutexLock lock(&cache_->mu);
  auto it = cache_->sessions.find(peer_key);
  if (it == cache_->sessions.end()) {
    if (cache_->sessions.size() >= cache_->max_session_peers) {
      cache_->sessions.erase(cache_->sessions.begin());
    }
    it = cache_->sessions.try_emplace(peer_key).first;
  }
  std::deque<bssl::UniquePtr<SSL_SESSION>>& kept = it->second;
  if (kept.size() >= HandshakeCache::kSessionsPerPeer) kept.pop_front();
  kept.push_back(std::move(session));
}

absl::StatusOr<std::shared_ptr<const TlsContext>> TlsContext::CreateClient(
    const TlsContextConfig& config) {
  return Create(Role::kClient, config);
}

absl::StatusOr<std::shared_ptr<const TlsContext>> TlsContext::CreateServer(
    const TlsContextConfig& config) {
  return Create(Role::kServer, config);
}

absl::StatusOr<std::shared_ptr<const TlsContext>> TlsContext::Create(
    Role role, const TlsContextConfig& config) {
  std::shared_ptr<TlsContext> context(new TlsContext());
  context->role_ = role;
  ERR_clear_error();
  absl::Status status = context->Init(config);
  ERR_clear_error();
  if (!status.ok()) {
    return Annotate(status, role == Role::kServer ? "TLS server context" : "TLS client context");
  }
  return std::shared_ptr<const TlsContext>(std::move(context));
}

namespace {

// An X509_STORE of the CA certificates in `pem`, describing each into `info`; `what` names the
// bundle in errors.
absl::StatusOr<bssl::UniquePtr<X509_STORE>> BuildTrustStore(const std::string& pem,
                                                            absl::string_view what,
                                                            std::vector<CertificateInfo>& info) {
  absl::StatusOr<CertificateChain> parsed = ParsePemCertificates(pem);
  if (!parsed.ok()) {
    return absl::Status(parsed.status().code(),
                        absl::StrCat(what, ": ", parsed.status().message()));
  }
  CertificateChain bundle = *std::move(parsed);
  bssl::UniquePtr<X509_STORE> store(X509_STORE_new());
  if (store == nullptr) return BoringSslError("X509_STORE_new");
  for (size_t i = 0; i < bundle.size(); ++i) {
    // A non-CA anchor would silently pin one peer certificate; that is never what a trust
    // bundle means here.
    if (!IsCa(*bundle[i])) {
      return absl::InvalidArgumentError(absl::StrCat(what, " certificate #", i + 1, " (",
                                                     SubjectName(*bundle[i]),
                                                     ") is not a CA certificate"));
    }
    if (!X509_STORE_add_cert(store.get(), bundle[i].get())) {
      uint32_t error = ERR_peek_last_error();
      if (ERR_GET_LIB(error) == ERR_LIB_X509 &&
          ERR_GET_REASON(error) == X509_R_CERT_ALREADY_IN_HASH_TABLE) {
        ERR_clear_error();  // a duplicate root is harmless
        continue;
      }
      return BoringSslError(absl::StrCat("adding ", what, " certificate #", i + 1));
    }
    info.push_back(DescribeCertificate(*bundle[i]));
  }
  return store;
}

}  // namespace

absl::StatusOr<X509_STORE*> TlsContext::TrustStoreFor(const X509& leaf) const {
  if (local_trust_domain_.empty()) return trust_store_.get();
  absl::StatusOr<SpiffeId> id = ExtractSpiffeId(leaf);
  if (!id.ok()) {
    return absl::UnauthenticatedError(absl::StrCat(
        "peer certificate has no usable SPIFFE id to choose its trust domain's roots (",
        id.status().message(), ")"));
  }
  const std::string& domain = id->trust_domain();
  if (domain == local_trust_domain_ ||
      std::find(trust_domain_aliases_.begin(), trust_domain_aliases_.end(), domain) !=
          trust_domain_aliases_.end()) {
    return trust_store_.get();
  }
  if (auto it = federated_stores_.find(domain); it != federated_stores_.end()) {
    return it->second.get();
  }
  return absl::UnauthenticatedError(absl::StrCat(
      "peer identity ", id->ToString(), " is in trust domain \"", domain,
      "\", which is neither the local domain \"", local_trust_domain_, "\" nor federated"));
}

absl::Status TlsContext::Init(const TlsContextConfig& config) {
  const bool server = role_ == Role::kServer;

  // Consistency first, so a bad config is reported before any key material is touched.
  if (config.min_version > config.max_version) {
    return absl::InvalidArgumentError("min_version is above max_version");
  }
  if (!server && config.client_certificate != ClientCertificateMode::kNone) {
    return absl::InvalidArgumentError("client_certificate is a server setting");
  }
  if (server && config.certificate_chain_pem.empty()) {
    return absl::InvalidArgumentError("a server needs a certificate chain");
  }
  if (config.certificate_chain_pem.empty() != config.private_key_pem.empty()) {
    return absl::InvalidArgumentError("certificate chain and private key must be given together");
  }
  const bool verifies_peer = !server || config.client_certificate != ClientCertificateMode::kNone;
  if (verifies_peer && config.trust_bundle_pem.empty()) {
    return absl::InvalidArgumentError(
        server ? "a server that asks for client certificates needs a trust bundle"
               : "a client needs a trust bundle to verify servers");
  }
  if (!verifies_peer && config.peer_identity.has_value()) {
    return absl::InvalidArgumentError(
        "peer_identity needs client_certificate set to kRequest or kRequire");
  }
  absl::StatusOr<std::string> alpn_wire = AlpnWireFormat(config.alpn_protocols);
  if (!alpn_wire.ok()) return alpn_wire.status();

  ssl_ctx_.reset(SSL_CTX_new(TLS_method()));
  if (ssl_ctx_ == nullptr) return BoringSslError("SSL_CTX_new");
  SSL_CTX* ctx = ssl_ctx_.get();

  if (!SSL_CTX_set_min_proto_version(ctx, WireVersion(config.min_version)) ||
      !SSL_CTX_set_max_proto_version(ctx, WireVersion(config.max_version))) {
    return BoringSslError("setting protocol versions");
  }
  const std::string cipher_list =
      config.cipher_list.empty() ? kDefaultCipherList : config.cipher_list;
  if (!SSL_CTX_set_strict_cipher_list(ctx, cipher_list.c_str())) {
    return BoringSslError(absl::StrCat("cipher list \"", cipher_list, "\""));
  }
  const std::string curves = config.curves.empty() ? kDefaultCurves : config.curves;
  if (!SSL_CTX_set1_curves_list(ctx, curves.c_str())) {
    return BoringSslError(absl::StrCat("curves \"", curves, "\""));
  }
  if (!SSL_CTX_set_verify_algorithm_prefs(ctx, kVerifyAlgorithms,
                                          sizeof(kVerifyAlgorithms) / sizeof(uint16_t))) {
    return BoringSslError("setting signature algorithms");
  }

  // Resumption: no stateful server cache (unbounded memory, a lock shared by all workers).
  // Servers issue tickets when asked to; clients keep them in a bounded cache of their own.
  const bool client_resumes = !server && config.client_session_cache_size > 0;
  if (client_resumes) {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(ctx, &TlsSession::OnNewClientSession);
  } else {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  }
  if (server ? !config.session_tickets : !client_resumes) {
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  }
  if (config.session_lifetime <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("session_lifetime must be positive");
  }
  const auto lifetime_seconds = static_cast<uint32_t>(
      std::min<int64_t>(absl::ToInt64Seconds(config.session_lifetime), 7 * 24 * 3600));
  SSL_CTX_set_timeout(ctx, lifetime_seconds);
  SSL_CTX_set_session_psk_dhe_timeout(ctx, lifetime_seconds);
  cache_->max_verified_chains = config.verified_chain_cache_size;
  cache_->max_session_peers = config.client_session_cache_size;
  if (server &&
      !SSL_CTX_set_session_id_context(ctx, reinterpret_cast<const uint8_t*>(kSessionIdContext),
                                      std::strlen(kSessionIdContext))) {
    return BoringSslError("setting session id context");
  }

  if (!config.certificate_chain_pem.empty()) {
    ASSIGN_OR_RETURN(CertificateChain chain, ParsePemCertificates(config.certificate_chain_pem));
    ASSIGN_OR_RETURN(bssl::UniquePtr<EVP_PKEY> key, ParsePemPrivateKey(config.private_key_pem));
    RETURN_IF_ERROR(CheckKeyMatchesCertificate(*chain.front(), *key));
    if (IsCa(*chain.front())) {
      return absl::InvalidArgumentError(
          absl::StrCat("the leaf certificate (", SubjectName(*chain.front()),
                       ") is a CA certificate; workload certificates must be CA:FALSE"));
    }
    if (!SSL_CTX_use_certificate(ctx, chain.front().get())) {
      return BoringSslError("using the certificate");
    }
    for (size_t i = 1; i < chain.size(); ++i) {
      if (!SSL_CTX_add1_chain_cert(ctx, chain[i].get())) {
        return BoringSslError("adding an intermediate certificate");
      }
    }
    if (!SSL_CTX_use_PrivateKey(ctx, key.get()) || !SSL_CTX_check_private_key(ctx)) {
      return BoringSslError("using the private key");
    }
    for (const auto& cert : chain) chain_info_.push_back(DescribeCertificate(*cert));
    absl::Time now = config.clock != nullptr ? config.clock->WallNow() : absl::Now();
    if (chain_info_.front().not_after < now) {
      // Still loaded: refusing would turn a late rotation into a total outage, while peers
      // reject the expired certificate with a clear error anyway.
      LOG(WARN) << "TLS certificate " << chain_info_.front().subject << " expired at "
                << absl::FormatTime(chain_info_.front().not_after);
    }
  }

  if (!config.trust_bundle_pem.empty()) {
    ASSIGN_OR_RETURN(trust_store_,
                     BuildTrustStore(config.trust_bundle_pem, "trust bundle", bundle_info_));
  }
  if (config.local_trust_domain.empty()) {
    if (!config.trust_domain_aliases.empty() || !config.federated_bundles_pem.empty()) {
      return absl::InvalidArgumentError(
          "trust domain aliases and federated bundles need the local trust domain");
    }
  } else {
    if (absl::Status status = ValidateTrustDomain(config.local_trust_domain); !status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("local trust domain: ", status.message()));
    }
    local_trust_domain_ = config.local_trust_domain;
    for (const std::string& alias : config.trust_domain_aliases) {
      if (absl::Status status = ValidateTrustDomain(alias); !status.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("trust domain alias \"", alias, "\": ", status.message()));
      }
      trust_domain_aliases_.push_back(alias);
    }
    for (const auto& [domain, pem] : config.federated_bundles_pem) {
      if (absl::Status status = ValidateTrustDomain(domain); !status.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("federated trust domain \"", domain, "\": ", status.message()));
      }
      if (domain == local_trust_domain_ ||
          std::find(trust_domain_aliases_.begin(), trust_domain_aliases_.end(), domain) !=
              trust_domain_aliases_.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "federated trust domain \"", domain,
            "\" is the local trust domain or an alias of it; its roots are the trust bundle"));
      }
      std::vector<CertificateInfo>& info = federated_info_[domain];
      ASSIGN_OR_RETURN(
          federated_stores_[domain],
          BuildTrustStore(pem, absl::StrCat("federated bundle of \"", domain, "\""), info));
    }
  }

  alpn_protocols_ = config.alpn_protocols;
  require_alpn_match_ = config.require_alpn_match;
  if (!alpn_protocols_.empty()) {
    if (server) {
      SSL_CTX_set_alpn_select_cb(ctx, &TlsContext::SelectAlpn, this);
    } else {
      // Unusually, 0 means success here.
      if (SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const uint8_t*>(alpn_wire->data()),
                                  alpn_wire->size()) != 0) {
        return BoringSslError("setting ALPN protocols");
      }
    }
  }

  client_certificate_ = config.client_certificate;
  peer_identity_ = config.peer_identity;
  clock_ = config.clock;
  return InitSniCertificates(config);
}

absl::Status TlsContext::InitSniCertificates(const TlsContextConfig& config) {
  if (config.sni_certificates.empty()) return absl::OkStatus();
  if (role_ != Role::kServer) {
    return absl::InvalidArgumentError("sni_certificates is a server setting");
  }
  for (size_t i = 0; i < config.sni_certificates.size(); ++i) {
    const TlsContextConfig::SniCertificate& in = config.sni_certificates[i];
    const std::string where = absl::StrCat("sni_certificates[", i, "]");
    if (in.server_names.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": no server names"));
    }
    absl::StatusOr<CertificateChain> chain = ParsePemCertificates(in.certificate_chain_pem);
    if (!chain.ok()) return Annotate(chain.status(), where);
    absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> key = ParsePemPrivateKey(in.private_key_pem);
    if (!key.ok()) return Annotate(key.status(), where);
    if (absl::Status match = CheckKeyMatchesCertificate(*chain->front(), **key); !match.ok()) {
      return Annotate(match, where);
    }
    if (IsCa(*chain->front())) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": the leaf certificate (",
                                                     SubjectName(*chain->front()),
                                                     ") is a CA certificate"));
    }
    SniEntry entry;
    entry.leaf = std::move(chain->front());
    entry.chain.reset(sk_X509_new_null());
    for (size_t c = 1; c < chain->size(); ++c) {
      if (!entry.chain || !sk_X509_push(entry.chain.get(), (*chain)[c].release())) {
        return BoringSslError("keeping an intermediate certificate");
      }
    }
    entry.key = *std::move(key);
    const int index = static_cast<int>(sni_entries_.size());
    sni_entries_.push_back(std::move(entry));
    for (const std::string& name : in.server_names) {
      std::string lower = absl::AsciiStrToLower(name);
      const bool wildcard = absl::StartsWith(lower, "*.");
      if (lower.empty() || lower == "*." || (!wildcard && lower.find('*') != std::string::npos)) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": \"", name, "\" is not a host name or *.suffix"));
      }
      const bool fresh =
          wildcard ? std::none_of(sni_wildcards_.begin(), sni_wildcards_.end(),
                                  [&](const auto& w) { return w.first == lower.substr(1); })
                   : !sni_exact_.contains(lower);
      if (!fresh) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": \"", name, "\" is named by another certificate too"));
      }
      if (wildcard) {
        sni_wildcards_.emplace_back(lower.substr(1), index);
      } else {
        sni_exact_.emplace(std::move(lower), index);
      }
    }
  }
  std::stable_sort(sni_wildcards_.begin(), sni_wildcards_.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  SSL_CTX_set_cert_cb(ssl_ctx_.get(), &TlsContext::SelectCertificate, this);
  return absl::OkStatus();
}

int TlsContext::SniIndexFor(absl::string_view server_name) const {
  if (server_name.empty() || sni_entries_.empty()) return -1;
  char buffer[256];
  if (server_name.size() > sizeof(buffer)) return -1;  // longer than any DNS name
  for (size_t i = 0; i < server_name.size(); ++i) {
    buffer[i] = absl::ascii_tolower(static_cast<unsigned char>(server_name[i]));
  }
  const absl::string_view name(buffer, server_name.size());
  if (auto it = sni_exact_.find(name); it != sni_exact_.end()) return it->second;
  for (const auto& [suffix, index] : sni_wildcards_) {
    if (name.size() > suffix.size() && absl::EndsWith(name, suffix)) return index;
  }
  return -1;
}

int TlsContext::SelectCertificate(SSL* ssl, void* arg) {
  const auto* self = static_cast<const TlsContext*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  const int index = self->SniIndexFor(name == nullptr ? absl::string_view() : name);
  if (index < 0) return 1;  // the default certificate
  const SniEntry& entry = self->sni_entries_[static_cast<size_t>(index)];
  if (!SSL_use_certificate(ssl, entry.leaf.get()) || !SSL_set1_chain(ssl, entry.chain.get()) ||
      !SSL_use_PrivateKey(ssl, entry.key.get())) {
    return 0;  // the handshake fails
  }
  return 1;
}

int TlsContext::SelectAlpn(SSL* /*ssl*/, const uint8_t** out, uint8_t* out_len, const uint8_t* in,
                           unsigned in_len, void* arg) {
  const auto* self = static_cast<const TlsContext*>(arg);
  for (const std::string& ours : self->alpn_protocols_) {
    CBS offered;
    CBS_init(&offered, in, in_len);
    while (CBS_len(&offered) > 0) {
      CBS name;
      if (!CBS_get_u8_length_prefixed(&offered, &name)) break;  // BoringSSL pre-validates
      if (CBS_len(&name) == ours.size() &&
          std::memcmp(CBS_data(&name), ours.data(), ours.size()) == 0) {
        // Points into the ClientHello, which outlives this call; BoringSSL copies it.
        *out = CBS_data(&name);
        *out_len = static_cast<uint8_t>(CBS_len(&name));
        return SSL_TLSEXT_ERR_OK;
      }
    }
  }
  return self->require_alpn_match_ ? SSL_TLSEXT_ERR_ALERT_FATAL : SSL_TLSEXT_ERR_NOACK;
}

}  // namespace meshlet::tls

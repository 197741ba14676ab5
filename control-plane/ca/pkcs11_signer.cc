#include "control-plane/ca/pkcs11_signer.h"

#include <dlfcn.h>

#include <atomic>
#include <cstring>
#include <vector>

#include <openssl/bn.h>
#include <openssl/digest.h>
#include <openssl/ecdsa.h>
#include <openssl/mem.h>
#include <openssl/sha.h>

#include <p11-kit/pkcs11.h>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/base/status.h"
#include "common/tls/certificate.h"

namespace meshlet::controlplane::ca {
namespace {

// The control plane links BoringSSL, whose libcrypto exports the same names as OpenSSL's; a module
// built on OpenSSL (SoftHSM2, most HSM vendors' modules) would have its libcrypto calls bound to
// BoringSSL's functions through the global scope and crash on the first digest. RTLD_DEEPBIND
// makes the module and its own dependencies resolve their names first. AddressSanitizer refuses
// RTLD_DEEPBIND: its builds load modules without it (and test only modules without libcrypto).
#if defined(__SANITIZE_ADDRESS__)
constexpr int kDlopenFlags = RTLD_NOW | RTLD_LOCAL;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr int kDlopenFlags = RTLD_NOW | RTLD_LOCAL;
#else
constexpr int kDlopenFlags = RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND;
#endif
#else
constexpr int kDlopenFlags = RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND;
#endif

std::string Rv(CK_RV rv) { return absl::StrCat("CKR 0x", absl::Hex(rv)); }

// A token label is 32 bytes, blank-padded.
std::string TrimmedLabel(const unsigned char* label, size_t n) {
  std::string s(reinterpret_cast<const char*>(label), n);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

absl::StatusOr<std::string> ReadPin(const Pkcs11SignerOptions& o) {
  absl::StatusOr<std::string> pin = tls::ReadSmallFile(o.pin_file);
  if (!pin.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("PKCS#11 PIN file ", o.pin_file, ": ", pin.status().message()));
  }
  while (!pin->empty() && (pin->back() == '\n' || pin->back() == '\r')) pin->pop_back();
  if (pin->empty() || pin->size() > o.max_pin_bytes) {
    OPENSSL_cleanse(pin->data(), pin->size());
    return absl::InvalidArgumentError(absl::StrCat(
        "PKCS#11 PIN file ", o.pin_file, " is empty or longer than ", o.max_pin_bytes, " bytes"));
  }
  return pin;
}

bool IsSessionError(CK_RV rv) {
  return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED || rv == CKR_DEVICE_ERROR ||
         rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_USER_NOT_LOGGED_IN ||
         rv == CKR_OPERATION_ACTIVE;
}

class Pkcs11Signer final : public Signer {
 public:
  Pkcs11Signer(const Pkcs11SignerOptions& options, const Pkcs11SignerStats& stats)
      : options_(options), stats_(stats) {}

  ~Pkcs11Signer() override {
    if (fl_ != nullptr) {
      if (session_ != CK_INVALID_HANDLE) fl_->C_CloseSession(session_);
      fl_->C_Finalize(nullptr);
    }
    if (module_ != nullptr) dlclose(module_);
    OPENSSL_cleanse(pin_.data(), pin_.size());
  }

  absl::Status Start() {
    ASSIGN_OR_RETURN(pin_, ReadPin(options_));
    module_ = dlopen(options_.module_path.c_str(), kDlopenFlags);
    if (module_ == nullptr) {
      const char* err = dlerror();
      return absl::NotFoundError(absl::StrCat("PKCS#11 module ", options_.module_path,
                                              " not found: ", err ? err : "dlopen failed"));
    }
    auto get_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(module_, "C_GetFunctionList"));
    if (get_list == nullptr || get_list(&fl_) != CKR_OK || fl_ == nullptr) {
      fl_ = nullptr;
      return absl::InvalidArgumentError(absl::StrCat("PKCS#11 module ", options_.module_path,
                                                     " has no usable C_GetFunctionList"));
    }
    CK_RV rv = fl_->C_Initialize(nullptr);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
      fl_ = nullptr;
      return absl::InternalError(absl::StrCat("PKCS#11 C_Initialize: ", Rv(rv)));
    }
    RETURN_IF_ERROR(FindSlot());
    absl::MutexLock lock(&mutex_);
    RETURN_IF_ERROR(OpenSessionLocked());
    return absl::OkStatus();
  }

  SignerKeyType key_type() const override { return key_type_.load(std::memory_order_relaxed); }

  absl::StatusOr<std::string> SignSha256(absl::string_view data) const override {
    const absl::Time start = absl::Now();
    absl::MutexLock lock(&mutex_);
    absl::StatusOr<std::string> sig = SignLocked(data);
    if (!sig.ok() && session_error_) {
      stats_.session_reopens.Inc();
      if (session_ != CK_INVALID_HANDLE) fl_->C_CloseSession(session_);
      session_ = CK_INVALID_HANDLE;
      absl::Status reopened = OpenSessionLocked();
      sig = reopened.ok() ? SignLocked(data) : reopened;
    }
    if (!sig.ok()) {
      stats_.sign_errors.Inc();
      return sig;
    }
    stats_.signatures.Inc();
    stats_.sign_latency_us.Record(absl::ToInt64Microseconds(absl::Now() - start));
    return sig;
  }

  std::string Describe() const override {
    return absl::StrCat("PKCS#11 token \"", options_.token_label, "\" key \"", options_.key_label,
                        "\"");
  }

 private:
  absl::Status FindSlot() {
    CK_ULONG count = 0;
    CK_RV rv = fl_->C_GetSlotList(CK_TRUE, nullptr, &count);
    if (rv != CKR_OK) return absl::InternalError(absl::StrCat("PKCS#11 C_GetSlotList: ", Rv(rv)));
    std::vector<CK_SLOT_ID> slots(count);
    rv = fl_->C_GetSlotList(CK_TRUE, slots.data(), &count);
    if (rv != CKR_OK) return absl::InternalError(absl::StrCat("PKCS#11 C_GetSlotList: ", Rv(rv)));
    slots.resize(count);
    for (CK_SLOT_ID slot : slots) {
      CK_TOKEN_INFO info;
      if (fl_->C_GetTokenInfo(slot, &info) != CKR_OK) continue;
      if (TrimmedLabel(info.label, sizeof(info.label)) == options_.token_label) {
        slot_ = slot;
        return absl::OkStatus();
      }
    }
    return absl::NotFoundError(absl::StrCat("no PKCS#11 token labelled \"", options_.token_label,
                                            "\" in module ", options_.module_path));
  }

  absl::Status OpenSessionLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    CK_RV rv = fl_->C_OpenSession(slot_, CKF_SERIAL_SESSION, nullptr, nullptr, &session_);
    if (rv != CKR_OK) {
      session_ = CK_INVALID_HANDLE;
      return absl::UnavailableError(absl::StrCat("PKCS#11 C_OpenSession: ", Rv(rv)));
    }
    rv = fl_->C_Login(session_, CKU_USER,
                      reinterpret_cast<CK_UTF8CHAR*>(const_cast<char*>(pin_.data())), pin_.size());
    if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_INVALID || rv == CKR_PIN_LEN_RANGE) {
      return absl::PermissionDeniedError(
          absl::StrCat("wrong PIN for PKCS#11 token \"", options_.token_label, "\""));
    }
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
      return absl::UnavailableError(absl::StrCat("PKCS#11 C_Login: ", Rv(rv)));
    }
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE query[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_LABEL, const_cast<char*>(options_.key_label.data()), options_.key_label.size()},
    };
    rv = fl_->C_FindObjectsInit(session_, query, 2);
    if (rv != CKR_OK)
      return absl::InternalError(absl::StrCat("PKCS#11 C_FindObjectsInit: ", Rv(rv)));
    CK_ULONG found = 0;
    rv = fl_->C_FindObjects(session_, &key_, 1, &found);
    fl_->C_FindObjectsFinal(session_);
    if (rv != CKR_OK || found == 0) {
      return absl::NotFoundError(absl::StrCat("no private key labelled \"", options_.key_label,
                                              "\" in PKCS#11 token \"", options_.token_label,
                                              "\""));
    }
    CK_KEY_TYPE type = 0;
    CK_ATTRIBUTE attr = {CKA_KEY_TYPE, &type, sizeof(type)};
    rv = fl_->C_GetAttributeValue(session_, key_, &attr, 1);
    if (rv != CKR_OK) return absl::InternalError(absl::StrCat("PKCS#11 CKA_KEY_TYPE: ", Rv(rv)));
    if (type == CKK_EC) {
      key_type_ = SignerKeyType::kEcdsaP256;
    } else if (type == CKK_RSA) {
      key_type_ = SignerKeyType::kRsa;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("PKCS#11 key \"", options_.key_label, "\" is neither EC nor RSA"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> SignLocked(absl::string_view data) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    session_error_ = false;
    if (session_ == CK_INVALID_HANDLE) {
      session_error_ = true;
      return absl::UnavailableError("PKCS#11: no session");
    }
    const bool rsa = key_type_ == SignerKeyType::kRsa;
    CK_MECHANISM mech = {rsa ? CKM_SHA256_RSA_PKCS : CKM_ECDSA, nullptr, 0};
    uint8_t digest[SHA256_DIGEST_LENGTH];
    std::string input;
    if (rsa) {
      input.assign(data.data(), data.size());
    } else {
      SHA256(reinterpret_cast<const uint8_t*>(data.data()), data.size(), digest);
      input.assign(reinterpret_cast<const char*>(digest), sizeof(digest));
    }
    CK_RV rv = fl_->C_SignInit(session_, &mech, key_);
    if (rv != CKR_OK) {
      session_error_ = IsSessionError(rv);
      return absl::UnavailableError(absl::StrCat("PKCS#11 C_SignInit: ", Rv(rv)));
    }
    uint8_t sig[1024];
    CK_ULONG len = sizeof(sig);
    rv = fl_->C_Sign(session_, reinterpret_cast<CK_BYTE*>(input.data()), input.size(), sig, &len);
    if (rv != CKR_OK) {
      session_error_ = IsSessionError(rv);
      return absl::UnavailableError(absl::StrCat("PKCS#11 C_Sign: ", Rv(rv)));
    }
    if (rsa) return std::string(reinterpret_cast<const char*>(sig), len);
    // CKM_ECDSA answers r || s; X.509 wants an ECDSA-Sig-Value.
    if (len != 64) return absl::InternalError("PKCS#11 ECDSA signature is not P-256 r||s");
    bssl::UniquePtr<ECDSA_SIG> es(ECDSA_SIG_new());
    BIGNUM* r = BN_bin2bn(sig, 32, nullptr);
    BIGNUM* s = BN_bin2bn(sig + 32, 32, nullptr);
    if (es == nullptr || r == nullptr || s == nullptr || !ECDSA_SIG_set0(es.get(), r, s)) {
      BN_free(r);
      BN_free(s);
      return absl::InternalError("encoding the ECDSA signature");
    }
    uint8_t* der = nullptr;
    size_t der_len = 0;
    if (!ECDSA_SIG_to_bytes(&der, &der_len, es.get())) {
      return absl::InternalError("encoding the ECDSA signature");
    }
    std::string out(reinterpret_cast<const char*>(der), der_len);
    OPENSSL_free(der);
    return out;
  }

  const Pkcs11SignerOptions options_;
  const Pkcs11SignerStats stats_;
  void* module_ = nullptr;
  CK_FUNCTION_LIST* fl_ = nullptr;
  CK_SLOT_ID slot_ = 0;
  std::string pin_;
  mutable absl::Mutex mutex_;
  mutable CK_SESSION_HANDLE session_ ABSL_GUARDED_BY(mutex_) = CK_INVALID_HANDLE;
  mutable CK_OBJECT_HANDLE key_ ABSL_GUARDED_BY(mutex_) = CK_INVALID_HANDLE;
  // Written under mutex_ when a session opens (the same value each time), read without it.
  mutable std::atomic<SignerKeyType> key_type_{SignerKeyType::kEcdsaP256};
  mutable bool session_error_ ABSL_GUARDED_BY(mutex_) = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Signer>> NewPkcs11Signer(const Pkcs11SignerOptions& options,
                                                        const Pkcs11SignerStats& stats) {
  auto signer = std::make_unique<Pkcs11Signer>(options, stats);
  RETURN_IF_ERROR(signer->Start());
  return signer;
}

}  // namespace meshlet::controlplane::ca

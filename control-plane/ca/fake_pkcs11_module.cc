// A PKCS#11 module for tests only: one slot with token "meshlet-test", user PIN "1234", one
// private key labelled "ca" read at C_Initialize from the PEM file named by
// $FAKE_PKCS11_KEY_FILE (EC P-256; CKM_ECDSA over a digest, answering r||s). Setting
// $FAKE_PKCS11_FAIL_SIGNS to N makes the first N C_Sign calls fail with
// CKR_SESSION_HANDLE_INVALID, as a token that dropped its sessions.

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <p11-kit/pkcs11.h>

namespace {

EVP_PKEY* g_key = nullptr;
int g_fail_signs = 0;
bool g_logged_in = false;
bool g_found = false;
constexpr CK_SESSION_HANDLE kSession = 7;
constexpr CK_OBJECT_HANDLE kKey = 11;

CK_RV Initialize(void*) {
  const char* path = std::getenv("FAKE_PKCS11_KEY_FILE");
  if (path == nullptr) return CKR_GENERAL_ERROR;
  FILE* f = std::fopen(path, "r");
  if (f == nullptr) return CKR_GENERAL_ERROR;
  g_key = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  const char* fail = std::getenv("FAKE_PKCS11_FAIL_SIGNS");
  g_fail_signs = fail != nullptr ? std::atoi(fail) : 0;
  return g_key != nullptr ? CKR_OK : CKR_GENERAL_ERROR;
}
CK_RV Finalize(void*) {
  EVP_PKEY_free(g_key);
  g_key = nullptr;
  return CKR_OK;
}
CK_RV GetSlotList(CK_BBOOL, CK_SLOT_ID* list, CK_ULONG* count) {
  if (list != nullptr) list[0] = 1;
  *count = 1;
  return CKR_OK;
}
CK_RV GetTokenInfo(CK_SLOT_ID, CK_TOKEN_INFO* info) {
  std::memset(info, ' ', sizeof(*info));
  std::memcpy(info->label, "meshlet-test", 12);
  return CKR_OK;
}
CK_RV OpenSession(CK_SLOT_ID, CK_FLAGS, void*, CK_NOTIFY, CK_SESSION_HANDLE* s) {
  *s = kSession;
  g_logged_in = false;
  return CKR_OK;
}
CK_RV CloseSession(CK_SESSION_HANDLE) { return CKR_OK; }
CK_RV Login(CK_SESSION_HANDLE, CK_USER_TYPE, CK_UTF8CHAR* pin, CK_ULONG len) {
  if (len != 4 || std::memcmp(pin, "1234", 4) != 0) return CKR_PIN_INCORRECT;
  g_logged_in = true;
  return CKR_OK;
}
CK_RV FindObjectsInit(CK_SESSION_HANDLE, CK_ATTRIBUTE* t, CK_ULONG n) {
  g_found = false;
  for (CK_ULONG i = 0; i < n; ++i) {
    if (t[i].type == CKA_LABEL) {
      g_found = t[i].ulValueLen == 2 && std::memcmp(t[i].pValue, "ca", 2) == 0;
    }
  }
  return CKR_OK;
}
CK_RV FindObjects(CK_SESSION_HANDLE, CK_OBJECT_HANDLE* out, CK_ULONG, CK_ULONG* count) {
  *count = g_found ? 1 : 0;
  if (g_found) out[0] = kKey;
  return CKR_OK;
}
CK_RV FindObjectsFinal(CK_SESSION_HANDLE) { return CKR_OK; }
CK_RV GetAttributeValue(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, CK_ATTRIBUTE* t, CK_ULONG n) {
  for (CK_ULONG i = 0; i < n; ++i) {
    if (t[i].type != CKA_KEY_TYPE) return CKR_ATTRIBUTE_TYPE_INVALID;
    *static_cast<CK_KEY_TYPE*>(t[i].pValue) = CKK_EC;
  }
  return CKR_OK;
}
CK_RV SignInit(CK_SESSION_HANDLE, CK_MECHANISM* m, CK_OBJECT_HANDLE) {
  if (!g_logged_in) return CKR_USER_NOT_LOGGED_IN;
  return m->mechanism == CKM_ECDSA ? CKR_OK : CKR_MECHANISM_INVALID;
}
CK_RV Sign(CK_SESSION_HANDLE, CK_BYTE* data, CK_ULONG len, CK_BYTE* sig, CK_ULONG* sig_len) {
  if (g_fail_signs > 0) {
    --g_fail_signs;
    return CKR_SESSION_HANDLE_INVALID;
  }
  ECDSA_SIG* s = ECDSA_do_sign(data, len, EVP_PKEY_get0_EC_KEY(g_key));
  if (s == nullptr || *sig_len < 64) return CKR_GENERAL_ERROR;
  BN_bn2bin_padded(sig, 32, ECDSA_SIG_get0_r(s));
  BN_bn2bin_padded(sig + 32, 32, ECDSA_SIG_get0_s(s));
  ECDSA_SIG_free(s);
  *sig_len = 64;
  return CKR_OK;
}

CK_FUNCTION_LIST MakeList() {
  CK_FUNCTION_LIST l;
  std::memset(&l, 0, sizeof(l));
  l.version = {2, 40};
  l.C_Initialize = Initialize;
  l.C_Finalize = Finalize;
  l.C_GetSlotList = GetSlotList;
  l.C_GetTokenInfo = GetTokenInfo;
  l.C_OpenSession = OpenSession;
  l.C_CloseSession = CloseSession;
  l.C_Login = Login;
  l.C_FindObjectsInit = FindObjectsInit;
  l.C_FindObjects = FindObjects;
  l.C_FindObjectsFinal = FindObjectsFinal;
  l.C_GetAttributeValue = GetAttributeValue;
  l.C_SignInit = SignInit;
  l.C_Sign = Sign;
  return l;
}
CK_FUNCTION_LIST g_list = MakeList();

}  // namespace

extern "C" __attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST** list) {
  *list = &g_list;
  return CKR_OK;
}

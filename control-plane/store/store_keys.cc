#include "control-plane/store/store_keys.h"

#include <openssl/aead.h>
#include <openssl/digest.h>
#include <openssl/mem.h>
#include <openssl/rand.h>

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/base/file.h"

namespace meshlet::controlplane {
namespace {

constexpr char kVersion[] = "v1";
constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;
constexpr size_t kKeyIdBytes = 8;

std::string KeyId(const uint8_t* key) {
  uint8_t digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(key, StoreKeys::kKeyBytes, digest, &length, EVP_sha256(), nullptr);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), kKeyIdBytes));
}

// "meshlet-sealed:v1:<key id>:"
std::string Header(absl::string_view key_id) {
  return absl::StrCat(StoreKeys::kEnvelopePrefix, kVersion, ":", key_id, ":");
}

std::string AssociatedData(absl::string_view key_id, absl::string_view name) {
  return absl::StrCat(Header(key_id), name);
}

}  // namespace

absl::StatusOr<StoreKeys> StoreKeys::Parse(absl::string_view text, absl::string_view where) {
  std::vector<Key> keys;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || absl::StartsWith(line, "#")) continue;
    std::string raw;
    if (!absl::Base64Unescape(line, &raw) || raw.size() != kKeyBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": line ", line_number, ": not a key (the base64 of ", kKeyBytes,
                       " random bytes, e.g. from `head -c 32 /dev/urandom | base64`)"));
    }
    Key key;
    std::memcpy(key.bytes.data(), raw.data(), kKeyBytes);
    OPENSSL_cleanse(raw.data(), raw.size());
    key.id = KeyId(key.bytes.data());
    for (const Key& other : keys) {
      if (other.id == key.id) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": line ", line_number, ": the same key as an earlier line"));
      }
    }
    keys.push_back(std::move(key));
  }
  if (keys.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": holds no key"));
  }
  return StoreKeys(std::move(keys));
}

absl::StatusOr<StoreKeys> StoreKeys::FromFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path, 64 * 1024);
  if (!text.ok()) return text.status();
  absl::StatusOr<StoreKeys> keys = Parse(*text, path);
  OPENSSL_cleanse(text->data(), text->size());
  return keys;
}

std::string StoreKeys::GenerateKeyText() {
  uint8_t key[kKeyBytes];
  RAND_bytes(key, sizeof(key));
  std::string text = absl::Base64Escape(absl::string_view(reinterpret_cast<char*>(key), kKeyBytes));
  OPENSSL_cleanse(key, sizeof(key));
  return text;
}

absl::StatusOr<std::string> StoreKeys::WithNewFirstKey(absl::string_view text,
                                                       absl::string_view where) {
  absl::StatusOr<StoreKeys> keys = Parse(text, where);
  if (!keys.ok()) return keys.status();
  std::string out = absl::StrCat(GenerateKeyText(), "\n", text);
  if (!absl::EndsWith(out, "\n")) out.push_back('\n');
  return out;
}

absl::StatusOr<std::string> StoreKeys::WithFirstKeyOnly(absl::string_view text,
                                                        absl::string_view where) {
  absl::StatusOr<StoreKeys> keys = Parse(text, where);
  if (!keys.ok()) return keys.status();
  std::vector<absl::string_view> kept;
  bool first_seen = false;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    const absl::string_view stripped = absl::StripAsciiWhitespace(line);
    if (!stripped.empty() && !absl::StartsWith(stripped, "#")) {
      if (first_seen) continue;
      first_seen = true;
    }
    kept.push_back(line);
  }
  return absl::StrJoin(kept, "\n");
}

std::vector<std::string> StoreKeys::key_ids() const {
  std::vector<std::string> ids;
  ids.reserve(keys_.size());
  for (const Key& key : keys_) ids.push_back(key.id);
  return ids;
}

bool StoreKeys::HasKey(absl::string_view key_id) const {
  for (const Key& key : keys_) {
    if (key.id == key_id) return true;
  }
  return false;
}

bool StoreKeys::IsSealed(absl::string_view value) {
  return absl::StartsWith(value, kEnvelopePrefix);
}

std::string StoreKeys::KeyIdOf(absl::string_view value) {
  if (!absl::ConsumePrefix(&value, kEnvelopePrefix) ||
      !absl::ConsumePrefix(&value, absl::StrCat(kVersion, ":"))) {
    return "";
  }
  const size_t colon = value.find(':');
  return colon == absl::string_view::npos ? "" : std::string(value.substr(0, colon));
}

absl::StatusOr<std::string> StoreKeys::Seal(absl::string_view name,
                                            absl::string_view plaintext) const {
  const Key& key = keys_.front();
  bssl::ScopedEVP_AEAD_CTX ctx;
  if (!EVP_AEAD_CTX_init(ctx.get(), EVP_aead_aes_256_gcm(), key.bytes.data(), kKeyBytes, kTagBytes,
                         nullptr)) {
    return absl::InternalError("store encryption: cannot set up AES-256-GCM");
  }
  std::string out(kNonceBytes + plaintext.size() + kTagBytes, '\0');
  auto* nonce = reinterpret_cast<uint8_t*>(out.data());
  RAND_bytes(nonce, kNonceBytes);
  const std::string ad = AssociatedData(key.id, name);
  size_t sealed = 0;
  if (!EVP_AEAD_CTX_seal(ctx.get(), nonce + kNonceBytes, &sealed, out.size() - kNonceBytes, nonce,
                         kNonceBytes, reinterpret_cast<const uint8_t*>(plaintext.data()),
                         plaintext.size(), reinterpret_cast<const uint8_t*>(ad.data()),
                         ad.size())) {
    return absl::InternalError("store encryption: sealing failed");
  }
  out.resize(kNonceBytes + sealed);
  return absl::StrCat(Header(key.id), absl::Base64Escape(out));
}

absl::StatusOr<std::string> StoreKeys::Open(absl::string_view name,
                                            absl::string_view sealed) const {
  const std::string key_id = KeyIdOf(sealed);
  if (key_id.empty()) {
    return absl::InvalidArgumentError(
        IsSealed(sealed) ? "encrypted in a format this version does not know" : "not encrypted");
  }
  const Key* key = nullptr;
  for (const Key& k : keys_) {
    if (k.id == key_id) key = &k;
  }
  if (key == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("encrypted with key ", key_id,
                                                      ", which this replica does not have (its "
                                                      "keys: ",
                                                      absl::StrJoin(key_ids(), ", "), ")"));
  }
  std::string bytes;
  if (!absl::Base64Unescape(sealed.substr(Header(key_id).size()), &bytes) ||
      bytes.size() < kNonceBytes + kTagBytes) {
    return absl::DataLossError("the encrypted value is damaged (not base64, or too short)");
  }
  bssl::ScopedEVP_AEAD_CTX ctx;
  if (!EVP_AEAD_CTX_init(ctx.get(), EVP_aead_aes_256_gcm(), key->bytes.data(), kKeyBytes, kTagBytes,
                         nullptr)) {
    return absl::InternalError("store encryption: cannot set up AES-256-GCM");
  }
  const auto* in = reinterpret_cast<const uint8_t*>(bytes.data());
  std::string plaintext(bytes.size() - kNonceBytes, '\0');
  const std::string ad = AssociatedData(key_id, name);
  size_t opened = 0;
  if (!EVP_AEAD_CTX_open(ctx.get(), reinterpret_cast<uint8_t*>(plaintext.data()), &opened,
                         plaintext.size(), in, kNonceBytes, in + kNonceBytes,
                         bytes.size() - kNonceBytes, reinterpret_cast<const uint8_t*>(ad.data()),
                         ad.size())) {
    return absl::DataLossError(
        absl::StrCat("the encrypted value does not authenticate with key ", key_id,
                     " (changed in the store, or copied from another record)"));
  }
  plaintext.resize(opened);
  return plaintext;
}

}  // namespace meshlet::controlplane

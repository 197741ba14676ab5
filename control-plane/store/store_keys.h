#pragma once

// StoreKeys: the keys that encrypt the control plane's secrets kept in a store shared by
// replicas (the ControlPlaneSecret records of shared_value.h: the API token, a generated CA root)
// so that etcd, its backups and whoever reads them hold ciphertext only. The keys come from a
// file mounted into the control plane alone (--store-encryption-key-file), never from the store.
//
// Key file: one key per line, each the base64 of 32 random bytes (what `meshctl install
// --secrets` writes; by hand: `head -c 32 /dev/urandom | base64`). The first line's key
// encrypts; every line's decrypts, so a key is replaced by putting the new one first and keeping
// the old one after it until no record is sealed with the old one (`meshctl install --secrets
// --rotate-store-key` does both steps; the replicas reload the file and re-seal, see
// store_key_ring.h). Empty lines and lines starting with '#' are ignored.
//
// A key's id: the first 8 bytes of SHA-256 of the key, in hex. It names the key in envelopes and
// errors and reveals nothing useful about it.
//
// Envelope (text, so it fits any store value):
//
//   meshlet-sealed:v1:<key id>:<base64 of nonce (12 bytes) || ciphertext || tag (16 bytes)>
//
// AES-256-GCM (BoringSSL's EVP_AEAD) with a random nonce per value; the associated data is
// "meshlet-sealed:v1:<key id>:<record name>", so a value copied under another record's name or
// relabelled with another key id does not open.
//
// Immutable after creation; safe to use from any thread.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshlet::controlplane {

class StoreKeys {
 public:
  static constexpr size_t kKeyBytes = 32;
  static constexpr char kEnvelopePrefix[] = "meshlet-sealed:";

  // Parses a key file's contents; `where` (the file's name) starts every error.
  static absl::StatusOr<StoreKeys> Parse(absl::string_view text, absl::string_view where);
  // Reads and parses `path`.
  static absl::StatusOr<StoreKeys> FromFile(const std::string& path);
  // One new random key, as a key file's line (base64, no newline).
  static std::string GenerateKeyText();

  // Key file texts for a rotation, each checked first as Parse does (`where` starts errors):
  // `text` with a fresh key on a line of its own before every other line (all kept, comments
  // included);
  static absl::StatusOr<std::string> WithNewFirstKey(absl::string_view text,
                                                     absl::string_view where);
  // `text` without the key lines after the first one (comments and empty lines kept).
  static absl::StatusOr<std::string> WithFirstKeyOnly(absl::string_view text,
                                                      absl::string_view where);

  // `plaintext` sealed for the record `name` with the first key.
  absl::StatusOr<std::string> Seal(absl::string_view name, absl::string_view plaintext) const;
  // The plaintext of `sealed`, the record `name`'s value. FailedPrecondition naming the key id
  // when none of these keys is that one; DataLoss when it does not authenticate (changed, or
  // another record's value); InvalidArgument when it is not an envelope of a known version.
  absl::StatusOr<std::string> Open(absl::string_view name, absl::string_view sealed) const;

  // Whether `value` is an envelope (of any version), i.e. not a plaintext value.
  static bool IsSealed(absl::string_view value);
  // The key id an envelope names ("" when `value` is no v1 envelope).
  static std::string KeyIdOf(absl::string_view value);

  // The id of the key that seals.
  const std::string& current_key_id() const { return keys_.front().id; }
  size_t size() const { return keys_.size(); }
  // Every key's id, the sealing one first.
  std::vector<std::string> key_ids() const;
  bool HasKey(absl::string_view key_id) const;

 private:
  struct Key {
    std::array<uint8_t, kKeyBytes> bytes;
    std::string id;
  };
  explicit StoreKeys(std::vector<Key> keys) : keys_(std::move(keys)) {}

  std::vector<Key> keys_;  // never empty
};

}  // namespace meshlet::controlplane

#pragma once

// OperatorTokens: the API credentials of operators (meshctl, the dashboard) and their roles
// (roles.h). Two kinds:
//
//   the bootstrap token   DATA_DIR/api-token (control-plane/api: LoadOrCreateToken): an admin
//                         credential named "api-token", so installs and scripts that use it keep
//                         working; with replicas on etcd, shared by them
//   operator tokens       named, each with a role and optionally an expiry, created, listed and
//                         revoked through the API (operator_token_api.h) by an admin
//
// An operator token reads "mot1.<name>.<secret>": <name> a DNS label naming its record, <secret>
// 256 random bits (base64url). Only the SHA-256 of the secret is stored, as the record
// OperatorToken/<name> of the store (so with etcd every replica knows it); the plaintext exists
// once, in the creation's answer. Presented secrets are compared by hash with CRYPTO_memcmp.
//
// Authentication reads an in-memory copy of the records that a store watch keeps current, so it
// costs no store call: a token created or revoked on this replica counts from the moment
// Create()/Revoke() returned; on other replicas once their etcd watch delivered the change
// (usually within milliseconds).
//
// Thread-safety: every method may be called from any thread. The copy is an immutable map
// replaced whole (an atomic shared_ptr); changes to it are serialised by a mutex.

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/stats/stats.h"
#include "control-plane/access/roles.h"
#include "control-plane/store/store.h"

namespace meshlet::controlplane::access {

// The store kind of operator-token records.
inline constexpr char kOperatorTokenKind[] = "OperatorToken";
// The principal name (and credential) of the bootstrap token.
inline constexpr char kBootstrapName[] = "api-token";

struct OperatorTokenSpec {
  std::string name;  // a DNS label, unique, not "api-token"
  Role role = Role::kViewer;
  absl::Duration ttl = absl::ZeroDuration();  // zero: never expires
  std::string created_by;                     // the principal who asked, for the record
};

// What is known about a token, without its secret.
struct OperatorTokenInfo {
  std::string name;
  Role role = Role::kViewer;
  absl::Time created_at;
  std::string created_by;
  std::optional<absl::Time> expires_at;  // none: never
};

struct CreatedOperatorToken {
  std::string token;  // the only time the plaintext exists
  OperatorTokenInfo info;
};

class OperatorTokens {
 public:
  // Reads the stored records and watches the store for changes. `bootstrap_token` must not be
  // empty. Store, clock and stats (may be null) must outlive this. Errors: the store's.
  static absl::StatusOr<std::unique_ptr<OperatorTokens>> Open(Store& store, const Clock& clock,
                                                              std::string bootstrap_token,
                                                              StatsRegistry* stats);
  ~OperatorTokens();  // stops watching
  OperatorTokens(const OperatorTokens&) = delete;
  OperatorTokens& operator=(const OperatorTokens&) = delete;

  // The principal `bearer` proves. Unauthenticated saying why (never echoing the secret) for
  // the bootstrap token's shape or an operator token that does not match; NotFound for a bearer
  // that is neither ("mot1." prefix, or the bootstrap token's length), which another kind of
  // credential (a Kubernetes user's token) may still prove.
  absl::StatusOr<Principal> Authenticate(absl::string_view bearer) const;

  // Validates the spec (InvalidArgument naming the field: "name: ...", "ttl: ..."), stores the
  // hashed record (AlreadyExists for a name in use) and returns the token. A store call.
  absl::StatusOr<CreatedOperatorToken> Create(const OperatorTokenSpec& spec);
  // Every operator token (not the bootstrap one), by name.
  std::vector<OperatorTokenInfo> List() const;
  // Deletes the record of `name` (NotFound if there is none). A store call.
  absl::Status Revoke(absl::string_view name);
  // The wall-clock time tokens expire by.
  absl::Time WallNow() const { return clock_.WallNow(); }

 private:
  struct Record {
    OperatorTokenInfo info;
    std::string secret_sha256;
    int64_t revision = 0;
  };
  using Records = std::map<std::string, Record, std::less<>>;

  OperatorTokens(Store& store, const Clock& clock, std::string bootstrap_token,
                 StatsRegistry* stats);
  // Applies a stored record or its deletion at `revision`, unless the copy already holds a newer
  // state of that name.
  void Apply(const StoredResource& stored, bool deleted);

  Store& store_;
  const Clock& clock_;
  const std::string bootstrap_token_;
  std::atomic<std::shared_ptr<const Records>> records_;
  std::mutex apply_mu_;  // serialises Apply
  // While Open() applies the first list: deletions seen by the watch meanwhile (name -> deleting
  // revision), so that the list does not bring them back.
  bool loading_ = true;
  std::map<std::string, int64_t, std::less<>> deleted_;
  std::unique_ptr<Store::WatchHandle> watch_;
  Counter created_;
  Counter revoked_;
};

// Decodes a stored record's body (for tests and tools). InvalidArgument/DataLoss on bad input.
absl::StatusOr<OperatorTokenInfo> ParseOperatorTokenRecord(absl::string_view name,
                                                           absl::string_view body);

}  // namespace meshlet::controlplane::access

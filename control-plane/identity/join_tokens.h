#pragma once

// Join tokens: the way a workload outside Kubernetes proves which identity it may have. An
// operator creates one for a namespace + service account (`meshctl token create`); the workload
// presents it with its first certificate request; the CA issues a certificate for that identity
// and nothing else, carrying the token's id (control-plane/identity/caller.h, Attestation). Later
// renewals authenticate with the current certificate instead, and are refused once the token
// they descend from is revoked (IsRevoked).
//
// Token text: "mjt1.<id>.<secret>", where <id> (16 hex digits) names the stored record and
// <secret> is 256 random bits (base64url). Only the SHA-256 of the secret is stored (as the
// `JoinToken` resource `jt-<id>` in the control plane's store, so tokens survive restarts); the
// plaintext is shown once, at creation. A token is time-limited (`ttl`) and optionally single
// use: redeeming a single-use token deletes its record with a compare-and-swap on the store
// revision, so two concurrent redemptions cannot both succeed.
//
// Thread-safety: every method may be called from any thread (the Store is thread-safe).

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/stats/stats.h"
#include "control-plane/identity/workload_identity.h"
#include "control-plane/store/store.h"

namespace meshlet::controlplane::identity {

struct JoinTokenSpec {
  std::string namespace_;
  std::string service_account;
  absl::Duration ttl = absl::Hours(1);
  bool single_use = false;
};

struct CreatedJoinToken {
  std::string token;  // the only time the plaintext exists outside the workload
  std::string id;
  absl::Time expires_at;
  bool single_use = false;
};

struct JoinTokenLimits {
  // Longest ttl accepted at creation: a join token is a bearer secret, keep it short-lived.
  absl::Duration max_ttl = absl::Hours(24 * 7);
  // How long a revocation is kept: at least the longest lifetime of a workload certificate (and
  // its backdating). A certificate that descends from a revoked token cannot be renewed, so once
  // this has passed none of them is left to check against.
  absl::Duration revocation_retention = absl::Hours(25);
};

// The store kinds of token records and of revocations.
inline constexpr char kJoinTokenKind[] = "JoinToken";
inline constexpr char kJoinTokenRevocationKind[] = "JoinTokenRevocation";

class JoinTokens {
 public:
  // `stats` registers meshlet_ca_join_tokens_created_total and
  // meshlet_ca_join_token_refusals_total{reason}. Store, clock and stats must outlive this.
  JoinTokens(Store& store, const Clock& clock, StatsRegistry& stats, JoinTokenLimits limits = {});

  // Validates the spec (names, 0 < ttl <= max_ttl), stores the hashed record, returns the token.
  absl::StatusOr<CreatedJoinToken> Create(const JoinTokenSpec& spec);

  // Checks `token` and returns the identity it proves. When `requested` is given it must be
  // that identity: a token for another identity is refused (PermissionDenied), logged and
  // counted, and a single-use token is not consumed by such a refused attempt. Unknown, expired,
  // already used or malformed tokens are PermissionDenied too (the message says which, without
  // revealing anything about other tokens). Success consumes a single-use token.
  absl::StatusOr<WorkloadIdentity> Redeem(absl::string_view token,
                                          const WorkloadIdentity* requested = nullptr);

  // Which refusal a Redeem or RevokedError error is ("malformed", "unknown", "expired", "used",
  // "wrong_identity", "revoked"); "" for other errors.
  static std::string RefusalReason(const absl::Status& status);
  // The PermissionDenied for a certificate that descends from revoked token `id`.
  static absl::Status RevokedError(absl::string_view id);

  // The id of a well-formed token text ("" otherwise): what a certificate's attestation names.
  static std::string IdOf(absl::string_view token);

  // Revokes `id`: records the revocation for revocation_retention (so certificates descending
  // from the token are refused renewal) and deletes the token's record. The revocation is
  // recorded even when the token's record is gone (used, expired or purged: certificates it
  // bought may still be renewing), but then NotFound says there was no such token.
  // InvalidArgument for an id that is not 16 lowercase hex digits.
  absl::Status Revoke(absl::string_view id);
  // Whether `id` was revoked (within revocation_retention). Errors are the store's.
  absl::StatusOr<bool> IsRevoked(absl::string_view id);
  // Deletes expired token records and revocations past their retention; returns how many. For a
  // periodic timer of the owner.
  absl::StatusOr<size_t> PurgeExpired();

 private:
  absl::Status Refuse(absl::string_view reason, absl::string_view message);

  Store& store_;
  const Clock& clock_;
  const JoinTokenLimits limits_;
  StatsRegistry& stats_;
  Counter created_;
  Counter revocations_;
};

}  // namespace meshlet::controlplane::identity

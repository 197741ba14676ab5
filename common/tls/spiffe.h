#pragma once

// SPIFFE identities (https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md) and the
// policy that decides which peer identities a TLS endpoint accepts.
//
// SpiffeId is a validated value type. SpiffeIdMatcher is immutable once built and safe to share
// between threads; TLS contexts and sessions copy it.

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshlet::tls {

// A parsed, validated SPIFFE id: spiffe://<trust_domain><path>.
class SpiffeId {
 public:
  // Validates strictly per the SPIFFE spec: scheme "spiffe", lowercase trust domain of
  // [a-z0-9.-_], no port/userinfo/query/fragment, and a path of non-empty segments of
  // [A-Za-z0-9.-_] that are not "." or "..". The path may be empty.
  static absl::StatusOr<SpiffeId> Parse(absl::string_view text);

  const std::string& trust_domain() const { return trust_domain_; }
  // "" or "/ns/default/sa/frontend".
  const std::string& path() const { return path_; }
  std::string ToString() const { return "spiffe://" + trust_domain_ + path_; }

  friend bool operator==(const SpiffeId& a, const SpiffeId& b) {
    return a.trust_domain_ == b.trust_domain_ && a.path_ == b.path_;
  }

 private:
  SpiffeId(std::string trust_domain, std::string path)
      : trust_domain_(std::move(trust_domain)), path_(std::move(path)) {}

  std::string trust_domain_;
  std::string path_;
};

// Validates a trust domain name ("cluster.local").
absl::Status ValidateTrustDomain(absl::string_view trust_domain);

// Which peer SPIFFE ids are allowed: any of a set of exact ids, or any id inside one of a set of
// trust domains. An empty matcher allows nothing (fail closed).
class SpiffeIdMatcher {
 public:
  SpiffeIdMatcher() = default;

  // `exact_ids` are full SPIFFE ids. `trust_domains` accept either "cluster.local" or
  // "spiffe://cluster.local" (a trailing "/" is allowed). Every entry is validated.
  static absl::StatusOr<SpiffeIdMatcher> Create(const std::vector<std::string>& exact_ids,
                                                const std::vector<std::string>& trust_domains);
  // Ids as allowed_peer_ids / expected_peer_ids spell them: "spiffe://td/*" accepts the trust
  // domain, anything else is one exact SPIFFE id. Configuration validation and the TLS
  // contexts both use it, so an id validation accepts always builds.
  static absl::StatusOr<SpiffeIdMatcher> FromPatterns(const std::vector<std::string>& patterns);

  bool Matches(const SpiffeId& id) const;
  bool empty() const { return exact_ids_.empty() && trust_domains_.empty(); }

  // For error messages: "[spiffe://cluster.local/ns/a/sa/b, spiffe://prod.example/*]".
  std::string Describe() const;

 private:
  std::vector<SpiffeId> exact_ids_;
  std::vector<std::string> trust_domains_;
};

}  // namespace meshlet::tls

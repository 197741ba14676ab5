#include "common/tls/spiffe.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace meshlet::tls {
namespace {

constexpr absl::string_view kScheme = "spiffe://";
// The spec caps an id at 2048 bytes and a trust domain at 255.
constexpr size_t kMaxIdLength = 2048;
constexpr size_t kMaxTrustDomainLength = 255;

bool IsTrustDomainChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

bool IsPathChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_';
}

}  // namespace

absl::Status ValidateTrustDomain(absl::string_view trust_domain) {
  if (trust_domain.empty()) return absl::InvalidArgumentError("trust domain is empty");
  if (trust_domain.size() > kMaxTrustDomainLength) {
    return absl::InvalidArgumentError("trust domain is longer than 255 bytes");
  }
  for (char c : trust_domain) {
    if (!IsTrustDomainChar(c)) {
      return absl::InvalidArgumentError(
          absl::StrCat("trust domain \"", trust_domain,
                       "\" has a character outside [a-z0-9.-_] (ports, userinfo and uppercase "
                       "are not allowed)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<SpiffeId> SpiffeId::Parse(absl::string_view text) {
  if (text.size() > kMaxIdLength) {
    return absl::InvalidArgumentError("SPIFFE id is longer than 2048 bytes");
  }
  // The scheme is case-insensitive in URIs, but SPIFFE requires lowercase ids throughout.
  if (!absl::StartsWith(text, kScheme)) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\" is not a SPIFFE id: it must start with spiffe://"));
  }
  absl::string_view rest = text.substr(kScheme.size());
  size_t slash = rest.find('/');
  absl::string_view domain = rest.substr(0, slash);
  absl::string_view path = slash == absl::string_view::npos ? "" : rest.substr(slash);
  if (absl::Status s = ValidateTrustDomain(domain); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("SPIFFE id \"", text, "\": ", s.message()));
  }
  if (!path.empty()) {
    // path starts with '/'; each segment after it must be non-empty and plain.
    for (absl::string_view segment : absl::StrSplit(path.substr(1), '/')) {
      if (segment.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("SPIFFE id \"", text, "\" has an empty path segment"));
      }
      if (segment == "." || segment == "..") {
        return absl::InvalidArgumentError(
            absl::StrCat("SPIFFE id \"", text, "\" has a relative path segment"));
      }
      for (char c : segment) {
        if (!IsPathChar(c)) {
          return absl::InvalidArgumentError(
              absl::StrCat("SPIFFE id \"", text,
                           "\" has a path character outside [A-Za-z0-9.-_] (query, fragment "
                           "and percent-encoding are not allowed)"));
        }
      }
    }
  }
  return SpiffeId(std::string(domain), std::string(path));
}

absl::StatusOr<SpiffeIdMatcher> SpiffeIdMatcher::Create(
    const std::vector<std::string>& exact_ids, const std::vector<std::string>& trust_domains) {
  SpiffeIdMatcher matcher;
  for (const std::string& id : exact_ids) {
    absl::StatusOr<SpiffeId> parsed = SpiffeId::Parse(id);
    if (!parsed.ok()) return parsed.status();
    matcher.exact_ids_.push_back(*std::move(parsed));
  }
  for (const std::string& entry : trust_domains) {
    absl::string_view domain = entry;
    if (absl::StartsWith(domain, kScheme)) domain.remove_prefix(kScheme.size());
    if (absl::EndsWith(domain, "/")) domain.remove_suffix(1);
    if (absl::Status s = ValidateTrustDomain(domain); !s.ok()) return s;
    matcher.trust_domains_.emplace_back(domain);
  }
  return matcher;
}

absl::StatusOr<SpiffeIdMatcher> SpiffeIdMatcher::FromPatterns(
    const std::vector<std::string>& patterns) {
  std::vector<std::string> exact;
  std::vector<std::string> domains;
  for (const std::string& pattern : patterns) {
    if (absl::StartsWith(pattern, kScheme) && absl::EndsWith(pattern, "/*")) {
      domains.push_back(pattern.substr(0, pattern.size() - 2));
    } else {
      exact.push_back(pattern);
    }
  }
  return Create(exact, domains);
}

bool SpiffeIdMatcher::Matches(const SpiffeId& id) const {
  for (const SpiffeId& allowed : exact_ids_) {
    if (allowed == id) return true;
  }
  for (const std::string& domain : trust_domains_) {
    if (domain == id.trust_domain()) return true;
  }
  return false;
}

std::string SpiffeIdMatcher::Describe() const {
  std::vector<std::string> parts;
  parts.reserve(exact_ids_.size() + trust_domains_.size());
  for (const SpiffeId& id : exact_ids_) parts.push_back(id.ToString());
  for (const std::string& domain : trust_domains_) {
    parts.push_back(absl::StrCat("spiffe://", domain, "/*"));
  }
  return absl::StrCat("[", absl::StrJoin(parts, ", "), "]");
}

}  // namespace meshlet::tls

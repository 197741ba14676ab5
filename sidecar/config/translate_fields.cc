#include "sidecar/config/translate_internal.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace meshlet::sidecar::config::translate_internal {
namespace {

constexpr size_t kMaxReportedErrors = 20;

}  // namespace

absl::Status Errors::ToStatus() const {
  if (list_.empty()) return absl::OkStatus();
  std::vector<std::string> shown(list_.begin(),
                                 list_.begin() + std::min(list_.size(), kMaxReportedErrors));
  std::string message = absl::StrJoin(shown, "\n");
  if (list_.size() > kMaxReportedErrors) {
    absl::StrAppend(&message, "\n(and ", list_.size() - kMaxReportedErrors, " more errors)");
  }
  return absl::InvalidArgumentError(message);
}

bool ValidName(absl::string_view name) {
  if (name.empty()) return false;
  for (unsigned char c : name) {
    if (c <= 0x20 || c == 0x7f) return false;
  }
  return true;
}

std::string PolicySourceName(Errors::Scope& scope, absl::string_view path,
                             const xds::PolicySource& source, bool route) {
  if (source.kind().empty()) return "";
  bool valid = true;
  for (const auto& [field, value] :
       {std::pair<absl::string_view, const std::string*>{"kind", &source.kind()},
        {"namespace", &source.namespace_()},
        {"name", &source.name()}}) {
    // An object without a namespace (MeshConfig) leaves it empty.
    if (field == "namespace" && value->empty()) continue;
    if (!ValidName(*value) || absl::StrContains(*value, '/')) {
      scope.Add(Join(path, field),
                "must be a name: not empty, without spaces, control "
                "characters or '/'");
      valid = false;
    }
  }
  if (route && (source.rule() < -1 || source.match() < -1)) {
    scope.Add(path, "rule and match must be -1 (none) or an index");
    valid = false;
  }
  if (!valid) return "";
  if (source.namespace_().empty()) return absl::StrCat(source.kind(), "/", source.name());
  return absl::StrCat(source.kind(), "/", source.namespace_(), "/", source.name());
}

void CheckName(Errors::Scope& scope, absl::string_view name) {
  if (name.empty()) {
    scope.Add("name", "must not be empty");
  } else if (!ValidName(name)) {
    scope.Add("name", "must not contain spaces or control characters");
  }
}

bool ValidHost(absl::string_view host) {
  if (host.empty()) return false;
  for (unsigned char c : host) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '-' && c != '_' && c != ':' && c != '[' &&
        c != ']') {
      return false;
    }
  }
  return true;
}

std::optional<Duration> ToDuration(const google::protobuf::Duration& d) {
  constexpr int64_t kMaxSeconds = 315'576'000'000;  // 10,000 years, the protobuf limit
  if (d.seconds() > kMaxSeconds || d.seconds() < -kMaxSeconds) return std::nullopt;
  if (d.nanos() <= -1'000'000'000 || d.nanos() >= 1'000'000'000) return std::nullopt;
  if ((d.seconds() > 0 && d.nanos() < 0) || (d.seconds() < 0 && d.nanos() > 0)) {
    return std::nullopt;
  }
  // 10,000 years of nanoseconds overflow int64; clamp to what Duration holds (~292 years).
  if (d.seconds() > Duration::max().count() / 1'000'000'000 - 1) return Duration::max();
  if (d.seconds() < Duration::min().count() / 1'000'000'000 + 1) return Duration::min();
  return std::chrono::seconds(d.seconds()) + std::chrono::nanoseconds(d.nanos());
}

void ReadDuration(Errors::Scope& scope, absl::string_view path, bool has,
                  const google::protobuf::Duration& value, DurationRule rule, Duration* out) {
  if (!has) return;
  std::optional<Duration> d = ToDuration(value);
  if (!d.has_value()) {
    scope.Add(path, "not a valid duration");
    return;
  }
  if (rule == DurationRule::kPositive && *d <= Duration::zero()) {
    scope.Add(path, "must be greater than 0");
    return;
  }
  if (rule == DurationRule::kNonNegative && *d < Duration::zero()) {
    scope.Add(path, "must not be negative");
    return;
  }
  *out = *d;
}

void CheckPercentage(Errors::Scope& scope, absl::string_view path, double value) {
  if (!(value >= 0.0 && value <= 100.0)) scope.Add(path, "must be in [0, 100]");
}

void CheckStatusCode(Errors::Scope& scope, absl::string_view path, uint32_t code) {
  if (code < 100 || code > 599) scope.Add(path, "must be an HTTP status in [100, 599]");
}

std::string Label(absl::string_view kind, absl::string_view name) {
  return absl::StrCat(kind, " ", Quote(name));
}

}  // namespace meshlet::sidecar::config::translate_internal

namespace meshlet::sidecar::config {

route::SourceName SourceNames::Intern(absl::string_view text) {
  if (text.empty()) return route::SourceName();
  if (auto it = names_.find(text); it != names_.end()) return it->second;
  if (names_.size() >= prune_at_) {
    // Held by the table alone: no route of a live snapshot names it any more.
    absl::erase_if(names_, [](const auto& entry) { return entry.second.unique(); });
    prune_at_ = std::max<size_t>(64, 2 * names_.size());
  }
  route::SourceName name(text);
  names_.emplace(name.view(), name);
  return name;
}

}  // namespace meshlet::sidecar::config

#include "common/stats/names.h"

#include <cstdint>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace meshlet::stats_internal {
namespace {

bool IsLowerSnakeStart(char c) { return (c >= 'a' && c <= 'z') || c == '_'; }
bool IsLowerSnake(char c) { return IsLowerSnakeStart(c) || (c >= '0' && c <= '9'); }

// Returns the first offending character's description, or "" when `name` is lower snake_case.
std::string SnakeCaseProblem(absl::string_view name) {
  if (name.empty()) return "is empty";
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (i == 0 ? IsLowerSnakeStart(c) : IsLowerSnake(c)) continue;
    if (c == ':') return "contains ':', which is reserved for recording rules";
    if (c >= 'A' && c <= 'Z') return "must be lower snake_case (found an upper-case letter)";
    if (i == 0 && c >= '0' && c <= '9') return "must not start with a digit";
    return absl::StrCat("contains an invalid character at offset ", i,
                        " (allowed: [a-z0-9_], not starting with a digit)");
  }
  return "";
}

}  // namespace

absl::Status ValidateMetricName(absl::string_view name, MetricType type,
                                absl::string_view required_prefix) {
  if (std::string problem = SnakeCaseProblem(name); !problem.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("metric name \"", name, "\" ", problem));
  }
  if (!absl::StartsWith(name, required_prefix) || name.size() == required_prefix.size()) {
    return absl::InvalidArgumentError(absl::StrCat("metric name \"", name, "\" must start with \"",
                                                   required_prefix, "\" and name something"));
  }
  const bool total = absl::EndsWith(name, "_total");
  if (type == MetricType::kCounter && !total) {
    return absl::InvalidArgumentError(
        absl::StrCat("counter name \"", name, "\" must end in \"_total\""));
  }
  if (type != MetricType::kCounter && total) {
    return absl::InvalidArgumentError(absl::StrCat(
        MetricTypeName(type), " name \"", name, "\" must not end in \"_total\" (counters only)"));
  }
  for (absl::string_view suffix : {"_bucket", "_sum", "_count"}) {
    if (absl::EndsWith(name, suffix)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "metric name \"", name, "\" must not end in \"", suffix, "\" (histogram sample suffix)"));
    }
  }
  if (absl::StrContains(name, MetricTypeName(type))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metric name \"", name, "\" must not contain its type \"", MetricTypeName(type), "\""));
  }
  return absl::OkStatus();
}

absl::Status ValidateLabelName(absl::string_view name, MetricType type) {
  if (std::string problem = SnakeCaseProblem(name); !problem.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("label name \"", name, "\" ", problem));
  }
  if (absl::StartsWith(name, "__")) {
    return absl::InvalidArgumentError(
        absl::StrCat("label name \"", name, "\" must not start with \"__\" (reserved)"));
  }
  if (type == MetricType::kHistogram && name == "le") {
    return absl::InvalidArgumentError("label name \"le\" is reserved for histogram buckets");
  }
  return absl::OkStatus();
}

absl::Status ValidateHelp(absl::string_view help) {
  if (help.empty()) return absl::InvalidArgumentError("help text must not be empty");
  if (!IsValidUtf8(help)) return absl::InvalidArgumentError("help text is not valid UTF-8");
  return absl::OkStatus();
}

}  // namespace meshlet::stats_internal

namespace meshlet::stats_internal {
namespace {

// Appends `text`, replacing each byte that `escape` maps to a non-empty string.
template <typename Escape>
void AppendEscaped(std::string* out, absl::string_view text, Escape escape) {
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const absl::string_view replacement = escape(text[i]);
    if (replacement.empty()) continue;
    out->append(text.data() + start, i - start);
    out->append(replacement.data(), replacement.size());
    start = i + 1;
  }
  out->append(text.data() + start, text.size() - start);
}

}  // namespace

void AppendEscapedLabelValue(std::string* out, absl::string_view value) {
  AppendEscaped(out, value, [](char c) -> absl::string_view {
    switch (c) {
      case '\\':
        return "\\\\";
      case '"':
        return "\\\"";
      case '\n':
        return "\\n";
      default:
        return "";
    }
  });
}

void AppendEscapedHelp(std::string* out, absl::string_view help) {
  AppendEscaped(out, help, [](char c) -> absl::string_view {
    switch (c) {
      case '\\':
        return "\\\\";
      case '\n':
        return "\\n";
      default:
        return "";
    }
  });
}

}  // namespace meshlet::stats_internal

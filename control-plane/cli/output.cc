#include "control-plane/cli/output.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "control-plane/inject/node.h"

namespace meshlet::controlplane::cli {
namespace {

// Would a plain (unquoted) scalar with this text read back as something other than a string?
bool NeedsQuotes(const std::string& s) {
  if (s.empty()) return true;
  static const char* kSpecial[] = {"true", "false", "yes",   "no",   "on",  "off", "null",
                                   "~",    "True",  "False", "Yes",  "No",  "On",  "Off",
                                   "Null", "TRUE",  "FALSE", "NULL", "YES", "NO",  "ON",
                                   "OFF",  "y",     "n",     "Y",    "N"};
  for (const char* k : kSpecial) {
    if (s == k) return true;
  }
  double d;
  if (absl::SimpleAtod(s, &d)) return true;
  return false;
}

void Emit(YAML::Emitter& out, const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      out << YAML::BeginMap;
      for (auto it = node.begin(); it != node.end(); ++it) {
        out << YAML::Key << it->first.Scalar() << YAML::Value;
        Emit(out, it->second);
      }
      out << YAML::EndMap;
      break;
    case YAML::NodeType::Sequence:
      out << YAML::BeginSeq;
      for (auto it = node.begin(); it != node.end(); ++it) Emit(out, *it);
      out << YAML::EndSeq;
      break;
    case YAML::NodeType::Scalar:
      // A quoted JSON string has tag "!"; keep it a string when YAML would read it otherwise.
      if (node.Tag() == "!" && NeedsQuotes(node.Scalar())) {
        out << YAML::DoubleQuoted << node.Scalar();
      } else {
        out << node.Scalar();
      }
      break;
    default:
      out << YAML::Null;
  }
}

}  // namespace

absl::StatusOr<std::string> JsonToYaml(absl::string_view json) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(json));
  } catch (const YAML::Exception& e) {
    return absl::DataLossError(absl::StrCat("response is not JSON: ", e.msg));
  }
  return NodeToYaml(root);
}

std::string NodeToYaml(const YAML::Node& node) {
  YAML::Emitter out;
  out.SetIndent(2);
  out.SetMapFormat(YAML::Block);
  out.SetSeqFormat(YAML::Block);
  Emit(out, node);
  return std::string(out.c_str()) + "\n";
}

std::string UnifiedDiff(absl::string_view old_text, absl::string_view new_text,
                        absl::string_view old_name, absl::string_view new_name, int context) {
  if (old_text == new_text) return "";
  std::vector<absl::string_view> a = absl::StrSplit(old_text, '\n');
  std::vector<absl::string_view> b = absl::StrSplit(new_text, '\n');
  if (!a.empty() && a.back().empty()) a.pop_back();
  if (!b.empty() && b.back().empty()) b.pop_back();
  // Longest common subsequence table; documents are small (hundreds of lines).
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<int>> lcs(n + 1, std::vector<int>(m + 1, 0));
  for (size_t i = n; i-- > 0;) {
    for (size_t j = m; j-- > 0;) {
      lcs[i][j] = a[i] == b[j] ? lcs[i + 1][j + 1] + 1 : std::max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  struct Line {
    char op;
    absl::string_view text;
  };
  std::vector<Line> lines;
  size_t i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] == b[j]) {
      lines.push_back({' ', a[i]});
      ++i;
      ++j;
    } else if (i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1])) {
      lines.push_back({'-', a[i++]});  // removals first, as diff(1) prints them
    } else {
      lines.push_back({'+', b[j++]});
    }
  }
  std::string out = absl::StrCat("--- ", old_name, "\n+++ ", new_name, "\n");
  // Print changed lines with up to `context` unchanged lines around them.
  std::vector<bool> show(lines.size(), false);
  for (size_t k = 0; k < lines.size(); ++k) {
    if (lines[k].op == ' ') continue;
    const size_t from = k >= static_cast<size_t>(context) ? k - context : 0;
    const size_t to = std::min(lines.size(), k + context + 1);
    for (size_t x = from; x < to; ++x) show[x] = true;
  }
  bool gap = false;
  for (size_t k = 0; k < lines.size(); ++k) {
    if (!show[k]) {
      gap = true;
      continue;
    }
    if (gap) out += "@@\n";
    gap = false;
    absl::StrAppend(&out, std::string(1, lines[k].op), lines[k].text, "\n");
  }
  return out;
}

std::string FormatTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line += std::string(widths[c] - row[c].size() + 3, ' ');
    }
    out += line + "\n";
  }
  return out;
}

std::string Scalar(const YAML::Node& node) {
  if (!node || node.IsNull() || !node.IsScalar()) return "";
  return node.Scalar();
}

YAML::Node At(YAML::Node node, std::initializer_list<absl::string_view> path) {
  for (absl::string_view key : path) node.reset(inject::Field(node, key));
  return node;
}

std::string Age(absl::string_view rfc3339, absl::Time now) {
  absl::Time t;
  std::string error;
  if (rfc3339.empty() || !absl::ParseTime(absl::RFC3339_full, std::string(rfc3339), &t, &error)) {
    return "<unknown>";
  }
  const int64_t seconds = std::max<int64_t>(0, absl::ToInt64Seconds(now - t));
  if (seconds < 120) return absl::StrCat(seconds, "s");
  if (seconds < 2 * 3600) return absl::StrCat(seconds / 60, "m");
  if (seconds < 2 * 86400) return absl::StrCat(seconds / 3600, "h");
  return absl::StrCat(seconds / 86400, "d");
}

std::string SidecarRelease(absl::string_view sidecar_version) {
  if (sidecar_version.empty()) return "<unknown>";
  absl::ConsumePrefix(&sidecar_version, "meshlet-sidecar ");
  return std::string(sidecar_version);
}

}  // namespace meshlet::controlplane::cli

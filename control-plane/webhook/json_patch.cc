#include "control-plane/webhook/json_patch.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/json.h"
#include "control-plane/inject/node.h"

namespace meshlet::controlplane::webhook {
namespace {

using inject::Equal;
using inject::ToCompactJson;

void Op(std::vector<std::string>& ops, absl::string_view op, const std::string& path,
        const YAML::Node* value) {
  std::string out = absl::StrCat("{\"op\":\"", op, "\",\"path\":", JsonQuote(path));
  if (value != nullptr) absl::StrAppend(&out, ",\"value\":", ToCompactJson(*value));
  out += "}";
  ops.push_back(std::move(out));
}

// Whether `before`'s items are the first items of `after`.
bool IsPrefix(const YAML::Node& before, const YAML::Node& after) {
  if (before.size() > after.size()) return false;
  for (size_t i = 0; i < before.size(); ++i) {
    if (!Equal(before[i], after[i])) return false;
  }
  return true;
}

void Diff(std::vector<std::string>& ops, const std::string& path, const YAML::Node& before,
          const YAML::Node& after) {
  if (Equal(before, after)) return;
  if (before.IsMap() && after.IsMap()) {
    for (auto it = before.begin(); it != before.end(); ++it) {
      const std::string key = it->first.Scalar();
      bool kept = false;
      for (auto a = after.begin(); a != after.end() && !kept; ++a) kept = a->first.Scalar() == key;
      if (!kept) Op(ops, "remove", absl::StrCat(path, "/", EscapePointerToken(key)), nullptr);
    }
    for (auto a = after.begin(); a != after.end(); ++a) {
      const std::string key = a->first.Scalar();
      const std::string child = absl::StrCat(path, "/", EscapePointerToken(key));
      YAML::Node old_value;
      bool found = false;
      for (auto it = before.begin(); it != before.end() && !found; ++it) {
        if (it->first.Scalar() == key) {
          old_value = it->second;
          found = true;
        }
      }
      if (!found) {
        Op(ops, "add", child, &a->second);
      } else {
        Diff(ops, child, old_value, a->second);
      }
    }
    return;
  }
  if (before.IsSequence() && after.IsSequence() && IsPrefix(before, after)) {
    for (size_t i = before.size(); i < after.size(); ++i) {
      const YAML::Node item = after[i];
      Op(ops, "add", absl::StrCat(path, "/-"), &item);
    }
    return;
  }
  Op(ops, "replace", path, &after);
}

}  // namespace

std::string EscapePointerToken(const std::string& key) {
  std::string out;
  out.reserve(key.size());
  for (char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

std::string JsonPatch(const YAML::Node& before, const YAML::Node& after) {
  std::vector<std::string> ops;
  Diff(ops, "", before, after);
  return absl::StrCat("[", absl::StrJoin(ops, ","), "]");
}

}  // namespace meshlet::controlplane::webhook

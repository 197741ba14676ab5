#include "cni/conflist.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cni/json.h"
#include "cni/plugin.h"

namespace meshlet::cni {
namespace {

bool HasConfExtension(absl::string_view name) {
  return absl::EndsWith(name, ".conf") || absl::EndsWith(name, ".conflist") ||
         absl::EndsWith(name, ".json");
}

absl::Status Invalid(absl::string_view name, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("CNI configuration \"", name, "\": ", what));
}

// Offset of `value`'s text in `text` (values are views into the text they were parsed from).
size_t Begin(absl::string_view text, const JsonValue& value) {
  return static_cast<size_t>(value.raw.data() - text.data());
}
size_t End(absl::string_view text, const JsonValue& value) {
  return Begin(text, value) + value.raw.size();
}

bool IsMeshletEntry(const JsonValue& entry) {
  const JsonValue* type = entry.Find("type");
  return type != nullptr && type->IsString() && type->text == kPluginType;
}

// The parsed file with its plugin list (null for a single network configuration).
struct Parsed {
  JsonValue root;
  const JsonValue* plugins = nullptr;
};

absl::StatusOr<Parsed> Parse(absl::string_view name, absl::string_view content) {
  absl::StatusOr<JsonValue> root = ParseJson(content);
  if (!root.ok()) return Invalid(name, root.status().message());
  Parsed parsed{.root = *std::move(root)};
  if (!parsed.root.IsObject()) return Invalid(name, "not a JSON object");
  const JsonValue* plugins = parsed.root.Find("plugins");
  if (plugins != nullptr) {
    if (plugins->type != JsonValue::Type::kArray) return Invalid(name, "\"plugins\" is not a list");
    for (const JsonValue& entry : plugins->items) {
      const JsonValue* type = entry.Find("type");
      if (!entry.IsObject() || type == nullptr || !type->IsString() || type->text.empty()) {
        return Invalid(name, "an entry of \"plugins\" has no \"type\"");
      }
    }
    parsed.plugins = plugins;
  } else {
    const JsonValue* type = parsed.root.Find("type");
    if (absl::EndsWith(name, ".conflist")) return Invalid(name, "no \"plugins\" list");
    if (type == nullptr || !type->IsString() || type->text.empty()) {
      return Invalid(name, "neither a \"plugins\" list nor a \"type\"");
    }
  }
  return parsed;
}

// One meshlet-cni entry taken out of `content`; false when there is none.
bool RemoveOne(absl::string_view content, const JsonValue& plugins, std::string* out) {
  const std::vector<JsonValue>& items = plugins.items;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!IsMeshletEntry(items[i])) continue;
    size_t from, to;
    if (i > 0) {  // the separator before it and the entry
      from = End(content, items[i - 1]);
      to = End(content, items[i]);
    } else if (items.size() > 1) {  // the entry and the separator after it
      from = Begin(content, items[0]);
      to = Begin(content, items[1]);
    } else {
      from = Begin(content, items[0]);
      to = End(content, items[0]);
    }
    *out = absl::StrCat(content.substr(0, from), content.substr(to));
    return true;
  }
  return false;
}

}  // namespace

std::optional<std::string> SelectConfFile(std::vector<std::string> names) {
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    if (!absl::StartsWith(name, ".") && HasConfExtension(name)) return name;
  }
  return std::nullopt;
}

absl::StatusOr<std::string> RemovePlugin(absl::string_view name, absl::string_view content) {
  std::string text(content);
  while (true) {
    absl::StatusOr<Parsed> parsed = Parse(name, text);
    if (!parsed.ok()) return parsed.status();
    if (parsed->plugins == nullptr) return text;
    std::string next;
    if (!RemoveOne(text, *parsed->plugins, &next)) return text;
    text = std::move(next);
  }
}

absl::StatusOr<PluginPlace> FindPlugin(absl::string_view name, absl::string_view content) {
  absl::StatusOr<Parsed> parsed = Parse(name, content);
  if (!parsed.ok()) return parsed.status();
  if (parsed->plugins == nullptr) return PluginPlace::kAbsent;
  const std::vector<JsonValue>& items = parsed->plugins->items;
  for (size_t i = 0; i < items.size(); ++i) {
    if (IsMeshletEntry(items[i])) {
      return i + 1 == items.size() ? PluginPlace::kLast : PluginPlace::kNotLast;
    }
  }
  return PluginPlace::kAbsent;
}

absl::StatusOr<EditedConf> InsertPlugin(absl::string_view name, absl::string_view content,
                                        absl::string_view plugin) {
  absl::StatusOr<JsonValue> entry = ParseJson(plugin);
  if (!entry.ok() || !entry->IsObject() || !IsMeshletEntry(*entry)) {
    return absl::InvalidArgumentError(
        absl::StrCat("meshlet-cni's entry is not a JSON object of type ", kPluginType));
  }
  absl::StatusOr<std::string> base = RemovePlugin(name, content);
  if (!base.ok()) return base.status();
  absl::StatusOr<Parsed> parsed = Parse(name, *base);
  if (!parsed.ok()) return parsed.status();
  const absl::string_view text = *base;
  if (parsed->plugins != nullptr) {
    const JsonValue& plugins = *parsed->plugins;
    // After the last entry, or just inside "[" when the list is empty.
    const size_t at =
        plugins.items.empty() ? Begin(text, plugins) + 1 : End(text, plugins.items.back());
    const absl::string_view separator = plugins.items.empty() ? "" : ", ";
    return EditedConf{
        .name = std::string(name),
        .content = absl::StrCat(text.substr(0, at), separator, plugin, text.substr(at)),
    };
  }
  // A single network configuration: the list holds it as it was written, then meshlet-cni.
  const JsonValue* version = parsed->root.Find("cniVersion");
  const JsonValue* network = parsed->root.Find("name");
  if (version == nullptr || !version->IsString() || network == nullptr || !network->IsString()) {
    return Invalid(name, "a single network configuration without \"cniVersion\" and \"name\"");
  }
  const absl::string_view stem = name.substr(0, name.rfind('.'));
  return EditedConf{
      .name = absl::StrCat(stem, ".conflist"),
      .content = absl::StrCat("{\"cniVersion\": ", version->raw, ", \"name\": ", network->raw,
                              ", \"plugins\": [", parsed->root.raw, ", ", plugin, "]}\n"),
  };
}

}  // namespace meshlet::cni

#include "control-plane/inject/node.h"

#include <cmath>
#include <cstdlib>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/base/json.h"
#include "common/config/yaml_proto.h"

namespace meshlet::controlplane::inject {
namespace {

bool OneOf(absl::string_view text, std::initializer_list<absl::string_view> words) {
  for (absl::string_view w : words) {
    if (text == w) return true;
  }
  return false;
}

bool IsTrueWord(absl::string_view text) {
  return OneOf(text, {"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"});
}

bool IsFalseWord(absl::string_view text) {
  return OneOf(text, {"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"});
}

bool IsNullWord(absl::string_view text) { return OneOf(text, {"", "~", "null", "Null", "NULL"}); }

bool IsSpecialFloat(absl::string_view text) {
  return OneOf(text, {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF",
                      ".nan", ".NaN", ".NAN"});
}

// A float as YAML 1.1 writes one, [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?, or
// with `json` a JSON number, -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?.
bool IsNumber(absl::string_view s, bool json) {
  size_t i = 0;
  auto digits = [&] {
    size_t start = i;
    while (i < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[i]))) ++i;
    return i - start;
  };
  if (i < s.size() && (s[i] == '-' || (!json && s[i] == '+'))) ++i;
  const size_t int_start = i;
  const size_t int_digits = digits();
  if (json && (int_digits == 0 || (int_digits > 1 && s[int_start] == '0'))) return false;
  if (i < s.size() && s[i] == '.') {
    ++i;
    // YAML: "1." and ".5" are floats, "." is not; JSON needs digits on both sides.
    if (digits() == 0 && (json || int_digits == 0)) return false;
  } else if (int_digits == 0) {
    return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    if (digits() == 0) return false;
  }
  return i == s.size();
}

// JSON text (an annotation such as sidecar.meshlet.io/status) that single quotes can hold as it
// is: it needs quotes anyway, and in double quotes each '"' would be escaped.
bool LooksLikeJson(absl::string_view s) {
  if (s.empty() || (s[0] != '{' && s[0] != '[') || !absl::StrContains(s, '"')) return false;
  for (char c : s) {
    if (c == '\'' || (static_cast<unsigned char>(c) < 0x20)) return false;
  }
  return true;
}

// Keys up to this long are written "key: value" whatever their escapes (at most 4 characters
// per byte, quotes aside, stay under YAML's 1024).
constexpr size_t kMaxImplicitKeyBytes = 250;

void EmitYaml(YAML::Emitter& out, const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      if (node.size() == 0) {
        out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
        return;
      }
      out << YAML::BeginMap;
      for (auto it = node.begin(); it != node.end(); ++it) {
        // An implicit key ("key: value") may be at most 1024 characters long (YAML 1.2, 7.4.2);
        // escapes take up to 4 per byte, so a longer key is written explicitly ("? key"). So is
        // a key that is a map or a sequence: yaml-cpp writes `{}` after a null value indented
        // as if it were inside it. (yaml-cpp keeps LongKey for the keys after it: Auto sets it
        // back.)
        const bool long_key =
            !it->first.IsScalar() || it->first.Scalar().size() > kMaxImplicitKeyBytes;
        out << (long_key ? YAML::LongKey : YAML::Auto) << YAML::Key;
        EmitYaml(out, it->first);
        out << YAML::Value;
        EmitYaml(out, it->second);
      }
      out << YAML::EndMap;
      return;
    case YAML::NodeType::Sequence:
      if (node.size() == 0) {
        out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
        return;
      }
      out << YAML::BeginSeq;
      for (auto it = node.begin(); it != node.end(); ++it) EmitYaml(out, *it);
      out << YAML::EndSeq;
      return;
    case YAML::NodeType::Scalar:
      // A string that would read back as another type is quoted; yaml-cpp quotes the others
      // when YAML's syntax needs it. Other types are written as they were.
      if (TypeOf(node) == ScalarType::kNull) {
        out << YAML::Null;  // also "" and text with a null tag (!x "", !!null x)
      } else if (TypeOf(node) == ScalarType::kString &&
                 PlainScalarType(node.Scalar()) != ScalarType::kString) {
        out << YAML::DoubleQuoted << node.Scalar();
      } else if (TypeOf(node) == ScalarType::kString && LooksLikeJson(node.Scalar())) {
        out << YAML::SingleQuoted << node.Scalar();  // readable: no \" inside
      } else {
        meshlet::config::EmitYamlString(out, node.Scalar());
      }
      return;
    default:
      out << YAML::Null;
  }
}

// depth < 0: compact (no white space).
void AppendJson(std::string& out, const YAML::Node& node, int depth) {
  const bool pretty = depth >= 0;
  const std::string indent = pretty ? std::string(2 * (depth + 1), ' ') : std::string();
  const std::string close_indent = pretty ? std::string(2 * depth, ' ') : std::string();
  const char* open_map = pretty ? "{\n" : "{";
  const char* open_seq = pretty ? "[\n" : "[";
  const char* separator = pretty ? ",\n" : ",";
  const char* close = pretty ? "\n" : "";
  const char* colon = pretty ? ": " : ":";
  const int next = pretty ? depth + 1 : -1;
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      if (node.size() == 0) {
        out += "{}";
        return;
      }
      out += open_map;
      bool first = true;
      for (auto it = node.begin(); it != node.end(); ++it) {
        absl::StrAppend(&out, first ? "" : separator, indent, JsonQuote(it->first.Scalar()), colon);
        AppendJson(out, it->second, next);
        first = false;
      }
      absl::StrAppend(&out, close, close_indent, "}");
      return;
    }
    case YAML::NodeType::Sequence: {
      if (node.size() == 0) {
        out += "[]";
        return;
      }
      out += open_seq;
      bool first = true;
      for (auto it = node.begin(); it != node.end(); ++it) {
        absl::StrAppend(&out, first ? "" : separator, indent);
        AppendJson(out, *it, next);
        first = false;
      }
      absl::StrAppend(&out, close, close_indent, "]");
      return;
    }
    case YAML::NodeType::Scalar:
      break;
    default:
      out += "null";
      return;
  }
  const std::string& text = node.Scalar();
  switch (TypeOf(node)) {
    case ScalarType::kNull:
      out += "null";
      return;
    case ScalarType::kBool:
      out += IsTrueWord(text) ? "true" : "false";
      return;
    case ScalarType::kInt: {
      int64_t value = 0;
      if (PlainInt(text, &value)) {
        absl::StrAppend(&out, value);
        return;
      }
      break;  // an explicit !!int tag on something else: keep the text
    }
    case ScalarType::kFloat: {
      const std::string plain = absl::StrReplaceAll(text, {{"_", ""}});
      if (IsNumber(plain, true)) {
        out += plain;
        return;
      }
      if (IsNumber(plain, false)) {
        const double value = std::strtod(plain.c_str(), nullptr);
        if (std::isfinite(value)) {
          out += absl::StrFormat("%.17g", value);
          return;
        }
      }
      break;  // .inf, .nan: JSON has no such number
    }
    case ScalarType::kString:
      break;
  }
  out += JsonQuote(text);
}

}  // namespace

ScalarType PlainScalarType(absl::string_view text) {
  if (IsNullWord(text)) return ScalarType::kNull;
  if (IsTrueWord(text) || IsFalseWord(text)) return ScalarType::kBool;
  if (IsSpecialFloat(text)) return ScalarType::kFloat;
  int64_t unused;
  if (PlainInt(text, &unused)) return ScalarType::kInt;
  if (IsNumber(absl::StrReplaceAll(text, {{"_", ""}}), false)) return ScalarType::kFloat;
  return ScalarType::kString;
}

ScalarType TypeOf(const YAML::Node& node) {
  if (!node.IsDefined()) return ScalarType::kString;
  if (node.IsNull()) return ScalarType::kNull;
  if (!node.IsScalar()) return ScalarType::kString;
  const std::string& tag = node.Tag();
  if (tag == "!") return ScalarType::kString;  // quoted, or made by StringNode
  if (tag.empty() || tag == "?") return PlainScalarType(node.Scalar());
  // An explicit standard tag (!!str, !!int, ...).
  if (absl::EndsWith(tag, ":str")) return ScalarType::kString;
  if (absl::EndsWith(tag, ":int")) return ScalarType::kInt;
  if (absl::EndsWith(tag, ":float")) return ScalarType::kFloat;
  if (absl::EndsWith(tag, ":bool")) return ScalarType::kBool;
  if (absl::EndsWith(tag, ":null")) return ScalarType::kNull;
  return PlainScalarType(node.Scalar());
}

bool IsTrue(const YAML::Node& node) {
  return node.IsDefined() && node.IsScalar() && TypeOf(node) == ScalarType::kBool &&
         IsTrueWord(node.Scalar());
}

bool PlainInt(absl::string_view text, int64_t* value) {
  std::string s = absl::StrReplaceAll(text, {{"_", ""}});
  absl::string_view rest = s;
  bool negative = false;
  if (!rest.empty() && (rest[0] == '-' || rest[0] == '+')) {
    negative = rest[0] == '-';
    rest.remove_prefix(1);
  }
  int base = 10;
  if (absl::ConsumePrefix(&rest, "0x") || absl::ConsumePrefix(&rest, "0X")) {
    base = 16;
  } else if (absl::ConsumePrefix(&rest, "0o") || absl::ConsumePrefix(&rest, "0O")) {
    base = 8;
  } else if (absl::ConsumePrefix(&rest, "0b") || absl::ConsumePrefix(&rest, "0B")) {
    base = 2;
  } else if (rest.size() > 1 && rest[0] == '0') {
    base = 8;
    rest.remove_prefix(1);
  }
  if (rest.empty()) return false;
  uint64_t magnitude = 0;
  constexpr uint64_t kLimit = uint64_t{1} << 63;  // |INT64_MIN|
  for (char c : rest) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else {
      return false;
    }
    if (digit >= base) return false;
    if (magnitude > (kLimit - digit) / base) return false;
    magnitude = magnitude * base + digit;
  }
  if (!negative && magnitude == kLimit) return false;
  *value = negative ? static_cast<int64_t>(0 - magnitude) : static_cast<int64_t>(magnitude);
  return true;
}

YAML::Node Field(const YAML::Node& map, absl::string_view key) {
  if (!map.IsDefined() || !map.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  const YAML::Node value = map[std::string(key)];
  return value.IsDefined() ? value : YAML::Node(YAML::NodeType::Undefined);
}

std::string Text(const YAML::Node& node) {
  return node.IsDefined() && node.IsScalar() ? node.Scalar() : "";
}

YAML::Node StringNode(absl::string_view text) {
  YAML::Node node(std::string{text});
  node.SetTag("!");
  return node;
}

YAML::Node IntNode(int64_t value) { return YAML::Node(absl::StrCat(value)); }

YAML::Node BoolNode(bool value) { return YAML::Node(value ? "true" : "false"); }

YAML::Node MapNode() { return YAML::Node(YAML::NodeType::Map); }

YAML::Node ListNode() { return YAML::Node(YAML::NodeType::Sequence); }

YAML::Node StringListNode(const std::vector<std::string>& items) {
  YAML::Node list = ListNode();
  for (const std::string& item : items) list.push_back(StringNode(item));
  return list;
}

bool Equal(const YAML::Node& a, const YAML::Node& b) {
  // A null node and an empty or ~ scalar (yaml-cpp makes either from the same text).
  if (TypeOf(a) == ScalarType::kNull || TypeOf(b) == ScalarType::kNull) {
    return TypeOf(a) == TypeOf(b);
  }
  if (a.Type() != b.Type()) return false;
  switch (a.Type()) {
    case YAML::NodeType::Map: {
      if (a.size() != b.size()) return false;
      for (auto i = a.begin(), j = b.begin(); i != a.end(); ++i, ++j) {
        // Keys are names (JSON has no other): compared by their text.
        if (Text(i->first) != Text(j->first) || !Equal(i->second, j->second)) return false;
      }
      return true;
    }
    case YAML::NodeType::Sequence: {
      if (a.size() != b.size()) return false;
      for (auto i = a.begin(), j = b.begin(); i != a.end(); ++i, ++j) {
        if (!Equal(*i, *j)) return false;
      }
      return true;
    }
    case YAML::NodeType::Scalar: {
      const ScalarType type = TypeOf(a);
      const ScalarType other = TypeOf(b);
      if (a.Scalar() == b.Scalar() && type == other) return true;
      // 0x10 and 16, 1. and 1, yes and true, ~ and null: written differently, the same JSON
      // value (JSON has one type of number).
      auto number = [](ScalarType t) { return t == ScalarType::kInt || t == ScalarType::kFloat; };
      if (type != other && !(number(type) && number(other))) return false;
      return type != ScalarType::kString && ToCompactJson(a) == ToCompactJson(b);
    }
    default:
      return true;
  }
}

bool HasKeyTooLongForYaml(const YAML::Node& node) {
  if (node.IsMap()) {
    for (auto i = node.begin(); i != node.end(); ++i) {
      // As AppendJson writes a key: its text, quoted.
      if (JsonQuote(i->first.Scalar()).size() > 1024 || HasKeyTooLongForYaml(i->second)) {
        return true;
      }
    }
  }
  for (size_t k = 0; node.IsSequence() && k < node.size(); ++k) {
    if (HasKeyTooLongForYaml(node[k])) return true;
  }
  return false;
}

std::string ToYaml(const YAML::Node& node) {
  YAML::Emitter out;
  out.SetIndent(2);
  out.SetMapFormat(YAML::Block);
  out.SetSeqFormat(YAML::Block);
  EmitYaml(out, node);
  return absl::StrCat(out.c_str(), "\n");
}

std::string ToJson(const YAML::Node& node) {
  std::string out;
  AppendJson(out, node, 0);
  out += "\n";
  return out;
}

std::string ToCompactJson(const YAML::Node& node) {
  std::string out;
  AppendJson(out, node, -1);
  return out;
}

}  // namespace meshlet::controlplane::inject

#include "common/jwt/jwt_json.h"

#include <cstdint>

namespace meshlet::jwt::jwt_json {
namespace internal {

size_t SkipSpace(absl::string_view text, size_t pos) {
  while (pos < text.size() &&
         (text[pos] == ' ' || text[pos] == '\t' || text[pos] == '\n' || text[pos] == '\r')) {
    ++pos;
  }
  return pos;
}

}  // namespace internal
namespace {

using internal::SkipSpace;

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Scans a string literal at text[pos] == '"'; returns the position past its closing quote, or
// npos. Control characters must be escaped; escapes must be well-formed.
size_t ScanString(absl::string_view text, size_t pos) {
  ++pos;
  while (pos < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[pos]);
    if (c == '"') return pos + 1;
    if (c < 0x20) return absl::string_view::npos;
    if (c != '\\') {
      ++pos;
      continue;
    }
    if (pos + 1 >= text.size()) return absl::string_view::npos;
    const char e = text[pos + 1];
    if (e == 'u') {
      if (pos + 6 > text.size()) return absl::string_view::npos;
      for (size_t i = pos + 2; i < pos + 6; ++i) {
        if (HexDigit(text[i]) < 0) return absl::string_view::npos;
      }
      pos += 6;
    } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' ||
               e == 't') {
      pos += 2;
    } else {
      return absl::string_view::npos;
    }
  }
  return absl::string_view::npos;
}

size_t ScanNumber(absl::string_view text, size_t pos) {
  auto digits = [&](size_t p) {
    const size_t start = p;
    while (p < text.size() && text[p] >= '0' && text[p] <= '9') ++p;
    return p == start ? absl::string_view::npos : p;
  };
  if (text[pos] == '-') ++pos;
  if (pos >= text.size()) return absl::string_view::npos;
  if (text[pos] == '0') {
    ++pos;
  } else {
    pos = digits(pos);
    if (pos == absl::string_view::npos) return pos;
  }
  if (pos < text.size() && text[pos] == '.') {
    pos = digits(pos + 1);
    if (pos == absl::string_view::npos) return pos;
  }
  if (pos < text.size() && (text[pos] == 'e' || text[pos] == 'E')) {
    ++pos;
    if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) ++pos;
    pos = digits(pos);
  }
  return pos;
}

size_t ScanAt(absl::string_view text, size_t pos, int depth);

size_t ScanContainer(absl::string_view text, size_t pos, int depth, char close, bool object) {
  if (depth <= 0) return absl::string_view::npos;
  pos = SkipSpace(text, pos + 1);
  if (pos < text.size() && text[pos] == close) return pos + 1;
  while (pos < text.size()) {
    if (object) {
      pos = SkipSpace(text, pos);
      if (pos >= text.size() || text[pos] != '"') return absl::string_view::npos;
      pos = ScanString(text, pos);
      if (pos == absl::string_view::npos) return pos;
      pos = SkipSpace(text, pos);
      if (pos >= text.size() || text[pos] != ':') return absl::string_view::npos;
      ++pos;
    }
    pos = ScanAt(text, pos, depth - 1);
    if (pos == absl::string_view::npos) return pos;
    pos = SkipSpace(text, pos);
    if (pos >= text.size()) return absl::string_view::npos;
    if (text[pos] == close) return pos + 1;
    if (text[pos] != ',') return absl::string_view::npos;
    ++pos;
  }
  return absl::string_view::npos;
}

size_t ScanAt(absl::string_view text, size_t pos, int depth) {
  pos = SkipSpace(text, pos);
  if (pos >= text.size()) return absl::string_view::npos;
  switch (text[pos]) {
    case '"':
      return ScanString(text, pos);
    case '{':
      return ScanContainer(text, pos, depth, '}', true);
    case '[':
      return ScanContainer(text, pos, depth, ']', false);
    case 't':
      return text.substr(pos, 4) == "true" ? pos + 4 : absl::string_view::npos;
    case 'f':
      return text.substr(pos, 5) == "false" ? pos + 5 : absl::string_view::npos;
    case 'n':
      return text.substr(pos, 4) == "null" ? pos + 4 : absl::string_view::npos;
    default:
      if (text[pos] == '-' || (text[pos] >= '0' && text[pos] <= '9')) return ScanNumber(text, pos);
      return absl::string_view::npos;
  }
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

uint32_t Hex4(absl::string_view s, size_t pos) {
  uint32_t v = 0;
  for (size_t i = pos; i < pos + 4; ++i) v = v * 16 + static_cast<uint32_t>(HexDigit(s[i]));
  return v;
}

// Decodes the body of a scanned literal (without quotes) into *out. Lone surrogates become
// U+FFFD.
void Decode(absl::string_view body, std::string* out) {
  out->clear();
  for (size_t i = 0; i < body.size();) {
    if (body[i] != '\\') {
      out->push_back(body[i++]);
      continue;
    }
    const char e = body[i + 1];
    if (e != 'u') {
      out->push_back(e == 'b'   ? '\b'
                     : e == 'f' ? '\f'
                     : e == 'n' ? '\n'
                     : e == 'r' ? '\r'
                     : e == 't' ? '\t'
                                : e);
      i += 2;
      continue;
    }
    uint32_t cp = Hex4(body, i + 2);
    i += 6;
    if (cp >= 0xD800 && cp < 0xDC00 && i + 6 <= body.size() && body[i] == '\\' &&
        body[i + 1] == 'u') {
      const uint32_t low = Hex4(body, i + 2);
      if (low >= 0xDC00 && low < 0xE000) {
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        i += 6;
      }
    }
    if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD;
    AppendUtf8(cp, out);
  }
}

bool WellFormedLiteral(absl::string_view literal) {
  return literal.size() >= 2 && literal.front() == '"' && ScanString(literal, 0) == literal.size();
}

}  // namespace

Type TypeOf(absl::string_view raw) {
  if (raw.empty()) return Type::kInvalid;
  switch (raw[0]) {
    case '"':
      return Type::kString;
    case '{':
      return Type::kObject;
    case '[':
      return Type::kArray;
    case 't':
    case 'f':
      return Type::kBool;
    case 'n':
      return Type::kNull;
    default:
      return raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9') ? Type::kNumber : Type::kInvalid;
  }
}

bool ScanValue(absl::string_view text, size_t* pos, absl::string_view* value, int max_depth) {
  const size_t start = SkipSpace(text, *pos);
  const size_t end = ScanAt(text, start, max_depth);
  if (end == absl::string_view::npos) return false;
  *value = text.substr(start, end - start);
  *pos = end;
  return true;
}

bool IsObject(absl::string_view text) {
  size_t pos = 0;
  absl::string_view value;
  return ScanValue(text, &pos, &value) && TypeOf(value) == Type::kObject &&
         SkipSpace(text, pos) == text.size();
}

bool StringEquals(absl::string_view literal, absl::string_view text) {
  if (!WellFormedLiteral(literal)) return false;
  const absl::string_view body = literal.substr(1, literal.size() - 2);
  if (body.find('\\') == absl::string_view::npos) return body == text;
  std::string decoded;  // rare: a key or value written with escapes
  Decode(body, &decoded);
  return decoded == text;
}

absl::string_view StringText(absl::string_view literal, std::string* scratch) {
  if (!WellFormedLiteral(literal)) return {};
  const absl::string_view body = literal.substr(1, literal.size() - 2);
  if (body.find('\\') == absl::string_view::npos) return body;
  Decode(body, scratch);
  return *scratch;
}

absl::string_view Find(absl::string_view object, absl::string_view key) {
  absl::string_view found;
  ForEachMember(object, [&](absl::string_view k, absl::string_view v) {
    if (!StringEquals(k, key)) return true;
    found = v;
    return false;
  });
  return found;
}

}  // namespace meshlet::jwt::jwt_json

#include "common/base/json.h"

#include <cstdint>

#include "common/base/utf8.h"

namespace meshlet {
namespace {

// Bytes that are not copied as they are: `"`, `\`, control characters and every non-ASCII byte
// (checked as UTF-8).
bool NeedsAttention(uint8_t c) { return c < 0x20 || c == '"' || c == '\\' || c >= 0x80; }

}  // namespace

void AppendJsonEscaped(std::string* out, absl::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  size_t start = 0;  // the first byte not yet appended
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<uint8_t>(text[i]);
    if (!NeedsAttention(c)) {
      ++i;
      continue;
    }
    if (c >= 0x80) {
      const size_t length = Utf8SequenceLength(text, i);
      if (length > 0) {
        i += length;  // well-formed: copied with its neighbours
        continue;
      }
    }
    out->append(text.data() + start, i - start);
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 0xF]);
        } else {
          out->append("\\ufffd");
        }
    }
    start = ++i;
  }
  out->append(text.data() + start, text.size() - start);
}

void AppendJsonString(std::string* out, absl::string_view text) {
  out->push_back('"');
  AppendJsonEscaped(out, text);
  out->push_back('"');
}

void AppendJsonStringArray(std::string* out, const std::vector<std::string>& items) {
  out->push_back('[');
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out->push_back(',');
    AppendJsonString(out, items[i]);
  }
  out->push_back(']');
}

std::string JsonQuote(absl::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  AppendJsonString(&out, text);
  return out;
}

}  // namespace meshlet

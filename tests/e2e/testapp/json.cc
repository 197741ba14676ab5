#include "tests/e2e/testapp/json.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "common/base/utf8.h"

namespace meshlet::testapp {

void AppendJsonString(std::string& out, absl::string_view text) {
  const bool utf8 = IsValidUtf8(text);
  out.push_back('"');
  for (char c : text) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (u < 0x20 || u == 0x7f || (u >= 0x80 && !utf8)) {
      absl::StrAppendFormat(&out, "\\u%04x", u);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

std::string JsonString(absl::string_view text) {
  std::string out;
  AppendJsonString(out, text);
  return out;
}

namespace {

// A recursive-descent recognizer over `text`, position `pos_`.
class JsonChecker {
 public:
  JsonChecker(absl::string_view text, int max_depth) : text_(text), max_depth_(max_depth) {}

  bool Check() {
    SkipSpace();
    if (!Value(0)) return false;
    SkipSpace();
    return pos_ == text_.size();
  }

 private:
  bool Value(int depth) {
    if (pos_ >= text_.size()) return false;
    switch (text_[pos_]) {
      case '{':
        return Container(depth, '}', /*object=*/true);
      case '[':
        return Container(depth, ']', /*object=*/false);
      case '"':
        return String();
      case 't':
        return Literal("true");
      case 'f':
        return Literal("false");
      case 'n':
        return Literal("null");
      default:
        return Number();
    }
  }

  bool Container(int depth, char close, bool object) {
    if (depth >= max_depth_) return false;
    ++pos_;
    SkipSpace();
    if (Peek(close)) {
      ++pos_;
      return true;
    }
    for (;;) {
      if (object) {
        if (!Peek('"') || !String()) return false;
        SkipSpace();
        if (!Peek(':')) return false;
        ++pos_;
        SkipSpace();
      }
      if (!Value(depth + 1)) return false;
      SkipSpace();
      if (Peek(',')) {
        ++pos_;
        SkipSpace();
        continue;
      }
      if (!Peek(close)) return false;
      ++pos_;
      return true;
    }
  }

  bool String() {
    size_t start = ++pos_;
    while (pos_ < text_.size()) {
      unsigned char c = static_cast<unsigned char>(text_[pos_]);
      if (c == '"') {
        ++pos_;
        return IsValidUtf8(text_.substr(start, pos_ - 1 - start));
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        if (++pos_ >= text_.size()) return false;
        char e = text_[pos_];
        if (e == 'u') {
          for (int i = 0; i < 4; ++i) {
            if (++pos_ >= text_.size() || !absl::ascii_isxdigit(text_[pos_])) return false;
          }
        } else if (absl::string_view("\"\\/bfnrt").find(e) == absl::string_view::npos) {
          return false;
        }
      }
      ++pos_;
    }
    return false;
  }

  bool Number() {
    if (Peek('-')) ++pos_;
    if (Peek('0')) {
      ++pos_;
    } else if (!Digits()) {
      return false;
    }
    if (Peek('.')) {
      ++pos_;
      if (!Digits()) return false;
    }
    if (Peek('e') || Peek('E')) {
      ++pos_;
      if (Peek('+') || Peek('-')) ++pos_;
      if (!Digits()) return false;
    }
    return true;
  }

  bool Digits() {
    size_t start = pos_;
    while (pos_ < text_.size() && absl::ascii_isdigit(text_[pos_])) ++pos_;
    return pos_ > start;
  }

  bool Literal(absl::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  bool Peek(char c) const { return pos_ < text_.size() && text_[pos_] == c; }

  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  absl::string_view text_;
  const int max_depth_;
  size_t pos_ = 0;
};

}  // namespace

bool IsJsonValue(absl::string_view text, int max_depth) {
  return JsonChecker(text, max_depth).Check();
}

}  // namespace meshlet::testapp

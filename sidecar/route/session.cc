#include "sidecar/route/session.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace meshlet::sidecar::route {
namespace {

constexpr uint8_t kTokenVersion = 1;
constexpr size_t kTokenBytes = 33;
// How far in the future a token's times may be (clocks of restarted sidecars differ a little).
constexpr int64_t kClockSkewSeconds = 60;

void PutUint64(uint64_t v, char* out) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
}

uint64_t GetUint64(const char* in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}

bool IsBase64UrlChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
}

// Characters a cookie's Path attribute may hold (RFC 6265: any CHAR but CTLs and ';').
bool ValidCookiePath(absl::string_view path) {
  if (path.empty() || path.front() != '/') return false;
  return std::all_of(path.begin(), path.end(),
                     [](char c) { return c > 0x20 && c < 0x7f && c != ';'; });
}

}  // namespace

std::string EncodeSessionToken(const SessionToken& token) {
  char bytes[kTokenBytes];
  bytes[0] = static_cast<char>(kTokenVersion);
  PutUint64(token.cluster_key, bytes + 1);
  PutUint64(token.host_key, bytes + 9);
  PutUint64(static_cast<uint64_t>(token.created_s), bytes + 17);
  PutUint64(static_cast<uint64_t>(token.last_used_s), bytes + 25);
  return absl::WebSafeBase64Escape(absl::string_view(bytes, kTokenBytes));
}

std::optional<SessionToken> DecodeSessionToken(absl::string_view text) {
  if (text.size() != kSessionTokenLength ||
      !std::all_of(text.begin(), text.end(), IsBase64UrlChar)) {
    return std::nullopt;
  }
  std::string bytes;
  if (!absl::WebSafeBase64Unescape(text, &bytes) || bytes.size() != kTokenBytes ||
      static_cast<uint8_t>(bytes[0]) != kTokenVersion) {
    return std::nullopt;
  }
  SessionToken token;
  token.cluster_key = GetUint64(bytes.data() + 1);
  token.host_key = GetUint64(bytes.data() + 9);
  token.created_s = static_cast<int64_t>(GetUint64(bytes.data() + 17));
  token.last_used_s = static_cast<int64_t>(GetUint64(bytes.data() + 25));
  if (token.cluster_key == 0 || token.host_key == 0 || token.created_s <= 0 ||
      token.last_used_s < token.created_s) {
    return std::nullopt;
  }
  return token;
}

const std::string& ClusterAt(const RouteAction& action, size_t index) {
  return action.weighted_clusters.empty() ? action.cluster : action.weighted_clusters[index].name;
}

std::optional<absl::string_view> FindSessionValue(const SessionPersistence& session,
                                                  const http::HeaderMap& request) {
  if (session.type == SessionPersistence::Type::kHeader) return request.Get(session.name);
  for (absl::string_view header : request.GetAll("cookie")) {
    for (absl::string_view pair : absl::StrSplit(header, ';')) {
      pair = absl::StripAsciiWhitespace(pair);
      const size_t eq = pair.find('=');
      if (eq == absl::string_view::npos || pair.substr(0, eq) != session.name) continue;
      absl::string_view value = pair.substr(eq + 1);
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
        value = value.substr(1, value.size() - 2);
      }
      return value;
    }
  }
  return std::nullopt;
}

SessionLookup LookupSession(const RouteAction& action, const http::HeaderMap& request,
                            absl::Time now) {
  const SessionPersistence& session = *action.session;
  SessionLookup lookup;
  const std::optional<absl::string_view> text = FindSessionValue(session, request);
  if (!text.has_value()) return lookup;
  const std::optional<SessionToken> token = DecodeSessionToken(*text);
  const int64_t now_s = absl::ToUnixSeconds(now);
  if (!token.has_value() || token->last_used_s > now_s + kClockSkewSeconds) {
    lookup.result = SessionLookup::Result::kInvalid;
    return lookup;
  }
  using std::chrono::duration_cast;
  using std::chrono::seconds;
  if ((session.absolute_timeout > Duration::zero() &&
       seconds(now_s - token->created_s) >= duration_cast<seconds>(session.absolute_timeout)) ||
      (session.idle_timeout > Duration::zero() &&
       seconds(now_s - token->last_used_s) >= duration_cast<seconds>(session.idle_timeout))) {
    lookup.result = SessionLookup::Result::kExpired;
    return lookup;
  }
  lookup.host_key = token->host_key;
  lookup.created_s = token->created_s;
  const auto& keys = session.cluster_keys;
  const auto it = std::find(keys.begin(), keys.end(), token->cluster_key);
  if (it == keys.end()) {
    lookup.result = SessionLookup::Result::kMiss;
    return lookup;
  }
  lookup.result = SessionLookup::Result::kFound;
  lookup.cluster_index = static_cast<size_t>(it - keys.begin());
  return lookup;
}

void AddSessionToken(const SessionPersistence& session, const SessionToken& token, absl::Time now,
                     http::HeaderMap& response) {
  const std::string value = EncodeSessionToken(token);
  if (session.type == SessionPersistence::Type::kHeader) {
    response.Set(session.name, value);
    return;
  }
  std::string cookie = absl::StrCat(session.name, "=", value, "; Path=", session.cookie_path);
  if (session.permanent_cookie && session.absolute_timeout > Duration::zero()) {
    const int64_t age = absl::ToUnixSeconds(now) - token.created_s;
    const int64_t total =
        std::chrono::duration_cast<std::chrono::seconds>(session.absolute_timeout).count();
    absl::StrAppend(&cookie, "; Max-Age=", std::max<int64_t>(1, total - age));
  }
  absl::StrAppend(&cookie, "; HttpOnly");
  response.Add("set-cookie", cookie);
}

std::string DefaultCookiePath(const RouteMatch& match) {
  // A segment prefix is stored without its trailing '/' (empty: every path, which "/" is too).
  if (match.path_kind != RouteMatch::PathKind::kRegex && ValidCookiePath(match.path)) {
    return match.path;
  }
  return "/";
}

bool ValidSessionCookiePath(absl::string_view path) { return ValidCookiePath(path); }

}  // namespace meshlet::sidecar::route

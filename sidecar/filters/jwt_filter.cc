#include "sidecar/filters/jwt_filter.h"

#include <optional>

#include "absl/strings/ascii.h"
#include "absl/time/time.h"
#include "common/jwt/jwt_json.h"

namespace meshlet::sidecar::filters {
namespace {

namespace jwt_json = ::meshlet::jwt::jwt_json;

// The value of query parameter `name` in `path`, or empty (not percent-decoded: a token is
// base64url and dots, which need no escaping).
absl::string_view QueryParameter(absl::string_view path, absl::string_view name) {
  const size_t query = path.find('?');
  if (query == absl::string_view::npos) return {};
  absl::string_view rest = path.substr(query + 1);
  rest = rest.substr(0, rest.find('#'));
  while (!rest.empty()) {
    const size_t amp = rest.find('&');
    const absl::string_view pair = rest.substr(0, amp);
    if (pair.size() > name.size() && pair[name.size()] == '=' &&
        pair.substr(0, name.size()) == name) {
      return pair.substr(name.size() + 1);
    }
    if (amp == absl::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
  return {};
}

// One buffer set per worker thread, reused by every verification on it.
JwtVerifier::Scratch& ThreadScratch() {
  thread_local JwtVerifier::Scratch scratch;
  return scratch;
}

}  // namespace

absl::string_view FindJwtToken(const http::HeaderMap& headers, const JwtTokenLocation& location) {
  if (location.query_parameter) {
    return QueryParameter(headers.Get(":path").value_or(""), location.name);
  }
  const std::optional<absl::string_view> value = headers.Get(location.name);
  if (!value.has_value() || value->size() < location.prefix.size()) return {};
  // The prefix's scheme is case-insensitive ("bearer x" is a bearer token, RFC 9110 §11.1).
  for (size_t i = 0; i < location.prefix.size(); ++i) {
    const char a = (*value)[i], b = location.prefix[i];
    if (a != b && absl::ascii_tolower(static_cast<unsigned char>(a)) !=
                      absl::ascii_tolower(static_cast<unsigned char>(b))) {
      return {};
    }
  }
  return absl::StripLeadingAsciiWhitespace(value->substr(location.prefix.size()));
}

stream::FilterStatus JwtFilter::Authenticate(const JwtPolicy& jwt, http::HeaderMap& headers) {
  // What the configuration writes, nobody else may: a client's own copies go first.
  for (const std::string& name : jwt.output_headers) headers.Remove(name);
  const JwtTokenLocation* location = nullptr;
  absl::string_view token;
  for (const JwtTokenLocation& candidate : jwt.locations) {
    token = FindJwtToken(headers, candidate);
    if (!token.empty()) {
      location = &candidate;
      break;
    }
  }
  if (location == nullptr) {
    policy_.jwt_outcomes[kJwtMissing].Inc();
    return stream::FilterStatus::kContinue;
  }
  // The stream's start when something records it (the access log sets start_wall); otherwise
  // the Unix epoch is all it holds, and every token would read as not yet valid.
  const absl::Time start = callbacks_.stream_info().start_wall;
  const int64_t now = absl::ToUnixSeconds(start == absl::UnixEpoch() ? absl::Now() : start);
  const JwtVerifier::Result result = jwt.verifier->Verify(token, now, ThreadScratch());
  policy_.jwt_outcomes[static_cast<size_t>(result.failure)].Inc();
  if (!result.ok()) {
    callbacks_.stream_info().SetFlag(stream::ResponseFlag::kUnauthenticated);
    callbacks_.SendLocalReply({.http_status = 401,
                               .grpc_status = http::grpc::StatusCode::kUnauthenticated,
                               .message = JwtFailureMessage(result.failure),
                               .invalid_bearer_token = true});
    return stream::FilterStatus::kStopIteration;
  }
  if (policy_.authorizer != nullptr && policy_.authorizer->reads_token()) {
    stream::StreamInfo& info = callbacks_.stream_info();
    info.jwt_issuer = jwt.verifier->issuer_name(result.issuer);
    info.jwt_payload.assign(result.payload.data(), result.payload.size());
  }
  if (result.issuer < jwt.outputs.size()) {
    const JwtIssuerOutput& output = jwt.outputs[result.issuer];
    if (!output.payload_header.empty()) {
      // The payload as the token carried it (base64url): no copy made here beyond the header's.
      const size_t dot1 = token.find('.');
      const size_t dot2 = token.find('.', dot1 + 1);
      headers.Set(output.payload_header, token.substr(dot1 + 1, dot2 - dot1 - 1));
    }
    std::string& text = ThreadScratch().text;
    for (const auto& [claim, header] : output.claim_to_headers) {
      const absl::string_view raw = jwt_json::Find(result.payload, claim);
      switch (jwt_json::TypeOf(raw)) {
        case jwt_json::Type::kString:
          headers.Set(header, jwt_json::StringText(raw, &text));
          break;
        case jwt_json::Type::kNumber:
        case jwt_json::Type::kBool:
          headers.Set(header, raw);
          break;
        default:  // absent, null, arrays and objects: no header
          break;
      }
    }
    // The token is the app's only when asked (Istio's forwardOriginalToken); a query parameter
    // stays in the path.
    if (!output.forward_original_token && !location->query_parameter) {
      headers.Remove(location->name);
    }
  }
  return stream::FilterStatus::kContinue;
}

}  // namespace meshlet::sidecar::filters

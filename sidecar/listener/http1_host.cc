#include "sidecar/listener/http1_host.h"

#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "common/http/authority.h"
#include "sidecar/listener/protocol_detector.h"

namespace meshlet::sidecar::listener {
namespace {

using Status = Http1Host::Status;

// What the HTTP/1 parser accepts in a request-target: VCHAR but '#'.
bool IsTargetChar(unsigned char c) { return c >= 0x21 && c <= 0x7e && c != '#'; }

// field-vchar, SP, HTAB, obs-text: anything in a field value but NUL, other CTLs and DEL.
bool IsFieldChar(unsigned char c) { return c == ' ' || c == '\t' || (c >= 0x21 && c != 0x7f); }

bool IsWhite(char c) { return c == ' ' || c == '\t'; }

absl::string_view TrimWhite(absl::string_view s) {
  while (!s.empty() && IsWhite(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsWhite(s.back())) s.remove_suffix(1);
  return s;
}

constexpr absl::string_view kConnect = "CONNECT";
constexpr absl::string_view kOptions = "OPTIONS";
constexpr absl::string_view kHost = "host";
constexpr absl::string_view kVersionPrefix = "HTTP/1.";  // then '0' or '1'

}  // namespace

absl::string_view Http1HostStatusName(Status status) {
  switch (status) {
    case Status::kNeedMoreBytes:
      return "need_more_bytes";
    case Status::kOk:
      return "ok";
    case Status::kNotHttp1:
      return "not_http1";
    case Status::kNoHost:
      return "no_host";
    case Status::kAmbiguous:
      return "ambiguous";
    case Status::kTooLarge:
      return "too_large";
  }
  return "unknown";
}

Http1HostReader::Http1HostReader(size_t max_bytes) : max_bytes_(max_bytes) {
  if (max_bytes_ == 0) Decide(Status::kTooLarge);
}

void Http1HostReader::Decide(Status status) {
  state_ = State::kDecided;
  status_ = status;
}

void Http1HostReader::Feed(absl::string_view bytes) {
  for (const char c : bytes) {
    if (!Step(static_cast<unsigned char>(c))) return;
  }
}

bool Http1HostReader::Step(unsigned char c) {
  if (decided()) return false;
  const size_t at = position_++;
  switch (state_) {
    case State::kLeading:
      if (c == '\r') {
        state_ = State::kLeadingLf;
      } else if (IsTokenChar(c)) {
        state_ = State::kMethod;
        method_bytes_ = 1;
        method_connect_ = c == kConnect[0];
        method_options_ = c == kOptions[0];
      } else {
        Decide(Status::kNotHttp1);  // a bare LF, or no method
      }
      break;
    case State::kLeadingLf:
      if (c == '\n') {
        state_ = State::kLeading;
      } else {
        Decide(Status::kNotHttp1);
      }
      break;
    case State::kMethod:
      if (IsTokenChar(c)) {
        method_connect_ =
            method_connect_ && method_bytes_ < kConnect.size() && c == kConnect[method_bytes_];
        method_options_ =
            method_options_ && method_bytes_ < kOptions.size() && c == kOptions[method_bytes_];
        ++method_bytes_;
      } else if (c == ' ') {
        method_connect_ = method_connect_ && method_bytes_ == kConnect.size();
        method_options_ = method_options_ && method_bytes_ == kOptions.size();
        if (method_connect_) {
          Decide(Status::kNoHost);  // a tunnel's destination, not a host
        } else {
          state_ = State::kTarget;
          target_begin_ = at + 1;
        }
      } else {
        Decide(Status::kNotHttp1);
      }
      break;
    case State::kTarget:
      if (IsTargetChar(c)) break;
      if (c == ' ' && at > target_begin_) {
        target_end_ = at;
        state_ = State::kVersion;
        version_bytes_ = 0;
      } else {
        Decide(Status::kNotHttp1);
      }
      break;
    case State::kVersion:
      if (version_bytes_ < kVersionPrefix.size()) {
        if (c != kVersionPrefix[version_bytes_]) Decide(Status::kNotHttp1);
      } else if (version_bytes_ == kVersionPrefix.size()) {
        if (c == '0' || c == '1') {
          http10_ = c == '0';
        } else {
          Decide(Status::kNotHttp1);  // another version (the codec's 505), or none
        }
      } else if (c == '\r') {
        state_ = State::kVersionLf;
      } else {
        Decide(Status::kNotHttp1);
      }
      ++version_bytes_;
      break;
    case State::kVersionLf:
    case State::kValueLf:
      if (c == '\n') {
        state_ = State::kLineStart;
      } else {
        Decide(Status::kNotHttp1);  // a bare CR
      }
      break;
    case State::kLineStart:
      if (c == '\r') {
        state_ = State::kEndLf;
      } else if (IsTokenChar(c)) {
        state_ = State::kName;
        name_bytes_ = 1;
        name_host_ = absl::ascii_tolower(c) == kHost[0];
      } else {
        Decide(Status::kNotHttp1);  // obs-fold, a bare LF, an empty or invalid name
      }
      break;
    case State::kName:
      if (IsTokenChar(c)) {
        name_host_ = name_host_ && name_bytes_ < kHost.size() &&
                     absl::ascii_tolower(c) == kHost[name_bytes_];
        ++name_bytes_;
      } else if (c == ':') {
        name_host_ = name_host_ && name_bytes_ == kHost.size();
        state_ = State::kValue;
        value_begin_ = at + 1;
      } else {
        Decide(Status::kNotHttp1);  // whitespace before the colon, or not a name
      }
      break;
    case State::kValue:
      if (c == '\r') {
        state_ = State::kValueLf;
        if (name_host_) {
          if (++host_fields_ > 1) {
            Decide(Status::kAmbiguous);
            break;
          }
          host_begin_ = value_begin_;
          host_end_ = at;
        }
      } else if (!IsFieldChar(c)) {
        Decide(Status::kNotHttp1);  // a bare LF, a control character
      }
      break;
    case State::kEndLf:
      if (c == '\n') {
        state_ = State::kHeadEnd;
      } else {
        Decide(Status::kNotHttp1);
      }
      break;
    case State::kHeadEnd:
    case State::kDecided:
      break;  // not reached
  }
  if (decided()) return false;
  if (position_ >= max_bytes_) {
    Decide(Status::kTooLarge);
    return false;
  }
  return true;
}

Http1Host Http1HostReader::Result(absl::string_view head) const {
  Http1Host out;
  if (state_ == State::kDecided) {
    out.status = status_;
    return out;
  }
  if (state_ != State::kHeadEnd || head.size() < position_) return out;
  // The target's form, as the parser checks it (RFC 9112 3.2); absolute-form's authority.
  const absl::string_view target = head.substr(target_begin_, target_end_ - target_begin_);
  std::optional<http::HostPort> authority;
  if (target == "*") {
    if (!method_options_) {
      out.status = Status::kNotHttp1;
      return out;
    }
  } else if (target[0] != '/') {
    authority = http::AbsoluteFormAuthority(target);
    if (!authority.has_value()) {
      out.status = Status::kNotHttp1;
      return out;
    }
  }
  std::optional<http::HostPort> host;
  if (host_fields_ == 1) {
    host = http::ParseHostPort(TrimWhite(head.substr(host_begin_, host_end_ - host_begin_)));
    if (!host.has_value()) {
      out.status = Status::kNoHost;  // the codec's 400
      return out;
    }
  }
  absl::string_view name;
  if (authority.has_value()) {
    // Its authority replaces Host, which an HTTP/1.1 request must still send (else 400).
    if (host.has_value() ? !absl::EqualsIgnoreCase(host->host, authority->host) : !http10_) {
      out.status = host.has_value() ? Status::kAmbiguous : Status::kNoHost;
      return out;
    }
    name = authority->host;
  } else if (host.has_value()) {
    name = host->host;
  }
  if (name.empty()) {
    out.status = Status::kNoHost;
    return out;
  }
  out.status = Status::kOk;
  out.host = absl::AsciiStrToLower(name);
  return out;
}

Http1Host ParseHttp1Host(absl::string_view bytes, size_t max_bytes) {
  Http1HostReader reader(max_bytes);
  reader.Feed(bytes);
  return reader.Result(bytes);
}

}  // namespace meshlet::sidecar::listener

#pragma once

// HttpUrl: an http:// URL split into what a one-request client needs. Only plain HTTP: the mesh's
// sidecars add TLS, the app never does.
//
//   http://reviews:9080/reviews/1?x=y   host "reviews", port 9080, target "/reviews/1?x=y"
//   http://198.18.0.5/                  port 80
//   http://[fd00::1]:9080               target "" (the caller picks one: see has_target)

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshlet::testapp {

struct HttpUrl {
  std::string host;  // a name or an IP literal, without brackets
  uint16_t port = 80;
  std::string target;  // path and query, "" when the URL has none
  // "host:port" as the Host header carries it ("[v6]:port" for IPv6 literals).
  std::string authority;

  bool has_target() const { return !target.empty(); }
  std::string ToString() const;
};

// Fails with a message naming the URL and what is wrong with it.
absl::StatusOr<HttpUrl> ParseHttpUrl(absl::string_view url);

}  // namespace meshlet::testapp

#pragma once

// HttpsGet: one GET of an https:// URL, for the control plane's reads of documents other servers
// publish (SPIFFE bundle endpoints, JWKS). The host is looked up off the event loop
// (net::HostLookup), the request goes over TLS with the server's certificate verified against
// the given roots and naming the URL's host (DNS or IP subjectAltName), and the answer is
// buffered up to a limit. Only a 200 answer's body is a result; anything else is an
// Unavailable error whose message starts with "GET URL" and names the cause ("GET URL:
// tls_failed: ...", "GET URL answered 503", "GET URL: cannot resolve ...").
//
// Ownership and callback timing: the caller owns the HttpsGet; the Loop must outlive it. `done`
// runs exactly once, on the loop thread, never from inside Start() and never after the HttpsGet
// was destroyed; destroying it cancels the read. Loop thread only.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/http/client.h"
#include "common/net/host_lookup.h"
#include "common/tls/tls_context_provider.h"

namespace meshlet::http {

struct HttpsUrl {
  std::string text;  // as given, for messages
  std::string host;  // a name, or an IP literal without brackets
  uint16_t port = 443;
  std::string path;  // origin-form with the query; "/" when the URL has none
};

// Parses "https://HOST[:PORT][/PATH[?QUERY]]". Errors say what is wrong: "needs a host", "must
// not carry user information", "must not carry a fragment", "the host is not HOST, HOST:PORT or
// [IPv6]:PORT", "is not an https:// URL".
absl::StatusOr<HttpsUrl> ParseHttpsUrl(absl::string_view url);

// A client TLS context trusting the PEM roots in `ca_file` (the system's:
// /etc/ssl/certs/ca-certificates.crt), for HttpsGet. Errors name the file.
absl::StatusOr<std::shared_ptr<const tls::TlsContextProvider>> HttpsRoots(
    const std::string& ca_file);

class HttpsGet {
 public:
  struct Options {
    std::shared_ptr<const tls::TlsContextProvider> roots;  // required
    Duration timeout = std::chrono::seconds(10);  // after the lookup: connect, TLS, the answer
    size_t max_body_bytes = 1 << 20;
  };
  using Done = absl::AnyInvocable<void(absl::StatusOr<std::string> body)>;

  static std::unique_ptr<HttpsGet> Start(event::Loop& loop, HttpsUrl url, Options options,
                                         Done done);
  ~HttpsGet();
  HttpsGet(const HttpsGet&) = delete;
  HttpsGet& operator=(const HttpsGet&) = delete;

 private:
  HttpsGet(event::Loop& loop, HttpsUrl url, Options options, Done done);
  void Fetch(std::vector<net::Address> addresses);
  void Finish(absl::StatusOr<std::string> body);

  event::Loop& loop_;
  const HttpsUrl url_;
  const Options options_;
  Done done_;
  std::unique_ptr<net::HostLookup> lookup_;
  std::unique_ptr<HttpFetch> fetch_;
};

}  // namespace meshlet::http

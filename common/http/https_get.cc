#include "common/http/https_get.h"

#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/file.h"
#include "common/net/address.h"
#include "common/tls/tls_context.h"
#include "common/tls/tls_transport.h"

namespace meshlet::http {

absl::StatusOr<HttpsUrl> ParseHttpsUrl(absl::string_view text) {
  const auto error = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" ", why));
  };
  absl::string_view rest = text;
  if (!absl::ConsumePrefix(&rest, "https://")) return error("is not an https:// URL");
  HttpsUrl url;
  url.text = std::string(text);
  // The authority ends at the first of '/', '?' and '#' (RFC 3986 §3.2).
  const size_t end = rest.find_first_of("/?#");
  const absl::string_view authority = rest.substr(0, end);
  const absl::string_view after = end == absl::string_view::npos ? "" : rest.substr(end);
  if (authority.empty()) return error("needs a host");
  if (absl::StrContains(authority, '@')) return error("must not carry user information");
  if (absl::StrContains(after, '#')) return error("must not carry a fragment");
  url.path = absl::StartsWith(after, "/") ? std::string(after) : absl::StrCat("/", after);
  // Printable ASCII only, no space: a URL that could not go into a request line is refused here.
  for (char c : url.path) {
    if (c <= ' ' || c >= 0x7f) return error("has a character a URL path cannot hold");
  }
  for (char c : authority) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) &&
        absl::string_view("-._:[]").find(c) == absl::string_view::npos) {
      return error("has a host that is not HOST, HOST:PORT or [IPv6]:PORT");
    }
  }
  if (absl::StartsWith(authority, "[") || absl::StrContains(authority, ':')) {
    absl::StatusOr<net::HostPort> host_port =
        authority.back() == ']' && authority.front() == '['  // [v6] without a port
            ? absl::StatusOr<net::HostPort>(
                  net::HostPort{.host = std::string(authority.substr(1, authority.size() - 2)),
                                .port = 443,
                                .bracketed = true})
            : net::SplitHostPort(authority);
    if (!host_port.ok() || host_port->host.empty() || host_port->port == 0 ||
        host_port->unbracketed_ipv6() ||
        (host_port->bracketed && !net::Address::FromIp(host_port->host, 443).ok())) {
      return error("has a host that is not HOST, HOST:PORT or [IPv6]:PORT");
    }
    url.host = host_port->host;
    url.port = host_port->port;
  } else {
    url.host = std::string(authority);
  }
  return url;
}

absl::StatusOr<std::shared_ptr<const tls::TlsContextProvider>> HttpsRoots(
    const std::string& ca_file) {
  absl::StatusOr<std::string> roots = ReadFile(ca_file, 8 << 20);
  if (!roots.ok()) return roots.status();
  tls::TlsContextConfig config;
  config.trust_bundle_pem = *std::move(roots);
  config.alpn_protocols = {"http/1.1"};
  absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
      tls::TlsContext::CreateClient(config);
  if (!context.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(ca_file, ": ", context.status().message()));
  }
  return std::make_shared<tls::TlsContextProvider>(*std::move(context));
}

HttpsGet::HttpsGet(event::Loop& loop, HttpsUrl url, Options options, Done done)
    : loop_(loop), url_(std::move(url)), options_(std::move(options)), done_(std::move(done)) {}

HttpsGet::~HttpsGet() = default;

std::unique_ptr<HttpsGet> HttpsGet::Start(event::Loop& loop, HttpsUrl url, Options options,
                                          Done done) {
  std::unique_ptr<HttpsGet> get(
      new HttpsGet(loop, std::move(url), std::move(options), std::move(done)));
  HttpsGet* self = get.get();
  get->lookup_ =
      net::HostLookup::Start(loop, get->url_.host, get->url_.port,
                             [self](absl::StatusOr<std::vector<net::Address>> addresses) {
                               if (!addresses.ok()) {
                                 self->Finish(absl::UnavailableError(absl::StrCat(
                                     "GET ", self->url_.text, ": ", addresses.status().message())));
                                 return;
                               }
                               self->Fetch(*std::move(addresses));
                             });
  return get;
}

void HttpsGet::Fetch(std::vector<net::Address> addresses) {
  const bool v6 = absl::StrContains(url_.host, ':');
  const bool literal = net::Address::FromIp(url_.host, url_.port).ok();
  ClientRequest request{
      .method = "GET",
      .path = url_.path,
      .authority = absl::StrCat(v6 ? "[" : "", url_.host, v6 ? "]" : "",
                                url_.port == 443 ? "" : absl::StrCat(":", url_.port))};
  request.headers.Add("accept", "application/json");
  request.headers.Add("user-agent", "meshlet-control-plane");
  ClientOptions options{
      .timeout = options_.timeout,
      .max_response_bytes = options_.max_body_bytes + 64 * 1024,  // the head too
      .transport_factory = tls::TlsTransport::Factory(
          options_.roots,
          // SNI for a name only (RFC 6066); the certificate must name the host either way.
          {.server_name = literal ? "" : url_.host, .verify_peer_name = url_.host})};
  fetch_ = HttpFetch::Start(
      loop_, std::move(addresses), std::move(request), std::move(options),
      [this](ClientResult result) {
        if (!result.ok()) {
          Finish(absl::UnavailableError(absl::StrCat(
              "GET ", url_.text, ": ", ClientErrorName(result.error), ": ", result.detail)));
        } else if (result.status != 200) {
          Finish(
              absl::UnavailableError(absl::StrCat("GET ", url_.text, " answered ", result.status)));
        } else if (result.body.size() > options_.max_body_bytes) {
          Finish(absl::UnavailableError(absl::StrCat("GET ", url_.text, ": the answer is over ",
                                                     options_.max_body_bytes, " bytes")));
        } else {
          Finish(std::move(result.body));
        }
      });
}

void HttpsGet::Finish(absl::StatusOr<std::string> body) {
  Done done = std::move(done_);
  done_ = nullptr;
  if (done) done(std::move(body));  // may destroy this
}

}  // namespace meshlet::http

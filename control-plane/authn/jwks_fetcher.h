#pragma once

// JwksFetcher: the key sets (JWKS) of the issuers RequestAuthentication policies name by
// `jwksUri`, fetched by the control plane and kept current, so that the translator sends each
// issuer's keys inline and sidecars never fetch (ADR 0098). A URI ending in
// /.well-known/openid-configuration (policy::JwksSourceOf: an issuer with neither jwksUri nor
// jwks) is an OpenID Connect discovery document: each read takes it, checks its issuer, and reads
// the keys from its jwks_uri (an https:// URL), both steps one read that succeeds or fails.
//
// Start() first, then SetUris() gives the URIs the policy names now (after each policy load): a new
// one is fetched at once, one no longer named is forgotten. Each is read again every `refresh`; a
// read that fails (lookup, TLS, status, size, a document the sidecar's parser refuses or without a
// usable key) keeps the last good key set in force, is counted and logged (per URI, when the cause
// changes and once a minute while it lasts), and is retried after `retry_min`, doubling up to
// `refresh`, with jitter. The listener gets every URI's last good JWKS whenever one changes.
//
// Stats: meshlet_cp_jwks_fetches_total{result} (ok, unchanged, failed), meshlet_cp_jwks_uris
// (URIs named), meshlet_cp_jwks_uris_without_keys (named, never fetched: their tokens are refused).
//
// Threading: the loop thread; the listener is called there.

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/event/loop.h"
#include "common/http/https_get.h"
#include "common/stats/stats.h"

namespace meshlet::controlplane::authn {

struct JwksFetcherOptions {
  // The roots that verify the issuers' HTTPS certificates (--jwks-ca-file).
  std::string ca_file = "/etc/ssl/certs/ca-certificates.crt";
  absl::Duration refresh = absl::Minutes(20);   // --jwks-refresh-interval
  absl::Duration retry_min = absl::Seconds(1);  // --jwks-retry-min
  absl::Duration timeout = absl::Seconds(10);   // --jwks-fetch-timeout
  size_t max_bytes = 256 * 1024;                // --jwks-max-bytes
};

class JwksFetcher {
 public:
  using Listener = std::function<void(const std::map<std::string, std::string>& jwks)>;

  JwksFetcher(event::Loop& loop, StatsRegistry& stats, JwksFetcherOptions options);
  ~JwksFetcher();

  // Keeps `listener`. The roots are read when the first URI is fetched (an error there fails
  // that read, naming --jwks-ca-file).
  void Start(Listener listener);
  // The jwksUris the policy names now (each already checked to be an https:// URL; one that is
  // not is skipped, counted as failed).
  void SetUris(const std::set<std::string>& uris);

  // URI -> its last good JWKS.
  const std::map<std::string, std::string>& jwks() const { return jwks_; }
  // Each URI's state as JSON (GET /api/v1/jwks, `meshctl check`): {"kind":"JwksStatus",
  // "items":[{"uri","hasKeys","lastSuccess","lastRead" (RFC 3339 or null),"failuresInRow",
  // "lastError" (empty after a good read)}]}, by URI.
  std::string StatusJson() const;

 private:
  struct Source;
  void Fetch(Source& source);
  // One read of `url` for `source`: a discovery document (then its jwks_uri) or the keys.
  void Get(Source& source, const http::HttpsUrl& url, bool discovery);
  void Took(Source& source, absl::StatusOr<std::string> body);
  void UpdateGauges();

  event::Loop& loop_;
  const JwksFetcherOptions options_;
  Listener listener_;
  std::shared_ptr<const tls::TlsContextProvider> roots_;
  std::map<std::string, std::unique_ptr<Source>> sources_;
  std::map<std::string, std::string> jwks_;
  absl::BitGen random_;
  Counter ok_, unchanged_, failed_;
  Gauge uris_, without_keys_;
};

}  // namespace meshlet::controlplane::authn

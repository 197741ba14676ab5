#include "control-plane/authn/jwks_fetcher.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/base/repeated_failure.h"
#include "common/event/timer.h"
#include "common/jwt/jwt_json.h"
#include "common/jwt/jwt_verifier.h"
#include "common/stats/or_discard.h"

namespace meshlet::controlplane::authn {

struct JwksFetcher::Source {
  std::string uri;
  absl::StatusOr<http::HttpsUrl> url = absl::UnknownError("not parsed");
  std::unique_ptr<event::Timer> timer;
  std::unique_ptr<http::HttpsGet> get;  // the read in flight
  std::string body;                     // the last good document
  absl::Duration backoff = absl::ZeroDuration();
  RepeatedFailure failure_log;
  // For StatusJson: the last read that succeeded, the last that ended, and the failure since.
  absl::Time last_ok = absl::InfinitePast();
  absl::Time last_read = absl::InfinitePast();
  std::string last_error;  // empty once a read succeeds
  int failures_in_row = 0;
};

JwksFetcher::JwksFetcher(event::Loop& loop, StatsRegistry& stats, JwksFetcherOptions options)
    : loop_(loop), options_(std::move(options)) {
  StatsShard& shard = stats.shared_shard();
  auto fetches = [&shard](const char* result) {
    return OrDiscard(
        shard.RegisterCounter(
            "meshlet_cp_jwks_fetches_total",
            "Reads of a RequestAuthentication jwksUri by result: ok (new keys in use), "
            "unchanged, failed (the last good keys stay).",
            {{"result", result}}),
        "meshlet_cp_jwks_fetches_total");
  };
  ok_ = fetches("ok");
  unchanged_ = fetches("unchanged");
  failed_ = fetches("failed");
  uris_ = OrDiscard(shard.RegisterGauge("meshlet_cp_jwks_uris",
                                        "jwksUris the RequestAuthentication policies name."),
                    "meshlet_cp_jwks_uris");
  without_keys_ = OrDiscard(
      shard.RegisterGauge("meshlet_cp_jwks_uris_without_keys",
                          "jwksUris named but never fetched: their issuers' tokens are refused."),
      "meshlet_cp_jwks_uris_without_keys");
}

JwksFetcher::~JwksFetcher() = default;

void JwksFetcher::Start(Listener listener) { listener_ = std::move(listener); }

void JwksFetcher::SetUris(const std::set<std::string>& uris) {
  bool removed = false;
  for (auto it = sources_.begin(); it != sources_.end();) {
    if (uris.contains(it->first)) {
      ++it;
      continue;
    }
    LOG(INFO) << "jwks: " << it->first << " is no longer named by a RequestAuthentication";
    removed |= jwks_.erase(it->first) > 0;
    it = sources_.erase(it);
  }
  for (const std::string& uri : uris) {
    if (sources_.contains(uri)) continue;
    auto source = std::make_unique<Source>();
    source->uri = uri;
    source->url = http::ParseHttpsUrl(uri);
    Source* s = source.get();
    source->timer = std::make_unique<event::Timer>(loop_, [this, s] { Fetch(*s); });
    sources_.emplace(uri, std::move(source));
    Fetch(*s);
  }
  UpdateGauges();
  if (removed && listener_) listener_(jwks_);
}

namespace {

constexpr absl::string_view kDiscoverySuffix = "/.well-known/openid-configuration";

// The jwks_uri of an OpenID Connect discovery document read from `discovery_url`, checked: the
// document's issuer must be the one the URL was made from (OpenID Connect Discovery 1.0, 4.3), and
// jwks_uri an https:// URL.
absl::StatusOr<http::HttpsUrl> JwksUriOf(absl::string_view discovery_url,
                                         absl::string_view document) {
  namespace json = jwt::jwt_json;
  const std::string where = absl::StrCat("the discovery document ", discovery_url);
  if (!json::IsObject(document)) {
    return absl::InvalidArgumentError(absl::StrCat(where, " is not a JSON object"));
  }
  std::string scratch;
  const absl::string_view issuer_literal = json::Find(document, "issuer");
  const std::string issuer(json::TypeOf(issuer_literal) == json::Type::kString
                               ? json::StringText(issuer_literal, &scratch)
                               : absl::string_view());
  const absl::string_view expected = absl::StripSuffix(discovery_url, kDiscoverySuffix);
  if (absl::StripSuffix(issuer, "/") != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, " names issuer \"", issuer, "\", not ", expected));
  }
  const absl::string_view uri_literal = json::Find(document, "jwks_uri");
  if (json::TypeOf(uri_literal) != json::Type::kString) {
    return absl::InvalidArgumentError(absl::StrCat(where, " has no jwks_uri"));
  }
  const std::string uri(json::StringText(uri_literal, &scratch));
  absl::StatusOr<http::HttpsUrl> url = http::ParseHttpsUrl(uri);
  if (!url.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": jwks_uri \"", uri, "\": ", url.status().message()));
  }
  return url;
}

}  // namespace

void JwksFetcher::Fetch(Source& source) {
  if (source.get != nullptr) return;  // a read in flight
  if (!source.url.ok()) {
    Took(source, source.url.status());
    return;
  }
  if (roots_ == nullptr) {
    // Read at the first URI, not at start: a control plane whose policies name none needs no
    // roots file (its image may have none).
    absl::StatusOr<std::shared_ptr<const tls::TlsContextProvider>> roots =
        http::HttpsRoots(options_.ca_file);
    if (!roots.ok()) {
      Took(source,
           absl::FailedPreconditionError(absl::StrCat(
               "cannot read ", source.uri, ": --jwks-ca-file: ", roots.status().message())));
      return;
    }
    roots_ = *std::move(roots);
  }
  Get(source, *source.url, /*discovery=*/absl::EndsWith(source.uri, kDiscoverySuffix));
}

void JwksFetcher::Get(Source& source, const http::HttpsUrl& url, bool discovery) {
  source.get = http::HttpsGet::Start(loop_, url,
                                     {.roots = roots_,
                                      .timeout = absl::ToChronoMilliseconds(options_.timeout),
                                      .max_body_bytes = options_.max_bytes},
                                     [this, &source, discovery](absl::StatusOr<std::string> body) {
                                       // The HttpsGet is done: drop it on a later turn (it is
                                       // running this callback).
                                       loop_.DeferDelete(std::move(source.get));
                                       if (!discovery || !body.ok()) {
                                         Took(source, std::move(body));
                                         return;
                                       }
                                       // The discovery document: the keys are read next, from its
                                       // jwks_uri.
                                       absl::StatusOr<http::HttpsUrl> jwks_uri =
                                           JwksUriOf(source.uri, *body);
                                       if (!jwks_uri.ok()) {
                                         Took(source, jwks_uri.status());
                                         return;
                                       }
                                       Get(source, *jwks_uri, /*discovery=*/false);
                                     });
}

void JwksFetcher::Took(Source& source, absl::StatusOr<std::string> body) {
  absl::Duration next = options_.refresh;
  if (body.ok()) {
    // The sidecar's own parser: what it would refuse is refused here, and the last good keys stay.
    if (absl::StatusOr<jwt::JwksParse> parse = jwt::ParseJwks(*body); !parse.ok()) {
      body = absl::InvalidArgumentError(
          absl::StrCat("the key set from ", source.uri, " is refused: ", parse.status().message()));
    }
  }
  source.last_read = absl::Now();
  if (!body.ok()) {
    failed_.Inc();
    source.last_error = std::string(body.status().message());
    ++source.failures_in_row;
    if (source.failure_log.ShouldLog(body.status().message(), absl::Now())) {
      LOG(WARN) << "jwks: " << body.status().message()
                << (source.body.empty() ? "; the issuer has no keys yet (its tokens are refused)"
                                        : "; the last good keys stay");
    }
    source.backoff = std::clamp(source.backoff * 2, options_.retry_min, options_.refresh);
    // Jitter: 50% to 100% of the backoff, so that replicas and URIs spread out.
    next = source.backoff * absl::Uniform(random_, 0.5, 1.0);
  } else {
    source.backoff = absl::ZeroDuration();
    source.failure_log.Clear();
    source.last_ok = source.last_read;
    source.last_error.clear();
    source.failures_in_row = 0;
    if (*body == source.body) {
      unchanged_.Inc();
    } else {
      ok_.Inc();
      LOG(INFO) << "jwks: new keys from " << source.uri << " (" << body->size() << " bytes)";
      source.body = *body;
      jwks_[source.uri] = *std::move(body);
      UpdateGauges();
      if (listener_) listener_(jwks_);
    }
  }
  source.timer->Enable(absl::ToChronoNanoseconds(next));
}

std::string JwksFetcher::StatusJson() const {
  auto time = [](absl::Time t) {
    return t == absl::InfinitePast()
               ? std::string("null")
               : JsonQuote(absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone()));
  };
  std::string out = R"({"kind":"JwksStatus","items":[)";
  const char* sep = "";
  for (const auto& [uri, source] : sources_) {
    absl::StrAppend(&out, sep, R"({"uri":)", JsonQuote(uri), R"(,"hasKeys":)",
                    source->body.empty() ? "false" : "true", R"(,"lastSuccess":)",
                    time(source->last_ok), R"(,"lastRead":)", time(source->last_read),
                    R"(,"failuresInRow":)", source->failures_in_row, R"(,"lastError":)",
                    JsonQuote(source->last_error), "}");
    sep = ",";
  }
  absl::StrAppend(&out, "]}\n");
  return out;
}

void JwksFetcher::UpdateGauges() {
  uris_.Set(static_cast<int64_t>(sources_.size()));
  int64_t without = 0;
  for (const auto& [uri, source] : sources_) without += source->body.empty() ? 1 : 0;
  without_keys_.Set(without);
}

}  // namespace meshlet::controlplane::authn

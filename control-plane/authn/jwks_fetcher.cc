#include "control-plane/authn/jwks_fetcher.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/base/repeated_failure.h"
#include "common/event/timer.h"
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
  source.get = http::HttpsGet::Start(loop_, *source.url,
                                     {.roots = roots_,
                                      .timeout = absl::ToChronoMilliseconds(options_.timeout),
                                      .max_body_bytes = options_.max_bytes},
                                     [this, &source](absl::StatusOr<std::string> body) {
                                       // The HttpsGet is done: drop it on a later turn (it is
                                       // running this callback).
                                       loop_.DeferDelete(std::move(source.get));
                                       Took(source, std::move(body));
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
  if (!body.ok()) {
    failed_.Inc();
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

void JwksFetcher::UpdateGauges() {
  uris_.Set(static_cast<int64_t>(sources_.size()));
  int64_t without = 0;
  for (const auto& [uri, source] : sources_) without += source->body.empty() ? 1 : 0;
  without_keys_.Set(without);
}

}  // namespace meshlet::controlplane::authn

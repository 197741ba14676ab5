#include "control-plane/kubernetes/leader_election.h"

#include <yaml-cpp/yaml.h>

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "control-plane/kubernetes/yaml_fields.h"

namespace meshlet::controlplane::kubernetes {
namespace {

constexpr char kRbacHint[] =
    "the control plane needs get, create and update on leases (coordination.k8s.io) in its "
    "namespace (k8s/base/rbac.yaml)";

int64_t Seconds(Duration d) {
  return std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::seconds>(d).count());
}

}  // namespace

LeaderElector::LeaderElector(event::Loop& loop, KubernetesApi& api, StatsRegistry& stats,
                             const Clock& clock, LeaderElectionOptions options,
                             std::function<void(bool leading)> on_change)
    : loop_(loop),
      api_(api),
      clock_(clock),
      options_(std::move(options)),
      on_change_(std::move(on_change)),
      timer_(loop, [this] { Try(); }) {
  StatsShard& shard = stats.shared_shard();
  if (auto g = shard.RegisterGauge(
          options_.stats_name,
          absl::StrCat("1 while this control-plane replica leads (", options_.role, "), else 0."),
          {});
      g.ok()) {
    leader_gauge_ = *g;
  }
  if (auto c =
          shard.RegisterCounter(absl::StrCat(options_.stats_name, "_transitions_total"),
                                "Times this control-plane replica started or stopped leading.", {});
      c.ok()) {
    transitions_ = *c;
  }
  if (auto c = shard.RegisterCounter(absl::StrCat(options_.stats_name, "_lease_errors_total"),
                                     "Requests on the leader election Lease that failed (not "
                                     "counting a replica that lost the race for it).",
                                     {});
      c.ok()) {
    errors_ = *c;
  }
}

LeaderElector::~LeaderElector() { *alive_ = false; }

void LeaderElector::Start() {
  LOG(INFO) << "leader election: competing for Lease " << options_.namespace_ << "/"
            << options_.name << " as " << options_.identity;
  timer_.Enable(Duration::zero());
}

void LeaderElector::Release() {
  if (releasing_) return;
  releasing_ = true;
  timer_.Disable();
  if (!leading_) {
    released_ = true;
    return;
  }
  SetLeading(false);
  api_.Call({.method = "GET",
             .path = absl::StrCat(LeasePath(), "/", options_.name),
             .forbidden_hint = kRbacHint},
            [this, alive = alive_](ApiResult result) {
              if (*alive) OnReadToRelease(std::move(result));
            });
}

void LeaderElector::OnReadToRelease(ApiResult result) {
  YAML::Node lease;
  if (result.body.ok()) {
    try {
      lease = YAML::Load(*result.body);
    } catch (const YAML::Exception&) {
    }
  }
  if (!lease.IsMap() || ScalarAt(NodeAt(lease, "spec"), "holderIdentity") != options_.identity) {
    // Gone, unreadable, or another replica holds it already: nothing to hand over.
    if (!result.body.ok() && result.http_status != 404) errors_.Inc();
    released_ = true;
    return;
  }
  const std::string wall_now =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", clock_.WallNow(), absl::UTCTimeZone());
  int64_t transitions = 0;
  (void)absl::SimpleAtoi(ScalarAt(NodeAt(lease, "spec"), "leaseTransitions"), &transitions);
  // The holder emptied, the rest kept: a replica reading it takes it at once.
  const std::string body = absl::StrCat(
      R"({"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":)",
      JsonQuote(options_.name), R"(,"namespace":)", JsonQuote(options_.namespace_),
      R"(,"resourceVersion":)", JsonQuote(ScalarAt(NodeAt(lease, "metadata"), "resourceVersion")),
      R"(},"spec":{"holderIdentity":"","leaseDurationSeconds":1,"acquireTime":)",
      JsonQuote(ScalarAt(NodeAt(lease, "spec"), "acquireTime")), R"(,"renewTime":)",
      JsonQuote(wall_now), R"(,"leaseTransitions":)", transitions, "}}");
  api_.Call({.method = "PUT",
             .path = absl::StrCat(LeasePath(), "/", options_.name),
             .content_type = "application/json",
             .body = body,
             .forbidden_hint = kRbacHint},
            [this, alive = alive_](ApiResult written) {
              if (!*alive) return;
              if (written.body.ok()) {
                LOG(INFO) << "leader election: released Lease " << options_.namespace_ << "/"
                          << options_.name;
              } else {
                errors_.Inc();
                LOG(WARN) << "leader election: releasing the Lease: "
                          << written.body.status().message() << "; another replica takes over "
                          << "when it expires";
              }
              released_ = true;
            });
}

std::string LeaderElector::LeasePath() const {
  return absl::StrCat("/apis/coordination.k8s.io/v1/namespaces/", options_.namespace_, "/leases");
}

void LeaderElector::Try() {
  if (leading_ && renewed_.has_value()) {
    Renew();
    return;
  }
  api_.Call({.method = "GET",
             .path = absl::StrCat(LeasePath(), "/", options_.name),
             .forbidden_hint = kRbacHint},
            [this, alive = alive_](ApiResult result) {
              if (*alive) OnRead(std::move(result));
            });
}

void LeaderElector::Renew() {
  const YAML::Node spec = NodeAt(*renewed_, "spec");
  int64_t transitions = 0;
  (void)absl::SimpleAtoi(ScalarAt(spec, "leaseTransitions"), &transitions);
  std::string body =
      LeaseBody(*renewed_, options_.identity, ScalarAt(spec, "acquireTime"), transitions, "");
  renewed_.reset();
  Write("PUT", absl::StrCat(LeasePath(), "/", options_.name), std::move(body),
        &LeaderElector::OnRenewed);
}

void LeaderElector::OnRenewed(ApiResult result) {
  if (releasing_) return;
  if (result.body.ok()) {
    OnWrite(std::move(result));
    return;
  }
  // 409: the Lease changed since (a claim, another holder); 404: it is gone. Anything else
  // failed. Either way it is read now, and judged as every replica judges it.
  if (result.http_status != 409 && result.http_status != 404) {
    errors_.Inc();
    LOG_EVERY_N_SEC(WARN, 30) << "leader election: " << result.body.status().message();
  }
  Try();
}

std::string LeaderElector::LeaseBody(const YAML::Node& lease, const std::string& holder,
                                     const std::string& acquire, int64_t transitions,
                                     const std::string& claim) const {
  const std::string wall_now =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", clock_.WallNow(), absl::UTCTimeZone());
  std::string out =
      absl::StrCat(R"({"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":)",
                   JsonQuote(options_.name), R"(,"namespace":)", JsonQuote(options_.namespace_));
  const std::string resource_version = ScalarAt(NodeAt(lease, "metadata"), "resourceVersion");
  if (!resource_version.empty()) {
    absl::StrAppend(&out, R"(,"resourceVersion":)", JsonQuote(resource_version));
  }
  // The holder's revision; the claim of a preferred candidate.
  const std::string revision =
      holder == options_.identity
          ? options_.revision
          : ScalarAt(NodeAt(NodeAt(lease, "metadata"), "annotations"), kLeaseRevisionAnnotation);
  if (!revision.empty() || !claim.empty()) {
    absl::StrAppend(&out, R"(,"annotations":{)");
    if (!revision.empty()) {
      absl::StrAppend(&out, JsonQuote(kLeaseRevisionAnnotation), ":", JsonQuote(revision));
    }
    if (!claim.empty()) {
      absl::StrAppend(&out, revision.empty() ? "" : ",", JsonQuote(kLeaseClaimAnnotation), ":",
                      JsonQuote(claim));
    }
    out += "}";
  }
  // A claim keeps the holder's renewTime: it is no renewal of the holder's.
  const std::string renew = holder == options_.identity || holder.empty()
                                ? wall_now
                                : ScalarAt(NodeAt(lease, "spec"), "renewTime");
  absl::StrAppend(&out, R"(},"spec":{"holderIdentity":)", JsonQuote(holder),
                  R"(,"leaseDurationSeconds":)", Seconds(options_.lease_duration),
                  R"(,"acquireTime":)", JsonQuote(acquire), R"(,"renewTime":)", JsonQuote(renew),
                  R"(,"leaseTransitions":)", transitions, "}}");
  return out;
}

void LeaderElector::OnRead(ApiResult result) {
  if (releasing_) return;
  const MonotonicTime now = clock_.Now();
  const std::string wall_now =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", clock_.WallNow(), absl::UTCTimeZone());
  if (result.http_status == 404) {
    Write("POST", LeasePath(), LeaseBody(YAML::Node(), options_.identity, wall_now, 0, ""));
    return;
  }
  if (!result.body.ok()) {
    errors_.Inc();
    LOG_EVERY_N_SEC(WARN, 30) << "leader election: " << result.body.status().message();
    Failed();
    return;
  }
  YAML::Node lease;
  try {
    lease = YAML::Load(*result.body);
  } catch (const YAML::Exception& e) {
    errors_.Inc();
    Failed();
    return;
  }
  const YAML::Node spec = NodeAt(lease, "spec");
  const YAML::Node annotations = NodeAt(NodeAt(lease, "metadata"), "annotations");
  const std::string holder = ScalarAt(spec, "holderIdentity");
  const std::string renew = ScalarAt(spec, "renewTime");
  const std::string claim = ScalarAt(annotations, kLeaseClaimAnnotation);
  if (holder != observed_holder_ || renew != observed_renew_ || claim != observed_claim_ ||
      observed_at_ == MonotonicTime{}) {
    observed_holder_ = holder;
    observed_renew_ = renew;
    observed_claim_ = claim;
    observed_at_ = now;
  }
  int64_t duration_seconds = 0;
  if (!absl::SimpleAtoi(ScalarAt(spec, "leaseDurationSeconds"), &duration_seconds) ||
      duration_seconds <= 0) {
    duration_seconds = Seconds(options_.lease_duration);
  }
  const bool mine = holder == options_.identity;
  const bool fresh = now < observed_at_ + std::chrono::seconds(duration_seconds);
  const bool preferred = options_.preferred != nullptr && options_.preferred();
  const std::string path = absl::StrCat(LeasePath(), "/", options_.name);
  int64_t transitions = 0;
  (void)absl::SimpleAtoi(ScalarAt(spec, "leaseTransitions"), &transitions);
  if (mine && !claim.empty() && claim != options_.identity && !preferred) {
    // A preferred candidate claimed it: stop first, then hand it over (the claim kept).
    LOG(INFO) << "leader election: " << claim << " (preferred) claimed Lease "
              << options_.namespace_ << "/" << options_.name << "; handing it over";
    if (leading_) SetLeading(false);  // a hand-over tried again after a failed write
    Write("PUT", path, LeaseBody(lease, "", ScalarAt(spec, "acquireTime"), transitions, claim));
    return;
  }
  if (!mine && !holder.empty() && fresh) {
    // Another candidate holds it and renews it.
    if (leading_) SetLeading(false);
    const std::string holder_revision = ScalarAt(annotations, kLeaseRevisionAnnotation);
    if (preferred && claim != options_.identity && holder_revision != options_.revision) {
      LOG(INFO) << "leader election: claiming Lease " << options_.namespace_ << "/" << options_.name
                << " from " << holder << " (revision "
                << (holder_revision.empty() ? "unknown" : holder_revision) << ")";
      Write(
          "PUT", path,
          LeaseBody(lease, holder, ScalarAt(spec, "acquireTime"), transitions, options_.identity));
      return;
    }
    timer_.Enable(options_.retry_period);
    return;
  }
  if (!mine && !claim.empty() && claim != options_.identity && fresh) {
    // Empty (or expired) but claimed by another: the claimant takes it.
    timer_.Enable(options_.retry_period);
    return;
  }
  // Ours to renew, or free to take; a preferred holder drops a claim of another's.
  const std::string acquire = mine ? ScalarAt(spec, "acquireTime") : wall_now;
  if (!mine) ++transitions;
  Write("PUT", path, LeaseBody(lease, options_.identity, acquire, transitions, ""));
}

void LeaderElector::Write(const std::string& method, const std::string& path, std::string body,
                          void (LeaderElector::*then)(ApiResult)) {
  // A PUT carrying the resourceVersion it read may go twice: a replay after the first was applied
  // is refused with 409, which OnWrite takes as a lost race.
  const bool replay_safe = method == "PUT" && absl::StrContains(body, R"("resourceVersion":)");
  api_.Call({.method = method,
             .path = path,
             .content_type = "application/json",
             .body = std::move(body),
             .forbidden_hint = kRbacHint,
             .replay_safe = replay_safe},
            [this, alive = alive_, then](ApiResult result) {
              if (*alive) (this->*then)(std::move(result));
            });
}

void LeaderElector::OnWrite(ApiResult result) {
  if (releasing_) return;
  renewed_.reset();
  if (result.body.ok()) {
    // What was written: a renewal or a take (this candidate holds it), else a hand-over or a
    // claim.
    YAML::Node lease;
    try {
      lease = YAML::Load(*result.body);
    } catch (const YAML::Exception&) {
    }
    if (ScalarAt(NodeAt(lease, "spec"), "holderIdentity") == options_.identity) {
      last_renewed_ = clock_.Now();
      observed_holder_ = options_.identity;
      if (!leading_) SetLeading(true);
      // The next renewal writes over this answer (its resourceVersion) without reading first.
      if (!ScalarAt(NodeAt(lease, "metadata"), "resourceVersion").empty()) renewed_.emplace(lease);
    }
  } else if (result.http_status == 409) {
    // Another replica wrote it first: read it again next time.
    Failed();
    return;
  } else {
    errors_.Inc();
    LOG_EVERY_N_SEC(WARN, 30) << "leader election: " << result.body.status().message();
    Failed();
    return;
  }
  timer_.Enable(options_.retry_period);
}

void LeaderElector::Failed() {
  if (releasing_) return;
  if (leading_ && clock_.Now() - last_renewed_ >= options_.renew_deadline) {
    LOG(WARN) << "leader election: the Lease was not renewed for "
              << absl::FormatDuration(absl::FromChrono(options_.renew_deadline))
              << "; another replica may take over";
    SetLeading(false);
  }
  timer_.Enable(options_.retry_period);
}

void LeaderElector::SetLeading(bool leading) {
  leading_ = leading;
  leader_gauge_.Set(leading ? 1 : 0);
  transitions_.Inc();
  LOG(INFO) << "leader election: " << options_.identity
            << (leading ? absl::StrCat(" leads now (", options_.role, ") on Lease ",
                                       options_.namespace_, "/", options_.name)
                        : absl::StrCat(" no longer leads on Lease ", options_.namespace_, "/",
                                       options_.name));
  on_change_(leading);
}

}  // namespace meshlet::controlplane::kubernetes

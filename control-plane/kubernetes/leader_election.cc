#include "control-plane/kubernetes/leader_election.h"

#include <yaml-cpp/yaml.h>

#include <utility>

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
  if (auto g = shard.RegisterGauge("meshlet_cp_leader",
                                   "1 while this control-plane replica leads (mirrors policy from "
                                   "Kubernetes and writes route status), else 0.",
                                   {});
      g.ok()) {
    leader_gauge_ = *g;
  }
  if (auto c =
          shard.RegisterCounter("meshlet_cp_leader_transitions_total",
                                "Times this control-plane replica started or stopped leading.", {});
      c.ok()) {
    transitions_ = *c;
  }
  if (auto c = shard.RegisterCounter("meshlet_cp_leader_lease_errors_total",
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
  api_.Call({.method = "GET",
             .path = absl::StrCat(LeasePath(), "/", options_.name),
             .forbidden_hint = kRbacHint},
            [this, alive = alive_](ApiResult result) {
              if (*alive) OnRead(std::move(result));
            });
}

void LeaderElector::OnRead(ApiResult result) {
  if (releasing_) return;
  const MonotonicTime now = clock_.Now();
  const std::string wall_now =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", clock_.WallNow(), absl::UTCTimeZone());
  auto body = [&](const std::string& resource_version, const std::string& acquire,
                  int64_t transitions) {
    std::string out =
        absl::StrCat(R"({"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":)",
                     JsonQuote(options_.name), R"(,"namespace":)", JsonQuote(options_.namespace_));
    if (!resource_version.empty()) {
      absl::StrAppend(&out, R"(,"resourceVersion":)", JsonQuote(resource_version));
    }
    absl::StrAppend(&out, R"(},"spec":{"holderIdentity":)", JsonQuote(options_.identity),
                    R"(,"leaseDurationSeconds":)", Seconds(options_.lease_duration),
                    R"(,"acquireTime":)", JsonQuote(acquire), R"(,"renewTime":)",
                    JsonQuote(wall_now), R"(,"leaseTransitions":)", transitions, "}}");
    return out;
  };
  if (result.http_status == 404) {
    Write("POST", LeasePath(), body("", wall_now, 0));
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
  const std::string holder = ScalarAt(spec, "holderIdentity");
  const std::string renew = ScalarAt(spec, "renewTime");
  if (holder != observed_holder_ || renew != observed_renew_ || observed_at_ == MonotonicTime{}) {
    observed_holder_ = holder;
    observed_renew_ = renew;
    observed_at_ = now;
  }
  int64_t duration_seconds = 0;
  if (!absl::SimpleAtoi(ScalarAt(spec, "leaseDurationSeconds"), &duration_seconds) ||
      duration_seconds <= 0) {
    duration_seconds = Seconds(options_.lease_duration);
  }
  const bool mine = holder == options_.identity;
  if (!mine && !holder.empty() && now < observed_at_ + std::chrono::seconds(duration_seconds)) {
    // Another replica holds it and renews it.
    if (leading_) SetLeading(false);
    timer_.Enable(options_.retry_period);
    return;
  }
  int64_t transitions = 0;
  (void)absl::SimpleAtoi(ScalarAt(spec, "leaseTransitions"), &transitions);
  const std::string acquire = mine ? ScalarAt(spec, "acquireTime") : wall_now;
  if (!mine) ++transitions;
  Write("PUT", absl::StrCat(LeasePath(), "/", options_.name),
        body(ScalarAt(NodeAt(lease, "metadata"), "resourceVersion"), acquire, transitions));
}

void LeaderElector::Write(const std::string& method, const std::string& path, std::string body) {
  api_.Call({.method = method,
             .path = path,
             .content_type = "application/json",
             .body = std::move(body),
             .forbidden_hint = kRbacHint},
            [this, alive = alive_](ApiResult result) {
              if (*alive) OnWrite(std::move(result));
            });
}

void LeaderElector::OnWrite(ApiResult result) {
  if (releasing_) return;
  if (result.body.ok()) {
    last_renewed_ = clock_.Now();
    observed_holder_ = options_.identity;
    if (!leading_) SetLeading(true);
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
            << (leading ? " leads now (mirrors policy from Kubernetes, writes route status)"
                        : " no longer leads");
  on_change_(leading);
}

}  // namespace meshlet::controlplane::kubernetes

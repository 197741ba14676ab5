#include "control-plane/ca/rotation.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/base/json.h"

namespace meshlet::controlplane::ca {
namespace {

constexpr RotationStep kSteps[] = {RotationStep::kIdle,         RotationStep::kRequested,
                                   RotationStep::kDistributing, RotationStep::kReissuing,
                                   RotationStep::kComplete,     RotationStep::kAborted};

std::string TimeText(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_full, t, absl::UTCTimeZone());
}

bool Holds(const std::vector<std::string>& roots, const std::string& root) {
  return std::find(roots.begin(), roots.end(), root) != roots.end();
}

}  // namespace

absl::string_view RotationKindName(RotationKind kind) {
  return kind == RotationKind::kRoot ? "root" : "intermediate";
}

absl::string_view RotationStepName(RotationStep step) {
  switch (step) {
    case RotationStep::kIdle:
      return "idle";
    case RotationStep::kRequested:
      return "requested";
    case RotationStep::kDistributing:
      return "distributing";
    case RotationStep::kReissuing:
      return "reissuing";
    case RotationStep::kComplete:
      return "complete";
    case RotationStep::kAborted:
      return "aborted";
  }
  return "unknown";
}

bool RotationRunning(RotationStep step) {
  return step == RotationStep::kRequested || step == RotationStep::kDistributing ||
         step == RotationStep::kReissuing;
}

std::string RotationState::ToText() const {
  return absl::StrCat(
      "kind=", RotationKindName(kind), "\nstep=", RotationStepName(step), "\nold_root=", old_root,
      "\nnew_root=", new_root, "\nold_signer=", old_signer, "\nnew_signer=", new_signer,
      "\nsource=", source, "\nbase_source=", base_source, "\nnote=", note,
      "\nstarted=", TimeText(started), "\nstep_since=", TimeText(step_since),
      "\nbundle_ack_timeout=", absl::FormatDuration(limits.bundle_ack_timeout),
      "\nrenewals_per_second=", limits.renewals_per_second,
      "\nrenewal_jitter=", absl::FormatDuration(limits.renewal_jitter),
      "\nrenewal_retry=", absl::FormatDuration(limits.renewal_retry),
      "\nrenewals_requested=", renewals_requested, "\nrenewal_round=", renewal_round,
      "\nrenewal_round_since=", TimeText(renewal_round_since),
      "\nrenewal_window=", absl::FormatDuration(renewal_window), "\n");
}

absl::StatusOr<RotationState> RotationState::FromText(absl::string_view text) {
  std::map<std::string, std::string, std::less<>> fields;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits('=', 1));
    fields[std::string(kv.first)] = std::string(kv.second);
  }
  auto field = [&](absl::string_view name) -> absl::StatusOr<std::string> {
    auto it = fields.find(name);
    if (it == fields.end())
      return absl::InvalidArgumentError(absl::StrCat("rotation state: no ", name));
    return it->second;
  };
  RotationState s;
  std::string error;
  auto time = [&](absl::string_view name, absl::Time* out) -> absl::Status {
    auto text = field(name);
    if (!text.ok()) return text.status();
    if (!absl::ParseTime(absl::RFC3339_full, *text, out, &error)) {
      return absl::InvalidArgumentError(absl::StrCat("rotation state: ", name, ": ", error));
    }
    return absl::OkStatus();
  };
  auto duration = [&](absl::string_view name, absl::Duration* out) -> absl::Status {
    auto text = field(name);
    if (!text.ok()) return text.status();
    if (!absl::ParseDuration(*text, out)) {
      return absl::InvalidArgumentError(absl::StrCat("rotation state: bad ", name));
    }
    return absl::OkStatus();
  };
  auto kind = field("kind");
  if (!kind.ok()) return kind.status();
  if (*kind == "root") {
    s.kind = RotationKind::kRoot;
  } else if (*kind == "intermediate") {
    s.kind = RotationKind::kIntermediate;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("rotation state: bad kind ", *kind));
  }
  auto step = field("step");
  if (!step.ok()) return step.status();
  bool found = false;
  for (RotationStep candidate : kSteps) {
    if (*step == RotationStepName(candidate)) {
      s.step = candidate;
      found = true;
    }
  }
  if (!found) return absl::InvalidArgumentError(absl::StrCat("rotation state: bad step ", *step));
  for (auto [name, out] : {std::pair{"old_root", &s.old_root},
                           {"new_root", &s.new_root},
                           {"old_signer", &s.old_signer},
                           {"new_signer", &s.new_signer},
                           {"source", &s.source}}) {
    auto value = field(name);
    if (!value.ok()) return value.status();
    *out = *value;
  }
  // Optional: records written before these fields existed.
  for (auto [name, out] : {std::pair{"base_source", &s.base_source}, {"note", &s.note}}) {
    auto value = field(name);
    if (value.ok()) *out = *value;
  }
  for (auto [name, out] : {std::pair{"started", &s.started},
                           {"step_since", &s.step_since},
                           {"renewal_round_since", &s.renewal_round_since}}) {
    if (absl::Status st = time(name, out); !st.ok()) return st;
  }
  for (auto [name, out] : {std::pair{"bundle_ack_timeout", &s.limits.bundle_ack_timeout},
                           {"renewal_jitter", &s.limits.renewal_jitter},
                           {"renewal_retry", &s.limits.renewal_retry},
                           {"renewal_window", &s.renewal_window}}) {
    if (absl::Status st = duration(name, out); !st.ok()) return st;
  }
  auto rate = field("renewals_per_second");
  auto round = field("renewal_round");
  auto requested = field("renewals_requested");
  if (!rate.ok() || !round.ok() || !requested.ok() ||
      !absl::SimpleAtod(*rate, &s.limits.renewals_per_second) ||
      !absl::SimpleAtoi(*round, &s.renewal_round) ||
      !absl::SimpleAtoi(*requested, &s.renewals_requested)) {
    return absl::InvalidArgumentError("rotation state: bad renewal counters");
  }
  return s;
}

absl::StatusOr<RotationState> Rotation::Begin(const RotationState& current, RotationKind kind,
                                              std::string old_root, std::string new_root,
                                              std::string old_signer, std::string new_signer,
                                              std::string source, RotationLimits limits,
                                              absl::Time now) {
  if (current.step == RotationStep::kDistributing || current.step == RotationStep::kReissuing) {
    return absl::FailedPreconditionError(
        absl::StrCat("a ", RotationKindName(current.kind), " rotation is in step ",
                     RotationStepName(current.step), " since ", TimeText(current.step_since),
                     "; finish or abort it first"));
  }
  if (current.step == RotationStep::kRequested) now = std::min(now, current.started);
  if (kind == RotationKind::kRoot && old_root == new_root) {
    return absl::InvalidArgumentError("the new root is the root in use");
  }
  if (kind == RotationKind::kIntermediate && old_root != new_root) {
    return absl::InvalidArgumentError(
        "an intermediate rotation keeps the root; the new signer chains to another root");
  }
  if (old_signer == new_signer)
    return absl::InvalidArgumentError("the new signer is the one in use");
  if (!(limits.renewals_per_second > 0)) {
    return absl::InvalidArgumentError("renewals per second must be above zero");
  }
  RotationState s;
  s.kind = kind;
  s.old_root = std::move(old_root);
  s.new_root = std::move(new_root);
  s.old_signer = std::move(old_signer);
  s.new_signer = std::move(new_signer);
  s.source = std::move(source);
  s.limits = limits;
  s.started = now;
  s.step_since = now;
  // Step 1 for a root; an intermediate needs no bundle change and starts at step 3.
  s.step = kind == RotationKind::kRoot ? RotationStep::kDistributing : RotationStep::kReissuing;
  if (current.step == RotationStep::kRequested) s.base_source = current.base_source;
  return s;
}

absl::StatusOr<RotationState> Rotation::Request(const RotationState& current, RotationKind kind,
                                                std::string source, RotationLimits limits,
                                                absl::Time now, std::string base_source) {
  if (RotationRunning(current.step)) {
    return absl::FailedPreconditionError(
        absl::StrCat("a ", RotationKindName(current.kind), " rotation is in step ",
                     RotationStepName(current.step), " since ", TimeText(current.step_since),
                     "; finish or abort it first"));
  }
  if (source.empty()) return absl::InvalidArgumentError("no new material named");
  if (!(limits.renewals_per_second > 0)) {
    return absl::InvalidArgumentError("renewals per second must be above zero");
  }
  if (limits.renewal_jitter < absl::ZeroDuration() ||
      limits.renewal_retry <= absl::ZeroDuration() ||
      limits.bundle_ack_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "the renewal jitter must not be negative, the retry and ACK timeout above zero");
  }
  RotationState s;
  s.kind = kind;
  s.step = RotationStep::kRequested;
  s.source = std::move(source);
  s.base_source = std::move(base_source);
  s.limits = limits;
  s.started = now;
  s.step_since = now;
  return s;
}

void Rotation::Enter(RotationStep step, absl::Time now) {
  state_.step = step;
  state_.step_since = now;
}

RotationDecision Rotation::Advance(const std::vector<SidecarObservation>& sidecars,
                                   absl::Time now) {
  switch (state_.step) {
    case RotationStep::kDistributing:
      return Distributing(sidecars, now);
    case RotationStep::kReissuing:
      return Reissuing(sidecars, now);
    default:
      break;
  }
  RotationDecision d;
  d.message = std::string(RotationStepName(state_.step));
  return d;
}

RotationDecision Rotation::Distributing(const std::vector<SidecarObservation>& sidecars,
                                        absl::Time now) {
  RotationDecision d;
  for (const SidecarObservation& s : sidecars) {
    if (!Holds(s.acked_roots, state_.new_root)) d.waiting.push_back(s.node);
  }
  std::sort(d.waiting.begin(), d.waiting.end());
  if (!d.waiting.empty()) {
    d.ack_timed_out = now - state_.step_since > state_.limits.bundle_ack_timeout;
    d.message = absl::StrCat("step 2: ", d.waiting.size(), " of ", sidecars.size(),
                             " sidecars have not ACKed a bundle with the new root",
                             d.ack_timed_out ? " (past the ACK timeout; abort or fix them)" : "");
    return d;
  }
  Enter(RotationStep::kReissuing, now);
  d.changed = true;
  d.message = "step 3: every sidecar trusts the new root; signing switched to the new material";
  return d;
}

RotationDecision Rotation::Reissuing(const std::vector<SidecarObservation>& sidecars,
                                     absl::Time now) {
  RotationDecision d;
  // The certificate step 5 waits out: one chaining to the old root, or (intermediate) one
  // issued by the old signer.
  auto stale = [&](const SidecarObservation& s) {
    return state_.kind == RotationKind::kRoot ? s.leaf_root == state_.old_root
                                              : s.leaf_issuer == state_.old_signer;
  };
  for (const SidecarObservation& s : sidecars) {
    if (stale(s)) d.waiting.push_back(s.node);
  }
  std::sort(d.waiting.begin(), d.waiting.end());
  if (d.waiting.empty()) {
    if (state_.kind == RotationKind::kRoot) {
      Enter(RotationStep::kComplete, now);
      d.message = "step 6: no live certificate chains to the old root; old root removed";
    } else {
      Enter(RotationStep::kComplete, now);
      d.message = "no live certificate from the old intermediate; rotation complete";
    }
    d.changed = true;
    return d;
  }
  // Step 4: a round asks every sidecar still behind (the Secret names the new signer); the
  // next one starts when a round's window and renewal_retry have passed with sidecars left.
  if (state_.renewal_round == 0 ||
      now - state_.renewal_round_since >= state_.renewal_window + state_.limits.renewal_retry) {
    ++state_.renewal_round;
    state_.renewal_round_since = now;
    state_.renewal_window = std::max(state_.limits.renewal_jitter,
                                     absl::Seconds(std::ceil(static_cast<double>(d.waiting.size()) /
                                                             state_.limits.renewals_per_second)));
    state_.renewals_requested += d.waiting.size();
    d.renewal_round_started = true;
    d.changed = true;
  }
  d.message = absl::StrCat(
      state_.kind == RotationKind::kRoot ? "step 5: " : "reissuing: ", d.waiting.size(), " of ",
      sidecars.size(), " sidecars still hold a certificate from the old ",
      state_.kind == RotationKind::kRoot ? "root" : "intermediate", "; renewal round ",
      state_.renewal_round, " (", absl::FormatDuration(state_.renewal_window), " window)");
  return d;
}

absl::Status Rotation::Abort(absl::Time now, std::string note) {
  if (state_.step != RotationStep::kDistributing && state_.step != RotationStep::kRequested) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot abort in step ", RotationStepName(state_.step),
        state_.step == RotationStep::kReissuing ? ": signing already switched to the new material; "
                                                  "finish the rotation (or start one back)"
                                                : ": no rotation is running"));
  }
  Enter(RotationStep::kAborted, now);
  std::replace(note.begin(), note.end(), '\n', ' ');
  state_.note = std::move(note);
  return absl::OkStatus();
}

std::vector<std::string> Rotation::BundleRoots() const {
  switch (state_.step) {
    case RotationStep::kDistributing:
    case RotationStep::kReissuing:
      if (state_.old_root == state_.new_root) return {state_.new_root};
      return {state_.old_root, state_.new_root};
    case RotationStep::kComplete:
      return {state_.new_root};
    case RotationStep::kAborted:
      return state_.old_root.empty() ? std::vector<std::string>{}
                                     : std::vector<std::string>{state_.old_root};
    case RotationStep::kIdle:
    case RotationStep::kRequested:
      break;
  }
  return {};
}

std::string Rotation::Signer() const {
  switch (state_.step) {
    case RotationStep::kReissuing:
    case RotationStep::kComplete:
      return state_.new_signer;
    case RotationStep::kDistributing:
    case RotationStep::kAborted:
      return state_.old_signer;
    case RotationStep::kIdle:
    case RotationStep::kRequested:
      break;
  }
  return "";
}

std::optional<RenewalRound> Rotation::Renewal() const {
  if (state_.step != RotationStep::kReissuing || state_.renewal_round == 0) return std::nullopt;
  return RenewalRound{state_.new_signer, state_.renewal_round, state_.renewal_window};
}

std::string RotationStatusJson(const RotationState& state, const RotationDecision& decision,
                               const std::vector<SidecarObservation>& sidecars) {
  std::string out = "{\"kind\":";
  AppendJsonString(&out, RotationKindName(state.kind));
  absl::StrAppend(&out, ",\"step\":");
  AppendJsonString(&out, RotationStepName(state.step));
  absl::StrAppend(&out, ",\"since\":");
  AppendJsonString(&out, TimeText(state.step_since));
  absl::StrAppend(&out, ",\"started\":");
  AppendJsonString(&out, TimeText(state.started));
  for (auto [name, value] : {std::pair{"old_root", &state.old_root},
                             {"new_root", &state.new_root},
                             {"old_signer", &state.old_signer},
                             {"new_signer", &state.new_signer},
                             {"source", &state.source},
                             {"base_source", &state.base_source},
                             {"note", &state.note},
                             {"message", &decision.message}}) {
    absl::StrAppend(&out, ",\"", name, "\":");
    AppendJsonString(&out, *value);
  }
  absl::StrAppend(&out, ",\"ack_timed_out\":", decision.ack_timed_out ? "true" : "false",
                  ",\"renewals_requested\":", state.renewals_requested,
                  ",\"renewal_round\":", state.renewal_round,
                  ",\"renewal_window_seconds\":", absl::ToInt64Seconds(state.renewal_window),
                  ",\"waiting\":");
  AppendJsonStringArray(&out, decision.waiting);
  absl::StrAppend(&out, ",\"sidecars\":[");
  for (size_t i = 0; i < sidecars.size(); ++i) {
    const SidecarObservation& s = sidecars[i];
    absl::StrAppend(&out, i == 0 ? "" : ",", "{\"node\":");
    AppendJsonString(&out, s.node);
    absl::StrAppend(&out, ",\"bundle_roots\":");
    AppendJsonStringArray(&out, s.acked_roots);
    absl::StrAppend(&out, ",\"leaf_root\":");
    AppendJsonString(&out, s.leaf_root);
    absl::StrAppend(&out, ",\"leaf_issuer\":");
    AppendJsonString(&out, s.leaf_issuer);
    absl::StrAppend(&out, "}");
  }
  absl::StrAppend(&out, "]}");
  return out;
}

absl::StatusOr<RotationStore::Loaded> RotationStore::Load() const {
  auto stored = store_.Get(kRotationKey);
  if (absl::IsNotFound(stored.status())) return Loaded{};
  if (!stored.ok()) return stored.status();
  auto state = RotationState::FromText(stored->body);
  if (!state.ok()) return state.status();
  return Loaded{*std::move(state), stored->revision};
}

absl::StatusOr<int64_t> RotationStore::Save(const RotationState& state, int64_t revision) {
  return store_.Put(kRotationKey, state.ToText(), revision);
}

}  // namespace meshlet::controlplane::ca

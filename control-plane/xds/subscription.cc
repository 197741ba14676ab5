#include "control-plane/xds/subscription.h"

#include <algorithm>

#include "xds/protocol.h"

namespace meshlet::controlplane::ads {

void TypeSubscription::Subscribe(const std::vector<std::string>& names) {
  subscribed_ = true;
  names_.clear();
  wildcard_ = names.empty();
  for (const std::string& name : names) {
    if (name == "*") {
      wildcard_ = true;
    } else if (!xds::IsLookupKey(name)) {
      names_.insert(name);
    }
  }
}

void TypeSubscription::UpdateDeltaSubscription(const std::vector<std::string>& subscribe,
                                               const std::vector<std::string>& unsubscribe) {
  // The first request of a type with no names is a wildcard subscription (as in xDS).
  if (!subscribed_ && subscribe.empty()) wildcard_ = true;
  subscribed_ = true;
  for (const std::string& name : subscribe) {
    if (name == "*") {
      wildcard_ = true;
    } else if (!xds::IsLookupKey(name)) {
      names_.insert(name);
    }
  }
  for (const std::string& name : unsubscribe) {
    if (name == "*") {
      wildcard_ = false;
    } else if (!xds::IsLookupKey(name)) {
      names_.erase(name);
    }
  }
}

bool TypeSubscription::Wants(absl::string_view name) const {
  return subscribed_ && (wildcard_ || names_.contains(name));
}

ResourceMap TypeSubscription::Filter(const ResourceMap& all) const {
  if (!subscribed_) return {};
  if (wildcard_) return all;
  ResourceMap out;
  for (const auto& [name, resource] : all) {
    if (names_.contains(name)) out.emplace(name, resource);
  }
  return out;
}

bool TypeSubscription::AddKey(absl::string_view key, MonotonicTime asked_at) {
  auto [it, added] = answered_.try_emplace(key, KeyState{.asked_at = asked_at});
  if (added) keys_.emplace_back(key);
  return added;
}

bool TypeSubscription::RemoveKey(absl::string_view key) {
  if (answered_.erase(key) == 0) return false;
  keys_.erase(std::find(keys_.begin(), keys_.end(), key));
  ++keys_removed_;
  return true;
}

const std::string* TypeSubscription::LastAnswer(absl::string_view key) const {
  auto it = answered_.find(key);
  if (it == answered_.end() || !it->second.answer.has_value()) return nullptr;
  return &*it->second.answer;
}

std::optional<MonotonicTime> TypeSubscription::RecordKeyAnswer(absl::string_view key,
                                                               std::string answer) {
  auto it = answered_.find(key);
  if (it == answered_.end()) return std::nullopt;
  const bool first = !it->second.answer.has_value();
  it->second.answer = std::move(answer);
  if (!first) return std::nullopt;
  return it->second.asked_at;
}

void TypeSubscription::RecordSent(std::string nonce, std::string version, ResourceMap state_after,
                                  MonotonicTime changed_at) {
  if (outstanding_.size() >= kMaxOutstanding) outstanding_.pop_front();
  reported_version_.clear();
  if (withheld_version_ != version) withheld_version_.clear();
  sent_nonce_ = nonce;
  sent_version_ = version;
  assumed_state_ = std::make_shared<const ResourceMap>(std::move(state_after));
  outstanding_.push_back(Sent{.nonce = std::move(nonce),
                              .version = std::move(version),
                              .state_after = assumed_state_,
                              .changed_at = changed_at});
}

void TypeSubscription::RecordPartSent(std::string nonce, std::string version,
                                      MonotonicTime changed_at) {
  if (outstanding_.size() >= kMaxOutstanding) outstanding_.pop_front();
  reported_version_.clear();
  if (withheld_version_ != version) withheld_version_.clear();
  sent_nonce_ = nonce;
  outstanding_.push_back(Sent{.nonce = std::move(nonce),
                              .version = std::move(version),
                              .changed_at = changed_at,
                              .part = true});
}

void TypeSubscription::RecordWithheld(std::string version) {
  withheld_version_ = std::move(version);
}

TypeSubscription::Answer TypeSubscription::OnAnswer(absl::string_view nonce,
                                                    std::optional<Nack> nack) {
  auto it = outstanding_.begin();
  while (it != outstanding_.end() && it->nonce != nonce) ++it;
  if (it == outstanding_.end()) {
    ++stale_answers_;
    return Answer::kStale;
  }
  Sent answered = std::move(*it);
  outstanding_.erase(outstanding_.begin(), it + 1);
  if (!nack.has_value()) {
    ++acks_;
    last_answer_was_nack_ = false;
    // Part of a split push: the sidecar holds the state before it plus some of the push; the
    // last chunk's ACK records the whole.
    if (answered.part) return Answer::kAck;
    acked_version_ = answered.version;
    if (answered.valid_state) {
      acked_state_ = std::move(answered.state_after);
    } else {
      // Diffed against a state the sidecar refused: what it holds now is not known exactly, so
      // the next diff goes against the last known state and re-sends what may be missing.
      assumed_state_ = acked_state_;
    }
    last_acked_change_ = answered.changed_at;
    return Answer::kAck;
  }
  ++nacks_;
  last_answer_was_nack_ = true;
  nack->version = answered.version;
  last_nack_ = std::move(nack);
  assumed_state_ = acked_state_;
  for (Sent& later : outstanding_) later.valid_state = false;
  return Answer::kNack;
}

bool TypeSubscription::ShouldSend(absl::string_view version) const {
  if (version == sent_version_) return false;
  if (last_nack_.has_value() && last_nack_->version == version) return false;
  return true;
}

void TypeSubscription::SetInitialVersions(const ResourceMap& state) {
  assumed_state_ = std::make_shared<const ResourceMap>(state);
  acked_state_ = assumed_state_;
  // What it holds is what it runs: as if sent and ACKed (proxy-status says ACKED, not NOT_SENT,
  // for a type a restarted control plane has no reason to send again). A sidecar holding nothing
  // of the type still gets its first (possibly empty) answer.
  if (!state.empty()) {
    sent_version_ = TypeVersion(state);
    acked_version_ = sent_version_;
  }
}

void TypeSubscription::SetReportedVersion(const std::string& version) {
  sent_version_ = version;
  acked_version_ = version;
  reported_version_ = version;
}

void TypeSubscription::SetReportedState(const ResourceMap& state) {
  assumed_state_ = std::make_shared<const ResourceMap>(state);
  acked_state_ = assumed_state_;
  reported_version_.clear();
}

bool TypeSubscription::SameNames(const std::vector<std::string>& names) const {
  if (!subscribed_) return false;
  bool wildcard = names.empty();
  absl::flat_hash_set<std::string> set;
  for (const std::string& name : names) {
    if (name == "*") {
      wildcard = true;
    } else if (!xds::IsLookupKey(name)) {
      set.insert(name);
    }
  }
  return wildcard == wildcard_ && set == names_;
}

std::optional<MonotonicTime> TypeSubscription::oldest_unanswered_change() const {
  std::optional<MonotonicTime> oldest;
  for (const Sent& sent : outstanding_) {
    if (!oldest || sent.changed_at < *oldest) oldest = sent.changed_at;
  }
  return oldest;
}

}  // namespace meshlet::controlplane::ads

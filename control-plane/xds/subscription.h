#pragma once

// TypeSubscription: what the ADS server knows about one resource type on one sidecar stream —
// whether and to what the sidecar subscribed, which responses await its answer (by nonce), what
// it has ACKed, and its last NACK. Pure state, no I/O: the stream feeds it requests and the
// responses it sends, and asks it whether a response is worth sending.
//
// Nonces: every response carries a fresh nonce. A request naming the nonce of a response still
// awaiting an answer is that response's ACK (no error_detail) or NACK (error_detail); answers for
// older responses are implied and dropped. A request naming any other nonce is stale (an answer
// to a response this state no longer tracks) and changes nothing.
//
// NACKs: a NACKed response's version is remembered, and ShouldSend() refuses to send it again, so
// a resource the sidecar cannot apply is not pushed in a loop; the next different version goes
// out normally. After a NACK the sidecar still runs its last ACKed state, so later diffs (delta)
// are computed against that.
//
// Lookup keys (ADR 0086, xds/protocol.h): a delta stream's ServiceRoute subscription may name
// keys ("addr:...", "host:...") beside resource names. They are never names: the stream adds
// the ones it accepts with AddKey (it checks type, stream kind and limits first), Subscribe and
// UpdateDeltaSubscription skip them. Keys are held in the order first subscribed, each with the
// answer last sent for it (the ServiceRoute answering it, or "" for missing), so a key is
// answered once and again only when its answer changes.

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "control-plane/xds/resource_set.h"

namespace meshlet::controlplane::ads {

class TypeSubscription {
 public:
  enum class Answer { kAck, kNack, kStale };

  struct Nack {
    std::string version;
    std::string message;
    int32_t code = 0;
    absl::Time at;
  };

  // At most this many responses await an answer; older ones are forgotten (their answers become
  // stale). A sidecar answers in order, so only a stuck one reaches it.
  // A split delta push sends one response per chunk: up to 32 MiB of one type at the default
  // 2 MiB per response beside earlier responses.
  static constexpr size_t kMaxOutstanding = 64;

  // Subscribes to `names` (empty: every resource of the type, "wildcard"). Replaces an earlier
  // subscription's names. Lookup keys among them are skipped (a state-of-the-world stream holds
  // none).
  void Subscribe(const std::vector<std::string>& names);
  // Delta: adds and removes names ("*" means wildcard). Lookup keys among them are skipped
  // (AddKey, RemoveKey).
  void UpdateDeltaSubscription(const std::vector<std::string>& subscribe,
                               const std::vector<std::string>& unsubscribe);
  bool subscribed() const { return subscribed_; }
  bool wildcard() const { return wildcard_; }
  // Whether `name` is among what the sidecar asked for.
  bool Wants(absl::string_view name) const;
  // `all` restricted to the names the sidecar asked for (keys play no part: the generator
  // answers them, and the push adds the ServiceRoutes answering them).
  ResourceMap Filter(const ResourceMap& all) const;

  // Holds `key` (a lookup key the stream accepted), asked at `asked_at`. False when it is held
  // already (its place and answer stay).
  bool AddKey(absl::string_view key, MonotonicTime asked_at);
  // Forgets `key` and the answer sent for it. False when it was not held.
  bool RemoveKey(absl::string_view key);
  bool HasKey(absl::string_view key) const { return answered_.contains(key); }
  // The keys held, in the order first subscribed.
  const std::vector<std::string>& keys() const { return keys_; }
  // Keys removed so far. Keys are otherwise only appended: while it is unchanged, the keys held
  // earlier are the first of keys().
  uint64_t keys_removed() const { return keys_removed_; }
  // The answer last sent for `key`: the ServiceRoute's name, "" for missing; null when none was
  // sent yet (or the key is not held).
  const std::string* LastAnswer(absl::string_view key) const;
  // Records `answer` sent for the held `key`. Returns when the key was asked if this is its first
  // answer (for the answer-time histogram), nullopt otherwise.
  std::optional<MonotonicTime> RecordKeyAnswer(absl::string_view key, std::string answer);

  // Records a response going out: its nonce, version, and the resources the sidecar holds once it
  // applies it. `changed_at` is when the change it carries happened (for convergence time).
  void RecordSent(std::string nonce, std::string version, ResourceMap state_after,
                  MonotonicTime changed_at);
  // Records a response that is one chunk of a split delta push, before its last: its ACK says the
  // sidecar applied part of the push and changes no known state (the last chunk's ACK does); its
  // NACK is a NACK of the push, as for any response.
  void RecordPartSent(std::string nonce, std::string version, MonotonicTime changed_at);
  // A response of `version` was not sent: it (or one resource of it) is above the message limit.
  // Shown until a response of another version of the type goes out (a delta response without the
  // resource carries the withheld version itself).
  void RecordWithheld(std::string version);
  // The version last withheld as too large, if nothing was sent since.
  const std::string& withheld_version() const { return withheld_version_; }
  // A request that names `nonce`. `nack` holds the error detail of a NACK.
  Answer OnAnswer(absl::string_view nonce, std::optional<Nack> nack);

  // A response with `version` would change something: it is neither the last one sent nor the
  // last one NACKed.
  bool ShouldSend(absl::string_view version) const;

  // Delta: the sidecar reconnected holding these resource versions (non-empty: they count as sent
  // and ACKed, their type version as the version sent).
  void SetInitialVersions(const ResourceMap& state);
  // State of the world: the sidecar reconnected running `version` of this type (its first
  // request's version_info). A push of that same version is then skipped, so a restarted
  // control plane does not re-send what every sidecar already runs.
  void SetReportedVersion(const std::string& version);
  // The version the sidecar reported while nothing has been sent since and what it holds is
  // not known; empty otherwise.
  const std::string& reported_version() const { return reported_version_; }
  // What the sidecar holds is `state`, the resources of the version it reported (versions are
  // content hashes): later pushes keep what it holds until nothing names it (make before
  // break), as after a response it ACKed.
  void SetReportedState(const ResourceMap& state);
  // Whether `names` is exactly the current subscription (a state-of-the-world request repeats
  // the whole list each time).
  bool SameNames(const std::vector<std::string>& names) const;

  bool awaiting_answer() const { return !outstanding_.empty(); }
  // Earliest change still awaiting an answer.
  std::optional<MonotonicTime> oldest_unanswered_change() const;
  // When the last ACK arrived for a response carrying a change made at this time.
  std::optional<MonotonicTime> last_acked_change() const { return last_acked_change_; }

  // What the sidecar will hold once it applies everything sent so far (after a NACK: what it
  // held before).
  const ResourceMap& assumed_state() const { return *assumed_state_; }
  const ResourceMap& acked_state() const { return *acked_state_; }
  const std::string& sent_version() const { return sent_version_; }
  const std::string& sent_nonce() const { return sent_nonce_; }
  const std::string& acked_version() const { return acked_version_; }
  const std::optional<Nack>& last_nack() const { return last_nack_; }
  // True when the latest answer was a NACK (the sidecar runs an older version of this type).
  bool nacked() const { return last_answer_was_nack_; }
  uint64_t acks() const { return acks_; }
  uint64_t nacks() const { return nacks_; }
  uint64_t stale_answers() const { return stale_answers_; }

 private:
  struct Sent {
    std::string nonce;
    std::string version;
    // Shared with assumed_state_ and, once ACKed, acked_state_: recording a push or an answer
    // copies no map.
    std::shared_ptr<const ResourceMap> state_after;
    MonotonicTime changed_at;
    bool valid_state = true;  // false when sent before a NACK that came later
    bool part = false;        // a chunk before the last of a split delta push
  };

  bool subscribed_ = false;
  bool wildcard_ = false;
  absl::flat_hash_set<std::string> names_;

  struct KeyState {
    std::optional<std::string> answer;  // last sent; nullopt: not answered yet
    MonotonicTime asked_at{};
  };
  std::vector<std::string> keys_;
  absl::flat_hash_map<std::string, KeyState> answered_;
  uint64_t keys_removed_ = 0;

  std::deque<Sent> outstanding_;
  // Immutable once recorded (never null).
  std::shared_ptr<const ResourceMap> assumed_state_ = std::make_shared<const ResourceMap>();
  std::shared_ptr<const ResourceMap> acked_state_ = assumed_state_;
  std::string sent_version_;
  std::string sent_nonce_;
  std::string acked_version_;
  std::string reported_version_;
  std::string withheld_version_;
  std::optional<Nack> last_nack_;
  bool last_answer_was_nack_ = false;
  std::optional<MonotonicTime> last_acked_change_;
  uint64_t acks_ = 0;
  uint64_t nacks_ = 0;
  uint64_t stale_answers_ = 0;
};

}  // namespace meshlet::controlplane::ads

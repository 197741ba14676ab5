#pragma once

// Pieces shared by the gRPC server (server.h) and client (client.h); not a public API.
//
// - EncodeGrpcTimeout: the grpc-timeout header value for a deadline.
// - InboundMessages: cuts received DATA into messages (FrameDecoder) and queues them until the
//   call's owner takes them, so a call can pause delivery without losing what one DATA frame
//   already carried.
// - WatermarkReporter: tells a call's user when its write buffer crosses the watermarks.
// - CallSet: the calls open on one HTTP/2 connection, with the bookkeeping that decides when
//   the codec no longer refers to a call's stream (only then may the call be released).
// - CallConnection: what a client's and a server's connection have in common: the connection,
//   its codec, the CallSet, and the callbacks that tie them together.
// - ParseEach: a message callback that parses each message as a protobuf type (OnProtoMessage).
//
// Everything here runs on the connection's loop thread.

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/http/grpc/framing.h"
#include "common/net/buffer.h"
#include "common/net/connection.h"

namespace meshlet::http::grpc::grpc_internal {

// Marks a call into the user's code (a handler or a call's owner), so callbacks it causes are
// posted to the loop instead of re-entering the user.
class UserCallScope {
 public:
  explicit UserCallScope(int& depth) : depth_(depth) { ++depth_; }
  ~UserCallScope() { --depth_; }
  UserCallScope(const UserCallScope&) = delete;
  UserCallScope& operator=(const UserCallScope&) = delete;

 private:
  int& depth_;
};

// A message callback that parses each message as `T` for `callback`; a message that does not
// parse goes to `refuse` with "could not parse the <what> as <type>" instead (the caller ends the
// call with its status). `what` must outlive the callback (a literal).
template <typename T, typename Refuse>
std::function<void(std::string)> ParseEach(std::function<void(T)> callback, absl::string_view what,
                                           Refuse refuse) {
  return [callback = std::move(callback), what, refuse = std::move(refuse)](std::string bytes) {
    T message;
    if (!message.ParseFromString(bytes)) {
      refuse(absl::StrCat("could not parse the ", what, " as ", message.GetTypeName()));
      return;
    }
    callback(std::move(message));
  };
}

// "<1-8 digits><unit>", rounded up so the peer never sees a shorter deadline than ours; a
// negative or zero duration becomes "1n" (already expired, but still a valid value).
std::string EncodeGrpcTimeout(Duration timeout);

class InboundMessages {
 public:
  explicit InboundMessages(size_t max_message_size) : decoder_(max_message_size) {}

  // Appends every message completed by `data` (drained) to the queue. Errors: an oversize
  // message (RESOURCE_EXHAUSTED) or a malformed prefix; a compressed message is INTERNAL, as
  // only the identity encoding is ever announced.
  absl::Status Decode(net::Buffer& data);

  bool empty() const { return queue_.empty(); }
  std::string Pop() {
    std::string m = std::move(queue_.front());
    queue_.pop_front();
    return m;
  }
  void Clear() { queue_.clear(); }
  // Part of a message has arrived: at end of stream it was cut short.
  bool HasPartialMessage() const { return decoder_.HasPartialFrame(); }

 private:
  FrameDecoder decoder_;
  std::vector<Frame> frames_;  // scratch, keeps its capacity
  std::deque<std::string> queue_;
};

// The calls open on one connection. A call is "live" until this side ends it; then "ending"
// until the codec is known to be done with its stream: either the stream reported a reset, or
// the codec's count of active streams shows that no ending stream is left (a stream that ends
// normally reports nothing). Released calls are dropped at the end of the loop turn, never
// inside a callback of their own.
template <typename Call>
class CallSet {
 public:
  explicit CallSet(event::Loop& loop) : loop_(loop) {}
  ~CallSet() { Clear(); }
  CallSet(const CallSet&) = delete;
  CallSet& operator=(const CallSet&) = delete;

  void Add(std::shared_ptr<Call> call) {
    Call* raw = call.get();
    entries_[raw] = Entry{std::move(call), false};
    ++live_;
  }
  // This side ended the call; its stream may still be draining in the codec.
  void MarkEnding(Call* call) {
    auto it = entries_.find(call);
    if (it == entries_.end() || it->second.ending) return;
    it->second.ending = true;
    --live_;
  }
  // The codec is done with the call's stream.
  void Release(Call* call) {
    auto it = entries_.find(call);
    if (it == entries_.end()) return;
    if (!it->second.ending) --live_;
    Drop(std::move(it->second.call));
    entries_.erase(it);
  }
  // Releases every ending call once the codec's active streams are exactly the live calls.
  void Purge(size_t codec_active_streams) {
    if (codec_active_streams != live_ || live_ == entries_.size()) return;
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (it->second.ending) {
        Drop(std::move(it->second.call));
        entries_.erase(it++);
      } else {
        ++it;
      }
    }
  }
  // A snapshot, so callbacks fired while walking it may change the set.
  std::vector<std::shared_ptr<Call>> Snapshot() const {
    std::vector<std::shared_ptr<Call>> out;
    out.reserve(entries_.size());
    for (const auto& [raw, entry] : entries_) out.push_back(entry.call);
    return out;
  }
  void Clear() {
    for (auto& [raw, entry] : entries_) Drop(std::move(entry.call));
    entries_.clear();
    live_ = 0;
  }

  size_t live() const { return live_; }
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::shared_ptr<Call> call;
    bool ending = false;
  };
  void Drop(std::shared_ptr<Call> call) {
    loop_.DeferDelete(std::make_unique<std::shared_ptr<Call>>(std::move(call)));
  }

  event::Loop& loop_;
  absl::flat_hash_map<Call*, Entry> entries_;
  size_t live_ = 0;
};

// Write-buffer watermark state of one call and its user's callback. A crossing noticed while the
// user is inside one of the call's own methods is reported on the next loop turn instead (a
// callback never runs inside the user's call), and only if it still holds then.
class WatermarkReporter {
 public:
  void set_callback(std::function<void(bool above_high)> callback) {
    callback_ = std::move(callback);
  }
  void clear_callback() { callback_ = nullptr; }
  bool above_high() const { return above_high_; }

  // Records a crossing; false if the state was already so (nothing to report).
  bool MarkHigh() { return !std::exchange(above_high_, true); }
  // Reports the high crossing now, or next turn when `defer`. `still_live` decides then whether
  // the call is still open, and must keep the call (and so this reporter) alive.
  void ReportHigh(event::Loop& loop, bool defer, std::function<bool()> still_live) {
    if (!callback_) return;
    if (!defer) {
      Report(true);
      return;
    }
    loop.Post([this, still_live = std::move(still_live)] {
      if (still_live() && above_high_ && callback_) Report(true);
    });
  }
  // Records and reports the low crossing; false if the buffer was not above the high watermark.
  bool OnLow() {
    if (!std::exchange(above_high_, false)) return false;
    if (callback_) Report(false);
    return true;
  }

 private:
  // Runs a copy: the callback may replace or clear itself.
  void Report(bool above_high) {
    std::function<void(bool)> callback = callback_;
    callback(above_high);
  }

  std::function<void(bool)> callback_;
  bool above_high_ = false;
};

// The part of one gRPC connection that the client (Channel) and the server share: the
// connection, its HTTP/2 codec (`Codec`, h2::ClientCodec or h2::ServerCodec), the calls open on
// it, and the callbacks that tie the three together. `Owner` is the interface `Call` reports its
// end to (ClientCall::Owner, ServerCall::Owner). The subclass creates the connection and the
// codec, decides what happens after activity (AfterActivity), and calls TearDown() first thing in
// its destructor, while what the codec refers to is still alive.
template <typename Call, typename Owner, typename Codec>
class CallConnection : public net::ConnectionCallbacks, public Owner {
 public:
  CallConnection(const CallConnection&) = delete;
  CallConnection& operator=(const CallConnection&) = delete;

  size_t live_calls() const { return calls_.live(); }

  // net::ConnectionCallbacks (OnData and OnClose are the subclass's).
  void OnWriteHighWatermark() override { codec_->OnUnderlyingWriteHighWatermark(); }
  void OnWriteLowWatermark() override {
    codec_->OnUnderlyingWriteLowWatermark();
    AfterActivity();
  }

  // Owner
  void OnCallEnding(Call& call) override {
    calls_.MarkEnding(&call);
    if (!closed_) AfterActivity();
  }
  void OnCallReleased(Call& call) override { calls_.Release(&call); }

 protected:
  CallConnection(event::Loop& loop, std::unique_ptr<net::Connection> connection)
      : connection_(std::move(connection)), calls_(loop) {}
  ~CallConnection() override = default;

  // Something happened on the connection (bytes read or written, a call ended): the subclass
  // purges released calls (calls_.Purge) and closes the connection if it is done. Runs on the
  // loop thread, never after the connection closed.
  virtual void AfterActivity() = 0;

  // For the subclass's destructor, after it detached its calls (so they stay quiet): destroys the
  // codec, which resets the calls' streams, releases the calls, and closes the connection
  // without calling back.
  void TearDown() {
    codec_.reset();
    calls_.Clear();
    if (connection_ != nullptr && !connection_->closed()) {
      connection_->SetCallbacks(nullptr);
      connection_->Close(net::CloseMode::kNoFlush);
    }
  }

  std::unique_ptr<net::Connection> connection_;
  // Declared before the codec: calls must outlive it (see TearDown).
  CallSet<Call> calls_;
  std::unique_ptr<Codec> codec_;
  bool closed_ = false;
};

}  // namespace meshlet::http::grpc::grpc_internal

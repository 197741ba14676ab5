#pragma once

// OneConnectionClient: what the test app's clients (client.h's Fetch, tcp_client.h's TcpSession)
// share. One exchange over one connection, under one deadline that covers it all: name lookup,
// connect, the exchange itself. The host is looked up with getaddrinfo (AddressesOf) when it
// starts, on the loop thread: names come from /etc/hosts in the pods the tests play, which
// answers at once. A refused connect tries the name's next address ("localhost" may be ::1
// first). The outcome (a Result with `error` and `elapsed`) goes to the callback exactly once, on
// a later loop turn than Begin(), and the callback may destroy the client; destroying the client
// earlier cancels it, and the callback never fires.
//
// A subclass starts its exchange on each new connection (OnConnectStarted, where it may write:
// bytes written while connecting are sent once connected), reads through the
// net::ConnectionCallbacks it implements, and ends with Finish().

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/net/address.h"
#include "common/net/connection.h"

namespace meshlet::testapp {

// The addresses to connect to for `host`: an IP literal as it is, a name as getaddrinfo gives it
// (net::ResolveAll), on the calling thread. Unavailable when the name is not known.
absl::StatusOr<std::vector<net::Address>> AddressesOf(const std::string& host, uint16_t port);

template <typename Result>
class OneConnectionClient : public net::ConnectionCallbacks {
 public:
  using Callback = absl::AnyInvocable<void(Result)>;

  ~OneConnectionClient() override { CloseConnection(); }
  OneConnectionClient(const OneConnectionClient&) = delete;
  OneConnectionClient& operator=(const OneConnectionClient&) = delete;

 protected:
  // `peer` names the other side in errors (a URL, "host:port").
  OneConnectionClient(event::Loop& loop, std::string host, uint16_t port, std::string peer,
                      Duration timeout, Callback callback)
      : loop_(loop),
        host_(std::move(host)),
        port_(port),
        peer_(std::move(peer)),
        timeout_(timeout),
        callback_(std::move(callback)),
        started_(std::chrono::steady_clock::now()),
        deadline_(
            loop,
            [this] {
              Finish(absl::DeadlineExceededError(absl::StrCat(
                  "no ", Awaited(), " from ", peer_, " within ",
                  std::chrono::duration_cast<std::chrono::milliseconds>(timeout_).count(), " ms")));
            }),
        done_(loop, [this] {
          // The callback may destroy this client: it runs last, from locals.
          Callback callback = std::move(callback_);
          Result result = std::move(result_);
          callback(std::move(result));
        }) {}

  // Looks the host up and connects.
  void Begin() {
    deadline_.Enable(timeout_);
    absl::StatusOr<std::vector<net::Address>> addresses = AddressesOf(host_, port_);
    if (!addresses.ok()) {
      Finish(addresses.status());
      return;
    }
    addresses_ = *std::move(addresses);
    Connect();
  }

  // Records the outcome in result_, closes the connection and schedules the callback (once).
  void Finish(absl::Status error) {
    if (finished_) return;
    finished_ = true;
    result_.error = std::move(error);
    result_.elapsed = std::chrono::steady_clock::now() - started_;
    deadline_.Disable();
    CloseConnection();
    done_.Enable(Duration(0));
  }

  // A connection to the next address is under way (the first, or after a refusal: the previous
  // one is deleted at the end of the turn).
  virtual void OnConnectStarted() = 0;
  // The connection closed after it was established, before Finish().
  virtual void OnClosedEarly(net::CloseReason reason) = 0;
  // What the client waits for, for the deadline's error: "no <Awaited()> from <peer> within ...".
  virtual std::string Awaited() const = 0;

  // net::ConnectionCallbacks
  void OnConnected() override { connected_ = true; }
  void OnClose(net::CloseReason reason, const absl::Status& detail) override {
    if (finished_) return;
    if (connected_) {
      OnClosedEarly(reason);
      return;
    }
    if (reason == net::CloseReason::kConnectFailed && next_address_ < addresses_.size()) {
      Connect();  // the name has another address
      return;
    }
    // The detail names the address and the error ("connect to 10.0.0.7:80: connection refused").
    Finish(absl::UnavailableError(
        detail.ok() ? absl::StrCat("cannot connect to ", peer_, ": ", net::CloseReasonName(reason))
                    : std::string(detail.message())));
  }

  // Closes the connection without telling anyone (Finish, destructors).
  void CloseConnection() {
    if (connection_ != nullptr && !connection_->closed()) {
      connection_->SetCallbacks(nullptr);
      connection_->Close(net::CloseMode::kNoFlush);
    }
  }

  event::Loop& loop() { return loop_; }
  // The current connection: null only before the first connect (the name lookup failed), closed
  // once finished.
  net::Connection* connection() { return connection_.get(); }
  const net::Connection* connection() const { return connection_.get(); }
  const std::string& peer() const { return peer_; }
  bool finished() const { return finished_; }

  Result result_;

 private:
  void Connect() {
    loop_.DeferDelete(std::move(connection_));
    connection_ = net::Connection::Connect(loop_, addresses_[next_address_++], timeout_);
    connection_->SetCallbacks(this);
    OnConnectStarted();
  }

  event::Loop& loop_;
  const std::string host_;
  const uint16_t port_;
  const std::string peer_;
  const Duration timeout_;
  Callback callback_;
  const MonotonicTime started_;
  std::vector<net::Address> addresses_;
  size_t next_address_ = 0;
  std::unique_ptr<net::Connection> connection_;
  event::Timer deadline_;
  event::Timer done_;  // runs the callback on a turn of its own
  bool connected_ = false;
  bool finished_ = false;
};

}  // namespace meshlet::testapp

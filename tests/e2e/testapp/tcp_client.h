#pragma once

// `testapp tcp`: the client of the banner protocol (tcp_server.h). A TcpSession connects, waits
// for the server's banner without sending anything first, then sends each line (CR LF ended)
// and waits for its echo before the next. RunTcp repeats sessions one after another and sums
// them up.
//
// The host is looked up as Fetch does (one_connection_client.h: getaddrinfo, so /etc/hosts in
// the pods; a refused connect tries the next address). One deadline covers the whole session.
//
// Ownership: the caller owns the TcpSession. The callback fires exactly once, on a later loop
// turn than Start(), with what arrived and whether it was all as expected; it may destroy the
// session. Destroying the session earlier cancels it: the connection closes and the callback
// never fires. Destroy it before its Loop.

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/net/connection.h"
#include "tests/e2e/testapp/one_connection_client.h"
#include "tests/e2e/testapp/options.h"
#include "tests/e2e/testapp/summary.h"

namespace meshlet::testapp {

struct TcpRequest {
  std::string host;  // a name or an IP literal, without brackets
  uint16_t port = 0;
  std::vector<std::string> lines;  // to send after the banner, each without CR/LF
  Duration timeout = std::chrono::seconds(5);
  size_t max_line_bytes = 64 << 10;
};

struct TcpResult {
  // OK when the banner and the echo of every line arrived. Otherwise why not: Unavailable (name
  // lookup, connect, or the connection closed early), DeadlineExceeded, DataLoss (an answer that
  // is not "echo ...: LINE" for the line sent, or a line longer than max_line_bytes).
  absl::Status error;
  std::string banner;                // "" when none arrived
  std::vector<std::string> answers;  // the lines after the banner, without CR LF
  Duration elapsed{0};
};

class TcpSession final : public OneConnectionClient<TcpResult> {
 public:
  static std::unique_ptr<TcpSession> Start(event::Loop& loop, TcpRequest request,
                                           Callback callback);

 private:
  TcpSession(event::Loop& loop, TcpRequest request, Callback callback);
  // A whole line arrived: the banner, or the answer to the last line sent.
  void OnLine(absl::string_view line);
  // Sends the next line, or finishes when every one was answered.
  void SendNext();

  // OneConnectionClient
  void OnConnectStarted() override {}  // nothing to send: the server speaks first
  void OnClosedEarly(net::CloseReason reason) override;
  // "banner" or "answer to \"LINE\"".
  std::string Awaited() const override;
  // net::ConnectionCallbacks
  void OnData(net::Buffer& data, bool end_stream) override;

  const TcpRequest request_;
  size_t sent_ = 0;  // lines sent
  bool has_banner_ = false;
};

struct TcpSummary {
  uint64_t connections = 0;
  uint64_t ok = 0;
  std::map<std::string, uint64_t> errors;   // by status code name (UNAVAILABLE, DATA_LOSS, ...)
  std::map<std::string, uint64_t> banners;  // by banner
  std::vector<double> latencies_ms;         // of the sessions that went as expected
  std::vector<FailureRecord> failures;      // the first kMaxListed
  double seconds = 0;
  TcpResult last;

  bool all_succeeded() const { return connections > 0 && ok == connections; }
  // One line of JSON: {"connections":N,"ok":N,"errors":{},"banners":{"220 db db-0 ready":N},
  // "latency_ms":{"p50":..,"p90":..,"p99":..,"max":..},"seconds":S,"failures":[...]}.
  std::string ToJson() const;
};

// Runs `options.count` sessions one after another on `loop` (which this runs until they are
// done).
TcpSummary RunTcp(event::Loop& loop, const TcpOptions& options);

}  // namespace meshlet::testapp

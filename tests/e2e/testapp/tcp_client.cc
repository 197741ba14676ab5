#include "tests/e2e/testapp/tcp_client.h"

#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/net/buffer.h"

namespace meshlet::testapp {
namespace {

double Millis(Duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// "host:port", "[v6]:port".
std::string Authority(const std::string& host, uint16_t port) {
  return host.find(':') == std::string::npos ? absl::StrCat(host, ":", port)
                                             : absl::StrCat("[", host, "]:", port);
}

}  // namespace

std::unique_ptr<TcpSession> TcpSession::Start(event::Loop& loop, TcpRequest request,
                                              Callback callback) {
  std::unique_ptr<TcpSession> session(
      new TcpSession(loop, std::move(request), std::move(callback)));
  session->Begin();
  return session;
}

TcpSession::TcpSession(event::Loop& loop, TcpRequest request, Callback callback)
    : OneConnectionClient(loop, request.host, request.port, Authority(request.host, request.port),
                          request.timeout, std::move(callback)),
      request_(std::move(request)) {}

void TcpSession::OnData(net::Buffer& data, bool end_stream) {
  for (size_t end = data.Find("\n"); end != net::Buffer::npos && !finished();
       end = data.Find("\n")) {
    if (end > request_.max_line_bytes) break;
    absl::string_view line = data.Linearize(end);
    absl::ConsumeSuffix(&line, "\r");
    OnLine(line);
    data.Drain(end + 1);
  }
  if (finished()) {
    data.Clear();
    return;
  }
  if (data.length() > request_.max_line_bytes) {
    data.Clear();
    Finish(absl::DataLossError(absl::StrCat(peer(), " sent a line longer than ",
                                            request_.max_line_bytes, " bytes instead of the ",
                                            Awaited())));
    return;
  }
  if (end_stream) {
    Finish(absl::UnavailableError(
        absl::StrCat(peer(), " closed the connection before the ", Awaited())));
  }
}

void TcpSession::OnLine(absl::string_view line) {
  if (!has_banner_) {
    has_banner_ = true;
    result_.banner = std::string(line);
    SendNext();
    return;
  }
  result_.answers.emplace_back(line);
  const std::string& sent = request_.lines[sent_ - 1];
  if (!absl::StartsWith(line, "echo ") || !absl::EndsWith(line, absl::StrCat(": ", sent))) {
    Finish(absl::DataLossError(
        absl::StrCat("unexpected answer from ", peer(), " to \"", sent, "\": \"", line, "\"")));
    return;
  }
  SendNext();
}

void TcpSession::SendNext() {
  if (sent_ == request_.lines.size()) {
    Finish(absl::OkStatus());
    return;
  }
  connection()->Write(absl::StrCat(request_.lines[sent_++], "\r\n"));
}

std::string TcpSession::Awaited() const {
  if (!has_banner_) return "banner";
  return absl::StrCat("answer to \"", request_.lines[sent_ - 1], "\"");
}

void TcpSession::OnClosedEarly(net::CloseReason reason) {
  Finish(absl::UnavailableError(absl::StrCat(peer(), " closed the connection before the ",
                                             Awaited(), ": ", net::CloseReasonName(reason))));
}

std::string TcpSummary::ToJson() const {
  std::string out = absl::StrCat("{\"connections\":", connections, ",\"ok\":", ok, ",\"errors\":");
  AppendCountsJson(out, errors);
  out += ",\"banners\":";
  AppendCountsJson(out, banners);
  absl::StrAppend(&out, ",\"latency_ms\":", LatencyJson(latencies_ms),
                  ",\"seconds\":", SecondsJson(seconds), ",\"failures\":", FailuresJson(failures),
                  "}");
  return out;
}

TcpSummary RunTcp(event::Loop& loop, const TcpOptions& options) {
  TcpSummary summary;
  const MonotonicTime start = std::chrono::steady_clock::now();
  auto seconds_since_start = [&start](MonotonicTime t) {
    return std::chrono::duration<double>(t - start).count();
  };
  for (uint64_t i = 0; i < options.count; ++i) {
    TcpRequest request;
    request.host = options.host;
    request.port = options.port;
    request.lines = options.send;
    request.timeout = options.timeout;
    const MonotonicTime began = std::chrono::steady_clock::now();
    std::optional<TcpResult> result;
    std::unique_ptr<TcpSession> session = TcpSession::Start(
        loop, std::move(request), [&result](TcpResult r) { result = std::move(r); });
    while (!result.has_value()) loop.RunOnce();
    session.reset();
    ++summary.connections;
    if (!result->banner.empty()) ++summary.banners[result->banner];
    if (result->error.ok()) {
      ++summary.ok;
      summary.latencies_ms.push_back(Millis(result->elapsed));
    } else {
      ++summary.errors[absl::StatusCodeToString(result->error.code())];
      if (summary.failures.size() < kMaxListed) {
        FailureRecord failure;
        failure.at_seconds = seconds_since_start(began);
        failure.ms = Millis(result->elapsed);
        failure.error = result->error.ToString();
        summary.failures.push_back(std::move(failure));
      }
    }
    summary.last = *std::move(result);
  }
  // Closed connections are still waiting for deletion.
  loop.RunUntilIdle();
  summary.seconds = seconds_since_start(std::chrono::steady_clock::now());
  return summary;
}

}  // namespace meshlet::testapp

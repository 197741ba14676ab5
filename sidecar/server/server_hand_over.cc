// Server's side of the hand-over (hand_over.h, server.h): taking over from a predecessor at
// start, serving --hand-over for a successor, and what GET /hand_over shows. Main thread.

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/base/status.h"
#include "common/base/version.h"
#include "common/event/timer.h"
#include "sidecar/server/server.h"

namespace meshlet::sidecar::server {
namespace {

// How long the offer may take (the predecessor answers from its main loop).
constexpr Duration kHandOverOfferTimeout = std::chrono::seconds(10);

int64_t Milliseconds(Duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

}  // namespace

absl::Status Server::TakeOver() {
  ASSIGN_OR_RETURN(hand_over_client_,
                   HandOverClient::Connect(options_.hand_over_path, kHandOverOfferTimeout));
  if (hand_over_client_ == nullptr) {
    LOG(INFO) << "hand-over: nobody serves " << options_.hand_over_path << "; starting anew";
    return absl::OkStatus();
  }
  HandedOver& handed = hand_over_client_->handed();
  taken_over_ = TakenOver{.pid = handed.pid,
                          .release = handed.release,
                          .sockets = handed.sockets.size(),
                          .configuration = !handed.configuration.empty(),
                          .certificate = handed.certificate.has_value()};
  LOG(INFO) << "hand-over: taking over from pid " << handed.pid << " (meshlet-sidecar "
            << handed.release << "): " << handed.sockets.size() << " listening sockets"
            << (taken_over_->configuration ? ", its configuration" : "")
            << (taken_over_->certificate ? ", its workload certificate" : "");
  // The listeners bound from here on take these instead of binding.
  net::AdoptListeningSockets(std::move(handed.sockets));
  handed.sockets.clear();
  return absl::OkStatus();
}

absl::Status Server::FinishTakeOver() {
  // Both processes accept on the same sockets meanwhile. A signal (SIGTERM, SIGINT) ends the wait
  // too: this process stops, and the predecessor is never told to.
  auto stopped = [this] { return draining_ || shut_down_; };
  if (!loop_.RunUntil([&] { return stopped() || ready(); }, options_.hand_over_timeout) ||
      stopped()) {
    const std::string why =
        stopped() ? absl::StrCat("hand-over: stopped by a signal before ready; pid ",
                                 taken_over_->pid, " serves on")
                  : absl::StrCat("hand-over: not ready within ",
                                 absl::FormatDuration(absl::FromChrono(options_.hand_over_timeout)),
                                 " (", NotReadyReason(), "); pid ", taken_over_->pid, " serves on");
    // The connections this process accepted meanwhile finish before it exits, as a drain's do.
    LOG(ERROR) << why << "; finishing the connections accepted meanwhile";
    for (auto& worker : workers_) {
      worker->StopAccepting();
      worker->StartDrain(Duration::zero(), /*keep_idle_http1=*/true);
    }
    if (admin_ != nullptr) admin_->Shutdown();
    if (prometheus_ != nullptr) prometheus_->Shutdown();
    event::Timer poll(loop_, [] {});  // wakes the loop to look at the workers' counts
    poll.EnableRepeating(std::chrono::milliseconds(100));
    loop_.RunUntil(
        [this] {
          int64_t open = 0;
          for (const auto& worker : workers_) open += worker->active_connections();
          return open == 0;
        },
        options_.drain_time);
    return absl::UnavailableError(why);
  }
  taken_over_->ready_after = RealClock::Get().Now() - init_started_;
  absl::StatusOr<Drained> open = hand_over_client_->Finish(options_.hand_over_confirm_timeout);
  if (open.ok()) {
    taken_over_->predecessor_connections = open->connections;
    taken_over_->predecessor_requests = open->requests;
  } else {
    // It may have exited meanwhile: its copies of the sockets are gone either way once it does.
    LOG(WARN) << "hand-over: pid " << taken_over_->pid
              << " did not confirm that it stopped accepting (" << open.status().message()
              << "); serving anyway";
  }
  // Sockets of listeners this configuration no longer has.
  taken_over_->sockets_unused = net::CloseInheritedSockets();
  taken_over_->at = absl::Now();
  hand_overs_taken_.Inc();
  hand_over_client_.reset();
  LOG(INFO) << "hand-over: took over from pid " << taken_over_->pid << ", ready after "
            << Milliseconds(taken_over_->ready_after) << " ms; it drains "
            << (open.ok() ? absl::StrCat(open->connections, " connections (", open->requests,
                                         " requests in flight)")
                          : "its connections")
            << (taken_over_->sockets_unused > 0
                    ? absl::StrCat("; ", taken_over_->sockets_unused,
                                   " sockets no listener uses were closed")
                    : "");
  return absl::OkStatus();
}

absl::Status Server::ServeHandOver(bool took_over) {
  absl::StatusOr<std::unique_ptr<HandOverServer>> server =
      HandOverServer::Start(loop_, options_.hand_over_path,
                            {.offer = [this] { return HandOverOffer(); },
                             .handed_over = [this] { return HandOverDrain(); },
                             .failed = [this](absl::string_view) { hand_overs_failed_.Inc(); },
                             .refused = [this](absl::string_view) { hand_overs_refused_.Inc(); }});
  if (server.ok()) {
    hand_over_server_ = *std::move(server);
    return absl::OkStatus();
  }
  // Without a predecessor, a sidecar that cannot serve the path it was given does not start.
  if (!took_over) return server.status();
  // After a take-over the predecessor has been told to stop (or may be told by now): exiting
  // would leave nobody serving. This process serves its traffic; only a later hand-over is lost.
  hand_over_serve_error_ = std::string(server.status().message());
  hand_over_serve_failures_.Inc();
  LOG(ERROR) << "hand-over: took over, but cannot serve " << options_.hand_over_path
             << " for a next process (" << hand_over_serve_error_
             << "); serving without it: this process is replaced by a restart, not a hand-over";
  return absl::OkStatus();
}

absl::StatusOr<HandedOver> Server::HandOverOffer() {
  auto refuse = [this](std::string why) {
    hand_overs_refused_.Inc();
    return absl::FailedPreconditionError(std::move(why));
  };
  if (shut_down_ || handed_over_) return refuse("this sidecar has handed over already");
  if (draining_) return refuse("this sidecar is draining; start the new one once it exited");
  // A successor would start from an incomplete configuration.
  if (!ready()) return refuse(absl::StrCat("this sidecar is not ready: ", NotReadyReason()));
  HandedOver handed;
  handed.pid = getpid();
  handed.release = kMeshletVersion;
  ASSIGN_OR_RETURN(handed.sockets, net::DuplicateListeningSockets());
  if (xds_client_ != nullptr) handed.configuration = xds_client_->SavedConfiguration();
  if (certificate_manager_ != nullptr && certificate_manager_->current() != nullptr) {
    handed.certificate = *certificate_manager_->current();
  }
  return handed;
}

Drained Server::HandOverDrain() {
  handed_over_ = true;
  handed_over_at_ = absl::Now();
  hand_overs_given_.Inc();
  // No readiness report (ReportReadiness): the successor reported ready under the same node id.
  readiness_check_->Disable();
  if (!draining_) {
    draining_ = true;
    draining_since_ = loop_.Now();
    draining_gauge_.Set(1);
  }
  // The successor accepts on the same sockets: every listener stops now, inbound and outbound,
  // and the connections open here are told to finish.
  // An idle HTTP/1.1 connection answers its next request before it closes: closing it now could
  // cross a request its client is sending (this process need not exit soon).
  for (auto& worker : workers_) {
    worker->StopAccepting();
    worker->StartDrain(Duration::zero(), /*keep_idle_http1=*/true);
  }
  if (admin_ != nullptr) admin_->Shutdown();
  if (prometheus_ != nullptr) prometheus_->Shutdown();
  Drained open;
  for (const auto& worker : workers_) open.connections += worker->active_connections();
  // The requests those connections carry now: what the switch holds up at most.
  const StatsSnapshot stats = stats_.Snapshot();
  for (const SeriesSnapshot& series : stats.series) {
    if (series.name == "meshlet_http_downstream_rq_active") open.requests += series.gauge;
  }
  handed_over_drained_ = open;
  LOG(INFO) << "hand-over: handed over; draining " << open.connections << " connections ("
            << open.requests << " requests in flight) for up to "
            << absl::FormatDuration(absl::FromChrono(options_.drain_time));
  ExitWhenDrained();
  return open;
}

std::string Server::HandOverJson() {
  std::string out = "{\"socket\":";
  if (options_.hand_over_path.empty()) {
    out += "null";
  } else {
    AppendJsonString(&out, options_.hand_over_path);
  }
  out += ",\"serving\":";
  out += hand_over_server_ != nullptr && !handed_over_ ? "true" : "false";
  out += ",\"serve_error\":";
  if (hand_over_serve_error_.empty()) {
    out += "null";
  } else {
    AppendJsonString(&out, hand_over_serve_error_);
  }
  out += ",\"taken_over\":";
  if (taken_over_.has_value() && taken_over_->at != absl::Time()) {
    const TakenOver& t = *taken_over_;
    absl::StrAppend(&out, "{\"pid\":", t.pid, ",\"release\":", JsonQuote(t.release),
                    ",\"sockets\":", t.sockets, ",\"sockets_unused\":", t.sockets_unused,
                    ",\"configuration\":", t.configuration ? "true" : "false",
                    ",\"certificate\":", t.certificate ? "true" : "false",
                    ",\"ready_after_ms\":", Milliseconds(t.ready_after),
                    ",\"predecessor_connections\":", t.predecessor_connections,
                    ",\"predecessor_requests\":", t.predecessor_requests,
                    ",\"at_unix_ms\":", absl::ToUnixMillis(t.at), "}");
  } else {
    out += "null";
  }
  out += ",\"handed_over\":";
  if (handed_over_) {
    absl::StrAppend(&out, "{\"connections\":", handed_over_drained_.connections,
                    ",\"requests\":", handed_over_drained_.requests,
                    ",\"at_unix_ms\":", absl::ToUnixMillis(handed_over_at_), "}");
  } else {
    out += "null";
  }
  out += "}";
  return out;
}

}  // namespace meshlet::sidecar::server

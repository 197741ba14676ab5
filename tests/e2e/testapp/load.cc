#include "tests/e2e/testapp/load.h"

#include <csignal>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace meshlet::testapp {
namespace {

double Millis(Duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

bool IsSuccess(int status) { return status >= 200 && status <= 299; }

}  // namespace

TraceParent NewTraceParent(Random& random) {
  const uint64_t high = random.Next();
  const uint64_t low = random.Next();
  uint64_t span = random.Next();
  TraceParent out;
  // All-zero ids are invalid (W3C trace context).
  out.trace_id = absl::StrFormat("%016x%016x", high, high == 0 && low == 0 ? 1 : low);
  if (span == 0) span = 1;
  out.header = absl::StrFormat("00-%s-%016x-01", out.trace_id, span);
  return out;
}

Load::Load(event::Loop& loop, const GetOptions& options, Random& random)
    : loop_(loop),
      options_(options),
      random_(random),
      pace_(loop, [this] { StartMore(); }),
      end_(loop, [this] {
        time_up_ = true;
        pace_.Disable();
      }) {}

Load::~Load() {
  for (auto& [id, request] : in_flight_) loop_.DeferDelete(std::move(request.fetch));
}

LoadSummary Load::Run() {
  // Timers count from the loop's time, which may be a turn old.
  loop_.UpdateTime();
  start_ = std::chrono::steady_clock::now();
  if (options_.duration > Duration(0)) end_.Enable(options_.duration);
  StartMore();
  while (MayStart() || !in_flight_.empty()) loop_.RunOnce();
  summary_.seconds = SecondsSinceStart(std::chrono::steady_clock::now());
  end_.Disable();
  pace_.Disable();
  // Fetches that finished last are still waiting for deletion.
  loop_.RunUntilIdle();
  return std::move(summary_);
}

void Load::Stop(absl::string_view why) {
  if (!stopping_) {
    stopping_ = true;
    summary_.stopped_by = std::string(why);
    pace_.Disable();
    return;
  }
  for (auto& [id, request] : in_flight_) {
    loop_.DeferDelete(std::move(request.fetch));
    ++summary_.cancelled;
  }
  in_flight_.clear();
}

absl::Status Load::StopOnSignals() {
  for (auto [signum, name] : {std::pair(SIGTERM, "SIGTERM"), std::pair(SIGINT, "SIGINT")}) {
    absl::StatusOr<std::unique_ptr<event::Signal>> signal =
        event::Signal::Create(loop_, signum, [this, name = name](int) { Stop(name); });
    if (!signal.ok()) return signal.status();
    signals_.push_back(*std::move(signal));
  }
  return absl::OkStatus();
}

bool Load::MayStart() const {
  if (stopping_ || in_flight_.size() >= options_.concurrency) return false;
  return options_.duration > Duration(0) ? !time_up_ : started_ < options_.count;
}

void Load::StartMore() {
  while (MayStart()) {
    if (options_.rate > 0) {
      const MonotonicTime due =
          start_ + std::chrono::duration_cast<Duration>(std::chrono::duration<double>(
                       static_cast<double>(started_) / options_.rate));
      const MonotonicTime now = std::chrono::steady_clock::now();
      if (now < due) {
        pace_.Enable(due - now);
        return;
      }
    }
    StartOne();
  }
}

void Load::StartOne() {
  const uint64_t id = started_++;
  FetchRequest request;
  request.method = options_.method;
  request.url = options_.url;
  request.headers = options_.headers;
  request.body = options_.body;
  request.timeout = options_.timeout;
  InFlight& entry = in_flight_[id];
  if (options_.trace) {
    TraceParent trace = NewTraceParent(random_);
    request.headers.emplace_back("traceparent", std::move(trace.header));
    entry.trace_id = std::move(trace.trace_id);
    if (summary_.traces.size() < kMaxListed) summary_.traces.push_back(entry.trace_id);
  }
  entry.sent = std::chrono::steady_clock::now();
  entry.fetch = Fetch::Start(loop_, std::move(request),
                             [this, id](FetchResult result) { OnDone(id, std::move(result)); });
}

void Load::OnDone(uint64_t id, FetchResult result) {
  auto it = in_flight_.find(id);
  if (it == in_flight_.end()) return;
  InFlight request = std::move(it->second);
  in_flight_.erase(it);
  // This runs inside the fetch's callback.
  loop_.DeferDelete(std::move(request.fetch));

  ++summary_.requests;
  std::optional<absl::string_view> pod;
  if (result.error.ok()) {
    ++summary_.statuses[result.status];
    summary_.latencies_ms.push_back(Millis(result.elapsed));
    pod = result.headers.Get("x-testapp-pod");
    if (pod.has_value()) ++summary_.pods[std::string(*pod)];
  } else {
    ++summary_.errors[absl::StatusCodeToString(result.error.code())];
  }
  if ((!result.error.ok() || !IsSuccess(result.status)) && summary_.failures.size() < kMaxListed) {
    FailureRecord failure;
    failure.at_seconds = SecondsSinceStart(request.sent);
    failure.ms = Millis(result.elapsed);
    failure.status = result.status;
    if (!result.error.ok()) failure.error = result.error.ToString();
    failure.pod = std::string(pod.value_or(""));
    failure.trace = request.trace_id;
    if (result.error.ok()) {
      failure.proxy_error = std::string(result.headers.Get(kProxyErrorHeader).value_or(""));
      failure.request_id = std::string(result.headers.Get(kRequestIdHeader).value_or(""));
    }
    summary_.failures.push_back(std::move(failure));
  }
  summary_.last = std::move(result);
  StartMore();
}

double Load::SecondsSinceStart(MonotonicTime t) const {
  return std::chrono::duration<double>(t - start_).count();
}

bool LoadSummary::all_succeeded() const {
  if (!errors.empty() || requests == 0) return false;
  for (const auto& [status, n] : statuses) {
    if (!IsSuccess(status)) return false;
  }
  return true;
}

std::string LoadSummary::ToJson() const {
  std::string out = absl::StrCat("{\"requests\":", requests, ",\"statuses\":");
  AppendCountsJson(out, statuses);
  out += ",\"errors\":";
  AppendCountsJson(out, errors);
  out += ",\"pods\":";
  AppendCountsJson(out, pods);
  absl::StrAppend(&out, ",\"latency_ms\":", LatencyJson(latencies_ms),
                  ",\"seconds\":", SecondsJson(seconds), ",\"failures\":", FailuresJson(failures));
  if (!traces.empty()) {
    out += ",\"traces\":[";
    for (size_t k = 0; k < traces.size(); ++k) {
      absl::StrAppend(&out, k == 0 ? "" : ",", JsonString(traces[k]));
    }
    out += "]";
  }
  if (!stopped_by.empty()) {
    absl::StrAppend(&out, ",\"stopped\":", JsonString(stopped_by), ",\"cancelled\":", cancelled);
  }
  out += "}";
  return out;
}

LoadSummary RunLoad(event::Loop& loop, const GetOptions& options, Random& random) {
  return Load(loop, options, random).Run();
}

}  // namespace meshlet::testapp

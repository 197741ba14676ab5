#include "tests/e2e/testapp/app.h"

#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/base/logging.h"
#include "common/event/timer.h"
#include "tests/e2e/testapp/client.h"
#include "tests/e2e/testapp/json.h"

namespace meshlet::testapp {
namespace {

double Millis(Duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

bool IsSuccess(int status) { return status >= 200 && status < 300; }

// `path` is /slow or under /slow/.
bool IsSlowPath(absl::string_view path) {
  return path == "/slow" || absl::StartsWith(path, "/slow/");
}

}  // namespace

// One request in progress: its delay, then its downstream calls.
class App::Request {
 public:
  // `echo_status`: answer with the echo body (echo.h) and that status; 0 for the app's answer.
  // `echo_reset`: reset the connection instead of answering (EchoOutcome::reset).
  // `echo_headers`: more headers of the echo's answer (EchoOutcome::headers).
  Request(App& app, std::shared_ptr<Exchange> exchange, bool fail, int echo_status = 0,
          bool echo_reset = false,
          std::vector<std::pair<std::string, std::string>> echo_headers = {})
      : app_(app),
        exchange_(std::move(exchange)),
        fail_(fail),
        echo_status_(echo_status),
        echo_reset_(echo_reset),
        echo_headers_(std::move(echo_headers)),
        started_(std::chrono::steady_clock::now()),
        delay_(app.loop_, [this] { Proceed(); }) {}

  void Start(Duration delay) {
    if (delay > Duration(0)) {
      delay_.Enable(delay);
    } else {
      Proceed();
    }
  }

 private:
  struct Call {
    HttpUrl url;
    std::unique_ptr<Fetch> fetch;
    FetchResult result;
    bool done = false;
  };

  void Proceed() {
    const ServeOptions& o = app_.options_;
    if (echo_reset_) {
      if (o.log_requests) {
        LOG(INFO) << exchange_->request().method() << " "
                  << exchange_->request().headers.Get(":path").value_or("")
                  << " connection reset on purpose";
      }
      ++app_.stats_.echo_resets;
      exchange_->ResetConnection();
      app_.Done(this);
      return;
    }
    if (echo_status_ != 0) {
      Finish(echo_status_, EchoBody(exchange_->request(), o, echo_status_));
      return;
    }
    if (fail_) {
      std::string body = Head(o.fail_status);
      absl::StrAppend(
          &body, ",\"error\":",
          JsonString(absl::StrCat("failed on purpose (", app_.failure_plan_.Describe(), ")")),
          "}\n");
      Finish(o.fail_status, std::move(body));
      return;
    }
    if (o.calls.empty()) {
      Finish(200, Head(200) + ",\"calls\":[]}\n");
      return;
    }
    const http::ServerRequest& in = exchange_->request();
    std::vector<std::pair<std::string, std::string>> headers;
    auto forward = [&](absl::string_view name) {
      for (absl::string_view value : in.headers.GetAll(name)) {
        headers.emplace_back(std::string(name), std::string(value));
      }
    };
    for (absl::string_view name : kTraceHeaders) forward(name);
    for (const std::string& name : o.forward_headers) forward(name);
    calls_.resize(o.calls.size());
    remaining_ = o.calls.size();
    for (size_t i = 0; i < o.calls.size(); ++i) {
      FetchRequest request;
      request.url = o.calls[i];
      if (!request.url.has_target())
        request.url.target = std::string(in.headers.Get(":path").value_or("/"));
      calls_[i].url = request.url;
      request.headers = headers;
      request.timeout = o.call_timeout;
      ++app_.stats_.calls;
      calls_[i].fetch = Fetch::Start(app_.loop_, std::move(request), [this, i](FetchResult result) {
        OnCallDone(i, std::move(result));
      });
    }
  }

  void OnCallDone(size_t i, FetchResult result) {
    Call& call = calls_[i];
    call.result = std::move(result);
    call.done = true;
    if (--remaining_ > 0) return;
    const ServeOptions& o = app_.options_;
    bool all_ok = true;
    std::string list;
    for (size_t j = 0; j < calls_.size(); ++j) {
      const FetchResult& r = calls_[j].result;
      absl::StrAppend(&list, j == 0 ? "" : ",", "{\"url\":", JsonString(calls_[j].url.ToString()));
      if (!r.error.ok()) {
        all_ok = false;
        ++app_.stats_.call_failures;
        absl::StrAppend(&list, ",\"error\":", JsonString(r.error.ToString()));
      } else {
        if (!IsSuccess(r.status)) {
          all_ok = false;
          ++app_.stats_.call_failures;
        }
        absl::StrAppend(&list, ",\"status\":", r.status);
        if (IsJsonValue(r.body)) {
          absl::StrAppend(&list, ",\"answer\":", absl::StripAsciiWhitespace(r.body));
        } else {
          absl::StrAppend(&list, ",\"answer\":", JsonString(r.body));
        }
      }
      absl::StrAppend(&list, ",\"ms\":", absl::StrFormat("%.2f", Millis(r.elapsed)), "}");
    }
    int status = all_ok || o.degrade ? 200 : 502;
    std::string body = Head(status);
    absl::StrAppend(&body, ",\"calls\":[", list, "]}\n");
    // Destroying the fetches is the last thing: this runs inside one of their callbacks.
    Finish(status, std::move(body));
  }

  // The answer's fields common to every outcome, without the closing brace.
  std::string Head(int status) const {
    const ServeOptions& o = app_.options_;
    const http::ServerRequest& in = exchange_->request();
    std::string out = "{\"service\":";
    AppendJsonString(out, o.service);
    absl::StrAppend(&out, ",\"version\":", JsonString(o.version), ",\"pod\":", JsonString(o.pod),
                    ",\"path\":", JsonString(in.headers.Get(":path").value_or("")),
                    ",\"status\":", status, ",\"headers\":{");
    bool first = true;
    auto add = [&](absl::string_view name) {
      std::optional<absl::string_view> value = in.headers.Get(name);
      if (!value.has_value()) return;
      absl::StrAppend(&out, first ? "" : ",", JsonString(name), ":", JsonString(*value));
      first = false;
    };
    for (absl::string_view name : kTraceHeaders) add(name);
    for (const std::string& name : o.forward_headers) add(name);
    out += "}";
    return out;
  }

  void Finish(int status, std::string body) {
    if (app_.options_.log_requests) {
      const http::ServerRequest& in = exchange_->request();
      LOG(INFO) << in.method() << " " << in.headers.Get(":path").value_or("") << " " << status
                << " "
                << absl::StrFormat("%.1f", Millis(std::chrono::steady_clock::now() - started_))
                << "ms from " << in.peer.ToString()
                << (exchange_->cancelled() ? " (caller gone)" : "");
    }
    app_.Answer(*exchange_, status, std::move(body), echo_headers_);
    app_.Done(this);
  }

  App& app_;
  std::shared_ptr<Exchange> exchange_;
  const bool fail_;
  const int echo_status_;
  const bool echo_reset_;
  const std::vector<std::pair<std::string, std::string>> echo_headers_;
  const MonotonicTime started_;
  event::Timer delay_;
  std::vector<Call> calls_;
  size_t remaining_ = 0;
};

App::App(event::Loop& loop, ServeOptions options, Random& random)
    : loop_(loop),
      options_(std::move(options)),
      random_(random),
      echo_attempts_(options_.echo_max_uuids) {
  absl::StatusOr<FailurePlan> plan =
      FailurePlan::Create(options_.fail_pattern, options_.fail_fraction);
  CHECK(plan.ok()) << plan.status().message();
  failure_plan_ = *std::move(plan);
}

App::~App() = default;

void App::Handle(std::shared_ptr<Exchange> exchange) {
  const http::ServerRequest& in = exchange->request();
  absl::string_view path = in.path();
  if (path == "/healthz") {
    Answer(*exchange, 200, "ok\n");
    return;
  }
  if (path == "/__stats") {
    std::string body = absl::StrCat(
        "{\"service\":", JsonString(options_.service), ",\"pod\":", JsonString(options_.pod),
        ",\"requests\":", stats_.requests, ",\"failed\":", stats_.failed, ",\"slow\":", stats_.slow,
        ",\"calls\":", stats_.calls, ",\"call_failures\":", stats_.call_failures,
        ",\"echo_refused\":", stats_.echo_refused, ",\"echo_resets\":", stats_.echo_resets,
        ",\"in_progress\":", in_progress_.size(),
        ",\"failure_plan\":", JsonString(failure_plan_.Describe()),
        ",\"latency_ms\":", Millis(options_.latency), "}\n");
    Answer(*exchange, 200, std::move(body));
    return;
  }
  if (path == "/__set") {
    HandleSet(*exchange);
    return;
  }
  ++stats_.requests;
  if (options_.echo) {
    HandleEcho(std::move(exchange));
    return;
  }
  const bool fail = failure_plan_.NextFails(random_);
  if (fail) ++stats_.failed;
  Duration delay = options_.latency;
  if (IsSlowPath(path)) {
    ++stats_.slow;
    delay += options_.slow;
  }
  auto request = std::make_unique<Request>(*this, std::move(exchange), fail);
  Request* raw = request.get();
  in_progress_.emplace(raw, std::move(request));
  raw->Start(delay);
}

void App::HandleEcho(std::shared_ptr<Exchange> exchange) {
  absl::StatusOr<EchoOutcome> outcome = PlanEcho(exchange->request(), echo_attempts_);
  if (!outcome.ok()) {
    ++stats_.echo_refused;
    Answer(*exchange, 400,
           absl::StrCat("{\"error\":", JsonString(outcome.status().message()), "}\n"));
    return;
  }
  auto request = std::make_unique<Request>(*this, std::move(exchange), false, outcome->status,
                                           outcome->reset, std::move(outcome->headers));
  Request* raw = request.get();
  in_progress_.emplace(raw, std::move(request));
  raw->Start(outcome->delay);
}

void App::HandleSet(Exchange& exchange) {
  const http::ServerRequest& in = exchange.request();
  if (in.method() != "POST") {
    Answer(exchange, 405, "{\"error\":\"use POST\"}\n");
    return;
  }
  std::map<std::string, std::string> params = in.QueryParams();
  std::string pattern = options_.fail_pattern;
  double fraction = options_.fail_fraction;
  Duration latency = options_.latency;
  std::string error;
  for (const auto& [name, value] : params) {
    if (name == "fail-pattern") {
      pattern = value;
    } else if (name == "fail-fraction") {
      if (!absl::SimpleAtod(value, &fraction))
        error = absl::StrCat("fail-fraction: \"", value, "\" is not a number");
    } else if (name == "latency") {
      absl::Duration d;
      if (!absl::ParseDuration(value, &d) || d < absl::ZeroDuration() ||
          d == absl::InfiniteDuration()) {
        error = absl::StrCat("latency: \"", value, "\" is not a duration such as 250ms");
      } else {
        latency = absl::ToChronoNanoseconds(d);
      }
    } else {
      error =
          absl::StrCat("unknown setting ", name, "; known: fail-pattern, fail-fraction, latency");
    }
  }
  absl::StatusOr<FailurePlan> plan = FailurePlan::Create(pattern, fraction);
  if (error.empty() && !plan.ok()) error = std::string(plan.status().message());
  if (!error.empty()) {
    Answer(exchange, 400, absl::StrCat("{\"error\":", JsonString(error), "}\n"));
    return;
  }
  failure_plan_ = *std::move(plan);
  options_.fail_pattern = pattern;
  options_.fail_fraction = fraction;
  options_.latency = latency;
  LOG(INFO) << "failures now: " << failure_plan_.Describe() << "; latency "
            << absl::FormatDuration(absl::FromChrono(latency));
  Answer(exchange, 200,
         absl::StrCat("{\"failure_plan\":", JsonString(failure_plan_.Describe()),
                      ",\"latency_ms\":", Millis(latency), "}\n"));
}

void App::Answer(Exchange& exchange, int status, std::string body,
                 const std::vector<std::pair<std::string, std::string>>& headers) {
  http::ServerResponse response;
  response.status = status;
  response.headers.Add("content-type", absl::StartsWith(body, "{") ? "application/json"
                                                                   : "text/plain; charset=utf-8");
  response.headers.Add("x-testapp-service", options_.service);
  response.headers.Add("x-testapp-version", options_.version);
  response.headers.Add("x-testapp-pod", options_.pod);
  for (const auto& [name, value] : headers) response.headers.Add(name, value);
  response.body = std::move(body);
  exchange.Respond(std::move(response));
}

void App::Done(Request* request) {
  auto it = in_progress_.find(request);
  if (it == in_progress_.end()) return;
  loop_.DeferDelete(std::move(it->second));
  in_progress_.erase(it);
}

}  // namespace meshlet::testapp

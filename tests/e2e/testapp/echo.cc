#include "tests/e2e/testapp/echo.h"

#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "tests/e2e/testapp/json.h"

namespace meshlet::testapp {
namespace {

absl::Status BadParameter(absl::string_view name, absl::string_view value,
                          absl::string_view expected) {
  return absl::InvalidArgumentError(
      absl::StrCat("query parameter ", name, "=\"", value, "\" is not ", expected));
}

absl::StatusOr<Duration> ParseDelay(absl::string_view name, absl::string_view value) {
  absl::Duration d;
  if (!absl::ParseDuration(value, &d) || d < absl::ZeroDuration() ||
      d > absl::FromChrono(kMaxEchoDelay)) {
    return BadParameter(name, value, "a duration from 0 to 60s such as 250ms");
  }
  return std::chrono::duration_cast<Duration>(absl::ToChronoNanoseconds(d));
}

absl::StatusOr<int> ParseStatus(absl::string_view name, absl::string_view value) {
  int status = 0;
  if (!absl::SimpleAtoi(value, &status) || status < 200 || status > 599) {
    return BadParameter(name, value, "a status from 200 to 599");
  }
  return status;
}

}  // namespace

uint64_t EchoAttempts::Next(absl::string_view uuid) {
  auto [it, inserted] = counts_.try_emplace(uuid, 0);
  if (inserted) {
    order_.emplace_back(uuid);
    if (order_.size() > max_keys_) {
      counts_.erase(order_.front());
      order_.pop_front();
      it = counts_.find(uuid);
    }
  }
  return ++it->second;
}

absl::StatusOr<EchoOutcome> PlanEcho(const http::ServerRequest& request, EchoAttempts& attempts) {
  std::map<std::string, std::string> params = request.QueryParams();
  EchoOutcome out;
  for (absl::string_view value : request.headers.GetAll("x-echo-set-header")) {
    for (absl::string_view pair : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
      std::pair<absl::string_view, absl::string_view> nv =
          absl::StrSplit(pair, absl::MaxSplits(':', 1));
      absl::string_view name = absl::StripAsciiWhitespace(nv.first);
      if (name.empty() || pair.find(':') == absl::string_view::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("x-echo-set-header: \"", pair, "\" is not Name:value"));
      }
      out.headers.emplace_back(std::string(name),
                               std::string(absl::StripAsciiWhitespace(nv.second)));
    }
  }
  auto param = [&](absl::string_view name) -> const std::string* {
    auto it = params.find(std::string(name));
    return it == params.end() ? nullptr : &it->second;
  };
  if (const std::string* v = param("delay")) {
    absl::StatusOr<Duration> d = ParseDelay("delay", *v);
    if (!d.ok()) return d.status();
    out.delay = *d;
  }
  if (const std::string* v = param("status")) {
    absl::StatusOr<int> s = ParseStatus("status", *v);
    if (!s.ok()) return s.status();
    out.status = *s;
  }
  const std::string* code = param("responseCode");
  const std::string* after = param("succeedAfter");
  if (code == nullptr && after == nullptr) return out;
  const std::string* uuid = param("uuid");
  if (after == nullptr || uuid == nullptr || uuid->empty()) {
    return absl::InvalidArgumentError(
        "the retry simulation needs succeedAfter and a non-empty uuid (with responseCode: "
        "failures answer that status; without: they reset the connection)");
  }
  std::optional<int> failure;  // none: a connection reset
  if (code != nullptr) {
    absl::StatusOr<int> status = ParseStatus("responseCode", *code);
    if (!status.ok()) return status.status();
    failure = *status;
  }
  uint64_t failing = 0;
  if (!absl::SimpleAtoi(*after, &failing) || failing > 1000) {
    return BadParameter("succeedAfter", *after, "a count from 0 to 1000");
  }
  Duration failure_delay{0};
  if (const std::string* v = param("delayRetry")) {
    absl::StatusOr<Duration> d = ParseDelay("delayRetry", *v);
    if (!d.ok()) return d.status();
    failure_delay = *d;
  }
  if (attempts.Next(*uuid) <= failing) {
    if (failure.has_value()) {
      out.status = *failure;
    } else {
      out.reset = true;
    }
    out.delay += failure_delay;
  }
  return out;
}

std::string EchoBody(const http::ServerRequest& request, const ServeOptions& options, int status) {
  std::string out = "{\"path\":";
  AppendJsonString(out, request.headers.Get(":path").value_or(""));
  absl::StrAppend(&out, ",\"host\":", JsonString(request.headers.Get(":authority").value_or("")),
                  ",\"method\":", JsonString(request.method()),
                  ",\"proto\":", JsonString(http::ProtocolName(request.protocol)),
                  ",\"headers\":{");
  // Names in order of first appearance, each with all its values.
  std::vector<std::pair<absl::string_view, std::vector<absl::string_view>>> headers;
  request.headers.ForEachRegular([&](const http::HeaderView& h) {
    for (auto& [name, values] : headers) {
      if (name == h.name) {
        values.push_back(h.value);
        return;
      }
    }
    headers.push_back({h.name, {h.value}});
  });
  for (size_t i = 0; i < headers.size(); ++i) {
    absl::StrAppend(&out, i == 0 ? "" : ",", JsonString(headers[i].first), ":[");
    for (size_t j = 0; j < headers[i].second.size(); ++j) {
      absl::StrAppend(&out, j == 0 ? "" : ",", JsonString(headers[i].second[j]));
    }
    out += "]";
  }
  absl::StrAppend(&out, "},\"namespace\":", JsonString(options.namespace_name),
                  ",\"service\":", JsonString(options.service),
                  ",\"version\":", JsonString(options.version),
                  ",\"pod\":", JsonString(options.pod), ",\"status\":", status, "}\n");
  return out;
}

}  // namespace meshlet::testapp

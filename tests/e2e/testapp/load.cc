#include "tests/e2e/testapp/load.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tests/e2e/testapp/json.h"

namespace meshlet::testapp {
namespace {

// The value at fraction q (0..1) of sorted `v` (nearest rank); 0 for none.
double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(q * static_cast<double>(sorted.size()) + 0.999999);
  return sorted[std::min(sorted.size(), std::max<size_t>(rank, 1)) - 1];
}

// Keeps `concurrency` fetches going until `count` have been started and all have finished.
class Load {
 public:
  Load(event::Loop& loop, const GetOptions& options) : loop_(loop), options_(options) {}

  LoadSummary Run() {
    for (uint64_t i = 0; i < options_.concurrency && started_ < options_.count; ++i) StartOne();
    while (finished_ < options_.count) loop_.RunOnce();
    // Fetches that finished last are still waiting for deletion.
    loop_.RunUntilIdle();
    return std::move(summary_);
  }

 private:
  void StartOne() {
    ++started_;
    FetchRequest request;
    request.method = options_.method;
    request.url = options_.url;
    request.headers = options_.headers;
    request.body = options_.body;
    request.timeout = options_.timeout;
    auto fetch = std::make_shared<std::unique_ptr<Fetch>>();
    *fetch = Fetch::Start(loop_, std::move(request), [this, fetch](FetchResult result) {
      OnDone(std::move(result));
      loop_.DeferDelete(std::move(*fetch));
    });
  }

  void OnDone(FetchResult result) {
    ++finished_;
    ++summary_.requests;
    if (result.error.ok()) {
      ++summary_.statuses[result.status];
      summary_.latencies_ms.push_back(
          std::chrono::duration<double, std::milli>(result.elapsed).count());
      std::optional<absl::string_view> pod = result.headers.Get("x-testapp-pod");
      if (pod.has_value()) ++summary_.pods[std::string(*pod)];
    } else {
      ++summary_.errors[absl::StatusCodeToString(result.error.code())];
    }
    summary_.last = std::move(result);
    if (started_ < options_.count) StartOne();
  }

  event::Loop& loop_;
  const GetOptions& options_;
  uint64_t started_ = 0;
  uint64_t finished_ = 0;
  LoadSummary summary_;
};

}  // namespace

bool LoadSummary::all_succeeded() const {
  if (!errors.empty() || requests == 0) return false;
  for (const auto& [status, n] : statuses) {
    if (status < 200 || status > 299) return false;
  }
  return true;
}

std::string LoadSummary::ToJson() const {
  std::string out = absl::StrCat("{\"requests\":", requests, ",\"statuses\":{");
  bool first = true;
  for (const auto& [status, n] : statuses) {
    absl::StrAppend(&out, first ? "" : ",", "\"", status, "\":", n);
    first = false;
  }
  out += "},\"errors\":{";
  first = true;
  for (const auto& [name, n] : errors) {
    absl::StrAppend(&out, first ? "" : ",", JsonString(name), ":", n);
    first = false;
  }
  out += "},\"pods\":{";
  first = true;
  for (const auto& [name, n] : pods) {
    absl::StrAppend(&out, first ? "" : ",", JsonString(name), ":", n);
    first = false;
  }
  std::vector<double> sorted = latencies_ms;
  std::sort(sorted.begin(), sorted.end());
  absl::StrAppendFormat(&out,
                        "},\"latency_ms\":{\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,\"max\":%.2f}}",
                        Percentile(sorted, 0.5), Percentile(sorted, 0.9), Percentile(sorted, 0.99),
                        sorted.empty() ? 0.0 : sorted.back());
  return out;
}

LoadSummary RunLoad(event::Loop& loop, const GetOptions& options) {
  return Load(loop, options).Run();
}

}  // namespace meshlet::testapp

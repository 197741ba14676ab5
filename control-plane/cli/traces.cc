// traces and trace: the control plane's trace collector (trace_view.h renders its answers).

#include "absl/strings/str_cat.h"
#include "control-plane/cli/commands.h"
#include "control-plane/cli/trace_view.h"

namespace meshlet::controlplane::cli {
namespace {

class Traces final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    // Passed to GET /api/v1/traces, which validates them.
    auto filter = [this](std::string name, std::string param, std::string value, std::string help) {
      return flags::Flag{.name = std::move(name),
                         .value = std::move(value),
                         .help = std::move(help),
                         .set = [this, param = std::move(param)](absl::string_view v) {
                           filters_.emplace_back(param, std::string(v));
                           return absl::OkStatus();
                         }};
    };
    return {filter("--service", "service", "SERVICE", "traces with a span of SERVICE"),
            filter("--operation", "operation", "NAME", "traces with this operation"),
            filter("--min-duration", "minDuration", "DURATION",
                   "traces at least this long (e.g. 50ms)"),
            filter("--status", "status", "error|ok", "failed or successful traces"),
            filter("--limit", "limit", "N", "at most N traces"),
            OutputFlag(&output_, {"json"}, "the API's JSON")};
  }

  // GET /api/v1/traces with the filter flags.
  int Run(Session& session) override {
    if (!session.positional().empty()) {
      return session.Fail({kExitUsage, "traces takes only flags"});
    }
    std::string path = "/api/v1/traces";
    for (size_t i = 0; i < filters_.size(); ++i) {
      absl::StrAppend(&path, i == 0 ? "?" : "&", filters_[i].first, "=",
                      QueryEscape(filters_[i].second));
    }
    return session.ShowReply(output_, path,
                             [](absl::string_view body) { return FormatTraceList(body); });
  }

 private:
  std::vector<std::pair<std::string, std::string>> filters_;  // query parameter, value
  std::string output_ = "table";
};

class Trace final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    return {OutputFlag(&output_, {"json"}, "the API's JSON")};
  }

  // GET /api/v1/traces/{id} as a waterfall.
  int Run(Session& session) override {
    if (session.positional().size() != 1) return session.Fail(session.UsageFailure());
    return session.ShowReply(output_,
                             absl::StrCat("/api/v1/traces/", QueryEscape(session.positional()[0])),
                             [](absl::string_view body) { return FormatTraceWaterfall(body); });
  }

 private:
  std::string output_ = "table";
};

}  // namespace

CommandSpec TracesCommand() {
  return {.name = "traces",
          .summary = "recent traces from the control plane's collector, newest first",
          .about =
              "Lists recent traces from the control plane's collector, newest first: "
              "trace id, root service and operation, start, duration, span count, error. "
              "The control plane checks the filter values.",
          .examples = {{"", "meshctl traces --service backend --min-duration 5ms --limit 5"},
                       {"", "meshctl traces --status error"}},
          .make = [] { return std::make_unique<Traces>(); }};
}

CommandSpec TraceCommand() {
  return {.name = "trace",
          .args = "ID",
          .summary = "one trace as a waterfall",
          .about =
              "Shows one trace as a text waterfall: the span tree with offsets, durations "
              "and bars, each span's attributes (retry attempts), status and parent.",
          .examples = {{"", "meshctl trace c69967343ec1c208c0a13ca28c50e2f5"}},
          .make = [] { return std::make_unique<Trace>(); }};
}

}  // namespace meshlet::controlplane::cli

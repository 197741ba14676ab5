// stat and top: golden metrics per source -> destination service (GET /api/v1/stat).

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/config/yaml_proto.h"
#include "control-plane/cli/commands.h"
#include "control-plane/cli/trace_view.h"

namespace meshlet::controlplane::cli {
namespace {

// --window of stat and top.
flags::Flag WindowFlag(std::string* out) {
  return flags::StringFlag("--window", "DURATION", out,
                           "the metrics of this last span of time (default 1m, with stat "
                           "--history 1h; sidecars report every 10s)");
}

// GET /api/v1/stat [for SERVICE] as a table: by source and destination, or with `top` the
// busiest paths first, at most `limit` (0: all).
int ShowStat(Session& session, absl::string_view output, const std::string& window, bool top,
             size_t limit) {
  const std::vector<std::string>& args = session.positional();
  if (args.size() > 1) return session.Fail(session.UsageFailure());
  std::string path = absl::StrCat("/api/v1/stat?window=", QueryEscape(window));
  if (!args.empty()) absl::StrAppend(&path, "&service=", QueryEscape(args[0]));
  return session.ShowReply(output, path, [top, limit](absl::string_view body) {
    return FormatStatTable(body, top, limit);
  });
}

// GET /api/v1/stat/routes for SERVICE: each route rule that sent it requests in `window`.
int ShowRoutes(Session& session, absl::string_view output, const std::string& window) {
  const std::vector<std::string>& args = session.positional();
  if (args.size() != 1) return session.Fail(session.UsageFailure());
  return session.ShowReply(output,
                           absl::StrCat("/api/v1/stat/routes?service=", QueryEscape(args[0]),
                                        "&window=", QueryEscape(window)),
                           FormatStatRoutes);
}

// GET /api/v1/stat/history for SERVICE (its inbound traffic), SOURCE DESTINATION (one edge),
// `route` (NAMESPACE/NAME[:RULE]) or `workload` (NAMESPACE/POD), over the last `window` (empty:
// the server's default, an hour) every `step` (empty: the server's choice), as a table of points.
int ShowHistory(Session& session, absl::string_view output, const std::string& window,
                const std::string& step, const std::string& route, const std::string& workload) {
  const std::vector<std::string>& args = session.positional();
  std::string path;
  if (!route.empty() || !workload.empty()) {
    if (!args.empty() || (!route.empty() && !workload.empty())) {
      return session.Fail(session.UsageFailure());
    }
    if (!workload.empty()) {
      path = absl::StrCat("/api/v1/stat/history?workload=", QueryEscape(workload));
    } else {
      const size_t colon = route.rfind(':');
      path = absl::StrCat(
          "/api/v1/stat/history?route=",
          QueryEscape(route.substr(0, colon == std::string::npos ? route.size() : colon)));
      if (colon != std::string::npos) {
        absl::StrAppend(&path, "&rule=", QueryEscape(route.substr(colon + 1)));
      }
    }
  } else if (args.empty() || args.size() > 2) {
    return session.Fail(session.UsageFailure());
  } else {
    path = args.size() == 1 ? absl::StrCat("/api/v1/stat/history?service=", QueryEscape(args[0]))
                            : absl::StrCat("/api/v1/stat/history?edge=", QueryEscape(args[0]), ",",
                                           QueryEscape(args[1]));
  }
  if (!window.empty()) absl::StrAppend(&path, "&window=", QueryEscape(window));
  if (!step.empty()) absl::StrAppend(&path, "&step=", QueryEscape(step));
  return session.ShowReply(output, path, FormatStatHistory);
}

class Stat final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    return {WindowFlag(&window_),
            OutputFlag(&output_, {"json"}, "the API's JSON"),
            Switch("--history", "", &history_,
                   "the figures over time: of SERVICE's inbound traffic, or of the edge SOURCE "
                   "DESTINATION; --window defaults to 1h"),
            flags::StringFlag("--step", "DURATION", &step_,
                              "with --history: one row per this, a multiple of the control "
                              "plane's resolution (10s; default: that, or coarser for long "
                              "windows)"),
            Switch("--routes", "", &routes_,
                   "the figures of each HTTPRoute or GRPCRoute rule that sent SERVICE requests"),
            flags::StringFlag("--route", "NAMESPACE/NAME[:RULE]", &route_,
                              "with --history: of an HTTPRoute's or GRPCRoute's rule (every "
                              "rule without :RULE)"),
            flags::StringFlag("--workload", "NAMESPACE/POD", &workload_,
                              "with --history: of a workload's outbound calls, to every service")};
  }
  int Run(Session& session) override {
    if (history_) {
      if (routes_) return session.Fail(session.UsageFailure());
      return ShowHistory(session, output_, window_, step_, route_, workload_);
    }
    if (!step_.empty() || !route_.empty() || !workload_.empty()) {
      return session.Fail(session.UsageFailure());
    }
    if (routes_) return ShowRoutes(session, output_, window_.empty() ? "1m" : window_);
    return ShowStat(session, output_, window_.empty() ? "1m" : window_, false, 0);
  }

 private:
  std::string window_;  // empty: 1m, or an hour with --history
  std::string output_ = "table";
  std::string step_;
  bool history_ = false;
  bool routes_ = false;
  std::string route_;     // --route NAMESPACE/NAME[:RULE], with --history
  std::string workload_;  // --workload NAMESPACE/POD, with --history
};

class Top final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    return {{.name = "--interval",
             .value = "DURATION",
             .help = "time between tables (default 2s, at least 100ms)",
             .set =
                 [this](absl::string_view v) {
                   absl::StatusOr<absl::Duration> d = config::ParseDurationText(v);
                   if (!d.ok() || *d < absl::Milliseconds(100)) {
                     return absl::InvalidArgumentError("not a duration >= 100ms");
                   }
                   interval_ = *d;
                   return absl::OkStatus();
                 }},
            {.name = "--limit",
             .value = "N",
             .help = "at most N paths",
             .set =
                 [this](absl::string_view v) {
                   if (!absl::SimpleAtoi(v, &limit_)) {
                     return absl::InvalidArgumentError("not a number");
                   }
                   return absl::OkStatus();
                 }},
            WindowFlag(&window_),
            Switch("--once", "", &once_, "print one table and exit")};
  }

  // The busiest paths, redrawn every --interval on a terminal, appended (blank-line separated)
  // otherwise; --once prints one table and exits.
  int Run(Session& session) override {
    const bool terminal = session.io().out_is_terminal;
    std::ostream& out = session.io().out;
    for (;;) {
      if (terminal && !once_) {
        // Clear the screen and home the cursor, then what is shown and when.
        out << "\x1b[H\x1b[2J"
            << "meshctl top  (window " << window_ << ", every " << absl::FormatDuration(interval_)
            << "; Ctrl-C quits)   "
            << absl::FormatTime("%H:%M:%S", absl::Now(), absl::LocalTimeZone()) << "\n\n";
      }
      if (int code = ShowStat(session, "table", window_, true, limit_); code != kExitOk || once_) {
        return code;
      }
      out << (terminal ? "" : "\n") << std::flush;
      absl::SleepFor(interval_);
    }
  }

 private:
  absl::Duration interval_ = absl::Seconds(2);
  size_t limit_ = 0;
  std::string window_ = "1m";
  bool once_ = false;
};

}  // namespace

CommandSpec StatCommand() {
  return {
      .name = "stat",
      .args =
          "[SERVICE | --routes SERVICE | --history SERVICE | --history SOURCE "
          "DESTINATION | --history --route NAMESPACE/NAME[:RULE] | --history --workload "
          "NAMESPACE/POD]",
      .summary = "golden metrics per source -> destination service",
      .about =
          "Shows the golden metrics per source -> destination service: success rate, "
          "requests/s, latency p50/p95/p99, bytes and connections per second. With "
          "SERVICE, only the edges from or to it. With --history, the same over time, "
          "one row per step (10s by default) for the last --window (1h): of SERVICE's "
          "inbound traffic, or of the edge SOURCE -> DESTINATION, of a route rule "
          "(--route), or of a workload's outbound calls (--workload). With --routes, "
          "the figures of each HTTPRoute or GRPCRoute rule that sent SERVICE requests.",
      .examples = {{"", "meshctl stat"},
                   {"", "meshctl stat backend.default --window 5m"},
                   {"the last hour of a service, a row a minute",
                    "meshctl stat --history backend.default --step 1m"},
                   {"one edge over the last 10 minutes",
                    "meshctl stat --history frontend.default backend.default --window 10m"},
                   {"each route rule that sent reviews requests",
                    "meshctl stat --routes reviews.default"},
                   {"rule 1 of HTTPRoute default/reviews over the last hour",
                    "meshctl stat --history --route default/reviews:1"},
                   {"a pod's outbound calls", "meshctl stat --history --workload default/fe-1"}},
      .make = [] { return std::make_unique<Stat>(); }};
}

CommandSpec TopCommand() {
  return {
      .name = "top",
      .summary = "the busiest paths, refreshed until interrupted",
      .about =
          "Shows the busiest paths (most requests/s first), redrawn every interval on "
          "a terminal until Ctrl-C; piped, one table per interval.",
      .examples = {{"", "meshctl top"}, {"one table, for scripts", "meshctl top --once --limit 5"}},
      .make = [] { return std::make_unique<Top>(); }};
}

}  // namespace meshlet::controlplane::cli

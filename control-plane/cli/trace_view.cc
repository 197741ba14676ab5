#include "control-plane/cli/trace_view.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <map>
#include <set>
#include <tuple>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "control-plane/cli/output.h"
#include "control-plane/telemetry/explain.h"

namespace meshlet::controlplane::cli {
namespace {

absl::StatusOr<YAML::Node> ParseJson(absl::string_view json) {
  try {
    return YAML::Load(std::string(json));
  } catch (const YAML::Exception& e) {
    return absl::DataLossError(absl::StrCat("unreadable reply from the control plane: ", e.what()));
  }
}

struct ViewSpan {
  std::string id, parent, name, service, kind, status_code, status_message;
  int64_t start = 0, duration = 0;
  std::vector<std::pair<std::string, std::string>> attributes;
  std::vector<const ViewSpan*> children;
};

}  // namespace

namespace {

// "98.50%", "-" without requests.
std::string Percent(const YAML::Node& v) {
  if (!v.IsDefined() || v.IsNull()) return "-";
  return absl::StrFormat("%.2f%%", v.as<double>() * 100);
}

std::string Millis(const YAML::Node& v) {
  if (!v.IsDefined() || v.IsNull()) return "-";
  const double ms = v.as<double>();
  if (ms >= 1000) return absl::StrFormat("%.2fs", ms / 1000);
  if (ms >= 10) return absl::StrFormat("%.0fms", ms);
  return absl::StrFormat("%.1fms", ms);
}

std::string Rate(double v) {
  if (v >= 100) return absl::StrFormat("%.0f", v);
  return absl::StrFormat("%.1f", v);
}

std::string Bytes(double v) {
  if (v >= 1 << 20) return absl::StrFormat("%.1fMiB", v / (1 << 20));
  if (v >= 1 << 10) return absl::StrFormat("%.1fKiB", v / (1 << 10));
  return absl::StrFormat("%.0fB", v);
}

}  // namespace

absl::StatusOr<std::string> FormatStatTable(absl::string_view json, bool top, size_t limit) {
  absl::StatusOr<YAML::Node> root = ParseJson(json);
  if (!root.ok()) return root.status();
  struct Row {
    double rps;
    std::vector<std::string> cells;
  };
  std::vector<Row> rows;
  try {
    for (const YAML::Node& item : (*root)["items"]) {
      const YAML::Node latency = item["latencyMs"];
      const double rps = item["rps"].as<double>();
      Row row{rps, {item["source"].as<std::string>(), item["destination"].as<std::string>()}};
      if (top) {
        row.cells.insert(row.cells.end(),
                         {Rate(rps), Percent(item["successRate"]), Millis(latency["p50"]),
                          Millis(latency["p99"]), item["activeRequests"].as<std::string>()});
      } else {
        row.cells.insert(row.cells.end(),
                         {Percent(item["successRate"]), Rate(rps), Millis(latency["p50"]),
                          Millis(latency["p95"]), Millis(latency["p99"]),
                          absl::StrCat(Bytes(item["txBytesPerSecond"].as<double>()), "/",
                                       Bytes(item["rxBytesPerSecond"].as<double>())),
                          Rate(item["connectionsPerSecond"].as<double>())});
      }
      rows.push_back(std::move(row));
    }
  } catch (const YAML::Exception& e) {
    return absl::DataLossError(absl::StrCat("unexpected stat list: ", e.what()));
  }
  if (rows.empty()) {
    return std::string(
        "No traffic in the window (sidecars report every 10s by default; see "
        "docs/golden-metrics.md).\n");
  }
  if (top) {
    std::stable_sort(rows.begin(), rows.end(),
                     [](const Row& a, const Row& b) { return a.rps > b.rps; });
    if (limit != 0 && rows.size() > limit) rows.resize(limit);
  }
  std::vector<std::vector<std::string>> table;
  if (top) {
    table.push_back({"SOURCE", "DESTINATION", "RPS", "SUCCESS", "P50", "P99", "ACTIVE"});
  } else {
    table.push_back(
        {"SOURCE", "DESTINATION", "SUCCESS", "RPS", "P50", "P95", "P99", "TX/RX PER S", "CONN/S"});
  }
  for (Row& row : rows) table.push_back(std::move(row.cells));
  return FormatTable(table);
}

absl::StatusOr<std::string> FormatStatHistory(absl::string_view json) {
  absl::StatusOr<YAML::Node> root = ParseJson(json);
  if (!root.ok()) return root.status();
  std::string title;
  std::vector<std::vector<std::string>> table = {
      {"TIME (UTC)", "RPS", "SUCCESS", "P50", "P95", "P99", "TX/RX PER S"}};
  try {
    const YAML::Node& r = *root;
    if (r["route"].IsDefined()) {
      title =
          absl::StrCat("route ", r["route"].as<std::string>(),
                       r["rule"].IsDefined() ? absl::StrCat(" rule ", r["rule"].as<std::string>())
                                             : std::string(" (every rule)"));
    } else if (r["workload"].IsDefined()) {
      title = absl::StrCat("workload ", r["workload"].as<std::string>(),
                           " (outbound, to every service)");
    } else if (r["service"].IsDefined()) {
      title = absl::StrCat(r["service"].as<std::string>(), " (inbound, from every caller)");
    } else {
      title =
          absl::StrCat(r["source"].as<std::string>(), " -> ", r["destination"].as<std::string>());
    }
    absl::StrAppend(&title, ", every ", r["stepSeconds"].as<std::string>(), "s");
    for (const YAML::Node& p : r["points"]) {
      const YAML::Node latency = p["latencyMs"];
      const absl::Time t = absl::FromUnixSeconds(p["time"].as<int64_t>());
      const bool empty = p["requests"].as<uint64_t>() == 0;
      table.push_back({absl::FormatTime("%Y-%m-%d %H:%M:%S", t, absl::UTCTimeZone()),
                       empty ? "-" : Rate(p["rps"].as<double>()), Percent(p["successRate"]),
                       Millis(latency["p50"]), Millis(latency["p95"]), Millis(latency["p99"]),
                       absl::StrCat(Bytes(p["txBytesPerSecond"].as<double>()), "/",
                                    Bytes(p["rxBytesPerSecond"].as<double>()))});
    }
  } catch (const YAML::Exception& e) {
    return absl::DataLossError(absl::StrCat("unexpected stat history: ", e.what()));
  }
  if (table.size() == 1) return absl::StrCat(title, ": no points in the range.\n");
  return absl::StrCat(title, "\n", FormatTable(table));
}

absl::StatusOr<std::string> FormatStatRoutes(absl::string_view json) {
  absl::StatusOr<YAML::Node> root = ParseJson(json);
  if (!root.ok()) return root.status();
  struct Row {
    std::string route;
    int rule;
    std::vector<std::string> cells;
  };
  std::vector<Row> rows;
  std::string window;
  try {
    window = (*root)["window"].as<std::string>();
    for (const YAML::Node& item : (*root)["routes"]) {
      Row row{item["route"].as<std::string>(), item["rule"].as<int>(), {}};
      row.cells = {absl::StrCat(item["kind"].as<std::string>(), "/", row.route),
                   item["rule"].as<std::string>(),
                   Percent(item["successRate"]),
                   Rate(item["rps"].as<double>()),
                   Millis(item["p50Ms"]),
                   Millis(item["p95Ms"]),
                   Millis(item["p99Ms"]),
                   item["requests"].as<std::string>(),
                   item["failures"].as<std::string>()};
      rows.push_back(std::move(row));
    }
  } catch (const YAML::Exception& e) {
    return absl::DataLossError(absl::StrCat("unexpected route figures: ", e.what()));
  }
  if (rows.empty()) {
    return absl::StrCat(
        "No route rule sent requests to the service in the last ", window,
        " (only HTTPRoute and GRPCRoute rules count; see docs/golden-metrics.md).\n");
  }
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return std::tie(a.route, a.rule) < std::tie(b.route, b.rule);
  });
  std::vector<std::vector<std::string>> table = {
      {"ROUTE", "RULE", "SUCCESS", "RPS", "P50", "P95", "P99", "REQUESTS", "FAILURES"}};
  for (Row& row : rows) table.push_back(std::move(row.cells));
  return FormatTable(table);
}

std::string FormatNanos(int64_t nanos) {
  if (nanos >= 1000000000) return absl::StrFormat("%.3fs", static_cast<double>(nanos) / 1e9);
  if (nanos >= 1000000) return absl::StrFormat("%.2fms", static_cast<double>(nanos) / 1e6);
  return absl::StrFormat("%dus", nanos / 1000);
}

// Whose spans a trace holds: "verified" when every sender was authenticated (OTLP/gRPC on the
// discovery port), "unverified" when none was, else how many were not; "-" from a control plane
// that does not say.
std::string TraceSources(const YAML::Node& item) {
  const YAML::Node unverified = item["unverifiedSpans"];
  if (!unverified.IsDefined()) return "-";
  const uint64_t count = unverified.as<uint64_t>();
  if (count == 0) return "verified";
  if (count == item["spanCount"].as<uint64_t>()) return "unverified";
  return absl::StrCat(count, " unverified");
}

absl::StatusOr<std::string> FormatTraceList(absl::string_view json) {
  absl::StatusOr<YAML::Node> root = ParseJson(json);
  if (!root.ok()) return root.status();
  std::vector<std::vector<std::string>> rows = {
      {"TRACE ID", "ROOT", "START", "DURATION", "SPANS", "ERROR", "SOURCE"}};
  try {
    for (const YAML::Node& item : (*root)["items"]) {
      rows.push_back({item["traceId"].as<std::string>(),
                      absl::StrCat(item["rootService"].as<std::string>(), ": ",
                                   item["rootOperation"].as<std::string>()),
                      item["start"].as<std::string>(),
                      FormatNanos(item["durationNanos"].as<int64_t>()),
                      item["spanCount"].as<std::string>(), item["error"].as<bool>() ? "yes" : "no",
                      TraceSources(item)});
    }
  } catch (const YAML::Exception& e) {
    return absl::DataLossError(absl::StrCat("unexpected trace list: ", e.what()));
  }
  if (rows.size() == 1) return std::string("No traces found.\n");
  return FormatTable(rows);
}

absl::StatusOr<std::string> FormatTraceWaterfall(absl::string_view json, int bar_width) {
  absl::StatusOr<YAML::Node> root = ParseJson(json);
  if (!root.ok()) return root.status();
  std::vector<ViewSpan> spans;
  try {
    for (const YAML::Node& s : (*root)["spans"]) {
      ViewSpan span;
      span.id = s["spanId"].as<std::string>();
      span.parent = s["parentSpanId"].as<std::string>();
      span.name = s["name"].as<std::string>();
      span.service = s["service"].as<std::string>();
      span.kind = s["kind"].as<std::string>();
      span.start = s["startTimeUnixNano"].as<int64_t>();
      span.duration = s["durationNanos"].as<int64_t>();
      span.status_code = s["status"]["code"].as<std::string>();
      span.status_message = s["status"]["message"].as<std::string>();
      for (const auto& kv : s["attributes"]) {
        span.attributes.emplace_back(kv.first.as<std::string>(), kv.second.as<std::string>());
      }
      spans.push_back(std::move(span));
    }
  } catch (const YAML::Exception& e) {
    return absl::DataLossError(absl::StrCat("unexpected trace: ", e.what()));
  }
  if (spans.empty()) return absl::NotFoundError("the trace has no spans");
  int64_t begin = spans[0].start, end = spans[0].start;
  std::map<std::string, ViewSpan*> by_id;
  std::set<std::string> services;
  for (ViewSpan& span : spans) {
    begin = std::min(begin, span.start);
    end = std::max(end, span.start + span.duration);
    by_id[span.id] = &span;
    services.insert(span.service);
  }
  std::vector<const ViewSpan*> roots;
  for (const ViewSpan& span : spans) {  // already ordered by start
    auto parent = span.parent.empty() ? by_id.end() : by_id.find(span.parent);
    if (parent == by_id.end()) {
      roots.push_back(&span);
    } else {
      parent->second->children.push_back(&span);
    }
  }
  const int64_t total = std::max<int64_t>(end - begin, 1);
  std::vector<std::vector<std::string>> rows = {
      {"SPAN", "SERVICE", "KIND", "OFFSET", "DURATION", "TIMELINE"}};
  std::vector<std::string> details;  // printed under each row
  auto visit = [&](auto&& self, const ViewSpan* span, int depth) -> void {
    const int from = static_cast<int>((span->start - begin) * bar_width / total);
    const int to = std::max(
        from + 1, static_cast<int>((span->start + span->duration - begin) * bar_width / total));
    std::string bar(bar_width, ' ');
    for (int i = from; i < std::min(to, bar_width); ++i) bar[i] = '=';
    rows.push_back({absl::StrCat(std::string(depth * 2, ' '), span->name), span->service,
                    span->kind, absl::StrCat("+", FormatNanos(span->start - begin)),
                    FormatNanos(span->duration), absl::StrCat("|", bar, "|")});
    std::vector<std::string> notes;
    if (span->status_code == "ERROR") {
      notes.push_back(
          absl::StrCat("ERROR", span->status_message.empty() ? "" : ": ", span->status_message));
    }
    for (const auto& [key, value] : span->attributes)
      notes.push_back(absl::StrCat(key, "=", value));
    notes.push_back(absl::StrCat(
        "span ", span->id, span->parent.empty() ? "" : absl::StrCat(" parent ", span->parent)));
    details.push_back(absl::StrCat(std::string(depth * 2 + 4, ' '), absl::StrJoin(notes, "  ")));
    for (const ViewSpan* child : span->children) self(self, child, depth + 1);
  };
  for (const ViewSpan* r : roots) visit(visit, r, 0);
  // Interleave the table's rows with the details lines.
  const std::string table = FormatTable(rows);
  std::vector<std::string> lines = absl::StrSplit(table, '\n', absl::SkipEmpty());
  // Spans whose sender the collector did not authenticate (no meshlet.source.identity): their
  // service is what the sender said.
  const size_t unverified = std::count_if(spans.begin(), spans.end(), [](const ViewSpan& span) {
    return std::none_of(span.attributes.begin(), span.attributes.end(),
                        [](const auto& kv) { return kv.first == "meshlet.source.identity"; });
  });
  std::string out = absl::StrCat(
      "Trace ", (*root)["traceId"].as<std::string>(""), ": ", spans.size(), " spans, ",
      services.size(), " services, ", FormatNanos(end - begin),
      unverified == 0 ? std::string()
                      : absl::StrCat("; ", unverified,
                                     " spans from unverified senders (their service is what the "
                                     "sender said)"),
      "\n\n", lines[0], "\n");
  for (size_t i = 1; i < lines.size(); ++i) {
    absl::StrAppend(&out, lines[i], "\n", details[i - 1], "\n");
  }
  return out;
}

namespace {

// `text` with each policy object of `applied_from` that it names followed by " (from FILE)"; a
// name counts where it ends the text or is followed by a character no name holds.
std::string WithFiles(const std::string& text,
                      const std::map<std::string, std::string>& applied_from) {
  std::string out = text;
  for (const auto& [ref, file] : applied_from) {
    const std::string note = absl::StrCat(" (from ", file, ")");
    for (size_t at = out.find(ref); at != std::string::npos; at = out.find(ref, at)) {
      const size_t end = at + ref.size();
      const bool whole =
          end == out.size() || !(absl::ascii_isalnum(out[end]) || out[end] == '-' ||
                                 out[end] == '.' || out[end] == '/' || out[end] == '_');
      if (whole && out.compare(end, note.size(), note) != 0) {
        out.insert(end, note);
        at = end + note.size();
      } else {
        at = end;
      }
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> FormatExplanation(
    absl::string_view json, const std::map<std::string, std::string>& applied_from) {
  absl::StatusOr<YAML::Node> root = ParseJson(json);
  if (!root.ok()) return root.status();
  // "HTTPRoute/default/reviews (from policies/reviews.yaml)".
  auto policy = [&](const std::string& ref) {
    auto it = applied_from.find(ref);
    return it == applied_from.end() ? ref : absl::StrCat(ref, " (from ", it->second, ")");
  };
  std::string out;
  try {
    const YAML::Node& r = *root;
    const std::string request_id = Scalar(r["requestId"]);
    const YAML::Node hops = r["hops"];
    absl::StrAppend(&out, "Trace ", Scalar(r["traceId"]),
                    request_id.empty() ? "" : absl::StrCat(" (request id ", request_id, ")"), ": ",
                    Scalar(r["status"]).empty() ? "no status" : Scalar(r["status"]), " in ",
                    FormatNanos(r["durationNanos"].as<int64_t>(0)), ", ", hops.size(),
                    hops.size() == 1 ? " hop\n" : " hops\n");
    if (r["unsampled"].as<bool>(false)) {
      absl::StrAppend(&out,
                      "(not sampled: only the sidecars that failed the request, or passed a "
                      "proxy's error on, exported their spans)\n");
    }
    const int deadline_from = r["deadlineFrom"].as<int>(-1);
    int number = 0;
    for (const YAML::Node& hop : hops) {
      const std::string indent((hop["depth"].as<int>(0)) * 2, ' ');
      const std::string pad = indent + "     ";
      const std::string direction = Scalar(hop["direction"]);
      const std::string node = Scalar(hop["node"]);
      const std::string status = Scalar(hop["status"]);
      const int index = number++;
      // A gateway proxy's hop is named as its Gateway (telemetry/explain.h).
      const std::string gateway = Scalar(hop["gateway"]);
      const std::string gateway_class = Scalar(hop["gatewayClass"]);
      const std::string proxy =
          !gateway.empty()
              ? absl::StrCat(
                    "gateway ", gateway,
                    gateway_class.empty() ? "" : absl::StrCat(" (class ", gateway_class, ")"))
              : absl::StrCat(Scalar(hop["service"]), " ",
                             direction.empty() ? "" : absl::StrCat(direction, " "), "sidecar");
      absl::StrAppend(&out, "\n", indent, number, ". ", proxy,
                      node.empty() ? "" : absl::StrCat(" (", node, ")"), ": ",
                      Scalar(hop["operation"]), " -> ", status.empty() ? "no response" : status,
                      " in ", FormatNanos(hop["durationNanos"].as<int64_t>(0)),
                      hop["failedFirst"].as<bool>(false) ? "   <- failed first" : "",
                      index == deadline_from ? "   <- its timeout set the deadline" : "", "\n");
      auto line = [&](absl::string_view label, const std::string& text) {
        if (!text.empty()) absl::StrAppend(&out, pad, absl::StrFormat("%-9s ", label), text, "\n");
      };
      const std::string route_policy = Scalar(hop["routePolicy"]);
      const std::string rule = Scalar(hop["routeRule"]);
      const std::string match = Scalar(hop["routeMatch"]);
      const std::string route = Scalar(hop["route"]);
      line("route", route_policy.empty()
                        ? route
                        : absl::StrCat(policy(route_policy), rule.empty() ? "" : " rule " + rule,
                                       // -1: the rule has no matches (it matches everything).
                                       match.empty() || match == "-1" ? "" : " match " + match,
                                       route.empty() ? "" : absl::StrCat(" [", route, "]")));
      const std::string subset = Scalar(hop["subset"]);
      line("cluster", absl::StrCat(Scalar(hop["cluster"]),
                                   subset.empty() ? "" : absl::StrCat(" (subset ", subset, ")")));
      line("policy",
           Scalar(hop["trafficPolicy"]).empty() ? "" : policy(Scalar(hop["trafficPolicy"])));
      // Each timeout with the object that set it ("the caller's deadline": its caller's).
      std::vector<std::string> timeouts;
      if (!Scalar(hop["requestTimeoutMs"]).empty()) {
        const std::string from = Scalar(hop["timeoutPolicy"]);
        timeouts.push_back(absl::StrCat("request ", Scalar(hop["requestTimeoutMs"]), "ms",
                                        Scalar(hop["timeoutOrigin"]) == "caller"
                                            ? " (the caller's deadline)"
                                        : from.empty() ? ""
                                                       : absl::StrCat(" from ", policy(from))));
      }
      if (!Scalar(hop["perTryTimeoutMs"]).empty()) {
        const std::string from = Scalar(hop["perTryTimeoutPolicy"]);
        timeouts.push_back(absl::StrCat("per try ", Scalar(hop["perTryTimeoutMs"]), "ms",
                                        from.empty() ? "" : absl::StrCat(" from ", policy(from))));
      }
      line("timeouts", absl::StrJoin(timeouts, ", "));
      if (!Scalar(hop["rateLimitPolicy"]).empty()) {
        line("limit", absl::StrCat("rate limit of ", policy(Scalar(hop["rateLimitPolicy"]))));
      }
      line("shed", Scalar(hop["shed"]));
      if (!Scalar(hop["destinationPolicy"]).empty()) {
        const std::string refusing = Scalar(hop["destinationPolicy"]);
        line("refusal", absl::StrCat("unknown destinations refused by ", policy(refusing),
                                     telemetry::RegistryOnlyReason(refusing)));
      }
      int attempt = 0;
      for (const YAML::Node& a : hop["attempts"]) {
        const std::string next = Scalar(a["next"]);
        const std::string duration =
            a["durationMs"].IsDefined() ? absl::StrCat(" ", Scalar(a["durationMs"]), "ms") : "";
        // "connect-failure(refused)": why there was no connection, when the sidecar said.
        const std::string connect = Scalar(a["connect"]);
        line(absl::StrCat("attempt ", ++attempt),
             absl::StrCat(Scalar(a["endpoint"]).empty() ? "-" : Scalar(a["endpoint"]), " ",
                          Scalar(a["outcome"]).empty() ? "?" : Scalar(a["outcome"]),
                          connect.empty() ? "" : absl::StrCat("(", connect, ")"), duration,
                          next.empty() ? "" : absl::StrCat(" -> ", next)));
      }
      const std::string authz = Scalar(hop["authz"]);
      const std::string authz_policy = Scalar(hop["authzPolicy"]);
      const std::string peer = Scalar(hop["peer"]);
      if (!authz.empty() || !authz_policy.empty()) {
        line("authz", absl::StrCat(authz.empty() ? "decided" : authz,
                                   authz_policy.empty() ? "" : " by " + policy(authz_policy),
                                   peer.empty() ? "" : " for " + peer));
      } else if (!peer.empty()) {
        line("peer", peer);
      }
      const std::string flags = Scalar(hop["responseFlags"]);
      const std::string reason = Scalar(hop["errorReason"]);
      if (!reason.empty()) {
        line("error", absl::StrCat(flags.empty() ? "" : flags + ": ", reason,
                                   " (the proxy answered itself)"));
      } else if (!flags.empty()) {
        line("flags", flags);
      }
    }
    absl::StrAppend(&out, "\nVerdict: ", WithFiles(Scalar(r["verdict"]), applied_from), "\n");
  } catch (const YAML::Exception& e) {
    return absl::DataLossError(absl::StrCat("unexpected explanation: ", e.what()));
  }
  return out;
}

absl::StatusOr<TapLineView> FormatTapLine(absl::string_view json_line) {
  absl::StatusOr<YAML::Node> root = ParseJson(json_line);
  if (!root.ok()) return root.status();
  if (!root->IsMap()) return absl::DataLossError("a tap line that is not a JSON object");
  const YAML::Node& line = *root;
  const auto text = [&line](const char* key) {
    return line[key] && line[key].IsScalar() ? line[key].as<std::string>() : std::string();
  };
  TapLineView view;
  const std::string kind = text("kind");
  if (kind == "TapEvent") {
    std::string status = text("status");
    if (text("reset") == "true") status = absl::StrCat(status, " (reset)");
    view.out = absl::StrCat(absl::StrFormat("%-8s", text("direction")), " ", text("proxy"), " ",
                            text("method"), " ", text("authority"), text("path"),
                            " status=", status, " latency=", text("latencyMs"), "ms");
    if (!text("caller").empty()) absl::StrAppend(&view.out, " caller=", text("caller"));
    if (!text("route").empty()) {
      absl::StrAppend(&view.out, " route=", text("route"));
      if (!text("rule").empty()) absl::StrAppend(&view.out, "#", text("rule"));
    }
    if (!text("flags").empty()) absl::StrAppend(&view.out, " flags=", text("flags"));
    if (!text("error").empty()) absl::StrAppend(&view.out, " error=\"", text("error"), "\"");
    view.out += "\n";
  } else if (kind == "TapStarted") {
    std::string proxies;
    if (line["proxies"] && line["proxies"].IsSequence()) {
      for (const YAML::Node& p : line["proxies"]) {
        absl::StrAppend(&proxies, proxies.empty() ? "" : ", ", p.as<std::string>());
      }
    }
    view.note = absl::StrCat("tapping ", text("target"), " at ", text("rate"), " requests/s for ",
                             text("durationSeconds"), "s",
                             text("headers") == "true" ? ", with headers" : "", ": ", proxies,
                             " (Ctrl-C ends it)\n");
  } else if (kind == "TapReplica") {
    // Another control-plane replica's part: its sidecars of the target, none, or a failure.
    std::string proxies;
    if (line["proxies"] && line["proxies"].IsSequence()) {
      for (const YAML::Node& p : line["proxies"]) {
        absl::StrAppend(&proxies, proxies.empty() ? "" : ", ", p.as<std::string>());
      }
    }
    const std::string status = text("status");
    view.note = status == "started" ? absl::StrCat("replica ", text("replica"), ": ", proxies, "\n")
                : status == "none"
                    ? absl::StrCat("replica ", text("replica"), ": no sidecar of the target\n")
                    : absl::StrCat("replica ", text("replica"),
                                   " could not be asked: ", text("error"), "\n");
  } else if (kind == "TapProxy") {
    if (text("status") == "refused") {
      view.note = absl::StrCat("proxy ", text("proxy"), " refused the tap: ", text("error"), "\n");
    }
  } else if (kind == "TapEnded") {
    const YAML::Node& d = line["dropped"];
    const auto dropped = [&d](const char* key) {
      return d && d[key] ? d[key].as<std::string>() : std::string("0");
    };
    view.note = absl::StrCat("tap ended (", text("reason"), "): ", text("events"),
                             " requests shown; not shown: ", dropped("sidecarRate"),
                             " over the rate at the sidecars, ", dropped("tapRate"),
                             " over the tap's rate, ", dropped("controlPlaneRate"),
                             " over the control plane's limit, ", dropped("sidecarBatchBytes"),
                             " over a batch's size\n");
  }
  return view;
}

}  // namespace meshlet::controlplane::cli

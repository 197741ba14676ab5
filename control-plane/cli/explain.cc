// explain: why a request ended as it did, from its trace (GET /api/v1/traces/{id}/explain,
// control-plane/telemetry/explain.h), with the file each policy object it names was applied from.

#include <yaml-cpp/yaml.h>

#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/base/json.h"
#include "common/config/yaml_proto.h"
#include "control-plane/cli/commands.h"
#include "control-plane/cli/documents.h"
#include "control-plane/cli/output.h"
#include "control-plane/cli/trace_view.h"
#include "sidecar/dryrun/dry_run.h"
#include "xds/protocol.h"
#include "xds/resources.pb.h"

namespace meshlet::controlplane::cli {
namespace {

bool IsTraceId(absl::string_view id) {
  return id.size() == 32 && std::all_of(id.begin(), id.end(), absl::ascii_isxdigit);
}

class Explain final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    flags::Flag header{.name = "--header",
                       .shorthand = "-H",
                       .value = "NAME:VALUE",
                       .help = "with --to: a request header (repeatable)",
                       .set = [this](absl::string_view v) {
                         const size_t colon = v.find(':');
                         if (colon == absl::string_view::npos || colon == 0) {
                           return absl::InvalidArgumentError("expected NAME:VALUE");
                         }
                         headers_.emplace_back(
                             absl::AsciiStrToLower(absl::StripAsciiWhitespace(v.substr(0, colon))),
                             std::string(absl::StripAsciiWhitespace(v.substr(colon + 1))));
                         return absl::OkStatus();
                       }};
    return {OutputFlag(&output_, {"json"}, "the API's JSON, with appliedFrom added"),
            flags::StringFlag("--from", "SERVICE", &from_,
                              "dry run: the calling service (a sidecar of it must be connected)"),
            flags::StringFlag("--to", "URL", &to_,
                              "dry run: the URL it calls (http://host[:port]/path)"),
            flags::StringFlag("--method", "METHOD", &method_, "with --to: the method (GET)"),
            header,
            NamespaceFlag(&namespace_, "with --from: the calling service's namespace")};
  }

  int Run(Session& session) override {
    if (!from_.empty() || !to_.empty()) return DryRunCommand(session);
    if (!headers_.empty() || method_ != "GET") {
      return session.Fail({kExitUsage, "--method and -H go with --from and --to"});
    }
    if (session.positional().size() != 1 || session.positional()[0].empty()) {
      return session.Fail(session.UsageFailure());
    }
    const std::string& id = session.positional()[0];
    int exit_code = kExitOk;
    std::optional<ApiReply> reply;
    if (IsTraceId(id)) {
      reply = Get(session, absl::StrCat("/api/v1/traces/", absl::AsciiStrToLower(id), "/explain"),
                  &exit_code);
      if (!reply.has_value()) return exit_code;
    }
    if (!reply.has_value() || reply->http.status == 404) {
      // Not a trace id the collector holds: a request id (x-request-id).
      std::optional<std::string> trace = TraceOfRequest(session, id, &exit_code);
      if (!trace.has_value()) return exit_code;
      reply = Get(session, absl::StrCat("/api/v1/traces/", *trace, "/explain"), &exit_code);
      if (!reply.has_value()) return exit_code;
    }
    if (reply->http.status != 200) return session.Fail({kExitFailed, reply->ErrorMessage()});
    const std::map<std::string, std::string> applied_from = AppliedFrom(session, reply->http.body);
    if (output_ == "json") {
      session.io().out << WithAppliedFrom(reply->http.body, applied_from);
      return kExitOk;
    }
    absl::StatusOr<std::string> text = FormatExplanation(reply->http.body, applied_from);
    if (!text.ok()) return session.Fail({kExitFailed, std::string(text.status().message())});
    session.io().out << *text;
    return kExitOk;
  }

 private:
  static std::optional<ApiReply> Get(Session& session, const std::string& path, int* exit_code) {
    return session.api().Call("GET", path, "", exit_code);
  }

  // The newest trace whose spans carry `request_id`; nullopt after printing why there is none.
  static std::optional<std::string> TraceOfRequest(Session& session, const std::string& request_id,
                                                   int* exit_code) {
    std::optional<ApiReply> reply =
        Get(session, absl::StrCat("/api/v1/traces?requestId=", QueryEscape(request_id), "&limit=2"),
            exit_code);
    if (!reply.has_value()) return std::nullopt;
    if (reply->http.status != 200) {
      *exit_code = session.Fail({kExitFailed, reply->ErrorMessage()});
      return std::nullopt;
    }
    std::vector<std::string> traces;
    try {
      for (const YAML::Node& item : YAML::Load(reply->http.body)["items"]) {
        traces.push_back(item["traceId"].as<std::string>());
      }
    } catch (const YAML::Exception& e) {
      *exit_code = session.Fail({kExitFailed, absl::StrCat("unexpected trace list: ", e.what())});
      return std::nullopt;
    }
    if (traces.empty()) {
      *exit_code = session.Fail(
          {kExitFailed,
           absl::StrCat("no trace with ", IsTraceId(request_id) ? "trace id or " : "",
                        "request id \"", request_id,
                        "\": no proxy failed it and it was not sampled, its spans have not "
                        "arrived yet, or they were not kept (past the sidecars' error-span rate, "
                        "or evicted; meshctl traces lists what the collector holds)")});
      return std::nullopt;
    }
    if (traces.size() > 1) {
      session.io().err << "note: request id \"" << request_id
                       << "\" is in several traces; explaining the newest, " << traces[0] << "\n";
    }
    return traces[0];
  }

  // The file each policy object the explanation names was applied from, read from the object's
  // meshlet.io/applied-from annotation; objects without one, or gone since, are left out.
  static std::map<std::string, std::string> AppliedFrom(Session& session,
                                                        const std::string& explanation) {
    std::map<std::string, std::string> out;
    std::vector<std::string> refs;
    try {
      for (const YAML::Node& p : YAML::Load(explanation)["policies"]) refs.push_back(Scalar(p));
    } catch (const YAML::Exception&) {
      return out;  // FormatExplanation reports the reply
    }
    for (const std::string& ref : refs) {
      // "Kind/namespace/name", or "Kind/name" for an object without a namespace (MeshConfig).
      std::vector<std::string> parts = absl::StrSplit(ref, '/');
      if (parts.size() == 2) parts.insert(parts.begin() + 1, "");
      const policy::KindInfo* info = parts.size() == 3 ? policy::FindKind(parts[0]) : nullptr;
      if (info == nullptr || info->namespaced == parts[1].empty()) continue;
      int exit_code = kExitOk;
      std::optional<ApiReply> reply =
          session.api().Call("GET", ResourcePath(*info, parts[1], parts[2]), "", &exit_code);
      if (!reply.has_value() || reply->http.status != 200) continue;
      try {
        const YAML::Node file =
            YAML::Load(reply->http.body)["metadata"]["annotations"][kAppliedFromAnnotation];
        if (file.IsScalar() && !file.Scalar().empty()) out[ref] = file.Scalar();
      } catch (const YAML::Exception&) {
      }
    }
    return out;
  }

  // The explanation's JSON object with "appliedFrom":{ref: file, ...} as its last member.
  static std::string WithAppliedFrom(const std::string& json,
                                     const std::map<std::string, std::string>& applied_from) {
    const size_t end = json.rfind('}');
    if (end == std::string::npos) return json;
    std::vector<std::string> members;
    for (const auto& [ref, file] : applied_from) {
      members.push_back(absl::StrCat(JsonQuote(ref), ":", JsonQuote(file)));
    }
    return absl::StrCat(json.substr(0, end), R"(,"appliedFrom":{)", absl::StrJoin(members, ","),
                        "}}\n");
  }

  // explain --from SVC --to URL: the resources the control plane sends a connected sidecar of
  // SVC, with the URL's host looked up as an on-demand sidecar's first request to it would
  // (ADR 0086), run through the sidecar's own translation and route matching
  // (sidecar/dryrun/dry_run.h).
  int DryRunCommand(Session& session) {
    if (from_.empty() || to_.empty()) {
      return session.Fail({kExitUsage, "a dry run needs both --from SERVICE and --to URL"});
    }
    if (!session.positional().empty()) {
      return session.Fail({kExitUsage, "a dry run (--from, --to) takes no REQUEST_ID"});
    }
    if (output_ != "table") {
      return session.Fail(
          {kExitUsage, "-o json goes with REQUEST_ID|TRACE_ID; a dry run prints text"});
    }
    absl::StatusOr<sidecar::dryrun::Request> request = ParseUrl(to_);
    if (!request.ok()) {
      return session.Fail({kExitUsage, absl::StrCat("--to: ", request.status().message())});
    }
    request->method = method_;
    request->headers = headers_;
    const std::string ns = session.Namespace(namespace_);
    int exit_code = kExitOk;
    std::optional<ApiReply> proxies = Get(session, "/api/v1/proxies", &exit_code);
    if (!proxies.has_value()) return exit_code;
    if (proxies->http.status != 200) return session.Fail({kExitFailed, proxies->ErrorMessage()});
    std::string proxy;
    try {
      for (const YAML::Node& p : YAML::Load(proxies->http.body)["items"]) {
        if (Scalar(p["service"]) == from_ &&
            (Scalar(p["namespace"]).empty() ? "default" : Scalar(p["namespace"])) == ns) {
          proxy = Scalar(p["id"]);
          break;
        }
      }
    } catch (const YAML::Exception& e) {
      return session.Fail({kExitFailed, absl::StrCat("unexpected proxy list: ", e.what())});
    }
    if (proxy.empty()) {
      return session.Fail(
          {kExitFailed,
           absl::StrCat("no sidecar of service ", from_, " in namespace ", ns,
                        " is connected: the dry run uses the configuration the control plane "
                        "sends one (meshctl proxy-status lists them)")});
    }
    // A sidecar that discovers Services on first use holds only what it called so far: the
    // control plane answers with what it would send once the host is looked up.
    std::string path = absl::StrCat("/api/v1/proxies/", QueryEscape(proxy), "/config");
    if (std::optional<std::string> key = xds::LookupKeyForHost(request->authority)) {
      absl::StrAppend(&path, "?lookup=", QueryEscape(*key));
    }
    std::optional<ApiReply> config = Get(session, path, &exit_code);
    if (!config.has_value()) return exit_code;
    if (config->http.status != 200) return session.Fail({kExitFailed, config->ErrorMessage()});
    absl::StatusOr<sidecar::dryrun::Resources> resources = ResourcesOf(config->http.body);
    if (!resources.ok()) {
      return session.Fail({kExitFailed, absl::StrCat("the configuration of ", proxy, ": ",
                                                     resources.status().message())});
    }
    absl::StatusOr<sidecar::dryrun::Result> result =
        sidecar::dryrun::Decide(*std::move(resources), "outbound", *request);
    if (!result.ok()) {
      return session.Fail({kExitFailed, absl::StrCat("the configuration of ", proxy, ": ",
                                                     result.status().message())});
    }
    session.io().out << FormatDryRun(proxy, *request, *result);
    return kExitOk;
  }

  // "http://reviews:9080/a?b" → authority "reviews:9080", path "/a?b".
  static absl::StatusOr<sidecar::dryrun::Request> ParseUrl(absl::string_view url) {
    sidecar::dryrun::Request request;
    if (!absl::ConsumePrefix(&url, "http://")) {
      return absl::InvalidArgumentError("expected http://HOST[:PORT][/PATH]");
    }
    const size_t slash = url.find('/');
    request.authority = std::string(url.substr(0, slash));
    request.path = slash == absl::string_view::npos ? "/" : std::string(url.substr(slash));
    if (request.authority.empty()) return absl::InvalidArgumentError("the URL names no host");
    return request;
  }

  // The xds resources of a GET /api/v1/proxies/{id}/config reply (what the control plane sent),
  // with the virtual hosts of ServiceRoutes joined to their route configurations as the sidecar
  // joins them (after the table's own, by ServiceRoute name).
  static absl::StatusOr<sidecar::dryrun::Resources> ResourcesOf(const std::string& json) {
    sidecar::dryrun::Resources set;
    std::map<std::string, xds::ServiceRoute> service_routes;
    try {
      for (const YAML::Node& t : YAML::Load(json)["types"]) {
        const std::string type = Scalar(t["type"]);
        for (const YAML::Node& r : t["resources"]) {
          const YAML::Node resource = r["resource"];
          if (!resource.IsMap()) continue;
          const std::string yaml = YAML::Dump(resource);
          absl::Status status;
          if (type == "routes") {
            xds::RouteConfiguration m;
            status = config::YamlToProto(yaml, m);
            set.routes.push_back(std::move(m));
          } else if (type == "clusters") {
            xds::Cluster m;
            status = config::YamlToProto(yaml, m);
            set.clusters.push_back(std::move(m));
          } else if (type == "endpoints") {
            xds::ClusterLoadAssignment m;
            status = config::YamlToProto(yaml, m);
            set.endpoints.push_back(std::move(m));
          } else if (type == "secrets") {
            xds::Secret m;
            status = config::YamlToProto(yaml, m);
            set.secrets.push_back(std::move(m));
          } else if (type == "service_routes") {
            xds::ServiceRoute m;
            status = config::YamlToProto(yaml, m);
            service_routes[m.name()] = std::move(m);
          }
          if (!status.ok()) {
            return absl::DataLossError(
                absl::StrCat(type, " \"", Scalar(r["name"]), "\": ", status.message()));
          }
        }
      }
    } catch (const YAML::Exception& e) {
      return absl::DataLossError(absl::StrCat("unexpected reply: ", e.what()));
    }
    for (auto& [name, service_route] : service_routes) {
      if (!service_route.has_virtual_host()) continue;
      for (xds::RouteConfiguration& table : set.routes) {
        if (table.name() == service_route.route_config_name()) {
          *table.add_virtual_hosts() = std::move(*service_route.mutable_virtual_host());
          break;
        }
      }
    }
    return set;
  }

  static std::string FormatDryRun(const std::string& proxy, const sidecar::dryrun::Request& request,
                                  const sidecar::dryrun::Result& r) {
    std::string out =
        absl::StrCat("Dry run: ", request.method, " http://", request.authority, request.path,
                     " from ", proxy, " (its outbound routes, as the control plane sends them)\n");
    auto line = [&](absl::string_view label, const std::string& text) {
      if (!text.empty()) absl::StrAppend(&out, absl::StrFormat("  %-16s", label), text, "\n");
    };
    line("virtual host", r.virtual_host.empty() ? "none for this host" : r.virtual_host);
    line("route", r.route.empty() ? "none matches (404)" : r.route);
    line("action", r.action);
    if (r.action == "forward") {
      line("timeout", r.timeout_ms == 0 ? "none" : absl::StrCat(r.timeout_ms, "ms"));
      line("retries", absl::StrCat(r.num_retries,
                                   r.per_try_timeout_ms == 0
                                       ? ""
                                       : absl::StrCat(", per try ", r.per_try_timeout_ms, "ms")));
    }
    if (r.has_rate_limit) line("rate limit", "yes (the route's)");
    if (r.has_fault) line("fault", "the route injects faults");
    for (const sidecar::dryrun::TargetCluster& c : r.clusters) {
      line("cluster", absl::StrCat(c.name, c.weight == 0 ? "" : absl::StrCat(" weight ", c.weight),
                                   c.known ? "" : " (not in the configuration: 503 NC)"));
      if (!c.known) continue;
      line("  endpoints", c.endpoints.empty() ? "none (503 no healthy upstream)"
                                              : absl::StrJoin(c.endpoints, ", "));
      line("  balancer", c.lb_policy);
      line(
          "  limits",
          absl::StrCat("connections ", c.max_connections, ", pending ", c.max_pending_requests,
                       ", requests ", c.max_requests, ", retries ",
                       c.max_retries == sidecar::dryrun::kUnlimited ? "unlimited"
                                                                    : absl::StrCat(c.max_retries)));
      line("  outlier", c.outlier_detection.empty() ? "off" : c.outlier_detection);
      line("  breaker",
           c.consecutive_failure_breaker.empty() ? "off" : c.consecutive_failure_breaker);
    }
    return out;
  }

  std::string output_ = "table";
  std::string from_, to_, method_ = "GET";
  std::vector<std::pair<std::string, std::string>> headers_;
  NamespaceOption namespace_;
};

}  // namespace

CommandSpec ExplainCommand() {
  return {
      .name = "explain",
      .args = "REQUEST_ID|TRACE_ID | --from SERVICE --to URL",
      .summary = "why a request ended as it did: each hop's decisions and a verdict",
      .about =
          "Finds the request's trace in the control plane's collector, by trace id or by "
          "request id (x-request-id), and prints the chain of sidecar hops: per hop the "
          "route and the policy object it came from (kind/namespace/name, rule, match), the "
          "cluster and subset, the TrafficPolicy, each timeout and the object that set it, "
          "each attempt, the authorization decision and the error a proxy made, the hop that "
          "failed first marked; then a one-line verdict naming the hop, the reason and the "
          "policy object responsible. Policy objects applied with meshctl apply -f show the "
          "file they came from. A request has a trace when it was sampled or a proxy failed "
          "it (the x-request-id of a reply a proxy made itself; docs/tracing.md). With --from "
          "and --to, a "
          "dry run instead: the route, clusters, endpoints, timeouts, retries and limits a "
          "sidecar of SERVICE would apply to the URL under the configuration the control "
          "plane sent it, matched by the sidecar's own code; nothing is sent.",
      .examples = {{"by the x-request-id a caller saw", "meshctl explain 5e1c0a9f-77"},
                   {"", "meshctl explain 4bf92f3577b34da6a3ce929d0e0e4736 -o json"},
                   {"a dry run",
                    "meshctl explain --from frontend --to http://reviews:9080/r/1 -H x-user:ann"}},
      .make = [] { return std::make_unique<Explain>(); }};
}

}  // namespace meshlet::controlplane::cli

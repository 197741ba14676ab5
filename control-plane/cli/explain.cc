// explain: why a request ended as it did, from its trace (GET /api/v1/traces/{id}/explain,
// control-plane/telemetry/explain.h), with the file each policy object it names was applied from.

#include <yaml-cpp/yaml.h>

#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/base/json.h"
#include "control-plane/cli/commands.h"
#include "control-plane/cli/documents.h"
#include "control-plane/cli/output.h"
#include "control-plane/cli/trace_view.h"

namespace meshlet::controlplane::cli {
namespace {

bool IsTraceId(absl::string_view id) {
  return id.size() == 32 && std::all_of(id.begin(), id.end(), absl::ascii_isxdigit);
}

class Explain final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    return {OutputFlag(&output_, {"json"}, "the API's JSON, with appliedFrom added")};
  }

  int Run(Session& session) override {
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
                        "\": the request was not sampled, its spans have not arrived yet, or "
                        "they were evicted (meshctl traces lists what the collector holds)")});
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
      std::vector<std::string> parts = absl::StrSplit(ref, '/');
      const policy::KindInfo* info = parts.size() == 3 ? policy::FindKind(parts[0]) : nullptr;
      if (info == nullptr) continue;
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

  std::string output_ = "table";
};

}  // namespace

CommandSpec ExplainCommand() {
  return {.name = "explain",
          .args = "REQUEST_ID|TRACE_ID",
          .summary = "why a request ended as it did: each hop's decisions and a verdict",
          .about =
              "Finds the request's trace in the control plane's collector, by trace id or by "
              "request id (x-request-id), and prints the chain of sidecar hops: per hop the "
              "route and the policy object it came from (kind/namespace/name, rule, match), the "
              "cluster and subset, the TrafficPolicy whose timeouts and retries applied, each "
              "attempt, the authorization decision and the error a proxy made, the hop that "
              "failed first marked; then a one-line verdict. Policy objects applied with "
              "meshctl apply -f show the file they came from. Only requests whose spans "
              "were exported (sampled) have traces (docs/tracing.md).",
          .examples = {{"by the x-request-id a caller saw", "meshctl explain 5e1c0a9f-77"},
                       {"", "meshctl explain 4bf92f3577b34da6a3ce929d0e0e4736 -o json"}},
          .make = [] { return std::make_unique<Explain>(); }};
}

}  // namespace meshlet::controlplane::cli

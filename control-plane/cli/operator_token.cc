// operator-token create | list | revoke: the API's operator credentials and their roles
// (/api/v1/operator-tokens; an admin's).

#include <yaml-cpp/yaml.h>

#include "absl/strings/str_cat.h"
#include "common/base/json.h"
#include "control-plane/cli/commands.h"
#include "control-plane/cli/output.h"

namespace meshlet::controlplane::cli {
namespace {

class OperatorToken final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    return {{.name = "--role",
             .value = "peer|viewer|editor|admin",
             .help = "create: what the token may do: read this cluster's exports only (peer: "
                     "for a linked cluster's control plane), read (viewer), also write policy "
                     "(editor), also manage tokens (admin)",
             .set =
                 [this](absl::string_view v) {
                   if (v != "peer" && v != "viewer" && v != "editor" && v != "admin") {
                     return absl::InvalidArgumentError("one of peer, viewer, editor, admin");
                   }
                   role_ = std::string(v);
                   return absl::OkStatus();
                 }},
            flags::StringFlag("--ttl", "DURATION", &ttl_,
                              "create: how long the token is valid (default: no expiry)"),
            OutputFlag(&output_, {"json"}, "the API's JSON instead of the token or the table")};
  }

  int Run(Session& session) override {
    const std::vector<std::string>& args = session.positional();
    const std::string verb = args.empty() ? "" : args[0];
    if (verb == "create" && args.size() == 2) return Create(session, args[1]);
    if (verb == "list" && args.size() == 1) return List(session);
    if (verb == "revoke" && args.size() == 2) return Revoke(session, args[1]);
    return session.Fail(session.UsageFailure());
  }

 private:
  // The token alone goes to stdout (for `$(...)` or a file), the details to stderr.
  int Create(Session& session, const std::string& name) {
    if (role_.empty()) {
      return session.Fail(
          {kExitUsage, "operator-token create needs --role peer|viewer|editor|admin"});
    }
    std::string body =
        absl::StrCat(R"({"name":)", JsonQuote(name), R"(,"role":)", JsonQuote(role_));
    if (!ttl_.empty()) absl::StrAppend(&body, R"(,"ttl":)", JsonQuote(ttl_));
    body += "}";
    int exit_code = kExitOk;
    std::optional<ApiReply> reply =
        session.api().Call("POST", "/api/v1/operator-tokens", body, &exit_code);
    if (!reply.has_value()) return exit_code;
    if (reply->http.status != 201) return session.Fail({kExitFailed, reply->ErrorMessage()});
    if (output_ == "json") {
      session.io().out << reply->http.body;
      return kExitOk;
    }
    YAML::Node created = YAML::Load(reply->http.body);
    session.io().out << Scalar(created["token"]) << "\n";
    const std::string expires = Scalar(created["expiresAt"]);
    session.io().err << "operator token " << Scalar(created["name"]) << " ("
                     << Scalar(created["role"]) << "), "
                     << (expires.empty() ? "no expiry" : absl::StrCat("expires ", expires))
                     << "; shown only this once\n";
    return kExitOk;
  }

  int List(Session& session) {
    const absl::Time now = absl::Now();
    return session.ShowReply(
        output_, "/api/v1/operator-tokens",
        [now](absl::string_view json) -> absl::StatusOr<std::string> {
          YAML::Node list = YAML::Load(std::string(json));
          std::vector<std::vector<std::string>> rows = {
              {"NAME", "ROLE", "AGE", "CREATED BY", "EXPIRES"}};
          for (const YAML::Node& item : list["items"]) {
            const std::string expires = Scalar(item["expiresAt"]);
            rows.push_back({Scalar(item["name"]), Scalar(item["role"]),
                            Age(Scalar(item["createdAt"]), now), Scalar(item["createdBy"]),
                            expires.empty() ? "never"
                            : Scalar(item["expired"]) == "true"
                                ? absl::StrCat(expires, " (expired)")
                                : expires});
          }
          if (rows.size() == 1)
            return std::string(
                "No operator tokens (the bootstrap api-token "
                "is not listed).\n");
          return FormatTable(rows);
        });
  }

  int Revoke(Session& session, const std::string& name) {
    int exit_code = kExitOk;
    std::optional<ApiReply> reply = session.api().Call(
        "DELETE", absl::StrCat("/api/v1/operator-tokens/", QueryEscape(name)), "", &exit_code);
    if (!reply.has_value()) return exit_code;
    if (reply->http.status != 204) return session.Fail({kExitFailed, reply->ErrorMessage()});
    session.io().out << "operator token " << name << " revoked\n";
    return kExitOk;
  }

  std::string role_;
  std::string ttl_;
  std::string output_ = "table";
};

}  // namespace

CommandSpec OperatorTokenCommand() {
  return {.name = "operator-token",
          .args = "create NAME --role ROLE | list | revoke NAME",
          .summary = "API credentials for operators, each with a role (admin only)",
          .about =
              "Creates, lists and revokes operator tokens: named credentials for meshctl and the "
              "dashboard, each with a role. viewer reads (policy, workloads, proxies, traces, the "
              "dashboard); editor also writes policy; admin also manages join tokens and "
              "operator tokens. create prints the token alone on stdout, once; the control "
              "plane keeps only its hash. A revoked token is refused from that moment. The "
              "bootstrap token (the control plane's api-token file) is an admin credential that "
              "is not listed.",
          .examples = {{"a read-only token for a dashboard user",
                        "meshctl operator-token create dana --role viewer > dana.token"},
                       {"", "meshctl operator-token create ci --role editor --ttl 720h"},
                       {"", "meshctl operator-token list"},
                       {"", "meshctl operator-token revoke dana"}},
          .make = [] { return std::make_unique<OperatorToken>(); }};
}

}  // namespace meshlet::controlplane::cli

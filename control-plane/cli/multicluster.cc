// multicluster link | unlink | check: this control plane's links to other clusters
// (/api/v1/multicluster; docs/multicluster.md, ADR 0106).

#include <yaml-cpp/yaml.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/base/json.h"
#include "control-plane/cli/commands.h"
#include "control-plane/cli/output.h"

namespace meshlet::controlplane::cli {
namespace {

class Multicluster final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    return {flags::StringFlag("--remote-context", "FILE", &remote_context_,
                              "link, unlink: the meshctl context file of the other cluster's "
                              "control plane (an admin's: it creates and revokes the peer token "
                              "there)"),
            flags::StringFlag("--token-name", "NAME", &token_name_,
                              "link: the peer token's name in the other cluster (default "
                              "link-<this cluster's name>)"),
            OutputFlag(&output_, {"json", "yaml"}, "check: the API's answer instead of the table")};
  }

  int Run(Session& session) override {
    const std::vector<std::string>& args = session.positional();
    const std::string verb = args.empty() ? "" : args[0];
    if (verb == "link" && args.size() == 1) return Link(session);
    if (verb == "unlink" && args.size() == 2) return Unlink(session, args[1]);
    if (verb == "check" && args.size() == 1) return Check(session);
    return session.Fail(session.UsageFailure());
  }

 private:
  // A client of the other cluster's API, from --remote-context; null after printing why not.
  std::unique_ptr<ApiClient> Remote(Session& session, int* exit_code) {
    if (remote_context_.empty()) {
      *exit_code = session.Fail({kExitUsage,
                                 "needs --remote-context FILE: the other cluster's "
                                 "meshctl context file"});
      return nullptr;
    }
    ConnectionFlags flags;
    flags.context_file = remote_context_;
    absl::StatusOr<Connection> connection = LoadConnection(flags, session.environment());
    if (!connection.ok()) {
      *exit_code = session.Fail({kExitUsage, std::string(connection.status().message())});
      return nullptr;
    }
    if (connection->ca_pem.empty()) {
      *exit_code = session.Fail(
          {kExitUsage, absl::StrCat("--remote-context ", remote_context_,
                                    " names no CA for its API: a link needs one to verify it")});
      return nullptr;
    }
    absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
        ServerTrustContext(connection->ca_pem, connection->server_identity);
    if (!context.ok()) {
      *exit_code = session.Fail(
          {kExitUsage, absl::StrCat(connection->ca_source, ": ", context.status().message())});
      return nullptr;
    }
    auto client = std::make_unique<ApiClient>(session.api().transport(), session.io().err);
    client->set_timeout(session.api().timeout());
    client->Connect(connection->server, connection->token,
                    {.tls = *std::move(context),
                     .ca_source = connection->ca_source,
                     .server_identity = connection->server_identity});
    remote_ = *std::move(connection);
    return client;
  }

  // The `cluster` field of a GET `path` answer (multicluster on), or "" after printing why not.
  std::string ClusterName(Session& session, ApiClient& api, const char* where,
                          const std::string& path, int* exit_code) {
    std::optional<ApiReply> reply = api.Call("GET", path, "", exit_code);
    if (!reply.has_value()) return "";
    if (reply->http.status != 200) {
      *exit_code = session.Fail({kExitFailed, absl::StrCat(where, ": ", reply->ErrorMessage())});
      return "";
    }
    return Scalar(YAML::Load(reply->http.body)["cluster"]);
  }

  int Link(Session& session) {
    int exit_code = kExitOk;
    std::unique_ptr<ApiClient> remote = Remote(session, &exit_code);
    if (remote == nullptr) return exit_code;
    const std::string here = ClusterName(session, session.api(), "this control plane",
                                         "/api/v1/multicluster/links", &exit_code);
    if (here.empty()) return exit_code == kExitOk ? kExitFailed : exit_code;
    const std::string there = ClusterName(session, *remote, "the other control plane",
                                          "/api/v1/multicluster/exports", &exit_code);
    if (there.empty()) return exit_code == kExitOk ? kExitFailed : exit_code;
    if (there == here) {
      return session.Fail(
          {kExitFailed, absl::StrCat("both control planes call their cluster \"", here,
                                     "\": give each its own --cluster-name")});
    }
    const std::string token_name = token_name_.empty() ? absl::StrCat("link-", here) : token_name_;
    std::optional<ApiReply> created = remote->Call(
        "POST", "/api/v1/operator-tokens",
        absl::StrCat(R"({"name":)", JsonQuote(token_name), R"(,"role":"peer"})"), &exit_code);
    if (!created.has_value()) return exit_code;
    if (created->http.status != 201) {
      return session.Fail({kExitFailed, absl::StrCat("creating peer token ", token_name, " in ",
                                                     there, ": ", created->ErrorMessage())});
    }
    const std::string token = Scalar(YAML::Load(created->http.body)["token"]);
    const std::string body =
        absl::StrCat(R"({"cluster":)", JsonQuote(there), R"(,"server":)", JsonQuote(remote_.server),
                     R"(,"caPem":)", JsonQuote(remote_.ca_pem), R"(,"serverIdentity":)",
                     JsonQuote(remote_.server_identity), R"(,"token":)", JsonQuote(token),
                     R"(,"tokenName":)", JsonQuote(token_name), "}");
    std::optional<ApiReply> linked =
        session.api().Call("POST", "/api/v1/multicluster/links", body, &exit_code);
    if (!linked.has_value() || linked->http.status != 201) {
      // Nothing half-done stays behind: the token is revoked again.
      remote->Call("DELETE", absl::StrCat("/api/v1/operator-tokens/", QueryEscape(token_name)));
      if (!linked.has_value()) return exit_code;
      return session.Fail(
          {kExitFailed, absl::StrCat("linking ", there, ": ", linked->ErrorMessage())});
    }
    session.io().out << "cluster " << here << " now reads what cluster " << there << " exports ("
                     << remote_.server << ", peer token " << token_name
                     << "); see meshctl multicluster check\n";
    return kExitOk;
  }

  int Unlink(Session& session, const std::string& cluster) {
    int exit_code = kExitOk;
    std::optional<ApiReply> removed = session.api().Call(
        "DELETE", absl::StrCat("/api/v1/multicluster/links/", QueryEscape(cluster)), "",
        &exit_code);
    if (!removed.has_value()) return exit_code;
    if (removed->http.status != 200) {
      return session.Fail({kExitFailed, removed->ErrorMessage()});
    }
    const std::string token_name = Scalar(YAML::Load(removed->http.body)["tokenName"]);
    session.io().out << "cluster " << cluster << " unlinked: its endpoints are gone from here\n";
    if (remote_context_.empty()) {
      if (!token_name.empty()) {
        session.io().err << "meshctl: revoke peer token " << token_name << " in " << cluster
                         << " too (meshctl operator-token revoke " << token_name
                         << " against its control plane, or unlink with --remote-context)\n";
      }
      return kExitOk;
    }
    std::unique_ptr<ApiClient> remote = Remote(session, &exit_code);
    if (remote == nullptr) return exit_code;
    if (token_name.empty()) return kExitOk;
    std::optional<ApiReply> revoked =
        remote->Call("DELETE", absl::StrCat("/api/v1/operator-tokens/", QueryEscape(token_name)),
                     "", &exit_code);
    if (!revoked.has_value()) return exit_code;
    if (revoked->http.status != 204 && revoked->http.status != 404) {
      return session.Fail({kExitFailed, absl::StrCat("revoking peer token ", token_name, " in ",
                                                     cluster, ": ", revoked->ErrorMessage())});
    }
    session.io().out << "peer token " << token_name << " revoked in " << cluster << "\n";
    return kExitOk;
  }

  // Exit 0 when every link is up, kExitFailed otherwise (or when there is none).
  int Check(Session& session) {
    int exit_code = kExitOk;
    std::optional<ApiReply> reply =
        session.api().Call("GET", "/api/v1/multicluster/links", "", &exit_code);
    if (!reply.has_value()) return exit_code;
    if (reply->http.status != 200) return session.Fail({kExitFailed, reply->ErrorMessage()});
    YAML::Node list = YAML::Load(reply->http.body);
    bool all_up = list["items"].size() > 0;
    for (const YAML::Node& item : list["items"]) all_up &= Scalar(item["state"]) == "up";
    if (std::optional<int> structured = session.PrintStructured(output_, reply->http.body)) {
      return *structured == kExitOk && !all_up ? kExitFailed : *structured;
    }
    std::vector<std::vector<std::string>> rows = {
        {"CLUSTER", "STATE", "LAST READ", "LAG", "SERVICES", "MEMBERS", "GATEWAYS", "ERROR"}};
    for (const YAML::Node& item : list["items"]) {
      std::vector<std::string> services, gateways;
      for (const YAML::Node& s : item["services"]) services.push_back(Scalar(s));
      for (const YAML::Node& g : item["gateways"]) {
        gateways.push_back(absl::StrCat(Scalar(g["address"]), ":", Scalar(g["port"])));
      }
      const std::string last = Scalar(item["lastSync"]);
      rows.push_back(
          {Scalar(item["cluster"]), Scalar(item["state"]), last.empty() ? "never" : last,
           last.empty() ? "-" : absl::StrFormat("%.1fs", item["lagSeconds"].as<double>(0)),
           services.empty() ? "-" : absl::StrJoin(services, ","), Scalar(item["members"]),
           gateways.empty() ? "-" : absl::StrJoin(gateways, ","), Scalar(item["lastError"])});
    }
    session.io().out << "cluster " << Scalar(list["cluster"]) << "\n";
    if (rows.size() == 1) {
      session.io().out << "No links: meshctl multicluster link --remote-context FILE\n";
    } else {
      session.io().out << FormatTable(rows);
    }
    // What this cluster shares with those linked to it.
    std::optional<ApiReply> exports =
        session.api().Call("GET", "/api/v1/multicluster/exports", "", &exit_code);
    if (exports.has_value() && exports->http.status == 200) {
      YAML::Node e = YAML::Load(exports->http.body);
      std::vector<std::string> services, gateways;
      for (const YAML::Node& s : e["services"]) {
        services.push_back(absl::StrCat(Scalar(s["namespace"]), "/", Scalar(s["name"]), " (",
                                        Scalar(s["members"]), " members)"));
      }
      for (const YAML::Node& g : e["gateways"]) {
        gateways.push_back(absl::StrCat(Scalar(g["address"]), ":", Scalar(g["port"])));
      }
      session.io().out << "exports: "
                       << (services.empty()
                               ? std::string("nothing (no Service labelled meshlet.io/export=true)")
                               : absl::StrJoin(services, ", "))
                       << "\neast-west gateways: "
                       << (gateways.empty() ? std::string("none (no Gateway listener of protocol "
                                                          "meshlet.io/east-west with an address)")
                                            : absl::StrJoin(gateways, ", "))
                       << "\n";
    }
    return all_up ? kExitOk : kExitFailed;
  }

  std::string remote_context_;
  std::string token_name_;
  std::string output_ = "table";
  Connection remote_;
};

}  // namespace

CommandSpec MulticlusterCommand() {
  return {.name = "multicluster",
          .args = "link --remote-context FILE | unlink CLUSTER [--remote-context FILE] | check",
          .summary = "link this cluster to another one's control plane, and see the links",
          .about =
              "link makes this control plane read what another cluster exports (its Services "
              "labelled meshlet.io/export=true and its east-west gateways), and gives this "
              "cluster's sidecars those Services' members there as one more endpoint behind the "
              "gateway, called when the local members fail or are overloaded. It creates a peer "
              "token in the other cluster (role peer: it reads the exports and nothing else) and "
              "stores it here with that API's CA and identity. unlink removes the link and the "
              "endpoints (and, with --remote-context, revokes the token there). check shows each "
              "link's state, when it was last read, what it shares and its gateways, then what "
              "this cluster exports and where its east-west gateways listen; it exits 1 unless "
              "every link is up. Both control planes need --cluster-name.",
          .examples = {{"link this cluster to east (east.yaml: an admin's context of east's "
                        "control plane)",
                        "meshctl multicluster link --remote-context east.yaml"},
                       {"", "meshctl multicluster check"},
                       {"", "meshctl multicluster unlink east --remote-context east.yaml"}},
          .make = [] { return std::make_unique<Multicluster>(); }};
}

}  // namespace meshlet::controlplane::cli

// dashboard, check and version: where the control plane is and whether it answers.

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "control-plane/cli/commands.h"
#include "control-plane/cli/output.h"

namespace meshlet::controlplane::cli {
namespace {

// Where the control plane serves the dashboard, with the token in the URL's fragment (which
// browsers do not send to the server) so the page can call the API.
int Dashboard(Session& session) {
  absl::string_view server = session.api().server();
  const bool plaintext = IsPlaintextServer(server);
  absl::ConsumePrefix(&server, plaintext ? "http://" : "https://");
  session.io().out << (plaintext ? "http://" : "https://") << server
                   << "/dashboard/#token=" << QueryEscape(session.api().token()) << "\n";
  return kExitOk;
}

// The Gateway API routes (HTTPRoute, GRPCRoute) with the control plane's status per Service
// parent: one line per parent, the reason and message of each condition that is not True.
void RouteStatusLines(ApiClient& api, std::ostream& out) {
  std::vector<std::string> lines;
  size_t routes = 0;
  for (const char* kind : {"HTTPRoute", "GRPCRoute"}) {
    int ignored = kExitOk;
    std::optional<ApiReply> reply = api.Call(
        "GET",
        absl::StrCat("/apis/gateway.networking.k8s.io/v1/", absl::AsciiStrToLower(kind), "s"), "",
        &ignored);
    if (!reply.has_value() || reply->http.status != 200) continue;
    YAML::Node list = YAML::Load(reply->http.body);
    for (const YAML::Node& item : list["items"]) {
      ++routes;
      const std::string name = absl::StrCat(kind, " ", Scalar(item["metadata"]["namespace"]), "/",
                                            Scalar(item["metadata"]["name"]));
      const YAML::Node status = item["status"];  // absent: no Service parent (not ours)
      const YAML::Node parents = status ? status["parents"] : YAML::Node();
      if (!parents || parents.size() == 0) {
        lines.push_back(absl::StrCat("  ", name, ": no Service parent"));
        continue;
      }
      for (const YAML::Node& parent : parents) {
        const YAML::Node ref = parent["parentRef"];
        std::string line = absl::StrCat(
            "  ", name, " -> Service ",
            ref["namespace"] ? Scalar(ref["namespace"]) : Scalar(item["metadata"]["namespace"]),
            "/", Scalar(ref["name"]), ref["port"] ? absl::StrCat(":", Scalar(ref["port"])) : "");
        for (const YAML::Node& c : parent["conditions"]) {
          absl::StrAppend(&line, "  ", Scalar(c["type"]), " ", Scalar(c["status"]));
          if (Scalar(c["status"]) != "True") {
            absl::StrAppend(&line, " (", Scalar(c["reason"]), ": ", Scalar(c["message"]), ")");
          }
        }
        lines.push_back(std::move(line));
      }
    }
  }
  out << "gateway routes " << routes << "\n";
  for (const std::string& line : lines) out << line << "\n";
}

// The connected sidecars that report their traffic capture not in effect (the proxy's capture
// check, docs/kubernetes.md "Readiness waits for capture"): in CNI mode a pod set up while
// meshlet-cni was not in its node's chain, which the node agent repairs.
void UncapturedLines(const YAML::Node& items, std::ostream& out) {
  std::vector<std::string> uncaptured;
  for (const YAML::Node& item : items) {
    if (absl::StartsWith(Scalar(item["notReady"]), "traffic capture not in effect")) {
      uncaptured.push_back(absl::StrCat(Scalar(item["namespace"]), "/", Scalar(item["id"])));
    }
  }
  if (uncaptured.empty()) return;
  out << "uncaptured     " << uncaptured.size()
      << " not ready, traffic capture not in effect (CNI mode: pods set up while meshlet-cni was "
         "not in the node's chain; see the node agent's meshlet_cni_pods_repaired_total and log, "
         "or the pods labelled cni.meshlet.io/uncaptured)\n";
  for (const std::string& name : uncaptured) out << "  " << name << "\n";
}

// How long before a CA certificate's expiry `meshctl check` warns.
constexpr absl::Duration kCaExpiryWarning = absl::Hours(24 * 30);

// The CA's signing certificate and roots (GET /api/v1/ca): one line, and a WARNING line for each
// that expires within kCaExpiryWarning (or has expired). Nothing from a control plane without
// that path (older, or no CA).
void CaLines(ApiClient& api, absl::Time now, std::ostream& out) {
  int ignored = kExitOk;
  std::optional<ApiReply> reply = api.Call("GET", "/api/v1/ca", "", &ignored);
  if (!reply.has_value() || reply->http.status != 200) return;
  YAML::Node ca = YAML::Load(reply->http.body);
  out << "ca             " << Scalar(ca["subject"]) << ", expires " << Scalar(ca["not_after"])
      << " (" << Scalar(ca["source"]) << ")\n";
  auto warn = [&](absl::string_view what, const YAML::Node& cert) {
    absl::Time not_after;
    std::string error;
    if (!absl::ParseTime(absl::RFC3339_full, Scalar(cert["not_after"]), &not_after, &error)) {
      return;
    }
    if (not_after - now > kCaExpiryWarning) return;
    const int64_t days = absl::ToInt64Hours(not_after - now) / 24;
    out << "  WARNING: " << what << " " << Scalar(cert["subject"])
        << (not_after <= now ? " has expired (" : " expires in ")
        << (not_after <= now ? Scalar(cert["not_after"]) + ")"
                             : absl::StrCat(days, " day(s), ", Scalar(cert["not_after"])))
        << "\n";
  };
  warn("signing certificate", ca);
  for (const YAML::Node& root : ca["roots"]) warn("root", root);
  const YAML::Node last = ca["last_reload"];
  if (Scalar(last["result"]) == "invalid" || Scalar(last["result"]) == "unreadable") {
    out << "  WARNING: the last new CA material was refused (" << Scalar(last["result"])
        << "): " << Scalar(last["message"]) << "\n";
  }
}

// A workload certificate is renewed at half its lifetime, give or take a tenth of it
// (sidecar/identity/rotation.h): past this share of it, its renewal is overdue.
constexpr double kRenewalOverdue = 0.6;

// The workload certificates the sidecars report (GET /api/v1/certificates): one line, and a
// WARNING line for each past kRenewalOverdue of its lifetime (renewal failing) or expired.
// Nothing from a control plane without that path.
void CertificateLines(ApiClient& api, absl::Time now, std::ostream& out) {
  int ignored = kExitOk;
  std::optional<ApiReply> reply = api.Call("GET", "/api/v1/certificates", "", &ignored);
  if (!reply.has_value() || reply->http.status != 200) return;
  YAML::Node items = YAML::Load(reply->http.body)["items"];
  if (!items || !items.IsSequence()) return;
  std::vector<std::string> warnings;
  for (const YAML::Node& item : items) {
    absl::Time not_before, not_after;
    std::string error;
    if (!absl::ParseTime(absl::RFC3339_full, Scalar(item["notAfter"]), &not_after, &error) ||
        !absl::ParseTime(absl::RFC3339_full, Scalar(item["notBefore"]), &not_before, &error) ||
        not_after <= not_before) {
      continue;
    }
    const std::string who = absl::StrCat(Scalar(item["namespace"]), "/", Scalar(item["workload"]));
    if (not_after <= now) {
      warnings.push_back(
          absl::StrCat(who, "'s certificate has expired (", Scalar(item["notAfter"]), ")"));
      continue;
    }
    const double used = absl::FDivDuration(now - not_before, not_after - not_before);
    if (used > kRenewalOverdue) {
      warnings.push_back(absl::StrCat(
          who, "'s certificate is past its renewal time (", static_cast<int>(used * 100),
          " % of its lifetime used, expires ", Scalar(item["notAfter"]),
          "): its renewals fail (its meshlet_workload_certificate_request_failures_total, log)"));
    }
  }
  out << "certificates   " << items.size() << " workload certificates reported, " << warnings.size()
      << " not renewed in time\n";
  for (const std::string& w : warnings) out << "  WARNING: " << w << "\n";
}

// The key sets of RequestAuthentication jwksUris (GET /api/v1/jwks): one line, and a WARNING line
// for each without keys (its issuer's tokens are refused) or whose last read failed (the last
// good keys stay). Nothing from a control plane without that path, or when no policy names one.
void JwksLines(ApiClient& api, std::ostream& out) {
  int ignored = kExitOk;
  std::optional<ApiReply> reply = api.Call("GET", "/api/v1/jwks", "", &ignored);
  if (!reply.has_value() || reply->http.status != 200) return;
  YAML::Node items = YAML::Load(reply->http.body)["items"];
  if (!items || !items.IsSequence() || items.size() == 0) return;
  std::vector<std::string> warnings;
  for (const YAML::Node& item : items) {
    const std::string uri = Scalar(item["uri"]);
    const std::string error = Scalar(item["lastError"]);
    if (Scalar(item["hasKeys"]) != "true") {
      warnings.push_back(
          absl::StrCat(uri, ": no keys yet, its issuer's tokens are refused",
                       error.empty() ? " (first read under way)" : absl::StrCat(" (", error, ")")));
    } else if (!error.empty()) {
      warnings.push_back(absl::StrCat(uri, ": the last ", Scalar(item["failuresInRow"]),
                                      " read(s) failed, the keys read at ",
                                      Scalar(item["lastSuccess"]), " stay (", error, ")"));
    }
  }
  out << "jwks           " << items.size() << " key set(s) named by RequestAuthentications, "
      << warnings.size() << " failing\n";
  for (const std::string& w : warnings) out << "  WARNING: " << w << "\n";
}

int Check(Session& session) {
  ApiClient& api = session.api();
  if (std::optional<Failure> f = session.Connect()) return session.Fail(*f);
  std::ostream& out = session.io().out;
  int exit_code = kExitOk;
  absl::StatusOr<HttpResponse> health = api.SendPlain("GET", "/healthz");
  if (!health.ok() || health->status != 200) {
    return session.Fail(api.PlainFailure(
        absl::StrCat("control plane at ", api.server(), ": not reachable"), health));
  }
  out << "control plane  " << api.server() << "  reachable\n";
  absl::StatusOr<HttpResponse> version = api.SendPlain("GET", "/version");
  if (version.ok() && version->status == 200) {
    YAML::Node v = YAML::Load(version->body);
    out << "server version " << Scalar(v["server"]) << " (API " << Scalar(v["apiVersion"])
        << "), meshctl " << kMeshctlVersion << "\n";
  }
  std::optional<ApiReply> apis = api.Call("GET", "/apis/meshlet.io/v1", "", &exit_code);
  if (!apis.has_value()) return exit_code;
  if (apis->http.status != 200) return session.Fail({kExitFailed, apis->ErrorMessage()});
  std::optional<ApiReply> whoami = api.Call("GET", "/api/v1/whoami", "", &exit_code);
  if (!whoami.has_value()) return exit_code;
  if (whoami->http.status == 200) {
    YAML::Node who = YAML::Load(whoami->http.body);
    out << "token          accepted: " << Scalar(who["name"]) << " (" << Scalar(who["credential"])
        << "), role " << Scalar(who["role"]) << "\n";
  } else {
    out << "token          accepted\n";
  }
  std::optional<ApiReply> proxies = api.Call("GET", "/api/v1/proxies", "", &exit_code);
  if (!proxies.has_value()) return exit_code;
  if (proxies->http.status == 200) {
    YAML::Node p = YAML::Load(proxies->http.body);
    out << "sidecars       " << (p["items"] ? p["items"].size() : 0) << " connected\n";
    UncapturedLines(p["items"], out);
  } else {
    out << "sidecars       " << proxies->ErrorMessage() << "\n";
  }
  CaLines(api, absl::Now(), out);
  CertificateLines(api, absl::Now(), out);
  JwksLines(api, out);
  RouteStatusLines(api, out);
  out << "OK\n";
  return kExitOk;
}

class CheckRun final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    return {Switch("--pre", "", &pre_,
                   "check install manifests offline instead (with -f): the control plane's "
                   "Deployment, Service, RBAC and webhook configuration fit together"),
            FileFlag(&files_, false)};
  }

  int Run(Session& session) override {
    if (!session.positional().empty()) return session.Fail(session.UsageFailure());
    if (pre_ != !files_.empty()) {
      return session.Fail({kExitUsage, "--pre and -f go together (meshctl help check)"});
    }
    if (pre_) return PreCheck(session, files_);
    return Check(session);
  }

 private:
  bool pre_ = false;
  std::vector<std::string> files_;
};

// One line per sidecar release and revision among the connected sidecars:
// "proxies 0.2.0 (revision canary): 3 (a, b, c)" (no revision from a control plane before them),
// and for a release that lacks capabilities what its configuration goes without ("; sent
// without: overload, policy-source", docs/upgrades.md).
int PrintProxyVersions(Session& session) {
  constexpr size_t kNamesShown = 5;
  int exit_code = kExitOk;
  std::optional<ApiReply> reply = session.api().Call("GET", "/api/v1/proxies", "", &exit_code);
  if (!reply.has_value()) return exit_code;
  if (reply->http.status != 200) return session.Fail({kExitFailed, reply->ErrorMessage()});
  struct Release {
    std::vector<std::string> ids;
    std::set<std::string> lacks;
  };
  std::map<std::string, Release> by_release;
  for (const YAML::Node& p : YAML::Load(reply->http.body)["items"]) {
    std::string key = SidecarRelease(Scalar(p["sidecarVersion"]));
    if (p["revision"]) absl::StrAppend(&key, " (revision ", Scalar(p["revision"]), ")");
    Release& release = by_release[key];
    release.ids.push_back(Scalar(p["id"]));
    for (const YAML::Node& c : p["lacks"]) release.lacks.insert(Scalar(c));
  }
  std::ostream& out = session.io().out;
  if (by_release.empty()) out << "proxies: none connected\n";
  for (auto& [name, release] : by_release) {
    std::vector<std::string>& ids = release.ids;
    std::sort(ids.begin(), ids.end());
    const size_t shown = std::min(ids.size(), kNamesShown);
    out << "proxies " << name << ": " << ids.size() << " ("
        << absl::StrJoin(ids.begin(), ids.begin() + shown, ", ");
    if (ids.size() > shown) out << ", and " << ids.size() - shown << " more";
    out << ")";
    if (!release.lacks.empty()) out << "; sent without: " << absl::StrJoin(release.lacks, ", ");
    out << "\n";
  }
  return kExitOk;
}

class Version final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    return {Switch("--client", "", &client_only_, "meshctl's version only; reads no context file")};
  }

  int Run(Session& session) override {
    session.io().out << "meshctl " << kMeshctlVersion << "\n";
    if (client_only_) return kExitOk;
    if (std::optional<Failure> f = session.Connect()) return session.Fail(*f);
    const std::string& server = session.api().server();
    absl::StatusOr<HttpResponse> version = session.api().SendPlain("GET", "/version");
    if (!version.ok() || version->status != 200) {
      return session.Fail(
          session.api().PlainFailure(absl::StrCat("server ", server, ": unreachable"), version));
    }
    YAML::Node v = YAML::Load(version->body);
    session.io().out << "control-plane " << Scalar(v["server"])
                     << (v["revision"] ? absl::StrCat(" (revision ", Scalar(v["revision"]), ")")
                                       : "")
                     << " at " << server << " (API " << Scalar(v["apiVersion"]) << ")\n";
    return PrintProxyVersions(session);
  }

 private:
  bool client_only_ = false;
};

}  // namespace

CommandSpec DashboardCommand() {
  return {.name = "dashboard",
          .summary = "the dashboard's URL (with the token)",
          .about =
              "Prints the dashboard's URL, with the API token in its fragment (which "
              "browsers do not send to the server).",
          .examples = {{"", "meshctl dashboard"}},
          .make = Runs(Dashboard)};
}

CommandSpec CheckCommand() {
  return {.name = "check",
          .summary =
              "control plane reachable, token accepted, versions, sidecars connected and "
              "those whose traffic capture is not in effect, Gateway API routes' status",
          .about =
              "Checks that the control plane answers, that it accepts the token, and "
              "shows the versions, the number of connected sidecars and those not ready because "
              "their traffic capture is not in effect (in CNI mode, pods set up while meshlet-cni "
              "was not in their node's chain), and each Gateway API "
              "HTTPRoute and GRPCRoute with its Accepted and ResolvedRefs conditions per "
              "Service parent (reason and message when not True). With --pre -f FILE, "
              "checks install manifests offline instead: the control plane's Deployment "
              "(one replica, POD_NAMESPACE, not injected itself, the webhook's port), its "
              "ServiceAccount and RBAC, the Service selecting it, and each webhook calling "
              "that Service's port /inject with an explicit failurePolicy and its own namespace "
              "excluded; each problem names the object and field (exit 1).",
          .examples = {{"", "meshctl check"},
                       {"", "meshctl --server 10.0.0.5:15014 --token-file ./api-token check"},
                       {"before installing", "meshctl install | meshctl check --pre -f -"}},
          .needs_context = false,
          .make = [] { return std::make_unique<CheckRun>(); }};
}

CommandSpec VersionCommand() {
  return {.name = "version",
          .summary = "the versions of meshctl, the control plane and every connected sidecar",
          .about =
              "Prints meshctl's version, then asks the control plane for its own and its "
              "revision, and for the release and revision of each connected sidecar, one "
              "line per release and revision with the sidecars running it.",
          .examples = {{"", "meshctl version --client"}},
          .needs_context = false,
          .make = [] { return std::make_unique<Version>(); }};
}

}  // namespace meshlet::controlplane::cli

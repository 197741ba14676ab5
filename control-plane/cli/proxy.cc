// proxy-status and proxy-config: what the discovery server sent each sidecar, and what a sidecar
// runs.

#include <yaml-cpp/yaml.h>

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "control-plane/cli/commands.h"
#include "control-plane/cli/output.h"

namespace meshlet::controlplane::cli {
namespace {

std::string ShortType(absl::string_view type_url) {
  absl::string_view name = type_url.substr(type_url.rfind('.') + 1);
  if (name == "Listener") return "LDS";
  if (name == "RouteConfiguration") return "RDS";
  if (name == "Cluster") return "CDS";
  if (name == "ClusterLoadAssignment") return "EDS";
  if (name == "Secret") return "SDS";
  return std::string(name);
}

class ProxyStatus final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    return {OutputFlag(&output_, {"json"}, "the API's JSON")};
  }

  int Run(Session& session) override {
    int exit_code = kExitOk;
    std::optional<ApiReply> reply = session.api().Call("GET", "/api/v1/proxies", "", &exit_code);
    if (!reply.has_value()) return exit_code;
    if (reply->http.status != 200) return session.Fail({kExitFailed, reply->ErrorMessage()});
    std::ostream& out = session.io().out;
    if (output_ == "json") {
      out << reply->http.body;
      return kExitOk;
    }
    YAML::Node root = YAML::Load(reply->http.body);
    std::vector<std::vector<std::string>> rows = {{"PROXY", "SERVICE", "NAMESPACE", "CONNECTED",
                                                   "LDS", "RDS", "CDS", "EDS", "VERSION",
                                                   "REVISION"}};
    std::vector<std::string> errors;
    const absl::Time now = absl::Now();
    for (const auto& p : root["items"]) {
      std::map<std::string, std::string> state;
      for (auto it = p["types"].begin(); it != p["types"].end(); ++it) {
        const YAML::Node t = it->second;
        const std::string type = ShortType(it->first.Scalar());
        std::string text;
        const std::string server_state = Scalar(t["state"]);  // SYNCED, STALE, NACKED, ...
        if (t["nack"] && !Scalar(t["nack"]).empty()) {
          text = "NACKED";
          errors.push_back(absl::StrCat(Scalar(p["id"]), " ", type, ": ", Scalar(t["nack"])));
        } else if (Scalar(t["sent"]).empty()) {
          text = server_state.empty() ? "-" : server_state;
        } else if (Scalar(t["sent"]) == Scalar(t["acked"])) {
          text = absl::StrCat(server_state.empty() ? "SYNCED" : server_state, " ",
                              Scalar(t["acked"]).substr(0, 8));
        } else {
          text = absl::StrCat(server_state.empty() ? "STALE" : server_state, " ",
                              Scalar(t["sent"]).substr(0, 8));
        }
        state[type] = text;
      }
      auto get = [&](const char* t) { return state.count(t) ? state[t] : std::string("-"); };
      rows.push_back({Scalar(p["id"]), Scalar(p["service"]), Scalar(p["namespace"]),
                      Age(Scalar(p["connectedSince"]), now), get("LDS"), get("RDS"), get("CDS"),
                      get("EDS"), SidecarRelease(Scalar(p["sidecarVersion"])),
                      // A control plane before revisions does not say.
                      p["revision"] ? Scalar(p["revision"]) : "-"});
    }
    if (rows.size() == 1) {
      out << "No sidecars connected.\n";
    } else {
      out << FormatTable(rows);
    }
    if (!errors.empty()) {
      out << "\nNACK errors:\n";
      for (const std::string& e : errors) out << "  " << e << "\n";
    }
    return kExitOk;
  }

 private:
  std::string output_ = "table";
};

// Both views side by side: per type the versions, per resource its version on each side, then
// the differences the control plane computed.
std::string ProxyConfigText(const YAML::Node& root, bool asked_sidecar) {
  // An earlier answer may be stored; without asking now it is not shown.
  const YAML::Node sidecar = root["sidecar"];
  const bool have_sidecar = asked_sidecar && sidecar.IsMap();
  std::map<std::string, YAML::Node> sidecar_types;
  if (have_sidecar) {
    for (const YAML::Node& t : sidecar["types"]) sidecar_types[Scalar(t["type"])] = t;
  }
  auto short_version = [](const std::string& v) { return v.empty() ? "-" : v.substr(0, 8); };
  std::vector<std::vector<std::string>> types = {
      {"TYPE", "CONTROL PLANE SENT", "ACKED", "SIDECAR RUNS", "SIDECAR ERROR"}};
  std::vector<std::vector<std::string>> resources = {
      {"TYPE", "RESOURCE", "CONTROL PLANE", "SIDECAR"}};
  for (const auto& t : root["types"]) {
    const std::string type = Scalar(t["type"]);
    const YAML::Node held = sidecar_types.count(type) ? sidecar_types[type] : YAML::Node();
    types.push_back({type, short_version(Scalar(t["version_sent"])),
                     short_version(Scalar(t["version_acked"])),
                     have_sidecar ? short_version(Scalar(held["version"])) : "?",
                     held.IsMap() && !Scalar(held["last_error"]).empty() ? "yes (see below)" : ""});
    std::map<std::string, std::pair<std::string, std::string>> by_name;
    for (const auto& r : t["resources"]) by_name[Scalar(r["name"])].first = Scalar(r["version"]);
    if (held.IsMap()) {
      for (const auto& r : held["resources"]) {
        by_name[Scalar(r["name"])].second = Scalar(r["version"]);
      }
    }
    for (const auto& [name, versions] : by_name) {
      resources.push_back({type, name, short_version(versions.first),
                           have_sidecar ? short_version(versions.second) : "?"});
    }
  }
  std::string out = absl::StrCat("Node ", Scalar(root["node"]["id"]), "\n\n", FormatTable(types),
                                 "\n", FormatTable(resources));
  if (!have_sidecar) {
    absl::StrAppend(&out, "\nThe sidecar's view: ",
                    asked_sidecar ? "not received (old sidecar, or its stream is busy)"
                                  : "not asked for (--control-plane-only)",
                    "\n");
    return out;
  }
  absl::StrAppend(&out, "\nThe sidecar's view was captured at ", Scalar(sidecar["capturedAt"]),
                  ". The control plane column is what it last sent and the sidecar "
                  "acknowledged holding.\n");
  if (sidecar["contentsOmitted"] && sidecar["contentsOmitted"].as<bool>()) {
    out +=
        "The sidecar's configuration is too large for one message: it sent names and "
        "versions only.\n";
  }
  const YAML::Node diff = root["diff"];
  if (!diff.IsSequence() || diff.size() == 0) {
    out += "No differences: the sidecar runs what the control plane wants it to run.\n";
    return out;
  }
  out += "\nDifferences (the control plane's current configuration against the sidecar's):\n";
  for (const auto& d : diff) {
    absl::StrAppend(&out, "  ", Scalar(d["type"]), ": control plane sent ",
                    short_version(Scalar(d["versionSent"])), ", sidecar runs ",
                    short_version(Scalar(d["versionSidecar"])), "\n");
    if (!Scalar(d["sidecarError"]).empty()) {
      absl::StrAppend(&out, "    sidecar refused the last update: ", Scalar(d["sidecarError"]),
                      "\n");
    }
    for (const auto& n : d["onlyControlPlane"]) {
      absl::StrAppend(&out, "    + ", Scalar(n), " (not on the sidecar)\n");
    }
    for (const auto& n : d["onlySidecar"]) {
      absl::StrAppend(&out, "    - ", Scalar(n), " (only on the sidecar)\n");
    }
    for (const auto& n : d["differ"]) {
      absl::StrAppend(&out, "    ~ ", Scalar(n), " (different contents)\n");
    }
  }
  return out;
}

class ProxyConfig final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    return {OutputFlag(&output_, {"yaml", "json"}, "both views in full"),
            Switch("--control-plane-only", "", &control_plane_only_, "do not ask the sidecar"),
            flags::StringFlag("--lookup", "KEY", &lookup_,
                              "what the control plane would send once the sidecar looked KEY up "
                              "(host:HOST[:PORT] or addr:IP:PORT; comma-separated for several): "
                              "a destination an on-demand sidecar has not called yet")};
  }

  // What the control plane sent, and (unless --control-plane-only) what the sidecar reports it
  // runs, asked for over its ADS stream, side by side with what differs.
  int Run(Session& session) override {
    const std::vector<std::string>& args = session.positional();
    if (args.empty()) return session.Fail({kExitUsage, "proxy-config needs a NODE id"});
    const std::string path = absl::StrCat("/api/v1/proxies/", QueryEscape(args[0]));
    int exit_code = kExitOk;
    std::string nonce;
    if (!control_plane_only_) {
      std::optional<ApiReply> asked =
          session.api().Call("POST", path + "/config-dump", "", &exit_code);
      if (!asked.has_value()) return exit_code;
      if (asked->http.status != 202) return session.Fail({kExitFailed, asked->ErrorMessage()});
      nonce = Scalar(YAML::Load(asked->http.body)["nonce"]);
    }
    // The sidecar answers on its stream; its view appears in the config once it arrived.
    std::optional<ApiReply> reply;
    const absl::Time give_up = absl::Now() + absl::Seconds(5);
    while (true) {
      reply = session.api().Call("GET",
                                 lookup_.empty()
                                     ? path + "/config"
                                     : absl::StrCat(path, "/config?lookup=", QueryEscape(lookup_)),
                                 "", &exit_code);
      if (!reply.has_value()) return exit_code;
      if (reply->http.status != 200) return session.Fail({kExitFailed, reply->ErrorMessage()});
      if (nonce.empty()) break;
      YAML::Node request = YAML::Load(reply->http.body)["sidecarRequest"];
      if (request.IsMap() && Scalar(request["nonce"]) == nonce && request["answered"].as<bool>()) {
        break;
      }
      if (absl::Now() > give_up) {
        session.io().err << "warning: the sidecar did not send its view within 5s; showing the "
                            "control plane's only\n";
        break;
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    if (std::optional<int> printed = session.PrintStructured(output_, reply->http.body)) {
      return *printed;
    }
    session.io().out << ProxyConfigText(YAML::Load(reply->http.body), !nonce.empty());
    return kExitOk;
  }

 private:
  std::string output_ = "table";
  bool control_plane_only_ = false;
  std::string lookup_;
};

}  // namespace

CommandSpec ProxyStatusCommand() {
  return {.name = "proxy-status",
          .summary = "every sidecar: versions sent and ACKed, release and revision, NACK errors",
          .about =
              "Lists every connected sidecar with the discovery server's state of each "
              "type (LDS, RDS, CDS, EDS) and the first 8 digits of its version (NACKED "
              "when the sidecar refused the latest push), then the NACK errors.",
          .examples = {{"", "meshctl proxy-status"}},
          .make = [] { return std::make_unique<ProxyStatus>(); }};
}

CommandSpec ProxyConfigCommand() {
  return {.name = "proxy-config",
          .args = "NODE",
          .summary = "what the control plane sent a sidecar and what the sidecar runs",
          .about =
              "Shows the configuration the control plane last sent sidecar NODE and, side "
              "by side, what the sidecar reports it runs (asked over its ADS stream; up to "
              "5s), with the differences.",
          .examples = {{"", "meshctl proxy-config frontend-0"},
                       {"", "meshctl proxy-config frontend-0 -o json --control-plane-only"},
                       {"", "meshctl proxy-config frontend-0 --lookup host:reviews:9080"}},
          .make = [] { return std::make_unique<ProxyConfig>(); }};
}

}  // namespace meshlet::controlplane::cli

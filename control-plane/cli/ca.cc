// ca status: the CA's signing material in use and its last reload (GET /api/v1/ca).
// ca rotate: an orchestrated root or intermediate rotation (POST, GET, DELETE
// /api/v1/ca/rotation; control-plane/ca/rotation.h).

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/base/json.h"
#include "control-plane/cli/commands.h"
#include "control-plane/cli/output.h"

namespace meshlet::controlplane::cli {
namespace {

// The control plane's JSON answer, parsed.
absl::StatusOr<YAML::Node> ParseAnswer(absl::string_view json) {
  try {
    return YAML::Load(std::string(json));
  } catch (const YAML::Exception& e) {
    return absl::InternalError(absl::StrCat("the control plane's answer is not JSON: ", e.what()));
  }
}

// The answer of /api/v1/ca as a two-column table.
absl::StatusOr<std::string> CaStatusText(absl::string_view json) {
  absl::StatusOr<YAML::Node> parsed = ParseAnswer(json);
  if (!parsed.ok()) return parsed.status();
  const YAML::Node& status = *parsed;
  std::vector<std::vector<std::string>> rows = {{"SIGNING CERTIFICATE", Scalar(status["subject"])},
                                                {"ISSUER", Scalar(status["issuer"])},
                                                {"FINGERPRINT", Scalar(status["fingerprint"])},
                                                {"NOT AFTER", Scalar(status["not_after"])},
                                                {"SOURCE", Scalar(status["source"])}};
  for (const YAML::Node& root : status["roots"]) {
    rows.push_back({"ROOT", absl::StrCat(Scalar(root["subject"]), " ", Scalar(root["fingerprint"]),
                                         " not after ", Scalar(root["not_after"]))});
  }
  const YAML::Node last = status["last_reload"];
  const std::string result = Scalar(last["result"]);
  rows.push_back({"LAST RELOAD",
                  result.empty() ? "none since start"
                                 : absl::StrCat(result, " at ", Scalar(last["time"]), " (",
                                                Scalar(last["ok"]), " taken, ",
                                                Scalar(last["refused"]), " refused since start)")});
  if (!Scalar(last["message"]).empty()) rows.push_back({"REASON", Scalar(last["message"])});
  const YAML::Node rotation = status["rotation"];
  if (rotation.IsMap()) {
    rows.push_back(
        {"ROTATION", absl::StrCat(Scalar(rotation["kind"]), " ", Scalar(rotation["step"]),
                                  " since ", Scalar(rotation["since"]))});
  }
  return FormatTable(rows);
}

// The answer of /api/v1/ca/rotation: the step, what holds it back, and each sidecar's roots.
absl::StatusOr<std::string> RotationText(absl::string_view json) {
  absl::StatusOr<YAML::Node> parsed = ParseAnswer(json);
  if (!parsed.ok()) return parsed.status();
  const YAML::Node& r = *parsed;
  if (!r.IsMap()) return std::string("no CA rotation has run since the control plane started\n");
  std::vector<std::vector<std::string>> rows = {
      {"KIND", Scalar(r["kind"])},
      {"STEP", absl::StrCat(Scalar(r["step"]), " since ", Scalar(r["since"]))},
      {"STARTED", Scalar(r["started"])},
      {"NEW MATERIAL", Scalar(r["source"])},
      {"OLD ROOT", Scalar(r["old_root"])},
      {"NEW ROOT", Scalar(r["new_root"])},
      {"OLD SIGNER", Scalar(r["old_signer"])},
      {"NEW SIGNER", Scalar(r["new_signer"])}};
  if (!Scalar(r["message"]).empty()) rows.push_back({"STATUS", Scalar(r["message"])});
  if (!Scalar(r["note"]).empty()) rows.push_back({"NOTE", Scalar(r["note"])});
  rows.push_back({"RENEWALS", absl::StrCat(Scalar(r["renewals_requested"]), " asked in ",
                                           Scalar(r["renewal_round"]), " round(s)")});
  std::vector<std::string> waiting;
  for (const YAML::Node& w : r["waiting"]) waiting.push_back(Scalar(w));
  if (!waiting.empty()) rows.push_back({"WAITING FOR", absl::StrJoin(waiting, ", ")});
  std::string out = FormatTable(rows);
  std::vector<std::vector<std::string>> sidecars = {
      {"SIDECAR", "BUNDLE ROOTS", "CERTIFICATE ROOT", "CERTIFICATE ISSUER"}};
  auto short_fp = [](const std::string& fp) {
    return fp.size() > 19 ? fp.substr(0, 19) : (fp.empty() ? "-" : fp);
  };
  for (const YAML::Node& sc : r["sidecars"]) {
    std::vector<std::string> roots;
    for (const YAML::Node& root : sc["bundle_roots"]) roots.push_back(short_fp(Scalar(root)));
    sidecars.push_back({Scalar(sc["node"]), roots.empty() ? "-" : absl::StrJoin(roots, " "),
                        short_fp(Scalar(sc["leaf_root"])), short_fp(Scalar(sc["leaf_issuer"]))});
  }
  if (sidecars.size() > 1) absl::StrAppend(&out, "\n", FormatTable(sidecars));
  return out;
}

class Ca final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    return {
        OutputFlag(&output_, {"json"}, "json: the API's answer as it is"),
        flags::StringFlag("--secret", "NAMESPACE/NAME", &secret_,
                          "rotate: the new material in this Secret (the layout of --ca-secret)"),
        flags::StringFlag("--cert", "FILE", &cert_,
                          "rotate: the new signing chain, a file on the control plane's host"),
        flags::StringFlag("--key", "FILE", &key_, "rotate: its key, with --cert"),
        flags::StringFlag(
            "--roots", "FILE", &roots_,
            "rotate: the new root(s), with --cert when the chain does not end in one"),
        flags::SwitchFlag("--intermediate", &intermediate_,
                          "rotate: a new signing certificate under the same root (no bundle step)"),
        {.name = "--renewals-per-second",
         .value = "N",
         .help = "rotate: early renewals per second across the mesh (default 10)",
         .set =
             [this](absl::string_view v) {
               double n = 0;
               if (!absl::SimpleAtod(v, &n) || !(n > 0)) {
                 return absl::InvalidArgumentError("must be a number above zero");
               }
               renewals_per_second_ = std::string(v);
               return absl::OkStatus();
             }},
        flags::NonNegativeDurationFlag(
            "--renewal-jitter", &renewal_jitter_,
            "rotate: the shortest window sidecars spread their renewals over (default 30s)"),
        flags::PositiveDurationFlag(
            "--renewal-retry", &renewal_retry_,
            "rotate: after a window, how long before the sidecars still behind are asked again "
            "(default 2m)",
            "2m"),
        flags::PositiveDurationFlag(
            "--bundle-ack-timeout", &bundle_ack_timeout_,
            "rotate: how long step 2 waits before it reports the sidecars missing the new root "
            "as overdue (it never switches without them; default 10m)",
            "10m"),
        flags::SwitchFlag("--status", &status_,
                          "rotate: show the rotation (steps, who holds it "
                          "back, each sidecar's roots)"),
        flags::SwitchFlag("--abort", &abort_,
                          "rotate: abort the rotation (before signing "
                          "switched)"),
        flags::NonNegativeDurationFlag(
            "--wait", &wait_,
            "rotate: follow the rotation until it is complete or aborted, at most this long, "
            "printing each step (0: return once it is requested)",
            "30m"),
    };
  }

  int Run(Session& session) override {
    const std::vector<std::string>& args = session.positional();
    if (args.size() != 1 || (args[0] != "status" && args[0] != "rotate")) {
      return session.Fail(session.UsageFailure());
    }
    const bool rotate_flags = !secret_.empty() || !cert_.empty() || !key_.empty() ||
                              !roots_.empty() || intermediate_ || status_ || abort_ ||
                              wait_ != absl::ZeroDuration() || !renewals_per_second_.empty();
    if (args[0] == "status") {
      if (rotate_flags) return session.Fail({kExitUsage, "those flags go with ca rotate"});
      return session.ShowReply(output_, "/api/v1/ca", CaStatusText);
    }
    if (status_) return session.ShowReply(output_, "/api/v1/ca/rotation", RotationText);
    int exit_code = 0;
    if (abort_) {
      std::optional<ApiReply> reply =
          session.api().Call("DELETE", "/api/v1/ca/rotation", "", &exit_code);
      if (!reply.has_value()) return exit_code;
      if (reply->http.status != 200) {
        session.io().err << "error: " << reply->ErrorMessage() << "\n";
        return kExitFailed;
      }
      session.io().out << "CA rotation aborted: the old root and signer stay in use\n";
      return 0;
    }
    std::string source;
    if (!secret_.empty()) {
      if (!cert_.empty() || !key_.empty() || !roots_.empty()) {
        return session.Fail({kExitUsage, "--secret or --cert/--key, not both"});
      }
      source = absl::StrCat("secret:", secret_);
    } else if (!cert_.empty() && !key_.empty()) {
      source = absl::StrCat("files:", cert_, ",", key_, roots_.empty() ? "" : ",", roots_);
    } else {
      return session.Fail(
          {kExitUsage,
           "ca rotate needs the new material: --secret NAMESPACE/NAME, or --cert FILE "
           "--key FILE [--roots FILE] (files on the control plane's host)"});
    }
    std::string body =
        absl::StrCat(R"({"kind":)", JsonQuote(intermediate_ ? "intermediate" : "root"),
                     R"(,"source":)", JsonQuote(source));
    if (!renewals_per_second_.empty()) {
      absl::StrAppend(&body, R"(,"renewalsPerSecond":)", renewals_per_second_);
    }
    for (auto [name, value] : {std::pair{"renewalJitter", renewal_jitter_},
                               {"renewalRetry", renewal_retry_},
                               {"bundleAckTimeout", bundle_ack_timeout_}}) {
      if (value > absl::ZeroDuration()) {
        absl::StrAppend(&body, ",\"", name, "\":", JsonQuote(absl::FormatDuration(value)));
      }
    }
    absl::StrAppend(&body, "}");
    std::optional<ApiReply> reply =
        session.api().Call("POST", "/api/v1/ca/rotation", body, &exit_code);
    if (!reply.has_value()) return exit_code;
    if (reply->http.status != 202) {
      session.io().err << "error: " << reply->ErrorMessage() << "\n";
      return kExitFailed;
    }
    session.io().out << (intermediate_ ? "intermediate" : "root") << " rotation requested with "
                     << source << "\n";
    if (wait_ == absl::ZeroDuration()) {
      session.io().out << "follow it with: meshctl ca rotate --status\n";
      return 0;
    }
    const std::string started =
        Scalar(ParseAnswer(reply->http.body).value_or(YAML::Node())["started"]);
    return Follow(session, started);
  }

 private:
  // Polls the rotation requested at `started` until it is complete or aborted (or --wait
  // passes), printing each step. An answer about an earlier rotation (the control plane has not
  // looked at the request yet) is skipped. A control plane that cannot be reached (restarting:
  // the rotation resumes from the store) is waited for within --wait, said once.
  int Follow(Session& session, const std::string& started) {
    const absl::Time deadline = absl::Now() + wait_;
    std::string last;
    bool said_unreachable = false;
    while (true) {
      int exit_code = 0;
      std::string unreachable;
      std::optional<ApiReply> reply =
          session.api().CallThroughRestart("GET", "/api/v1/ca/rotation", &unreachable, &exit_code);
      if (!reply.has_value() && unreachable.empty()) return exit_code;
      if (!reply.has_value()) {
        if (absl::Now() >= deadline) {
          session.io().err << "error: the control plane at " << session.api().server()
                           << " cannot be reached (" << unreachable << ") after "
                           << absl::FormatDuration(wait_)
                           << "; the rotation goes on once it is back (follow it with meshctl "
                              "ca rotate --status)\n";
          return kExitUnreachable;
        }
        if (!said_unreachable) {
          session.io().out << "waiting for the control plane at " << session.api().server() << " ("
                           << unreachable << ")\n";
          said_unreachable = true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        continue;
      }
      said_unreachable = false;
      const YAML::Node r = ParseAnswer(reply->http.body).value_or(YAML::Node());
      const std::string step =
          r.IsMap() && Scalar(r["started"]) == started ? Scalar(r["step"]) : "";
      const std::string message = r.IsMap() ? Scalar(r["message"]) : "";
      const std::string line = message.empty() ? step : absl::StrCat(step, ": ", message);
      if (!step.empty() && line != last) {
        session.io().out << line << "\n";
        last = line;
      }
      if (step == "complete") {
        session.io().out << "CA rotation complete\n";
        return 0;
      }
      if (step == "aborted") {
        session.io().err << "error: CA rotation aborted: " << Scalar(r["note"]) << "\n";
        return kExitFailed;
      }
      if (absl::Now() >= deadline) {
        session.io().err << "error: CA rotation still in step " << step << " after "
                         << absl::FormatDuration(wait_)
                         << " (it goes on; follow it with meshctl ca rotate --status)\n";
        return kExitFailed;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  }

  std::string output_;
  std::string secret_, cert_, key_, roots_, renewals_per_second_;
  bool intermediate_ = false, status_ = false, abort_ = false;
  absl::Duration renewal_jitter_ = absl::ZeroDuration();
  absl::Duration renewal_retry_ = absl::ZeroDuration();
  absl::Duration bundle_ack_timeout_ = absl::ZeroDuration();
  absl::Duration wait_ = absl::ZeroDuration();
};

}  // namespace

CommandSpec CaCommand() {
  return {.name = "ca",
          .args = "status | rotate",
          .summary =
              "the CA's signing material and its last reload; rotate the root or "
              "intermediate without an outage",
          .about =
              "Shows the certificate the control plane's CA signs workload certificates "
              "with (subject, issuer, SHA-256 fingerprint, expiry), the roots of its trust "
              "bundle, where the material came from (a generated root, --ca-cert/--ca-key "
              "files or a --ca-secret Secret) and the outcome of the last new version it "
              "was given: taken, or refused with the reason (the previous material then "
              "stays in use).\n\n"
              "`ca rotate` walks a rotation to the new material named by --secret or "
              "--cert/--key: the new root joins every trust bundle, signing switches once "
              "every sidecar reported it, sidecars renew early (spread over a window, "
              "--renewals-per-second), and the old root leaves once no live certificate "
              "chains to it. With --intermediate the root stays and only the signer changes. "
              "Each step is kept in the store and resumes after a restart; --status shows "
              "who holds it back, --abort stops it before signing switched.",
          .examples = {{"the signing material in use", "meshctl ca status"},
                       {"as JSON", "meshctl ca status -o json"},
                       {"rotate the root to the material in a Secret, following it",
                        "meshctl ca rotate --secret meshlet-system/meshlet-ca-next --wait 30m"},
                       {"a new intermediate under the same root",
                        "meshctl ca rotate --intermediate --cert /etc/meshlet/ca-2/chain.pem "
                        "--key /etc/meshlet/ca-2/key.pem"},
                       {"who holds the rotation back", "meshctl ca rotate --status"}},
          .make = [] { return std::make_unique<Ca>(); }};
}

}  // namespace meshlet::controlplane::cli

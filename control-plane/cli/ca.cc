// ca status: the CA's signing material in use and its last reload (GET /api/v1/ca).

#include <yaml-cpp/yaml.h>

#include "absl/strings/str_cat.h"
#include "control-plane/cli/commands.h"
#include "control-plane/cli/output.h"

namespace meshlet::controlplane::cli {
namespace {

// The answer of /api/v1/ca as a two-column table.
absl::StatusOr<std::string> CaStatusText(absl::string_view json) {
  YAML::Node status;
  try {
    status = YAML::Load(std::string(json));
  } catch (const YAML::Exception& e) {
    return absl::InternalError(absl::StrCat("the control plane's answer is not JSON: ", e.what()));
  }
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
  return FormatTable(rows);
}

class Ca final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    return {OutputFlag(&output_, {"json"}, "json: the API's answer as it is")};
  }

  int Run(Session& session) override {
    if (session.positional().size() != 1 || session.positional()[0] != "status") {
      return session.Fail(session.UsageFailure());
    }
    return session.ShowReply(output_, "/api/v1/ca", CaStatusText);
  }

 private:
  std::string output_;
};

}  // namespace

CommandSpec CaCommand() {
  return {.name = "ca",
          .args = "status",
          .summary = "the CA's signing certificate in use, where it came from, its last reload",
          .about =
              "Shows the certificate the control plane's CA signs workload certificates "
              "with (subject, issuer, SHA-256 fingerprint, expiry), the roots of its trust "
              "bundle, where the material came from (a generated root, --ca-cert/--ca-key "
              "files or a --ca-secret Secret) and the outcome of the last new version it "
              "was given: taken, or refused with the reason (the previous material then "
              "stays in use).",
          .examples = {{"the signing material in use", "meshctl ca status"},
                       {"as JSON", "meshctl ca status -o json"}},
          .make = [] { return std::make_unique<Ca>(); }};
}

}  // namespace meshlet::controlplane::cli

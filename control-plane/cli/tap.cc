// tap: live requests of a workload or service (GET /api/v1/tap, streamed), one line each.

#include <unistd.h>
#include <csignal>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "control-plane/cli/commands.h"
#include "control-plane/cli/trace_view.h"

namespace meshlet::controlplane::cli {
namespace {

// Ctrl-C ends a tap: the connection closes with the process, and the control plane stops the
// sidecars' taps when its caller goes. What was printed was flushed line by line.
void OnInterrupt(int) { ::_exit(kExitOk); }

class Tap final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    return {NamespaceFlag(&namespace_,
                          "the namespace of WORKLOAD or svc/NAME (default: the "
                          "context file's, else default)"),
            flags::IntFlag<uint32_t>("--rate", "N", &rate_,
                                     "the most requests per second shown, over all the target's "
                                     "sidecars (default: the control plane's, 10; its "
                                     "--tap-max-rate bounds it)"),
            flags::StringFlag("--duration", "DURATION", &duration_,
                              "how long to tap (default: the control plane's, 60s; its "
                              "--tap-max-duration bounds it)"),
            Switch("--headers", "", &headers_,
                   "the request and response headers too (admin role only; credentials are "
                   "redacted)"),
            flags::StringFlag("--direction", "inbound|outbound", &direction_,
                              "only requests the workload received (inbound) or made (outbound)"),
            flags::StringFlag("--method", "METHOD", &method_, "only requests of this method"),
            flags::StringFlag("--authority", "HOST", &authority_,
                              "only requests to this :authority (Host)"),
            flags::StringFlag("--path", "PREFIX", &path_, "only requests whose path begins so"),
            OutputFlag(&output_, {"json"}, "the API's lines (newline-delimited JSON)")};
  }

  int Run(Session& session) override {
    const std::vector<std::string>& args = session.positional();
    if (args.size() != 1) return session.Fail(session.UsageFailure());
    const std::string ns = session.Namespace(namespace_);
    std::string path = "/api/v1/tap?";
    absl::string_view target = args[0];
    if (absl::ConsumePrefix(&target, "svc/") || absl::ConsumePrefix(&target, "service/")) {
      absl::StrAppend(&path, "service=", QueryEscape(absl::StrCat(ns, "/", target)));
    } else {
      absl::ConsumePrefix(&target, "pod/");
      absl::StrAppend(&path, "workload=",
                      QueryEscape(absl::StrContains(target, '/') ? std::string(target)
                                                                 : absl::StrCat(ns, "/", target)));
    }
    if (rate_ != 0) absl::StrAppend(&path, "&rate=", rate_);
    if (!duration_.empty()) absl::StrAppend(&path, "&duration=", QueryEscape(duration_));
    if (headers_) path += "&headers=true";
    for (const auto& [name, value] :
         {std::pair<const char*, const std::string*>{"direction", &direction_},
          {"method", &method_},
          {"authority", &authority_},
          {"path", &path_}}) {
      if (!value->empty()) absl::StrAppend(&path, "&", name, "=", QueryEscape(*value));
    }
    // Without --duration the control plane's default, at most a day; the server ends the answer.
    absl::Duration duration = absl::Hours(24);
    if (!duration_.empty() &&
        (!absl::ParseDuration(duration_, &duration) || duration <= absl::ZeroDuration())) {
      return session.Fail({kExitUsage, absl::StrCat("--duration ", duration_,
                                                    ": must be a positive duration such as 30s")});
    }
    // The whole answer lasts the tap, and a little more for its last lines.
    session.api().set_timeout(
        std::chrono::milliseconds(absl::ToInt64Milliseconds(duration + absl::Seconds(30))));
    std::signal(SIGINT, OnInterrupt);

    std::ostream& out = session.io().out;
    std::ostream& err = session.io().err;
    std::string pending;
    bool bad = false;
    const auto print = [&](absl::string_view line) {
      if (line.empty()) return;
      if (output_ == "json") {
        out << line << "\n" << std::flush;
        return;
      }
      absl::StatusOr<TapLineView> view = FormatTapLine(line);
      if (!view.ok()) {
        bad = true;
        return;
      }
      if (!view->out.empty()) out << view->out << std::flush;
      if (!view->note.empty()) err << view->note << std::flush;
    };
    const auto take = [&](absl::string_view data) {
      pending.append(data.data(), data.size());
      size_t start = 0;
      for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
        print(absl::string_view(pending).substr(start, nl - start));
      }
      pending.erase(0, start);
      return true;
    };
    int exit_code = kExitOk;
    std::optional<ApiReply> reply = session.api().Call("GET", path, "", &exit_code, take);
    std::signal(SIGINT, SIG_DFL);
    if (!reply.has_value()) return exit_code;
    if (reply->http.status != 200) return session.Fail({kExitFailed, reply->ErrorMessage()});
    take(reply->http.body);  // a transport that does not stream
    print(pending);
    if (bad) return session.Fail({kExitFailed, "unreadable lines from the control plane"});
    return kExitOk;
  }

 private:
  NamespaceOption namespace_;
  uint32_t rate_ = 0;     // 0: the control plane's default
  std::string duration_;  // empty: the control plane's default
  bool headers_ = false;
  std::string direction_;
  std::string method_;
  std::string authority_;
  std::string path_;
  std::string output_ = "table";
};

}  // namespace

CommandSpec TapCommand() {
  return {.name = "tap",
          .args = "WORKLOAD | svc/NAME",
          .summary = "live requests of a workload or service, one line each",
          .about =
              "Streams the requests the sidecars of WORKLOAD (a pod, NAME or NAMESPACE/NAME) or "
              "of the service NAME handle, sampled at --rate, for --duration or until Ctrl-C: "
              "direction, proxy, method, authority and path, status, latency, the caller's "
              "identity and the route (object#rule). Any API role may tap; --headers needs "
              "admin. Every tap is in the control plane's audit log. Only sidecars connected to "
              "the replica meshctl reaches are tapped.",
          .examples = {{"", "meshctl tap svc/reviews -n shop"},
                       {"one pod's outbound calls, 5 a second, for 30s",
                        "meshctl tap shop/web-7c9d --direction outbound --rate 5 --duration 30s"},
                       {"as JSON lines", "meshctl tap svc/reviews -n shop -o json"}},
          .make = [] { return std::make_unique<Tap>(); }};
}

}  // namespace meshlet::controlplane::cli

// meshlet-cni-agent: the node agent of CNI mode (cni/agent.h). Runs until SIGTERM or SIGINT;
// with --uninstall-on-exit it then takes meshlet-cni out of the node's chain, unless --daemonset
// names its DaemonSet and the API server says that it still exists and is not being deleted (a
// rolling update or a restart: the plugin stays in the chain for the next agent, docs/adr/0094).
// `meshlet-cni-agent uninstall` (same flags) only takes it out, for a node whose agent is gone.

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cni/agent.h"
#include "cni/installer.h"
#include "cni/kubernetes.h"
#include "common/base/logging.h"
#include "common/event/loop.h"
#include "common/event/signal.h"
#include "common/flags/flags.h"

namespace meshlet::cni {
namespace {

struct Flags {
  AgentOptions agent;
  std::string http_address = "0.0.0.0:9103";
  std::string exclude_namespaces = "kube-system";
  std::string repair_mode = "evict";
  std::string daemonset;  // NAMESPACE/NAME
  bool uninstall_on_exit = false;
  bool help = false;
};

std::string DefaultServer() {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || *host == '\0') return "";
  const std::string h = std::string(host).find(':') == std::string::npos
                            ? std::string(host)
                            : absl::StrCat("[", host, "]");
  return absl::StrCat("https://", h, ":", port != nullptr && *port != '\0' ? port : "443");
}

std::vector<flags::Flag> Table(Flags* f) {
  return {
      flags::StringFlag("--cni-conf-dir", "DIR", &f->agent.cni_conf_dir,
                        "The runtime's CNI configuration directory; meshlet-cni is kept last in "
                        "the file the runtime uses (the first .conf, .conflist or .json by name)."),
      flags::StringFlag("--cni-bin-dir", "DIR", &f->agent.cni_bin_dir,
                        "Where the runtime finds CNI plugins; the plugin binary is copied here."),
      flags::StringFlag("--plugin-binary", "PATH", &f->agent.plugin_binary,
                        "The meshlet-cni binary to install (none: not copied)."),
      flags::StringFlag("--plugin-bundle", "DIR", &f->agent.plugin_bundle,
                        "Files copied to CNI_BIN/meshlet-cni.d before --plugin-binary: the plugin "
                        "with its loader and libraries, for --plugin-binary=meshlet-cni-launcher "
                        "(none: --plugin-binary is the plugin itself)."),
      flags::StringFlag("--state-dir", "DIR", &f->agent.state_dir,
                        "A node directory for the install state and the files the plugin reads "
                        "(ca.crt, token, cni.log); the same path on the node and in the agent."),
      flags::StringFlag("--kubernetes-server", "URL", &f->agent.kubernetes_server,
                        "The API server the plugin asks for pod annotations (default from "
                        "KUBERNETES_SERVICE_HOST/PORT; empty: runtimeConfig annotations only)."),
      flags::StringFlag("--service-account-dir", "DIR", &f->agent.service_account_dir,
                        "The agent's ServiceAccount files (ca.crt, token), copied for the plugin."),
      flags::StringFlag("--exclude-namespaces", "NS,...", &f->exclude_namespaces,
                        "Namespaces whose pods the plugin passes through untouched."),
      flags::StringFlag("--on-metadata-error", "fail|skip", &f->agent.on_metadata_error,
                        "The plugin's policy when a pod's annotations cannot be read."),
      flags::StringFlag("--default-namespace", "NS", &f->agent.default_namespace,
                        "The namespace of pods the runtime names without one (K8S_POD_NAME "
                        "alone, as podman's CNI backend does); none: such pods pass through."),
      flags::StringFlag("--http-address", "HOST:PORT", &f->http_address,
                        "Serves /healthz, /readyz (200 while meshlet-cni is in the chain) and "
                        "/metrics."),
      flags::PositiveDurationFlag("--check-interval", &f->agent.check_interval,
                                  "How often the configuration is checked besides on changes.",
                                  "10s"),
      flags::StringFlag("--node-name", "NAME", &f->agent.node_name,
                        "This node's name (the downward API's spec.nodeName; default $NODE_NAME): "
                        "the race repair looks at this node's pods (none: no repair)."),
      flags::StringFlag("--repair-mode", "evict|label|off", &f->repair_mode,
                        "What the race repair does with a pod set up while meshlet-cni was not in "
                        "the chain: evict it (PodDisruptionBudgets hold; bare pods are only "
                        "reported), label it cni.meshlet.io/uncaptured=true, or only report it."),
      flags::PositiveDurationFlag("--repair-grace", &f->agent.repair_grace,
                                  "How long a marked pod may be not ready and not captured before "
                                  "the repair acts.",
                                  "30s"),
      flags::PositiveDurationFlag("--repair-interval", &f->agent.repair_interval,
                                  "How often the node's pods are listed for the race repair.",
                                  "10s"),
      flags::IntFlag<size_t>("--max-plugin-log-bytes", "BYTES", &f->agent.max_plugin_log_bytes,
                             "The plugin's log is moved to cni.log.1 past this size."),
      flags::SwitchFlag("--uninstall-on-exit", &f->uninstall_on_exit,
                        "On SIGTERM or SIGINT, take meshlet-cni out of the chain (the "
                        "configuration as the agent found it) and remove the plugin."),
      flags::StringFlag("--daemonset", "NAMESPACE/NAME", &f->daemonset,
                        "The agent's own DaemonSet: with --uninstall-on-exit, the plugin is taken "
                        "out only when it is gone or being deleted, and stays in the chain through "
                        "a rolling update or restart (none: always taken out)."),
      flags::HelpFlag(&f->help, "Show this help."),
  };
}

std::string Usage(Flags* f) {
  return absl::StrCat("usage: meshlet-cni-agent [uninstall] [flags]\n\n",
                      flags::FlagTable(Table(f)));
}

// With --uninstall-on-exit, at exit: uninstall unless the DaemonSet still stands (an update or a
// restart: the next agent takes over the chain as it is). When that cannot be told, uninstall: a
// plugin left in the chain with no agent keeping its token fresh would fail pods' sandboxes, and
// the race repair fixes what starts uncaptured meanwhile.
bool ShouldUninstall(const Flags& f, const std::vector<std::string>& daemonset) {
  if (f.daemonset.empty() || f.agent.kubernetes_server.empty()) {
    LOG(INFO) << "meshlet-cni-agent: uninstalling";
    return true;
  }
  absl::StatusOr<bool> removed =
      DaemonSetBeingRemoved({.server = f.agent.kubernetes_server,
                             .ca_file = absl::StrCat(f.agent.service_account_dir, "/ca.crt"),
                             .token_file = absl::StrCat(f.agent.service_account_dir, "/token")},
                            daemonset[0], daemonset[1]);
  if (!removed.ok()) {
    LOG(ERROR) << "meshlet-cni-agent: " << removed.status().message()
               << "; uninstalling as if it were deleted";
    return true;
  }
  if (*removed) {
    LOG(INFO) << "meshlet-cni-agent: the DaemonSet " << f.daemonset
              << " is gone or being deleted: uninstalling";
  } else {
    LOG(INFO) << "meshlet-cni-agent: the DaemonSet " << f.daemonset
              << " stays (an update or a restart): meshlet-cni stays in the chain";
  }
  return *removed;
}

int Run(int argc, char** argv) {
  Flags f;
  f.agent.kubernetes_server = DefaultServer();
  if (const char* node = std::getenv("NODE_NAME"); node != nullptr) f.agent.node_name = node;
  const std::vector<std::string> args(argv + 1, argv + argc);
  absl::StatusOr<flags::ParsedArgs> parsed =
      flags::Parse(Table(&f), args, {.command = "meshlet-cni-agent", .positional = true});
  if (!parsed.ok()) {
    std::fprintf(stderr, "meshlet-cni-agent: %s\n", std::string(parsed.status().message()).c_str());
    return flags::kUsageExitCode;
  }
  if (f.help) {
    std::fputs(Usage(&f).c_str(), stdout);
    return 0;
  }
  const bool uninstall_only =
      parsed->positional.size() == 1 && parsed->positional[0] == "uninstall";
  if (!parsed->positional.empty() && !uninstall_only) {
    std::fprintf(stderr, "meshlet-cni-agent: unknown command \"%s\" (only \"uninstall\")\n",
                 parsed->positional[0].c_str());
    return flags::kUsageExitCode;
  }
  if (f.agent.on_metadata_error != "fail" && f.agent.on_metadata_error != "skip") {
    std::fprintf(stderr, "meshlet-cni-agent: --on-metadata-error must be fail or skip\n");
    return flags::kUsageExitCode;
  }
  absl::StatusOr<RepairMode> repair_mode = ParseRepairMode(f.repair_mode);
  if (!repair_mode.ok()) {
    std::fprintf(stderr, "meshlet-cni-agent: --repair-mode: %s\n",
                 std::string(repair_mode.status().message()).c_str());
    return flags::kUsageExitCode;
  }
  f.agent.repair_mode = *repair_mode;
  const std::vector<std::string> daemonset = absl::StrSplit(f.daemonset, '/');
  if (!f.daemonset.empty() &&
      (daemonset.size() != 2 || daemonset[0].empty() || daemonset[1].empty())) {
    std::fprintf(stderr, "meshlet-cni-agent: --daemonset must be NAMESPACE/NAME\n");
    return flags::kUsageExitCode;
  }
  f.agent.exclude_namespaces = absl::StrSplit(f.exclude_namespaces, ',', absl::SkipEmpty());
  absl::StatusOr<net::Address> address = net::Address::Parse(f.http_address);
  if (!address.ok()) {
    std::fprintf(stderr, "meshlet-cni-agent: --http-address: %s\n",
                 std::string(address.status().message()).c_str());
    return flags::kUsageExitCode;
  }
  f.agent.http_address = *address;
  std::signal(SIGPIPE, SIG_IGN);

  if (uninstall_only) {
    Installer installer({.conf_dir = f.agent.cni_conf_dir,
                         .state_file = StateFile(f.agent),
                         .plugin = PluginEntry(f.agent)});
    if (absl::Status s = installer.Uninstall(); !s.ok()) {
      std::fprintf(stderr, "meshlet-cni-agent: uninstall: %s\n", std::string(s.message()).c_str());
      return 1;
    }
    return 0;
  }

  event::Loop loop;
  int exit_code = 0;
  {
    NodeAgent agent(loop, f.agent);
    if (absl::Status s = agent.Start(); !s.ok()) {
      std::fprintf(stderr, "meshlet-cni-agent: %s\n", std::string(s.message()).c_str());
      return 1;
    }
    LOG(INFO) << "meshlet-cni-agent: watching " << f.agent.cni_conf_dir << ", serving on "
              << agent.http_address().ToString();
    std::vector<std::unique_ptr<event::Signal>> signals;
    for (int signum : {SIGTERM, SIGINT}) {
      absl::StatusOr<std::unique_ptr<event::Signal>> signal =
          event::Signal::Create(loop, signum, [&](int) {
            LOG(INFO) << "meshlet-cni-agent: stopping";
            if (!agent.Stop(/*uninstall=*/false).ok()) exit_code = 1;
            loop.Stop();
          });
      CHECK_OK(signal.status());
      signals.push_back(*std::move(signal));
    }
    loop.Run();
    signals.clear();
    // Off the loop: the question to the API server is a blocking call.
    if (f.uninstall_on_exit && ShouldUninstall(f, daemonset) && !agent.Uninstall().ok()) {
      exit_code = 1;
    }
  }
  loop.RunUntilIdle();
  return exit_code;
}

}  // namespace
}  // namespace meshlet::cni

int main(int argc, char** argv) { return meshlet::cni::Run(argc, argv); }

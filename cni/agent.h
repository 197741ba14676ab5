#pragma once

// meshlet-cni-agent, the node agent of CNI mode (docs/adr/0094, "Amended: the node agent"): it
// copies the meshlet-cni binary into the node's CNI bin dir (again when it goes missing; never
// in the chain while it is not there), writes the files the plugin reads to
// reach the API server (CA, ServiceAccount token), keeps meshlet-cni last in the network
// configuration the runtime uses (Installer: at start, on every change of the conf dir, and every
// check interval), counts the plugin's outcomes from its log file, and serves /healthz, /readyz
// (200 only while meshlet-cni is in the chain) and /metrics (Prometheus). With the node's name, it
// also finds and repairs the node's pods set up while meshlet-cni was not in the chain
// (PodRepairer, cni/pod_repairer.h).
//
// Everything runs on the loop's thread: the conf dir watch (libuv fs events, inotify), the
// periodic check and the HTTP server. File work is blocking and small (a few KiB).

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cni/installer.h"
#include "cni/pod_repairer.h"
#include "cni/repair.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/http/server.h"
#include "common/net/address.h"
#include "common/stats/stats.h"

namespace meshlet::cni {

struct AgentOptions {
  std::string cni_conf_dir = "/etc/cni/net.d";
  std::string cni_bin_dir = "/opt/cni/bin";
  std::string plugin_binary;  // what to copy into cni_bin_dir as meshlet-cni
  // A directory whose files are copied to cni_bin_dir/meshlet-cni.d first: the plugin with the
  // loader and libraries it loads, which //cni:meshlet-cni-launcher (then the plugin_binary)
  // runs it with. Empty: plugin_binary is the plugin itself.
  std::string plugin_bundle;
  // The agent's state and the plugin's files: install state, ca.crt, token, the plugin's log.
  // A host path: the plugin, run by the runtime on the node, reads them at these paths.
  std::string state_dir = "/var/run/meshlet-cni";
  std::string kubernetes_server;  // https://HOST:PORT; empty: no API access for the plugin
  std::string service_account_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
  std::vector<std::string> exclude_namespaces = {"kube-system"};
  std::string on_metadata_error = "fail";  // the plugin's onMetadataError
  std::string default_namespace;           // the plugin's defaultNamespace ("" none)
  net::Address http_address;               // /healthz, /readyz, /metrics
  Duration check_interval = std::chrono::seconds(10);
  // A change in the conf dir is looked at after this quiet time (writers often write twice).
  Duration settle_time = std::chrono::milliseconds(100);
  size_t max_plugin_log_bytes = 16 << 20;  // the plugin's log is rotated (to .1) past this
  size_t max_file_bytes = 1 << 20;         // conflists, CA and token files read
  // The race repair (PodRepairer), with the agent's ServiceAccount against kubernetes_server:
  // on when both this node's name and the server are set. Its excluded namespaces are the
  // plugin's (exclude_namespaces).
  std::string node_name;
  RepairMode repair_mode = RepairMode::kEvict;
  Duration repair_grace = std::chrono::seconds(30);
  Duration repair_interval = std::chrono::seconds(10);
};

// Paths under the state dir.
std::string StateFile(const AgentOptions& options);
std::string PluginLogFile(const AgentOptions& options);
// meshlet-cni's entry in the conflist for these options (one line of JSON).
std::string PluginEntry(const AgentOptions& options);

// The outcome (captured, skipped, failed, ...) of one line the plugin logged, or "" when the line
// is not one (the indented commands after it).
absl::string_view OutcomeOfLogLine(absl::string_view line);

class NodeAgent {
 public:
  NodeAgent(event::Loop& loop, AgentOptions options);
  ~NodeAgent();
  NodeAgent(const NodeAgent&) = delete;
  NodeAgent& operator=(const NodeAgent&) = delete;

  // Serves HTTP, copies the plugin, checks once, watches. An error only for what cannot be
  // retried (the HTTP address); a failed check is logged, counted and retried.
  absl::Status Start();
  // Stops watching and serving; with `uninstall`, then Uninstall().
  absl::Status Stop(bool uninstall);
  // Takes meshlet-cni out of the chain (the configuration as the agent found it) and removes the
  // plugin binary and the plugin's files. After Stop.
  absl::Status Uninstall();
  bool ready() const { return in_chain_; }
  const net::Address& http_address() const;

  // One check now (also what the watch and the timer run).
  void Check();

 private:
  struct Watch;
  absl::Status CopyPlugin();
  absl::Status WriteKubernetesFiles();
  void ReadPluginLog();
  // The rotated log (.1), for the repair's record of captures only (not counted again).
  void ReadRotatedPluginLog();
  void Failed(absl::string_view step, const absl::Status& status);
  http::ServerResponse Handle(const http::ServerRequest& request);
  void OnConfDirChanged();

  event::Loop& loop_;
  const AgentOptions options_;
  Installer installer_;
  StatsRegistry stats_;
  Counter checks_, inserts_, repairs_;
  Gauge in_chain_gauge_;
  std::map<std::string, Counter> pods_;    // by the plugin's outcome
  std::map<std::string, Counter> errors_;  // by step
  std::unique_ptr<http::HttpServer> http_;
  std::unique_ptr<event::Timer> periodic_;
  std::unique_ptr<event::Timer> settle_;
  std::unique_ptr<Watch> watch_;
  std::unique_ptr<PodRepairer> repairer_;  // null: no repair (no node name or API server)
  bool in_chain_ = false;
  std::string last_error_;
  uint64_t log_offset_ = 0;
  uint64_t plugin_size_ = 0;  // of the plugin as last copied or compared; 0: not yet
  std::map<std::string, uint64_t> bundle_sizes_;  // the same for each file of the bundle
};

}  // namespace meshlet::cni

#include "cni/agent.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cni/plugin.h"
#include "common/base/atomic_file.h"
#include "common/base/file.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/stats/exposition.h"
#include "common/stats/must_stat.h"

namespace meshlet::cni {
namespace {

// The plugin's outcomes (cni/plugin.cc), each counted under its own label.
constexpr const char* kOutcomes[] = {"captured", "skipped", "checked",
                                     "removed",  "failed",  "version"};
// Where the agent can fail; each is a label of meshlet_cni_agent_errors_total.
constexpr const char* kSteps[] = {"check",      "copy_plugin", "kubernetes_files",
                                  "plugin_log", "watch",       "uninstall"};

std::string CaFile(const AgentOptions& options) { return options.state_dir + "/ca.crt"; }
std::string TokenFile(const AgentOptions& options) { return options.state_dir + "/token"; }
std::string InstalledPlugin(const AgentOptions& options) {
  return absl::StrCat(options.cni_bin_dir, "/", kPluginType);
}

// Where the plugin's bundle goes: CNI_BIN/meshlet-cni.d (the launcher's contract).
std::string InstalledBundle(const AgentOptions& options) {
  return absl::StrCat(options.cni_bin_dir, "/", kPluginType, ".d");
}

}  // namespace

struct NodeAgent::Watch {
  uv_fs_event_t handle;
  NodeAgent* agent;
  ino_t inode;  // of the directory watched, when the watch was set
  timespec ctime;
};

std::string StateFile(const AgentOptions& options) { return options.state_dir + "/install-state"; }
std::string PluginLogFile(const AgentOptions& options) { return options.state_dir + "/cni.log"; }

std::string PluginEntry(const AgentOptions& options) {
  std::vector<std::string> excluded;
  for (const std::string& ns : options.exclude_namespaces) excluded.push_back(JsonQuote(ns));
  std::string entry = absl::StrCat(
      "{\"type\": ", JsonQuote(kPluginType), ", \"logFile\": ", JsonQuote(PluginLogFile(options)),
      ", \"excludeNamespaces\": [", absl::StrJoin(excluded, ", "),
      "], \"onMetadataError\": ", JsonQuote(options.on_metadata_error), ", \"capabilities\": {",
      JsonQuote(kPodAnnotationsCapability), ": true}");
  if (!options.default_namespace.empty()) {
    absl::StrAppend(&entry, ", \"defaultNamespace\": ", JsonQuote(options.default_namespace));
  }
  if (!options.kubernetes_server.empty()) {
    absl::StrAppend(&entry, ", \"kubernetes\": {\"server\": ", JsonQuote(options.kubernetes_server),
                    ", \"caFile\": ", JsonQuote(CaFile(options)),
                    ", \"tokenFile\": ", JsonQuote(TokenFile(options)), "}");
  }
  absl::StrAppend(&entry, "}");
  return entry;
}

absl::string_view OutcomeOfLogLine(absl::string_view line) {
  if (line.empty() || line[0] == ' ' || !absl::StrContains(line, " meshlet-cni ")) return "";
  const size_t at = line.find(" outcome=");
  if (at == absl::string_view::npos) return "";
  absl::string_view outcome = line.substr(at + 9);
  return outcome.substr(0, outcome.find(' '));
}

NodeAgent::NodeAgent(event::Loop& loop, AgentOptions options)
    : loop_(loop),
      options_(std::move(options)),
      installer_({.conf_dir = options_.cni_conf_dir,
                  .state_file = StateFile(options_),
                  .plugin = PluginEntry(options_),
                  .max_conf_bytes = options_.max_file_bytes}) {
  StatsShard& shard = stats_.shared_shard();
  checks_ = MustStat(shard.RegisterCounter(
      "meshlet_cni_agent_checks_total", "Checks of the CNI configuration (watch, timer, start)."));
  inserts_ = MustStat(shard.RegisterCounter(
      "meshlet_cni_conflist_inserts_total",
      "Times meshlet-cni was inserted into a configuration the agent had not edited yet."));
  repairs_ = MustStat(shard.RegisterCounter(
      "meshlet_cni_conflist_repairs_total",
      "Times meshlet-cni was inserted again after another writer rewrote the configuration."));
  in_chain_gauge_ = MustStat(
      shard.RegisterGauge("meshlet_cni_in_chain",
                          "1 while meshlet-cni is last in the configuration the runtime uses."));
  for (const char* outcome : kOutcomes) {
    pods_[outcome] = MustStat(shard.RegisterCounter(
        "meshlet_cni_pods_total", "meshlet-cni invocations by outcome, from the plugin's log.",
        {{"outcome", outcome}}));
  }
  for (const char* step : kSteps) {
    errors_[step] = MustStat(shard.RegisterCounter(
        "meshlet_cni_agent_errors_total", "Failures of the node agent by step.", {{"step", step}}));
  }
}

NodeAgent::~NodeAgent() {
  if (watch_ != nullptr) {
    uv_fs_event_stop(&watch_->handle);
    uv_close(reinterpret_cast<uv_handle_t*>(&watch_->handle),
             [](uv_handle_t* handle) { delete static_cast<Watch*>(handle->data); });
    watch_.release();
  }
}

const net::Address& NodeAgent::http_address() const { return http_->address(); }

void NodeAgent::Failed(absl::string_view step, const absl::Status& status) {
  errors_[std::string(step)].Inc();
  LOG(ERROR) << "meshlet-cni-agent: " << step << ": " << status.message();
}

absl::Status NodeAgent::Start() {
  absl::StatusOr<std::unique_ptr<http::HttpServer>> server = http::HttpServer::Create(
      loop_, options_.http_address, {},
      [this](const http::ServerRequest& request) { return Handle(request); });
  if (!server.ok()) {
    return absl::Status(server.status().code(),
                        absl::StrCat("listening on ", options_.http_address.ToString(), ": ",
                                     server.status().message()));
  }
  http_ = *std::move(server);
  if (mkdir(options_.state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    const int err = errno;
    return absl::ErrnoToStatus(
        err, absl::StrCat("cannot create the state dir \"", options_.state_dir, "\""));
  }
  settle_ = std::make_unique<event::Timer>(loop_, [this] { Check(); });
  periodic_ = std::make_unique<event::Timer>(loop_, [this] { Check(); });
  periodic_->EnableRepeating(options_.check_interval);
  if (!options_.node_name.empty() && !options_.kubernetes_server.empty()) {
    repairer_ = std::make_unique<PodRepairer>(
        loop_,
        PodRepairerOptions{
            .node_name = options_.node_name,
            .kubernetes = {.server = options_.kubernetes_server,
                           .ca_file = absl::StrCat(options_.service_account_dir, "/ca.crt"),
                           .token_file = absl::StrCat(options_.service_account_dir, "/token")},
            .settings = {.mode = options_.repair_mode,
                         .grace = absl::FromChrono(options_.repair_grace),
                         .exclude_namespaces = options_.exclude_namespaces},
            .interval = options_.repair_interval,
            .read_plugin_log = [this] { ReadPluginLog(); }},
        stats_.shared_shard());
    // Created before the first check reads the plugin's log, so that it sees every line.
    ReadRotatedPluginLog();
  }
  Check();
  if (repairer_ != nullptr) repairer_->Start();
  return absl::OkStatus();
}

// `from` copied to `to` (mode 0755) unless `to` already holds it: after the first comparison
// (`*size` 0), one stat that finds it executable and of the size copied.
absl::Status CopyIfChanged(const std::string& from, const std::string& to, uint64_t* size) {
  struct stat st;
  if (*size != 0 && stat(to.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) == *size &&
      (st.st_mode & 0111) != 0) {
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> binary = ReadFile(from, 256 << 20);
  if (!binary.ok()) return binary.status();
  *size = binary->size();
  absl::StatusOr<std::string> installed = ReadFile(to, 256 << 20);
  if (installed.ok() && *installed == *binary) return absl::OkStatus();
  if (absl::Status s = WriteFileAtomically(to, *binary, {.mode = 0755}); !s.ok()) return s;
  LOG(INFO) << "meshlet-cni-agent: installed " << to;
  return absl::OkStatus();
}

absl::Status NodeAgent::CopyPlugin() {
  // The bundle first: the launcher never runs without what it starts.
  if (!options_.plugin_bundle.empty()) {
    absl::StatusOr<std::vector<std::string>> names = ListFiles(options_.plugin_bundle);
    if (!names.ok()) return names.status();
    if (names->empty()) {
      return absl::NotFoundError(
          absl::StrCat("the plugin bundle \"", options_.plugin_bundle, "\" is empty"));
    }
    const std::string dir = InstalledBundle(options_);
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      const int err = errno;
      return absl::ErrnoToStatus(err, absl::StrCat("cannot create \"", dir, "\""));
    }
    for (const std::string& name : *names) {
      if (absl::Status s = CopyIfChanged(absl::StrCat(options_.plugin_bundle, "/", name),
                                         absl::StrCat(dir, "/", name), &bundle_sizes_[name]);
          !s.ok()) {
        return s;
      }
    }
  }
  if (options_.plugin_binary.empty()) return absl::OkStatus();
  return CopyIfChanged(options_.plugin_binary, InstalledPlugin(options_), &plugin_size_);
}

absl::Status NodeAgent::WriteKubernetesFiles() {
  if (options_.kubernetes_server.empty()) return absl::OkStatus();
  for (const auto& [from, to] : {std::pair{std::string("ca.crt"), CaFile(options_)},
                                 std::pair{std::string("token"), TokenFile(options_)}}) {
    absl::StatusOr<std::string> content =
        ReadFile(absl::StrCat(options_.service_account_dir, "/", from), options_.max_file_bytes);
    if (!content.ok()) return content.status();
    absl::StatusOr<std::string> current = ReadFile(to, options_.max_file_bytes);
    if (current.ok() && *current == *content) continue;
    if (absl::Status s = WriteFileAtomically(to, *content, {.mode = 0600}); !s.ok()) return s;
  }
  return absl::OkStatus();
}

void NodeAgent::Check() {
  checks_.Inc();
  // A watch dies with its directory. A conf dir removed and created again may have the same
  // inode number, so the watch is renewed whenever the directory changed since it was set
  // (inode or ctime, which entries added or removed also move): cheap, and the Ensure() below
  // runs after the new watch is set, so nothing written in between is missed.
  struct stat dir_stat;
  const bool dir_exists = stat(options_.cni_conf_dir.c_str(), &dir_stat) == 0;
  if (watch_ != nullptr && (!dir_exists || dir_stat.st_ino != watch_->inode ||
                            dir_stat.st_ctim.tv_sec != watch_->ctime.tv_sec ||
                            dir_stat.st_ctim.tv_nsec != watch_->ctime.tv_nsec)) {
    uv_fs_event_stop(&watch_->handle);
    uv_close(reinterpret_cast<uv_handle_t*>(&watch_.release()->handle),
             [](uv_handle_t* handle) { delete static_cast<Watch*>(handle->data); });
  }
  if (watch_ == nullptr && dir_exists) {  // the conf dir may appear later
    auto watch = std::make_unique<Watch>();
    watch->agent = this;
    watch->inode = dir_stat.st_ino;
    watch->ctime = dir_stat.st_ctim;
    uv_fs_event_init(loop_.uv_loop(), &watch->handle);
    watch->handle.data = watch.get();
    const int rc = uv_fs_event_start(
        &watch->handle,
        [](uv_fs_event_t* handle, const char*, int, int) {
          static_cast<Watch*>(handle->data)->agent->OnConfDirChanged();
        },
        options_.cni_conf_dir.c_str(), 0);
    if (rc == 0) {
      watch_ = std::move(watch);
    } else {
      Failed("watch", absl::UnavailableError(absl::StrCat("cannot watch \"", options_.cni_conf_dir,
                                                          "\": ", uv_strerror(rc))));
      uv_close(reinterpret_cast<uv_handle_t*>(&watch.release()->handle),
               [](uv_handle_t* handle) { delete static_cast<Watch*>(handle->data); });
    }
  }
  if (absl::Status s = WriteKubernetesFiles(); !s.ok()) Failed("kubernetes_files", s);
  // Never a chain naming a plugin the runtime cannot find: every sandbox would fail.
  absl::Status copied = CopyPlugin();
  if (!copied.ok()) {
    Failed("copy_plugin", copied);
    // Out of the chain: pods that are not injected keep starting; injected ones start
    // uncaptured and their sidecar's capture check keeps them not ready.
    if (absl::Status s = installer_.Uninstall(); !s.ok()) Failed("uninstall", s);
  }
  absl::StatusOr<EnsureOutcome> outcome =
      copied.ok() ? installer_.Ensure()
                  : absl::StatusOr<EnsureOutcome>(absl::FailedPreconditionError(
                        absl::StrCat("the plugin is not installed: ", copied.message())));
  const bool was_in_chain = in_chain_;
  if (!outcome.ok()) {
    in_chain_ = false;
    last_error_ = std::string(outcome.status().message());
    Failed("check", outcome.status());
  } else {
    in_chain_ = *outcome != EnsureOutcome::kNoConfig;
    last_error_ = in_chain_ ? ""
                            : absl::StrCat("no CNI network configuration in \"",
                                           options_.cni_conf_dir, "\" yet");
    if (*outcome == EnsureOutcome::kInserted) inserts_.Inc();
    if (*outcome == EnsureOutcome::kRepaired) repairs_.Inc();
    if (*outcome != EnsureOutcome::kInChain) {
      LOG(INFO) << "meshlet-cni-agent: " << EnsureOutcomeName(*outcome)
                << (in_chain_ ? "" : absl::StrCat(": ", last_error_));
    }
  }
  if (was_in_chain != in_chain_) {
    LOG(INFO) << "meshlet-cni-agent: " << (in_chain_ ? "ready" : "not ready");
  }
  in_chain_gauge_.Set(in_chain_ ? 1 : 0);
  ReadPluginLog();
}

void NodeAgent::OnConfDirChanged() {
  if (!settle_->enabled()) settle_->Enable(options_.settle_time);
}

void NodeAgent::ReadPluginLog() {
  const std::string path = PluginLogFile(options_);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT) Failed("plugin_log", absl::ErrnoToStatus(errno, path));
    return;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    Failed("plugin_log", absl::ErrnoToStatus(errno, path));
    close(fd);
    return;
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < log_offset_) log_offset_ = 0;  // rotated or truncated by someone else
  std::string chunk;
  char buffer[64 << 10];
  while (log_offset_ + chunk.size() < size) {
    const ssize_t n = pread(fd, buffer, sizeof(buffer), log_offset_ + chunk.size());
    if (n <= 0) break;
    chunk.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  const size_t complete = chunk.rfind('\n') == std::string::npos ? 0 : chunk.rfind('\n') + 1;
  for (absl::string_view line :
       absl::StrSplit(absl::string_view(chunk).substr(0, complete), '\n')) {
    const absl::string_view outcome = OutcomeOfLogLine(line);
    if (outcome.empty()) continue;
    if (repairer_ != nullptr) repairer_->AddLogLine(line);
    auto counter = pods_.find(std::string(outcome));
    if (counter != pods_.end()) counter->second.Inc();
  }
  log_offset_ += complete;
  if (log_offset_ > options_.max_plugin_log_bytes) {
    if (rename(path.c_str(), (path + ".1").c_str()) != 0) {
      const int err = errno;
      Failed("plugin_log", absl::ErrnoToStatus(err, absl::StrCat("rotating ", path)));
      return;
    }
    log_offset_ = 0;
  }
}

void NodeAgent::ReadRotatedPluginLog() {
  const std::string path = absl::StrCat(PluginLogFile(options_), ".1");
  absl::StatusOr<std::string> text = ReadFile(path, options_.max_plugin_log_bytes * 2);
  if (!text.ok()) {
    if (!absl::IsNotFound(text.status())) Failed("plugin_log", text.status());
    return;
  }
  for (absl::string_view line : absl::StrSplit(*text, '\n')) repairer_->AddLogLine(line);
}

http::ServerResponse NodeAgent::Handle(const http::ServerRequest& request) {
  if (request.method() != "GET") return http::ServerResponse::Text(405, "GET only\n");
  if (request.path() == "/healthz") return http::ServerResponse::Text(200, "ok\n");
  if (request.path() == "/readyz") {
    return in_chain_
               ? http::ServerResponse::Text(200, "meshlet-cni is in the chain\n")
               : http::ServerResponse::Text(
                     503, absl::StrCat("meshlet-cni is not in the chain: ", last_error_, "\n"));
  }
  if (request.path() == "/metrics") {
    ReadPluginLog();  // the plugin's outcomes up to now, not only up to the last check
    http::ServerResponse response =
        http::ServerResponse::Text(200, FormatPrometheus(stats_.Snapshot()));
    response.headers.Set("content-type", kPrometheusContentType);
    return response;
  }
  return http::ServerResponse::Text(404, "/healthz, /readyz or /metrics\n");
}

absl::Status NodeAgent::Stop(bool uninstall) {
  if (repairer_) repairer_->Stop();
  if (periodic_) periodic_->Disable();
  if (settle_) settle_->Disable();
  if (watch_ != nullptr) uv_fs_event_stop(&watch_->handle);
  if (http_) http_->Shutdown();
  in_chain_ = false;
  if (!uninstall) return absl::OkStatus();
  return Uninstall();
}

absl::Status NodeAgent::Uninstall() {
  absl::Status status = installer_.Uninstall();
  if (!status.ok()) {
    Failed("uninstall", status);
    return status;
  }
  // The plugin is out of the chain: its binary, bundle and files can go.
  std::vector<std::string> paths = {InstalledPlugin(options_), CaFile(options_),
                                    TokenFile(options_)};
  for (const auto& [name, unused] : bundle_sizes_) {
    paths.push_back(absl::StrCat(InstalledBundle(options_), "/", name));
  }
  for (const std::string& path : paths) {
    if (unlink(path.c_str()) != 0 && errno != ENOENT) {
      const int err = errno;
      status = absl::ErrnoToStatus(err, absl::StrCat("cannot remove \"", path, "\""));
      Failed("uninstall", status);
    }
  }
  if (!bundle_sizes_.empty() && rmdir(InstalledBundle(options_).c_str()) != 0 && errno != ENOENT) {
    const int err = errno;
    status =
        absl::ErrnoToStatus(err, absl::StrCat("cannot remove \"", InstalledBundle(options_), "\""));
    Failed("uninstall", status);
  }
  LOG(INFO) << "meshlet-cni-agent: uninstalled";
  return status;
}

}  // namespace meshlet::cni

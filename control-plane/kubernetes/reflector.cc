#include "control-plane/kubernetes/reflector.h"

#include <algorithm>
#include <type_traits>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/http/client.h"
#include "control-plane/kubernetes/yaml_fields.h"

namespace meshlet::controlplane::kubernetes {

// The list/watch loop of one resource; the cache is the owner's.
class ReflectorBase::Impl {
 public:
  Impl(ReflectorBase& owner, event::Loop& loop, KubernetesApi& api, StatsRegistry& stats,
       const ReflectorOptions& options, ChangedFn changed)
      : owner_(owner),
        config_(owner.config_),
        api_(api),
        stats_(stats),
        options_(options),
        changed_(std::move(changed)),
        retry_timer_(loop, [this] { Resume(); }) {
    objects_gauge_ =
        Register<Gauge>("meshlet_cp_kubernetes_objects",
                        "Objects the control plane holds of each resource it watches in Kubernetes "
                        "(discovery: services, endpointslices, pods; policy: the meshlet.io and "
                        "Gateway API kinds).",
                        {});
  }
  ~Impl() { *alive_ = false; }

  void List() {
    owner_.BeginList();
    ListPage("");
  }

 private:
  template <typename T>
  T Register(const char* name, const char* help,
             std::vector<std::pair<std::string, std::string>> labels) {
    labels.insert(labels.begin(), {"resource", config_.resource});
    StatsShard& shard = stats_.shared_shard();
    if constexpr (std::is_same_v<T, Gauge>) {
      absl::StatusOr<Gauge> gauge = shard.RegisterGauge(name, help, labels);
      return gauge.ok() ? *gauge : Gauge();
    } else {
      absl::StatusOr<Counter> counter = shard.RegisterCounter(name, help, labels);
      return counter.ok() ? *counter : Counter();
    }
  }
  void CountList(absl::string_view result) {
    Register<Counter>("meshlet_cp_kubernetes_lists_total",
                      "List requests to the Kubernetes API (discovery and policy), by resource and "
                      "result (ok, or why "
                      "not: http_error, connect_failed, timeout, malformed, ...).",
                      {{"result", std::string(result)}})
        .Inc();
  }
  void CountWatch(absl::string_view result) {
    Register<Counter>("meshlet_cp_kubernetes_watches_total",
                      "Watches of the Kubernetes API (discovery and policy) that ended, by "
                      "resource and how: expired "
                      "(the server's timeout; resumed at once), gone (410: listed again), error "
                      "(an ERROR event), malformed (an event that is not one), or the request's "
                      "failure (closed, connect_failed, http_error, ...).",
                      {{"result", std::string(result)}})
        .Inc();
  }
  void CountEvent(absl::string_view type) {
    Register<Counter>("meshlet_cp_kubernetes_events_total",
                      "Watch events received from the Kubernetes API (discovery and policy), by "
                      "resource and type (added, "
                      "modified, deleted, bookmark, error).",
                      {{"type", absl::AsciiStrToLower(type)}})
        .Inc();
  }
  void SetAbsent(bool absent) {
    Register<Gauge>("meshlet_cp_kubernetes_resource_absent",
                    "1 while the API server does not serve an optional resource (its "
                    "CustomResourceDefinition is not installed); listed again every minute.",
                    {})
        .Set(absent ? 1 : 0);
  }

  // The path and the configured query, ready for more parameters ("...?" or "...?query&").
  std::string PathAndQuery() const {
    return config_.query.empty() ? absl::StrCat(config_.path, "?")
                                 : absl::StrCat(config_.path, "?", config_.query, "&");
  }

  void ListPage(const std::string& continue_token) {
    std::string path = absl::StrCat(PathAndQuery(), "limit=", options_.page_size);
    if (!continue_token.empty()) {
      absl::StrAppend(&path, "&continue=", http::QueryEscape(continue_token));
    }
    api_.Call({.method = "GET",
               .path = path,
               .accept = config_.list_accept,
               .forbidden_hint = config_.forbidden_hint,
               .timeout = options_.list_timeout},
              [this, alive = alive_, paged = !continue_token.empty()](ApiResult result) {
                if (*alive) OnPage(std::move(result), paged);
              });
  }

  void OnPage(ApiResult result, bool paged) {
    if (result.http_status == 410 && paged) {
      // The continue token expired: the list starts over, at the newest resourceVersion.
      CountList("gone");
      LOG(INFO) << "kubernetes: listing " << config_.resource << " again (the page token expired)";
      List();
      return;
    }
    if (result.http_status == 404 && config_.optional) {
      CountList("absent");
      OnAbsent();
      return;
    }
    if (!result.body.ok()) {
      CountList(result.result);
      Retry(result.body.status().message());
      return;
    }
    YAML::Node list;
    try {
      list = YAML::Load(*result.body);
    } catch (const YAML::Exception& e) {
      CountList("malformed");
      Retry(absl::StrCat("GET ", config_.path, ": the answer is not JSON: ", e.what()));
      return;
    }
    const YAML::Node items = NodeAt(list, "items");
    if (!list.IsMap() || !(items.IsSequence() || items.IsNull() || !items.IsDefined())) {
      CountList("malformed");
      Retry(absl::StrCat("GET ", config_.path, ": the answer is not a list"));
      return;
    }
    CountList("ok");
    if (items.IsSequence()) {
      for (const YAML::Node& item : items) {
        const std::string key = Key(item, config_.namespaced);
        if (!key.empty()) owner_.ListItem(key, item);
      }
    }
    const YAML::Node metadata = NodeAt(list, "metadata");
    const std::string next = ScalarAt(metadata, "continue");
    if (!next.empty()) {
      ListPage(next);
      return;
    }
    resource_version_ = ScalarAt(metadata, "resourceVersion");
    const size_t count = owner_.EndList();
    objects_gauge_.Set(static_cast<int64_t>(count));
    const bool first = !owner_.listed_;
    if (owner_.absent_) {
      LOG(INFO) << "kubernetes: " << config_.resource << " is served now";
      owner_.absent_ = false;
      SetAbsent(false);
    }
    owner_.listed_ = true;
    failures_ = 0;
    if (first) {
      LOG(INFO) << "kubernetes: listed " << count << " " << config_.resource
                << " at resourceVersion " << resource_version_;
    }
    changed_(/*relisted=*/true);
    Watch();
  }

  // The resource is not served: empty, and listed again later.
  void OnAbsent() {
    const bool was_absent = owner_.absent_;
    owner_.BeginList();
    owner_.EndList();
    objects_gauge_.Set(0);
    owner_.absent_ = true;
    owner_.listed_ = true;
    failures_ = 0;
    resource_version_.clear();
    if (!was_absent) {
      SetAbsent(true);
      LOG(INFO) << "kubernetes: " << config_.resource << " is not served (404 on " << config_.path
                << ": its CustomResourceDefinition is not installed); looking again every "
                << absl::FormatDuration(absl::FromChrono(options_.absent_retry));
      changed_(/*relisted=*/true);
    }
    retry_timer_.Enable(options_.absent_retry);
  }

  void Watch() {
    watch_outcome_.clear();
    const int64_t timeout_seconds =
        std::max<int64_t>(1, absl::ToInt64Seconds(options_.watch_timeout));
    const std::string path =
        absl::StrCat(PathAndQuery(), "watch=true&allowWatchBookmarks=true&resourceVersion=",
                     http::QueryEscape(resource_version_), "&timeoutSeconds=", timeout_seconds);
    api_.Call({.method = "GET",
               .path = path,
               .accept = config_.watch_accept,
               .forbidden_hint = config_.forbidden_hint,
               // The server ends the watch; the deadline only catches a server that went silent.
               .timeout = options_.watch_timeout + absl::Seconds(30),
               .on_line = [this, alive = alive_](
                              absl::string_view line) { return *alive && OnEvent(line); }},
              [this, alive = alive_](ApiResult result) {
                if (*alive) OnWatchEnd(std::move(result));
              });
  }

  // One watch event; false ends the watch (watch_outcome_ says why).
  bool OnEvent(absl::string_view line) {
    YAML::Node event;
    try {
      event = YAML::Load(std::string(line));
    } catch (const YAML::Exception& e) {
      watch_outcome_ = "malformed";
      watch_detail_ = absl::StrCat("a watch event is not JSON: ", e.what());
      return false;
    }
    const std::string type = ScalarAt(event, "type");
    const YAML::Node object = NodeAt(event, "object");
    if (!object.IsMap() || (type != "ADDED" && type != "MODIFIED" && type != "DELETED" &&
                            type != "BOOKMARK" && type != "ERROR")) {
      watch_outcome_ = "malformed";
      watch_detail_ = absl::StrCat("not a watch event: ", line.substr(0, 200));
      return false;
    }
    CountEvent(type);
    if (type == "ERROR") {
      // A Status: 410 Gone ("Expired", "too old resource version") means list again.
      const bool gone = ScalarAt(object, "code") == "410";
      watch_outcome_ = gone ? "gone" : "error";
      watch_detail_ = absl::StrCat("the watch failed: ", ScalarAt(object, "message"));
      return false;
    }
    const std::string version = ScalarAt(NodeAt(object, "metadata"), "resourceVersion");
    if (!version.empty()) resource_version_ = version;
    failures_ = 0;
    if (type == "BOOKMARK") return true;
    const std::string key = Key(object, config_.namespaced);
    if (key.empty()) return true;
    const bool changed = type == "DELETED" ? owner_.Remove(key) : owner_.Update(key, object);
    if (changed) {
      objects_gauge_.Set(static_cast<int64_t>(owner_.size()));
      changed_(/*relisted=*/false);
    }
    return true;
  }

  void OnWatchEnd(ApiResult result) {
    if (watch_outcome_.empty()) {
      if (result.http_status == 410) {
        watch_outcome_ = "gone";
        watch_detail_ = "resourceVersion too old (410)";
      } else if (result.body.ok()) {
        watch_outcome_ = "expired";
      } else {
        watch_outcome_ = result.result;
        watch_detail_ = std::string(result.body.status().message());
      }
    }
    CountWatch(watch_outcome_);
    if (watch_outcome_ == "expired") {
      Watch();
    } else if (watch_outcome_ == "gone") {
      LOG(INFO) << "kubernetes: listing " << config_.resource << " again: " << watch_detail_;
      List();
    } else if (result.http_status == 404 && config_.optional) {
      // The CustomResourceDefinition went away: absent until it comes back.
      List();
    } else {
      Retry(watch_detail_);
    }
  }

  // After a failure: the same step again after the backoff (a list if none completed yet, else
  // a watch from the last resourceVersion).
  void Retry(absl::string_view why) {
    const Duration delay = DoublingRetryDelay(++failures_, options_.retry_base, options_.retry_cap);
    LOG_EVERY_N_SEC(WARN, 10) << "kubernetes: " << config_.resource << ": " << why << " (again in "
                              << absl::FormatDuration(absl::FromChrono(delay)) << ")";
    retry_timer_.Enable(delay);
  }

  void Resume() {
    if (owner_.listed_ && !owner_.absent_) {
      Watch();
    } else {
      List();
    }
  }

  ReflectorBase& owner_;
  const ReflectorConfig& config_;
  KubernetesApi& api_;
  StatsRegistry& stats_;
  const ReflectorOptions options_;
  const ChangedFn changed_;
  event::Timer retry_timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  Gauge objects_gauge_;
  std::string resource_version_;
  int failures_ = 0;
  // Why the watch in progress ended, when it ended on its own side (an event); else empty.
  std::string watch_outcome_;
  std::string watch_detail_;
};

ReflectorBase::ReflectorBase(event::Loop& loop, KubernetesApi& api, StatsRegistry& stats,
                             const ReflectorOptions& options, ReflectorConfig config,
                             ChangedFn changed)
    : config_(std::move(config)) {
  impl_ = std::make_unique<Impl>(*this, loop, api, stats, options, std::move(changed));
}

ReflectorBase::~ReflectorBase() = default;

void ReflectorBase::Start() { impl_->List(); }

std::string ReflectorBase::Key(const YAML::Node& object, bool namespaced) {
  const YAML::Node metadata = NodeAt(object, "metadata");
  const std::string namespace_ = ScalarAt(metadata, "namespace");
  const std::string name = ScalarAt(metadata, "name");
  if (name.empty()) return "";
  if (!namespaced) return name;
  if (namespace_.empty()) return "";
  return absl::StrCat(namespace_, "/", name);
}

}  // namespace meshlet::controlplane::kubernetes

#pragma once

// Reflector: one Kubernetes resource (a path such as /api/v1/services or
// /apis/gateway.networking.k8s.io/v1/httproutes, every namespace) read through the API server and
// kept current in a cache, the way Kubernetes' own clients do it:
//   list   GET <path>?limit=<page size>, then &continue=<token> until the last page; the list's
//          metadata.resourceVersion is where the watch starts. A continue token that expired
//          (410) starts the list over.
//   watch  GET <path>?watch=true&resourceVersion=<rv>&allowWatchBookmarks=true&timeoutSeconds=T:
//          ADDED/MODIFIED/DELETED change the cache, BOOKMARK only moves the resourceVersion, and
//          every event's object carries the resourceVersion to resume from. When the server
//          ends the watch (timeoutSeconds), a new one starts at once from the last
//          resourceVersion; when it drops (connection lost, malformed event, an ERROR event
//          other than 410), after a backoff (retry_base doubling to retry_cap), from the same
//          place; when the resourceVersion is too old (410 Gone, as an HTTP status or an ERROR
//          event), the resource is listed again and the cache replaced.
// A resource the API server does not serve (404 on the list: a CustomResourceDefinition that is
// not installed), when ReflectorConfig::optional, counts as listed and empty ("absent"): logged
// once, shown by meshlet_cp_kubernetes_resource_absent{resource}, and listed again every
// absent_retry until it appears.
//
// ReflectorBase does the requests; Reflector<T> keeps the cache of what `parse` makes of each
// object (T must be copyable and equality-comparable: an update that parses to an equal value
// changes nothing and is not reported).
//
// Stats: meshlet_cp_kubernetes_lists_total{resource,result},
// meshlet_cp_kubernetes_watches_total{resource,result} (how each watch ended),
// meshlet_cp_kubernetes_events_total{resource,type}, meshlet_cp_kubernetes_objects{resource},
// meshlet_cp_kubernetes_resource_absent{resource} (optional resources).
//
// Threading: the loop thread. The client, stats and callbacks must outlive the reflector;
// destroying it stops its list or watch and drops what is in flight. `changed` is called on the
// loop thread, never from inside Start().

#include <yaml-cpp/yaml.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/event/timer.h"
#include "common/stats/stats.h"
#include "control-plane/kubernetes/api_client.h"

namespace meshlet::controlplane::kubernetes {

struct ReflectorOptions {
  // timeoutSeconds of each watch: the server ends it then and a new one starts.
  absl::Duration watch_timeout = absl::Minutes(5);
  // Deadline of one list page.
  absl::Duration list_timeout = absl::Seconds(60);
  int page_size = 500;
  Duration retry_base = std::chrono::milliseconds(500);
  Duration retry_cap = std::chrono::seconds(30);
  // How often an absent optional resource (404) is listed again.
  Duration absent_retry = std::chrono::seconds(60);
};

// Accept headers of lists and watches that read objects as metadata only (PartialObjectMetadata:
// names, labels, annotations); an API server that cannot answer so sends whole objects.
inline constexpr char kMetadataListAccept[] =
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
inline constexpr char kMetadataWatchAccept[] =
    "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";

struct ReflectorConfig {
  std::string resource;  // the stats' and logs' name: "services", "httproutes.gateway..."
  std::string path;      // "/api/v1/services"
  // Added to every list and watch (escaped already): "fieldSelector=metadata.name%3Dx" reflects
  // only the objects it selects. Empty: none.
  std::string query;
  // The Accept headers of lists and watches (empty: JSON).
  std::string list_accept;
  std::string watch_accept;
  // Added to a 401/403 message: the permission the control plane lacks.
  std::string forbidden_hint;
  // Cluster-wide objects are kept by name alone; namespaced ones without a namespace are
  // left out.
  bool namespaced = true;
  // 404 on the list: absent (above), not a failure.
  bool optional = false;
};

class ReflectorBase {
 public:
  // Called when the cache changed; `relisted` when a whole list replaced it (after the first
  // list, a 410, or an absent resource appearing or disappearing).
  using ChangedFn = std::function<void(bool relisted)>;

  ReflectorBase(event::Loop& loop, KubernetesApi& api, StatsRegistry& stats,
                const ReflectorOptions& options, ReflectorConfig config, ChangedFn changed);
  virtual ~ReflectorBase();
  ReflectorBase(const ReflectorBase&) = delete;
  ReflectorBase& operator=(const ReflectorBase&) = delete;

  void Start();
  // Listed once (or found absent).
  bool listed() const { return listed_; }
  // The last list answered 404 (optional resources only).
  bool absent() const { return absent_; }
  const ReflectorConfig& config() const { return config_; }

  // "namespace/name" ("name" for a cluster-wide resource), or empty for an object without
  // them (left out).
  static std::string Key(const YAML::Node& object, bool namespaced = true);

 protected:
  // The cache, kept by Reflector<T>. A list's items arrive between BeginList and EndList (which
  // replaces the cache and returns its size); Update returns whether the cached value changed.
  virtual void BeginList() = 0;
  virtual void ListItem(const std::string& key, const YAML::Node& object) = 0;
  virtual size_t EndList() = 0;
  virtual bool Update(const std::string& key, const YAML::Node& object) = 0;
  virtual bool Remove(const std::string& key) = 0;
  virtual size_t size() const = 0;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
  const ReflectorConfig config_;
  bool listed_ = false;
  bool absent_ = false;
  friend class Impl;
};

template <typename T>
class Reflector final : public ReflectorBase {
 public:
  // nullopt: an object this reflector leaves out (and drops from the cache).
  using ParseFn = std::function<std::optional<T>(const YAML::Node& object)>;

  Reflector(event::Loop& loop, KubernetesApi& api, StatsRegistry& stats,
            const ReflectorOptions& options, ReflectorConfig config, ParseFn parse,
            ChangedFn changed)
      : ReflectorBase(loop, api, stats, options, std::move(config), std::move(changed)),
        parse_(std::move(parse)) {}
  ~Reflector() override = default;

  const std::map<std::string, T>& objects() const { return objects_; }

  // What changed in the cache since the last TakeChanges(): the keys of objects added, changed
  // or removed by watch events, or `relisted` when a list replaced the whole cache since (keys
  // then empty: anything may have changed). Starts relisted. Kept only for a reflector whose
  // owner calls this (after its first call), so an unread set cannot grow.
  struct Changes {
    bool relisted = false;
    std::set<std::string> keys;
  };
  Changes TakeChanges() {
    tracking_ = true;
    Changes out{.relisted = relisted_, .keys = std::move(changed_keys_)};
    relisted_ = false;
    changed_keys_.clear();
    return out;
  }

 private:
  void BeginList() override { pending_.clear(); }
  void ListItem(const std::string& key, const YAML::Node& object) override {
    std::optional<T> parsed = parse_(object);
    if (parsed.has_value()) pending_[key] = *std::move(parsed);
  }
  size_t EndList() override {
    objects_ = std::move(pending_);
    pending_.clear();
    relisted_ = true;
    changed_keys_.clear();
    return objects_.size();
  }
  bool Update(const std::string& key, const YAML::Node& object) override {
    std::optional<T> parsed = parse_(object);
    if (!parsed.has_value()) return Remove(key);
    auto [it, inserted] = objects_.try_emplace(key, *parsed);
    if (!inserted) {
      if (it->second == *parsed) return false;
      it->second = *std::move(parsed);
    }
    KeyChanged(key);
    return true;
  }
  bool Remove(const std::string& key) override {
    if (objects_.erase(key) == 0) return false;
    KeyChanged(key);
    return true;
  }
  void KeyChanged(const std::string& key) {
    if (tracking_ && !relisted_) changed_keys_.insert(key);
  }
  size_t size() const override { return objects_.size(); }

  const ParseFn parse_;
  std::map<std::string, T> objects_;
  std::map<std::string, T> pending_;  // pages of a list in progress
  bool tracking_ = false;             // TakeChanges() was called
  bool relisted_ = true;
  std::set<std::string> changed_keys_;
};

}  // namespace meshlet::controlplane::kubernetes

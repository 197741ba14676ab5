#pragma once

// NamedObjects<T>: objects of one namespaced core Kubernetes resource (Secrets, ConfigMaps) read
// by name, each through a watch of its own (a Reflector on its namespace's collection with
// fieldSelector metadata.name, the way the kubelet watches a pod's Secrets), started and stopped
// as SetReferences changes the set. Only the objects referenced are read, so the control plane
// needs get, list and watch on the resource and nothing more is held in memory.
//
// Each object is parsed into a T, whose `error` says why it cannot be used (empty: it can).
// `update` gets every object found whenever one changes: first once every object referenced at
// the first SetReferences has been listed (an absent one is left out), then on every change; an
// object referenced later is left out until its first list. Objects that cannot be used are
// logged (rate-limited) with their error.
//
// Stats: the gauge Resource::gauge{state="served"|"invalid"|"missing"} (the objects referenced,
// by what was found), and the Reflectors' (resource "<singular> NAMESPACE/NAME").
//
// Threading: the loop thread. The API client, stats and callback must outlive this.

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/config/field_path.h"
#include "common/event/loop.h"
#include "common/stats/or_discard.h"
#include "common/stats/stats.h"
#include "control-plane/kubernetes/api_client.h"
#include "control-plane/kubernetes/reflector.h"

namespace meshlet::controlplane {

template <typename T>
class NamedObjects {
 public:
  using Key = std::pair<std::string, std::string>;  // (namespace, name)
  using Map = std::map<Key, T>;
  struct Resource {
    std::string singular;        // "secret"
    std::string plural;          // "secrets": /api/v1/namespaces/NS/secrets
    std::string forbidden_hint;  // said when the API server refuses the watch
    std::function<T(const YAML::Node&)> parse;
    std::string gauge;       // "meshlet_cp_gateway_secrets"
    std::string gauge_help;  // its help text
    std::string log_name;    // "gateway: Secret": how a log line names an object
  };
  using UpdateFn = std::function<void(const Map& found)>;

  NamedObjects(event::Loop& loop, kubernetes::KubernetesApi& api, StatsRegistry& stats,
               const kubernetes::ReflectorOptions& options, Resource resource, UpdateFn update)
      : loop_(loop),
        api_(api),
        stats_(stats),
        options_(options),
        resource_(std::move(resource)),
        update_(std::move(update)) {
    auto gauge = [&](const char* state) {
      return OrDiscard(stats_.shared_shard().RegisterGauge(resource_.gauge, resource_.gauge_help,
                                                           {{"state", state}}),
                       resource_.gauge);
    };
    served_ = gauge("served");
    invalid_ = gauge("invalid");
    missing_ = gauge("missing");
  }
  NamedObjects(const NamedObjects&) = delete;
  NamedObjects& operator=(const NamedObjects&) = delete;

  // The objects to read: watches start for new ones, stop for those no longer named (and they
  // leave the map). A name Kubernetes cannot hold names no object and is not read.
  void SetReferences(const std::set<Key>& references) {
    bool changed = false;
    for (auto it = watches_.begin(); it != watches_.end();) {
      if (references.contains(it->first)) {
        ++it;
      } else {
        it = watches_.erase(it);
        changed = true;
      }
    }
    for (const Key& key : references) {
      if (watches_.contains(key)) continue;
      if (!config::IsDnsSubdomain(key.first) || !config::IsDnsSubdomain(key.second)) continue;
      const auto& [namespace_, name] = key;
      auto watch = std::make_unique<Watch>(
          loop_, api_, stats_, options_,
          kubernetes::ReflectorConfig{
              .resource = absl::StrCat(resource_.singular, " ", namespace_, "/", name),
              .path = absl::StrCat("/api/v1/namespaces/", namespace_, "/", resource_.plural),
              .query = absl::StrCat("fieldSelector=metadata.name%3D", name),
              .forbidden_hint = resource_.forbidden_hint},
          [parse = resource_.parse](const YAML::Node& object) {
            return std::optional<T>(parse(object));
          },
          [this](bool) { Changed(); });
      watch->Start();
      watches_.emplace(key, std::move(watch));
      changed = true;
    }
    if (changed || !published_) Changed();
  }

 private:
  using Watch = kubernetes::Reflector<T>;

  void Changed() {
    if (!published_) {
      for (const auto& [key, watch] : watches_) {
        if (!watch->listed()) return;
      }
    }
    Map found;
    int64_t served = 0, invalid = 0, missing = 0;
    for (const auto& [key, watch] : watches_) {
      auto it = watch->objects().find(absl::StrCat(key.first, "/", key.second));
      if (it == watch->objects().end()) {
        missing += watch->listed() ? 1 : 0;
        continue;
      }
      (it->second.error.empty() ? served : invalid) += 1;
      if (!it->second.error.empty()) {
        LOG_EVERY_N_SEC(WARN, 10) << resource_.log_name << " " << key.first << "/" << key.second
                                  << " cannot be used: " << it->second.error;
      }
      found.emplace(key, it->second);
    }
    served_.Set(served);
    invalid_.Set(invalid);
    missing_.Set(missing);
    published_ = true;
    update_(found);
  }

  event::Loop& loop_;
  kubernetes::KubernetesApi& api_;
  StatsRegistry& stats_;
  const kubernetes::ReflectorOptions options_;
  const Resource resource_;
  const UpdateFn update_;
  std::map<Key, std::unique_ptr<Watch>> watches_;
  bool published_ = false;
  Gauge served_, invalid_, missing_;
};

}  // namespace meshlet::controlplane

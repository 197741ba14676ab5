#include "control-plane/telemetry/config_events.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace meshlet::controlplane::telemetry {
namespace {

using google::protobuf::ListValue;
using google::protobuf::Struct;
using google::protobuf::Value;

// "reviews" in namespace shop → "reviews.shop"; "reviews.shop.svc.cluster.local" → "reviews.shop".
std::string ServiceName(absl::string_view ref, absl::string_view namespace_) {
  std::vector<absl::string_view> labels = absl::StrSplit(ref, '.');
  if (labels.size() == 1)
    return absl::StrCat(ref, ".", namespace_.empty() ? "default" : namespace_);
  return absl::StrCat(labels[0], ".", labels[1]);
}

bool IsServiceRef(absl::string_view text) {
  if (text.empty() || text.size() > 253 || text == "*") return false;
  for (char c : text) {
    if (!(absl::ascii_isalnum(c) || c == '-' || c == '.')) return false;
  }
  return true;
}

// Collects the names under the keys that name services (see the header), anywhere in `v`.
void Collect(const Value& v, bool in_refs, absl::string_view namespace_, size_t max,
             std::vector<std::string>& out);

void CollectStruct(const Struct& s, bool in_refs, absl::string_view namespace_, size_t max,
                   std::vector<std::string>& out) {
  for (const auto& [key, value] : s.fields()) {
    if (out.size() >= max) return;
    const bool names_service = key == "target" || key == "service" || key == "host" ||
                               key == "hosts" || (in_refs && key == "name");
    if (names_service) {
      auto add = [&](const Value& item) {
        if (item.kind_case() == Value::kStringValue && IsServiceRef(item.string_value()) &&
            out.size() < max) {
          out.push_back(ServiceName(item.string_value(), namespace_));
        }
      };
      if (value.kind_case() == Value::kListValue) {
        for (const Value& item : value.list_value().values()) add(item);
      } else {
        add(value);
      }
    }
    if (key == "metadata") continue;
    Collect(value, key == "parentRefs" || key == "backendRefs", namespace_, max, out);
  }
}

void Collect(const Value& v, bool in_refs, absl::string_view namespace_, size_t max,
             std::vector<std::string>& out) {
  if (v.kind_case() == Value::kStructValue) {
    CollectStruct(v.struct_value(), in_refs, namespace_, max, out);
  } else if (v.kind_case() == Value::kListValue) {
    for (const Value& item : v.list_value().values()) Collect(item, in_refs, namespace_, max, out);
  }
}

// "httproutes" → "HTTPRoute" is the policy library's; here only the plural's comparison with a
// store kind is needed: "HTTPRoute" → "httproutes", "TrafficPolicy" → "trafficpolicies", a
// Gateway API kind's store kind ("GatewayHTTPRoute") also as its own kind's plural.
bool PluralNames(absl::string_view plural, absl::string_view store_kind) {
  auto plural_of = [](absl::string_view kind) {
    std::string lower = absl::AsciiStrToLower(kind);
    if (absl::EndsWith(lower, "y")) return absl::StrCat(lower.substr(0, lower.size() - 1), "ies");
    if (absl::EndsWith(lower, "s")) return absl::StrCat(lower, "es");
    return absl::StrCat(lower, "s");
  };
  if (plural == plural_of(store_kind)) return true;
  return absl::StartsWith(store_kind, "Gateway") && store_kind != "Gateway" &&
         plural == plural_of(store_kind.substr(7));
}

const char* TypeName(ConfigEvent::Type type) {
  return type == ConfigEvent::Type::kPolicy ? "policy" : "push";
}

}  // namespace

std::vector<std::string> ServicesNamedBy(absl::string_view kind, absl::string_view namespace_,
                                         absl::string_view name, absl::string_view body,
                                         size_t max) {
  std::vector<std::string> out;
  if (kind == "Service") {
    out.push_back(ServiceName(name, namespace_));
  } else {
    Struct parsed;
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = true;
    if (google::protobuf::util::JsonStringToMessage(
            google::protobuf::StringPiece(body.data(), body.size()), &parsed, options)
            .ok()) {
      CollectStruct(parsed, /*in_refs=*/false, namespace_, max, out);
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

ConfigEvents::ConfigEvents(const Clock& clock, ConfigEventsLimits limits, StatsRegistry* stats)
    : clock_(clock), limits_(limits) {
  if (stats == nullptr) return;
  auto counter = [stats](const char* name, const char* help) {
    absl::StatusOr<Counter> c = stats->shared_shard().RegisterCounter(name, help);
    CHECK_OK(c);
    return *c;
  };
  recorded_ = counter("meshlet_cp_config_events_total",
                      "Configuration changes recorded for the dashboard's markers (policy "
                      "writes and pushed versions).");
  dropped_ = counter("meshlet_cp_config_events_dropped_total",
                     "Configuration-change markers dropped before their retention because more "
                     "than --config-events-max were kept.");
  unmatched_writes_ = counter("meshlet_cp_config_events_unmatched_writes_total",
                              "API writes whose store change was not seen within 10 s, so no "
                              "marker names who made them.");
}

ConfigEvents::~ConfigEvents() = default;

void ConfigEvents::Trim(absl::Time now) {
  const absl::Time oldest = now - absl::FromChrono(limits_.retention);
  while (!events_.empty() && events_.front().time < oldest) events_.pop_front();
  while (events_.size() > limits_.max_events) {
    events_.pop_front();
    dropped_.Inc();
  }
  const absl::Time match_from = now - absl::FromChrono(limits_.match_within);
  while (!pending_writes_.empty() && (pending_writes_.front().time < match_from ||
                                      pending_writes_.size() > limits_.max_pending_writes)) {
    pending_writes_.pop_front();
    unmatched_writes_.Inc();
  }
}

void ConfigEvents::Push(ConfigEvent event) {
  recorded_.Inc();
  const absl::Time now = event.time;
  events_.push_back(std::move(event));
  Trim(now);
}

void ConfigEvents::AddPolicyChange(std::string kind, std::string namespace_, std::string name,
                                   bool deleted, bool created, int64_t revision,
                                   std::vector<std::string> services) {
  ConfigEvent event;
  event.type = ConfigEvent::Type::kPolicy;
  event.time = clock_.WallNow();
  event.revision = revision;
  event.verb = deleted ? "deleted" : created ? "created" : "updated";
  if (services.size() > limits_.max_services) services.resize(limits_.max_services);
  event.services = std::move(services);
  for (auto it = pending_writes_.begin(); it != pending_writes_.end(); ++it) {
    if (it->name == name && it->namespace_ == namespace_ && PluralNames(it->resource, kind)) {
      event.who = std::move(it->who);
      event.role = std::move(it->role);
      pending_writes_.erase(it);
      break;
    }
  }
  event.kind = std::move(kind);
  event.namespace_ = std::move(namespace_);
  event.name = std::move(name);
  Push(std::move(event));
}

void ConfigEvents::AddWrite(absl::string_view resource, absl::string_view namespace_,
                            absl::string_view name, absl::string_view who, absl::string_view role) {
  const absl::Time now = clock_.WallNow();
  const absl::Time match_from = now - absl::FromChrono(limits_.match_within);
  // The store event first (the file store reports it on the writer's thread, before the answer):
  // the newest event of that object without a who.
  for (auto it = events_.rbegin(); it != events_.rend() && it->time >= match_from; ++it) {
    if (it->type == ConfigEvent::Type::kPolicy && it->who.empty() && it->name == name &&
        it->namespace_ == namespace_ && PluralNames(resource, it->kind)) {
      it->who = std::string(who);
      it->role = std::string(role);
      return;
    }
  }
  // Else the store event is still on its way (etcd's watch): it takes this when it comes.
  pending_writes_.push_back({std::string(resource), std::string(namespace_), std::string(name),
                             std::string(who), std::string(role), now});
  Trim(now);
}

void ConfigEvents::AddPush(int64_t revision, size_t proxies) {
  ConfigEvent event;
  event.type = ConfigEvent::Type::kPush;
  event.time = clock_.WallNow();
  event.revision = revision;
  event.proxies = proxies;
  Push(std::move(event));
}

std::string ConfigEvents::EventsJson(absl::Time from, absl::Time to,
                                     const std::vector<std::string>& services) const {
  std::string out = "[";
  bool first = true;
  for (const ConfigEvent& e : events_) {
    if (e.time < from || e.time >= to) continue;
    if (e.type == ConfigEvent::Type::kPolicy && !services.empty() && !e.services.empty() &&
        std::none_of(services.begin(), services.end(), [&](const std::string& s) {
          return std::find(e.services.begin(), e.services.end(), s) != e.services.end();
        })) {
      continue;
    }
    if (!first) out += ",";
    first = false;
    absl::StrAppend(&out, R"({"type":")", TypeName(e.type), R"(","time":)",
                    absl::FormatTime("%s.%E3f", e.time, absl::UTCTimeZone()), R"(,"revision":)",
                    e.revision);
    if (e.type == ConfigEvent::Type::kPush) {
      absl::StrAppend(&out, R"(,"proxies":)", e.proxies, "}");
      continue;
    }
    absl::StrAppend(&out, R"(,"kind":)", JsonQuote(e.kind), R"(,"namespace":)",
                    JsonQuote(e.namespace_), R"(,"name":)", JsonQuote(e.name), R"(,"verb":)",
                    JsonQuote(e.verb), R"(,"services":)");
    AppendJsonStringArray(&out, e.services);
    absl::StrAppend(&out, R"(,"whoKnown":)", e.who.empty() ? "false" : "true");
    if (!e.who.empty()) {
      absl::StrAppend(&out, R"(,"who":)", JsonQuote(e.who), R"(,"role":)", JsonQuote(e.role));
    }
    out += "}";
  }
  out += "]";
  return out;
}

}  // namespace meshlet::controlplane::telemetry

// XdsClient: construction (stats handles), the static part of the configuration, and what the
// client shows of itself (StatusJson for the admin /config_dump). The other concerns live in the
// xds_client_*.cc files (xds_client_internal.h lists them).

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/base/time_text.h"
#include "common/stats/must_stat.h"
#include "sidecar/config/xds_client.h"
#include "sidecar/config/xds_client_internal.h"
#include "xds/capabilities.h"

namespace meshlet::sidecar::config {

using xds_client_internal::kClusters;
using xds_client_internal::kEndpoints;
using xds_client_internal::kRoutes;
using xds_client_internal::kSecrets;
using xds_client_internal::WithTypeList;

namespace {

// Appends `names` as JSON strings separated by commas.
template <typename Names>
void AppendNames(std::string* out, const Names& names) {
  bool first = true;
  for (const std::string& name : names) {
    if (!first) *out += ",";
    first = false;
    AppendJsonString(out, name);
  }
}

// `options` with capability on-demand left out of the node unless the stream is delta: lookups
// need one (ADR 0086), and a node that announced it over state of the world would be given
// listeners that look up.
XdsClientOptions WithCapabilitiesOfTheStream(XdsClientOptions options) {
  if (options.delta) return options;
  auto* names = options.node.mutable_capabilities();
  const absl::string_view on_demand = xds::Info(xds::Capability::kOnDemand).name;
  names->erase(std::remove(names->begin(), names->end(), on_demand), names->end());
  return options;
}

}  // namespace

XdsClient::XdsClient(event::Loop& loop, XdsClientOptions options, ResourceSet static_resources,
                     ApplyFn apply, StatsShard& stats, Random& random)
    : loop_(loop),
      options_(WithCapabilitiesOfTheStream(std::move(options))),
      apply_(std::move(apply)),
      backoff_(
          resilience::BackoffConfig{.base = options_.backoff_base, .cap = options_.backoff_cap},
          random) {
  constexpr absl::string_view kUpdatesHelp = "xDS responses the sidecar applied or refused.";
  accepted_counter_ = MustStat(
      stats.RegisterCounter("meshlet_xds_client_updates_total", kUpdatesHelp, {{"result", "ack"}}));
  rejected_counter_ = MustStat(stats.RegisterCounter("meshlet_xds_client_updates_total",
                                                     kUpdatesHelp, {{"result", "nack"}}));
  stream_counter_ = MustStat(stats.RegisterCounter("meshlet_xds_client_streams_total",
                                                   "Discovery streams opened (reconnects + 1)."));
  persist_errors_ = MustStat(
      stats.RegisterCounter("meshlet_xds_client_cache_write_errors_total",
                            "Failures writing the last good configuration to the cache dir."));
  cache_writes_counter_ = MustStat(
      stats.RegisterCounter("meshlet_xds_client_cache_writes_total",
                            "Times the last good configuration was written to the cache dir."));
  HistogramOptions seconds;
  seconds.exposition_divisor = 1e6;
  for (size_t i = 0; i < xds::kResourceTypeCount; ++i) {
    apply_seconds_[i] = MustStat(stats.RegisterHistogram(
        "meshlet_xds_client_apply_seconds",
        "Time the main thread took to handle one xDS response, by type: parse it, build, "
        "validate and publish the configuration, save it (cache dir), answer.",
        {{"type", xds::kResourceTypeLabels[i]}}, seconds));
  }
  for (size_t i = 0; i < xds::kResourceTypeCount; ++i) {
    last_update_gauges_[i] = MustStat(stats.RegisterGauge(
        "meshlet_xds_client_last_update_timestamp_seconds",
        "When a response of the type was last applied (Unix seconds; 0: none yet): time() minus "
        "it is how old the configuration of that type is.",
        {{"type", xds::kResourceTypeLabels[i]}}, GaugeMerge::kGlobal));
  }
  connected_gauge_ = MustStat(stats.RegisterGauge(
      "meshlet_xds_client_connected",
      "1 while the discovery stream is up (a response arrived on it).", {}, GaugeMerge::kGlobal));
  for (size_t i : {kSecrets, kClusters, kEndpoints, kRoutes}) {
    retained_gauges_[i] = MustStat(stats.RegisterGauge(
        "meshlet_xds_client_retained_resources",
        "Resources the control plane removed that run on because the configuration names them.",
        {{"type", xds::kResourceTypeLabels[i]}}, GaugeMerge::kGlobal));
  }
  unmatched_gauge_ = MustStat(stats.RegisterGauge(
      "meshlet_xds_client_unmatched_load_assignments",
      "Load assignments held for a cluster the configuration does not have (left out).", {},
      GaugeMerge::kGlobal));
  SetStaticResources(std::move(static_resources));
}

void XdsClient::SetStaticResources(ResourceSet static_resources) {
  static_resources_ = std::move(static_resources);
  for (size_t i = 0; i < xds::kResourceTypeCount; ++i) {
    WithTypeList(i, [&](auto member, auto name_of) {
      static_names_[i].clear();
      for (const auto& m : static_resources_.*member) static_names_[i].insert(name_of(m));
    });
  }
}

XdsClient::~XdsClient() { Stop(); }

std::string XdsClient::StatusJson() const {
  std::string out = "{\"server\":";
  AppendJsonString(&out, CurrentServer().ToString());
  absl::StrAppend(&out, ",\"mode\":\"", options_.delta ? "delta" : "sotw",
                  "\",\"connected\":", connected() ? "true" : "false", ",\"connected_since\":");
  AppendJsonString(&out, connected() ? Rfc3339Text(connected_since_) : "");
  absl::StrAppend(&out, ",\"streams_started\":", streams_started_,
                  ",\"reconnect_attempt\":", attempt_, ",\"last_stream_error\":");
  AppendJsonString(&out, last_stream_error_);
  absl::StrAppend(&out, ",\"updates_accepted\":", accepted_, ",\"updates_refused\":", rejected_,
                  ",\"version\":");
  AppendJsonString(&out, CombinedVersion());
  out += ",\"types\":[";
  for (size_t i = 0; i < xds::kResourceTypeCount; ++i) {
    const TypeState& type = types_[i];
    if (i > 0) out += ",";
    out += "{\"type\":";
    AppendJsonString(&out, xds::kResourceTypeLabels[i]);
    out += ",\"version\":";
    AppendJsonString(&out, type.version);
    out += ",\"nonce\":";
    AppendJsonString(&out, type.nonce);
    absl::StrAppend(&out, ",\"resources\":", type.entries.size(), ",\"retained\":[");
    AppendNames(&out, retained(i));
    if (i == kEndpoints) {
      out += "],\"unmatched\":[";
      AppendNames(&out, plan_.unmatched);
    }
    out += "],\"last_update\":";
    AppendJsonString(&out, Rfc3339Text(type.last_update));
    out += ",\"last_error\":";
    AppendJsonString(&out, type.last_error);
    out += "}";
  }
  out += "]}";
  return out;
}

}  // namespace meshlet::sidecar::config

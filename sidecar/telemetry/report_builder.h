#pragma once

// ReportBuilder: turns the stats registry's snapshot into golden-metrics reports
// (xds/metrics.proto) for MetricsReporter, sending only what changed and in messages of bounded
// size, so a report's cost follows the sidecar's traffic, not the number of configured clusters.
//
// - A cluster is in a report when any of its reported values (request counts, bytes,
//   connections, requests in flight) differs from what the control plane last accepted for it, or
//   when it has requests in flight. An idle cluster is left out; the control plane keeps its last
//   values, so its windows show no traffic, as they should. Values stay cumulative.
// - The clusters are split into parts of at most `max_clusters` clusters and about `max_bytes`
//   serialized bytes each. Every part carries the whole header; part i's time_unix_nano is the
//   read time plus i nanoseconds, so the parts of one read are strictly ordered and a control
//   plane never takes a later part for a replay of an earlier one. Parts must be sent in order.
// - There is always at least one part, empty when nothing changed: it tells the control plane the
//   sidecar is alive.
//
// Inbound clusters ("inbound|...", the local application) are left out: the caller's sidecar
// reports that edge.
//
// Route rules (meshlet_route_rq_duration_seconds, route/route_stats.h) go the same way, as
// RouteRuleStats after the clusters: in a report only when changed, each counting as a cluster
// towards a part's `max_clusters` and its bytes towards `max_bytes`.
//
// Threading: one thread (the reporter's); not thread-safe.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "common/stats/stats.h"
#include "xds/metrics.pb.h"

namespace meshlet::sidecar::telemetry {

struct ReportSplitOptions {
  // Per part. The control plane takes at most --golden-max-clusters-per-report (1000) clusters and
  // --report-max-bytes (256 KiB) per report by default; a part stays well inside both.
  size_t max_clusters = 500;
  size_t max_bytes = 128 * 1024;
};

class ReportBuilder {
 public:
  explicit ReportBuilder(ReportSplitOptions options = {}) : options_(options) {}

  // The stat families Build reads: a snapshot of these alone (StatsRegistry::Snapshot(kFamilies))
  // builds the same report as a snapshot of the whole registry, without a copy of it all.
  static constexpr absl::string_view kFamilies[] = {
      "meshlet_upstream_rq_duration_seconds", "meshlet_upstream_tx_bytes_total",
      "meshlet_upstream_rx_bytes_total",      "meshlet_upstream_cx_total",
      "meshlet_upstream_rq_active",           "meshlet_route_rq_duration_seconds"};

  // The parts for `snapshot`, read at `time_unix_nano`; the caller fills in the rest of the
  // header (node, service, instance, start time) of each. A cluster bigger than max_bytes alone
  // still goes, in a part of its own.
  std::vector<metrics::v1::MetricsReport> Build(const StatsSnapshot& snapshot,
                                                int64_t time_unix_nano) const;

  // The control plane accepted `part`: its clusters are left out of later reports until they
  // change. A part that was not accepted is simply not passed here, so its clusters go again.
  void Accepted(const metrics::v1::MetricsReport& part);

  // Clusters and route rules whose accepted values are remembered (those that ever carried
  // traffic).
  size_t known_clusters() const { return accepted_.size(); }

 private:
  // What a cluster's values add up to; any change in them means the cluster had traffic.
  struct Fingerprint {
    uint64_t requests = 0;
    uint64_t latency_sum = 0;
    uint64_t tx_bytes = 0;
    uint64_t rx_bytes = 0;
    uint64_t cx_total = 0;
    int64_t rq_active = 0;
    bool operator==(const Fingerprint&) const = default;
  };
  static Fingerprint Of(const metrics::v1::ClusterStats& cluster);
  static Fingerprint Of(const metrics::v1::RouteRuleStats& route);
  // A route rule's key: its identity, apart from any cluster name's.
  static uint64_t KeyOf(const metrics::v1::RouteRuleStats& route);
  // What is remembered of a cluster's name and of its Fingerprint: 64-bit hashes, 16 bytes a
  // cluster instead of its name and 48 bytes of values. Two names hashing alike share an entry,
  // so each is sent again whenever the other was accepted last (never left out wrongly); a
  // cluster's changed values are left out only if they hash like the accepted ones (odds 2^-64
  // per report), until its next change.
  static uint64_t KeyOf(absl::string_view name);
  static uint64_t HashOf(const Fingerprint& fingerprint);

  const ReportSplitOptions options_;
  absl::flat_hash_map<uint64_t, uint64_t> accepted_;
};

}  // namespace meshlet::sidecar::telemetry

// What TlsContexts costs per mutual-TLS cluster: a snapshot of N clusters on the workload
// certificate, each expecting its own upstream SPIFFE id (as a mesh with mTLS on pushes them),
// applied once (heap bytes and time per cluster), applied again unchanged, after a rotation of
// the workload certificate, and with one cluster added to the N held (an on-demand lookup's
// response: microseconds per apply, the mean of kAdditions).
//
//   bazel run -c opt //sidecar/server:tls_contexts_benchmark -- 10 1000
//
// Heap bytes are glibc's mallinfo2 in-use bytes (BoringSSL allocates through malloc); RSS is
// /proc/self/statm's resident set. One line per N.

#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/tls/test_certificates.h"
#include "sidecar/server/tls_contexts.h"

namespace meshlet::sidecar::server {
namespace {

size_t HeapInUse() { return mallinfo2().uordblks; }

size_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

WorkloadTlsMaterial Material(const tls::testing::TestCa& ca) {
  absl::StatusOr<tls::testing::TestCertificate> leaf =
      ca.Issue({.spiffe_id = "spiffe://cluster.local/ns/default/sa/caller"});
  if (!leaf.ok()) {
    std::fprintf(stderr, "issue: %s\n", std::string(leaf.status().message()).c_str());
    std::exit(1);
  }
  return WorkloadTlsMaterial{.certificate_chain_pem = leaf->chain_pem,
                             .private_key_pem = leaf->key_pem,
                             .trust_bundle_pem = ca.cert_pem()};
}

// Applies of one added cluster the mean is taken over.
constexpr int kAdditions = 20;

// Mesh cluster i, mutual TLS on the workload certificate; returns its name.
std::string AddMeshCluster(config::Snapshot& snapshot, int i) {
  auto cluster = std::make_shared<cluster::ClusterConfig>();
  cluster->name = absl::StrCat("outbound|8080||svc-", i, ".default.svc.cluster.local");
  cluster->protocol = cluster::UpstreamProtocol::kHttp2;
  cluster->tls.enabled = true;
  cluster->tls.workload_certificate = true;
  cluster->tls.sni = absl::StrCat("svc-", i, ".default.svc.cluster.local");
  cluster->tls.expected_peer_ids = {absl::StrCat("spiffe://cluster.local/ns/default/sa/svc-", i)};
  std::string name = cluster->name;
  snapshot.clusters[name] = std::move(cluster);
  return name;
}

config::Snapshot MeshSnapshot(int clusters) {
  config::Snapshot snapshot;
  for (int i = 0; i < clusters; ++i) AddMeshCluster(snapshot, i);
  return snapshot;
}

void Check(const absl::Status& status) {
  if (status.ok()) return;
  std::fprintf(stderr, "%s\n", std::string(status.message()).c_str());
  std::exit(1);
}

void Run(int clusters) {
  absl::StatusOr<tls::testing::TestCa> ca = tls::testing::TestCa::Create();
  Check(ca.status());
  const config::Snapshot snapshot = MeshSnapshot(clusters);
  TlsContexts contexts;
  contexts.SetWorkloadCertificate(Material(*ca));

  const size_t heap_before = HeapInUse();
  const size_t rss_before = ResidentBytes();
  absl::Time start = absl::Now();
  absl::StatusOr<TlsContexts::Prepared> prepared = contexts.Prepare(snapshot);
  Check(prepared.status());
  const absl::Duration prepare = absl::Now() - start;
  start = absl::Now();
  contexts.Commit(*std::move(prepared));
  const absl::Duration commit = absl::Now() - start;
  const size_t heap_after = HeapInUse();
  const size_t rss_after = ResidentBytes();

  // The same snapshot again (every config push that does not touch TLS): nothing to rebuild.
  start = absl::Now();
  Check(contexts.Apply(snapshot));
  const absl::Duration unchanged = absl::Now() - start;

  // A rotated workload certificate: every cluster gets a new context.
  contexts.SetWorkloadCertificate(Material(*ca));
  start = absl::Now();
  Check(contexts.Apply(snapshot));
  const absl::Duration rotation = absl::Now() - start;

  // One cluster added to the N held, kAdditions times (the snapshots are built untimed).
  std::vector<config::Snapshot> grown;
  std::vector<std::vector<std::string>> added(kAdditions);
  grown.reserve(kAdditions);
  for (int a = 0; a < kAdditions; ++a) {
    grown.push_back(a == 0 ? snapshot : grown.back());
    added[a].push_back(AddMeshCluster(grown.back(), clusters + a));
  }
  start = absl::Now();
  for (int a = 0; a < kAdditions; ++a) {
    absl::StatusOr<TlsContexts::Prepared> one = contexts.Prepare(grown[a], &added[a]);
    Check(one.status());
    contexts.Commit(*std::move(one));
  }
  const absl::Duration one_added = (absl::Now() - start) / kAdditions;

  const double n = clusters;
  std::printf(
      "clusters=%d heap_bytes_per_cluster=%.0f rss_bytes_per_cluster=%.0f "
      "prepare_us_per_cluster=%.1f commit_us_per_cluster=%.2f unchanged_apply_us_per_cluster=%.2f "
      "rotation_apply_us_per_cluster=%.1f one_added_apply_us=%.1f\n",
      clusters, static_cast<double>(heap_after - heap_before) / n,
      static_cast<double>(rss_after - rss_before) / n, absl::ToDoubleMicroseconds(prepare) / n,
      absl::ToDoubleMicroseconds(commit) / n, absl::ToDoubleMicroseconds(unchanged) / n,
      absl::ToDoubleMicroseconds(rotation) / n, absl::ToDoubleMicroseconds(one_added));
}

}  // namespace
}  // namespace meshlet::sidecar::server

int main(int argc, char** argv) {
  std::vector<int> sizes;
  for (int i = 1; i < argc; ++i) sizes.push_back(std::atoi(argv[i]));
  if (sizes.empty()) sizes = {10, 1000};
  for (int clusters : sizes) meshlet::sidecar::server::Run(clusters);
  return 0;
}

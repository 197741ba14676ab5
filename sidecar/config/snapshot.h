#pragma once

// Snapshot: one complete, validated configuration of the sidecar — listeners, route tables,
// clusters (with their endpoints) and secrets — as plain C++ structs.
//
// Built by BuildSnapshot() (translate.h) on the main thread from the static file or an xDS update,
// then shared read-only as std::shared_ptr<const Snapshot>: the main thread posts it to every
// worker, and each request keeps the snapshot it started with, so a configuration change never
// pulls data out from under a request in flight. Everything reachable from a Snapshot is immutable
// and safe to read from any thread. Route tables and clusters are held by shared_ptr so a later
// snapshot may share the unchanged ones, and so a component can keep one alive on its own.
//
// This header does not expose protobuf types (design.md §2): the configuration dump for the admin
// endpoint is rendered to JSON when first asked for.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/call_once.h"

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sidecar/cluster/cluster_config.h"
#include "sidecar/config/listener_config.h"
#include "sidecar/route/route_table.h"

namespace meshlet::sidecar::config {

// Our certificate chain and key, and the trust bundle to verify peers with; PEM text (files named
// by the resource are read when the snapshot is built).
struct SecretConfig {
  std::string name;
  std::string certificate_chain_pem;  // empty: a trust-bundle-only secret
  std::string private_key_pem;        // set iff certificate_chain_pem is
  std::string trust_bundle_pem;       // empty: peers cannot be verified with this secret
  // A CA rotation's renewal round (xds::CertificateRenewal): renew a workload certificate not
  // issued by `renewal_signer` (SHA-256 hex) within `renewal_window`. Empty signer: none.
  std::string renewal_signer;
  uint32_t renewal_round = 0;
  absl::Duration renewal_window;
  // SPIFFE federation: foreign trust domain -> its roots (PEM), verified per domain.
  std::map<std::string, std::string> federated_bundles;
  // Trust domains verified like the local one (against trust_bundle_pem).
  std::vector<std::string> trust_domain_aliases;
};

// What BuildSnapshot keeps of the resources it translated, to reuse for the next update
// (translate_internal.h); opaque to the rest of the sidecar.
struct TranslationMemo;

struct Snapshot {
  template <typename T>
  using ByName = std::map<std::string, T, std::less<>>;

  // The xDS version_info, or for a static file "static-" and a hash of its resources.
  std::string version;
  std::vector<ListenerConfig> listeners;  // in resource order
  ByName<std::shared_ptr<const route::RouteTable>> route_tables;
  cluster::ClusterSet clusters;
  ByName<SecretConfig> secrets;
  // The resources this snapshot was built from, as JSON with private keys redacted, for the
  // admin /config_dump endpoint: this text when set, else what render_config_dump returns,
  // rendered on the first ConfigDumpJson() call (a snapshot that is never dumped never pays for
  // the rendering).
  std::string config_dump_json;
  std::function<std::string()> render_config_dump;
  std::shared_ptr<const TranslationMemo> translation_memo;

  // Lookups by name; null when absent. Pointers live as long as the snapshot.
  const ListenerConfig* FindListener(absl::string_view name) const;
  const route::RouteTable* FindRouteTable(absl::string_view name) const;
  const cluster::ClusterConfig* FindCluster(absl::string_view name) const;
  const SecretConfig* FindSecret(absl::string_view name) const;
  // For the admin /config_dump endpoint.
  const std::string& ConfigDumpJson() const;

 private:
  // The rendered dump. A copy or move of the snapshot starts unrendered (once_flag cannot be
  // copied; the copy renders its own text on its first ConfigDumpJson()), so Snapshot stays a
  // plain value type.
  struct RenderedDump {
    struct State {
      absl::once_flag once;
      std::string text;
    };
    RenderedDump() : state(std::make_unique<State>()) {}
    RenderedDump(const RenderedDump&) : RenderedDump() {}
    RenderedDump& operator=(const RenderedDump&) {
      state = std::make_unique<State>();
      return *this;
    }
    std::unique_ptr<State> state;
  };
  mutable RenderedDump rendered_;
};

}  // namespace meshlet::sidecar::config

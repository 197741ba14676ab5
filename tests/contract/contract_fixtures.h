#pragma once

// The contract tests' fixtures: policies read as the API reads them, registered workloads, a
// policy set using every feature the policy API accepts, and the sidecar's verdict on a
// translation. Test-only.

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/config/yaml_proto.h"
#include "control-plane/policy/codec.h"
#include "control-plane/policy/validate.h"
#include "control-plane/registry/registry.h"
#include "control-plane/translate/translator.h"
#include "sidecar/config/translate.h"

namespace meshlet::contract {

namespace cp = ::meshlet::controlplane;
namespace pb = ::meshlet::policy;

// Adds every document of `yaml` to `snapshot`, checking each validates as the API would.
inline void AddPolicies(const std::string& yaml, const std::string& source,
                        cp::policy::PolicySnapshot& snapshot) {
  absl::StatusOr<std::vector<config::YamlDocument>> docs = config::SplitYamlDocuments(yaml, source);
  ASSERT_TRUE(docs.ok()) << docs.status();
  for (const config::YamlDocument& doc : *docs) {
    config::YamlParseOptions options;
    options.source_name = source;
    options.line_offset = doc.first_line - 1;
    absl::StatusOr<cp::policy::ParsedResource> parsed =
        cp::policy::ParseResource(doc.yaml, options);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    cp::policy::ValidationResult valid = cp::policy::Validate(*parsed->message, nullptr);
    ASSERT_TRUE(valid.ok()) << source << " document " << doc.index << ": " << valid.ErrorText();
    pb::ObjectMeta* meta = cp::policy::MutableMetadata(*parsed->message);
    if (parsed->info->namespaced && meta->namespace_().empty()) meta->set_namespace_("default");
    const std::string kind(parsed->info->kind);
    if (kind == "Service") {
      snapshot.services.push_back(static_cast<pb::Service&>(*parsed->message));
    } else if (kind == "TrafficPolicy") {
      snapshot.traffic_policies.push_back(static_cast<pb::TrafficPolicy&>(*parsed->message));
    } else if (kind == "HTTPRoute") {
      snapshot.http_routes.push_back(static_cast<pb::HTTPRoute&>(*parsed->message));
    } else if (kind == "AuthorizationPolicy") {
      snapshot.authorization_policies.push_back(
          static_cast<pb::AuthorizationPolicy&>(*parsed->message));
    } else if (kind == "MeshConfig") {
      snapshot.mesh_config = static_cast<pb::MeshConfig&>(*parsed->message);
    }
  }
}

inline cp::registry::Workload Workload(std::string id, std::string service, std::string address,
                                       std::vector<uint32_t> ports,
                                       std::map<std::string, std::string> labels = {}) {
  cp::registry::Workload w;
  w.id = std::move(id);
  w.service = std::move(service);
  w.namespace_ = "default";
  w.service_account = w.service;
  w.addresses = {std::move(address)};
  w.ports = std::move(ports);
  w.labels = std::move(labels);
  return w;
}

// Feeds the node's resources to the sidecar, as an xDS update would.
inline void ExpectSidecarAccepts(const cp::translate::NodeResources& resources,
                                 const std::string& what) {
  sidecar::config::ResourceSet set;
  set.version = "contract";
  set.listeners.assign(resources.listeners.begin(), resources.listeners.end());
  set.routes.assign(resources.routes.begin(), resources.routes.end());
  set.clusters.assign(resources.clusters.begin(), resources.clusters.end());
  set.endpoints.assign(resources.endpoints.begin(), resources.endpoints.end());
  set.secrets.assign(resources.secrets.begin(), resources.secrets.end());
  auto snapshot = sidecar::config::BuildSnapshot(set);
  EXPECT_TRUE(snapshot.ok()) << what << ": the sidecar refuses the translation:\n"
                             << snapshot.status().message();
}

// Policies using every feature the policy API accepts.
inline constexpr char kEverything[] = R"(
apiVersion: meshlet.io/v1
kind: MeshConfig
metadata: {name: mesh}
spec:
  mtls: PERMISSIVE
  loadBalancer: PEAK_EWMA
  defaultTimeouts: {connect: 2s, request: 10s}
  defaultRetries: {attempts: 1, retryOn: [connect-failure]}
  tracing: {samplingPercent: 5}
---
kind: Service
metadata: {name: api}
spec:
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: grpc, port: 9000, protocol: GRPC}
  - {name: admin, port: 9901, protocol: HTTP2}
  - {name: db, port: 5432, protocol: TCP}
  selector: {app: api}
---
kind: Service
metadata: {name: legacy}
spec:
  ports: [{port: 8080}]
---
kind: TrafficPolicy
metadata: {name: api}
spec:
  target: api
  loadBalancer: RANDOM
  timeouts: {connect: 100ms, request: 3s, perTry: 1s, idle: 60s}
  retries:
    attempts: 4
    retryOn: [5xx, gateway-error, unavailable]
    retriableStatusCodes: [409, 429]
    backoffBase: 10ms
    backoffMax: 1s
    budgetPercent: 50
    budgetMinRetriesPerSecond: 5
    retryNonIdempotent: true
  circuitBreaker:
    maxConnections: 10
    maxPendingRequests: 20
    maxRequests: 30
    maxRetries: 4
    consecutiveFailures: 5
    openDuration: 10s
  outlierDetection:
    consecutive5xx: 3
    consecutiveGatewayFailures: 2
    interval: 5s
    baseEjectionTime: 10s
    maxEjectionTime: 100s
    maxEjectionPercent: 30
  overload: {ejectionTime: 2s, penalty: 5}
  rateLimit: {requestsPerSecond: 100, burst: 200}
  mtls: STRICT
---
kind: HTTPRoute
metadata: {name: api}
spec:
  target: api
  hostnames: [api.example.com, "*.api.example.com"]
  rules:
  - name: moved
    matches: [{path: {type: Exact, value: /old}}]
    redirect: {scheme: https, host: new.example.com, path: /new, port: 8443, statusCode: 308}
  - name: teapot
    matches: [{path: {value: /teapot}, method: POST}]
    directResponse: {status: 418, body: "short and stout\n"}
  - name: faulty
    matches:
    - path: {value: /chaos}
      headers:
      - {name: x-chaos, type: Present}
      - {name: x-user, type: Prefix, value: test-}
      - {name: x-skip, value: "yes", invert: true}
    backends: [{service: api}]
    fault:
      delay: {fixed: 50ms, percent: 10}
      abort: {grpcStatus: 14, percent: 1.5}
  - name: rewrite
    matches: [{path: {value: /v1/}}]
    rewrite: {pathPrefix: /, host: internal.api}
    backends:
    - {service: api, port: 9901}
    - {service: legacy, weight: 0}
    - {service: missing, weight: 5}
    requestHeaders:
      set: {x-api-version: "1"}
      add: {via: meshlet}
      remove: [x-internal]
    responseHeaders:
      set: {cache-control: no-store}
    retries: {attempts: 0}
    timeout: 500ms
  - name: canary
    backends:
    - {service: api, subset: {track: stable}, weight: 95}
    - {service: api, subset: {track: canary}, weight: 5}
---
kind: HTTPRoute
metadata: {name: orphan}
spec:
  target: legacy
  rules:
  - backends: [{service: missing}]
---
kind: AuthorizationPolicy
metadata: {name: api}
spec:
  target: api
  rules:
  - from: [{principals: ["spiffe://cluster.local/ns/default/sa/web"]}]
    to: [{methods: [GET], paths: ["/public*"], ports: [80]}]
)";

}  // namespace meshlet::contract

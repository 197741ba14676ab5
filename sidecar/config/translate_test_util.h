#pragma once

// Fixtures of the translation tests: a small valid resource set that each test changes in one
// place, YAML parsing, and request headers for route lookups. Test-only.

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/config/yaml_proto.h"
#include "common/http/header_map.h"
#include "gtest/gtest.h"
#include "sidecar/config/translate.h"
#include "xds/resources.pb.h"

namespace meshlet::sidecar::config::translate_testing {

inline constexpr char kSamplePath[] = "tests/testdata/sidecar-static.yaml";

inline constexpr char kPem[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
inline constexpr char kKeyPem[] = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

// A small valid resource set; the invalid cases of translate_test.cc each break it in one place.
inline constexpr char kBaseYaml[] = R"yaml(
secrets:
- name: mesh-cert
  certificate_chain_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
  private_key_pem: "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
  trust_bundle_pem: "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n"
clusters:
- name: backend
  load_assignment:
    endpoints:
    - address: 127.0.0.1:8080
- name: other
  load_assignment:
    endpoints:
    - address: 127.0.0.1:8081
- name: eds-cluster
  type: EDS
endpoints:
- cluster_name: eds-cluster
  endpoints:
  - address: 127.0.0.1:9090
routes:
- name: local
  virtual_hosts:
  - name: default
    domains: ["*"]
    routes:
    - match: {prefix: /a}
      route: {cluster: backend}
    - match: {prefix: /b}
      route:
        weighted_clusters:
          clusters:
          - {name: backend, weight: 1}
          - {name: other, weight: 1}
    - match: {prefix: /}
      route: {cluster: backend}
listeners:
- name: outbound
  address: 127.0.0.1:15001
  protocol: PROTOCOL_HTTP
  route_config_name: local
- name: inbound
  address: 127.0.0.1:15006
  direction: INBOUND
  protocol: PROTOCOL_HTTP
  route_config_name: local
  tls: {mode: STRICT, secret_name: mesh-cert}
- name: tcp
  address: 127.0.0.1:15010
  protocol: PROTOCOL_TCP
  tcp_cluster: other
)yaml";

template <typename T>
T Parse(absl::string_view yaml) {
  T message;
  absl::Status status = meshlet::config::YamlToProto(yaml, message);
  EXPECT_TRUE(status.ok()) << status;
  return message;
}

inline ResourceSet ToSet(const xds::Bootstrap::StaticResources& r) {
  ResourceSet set;
  set.listeners.assign(r.listeners().begin(), r.listeners().end());
  set.routes.assign(r.routes().begin(), r.routes().end());
  set.service_routes.assign(r.service_routes().begin(), r.service_routes().end());
  set.clusters.assign(r.clusters().begin(), r.clusters().end());
  set.endpoints.assign(r.endpoints().begin(), r.endpoints().end());
  set.secrets.assign(r.secrets().begin(), r.secrets().end());
  return set;
}

inline ResourceSet Base() { return ToSet(Parse<xds::Bootstrap::StaticResources>(kBaseYaml)); }

inline xds::Route& RouteAt(ResourceSet& set, int i) {
  return *set.routes.Mutable(0).mutable_virtual_hosts(0)->mutable_routes(i);
}

inline http::HeaderMap Request(absl::string_view host, absl::string_view path) {
  return http::HeaderMap{
      {":method", "GET"}, {":scheme", "http"}, {":authority", host}, {":path", path}};
}

inline std::string TestTmpDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

inline void WriteFile(const std::string& path, absl::string_view content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

}  // namespace meshlet::sidecar::config::translate_testing

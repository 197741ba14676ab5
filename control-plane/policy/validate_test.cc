#include "control-plane/policy/validate.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/tls/test_certificates.h"
#include "control-plane/policy/codec.h"

namespace meshlet::controlplane::policy {
namespace {

ValidationResult ValidateYaml(const std::string& yaml, const PolicySnapshot* existing = nullptr) {
  absl::StatusOr<ParsedResource> parsed = ParseResource(yaml);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  if (!parsed.ok()) return {};
  return Validate(*parsed->message, existing);
}

// The error for `field`, or "" if there is none.
std::string ErrorFor(const ValidationResult& result, const std::string& field) {
  for (const FieldError& e : result.errors) {
    if (e.field == field) return e.message;
  }
  return "";
}

TEST(ValidateTest, ValidResourcesPass) {
  for (const char* yaml : {
           "kind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}",
           "kind: TrafficPolicy\nmetadata: {name: a}\nspec: {target: a, retries: {attempts: 2}}",
           "kind: HTTPRoute\nmetadata: {name: a}\nspec: {target: a, rules: [{backends: "
           "[{service: a}]}]}",
           "kind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {action: DENY}",
           "kind: MeshConfig\nmetadata: {name: mesh}\nspec: {mtls: STRICT}",
       }) {
    ValidationResult r = ValidateYaml(yaml);
    EXPECT_TRUE(r.ok()) << yaml << "\n" << r.ErrorText();
  }
}

TEST(ValidateTest, ErrorsNameTheFieldPath) {
  ValidationResult r = ValidateYaml(R"(
kind: TrafficPolicy
metadata: {name: Bad_Name, namespace: "x y"}
spec:
  target: reviews
  loadBalancer: FASTEST
  timeouts: {request: 0s, perTry: 5s, connect: 1s}
  retries:
    attempts: 11
    retryOn: [connect-failure, sometimes]
    retriableStatusCodes: [200, 700]
    backoffBase: 1s
    backoffMax: 100ms
    budgetPercent: 120
  circuitBreaker: {maxRequests: 0, openDuration: 1s}
  outlierDetection: {consecutive5xx: 0, maxEjectionPercent: 101}
  rateLimit: {burst: 3}
  connectionPool: {idleTimeout: 0s, maxRequestsPerConnection: 0, maxConnectionDuration: 1m}
  overload: {ejectionTime: 20s, maxEjectionPercent: 150, penalty: 0, penaltyTime: 0s}
  locality: {overprovisioningPercent: 99}
  mtls: SOMETIMES
)");
  EXPECT_FALSE(r.ok());
  EXPECT_NE(ErrorFor(r, "metadata.name"), "");
  EXPECT_NE(ErrorFor(r, "metadata.namespace"), "");
  EXPECT_NE(ErrorFor(r, "spec.loadBalancer").find("FASTEST"), std::string::npos);
  EXPECT_EQ(ErrorFor(r, "spec.timeouts.request"), "must be greater than 0");
  EXPECT_EQ(ErrorFor(r, "spec.retries.attempts"), "must be between 0 and 10");
  EXPECT_NE(ErrorFor(r, "spec.retries.retryOn[1]").find("sometimes"), std::string::npos);
  EXPECT_EQ(ErrorFor(r, "spec.retries.retryOn[0]"), "");
  EXPECT_NE(ErrorFor(r, "spec.retries.retriableStatusCodes[1]"), "");
  EXPECT_EQ(ErrorFor(r, "spec.retries.retriableStatusCodes[0]"), "");
  EXPECT_NE(ErrorFor(r, "spec.retries.backoffMax"), "");
  EXPECT_EQ(ErrorFor(r, "spec.retries.budgetPercent"), "must be between 0 and 100");
  EXPECT_NE(ErrorFor(r, "spec.circuitBreaker.maxRequests"), "");
  EXPECT_EQ(ErrorFor(r, "spec.circuitBreaker.openDuration"), "needs consecutiveFailures");
  EXPECT_NE(ErrorFor(r, "spec.outlierDetection.consecutive5xx"), "");
  EXPECT_NE(ErrorFor(r, "spec.outlierDetection.maxEjectionPercent"), "");
  EXPECT_NE(ErrorFor(r, "spec.rateLimit.requestsPerSecond"), "");
  EXPECT_EQ(ErrorFor(r, "spec.connectionPool.idleTimeout"), "must be greater than 0");
  EXPECT_EQ(ErrorFor(r, "spec.connectionPool.maxRequestsPerConnection"), "must be greater than 0");
  EXPECT_EQ(ErrorFor(r, "spec.connectionPool.maxConnectionDuration"), "");
  EXPECT_EQ(ErrorFor(r, "spec.overload.ejectionTime"),
            "must not exceed spec.overload.maxEjectionTime (default 10s)");
  EXPECT_EQ(ErrorFor(r, "spec.overload.maxEjectionPercent"), "must be between 0 and 100");
  EXPECT_EQ(ErrorFor(r, "spec.overload.penalty"), "must be between 1 and 1000");
  EXPECT_EQ(ErrorFor(r, "spec.locality.overprovisioningPercent"), "must be between 100 and 1000");
  EXPECT_EQ(ErrorFor(r, "spec.overload.penaltyTime"), "must be greater than 0");
  EXPECT_NE(ErrorFor(r, "spec.mtls"), "");
}

TEST(ValidateTest, PerTryLongerThanTheRequestIsRefused) {
  ValidationResult r = ValidateYaml(
      "kind: TrafficPolicy\nmetadata: {name: a}\nspec: {target: a, timeouts: {request: 1s, "
      "perTry: 2s}}");
  EXPECT_EQ(ErrorFor(r, "spec.timeouts.perTry"), "must not exceed spec.timeouts.request");
}

TEST(ValidateTest, HttpRouteRules) {
  ValidationResult r = ValidateYaml(R"(
kind: HTTPRoute
metadata: {name: r}
spec:
  target: ""
  hostnames: ["bad host"]
  rules:
  - matches:
    - path: {type: Regex, value: "api"}
      headers: [{name: "bad header", type: Prefix}]
      method: FETCH
    backends:
    - {service: a, weight: 2000000}
    - {service: a, weight: 1}
    fault: {delay: {percent: 150}, abort: {httpStatus: 99}}
    requestHeaders: {set: {host: x}, remove: ["a b"]}
    timeout: 0s
  - name: empty
  - name: both
    backends: [{service: a}]
    directResponse: {status: 700}
  - redirect: {statusCode: 200}
)");
  EXPECT_EQ(ErrorFor(r, "spec.target"), "required");
  EXPECT_NE(ErrorFor(r, "spec.hostnames[0]"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].matches[0].path.type"), "");
  EXPECT_EQ(ErrorFor(r, "spec.rules[0].matches[0].path.value"), "must start with '/'");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].matches[0].headers[0].name"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].matches[0].headers[0].value"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].matches[0].method"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].backends[0].weight"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].backends").find("weights sum"), std::string::npos);
  EXPECT_EQ(ErrorFor(r, "spec.rules[0].fault.delay.fixed"), "required");
  EXPECT_EQ(ErrorFor(r, "spec.rules[0].fault.delay.percent"), "must be between 0 and 100");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].fault.abort.httpStatus"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].fault.abort.percent").find("required"), std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.rules[0].requestHeaders.set[host]"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].requestHeaders.remove[0]"), "");
  EXPECT_EQ(ErrorFor(r, "spec.rules[0].timeout"), "must be greater than 0");
  EXPECT_NE(ErrorFor(r, "spec.rules[1].backends"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[2]"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[2].directResponse.status"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[3].redirect"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[3].redirect.statusCode"), "");
}

TEST(ValidateTest, MissingServicesAreWarningsAndPortsAreChecked) {
  PolicySnapshot existing;
  absl::StatusOr<ParsedResource> service = ParseResource(
      "kind: Service\nmetadata: {name: a, namespace: default}\nspec: {ports: [{port: 80}]}");
  ASSERT_TRUE(service.ok());
  existing.services.push_back(static_cast<meshlet::policy::Service&>(*service->message));
  ValidationResult r = ValidateYaml(R"(
kind: HTTPRoute
metadata: {name: r}
spec:
  target: a
  rules:
  - backends: [{service: a, port: 81}, {service: b}]
)",
                                    &existing);
  EXPECT_NE(ErrorFor(r, "spec.rules[0].backends[0].port").find("no port 81"), std::string::npos);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("spec.rules[0].backends[1].service"), std::string::npos);
  EXPECT_NE(r.warnings[0].find("\"b\""), std::string::npos);
}

TEST(ValidateTest, ServicePorts) {
  ValidationResult r = ValidateYaml(R"(
kind: Service
metadata: {name: s}
spec:
  ports:
  - {name: a, port: 0}
  - {name: a, port: 70000, targetPort: 70000, protocol: UDP}
  - {port: 80}
  - {name: d, port: 80}
)");
  EXPECT_EQ(ErrorFor(r, "spec.ports[0].port"), "required (1 to 65535)");
  EXPECT_NE(ErrorFor(r, "spec.ports[1].name"), "");
  EXPECT_NE(ErrorFor(r, "spec.ports[1].port"), "");
  EXPECT_NE(ErrorFor(r, "spec.ports[1].targetPort"), "");
  EXPECT_NE(ErrorFor(r, "spec.ports[1].protocol").find("UDP"), std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.ports[2].name"), "");
  EXPECT_NE(ErrorFor(r, "spec.ports[3].port").find("twice"), std::string::npos);
  EXPECT_EQ(ErrorFor(ValidateYaml("kind: Service\nmetadata: {name: s}\nspec: {}"), "spec.ports"),
            "at least one port is required");
}

TEST(ValidateTest, ServiceAccounts) {
  ValidationResult r = ValidateYaml(R"(
kind: Service
metadata: {name: s}
spec:
  ports: [{port: 80}]
  serviceAccounts: [reviews, Not_A_Name, reviews, payments.v2]
)");
  EXPECT_EQ(ErrorFor(r, "spec.serviceAccounts[0]"), "");
  EXPECT_NE(ErrorFor(r, "spec.serviceAccounts[1]").find("not a service account name"),
            std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.serviceAccounts[2]").find("twice"), std::string::npos);
  EXPECT_EQ(ErrorFor(r, "spec.serviceAccounts[3]"), "");
}

TEST(ValidateTest, ServiceAddresses) {
  ValidationResult r = ValidateYaml(R"(
kind: Service
metadata: {name: s}
spec:
  ports: [{port: 80}]
  addresses: [10.96.0.10, "fd00::10", 10.96.0.10, 127.0.0.1, 169.254.1.1, 0.0.0.0, 224.0.0.1,
              "::1", "fe80::1", "ff02::1", 255.255.255.255, "FD00:0::11", 10.96.0.300, svc.local]
)");
  EXPECT_EQ(ErrorFor(r, "spec.addresses[0]"), "");
  EXPECT_EQ(ErrorFor(r, "spec.addresses[1]"), "");
  EXPECT_EQ(ErrorFor(r, "spec.addresses[2]"), "10.96.0.10 is listed twice");
  EXPECT_EQ(ErrorFor(r, "spec.addresses[3]"), "127.0.0.1 is not allowed (loopback)");
  EXPECT_EQ(ErrorFor(r, "spec.addresses[4]"), "169.254.1.1 is not allowed (link-local)");
  EXPECT_EQ(ErrorFor(r, "spec.addresses[5]"), "0.0.0.0 is not allowed (unspecified)");
  EXPECT_EQ(ErrorFor(r, "spec.addresses[6]"), "224.0.0.1 is not allowed (multicast)");
  EXPECT_EQ(ErrorFor(r, "spec.addresses[7]"), "::1 is not allowed (loopback)");
  EXPECT_EQ(ErrorFor(r, "spec.addresses[8]"), "fe80::1 is not allowed (link-local)");
  EXPECT_EQ(ErrorFor(r, "spec.addresses[9]"), "ff02::1 is not allowed (multicast)");
  EXPECT_EQ(ErrorFor(r, "spec.addresses[10]"), "255.255.255.255 is not allowed (broadcast)");
  EXPECT_EQ(ErrorFor(r, "spec.addresses[11]"), "write it as fd00::11");
  EXPECT_EQ(ErrorFor(r, "spec.addresses[12]"),
            "\"10.96.0.300\" is not an IP address (10.96.0.10, fd00::10)");
  EXPECT_NE(ErrorFor(r, "spec.addresses[13]"), "");
  EXPECT_EQ(r.errors.size(), 12u);
}

TEST(ValidateTest, ServiceAddressesAreUniqueAcrossServices) {
  PolicySnapshot existing;
  for (const char* yaml :
       {"kind: Service\nmetadata: {name: reviews, namespace: default}\nspec: {ports: [{port: "
        "80}], addresses: [10.96.0.10]}",
        "kind: Service\nmetadata: {name: ratings, namespace: shop}\nspec: {ports: [{port: 80}]}"
        "\nstatus: {addresses: [240.240.0.1]}",
        "kind: Service\nmetadata: {name: same, namespace: default}\nspec: {ports: [{port: "
        "80}], addresses: [10.96.0.11]}"}) {
    absl::StatusOr<ParsedResource> parsed = ParseResource(yaml);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    existing.services.push_back(static_cast<meshlet::policy::Service&>(*parsed->message));
  }
  ValidationResult r = ValidateYaml(R"(
kind: Service
metadata: {name: same}
spec:
  ports: [{port: 80}]
  addresses: [10.96.0.10, 240.240.0.1, 10.96.0.11]
)",
                                    &existing);
  EXPECT_EQ(ErrorFor(r, "spec.addresses[0]"),
            "10.96.0.10 is already an address of Service default/reviews");
  EXPECT_EQ(ErrorFor(r, "spec.addresses[1]"),
            "240.240.0.1 is already an address of Service shop/ratings (allocated)");
  // Its own stored version does not count.
  EXPECT_EQ(ErrorFor(r, "spec.addresses[2]"), "");
}

TEST(ValidateTest, MeshConfigTrafficPolicyAndAddressRanges) {
  EXPECT_TRUE(ValidateYaml(R"(
kind: MeshConfig
metadata: {name: mesh}
spec:
  outboundTrafficPolicy: REGISTRY_ONLY
  serviceAddressRange: 10.200.0.0/16
  serviceAddressRangeV6: "fd00:240::/112"
)")
                  .ok());
  struct Case {
    const char* field;
    const char* value;
    const char* error;
  };
  for (const Case& c : std::vector<Case>{
           {"outboundTrafficPolicy", "DENY", "\"DENY\" is not one of ALLOW_ANY, REGISTRY_ONLY"},
           {"serviceAddressRange", "240.240.0.1/16",
            "\"240.240.0.1/16\" has bits set past the prefix length; the range is 240.240.0.0/16"},
           {"serviceAddressRange", "240.240.0.0/33",
            "\"240.240.0.0/33\": the prefix length must be 0 to 32"},
           {"serviceAddressRange", "240.240.0.0/31",
            "\"240.240.0.0/31\" is too small: the prefix length must be at most 30 (room for "
            "two addresses)"},
           {"serviceAddressRange", "fd00::/64", "\"fd00::/64\" is not an IPv4 range"},
           {"serviceAddressRange", "127.0.0.0/16",
            "\"127.0.0.0/16\" overlaps 127.0.0.0/8 (loopback addresses)"},
           {"serviceAddressRange", "192.0.0.0/2",
            "\"192.0.0.0/2\" overlaps 224.0.0.0/4 (multicast addresses)"},
           {"serviceAddressRange", "ten/8",
            "\"ten/8\" is not an address range (10.0.0.0/8, fd00::/64)"},
           {"serviceAddressRangeV6", "10.0.0.0/8", "\"10.0.0.0/8\" is not an IPv6 range"},
           {"serviceAddressRangeV6", "fe80::/64",
            "\"fe80::/64\" overlaps fe80::/10 (link-local addresses)"},
           {"serviceAddressRangeV6", "fd00::/128",
            "\"fd00::/128\" is too small: the prefix length must be at most 127 (room for two "
            "addresses)"},
       }) {
    ValidationResult r = ValidateYaml(absl::StrCat(
        "kind: MeshConfig\nmetadata: {name: mesh}\nspec: {", c.field, ": \"", c.value, "\"}"));
    EXPECT_EQ(ErrorFor(r, absl::StrCat("spec.", c.field)), c.error) << c.value;
  }
}

TEST(ValidateTest, MeshConfigDiscovery) {
  for (const char* spec : {
           "{discovery: {mode: OnDemand, timeout: 10ms, idleTime: 10s, addressRanges: "
           "[10.96.0.0/12, \"fd00::/48\"]}}",
           "{discovery: {mode: WholeMesh, timeout: 30s}}",
           "{discovery: {mode: Declared}, scopeToDependencies: true}",
           "{discovery: {timeout: 1s}, scopeToDependencies: true}",
       }) {
    ValidationResult r =
        ValidateYaml(absl::StrCat("kind: MeshConfig\nmetadata: {name: mesh}\nspec: ", spec));
    EXPECT_TRUE(r.ok()) << spec << "\n" << r.ErrorText();
  }
  struct Case {
    const char* spec;
    const char* field;
    const char* error;
  };
  for (const Case& c : std::vector<Case>{
           {"{discovery: {mode: Lazy}}", "spec.discovery.mode",
            "\"Lazy\" is not one of OnDemand, WholeMesh, Declared"},
           {"{discovery: {mode: ondemand}}", "spec.discovery.mode",
            "\"ondemand\" is not one of OnDemand, WholeMesh, Declared"},
           {"{discovery: {mode: OnDemand}, scopeToDependencies: true}", "spec.discovery.mode",
            "\"OnDemand\" contradicts spec.scopeToDependencies: true (which means Declared); set "
            "one of them"},
           {"{discovery: {mode: WholeMesh}, scopeToDependencies: true}", "spec.discovery.mode",
            "\"WholeMesh\" contradicts spec.scopeToDependencies: true (which means Declared); set "
            "one of them"},
           {"{discovery: {timeout: 9ms}}", "spec.discovery.timeout",
            "must be between 10ms and 30s"},
           {"{discovery: {timeout: 31s}}", "spec.discovery.timeout",
            "must be between 10ms and 30s"},
           {"{discovery: {idleTime: 9.999s}}", "spec.discovery.idleTime", "must be at least 10s"},
           {"{discovery: {addressRanges: [10.0.0.0/8, ten/8]}}", "spec.discovery.addressRanges[1]",
            "\"ten/8\" is not an address range (10.0.0.0/8, fd00::/64)"},
           {"{discovery: {addressRanges: [10.0.0.1/8]}}", "spec.discovery.addressRanges[0]",
            "\"10.0.0.1/8\" has bits set past the prefix length; the range is 10.0.0.0/8"},
       }) {
    ValidationResult r =
        ValidateYaml(absl::StrCat("kind: MeshConfig\nmetadata: {name: mesh}\nspec: ", c.spec));
    EXPECT_EQ(ErrorFor(r, c.field), c.error) << c.spec << "\n" << r.ErrorText();
  }
}

TEST(ValidateTest, MeshConfigIsOneClusterWideResource) {
  ValidationResult r = ValidateYaml(
      "kind: MeshConfig\nmetadata: {name: other, namespace: default}\nspec: {tracing: "
      "{samplingPercent: 101, collector: ftp://x}}");
  EXPECT_NE(ErrorFor(r, "metadata.name"), "");
  EXPECT_NE(ErrorFor(r, "metadata.namespace"), "");
  EXPECT_NE(ErrorFor(r, "spec.tracing.samplingPercent"), "");
  EXPECT_NE(ErrorFor(r, "spec.tracing.collector"), "");
}

TEST(ValidateTest, AuthorizationRules) {
  ValidationResult r = ValidateYaml(R"(
kind: AuthorizationPolicy
metadata: {name: p}
spec:
  action: MAYBE
  rules:
  - from: [{principals: ["alice", "spiffe://td/*/x"], namespaces: ["Bad"]}]
    to: [{ports: [0], methods: [get], paths: [api], hosts: [Api.Example, "*.ok.example", "*",
          "a*b"]}]
)");
  EXPECT_NE(ErrorFor(r, "spec.action"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].from[0].principals[0]"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].from[0].principals[1]"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].from[0].namespaces[0]"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].to[0].ports[0]"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].to[0].methods[0]"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].to[0].paths[0]"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].to[0].hosts[0]").find("not a lower-case host name"),
            std::string::npos);
  EXPECT_EQ(ErrorFor(r, "spec.rules[0].to[0].hosts[1]"), "");
  EXPECT_EQ(ErrorFor(r, "spec.rules[0].to[0].hosts[2]"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].to[0].hosts[3]"), "");
}

TEST(ValidateTest, RequestAuthentication) {
  // An Ed25519 key the sidecar's parser takes.
  const std::string jwks =
      R"('{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}')";
  EXPECT_TRUE(ValidateYaml(R"(
kind: RequestAuthentication
metadata: {name: ok}
spec:
  target: orders
  jwtRules:
  - issuer: https://idp.example
    audiences: [orders]
    jwksUri: https://idp.example/keys
    fromHeaders: [{name: x-token, prefix: "Bearer "}]
    fromParams: [token]
    outputClaimToHeaders: [{header: x-user, claim: sub}]
    outputPayloadToHeader: x-jwt
  - issuer: https://login.example/tenant/
  - issuer: https://other.example
    jwks: )" + jwks + "\n")
                  .errors.empty());  // the third's keys by OpenID Connect discovery
  ValidationResult r = ValidateYaml(R"(
kind: RequestAuthentication
metadata: {name: bad}
spec:
  jwtRules:
  - issuer: https://idp.example
    jwksUri: http://idp.example/keys
  - issuer: https://idp.example
    jwksUri: https://idp.example/keys
    jwks: '{"keys": []}'
  - {issuer: ""}
  - issuer: https://a.example
    jwks: '{"keys": [{"kty": "oct", "k": "AA"}]}'
    audiences: [""]
    fromHeaders: [{name: "bad header"}]
    fromParams: [""]
    outputClaimToHeaders: [{header: "", claim: ""}]
    outputPayloadToHeader: "x y"
  - issuer: idp.example
)");
  EXPECT_NE(ErrorFor(r, "spec.jwtRules[0].jwksUri").find("is not an https:// URL"),
            std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.jwtRules[1].issuer").find("spec.jwtRules[0] too"), std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.jwtRules[1]").find("not both"), std::string::npos);
  EXPECT_EQ(ErrorFor(r, "spec.jwtRules[2].issuer"), "required");
  EXPECT_NE(ErrorFor(r, "spec.jwtRules[2]").find("needs jwksUri"), std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.jwtRules[3].jwks").find("no usable key"), std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.jwtRules[3].audiences[0]"), "");
  EXPECT_NE(ErrorFor(r, "spec.jwtRules[3].fromHeaders[0].name"), "");
  EXPECT_NE(ErrorFor(r, "spec.jwtRules[3].fromParams[0]"), "");
  EXPECT_EQ(ErrorFor(r, "spec.jwtRules[3].outputClaimToHeaders[0].header"), "required");
  EXPECT_EQ(ErrorFor(r, "spec.jwtRules[3].outputClaimToHeaders[0].claim"), "required");
  EXPECT_NE(ErrorFor(r, "spec.jwtRules[3].outputPayloadToHeader"), "");
  // No keys and an issuer that is not an https:// URL: nothing to discover them from.
  EXPECT_NE(ErrorFor(r, "spec.jwtRules[4]").find("OpenID Connect discovery"), std::string::npos);
  EXPECT_EQ(OidcDiscoveryUrl("https://login.example/tenant/"),
            "https://login.example/tenant/.well-known/openid-configuration");
  r = ValidateYaml("kind: RequestAuthentication\nmetadata: {name: empty}\nspec: {jwtRules: []}\n");
  EXPECT_NE(ErrorFor(r, "spec.jwtRules").find("required: at least one issuer"), std::string::npos);
}

TEST(ValidateTest, ExternalService) {
  for (const char* ok : {
           "{hosts: [api.partner.example], ports: [{number: 443, protocol: TLS}]}",
           "{hosts: ['*.partner.example'], ports: [{number: 443, protocol: HTTPS}], "
           "resolution: NONE}",
           "{hosts: [db.partner.example], ports: [{number: 5432, protocol: TCP}], "
           "addresses: [203.0.113.0/28]}",
           "{hosts: ['*.cdn.example'], ports: [{number: 443, protocol: TLS}], resolution: STATIC, "
           "endpoints: [203.0.113.7, '2001:db8::7']}",
       }) {
    ValidationResult r =
        ValidateYaml(absl::StrCat("kind: ExternalService\nmetadata: {name: ok}\nspec: ", ok, "\n"));
    EXPECT_TRUE(r.errors.empty()) << ok << ": " << r.errors[0].field << ": " << r.errors[0].message;
  }
  ValidationResult r = ValidateYaml(R"(
kind: ExternalService
metadata: {name: bad}
spec:
  hosts: [Api.Partner.example, "*.partner.example", a.example, a.example]
  ports:
  - {number: 443, protocol: TLS}
  - {number: 443, protocol: TLS}
  - {number: 80, protocol: HTTP}
  - {number: 0, protocol: TCP}
  - {number: 22, protocol: SSH}
  addresses: [not-an-address]
  endpoints: [203.0.113.7]
)");
  EXPECT_NE(ErrorFor(r, "spec.hosts[0]").find("not a lower-case host name"), std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.hosts[1]").find("use resolution NONE"), std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.hosts[3]").find("listed twice"), std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.ports[1].number").find("listed twice"), std::string::npos);
  EXPECT_EQ(ErrorFor(r, "spec.ports[2].protocol"), "");  // HTTP, matched by Host
  EXPECT_EQ(ErrorFor(r, "spec.ports[3].number"), "required (1 to 65535)");
  EXPECT_NE(ErrorFor(r, "spec.ports[4].protocol").find("not HTTP, TLS, HTTPS or TCP"),
            std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.addresses[0]"), "");
  EXPECT_NE(ErrorFor(r, "spec.hosts").find("one host only with a TCP port"), std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.endpoints").find("only with resolution STATIC"), std::string::npos);
  r = ValidateYaml(R"(
kind: ExternalService
metadata: {name: bad}
spec: {hosts: [db.example], ports: [{number: 5432, protocol: TCP}], resolution: STATIC,
       endpoints: [db.example]}
)");
  EXPECT_NE(ErrorFor(r, "spec.addresses").find("required with a TCP port"), std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.endpoints[0]").find("is not an IP address"), std::string::npos);
  r = ValidateYaml("kind: ExternalService\nmetadata: {name: e}\nspec: {resolution: MAGIC}\n");
  EXPECT_NE(ErrorFor(r, "spec.resolution").find("is not DNS, STATIC or NONE"), std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.hosts").find("required"), std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.ports").find("required"), std::string::npos);
}

TEST(ValidateTest, ExternalServiceTlsOrigination) {
  const std::string ca = tls::testing::ValueOrDie(tls::testing::TestCa::Create()).cert_pem();
  // The PEM as a YAML block scalar, indented under its key.
  const std::string block = absl::StrReplaceAll(ca, {{"\n", "\n        "}});
  for (const std::string& ok : {
           absl::StrCat("\n  hosts: [api.partner.example]\n  ports:\n  - number: 80\n"
                        "    protocol: HTTP\n    targetPort: 443\n    tls:\n"
                        "      caCertificates: |\n        ",
                        block),
           std::string("{hosts: [api.partner.example], ports: [{number: 80, protocol: HTTP, "
                       "targetPort: 443, tls: {caCertificateRefs: [partner-ca], "
                       "clientCertificateRef: partner-client}}]}"),
           std::string("{hosts: [a.example, b.example], ports: [{number: 8080, protocol: HTTP, "
                       "tls: {}}], resolution: STATIC, endpoints: [203.0.113.9]}"),
       }) {
    ValidationResult r =
        ValidateYaml(absl::StrCat("kind: ExternalService\nmetadata: {name: ok}\nspec: ", ok, "\n"));
    EXPECT_TRUE(r.errors.empty()) << ok << ": " << r.errors[0].field << ": " << r.errors[0].message;
  }
  ValidationResult r = ValidateYaml(R"(
kind: ExternalService
metadata: {name: bad}
spec:
  hosts: ["*.partner.example"]
  resolution: NONE
  ports:
  - {number: 443, protocol: TLS, tls: {}}
  - number: 80
    protocol: HTTP
    targetPort: 70000
    tls: {caCertificates: "not a certificate", caCertificateRefs: [Bad_Name], clientCertificateRef: "no/slashes"}
  - {number: 81, protocol: HTTP2}
)");
  EXPECT_NE(ErrorFor(r, "spec.ports[0].tls").find("only on HTTP ports"), std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.ports[1].targetPort"), "");
  EXPECT_NE(ErrorFor(r, "spec.ports[1].tls").find("not with resolution NONE"), std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.ports[1].tls.caCertificates").find("not PEM certificates"),
            std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.ports[1].tls.caCertificateRefs[0]").find("not a ConfigMap name"),
            std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.ports[1].tls.clientCertificateRef").find("not a Secret name"),
            std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.ports[2].protocol").find("HTTP2 is not supported"),
            std::string::npos);
  bool wildcard = false;
  for (const auto& e : r.errors) {
    wildcard |= e.message.find("not with the wildcard host") != std::string::npos;
  }
  EXPECT_TRUE(wildcard);
}

TEST(ValidateTest, TrafficPolicyOnExternalServices) {
  ValidationResult ok = ValidateYaml(R"(
kind: TrafficPolicy
metadata: {name: partner}
spec:
  targetRefs: [{group: meshlet.io, kind: ExternalService, name: partner}]
  timeouts: {request: 3s}
  circuitBreaker: {maxConnections: 10}
)");
  EXPECT_TRUE(ok.errors.empty()) << ok.errors[0].field << ": " << ok.errors[0].message;
  ValidationResult r = ValidateYaml(R"(
kind: TrafficPolicy
metadata: {name: bad}
spec:
  target: reviews
  targetRefs: [{kind: Service, name: reviews}, {group: meshlet.io, kind: ExternalService, name: "A B"}]
  mtls: STRICT
  rateLimit: {requestsPerSecond: 10}
)");
  EXPECT_NE(ErrorFor(r, "spec.target").find("not with targetRefs"), std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.targetRefs[0]").find("only meshlet.io/ExternalService"),
            std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.targetRefs[1].name"), "");
  EXPECT_NE(ErrorFor(r, "spec.mtls").find("not for an ExternalService"), std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.rateLimit").find("not for an ExternalService"), std::string::npos);
}

TEST(ValidateTest, PolicyTargetRefs) {
  ValidationResult r = ValidateYaml(R"(
kind: AuthorizationPolicy
metadata: {name: p}
spec:
  targetRefs:
  - {kind: Gateway, group: gateway.networking.k8s.io, name: edge}
  - {kind: Service, name: orders}
  - {kind: Gateway, name: edge}
  - {kind: Service, group: apps, name: orders}
  - {kind: Deployment, name: orders}
  - {kind: Gateway, group: gateway.networking.k8s.io, name: "Edge!"}
  - {kind: Service}
)");
  EXPECT_EQ(ErrorFor(r, "spec.targetRefs[0].group"), "");
  EXPECT_EQ(ErrorFor(r, "spec.targetRefs[0].name"), "");
  EXPECT_EQ(ErrorFor(r, "spec.targetRefs[1].name"), "");
  EXPECT_EQ(ErrorFor(r, "spec.targetRefs[2].group"),
            "must be gateway.networking.k8s.io for a Gateway");
  EXPECT_NE(ErrorFor(r, "spec.targetRefs[3].group"), "");
  EXPECT_NE(ErrorFor(r, "spec.targetRefs[4].kind").find("Service, Gateway"), std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.targetRefs[5].name"), "");
  EXPECT_EQ(ErrorFor(r, "spec.targetRefs[6].name"), "required");
  r = ValidateYaml(R"(
kind: RequestAuthentication
metadata: {name: both}
spec:
  target: orders
  targetRefs: [{kind: Service, name: orders}]
  jwtRules: [{issuer: https://idp.example}]
)");
  EXPECT_NE(ErrorFor(r, "spec.targetRefs").find("spec.target"), std::string::npos);
}

TEST(ValidateTest, AuthorizationOnEndUsers) {
  EXPECT_TRUE(ValidateYaml(R"(
kind: AuthorizationPolicy
metadata: {name: p}
spec:
  rules:
  - from: [{requestPrincipals: ["*", "https://idp/alice", "https://idp/*"]}]
    when:
    - {key: "request.auth.claims[groups]", values: [admins, "team-*"]}
    - {key: "request.auth.claims[realm_access][roles]", values: [admin]}
    - {key: request.auth.audiences, values: [orders]}
    - {key: request.auth.presenter, values: [web-app]}
    - {key: request.auth.principal, values: ["https://idp/alice", "https://idp/*", "*"]}
)")
                  .errors.empty());
  ValidationResult r = ValidateYaml(R"(
kind: AuthorizationPolicy
metadata: {name: p}
spec:
  rules:
  - from: [{requestPrincipals: ["alice", "https://*/x"], notRequestPrincipals: ["bob"]}]
    when:
    - {key: "request.headers[x]", values: [a]}
    - {key: "request.auth.claims[groups]"}
    - {key: "request.auth.claims[]", values: ["a*b"]}
    - {key: request.auth.principal, values: [alice, "https://idp/*x"]}
    - {key: "request.auth.claims[a][]", values: [x]}
    - {key: "request.auth.claims[a][b][c][d][e][f][g][h][i]", values: [x]}
    - {key: "request.auth.claims[a]b]", values: [x]}
)");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].from[0].requestPrincipals[0]"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].from[0].requestPrincipals[1]"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].from[0].notRequestPrincipals[0]"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].when[0].key").find("request.auth.claims[NAME]"),
            std::string::npos);
  EXPECT_EQ(ErrorFor(r, "spec.rules[0].when[1].values"), "required");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].when[2].key"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].when[2].values[0]"), "");
  EXPECT_EQ(ErrorFor(r, "spec.rules[0].when[3].key"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].when[3].values[0]").find("<issuer>/<subject>"),
            std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.rules[0].when[3].values[1]").find("only at the end"),
            std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.rules[0].when[4].key").find("at most 8 levels"), std::string::npos);
  EXPECT_NE(ErrorFor(r, "spec.rules[0].when[5].key"), "");
  EXPECT_NE(ErrorFor(r, "spec.rules[0].when[6].key"), "");
  EXPECT_EQ(ClaimPathOfKey("request.auth.claims[a][b][c][d][e][f][g][h]").size(), 8u);
  EXPECT_EQ(ClaimPathOfKey("request.auth.claims[realm_access][roles]"),
            (std::vector<std::string>{"realm_access", "roles"}));
}

TEST(CodecTest, ParseErrorsCarryPositionAndPath) {
  absl::StatusOr<ParsedResource> parsed = ParseResource(
      "kind: TrafficPolicy\nmetadata: {name: a}\nspec:\n  retries:\n    attempts: -1\n",
      {.source_name = "p.yaml"});
  ASSERT_FALSE(parsed.ok());
  ErrorLocation where = SplitParseError(parsed.status().message());
  EXPECT_EQ(where.position, "p.yaml:5:15");
  EXPECT_EQ(where.path, "spec.retries.attempts");
  EXPECT_FALSE(where.reason.empty());

  EXPECT_NE(ParseResource("kind: Gizmo\n").status().message().find("unknown kind"),
            std::string::npos);
  EXPECT_NE(ParseResource("metadata: {name: a}\n").status().message().find("kind: required"),
            std::string::npos);
  EXPECT_FALSE(ParseResource("kind: Service\n", {}, FindKind("HTTPRoute")).ok());
}

TEST(CodecTest, KindErrorsPointAtTheKindValue) {
  // The kind on line 2 of a document that starts on line 11 of its file (meshctl parses each
  // document of a file with such an offset); its value starts in column 9.
  const std::string document =
      "apiVersion: meshlet.io/v1\nkind:   Gizmo\nmetadata: {name: a}\nspec: {}\n";
  config::YamlParseOptions options{.source_name = "p.yaml", .line_offset = 10};
  absl::Status unknown = ParseResource(document, options).status();
  ErrorLocation where = SplitParseError(unknown.message());
  EXPECT_EQ(where.position, "p.yaml:12:9") << unknown;
  EXPECT_EQ(where.path, "kind");
  EXPECT_EQ(where.reason.rfind("unknown kind \"Gizmo\"; one of Service, ", 0), 0) << unknown;

  // Without a file name and offset: the line and column in the text.
  where = SplitParseError(ParseResource("# a policy\nkind: Gizmo\n").status().message());
  EXPECT_EQ(where.position, "2:7");
  EXPECT_EQ(where.path, "kind");

  // The API names the kind in the URL; a body of another kind is refused at its kind.
  absl::Status mismatch =
      ParseResource("metadata: {name: a}\nkind: Service\n", {}, FindKind("HTTPRoute")).status();
  where = SplitParseError(mismatch.message());
  EXPECT_EQ(where.position, "2:7") << mismatch;
  EXPECT_EQ(where.path, "kind");
  EXPECT_NE(where.reason.find("does not match the request's kind \"HTTPRoute\""),
            std::string::npos);
}

TEST(CodecTest, JsonIsDeterministicAndRoundTrips) {
  absl::StatusOr<ParsedResource> parsed = ParseResource(
      "kind: Service\nmetadata: {name: a, labels: {z: '1', a: '2', m: '3'}}\nspec: {ports: "
      "[{port: 80}]}");
  ASSERT_TRUE(parsed.ok());
  const std::string json = ToJson(*parsed->message);
  EXPECT_LT(json.find("\"a\""), json.find("\"m\""));
  EXPECT_LT(json.find("\"m\""), json.find("\"z\""));
  absl::StatusOr<ParsedResource> back = ParseStoredResource("Service", json);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(ToJson(*back->message), json);
  // The JSON reads back through the YAML parser too (what `meshctl apply` of `get -o json` does).
  absl::StatusOr<ParsedResource> again = ParseResource(json);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(ToJson(*again->message), json);
}

}  // namespace
}  // namespace meshlet::controlplane::policy

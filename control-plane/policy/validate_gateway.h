#pragma once

// Validation of the Gateway API kinds (xds/gateway.proto: HTTPRoute, GRPCRoute, ReferenceGrant,
// GatewayClass, Gateway, BackendTLSPolicy), a part of Validate (validate.h), which checks the
// metadata first. The rules are upstream's (gateway.networking.k8s.io standard channel): the CRDs'
// OpenAPI constraints (patterns, enums, lengths, list sizes), their CEL x-kubernetes-validations
// (filter type and field agree, repeated filters, redirect with backendRefs, ReplacePrefixMatch
// with one PathPrefix match, timeouts, parentRef uniqueness) and the rules of the former validating
// webhook (a header named twice in one match or one filter), plus meshlet's own: regular
// expressions must compile with RE2. The list sizes are the API's, fixed by its schema, not
// ValidationLimits. Stateless functions.

#include <string>

#include "control-plane/policy/validate.h"
#include "xds/gateway.pb.h"

namespace meshlet::controlplane::policy::gateway_validation {

// Each appends its problems to `result`, paths in JSON spelling ("spec.rules[0].matches[1]").
void HttpRoute(const meshlet::gateway::HTTPRoute& route, ValidationResult& result);
void GrpcRoute(const meshlet::gateway::GRPCRoute& route, ValidationResult& result);
void ReferenceGrant(const meshlet::gateway::ReferenceGrant& grant, ValidationResult& result);
// GatewayClass and Gateway (docs/gateway.md): what the upstream CRDs refuse (required fields,
// unique listener names, ports, hostnames, list sizes). What meshlet does not support but the
// API allows (a protocol, a tls.mode) is valid here and shows in the Gateway's status.
void GatewayClass(const meshlet::gateway::GatewayClass& gateway_class, ValidationResult& result);
void Gateway(const meshlet::gateway::Gateway& gateway, ValidationResult& result);
// BackendTLSPolicy (docs/gateway.md): the upstream CRD's rules (targetRefs and their sectionNames,
// a hostname, caCertificateRefs or wellKnownCACertificates, subjectAltNames of type Hostname or
// URI). A caCertificateRef of another kind than ConfigMap is valid here and shows in the policy's
// status (InvalidKind); a targetRef of another kind than Service is a warning (left alone).
void BackendTLSPolicy(const meshlet::gateway::BackendTLSPolicy& policy, ValidationResult& result);

// A Gateway API duration ("10s", "1h30m", "500ms": 1 to 4 of up to 5 digits and a unit h, m, s
// or ms) in milliseconds, or -1 when `text` is not one.
int64_t GatewayDurationMillis(absl::string_view text);

}  // namespace meshlet::controlplane::policy::gateway_validation

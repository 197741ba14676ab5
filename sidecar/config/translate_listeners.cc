#include "sidecar/config/translate_internal.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/net/address.h"
#include "common/net/ip_prefix.h"
#include "sidecar/filters/authorization.h"
#include "sidecar/filters/jwt_policy.h"

namespace meshlet::sidecar::config::translate_internal {
namespace {

// The most member names a nested JWT claim may have below its top-level name.
constexpr int kMaxNestedClaimDepth = 16;

// "HTTP1" for PROTOCOL_HTTP1: the name people write after the prefix.
std::string ProtocolName(xds::ListenerProtocol protocol) {
  return std::string(absl::StripPrefix(xds::ListenerProtocol_Name(protocol), "PROTOCOL_"));
}

void TranslateHttpOptions(Errors::Scope& scope, const xds::HttpOptions& in,
                          HttpOptionsConfig& out) {
  auto bounded = [&](absl::string_view field, uint32_t value, uint32_t max, uint32_t* target) {
    if (value == 0) return;  // unset: keep the default
    if (value > max) {
      scope.Add(Join("http", field), absl::StrCat("must be at most ", max));
      return;
    }
    *target = value;
  };
  bounded("max_request_headers_kb", in.max_request_headers_kb(), 8192, &out.max_request_headers_kb);
  bounded("max_headers_count", in.max_headers_count(), 10000, &out.max_headers_count);
  bounded("max_request_line_bytes", in.max_request_line_bytes(), 1 << 20,
          &out.max_request_line_bytes);
  bounded("max_concurrent_streams", in.max_concurrent_streams(), (1u << 31) - 1,
          &out.max_concurrent_streams);
  bounded("max_outbound_control_frames", in.max_outbound_control_frames(), 1u << 20,
          &out.max_outbound_control_frames);
  bounded("max_inbound_window_update_frames_per_data_frame_sent",
          in.max_inbound_window_update_frames_per_data_frame_sent(), 1u << 20,
          &out.max_inbound_window_update_frames_per_data_frame_sent);
  bounded("max_inbound_priority_frames_per_stream", in.max_inbound_priority_frames_per_stream(),
          1u << 20, &out.max_inbound_priority_frames_per_stream);
  bounded("max_continuation_frames", in.max_continuation_frames(), 1024,
          &out.max_continuation_frames);
  bounded("connection_buffer_kb", in.connection_buffer_kb(), 1u << 20, &out.connection_buffer_kb);
  // Wrapped: zero is meaningful (off, or none allowed).
  auto wrapped = [&](absl::string_view field, bool has, uint32_t value, uint32_t max,
                     uint32_t* target) {
    if (!has) return;
    if (value > max) {
      scope.Add(Join("http", field), absl::StrCat("must be at most ", max));
      return;
    }
    *target = value;
  };
  wrapped("stream_reset_burst", in.has_stream_reset_burst(), in.stream_reset_burst().value(),
          1u << 20, &out.stream_reset_burst);
  wrapped("stream_resets_per_second", in.has_stream_resets_per_second(),
          in.stream_resets_per_second().value(), 1u << 20, &out.stream_resets_per_second);
  wrapped("control_frame_burst", in.has_control_frame_burst(), in.control_frame_burst().value(),
          1u << 20, &out.control_frame_burst);
  wrapped("max_flood_drains", in.has_max_flood_drains(), in.max_flood_drains().value(), 1u << 20,
          &out.max_flood_drains);
  wrapped("control_frames_per_second", in.has_control_frames_per_second(),
          in.control_frames_per_second().value(), 1u << 20, &out.control_frames_per_second);
  wrapped("max_consecutive_inbound_empty_frames", in.has_max_consecutive_inbound_empty_frames(),
          in.max_consecutive_inbound_empty_frames().value(), 1u << 20,
          &out.max_consecutive_inbound_empty_frames);
  uint32_t body_kb = 0;
  bounded("max_request_body_buffer_kb", in.max_request_body_buffer_kb(), 1 << 20, &body_kb);
  if (body_kb != 0) out.max_request_body_buffer_bytes = uint64_t{body_kb} * 1024;
  ReadDuration(scope, "http.request_headers_timeout", in.has_request_headers_timeout(),
               in.request_headers_timeout(), DurationRule::kNonNegative,
               &out.request_headers_timeout);
  ReadDuration(scope, "http.stream_idle_timeout", in.has_stream_idle_timeout(),
               in.stream_idle_timeout(), DurationRule::kNonNegative, &out.stream_idle_timeout);
  ReadDuration(scope, "http.idle_timeout", in.has_idle_timeout(), in.idle_timeout(),
               DurationRule::kNonNegative, &out.idle_timeout);
  ReadDuration(scope, "http.stream_reset_min_lifetime", in.has_stream_reset_min_lifetime(),
               in.stream_reset_min_lifetime(), DurationRule::kNonNegative,
               &out.stream_reset_min_lifetime);
  ReadDuration(scope, "http.flood_drain_timeout", in.has_flood_drain_timeout(),
               in.flood_drain_timeout(), DurationRule::kNonNegative, &out.flood_drain_timeout);
  ReadDuration(scope, "http.request_body_timeout", in.has_request_body_timeout(),
               in.request_body_timeout(), DurationRule::kNonNegative, &out.request_body_timeout);
  bounded("min_request_body_bytes_per_second", in.min_request_body_bytes_per_second(), 1u << 30,
          &out.min_request_body_bytes_per_second);
  if (out.min_request_body_bytes_per_second > 0 && out.request_body_timeout.count() == 0) {
    scope.Add("http.min_request_body_bytes_per_second", "needs request_body_timeout");
  }
  out.allow_connect = in.allow_connect();
  if (in.has_generate_request_id()) out.generate_request_id = in.generate_request_id().value();
  if (in.has_use_remote_address()) out.use_remote_address = in.use_remote_address().value();
}

// Listener.authorization: validated values, then compiled once (filters/authorization.h).
// A lower-case header name the JWT filter may write or read (RFC 9110 token characters).
bool ValidJwtHeaderName(absl::string_view name) {
  if (name.empty() || name[0] == ':') return false;
  for (char c : name) {
    if (!(absl::ascii_islower(static_cast<unsigned char>(c)) ||
          absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  return true;
}

std::shared_ptr<const filters::JwtPolicy> TranslateJwt(Errors::Scope& scope,
                                                       const xds::JwtAuthentication& in) {
  const size_t before = scope.count();
  filters::JwtVerifierConfig verifier;
  auto policy = std::make_shared<filters::JwtPolicy>();
  Duration skew = std::chrono::seconds(60);
  ReadDuration(scope, "jwt.clock_skew", in.has_clock_skew(), in.clock_skew(),
               DurationRule::kNonNegative, &skew);
  verifier.clock_skew_seconds = std::chrono::duration_cast<std::chrono::seconds>(skew).count();
  if (in.max_token_bytes() != 0) verifier.max_token_bytes = in.max_token_bytes();
  auto add_location = [&](filters::JwtTokenLocation location) {
    for (const filters::JwtTokenLocation& seen : policy->locations) {
      if (seen.query_parameter == location.query_parameter && seen.name == location.name &&
          seen.prefix == location.prefix) {
        return;
      }
    }
    policy->locations.push_back(std::move(location));
  };
  auto add_output_header = [&](const std::string& header) {
    if (std::find(policy->output_headers.begin(), policy->output_headers.end(), header) ==
        policy->output_headers.end()) {
      policy->output_headers.push_back(header);
    }
  };
  bool any_default = in.issuers_size() == 0;
  for (int i = 0; i < in.issuers_size(); ++i) {
    const xds::JwtIssuer& issuer = in.issuers(i);
    const std::string path = Index("jwt.issuers", i);
    if (issuer.issuer().empty()) scope.Add(Join(path, "issuer"), "must not be empty");
    verifier.issuers.push_back({.issuer = issuer.issuer(),
                                .audiences = {issuer.audiences().begin(), issuer.audiences().end()},
                                .jwks = issuer.jwks(),
                                .keys_unavailable = issuer.keys_unavailable()});
    if (issuer.keys_unavailable()) {
      if (!issuer.jwks().empty()) scope.Add(Join(path, "jwks"), "set, keys_unavailable too");
    } else {
      absl::StatusOr<filters::JwksParse> jwks = filters::ParseJwks(issuer.jwks());
      if (!jwks.ok()) scope.Add(Join(path, "jwks"), jwks.status());
    }
    if (issuer.from_headers_size() == 0 && issuer.from_params_size() == 0) any_default = true;
    for (int h = 0; h < issuer.from_headers_size(); ++h) {
      const std::string name = absl::AsciiStrToLower(issuer.from_headers(h).name());
      if (!ValidJwtHeaderName(name)) {
        scope.Add(Join(Index(Join(path, "from_headers"), h), "name"), "not a header name");
      }
      add_location({.name = name, .prefix = issuer.from_headers(h).prefix()});
    }
    for (int q = 0; q < issuer.from_params_size(); ++q) {
      if (issuer.from_params(q).empty()) {
        scope.Add(Index(Join(path, "from_params"), q), "must not be empty");
      }
      add_location({.query_parameter = true, .name = issuer.from_params(q)});
    }
    filters::JwtIssuerOutput output;
    output.forward_original_token = issuer.forward_original_token();
    for (int c = 0; c < issuer.output_claim_to_headers_size(); ++c) {
      const xds::JwtClaimToHeader& claim = issuer.output_claim_to_headers(c);
      const std::string header = absl::AsciiStrToLower(claim.header());
      const std::string claim_path = Index(Join(path, "output_claim_to_headers"), c);
      if (claim.claim().empty()) scope.Add(Join(claim_path, "claim"), "must not be empty");
      if (!ValidJwtHeaderName(header)) scope.Add(Join(claim_path, "header"), "not a header name");
      output.claim_to_headers.emplace_back(claim.claim(), header);
      add_output_header(header);
    }
    if (!issuer.output_payload_to_header().empty()) {
      output.payload_header = absl::AsciiStrToLower(issuer.output_payload_to_header());
      if (!ValidJwtHeaderName(output.payload_header)) {
        scope.Add(Join(path, "output_payload_to_header"), "not a header name");
      }
      add_output_header(output.payload_header);
    }
    if (issuer.has_source()) {
      output.source = PolicySourceName(scope, Join(path, "source"), issuer.source(),
                                       /*route=*/false);
    }
    policy->outputs.push_back(std::move(output));
  }
  if (any_default) {
    for (filters::JwtTokenLocation& location : filters::DefaultJwtTokenLocations()) {
      add_location(std::move(location));
    }
  }
  if (scope.count() != before) return nullptr;
  absl::StatusOr<std::unique_ptr<filters::JwtVerifier>> built =
      filters::JwtVerifier::Create(verifier);
  if (!built.ok()) {
    scope.Add("jwt", built.status());
    return nullptr;
  }
  policy->verifier = std::move(*built);
  return policy;
}

void TranslateAuthorization(Errors::Scope& scope, const xds::Authorization& in,
                            filters::AuthorizationConfig& out) {
  for (int p = 0; p < in.policies_size(); ++p) {
    const xds::AuthorizationPolicy& policy_in = in.policies(p);
    const std::string path = Index("authorization.policies", p);
    filters::AuthorizationPolicyConfig policy;
    policy.name = policy_in.name();
    if (policy_in.has_source()) {
      policy.source =
          PolicySourceName(scope, Join(path, "source"), policy_in.source(), /*route=*/false);
    }
    switch (policy_in.action()) {
      case xds::AuthorizationPolicy::ALLOW:
        policy.action = filters::AuthorizationPolicyConfig::Action::kAllow;
        break;
      case xds::AuthorizationPolicy::DENY:
        policy.action = filters::AuthorizationPolicyConfig::Action::kDeny;
        break;
      default:
        scope.Add(Join(path, "action"), absl::StrCat("unknown value ", policy_in.action()));
    }
    for (int r = 0; r < policy_in.rules_size(); ++r) {
      const xds::AuthorizationRule& rule_in = policy_in.rules(r);
      const std::string rule_path = Index(Join(path, "rules"), r);
      filters::AuthorizationRuleConfig rule;
      // '*' only as the last character: a prefix ("/api/*") or anything present ("*").
      auto patterns = [&](absl::string_view field,
                          const google::protobuf::RepeatedPtrField<std::string>& values,
                          std::vector<std::string>& to) {
        for (int i = 0; i < values.size(); ++i) {
          if (!filters::ValidAuthorizationPattern(values[i])) {
            scope.Add(Index(Join(rule_path, field), i),
                      absl::StrCat(Quote(values[i]),
                                   " must be non-empty, with '*' only as its last character"));
          }
          to.push_back(values[i]);
        }
      };
      patterns("principals", rule_in.principals(), rule.principals);
      for (int i = 0; i < rule_in.principals_size(); ++i) {
        const std::string& principal = rule_in.principals(i);
        if (principal != "*" && !absl::StartsWith(principal, "spiffe://")) {
          scope.Add(Index(Join(rule_path, "principals"), i),
                    absl::StrCat(Quote(principal), " is not a SPIFFE id (spiffe://...) or \"*\""));
        }
      }
      patterns("namespaces", rule_in.namespaces(), rule.namespaces);
      for (int i = 0; i < rule_in.namespaces_size(); ++i) {
        if (absl::StrContains(rule_in.namespaces(i), '/')) {
          scope.Add(Index(Join(rule_path, "namespaces"), i),
                    absl::StrCat(Quote(rule_in.namespaces(i)), " must not contain '/'"));
        }
      }
      for (int i = 0; i < rule_in.ports_size(); ++i) {
        if (rule_in.ports(i) == 0 || rule_in.ports(i) > 65535) {
          scope.Add(Index(Join(rule_path, "ports"), i), "must be 1 to 65535");
        }
        rule.ports.push_back(rule_in.ports(i));
      }
      for (int i = 0; i < rule_in.methods_size(); ++i) {
        const std::string& method = rule_in.methods(i);
        if (method.empty() || !std::all_of(method.begin(), method.end(), [](char c) {
              return c > ' ' && c < 0x7f && c != '*';
            })) {
          scope.Add(Index(Join(rule_path, "methods"), i),
                    absl::StrCat(Quote(method), " is not an HTTP method (exact, e.g. \"GET\")"));
        }
        rule.methods.push_back(method);
      }
      auto request_principals = [&](absl::string_view field,
                                    const google::protobuf::RepeatedPtrField<std::string>& values,
                                    std::vector<std::string>& to) {
        patterns(field, values, to);
        for (int i = 0; i < values.size(); ++i) {
          if (values[i] != "*" && !absl::StrContains(values[i], '/')) {
            scope.Add(Index(Join(rule_path, field), i),
                      absl::StrCat(Quote(values[i]), " is not \"<issuer>/<subject>\" or \"*\""));
          }
        }
      };
      request_principals("request_principals", rule_in.request_principals(),
                         rule.request_principals);
      request_principals("not_request_principals", rule_in.not_request_principals(),
                         rule.not_request_principals);
      for (int i = 0; i < rule_in.claims_size(); ++i) {
        const xds::ClaimMatch& claim_in = rule_in.claims(i);
        const std::string claim_path = Index(Join(rule_path, "claims"), i);
        filters::AuthorizationRuleConfig::Claim claim{
            .name = claim_in.name(),
            .values = {},
            .nested = {claim_in.nested().begin(), claim_in.nested().end()}};
        if (claim_in.name().empty()) scope.Add(Join(claim_path, "name"), "required");
        if (claim_in.nested_size() > kMaxNestedClaimDepth) {
          scope.Add(Join(claim_path, "nested"),
                    absl::StrCat("has ", claim_in.nested_size(), " levels; at most ",
                                 kMaxNestedClaimDepth));
        }
        for (int n = 0; n < claim_in.nested_size(); ++n) {
          if (claim_in.nested(n).empty()) scope.Add(Index(Join(claim_path, "nested"), n), "empty");
        }
        if (claim_in.values_size() == 0) scope.Add(Join(claim_path, "values"), "required");
        for (int v = 0; v < claim_in.values_size(); ++v) {
          if (!filters::ValidAuthorizationPattern(claim_in.values(v))) {
            scope.Add(Index(Join(claim_path, "values"), v),
                      absl::StrCat(Quote(claim_in.values(v)),
                                   " must be non-empty, with '*' only as its last character"));
          }
          claim.values.push_back(claim_in.values(v));
        }
        rule.claims.push_back(std::move(claim));
      }
      patterns("paths", rule_in.paths(), rule.paths);
      for (int i = 0; i < rule_in.paths_size(); ++i) {
        const std::string& value = rule_in.paths(i);
        if (value != "*" && !absl::StartsWith(value, "/")) {
          scope.Add(Index(Join(rule_path, "paths"), i),
                    absl::StrCat(Quote(value), " must start with '/' (or be \"*\")"));
        }
      }
      for (int i = 0; i < rule_in.hosts_size(); ++i) {
        const std::string& value = rule_in.hosts(i);
        if (value != "*" && !ValidServerName(value)) {
          scope.Add(
              Index(Join(rule_path, "hosts"), i),
              absl::StrCat(Quote(value), " is not a lower-case host name, *.suffix or \"*\""));
        }
        rule.hosts.push_back(value);
      }
      policy.rules.push_back(std::move(rule));
    }
    out.policies.push_back(std::move(policy));
  }
}

std::optional<ListenerProtocol> TranslateProtocol(xds::ListenerProtocol protocol) {
  switch (protocol) {
    case xds::PROTOCOL_AUTO:
      return ListenerProtocol::kAuto;
    case xds::PROTOCOL_HTTP1:
      return ListenerProtocol::kHttp1;
    case xds::PROTOCOL_HTTP2:
      return ListenerProtocol::kHttp2;
    case xds::PROTOCOL_HTTP:
      return ListenerProtocol::kHttp;
    case xds::PROTOCOL_TCP:
      return ListenerProtocol::kTcp;
    default:
      return std::nullopt;
  }
}

// route_config_name and tcp_cluster as `protocol` needs them, of a listener (`parent` empty) or of
// one of its destinations ("destinations[i]").
void CheckTargets(Errors::Scope& scope, const std::string& parent, xds::ListenerProtocol protocol,
                  const std::string& route_config_name, const std::string& tcp_cluster,
                  const absl::flat_hash_set<std::string>& routes, const ClusterNames& clusters) {
  const std::string name = ProtocolName(protocol);
  const bool tcp = protocol == xds::PROTOCOL_TCP;
  if (tcp) {
    if (!route_config_name.empty()) {
      scope.Add(Join(parent, "route_config_name"), "not used with protocol TCP (use tcp_cluster)");
    }
  } else if (route_config_name.empty()) {
    scope.Add(Join(parent, "route_config_name"), absl::StrCat("required with protocol ", name));
  } else if (!routes.contains(route_config_name)) {
    scope.Add(parent, absl::StrCat("route_config_name ", Quote(route_config_name),
                                   " names no RouteConfiguration"));
  }
  if (tcp && tcp_cluster.empty()) {
    scope.Add(Join(parent, "tcp_cluster"), "required with protocol TCP");
  } else if (!tcp && protocol != xds::PROTOCOL_AUTO && !tcp_cluster.empty()) {
    scope.Add(Join(parent, "tcp_cluster"), absl::StrCat("not used with protocol ", name));
  } else if (!tcp_cluster.empty() && !clusters.contains(tcp_cluster)) {
    scope.Add(parent, absl::StrCat("tcp_cluster ", Quote(tcp_cluster), " names no Cluster"));
  }
}

// Listener.destinations, each name once. Destinations that match by server name read the
// ClientHello of TLS the listener passes through, and those that match by HTTP host read plain
// HTTP: neither on a listener that terminates TLS.
void TranslateDestinations(Errors::Scope& scope, const xds::Listener& in,
                           const absl::flat_hash_set<std::string>& routes,
                           const ClusterNames& clusters, ListenerConfig& out) {
  absl::flat_hash_map<std::string, int> names;  // name → first index
  for (int i = 0; i < in.destinations_size(); ++i) {
    const xds::ListenerDestination& d = in.destinations(i);
    const std::string path = Index("destinations", i);
    if (ValidName(d.name())) {
      if (auto [it, inserted] = names.emplace(d.name(), i); !inserted) {
        scope.Add(Join(path, "name"), absl::StrCat(Quote(d.name()), " is already used by ",
                                                   Index("destinations", it->second)));
      }
    }
    if (d.server_names_size() > 0 && in.has_tls()) {
      scope.Add(Join(path, "server_names"),
                "not with Listener.tls (the listener would terminate the TLS it routes by name)");
    }
    if (d.http_hosts_size() > 0 && in.has_tls()) {
      scope.Add(Join(path, "http_hosts"),
                "not with Listener.tls (the Host is read from plain HTTP before anything else)");
    }
    out.destinations.push_back(TranslateListenerDestination(scope, path, d, routes, clusters));
  }
}

// use_original_destination, destinations, unmatched_destination, passthrough_host.
void TranslateCapture(Errors::Scope& scope, const xds::Listener& in,
                      const absl::flat_hash_set<std::string>& routes, const ClusterNames& clusters,
                      ListenerConfig& out) {
  out.use_original_destination = in.use_original_destination();
  if (!in.use_original_destination()) {
    constexpr absl::string_view kOnlyWith = "only with use_original_destination: true";
    // Destinations matched by server name alone (an east-west gateway's): each names some, and
    // no address or port (there is no original destination to compare them with).
    for (int i = 0; i < in.destinations_size(); ++i) {
      const xds::ListenerDestination& d = in.destinations(i);
      const std::string path = Index("destinations", i);
      if (d.server_names_size() == 0) {
        scope.Add(Join(path, "server_names"),
                  "required without use_original_destination (destinations there match by "
                  "server name alone)");
      }
      if (d.addresses_size() > 0) scope.Add(Join(path, "addresses"), kOnlyWith);
      if (d.port() != 0) scope.Add(Join(path, "port"), kOnlyWith);
      if (d.passthrough()) scope.Add(Join(path, "passthrough"), kOnlyWith);
      if (d.http_hosts_size() > 0) scope.Add(Join(path, "http_hosts"), kOnlyWith);
    }
    TranslateDestinations(scope, in, routes, clusters, out);
    if (in.unmatched_destination() != xds::PASSTHROUGH) {
      scope.Add("unmatched_destination", kOnlyWith);
    }
    if (!in.passthrough_host().empty()) scope.Add("passthrough_host", kOnlyWith);
    if (in.has_unmatched_destination_source()) {
      scope.Add("unmatched_destination_source", kOnlyWith);
    }
    if (in.has_passthrough_connect_timeout()) {
      scope.Add("passthrough_connect_timeout", kOnlyWith);
    }
    return;
  }
  ReadDuration(scope, "passthrough_connect_timeout", in.has_passthrough_connect_timeout(),
               in.passthrough_connect_timeout(), DurationRule::kPositive,
               &out.passthrough_connect_timeout);
  TranslateDestinations(scope, in, routes, clusters, out);
  switch (in.unmatched_destination()) {
    case xds::PASSTHROUGH:
      out.unmatched_destination = UnmatchedDestination::kPassthrough;
      break;
    case xds::REFUSE:
      out.unmatched_destination = UnmatchedDestination::kRefuse;
      break;
    default:
      scope.Add("unmatched_destination",
                absl::StrCat("unknown value ", in.unmatched_destination()));
  }
  if (in.has_unmatched_destination_source()) {
    out.unmatched_destination_source =
        PolicySourceName(scope, "unmatched_destination_source", in.unmatched_destination_source(),
                         /*route=*/false);
  }
  if (!in.passthrough_host().empty()) {
    if (in.unmatched_destination() == xds::REFUSE) {
      scope.Add("passthrough_host", "only with unmatched_destination: PASSTHROUGH");
    }
    absl::StatusOr<net::IpAddress> host = net::IpAddress::Parse(in.passthrough_host());
    if (!host.ok()) {
      scope.Add("passthrough_host", host.status());
    } else {
      out.passthrough_host = *host;
    }
  }
}

// Listener.on_demand: address ranges (capture listeners only), hosts (HTTP), the wait's bounds.
void TranslateOnDemand(Errors::Scope& scope, const xds::Listener& in, ListenerConfig& out) {
  const xds::OnDemand& on_demand = in.on_demand();
  OnDemandConfig config;
  if (on_demand.address_ranges_size() > 0 && !in.use_original_destination()) {
    scope.Add("on_demand.address_ranges", "only with use_original_destination: true");
  }
  for (int i = 0; i < on_demand.address_ranges_size(); ++i) {
    absl::StatusOr<net::IpPrefix> range = net::IpPrefix::Parse(on_demand.address_ranges(i));
    if (!range.ok()) {
      scope.Add(Index("on_demand.address_ranges", i), range.status());
      continue;
    }
    config.address_ranges.push_back(*range);
  }
  config.hosts = on_demand.hosts();
  if (config.hosts && in.protocol() == xds::PROTOCOL_TCP && !in.use_original_destination()) {
    scope.Add("on_demand.hosts", "not used with protocol TCP");
  }
  ReadDuration(scope, "on_demand.timeout", on_demand.has_timeout(), on_demand.timeout(),
               DurationRule::kPositive, &config.timeout);
  if (config.timeout < OnDemandConfig::kMinTimeout ||
      config.timeout > OnDemandConfig::kMaxTimeout) {
    scope.Add("on_demand.timeout", "must be 10ms to 30s");
  }
  ReadDuration(scope, "on_demand.idle_time", on_demand.has_idle_time(), on_demand.idle_time(),
               DurationRule::kPositive, &config.idle_time);
  if (config.idle_time < OnDemandConfig::kMinIdleTime) {
    scope.Add("on_demand.idle_time", "must be at least 10s");
  }
  ReadDuration(scope, "on_demand.missing_ttl", on_demand.has_missing_ttl(), on_demand.missing_ttl(),
               DurationRule::kPositive, &config.missing_ttl);
  out.on_demand = std::move(config);
}

std::optional<ListenerConfig> TranslateListener(Errors::Scope& scope, const xds::Listener& in,
                                                const absl::flat_hash_set<std::string>& routes,
                                                const ClusterNames& clusters,
                                                const Snapshot::ByName<SecretConfig>& secrets) {
  const size_t before = scope.count();
  ListenerConfig out;
  out.name = in.name();
  absl::StatusOr<net::Address> address = net::Address::Parse(in.address());
  if (!address.ok()) {
    scope.Add("address", address.status());
  } else {
    out.address = *address;
  }
  for (int i = 0; i < in.additional_addresses_size(); ++i) {
    const std::string path = Index("additional_addresses", i);
    absl::StatusOr<net::Address> extra = net::Address::Parse(in.additional_addresses(i));
    if (!extra.ok()) {
      scope.Add(path, extra.status());
    } else if (!extra->is_ip()) {
      scope.Add(path, "must be an IP address and port (a unix socket path only goes in address)");
    } else if (extra->port() == 0) {
      scope.Add(path, "must name a port (0 would bind a different free port for each address)");
    } else if (address.ok() && *extra == *address) {
      scope.Add(path,
                absl::StrCat(Quote(in.additional_addresses(i)), " is the listener's address"));
    } else {
      out.additional_addresses.push_back(*extra);
    }
  }
  switch (in.direction()) {
    case xds::OUTBOUND:
      out.direction = TrafficDirection::kOutbound;
      break;
    case xds::INBOUND:
      out.direction = TrafficDirection::kInbound;
      break;
    default:
      scope.Add("direction", absl::StrCat("unknown value ", in.direction()));
  }
  std::optional<ListenerProtocol> protocol = TranslateProtocol(in.protocol());
  if (!protocol.has_value()) {
    scope.Add("protocol", absl::StrCat("unknown value ", in.protocol()));
    return std::nullopt;
  }
  out.protocol = *protocol;
  out.route_config_name = in.route_config_name();
  out.tcp_cluster = in.tcp_cluster();
  // A TCP listener that routes TLS by server name alone may have no tcp_cluster of its own:
  // what no destination takes is closed.
  const bool by_name_only = in.protocol() == xds::PROTOCOL_TCP && !in.use_original_destination() &&
                            in.destinations_size() > 0 && in.tcp_cluster().empty();
  if (!by_name_only) {
    CheckTargets(scope, "", in.protocol(), in.route_config_name(), in.tcp_cluster(), routes,
                 clusters);
  } else if (!in.route_config_name().empty()) {
    scope.Add("route_config_name", "not used with protocol TCP (use tcp_cluster)");
  }

  if (in.has_tls()) TranslateDownstreamTls(scope, in.tls(), secrets, out.tls);
  if (in.has_http()) TranslateHttpOptions(scope, in.http(), out.http);
  ReadDuration(scope, "detect_timeout", in.has_detect_timeout(), in.detect_timeout(),
               DurationRule::kPositive, &out.detect_timeout);
  ReadDuration(scope, "tls_handshake_timeout", in.has_tls_handshake_timeout(),
               in.tls_handshake_timeout(), DurationRule::kPositive, &out.tls_handshake_timeout);
  ReadDuration(scope, "tcp_idle_timeout", in.has_tcp_idle_timeout(), in.tcp_idle_timeout(),
               DurationRule::kNonNegative, &out.tcp_idle_timeout);
  out.max_connections = in.max_connections();
  out.access_log_path = in.access_log().path();
  if (in.has_rate_limit()) {
    TranslateRateLimit(scope, "rate_limit", in.rate_limit(), out.rate_limit, out.rate_limiter);
  }
  if (in.destination_port() > 65535) scope.Add("destination_port", "must be at most 65535");
  out.destination_port = in.destination_port();
  if (in.has_jwt()) out.jwt = TranslateJwt(scope, in.jwt());
  if (in.has_authorization()) {
    // HTTP requests are decided one by one; connections to tcp_cluster once, on the peer's
    // identity and the destination port (filters/authorization.h).
    TranslateAuthorization(scope, in.authorization(), out.authorization);
    out.authorizer = std::make_shared<const filters::Authorizer>(out.authorization);
  }
  TranslateCapture(scope, in, routes, clusters, out);
  if (in.has_on_demand()) TranslateOnDemand(scope, in, out);
  if (scope.count() != before) return std::nullopt;
  return out;
}

}  // namespace

ListenerDestinationConfig TranslateListenerDestination(
    Errors::Scope& scope, const std::string& path, const xds::ListenerDestination& d,
    const absl::flat_hash_set<std::string>& routes, const ClusterNames& clusters) {
  ListenerDestinationConfig destination;
  destination.name = d.name();
  if (d.name().empty()) {
    scope.Add(Join(path, "name"), "must not be empty");
  } else if (!ValidName(d.name())) {
    scope.Add(Join(path, "name"), "must not contain spaces or control characters");
  }
  for (int a = 0; a < d.addresses_size(); ++a) {
    absl::StatusOr<net::IpPrefix> prefix = net::IpPrefix::Parse(d.addresses(a));
    if (!prefix.ok()) {
      scope.Add(Index(Join(path, "addresses"), a), prefix.status());
      continue;
    }
    destination.addresses.push_back(*prefix);
  }
  if (d.port() > 65535) {
    scope.Add(Join(path, "port"), "must be at most 65535");
  } else {
    destination.port = static_cast<uint16_t>(d.port());
  }
  std::optional<ListenerProtocol> protocol = TranslateProtocol(d.protocol());
  if (!protocol.has_value()) {
    scope.Add(Join(path, "protocol"), absl::StrCat("unknown value ", d.protocol()));
  } else {
    destination.protocol = *protocol;
    if (d.passthrough()) {
      if (d.protocol() != xds::PROTOCOL_TCP) {
        scope.Add(Join(path, "protocol"), "must be PROTOCOL_TCP with passthrough");
      }
      if (!d.tcp_cluster().empty() || !d.route_config_name().empty()) {
        scope.Add(Join(path, "passthrough"),
                  "excludes tcp_cluster and route_config_name (the connection goes to its "
                  "original destination)");
      }
    } else {
      CheckTargets(scope, path, d.protocol(), d.route_config_name(), d.tcp_cluster(), routes,
                   clusters);
    }
  }
  destination.passthrough = d.passthrough();
  destination.route_config_name = d.route_config_name();
  destination.tcp_cluster = d.tcp_cluster();
  if (d.destination_port() > 65535) {
    scope.Add(Join(path, "destination_port"), "must be at most 65535");
  }
  destination.destination_port = d.destination_port();
  for (int n = 0; n < d.server_names_size(); ++n) {
    const std::string& name = d.server_names(n);
    if (!ValidServerName(name)) {
      scope.Add(Index(Join(path, "server_names"), n),
                absl::StrCat(Quote(name), " is not a lower-case host name or *.suffix"));
      continue;
    }
    destination.server_names.push_back(name);
  }
  for (int n = 0; n < d.http_hosts_size(); ++n) {
    const std::string& name = d.http_hosts(n);
    if (!ValidServerName(name)) {
      scope.Add(Index(Join(path, "http_hosts"), n),
                absl::StrCat(Quote(name), " is not a lower-case host name or *.suffix"));
      continue;
    }
    destination.http_hosts.push_back(name);
  }
  if (d.http_hosts_size() > 0) {
    // The Host is read from the first request, which must be HTTP/1: served as HTTP/1 by a route
    // table, or passed through as it came.
    if (d.server_names_size() > 0) {
      scope.Add(Join(path, "http_hosts"),
                "not with server_names (a connection opens with a TLS ClientHello or an HTTP/1 "
                "request, not both)");
    }
    const bool http1 = d.protocol() == xds::PROTOCOL_HTTP1 || d.protocol() == xds::PROTOCOL_HTTP;
    const bool passthrough = d.protocol() == xds::PROTOCOL_TCP && d.passthrough();
    if (protocol.has_value() && !http1 && !passthrough) {
      scope.Add(Join(path, "http_hosts"),
                absl::StrCat("not with protocol ", ProtocolName(d.protocol()),
                             d.protocol() == xds::PROTOCOL_TCP ? " without passthrough" : "",
                             ": needs protocol HTTP1 or HTTP (with route_config_name), or TCP "
                             "with passthrough"));
    }
  }
  return destination;
}

// Appends to a capture listener `out` the destinations of the ServiceRoutes joining its route
// configuration, after its own; a name it already has is refused, naming both.
void AppendJoinedDestinations(Errors::Scope& scope, const SnapshotBuild& build,
                              ListenerConfig& out) {
  auto joined = build.memo->joined.find(out.route_config_name);
  if (!out.use_original_destination || joined == build.memo->joined.end()) return;
  absl::flat_hash_map<std::string, std::string> names;  // name → who has it
  for (size_t i = 0; i < out.destinations.size(); ++i) {
    names.emplace(out.destinations[i].name, Index("destinations", static_cast<int>(i)));
  }
  out.destinations.reserve(out.destinations.size() + joined->second.size());
  for (const TranslationMemo::ServiceRoute* joining : joined->second) {
    const TranslationMemo::ServiceRoute& service_route = *joining;
    if (!service_route.destination.has_value()) continue;
    const std::string holder = absl::StrCat("service_route ", Quote(service_route.source->name()));
    auto [it, inserted] = names.emplace(service_route.destination->name, holder);
    if (!inserted) {
      scope.Add(
          absl::StrCat(holder, ": destination.name"),
          absl::StrCat(Quote(service_route.destination->name), " is already used by ", it->second));
      continue;
    }
    out.destinations.push_back(*service_route.destination);
  }
}

void AddListeners(SnapshotBuild& build, const ResourceList<xds::Listener>& listeners) {
  absl::flat_hash_map<absl::string_view, size_t> seen;
  absl::flat_hash_map<std::string, std::string> bound;  // address → listener name
  for (size_t i = 0; i < listeners.size(); ++i) {
    const xds::Listener& listener = listeners[i];
    if (!build.Named("listener", "listeners", i, listener.name(), seen)) continue;
    Errors::Scope scope(build.errors, Label("listener", listener.name()));
    std::optional<ListenerConfig> out = TranslateListener(
        scope, listener, build.route_names, build.memo->cluster_names, build.snapshot->secrets);
    if (!out.has_value()) continue;
    const size_t errors = scope.count();
    AppendJoinedDestinations(scope, build, *out);
    if (scope.count() != errors) continue;
    // Port 0 asks the kernel for a free port, so those never collide.
    bool collides = false;
    auto claim = [&](const net::Address& address, const std::string& field,
                     const std::string& written) {
      if (address.is_ip() && address.port() == 0) return;
      auto [it, inserted] = bound.emplace(address.ToString(), listener.name());
      if (!inserted) {
        scope.Add(field,
                  absl::StrCat(Quote(written), " is already used by listener ", Quote(it->second)));
        collides = true;
      }
    };
    claim(out->address, "address", listener.address());
    for (size_t a = 0; a < out->additional_addresses.size(); ++a) {
      claim(out->additional_addresses[a], Index("additional_addresses", static_cast<int>(a)),
            out->additional_addresses[a].ToString());
    }
    if (collides) continue;
    build.snapshot->listeners.push_back(*std::move(out));
  }
  std::vector<uint16_t> ports;
  for (const ListenerConfig& l : build.snapshot->listeners) {
    if (l.address.is_ip() && l.address.port() != 0) ports.push_back(l.address.port());
    for (const net::Address& a : l.additional_addresses) {
      if (a.is_ip() && a.port() != 0) ports.push_back(a.port());
    }
  }
  std::sort(ports.begin(), ports.end());
  ports.erase(std::unique(ports.begin(), ports.end()), ports.end());
  for (ListenerConfig& l : build.snapshot->listeners) {
    if (l.use_original_destination) l.sidecar_ports = ports;
  }
}

}  // namespace meshlet::sidecar::config::translate_internal

#pragma once

// A listener as the sidecar runs it: plain, validated, immutable configuration translated from the
// xds Listener resource by sidecar/config (translate.h). The listener layer works on this struct,
// never on protobuf types. Defaults are design.md §6's and apply where the resource leaves a field
// unset. Values; no ownership concerns.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/base/clock.h"
#include "common/net/address.h"
#include "common/net/ip_prefix.h"
#include "sidecar/filters/authorization.h"
#include "sidecar/filters/jwt_policy.h"
#include "sidecar/resilience/principal_rate_limiter.h"
#include "sidecar/resilience/token_bucket.h"
#include "sidecar/route/usage_cell.h"

namespace meshlet::sidecar::config {

enum class TrafficDirection { kOutbound, kInbound };

enum class ListenerProtocol {
  kAuto,   // detect HTTP/2 preface, HTTP/1 method, TLS ClientHello, else opaque TCP
  kHttp1,  // HTTP/1.1 only
  kHttp2,  // HTTP/2 only (prior knowledge or ALPN)
  kHttp,   // HTTP/1.1 or HTTP/2, detected per connection
  kTcp,    // opaque bytes to tcp_cluster
};

// Server-side TLS on a listener.
struct DownstreamTlsConfig {
  enum class Mode {
    kDisable,     // plaintext only
    kPermissive,  // mTLS and plaintext both accepted, detected per connection
    kStrict,      // mTLS required
    kTls,         // TLS required; a client certificate only if asked for below
  };
  Mode mode = Mode::kDisable;
  std::string secret_name;  // certificate, key and trust bundle; set unless kDisable (or below)
  // Instead of secret_name: the sidecar's CA-issued workload certificate and trust bundle.
  bool workload_certificate = false;
  std::vector<std::string> alpn = {"h2", "http/1.1"};
  // Always true under kStrict (mTLS means the client proves who it is).
  bool require_client_certificate = false;
  // SPIFFE ids; "spiffe://<trust-domain>/*" allows a whole trust domain. Empty: any peer the
  // trust bundle verifies.
  std::vector<std::string> allowed_peer_ids;
  // With workload_certificate: a Secret whose trust bundle replaces the one from the CA.
  std::string trust_bundle_secret;
  // Issue session tickets (tls::TlsContextConfig::session_tickets).
  bool session_resumption = true;
  // More certificates by SNI (xds DownstreamTls.server_certificates): lower-case names, each
  // "name" or "*.suffix", and the Secret holding the chain and key.
  struct ServerCertificate {
    std::vector<std::string> server_names;
    std::string secret_name;
  };
  std::vector<ServerCertificate> server_certificates;
};

// Limits and timers of the HTTP codecs on one listener. Zero durations mean "no timer".
struct HttpOptionsConfig {
  uint32_t max_request_headers_kb = 60;
  uint32_t max_headers_count = 100;
  uint32_t max_request_line_bytes = 8192;  // longer request line: 414
  uint32_t max_concurrent_streams = 1024;  // HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS
  Duration request_headers_timeout = std::chrono::seconds(10);
  Duration stream_idle_timeout = std::chrono::seconds(300);
  // Minimum request body rate: a body may take request_body_timeout plus one second per
  // min_request_body_bytes_per_second bytes received (time the sidecar itself pushes back does
  // not count); slower gets 408. Zero timeout: off (streaming bodies may idle legitimately).
  Duration request_body_timeout{0};
  uint32_t min_request_body_bytes_per_second = 0;
  Duration idle_timeout = std::chrono::seconds(3600);  // connection with no streams
  bool allow_connect = false;
  bool generate_request_id = true;  // x-request-id when absent
  bool use_remote_address = false;  // append the peer address to x-forwarded-for
  // Request body kept for replaying retries; a longer body makes the request non-retriable.
  uint64_t max_request_body_buffer_bytes = 64 * 1024;
  // HTTP/2 flood protection (http::h2::Http2Options).
  uint32_t max_outbound_control_frames = 1000;
  uint32_t max_inbound_window_update_frames_per_data_frame_sent = 10;
  uint32_t stream_reset_burst = 200;  // 0: nghttp2's own limit only
  uint32_t stream_resets_per_second = 20;
  Duration stream_reset_min_lifetime = std::chrono::milliseconds(10);  // see Http2Options
  uint32_t max_inbound_priority_frames_per_stream = 100;
  uint32_t max_consecutive_inbound_empty_frames = 1;
  uint32_t max_continuation_frames = 8;
  // HTTP/2: unsent response bytes of all streams of a connection before every stream stops
  // reading its upstream (http::h2::Http2Options::connection_buffer_limit).
  uint32_t connection_buffer_kb = 4096;
  uint32_t control_frame_burst = 1000;  // HTTP/2 PING and SETTINGS frames; 0: no limit
  uint32_t control_frames_per_second = 100;
  // HTTP/2: how long the requests in flight on a connection that passed a flood limit may take
  // to finish after its GOAWAY(ENHANCE_YOUR_CALM) (http::h2::Http2Options::drain_on_flood);
  // zero: no drain, the connection ends at once.
  Duration flood_drain_timeout = std::chrono::seconds(5);
  // HTTP/2: connections of one worker draining after a flood at once; a connection past a flood
  // limit while that many drain is cut off at once (FloodEnd::kDrainLimit). Zero: none drains.
  uint32_t max_flood_drains = 64;
};

// Capture listeners (use_original_destination): how connections to one set of original
// destinations are served (Listener.destinations, docs/xds.md "Capture listeners"). protocol,
// route_config_name and tcp_cluster follow ListenerConfig's rules for the same fields.
struct ListenerDestinationConfig {
  std::string name;                      // unique within the listener; logs and stats
  std::vector<net::IpPrefix> addresses;  // the original address is in one of them; empty: any
  uint16_t port = 0;                     // the original port; 0: any
  ListenerProtocol protocol = ListenerProtocol::kAuto;
  std::string route_config_name;
  std::string tcp_cluster;
  // The port authorization sees (connections to tcp_cluster; requests whose virtual host names
  // none); 0: the original destination's port.
  uint32_t destination_port = 0;
  // TLS passed through by name (ADR 0106): the connection must open with a ClientHello whose
  // server name is one of these (lower case; "*.example.com" covers any labels in front of
  // example.com). Empty: any connection, whatever it sends.
  std::vector<std::string> server_names;
  // Matching connections go to their original destination as opaque TCP (no tcp_cluster).
  bool passthrough = false;
  // Plain HTTP routed by Host (ADR 0108): the connection's first request must be HTTP/1 and name
  // one of these by its Host, port left out (lower case; "*.example.com" as in server_names);
  // the listener reads that request's head first (listener/http1_host.h). Empty: any connection.
  // Never with server_names; protocol kHttp1 or kHttp (route_config_name), or kTcp with
  // passthrough; capture listeners without TLS only.
  std::vector<std::string> http_hosts;
  // Only on a ServiceRoute's destination: when it was last used (ActiveConnection touches it when
  // a connection it serves opens and closes). Null: not tracked.
  std::shared_ptr<route::UsageCell> usage;

  bool is_http() const { return protocol != ListenerProtocol::kTcp; }
};

// What a capture listener does with a connection no destination matches.
enum class UnmatchedDestination {
  kPassthrough,  // opaque TCP, without detection, to the original destination (or passthrough_host)
  kRefuse,       // HTTP clients get a local 502, anything else is closed
};

// Listener.on_demand (ADR 0086): destinations the listener does not know are looked up over the
// control-plane stream on first use, and the connection or request waits for the answer before
// what the listener does with an unknown destination applies.
struct OnDemandConfig {
  // Captured connections whose original address is in one of these wait (capture listeners
  // only); empty: none does.
  std::vector<net::IpPrefix> address_ranges;
  bool hosts = false;  // HTTP requests only the "*" host answers wait for their host
  // The longest wait of one connection or request.
  Duration timeout = std::chrono::seconds(1);
  static constexpr Duration kMinTimeout = std::chrono::milliseconds(10);
  static constexpr Duration kMaxTimeout = std::chrono::seconds(30);
  // Discovered destinations unused this long are dropped (at least kMinIdleTime).
  Duration idle_time = std::chrono::minutes(15);
  static constexpr Duration kMinIdleTime = std::chrono::seconds(10);
  Duration missing_ttl = std::chrono::seconds(30);  // a key answered missing is asked again after

  // Whether a captured connection to `address` waits for its lookup.
  bool WaitsFor(const net::IpAddress& address) const {
    for (const net::IpPrefix& range : address_ranges) {
      if (range.Contains(address)) return true;
    }
    return false;
  }
};

struct ListenerConfig {
  std::string name;
  net::Address address;
  TrafficDirection direction = TrafficDirection::kOutbound;
  ListenerProtocol protocol = ListenerProtocol::kAuto;
  std::string route_config_name;  // HTTP protocols: names a route table of the same snapshot
  std::string tcp_cluster;        // kTcp, and undetected traffic under kAuto; may be empty there
  DownstreamTlsConfig tls;
  HttpOptionsConfig http;
  Duration detect_timeout = std::chrono::seconds(1);  // kAuto: wait this long for first bytes
  // A TLS handshake must finish this long after accept (detect_timeout counts from its end).
  Duration tls_handshake_timeout = std::chrono::seconds(10);
  // Connections proxied to tcp_cluster close after this long without a byte either way; 0: never.
  Duration tcp_idle_timeout = std::chrono::hours(1);
  uint32_t max_connections = 0;  // 0: unlimited
  std::string access_log_path;   // empty: off
  // Local rate limit for every HTTP request on this listener (Listener.rate_limit), checked before
  // routing; `rate_limiter` is shared by every worker: one bucket, or one per caller identity
  // (resilience/principal_rate_limiter.h).
  std::optional<resilience::TokenBucketConfig> rate_limit;
  std::shared_ptr<resilience::LocalRateLimiter> rate_limiter;
  // Authorization policies (Listener.authorization), checked before routing and before the rate
  // limit; `authorizer` is their compiled form, shared read-only by every worker. Null: no policy.
  filters::AuthorizationConfig authorization;
  std::shared_ptr<const filters::Authorizer> authorizer;
  // RequestAuthentication (filters/jwt_policy.h), checked before authorization; shared read-only
  // by every worker. Null: none (the JWT filter then reads nothing).
  std::shared_ptr<const filters::JwtPolicy> jwt;
  // The destination port authorization sees for connections to tcp_cluster, and for requests
  // whose virtual host names none (Listener.destination_port); 0: the listener's own port.
  uint32_t destination_port = 0;

  // Traffic capture. With use_original_destination, each connection's original destination picks
  // the first matching entry of `destinations`, else `unmatched_destination` applies; connections
  // that were not redirected are served by the fields above (listener/destination_matcher.h).
  // Without it the three below are empty/default.
  bool use_original_destination = false;
  std::vector<ListenerDestinationConfig> destinations;
  UnmatchedDestination unmatched_destination = UnmatchedDestination::kPassthrough;
  // The policy object that chose it ("MeshConfig/mesh"), for decision records; may be empty.
  std::string unmatched_destination_source;
  // kPassthrough connects to this address on the original port; none: the original address.
  std::optional<net::IpAddress> passthrough_host;
  // Ports this sidecar's listeners use (filled in by translation for capture listeners). An
  // unmatched connection addressed to one of them is refused, never passed through: passed to
  // passthrough_host it would reach this sidecar again (a loop, or someone else's connection to
  // the pod's address served by the outbound listener with the pod's identity).
  std::vector<uint16_t> sidecar_ports;
  // kPassthrough: the upstream connection must be up within this.
  Duration passthrough_connect_timeout = std::chrono::seconds(1);
  // More addresses served exactly as `address` (Listener.additional_addresses); IPv6 ones are
  // bound IPv6-only.
  std::vector<net::Address> additional_addresses;
  // Listener.on_demand; none: unknown destinations get the listener's answer at once.
  std::optional<OnDemandConfig> on_demand;

  bool is_http() const { return protocol != ListenerProtocol::kTcp; }
};

}  // namespace meshlet::sidecar::config

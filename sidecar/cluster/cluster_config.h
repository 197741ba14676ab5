#pragma once

// A cluster as the sidecar runs it: plain, validated, immutable configuration translated from the
// xds Cluster / ClusterLoadAssignment resources by sidecar/config. Everything below sidecar/config
// works on these structs, never on protobuf types. Defaults are design.md §6's.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/base/clock.h"
#include "common/base/persistent_map.h"
#include "common/net/address.h"
#include "common/net/transport.h"
#include "sidecar/resilience/circuit_breaker.h"
#include "sidecar/resilience/consecutive_failure_breaker.h"
#include "sidecar/resilience/outlier_detector.h"
#include "sidecar/resilience/retry_budget.h"

namespace meshlet::sidecar::cluster {

enum class LbPolicy { kLeastRequest, kRoundRobin, kRandom, kPeakEwma };

enum class UpstreamProtocol {
  kHttp1,
  kHttp2,
  kSameAsDownstream,
  // HTTP/2 between sidecars: h2 (ALPN "h2") to endpoints reached over TLS, which are peer
  // sidecars; HTTP/1.1 to plaintext endpoints and for Upgrade requests (WebSocket), which HTTP/2
  // cannot carry (over TLS with ALPN "http/1.1").
  kMeshHttp2,
};

enum class EndpointHealth : uint8_t { kHealthy, kUnhealthy, kDraining };

// An endpoint's SPIFFE id: one immutable string shared by the endpoints naming the same id
// (sidecar/config shares it between the endpoints of an assignment), so each endpoint holds a
// pointer rather than a copy. A value: copies share the string, which lives while any copy does.
// Empty: no id. Read-only after construction, so any thread may read it; reading allocates
// nothing.
class EndpointIdentity {
 public:
  EndpointIdentity() = default;
  explicit EndpointIdentity(std::shared_ptr<const std::string> text)
      : text_(text == nullptr || text->empty() ? nullptr : std::move(text)) {}
  // A string of its own (tests, one-off values); the translation shares one per id.
  EndpointIdentity(std::string text)  // NOLINT(google-explicit-constructor)
      : EndpointIdentity(std::make_shared<const std::string>(std::move(text))) {}
  EndpointIdentity(const char* text) : EndpointIdentity(std::string(text)) {}  // NOLINT

  // The id; a reference to an empty string when there is none.
  const std::string& str() const { return text_ != nullptr ? *text_ : EmptyString(); }
  operator const std::string&() const { return str(); }  // NOLINT(google-explicit-constructor)
  bool empty() const { return text_ == nullptr; }
  // Whether two ids share one string (what the translation gives equal ids of an assignment).
  bool SharesWith(const EndpointIdentity& other) const { return text_ == other.text_; }

  // By text.
  friend bool operator==(const EndpointIdentity& a, const EndpointIdentity& b) {
    return a.text_ == b.text_ || a.str() == b.str();
  }
  friend bool operator!=(const EndpointIdentity& a, const EndpointIdentity& b) { return !(a == b); }

 private:
  static const std::string& EmptyString() {
    static const std::string* const empty = new std::string();
    return *empty;
  }

  std::shared_ptr<const std::string> text_;
};

// How connections to one endpoint are secured within its cluster's `tls`. 24 bytes: every
// endpoint of every held cluster carries one.
struct EndpointTlsConfig {
  // The cluster's TLS does not apply: connect in plaintext (a member without a sidecar next to
  // members reached over mTLS). Set by the configuration, never by a failed handshake.
  bool plaintext = false;
  // With TLS: offer only "http/1.1" by ALPN instead of the cluster's protocols. Not from the
  // configuration: the cluster asks for it where a connection must speak HTTP/1.1 while the
  // cluster's protocol is h2 (Upgrade requests, HTTP health checks).
  bool http1_only = false;
  // With TLS: the SPIFFE id the endpoint must present, exactly, on top of the cluster's
  // expected_peer_ids. Empty: the cluster's expected_peer_ids alone.
  EndpointIdentity identity;

  friend bool operator==(const EndpointTlsConfig& a, const EndpointTlsConfig& b) {
    return a.plaintext == b.plaintext && a.http1_only == b.http1_only && a.identity == b.identity;
  }
  friend bool operator!=(const EndpointTlsConfig& a, const EndpointTlsConfig& b) {
    return !(a == b);
  }
};

// An endpoint as the data plane uses it. Its labels (xds::Endpoint.labels) are not copied:
// nothing reads them (subsets are clusters of their own); the resource, which config dumps
// print, keeps them. 80 bytes (the address 48 inline, the identity shared): the snapshot holds one
// per endpoint of every cluster it holds, and hosts point at them rather than copy them.
struct EndpointConfig {
  net::Address address;
  uint32_t weight = 1;
  EndpointHealth health = EndpointHealth::kHealthy;
  // The endpoint's locality seen from this sidecar (sidecar/config compares the endpoint's
  // region and zone with the sidecar's own): 0 the same zone, 1 the same region, 2 elsewhere
  // (locality_priority.h levels). Read only by a cluster with locality balancing.
  uint8_t locality_level = 2;
  EndpointTlsConfig tls;
};
static_assert(sizeof(EndpointConfig) <= 80, "EndpointConfig grew: one per endpoint held");

struct ConnectionPoolConfig {
  // Below typical server keep-alive timeouts (60 s and up) so the pool closes an idle connection
  // before the server does and a request never lands on a connection the server just closed.
  Duration idle_timeout = std::chrono::seconds(55);
  uint32_t max_requests_per_connection = 0;  // 0: unlimited
  uint32_t max_concurrent_streams = 100;     // HTTP/2 streams per upstream connection
  Duration max_connection_duration{0};       // 0: connections are not rotated by age
  // A request waiting for a connection or stream fails with kTimeout after this long; 0: it
  // waits until the router's own deadline cancels it.
  Duration pending_timeout{0};
};

// Locality-aware balancing (docs/resilience.md "Locality", ADR 0103/0104): the endpoints fall in
// priority levels by EndpointConfig::locality_level; the balancer sends each level
// min(100, healthy% x overprovisioning_percent / 100) of the requests, the rest failing over to
// the next level, and spills a pick for the local level over to the next level with healthy
// hosts while the local level is overloaded (in flight per healthy host above
// max_inflight_per_host, or its latency EWMA above max_latency; 0 = that test off). Off: every
// endpoint balanced alike, locality_level ignored.
struct LocalityLbConfig {
  bool enabled = false;
  uint32_t overprovisioning_percent = 140;
  uint32_t max_inflight_per_host = 0;
  Duration max_latency{0};

  friend bool operator==(const LocalityLbConfig& a, const LocalityLbConfig& b) {
    return a.enabled == b.enabled && a.overprovisioning_percent == b.overprovisioning_percent &&
           a.max_inflight_per_host == b.max_inflight_per_host && a.max_latency == b.max_latency;
  }
  friend bool operator!=(const LocalityLbConfig& a, const LocalityLbConfig& b) { return !(a == b); }
};

struct LoadBalancerConfig {
  // Below this percentage of healthy hosts the balancer uses every host; 0 = never. With
  // locality balancing the levels decide instead, and panic is only when no host is healthy.
  uint32_t panic_threshold_percent = 50;
  // Time constant of the peak-EWMA latency decay (and of the locality levels' latency EWMA).
  Duration ewma_decay = std::chrono::seconds(10);
  LocalityLbConfig locality;
};

// Load away from overloaded endpoints (docs/resilience.md, ADR 0066). A response 429, or a gRPC
// status RESOURCE_EXHAUSTED (trailers or a trailers-only response), marks its endpoint overloaded
// on the worker that saw it:
//   - least request and peak EWMA treat the endpoint as `penalty` times as loaded as it is, the
//     factor falling linearly back to 1 over `penalty_time` (every overload response restarts it);
//   - the endpoint is ejected for the response's retry-after (delta-seconds; an HTTP-date is
//     ignored), capped at max_ejection_time, or for ejection_time without a usable retry-after
//     (0: eject only when retry-after asks), while no more than max_ejection_percent of the
//     cluster's hosts are ejected for overload (at least 1 of 2 or more) and at least one other
//     healthy host remains. Round robin and random get only the ejection.
inline constexpr uint32_t kMaxOverloadPenalty = 1000;
struct OverloadConfig {
  bool enabled = true;
  Duration ejection_time = std::chrono::seconds(1);
  Duration max_ejection_time = std::chrono::seconds(10);
  uint32_t max_ejection_percent = 50;
  uint32_t penalty = 10;  // 1: no penalty
  Duration penalty_time = std::chrono::seconds(10);

  friend bool operator==(const OverloadConfig& a, const OverloadConfig& b) {
    return a.enabled == b.enabled && a.ejection_time == b.ejection_time &&
           a.max_ejection_time == b.max_ejection_time &&
           a.max_ejection_percent == b.max_ejection_percent && a.penalty == b.penalty &&
           a.penalty_time == b.penalty_time;
  }
  friend bool operator!=(const OverloadConfig& a, const OverloadConfig& b) { return !(a == b); }
};

struct HealthCheckConfig {
  enum class Kind { kNone, kHttp, kTcp };
  Kind kind = Kind::kNone;
  Duration interval = std::chrono::seconds(10);
  Duration timeout = std::chrono::seconds(1);
  uint32_t healthy_threshold = 1;
  uint32_t unhealthy_threshold = 3;
  std::string http_path = "/";
  std::string http_host;
  std::vector<uint32_t> expected_statuses = {200};
};

// A part of ClusterConfig that most clusters leave at its defaults, held behind a pointer so that
// such a cluster pays 16 bytes and no allocation for it (a HealthCheckConfig is ~120 bytes plus
// its expected_statuses). Reads give the part, or a shared default-constructed T while none was
// written. Copies share the part (copying a ClusterConfig copies no part); Mutable() gives a part
// of this object's own, copying it first when it is shared or absent. Threading: a config is
// written by one thread before it is published; reads of published configs from any thread are
// safe and allocate nothing.
template <typename T>
class DefaultedPart {
 public:
  const T& operator*() const { return part_ != nullptr ? *part_ : Default(); }
  const T* operator->() const { return &**this; }
  // Whether a part was written (Mutable() called); false means every field has its default.
  bool written() const { return part_ != nullptr; }
  T& Mutable() {
    if (part_ == nullptr || part_.use_count() > 1) {
      part_ = std::make_shared<T>(**this);
    }
    return *part_;
  }

 private:
  static const T& Default() {
    static const T* const value = new T();
    return *value;
  }

  std::shared_ptr<T> part_;
};

struct UpstreamTlsConfig {
  bool enabled = false;
  // Instead of secret_name: the sidecar's CA-issued workload certificate and trust bundle.
  bool workload_certificate = false;
  // Keep session tickets per upstream address and resume with them.
  bool session_resumption = true;
  std::string secret_name;  // client certificate + trust bundle (mesh mTLS)
  // With workload_certificate: a Secret whose trust bundle replaces the one from the CA.
  std::string trust_bundle_secret;
  std::string sni;
  std::vector<std::string> alpn;
  // SPIFFE ids ("spiffe://td/*": a whole trust domain); empty: any peer the trust bundle
  // verifies. An endpoint's own identity narrows this to one id.
  std::vector<std::string> expected_peer_ids;
  std::string ca_file;  // non-mesh upstreams
  // Non-mesh upstreams: instead of sni, the certificate must carry one of these subjectAltNames,
  // each "dns:NAME" or "uri:URI". Behind a pointer: most clusters list none.
  DefaultedPart<std::vector<std::string>> subject_alt_names;
};

struct ClusterConfig {
  std::string name;
  bool eds = false;  // endpoints come from a ClusterLoadAssignment of the same name
  LbPolicy lb_policy = LbPolicy::kLeastRequest;
  // Behind a pointer: most clusters keep the defaults (and locality balancing off).
  DefaultedPart<LoadBalancerConfig> lb;
  UpstreamProtocol protocol = UpstreamProtocol::kHttp1;
  Duration connect_timeout = std::chrono::seconds(1);
  std::vector<EndpointConfig> endpoints;
  resilience::CircuitBreakerConfig circuit_breakers;
  resilience::RetryBudgetConfig retry_budget;
  std::optional<resilience::ConsecutiveFailureBreakerConfig> consecutive_failure_breaker;
  std::optional<resilience::OutlierDetectionConfig> outlier_detection;
  OverloadConfig overload;
  // Behind a pointer: most clusters have no health check (kind kNone).
  DefaultedPart<HealthCheckConfig> health_check;
  UpstreamTlsConfig tls;
  ConnectionPoolConfig pool;
  // Decision records (stream/decision_record.h): "TrafficPolicy/ns/name" whose settings this
  // cluster carries (empty: defaults), and the subset it holds ("version=v2"; empty: all).
  std::string traffic_policy;
  std::string subset;
};
// A sidecar holds two per service it calls (ADR 0091); parts most clusters leave at their
// defaults are DefaultedParts so that they cost no allocation and little room here.
static_assert(sizeof(ClusterConfig) <= 600,
              "ClusterConfig grew: keep rarely-set parts out of line");

// `tls` for connections that must speak HTTP/1.1: ALPN offers only "http/1.1", so a cluster that
// offers "h2" cannot have the peer agree on it.
inline EndpointTlsConfig ForHttp1(EndpointTlsConfig tls) {
  tls.http1_only = true;
  return tls;
}

// Whether connections to an endpoint with `endpoint` settings use the cluster's TLS.
inline bool UsesTls(const ClusterConfig& cluster, const EndpointTlsConfig& endpoint) {
  return cluster.tls.enabled && !endpoint.plaintext;
}

// The clusters of one configuration by name, as the cluster manager and the health checks take
// them. Configs are shared: a later configuration keeps the objects of unchanged clusters, and
// its set is derived from the previous one's (a copy shares every entry; a change costs per
// changed name, common/base/persistent_map.h).
using ClusterSet = PersistentMap<std::shared_ptr<const ClusterConfig>>;

// Makes the transport of the connections to one endpoint of a cluster; a null factory means
// plaintext. Made once per cluster (it holds what the cluster's TLS needs, e.g. the context
// provider) and called once per endpoint and connection pool, never per request.
using EndpointTransportFactory =
    std::function<net::TransportFactory(const EndpointTlsConfig& endpoint)>;

}  // namespace meshlet::sidecar::cluster

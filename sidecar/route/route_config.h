#pragma once

// A compiled RouteConfiguration as the router runs it: plain, validated, immutable data built by
// sidecar/config from the xds RouteConfiguration resource. Nothing here knows about protobuf.
//
// Ownership: a RouteConfig is a value. RouteTable (route_table.h) takes one by value, owns it for
// its whole life, and indexes it; pointers into it (a matched RouteEntry, its VirtualHostConfig)
// stay valid as long as the RouteTable lives, which a request guarantees by holding the
// configuration snapshot it started with.
//
// Conventions: header names are stored lowercase (HeaderMap lowercases too); domains are stored
// lowercase; durations are meshlet::Duration; zero means "none" where a comment says so.

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "re2/re2.h"
#include "sidecar/resilience/fault.h"
#include "sidecar/resilience/principal_rate_limiter.h"
#include "sidecar/resilience/retry_state.h"
#include "sidecar/resilience/token_bucket.h"
#include "sidecar/route/cors.h"
#include "sidecar/route/usage_cell.h"

namespace meshlet::sidecar::route {

// A policy object's name as decision records show it ("HTTPRoute/default/reviews"): one immutable
// string shared by every route and action naming the same object (sidecar/config interns them
// per build and across builds), so a snapshot holds each name once, not once per route. A value:
// copies share the string, which lives while any copy does. Empty: unknown. Read-only after
// construction, so any thread may read it and copies may be made and dropped on any thread;
// reading allocates nothing. One pointer: the text sits in one allocation after its count.
class SourceName {
 public:
  SourceName() = default;
  // A string of its own (static configuration, tests); the translation shares interned ones.
  explicit SourceName(absl::string_view text);
  SourceName(const std::string& text)  // NOLINT(google-explicit-constructor)
      : SourceName(absl::string_view(text)) {}
  SourceName(const char* text) : SourceName(absl::string_view(text)) {}  // NOLINT
  SourceName(const SourceName& other) : text_(other.text_) { Ref(); }
  SourceName(SourceName&& other) noexcept : text_(other.text_) { other.text_ = nullptr; }
  SourceName& operator=(SourceName other) noexcept {
    std::swap(text_, other.text_);
    return *this;
  }
  ~SourceName() { Unref(); }

  absl::string_view view() const {
    return text_ == nullptr ? absl::string_view() : absl::string_view(text_->chars(), text_->size);
  }
  operator absl::string_view() const { return view(); }  // NOLINT(google-explicit-constructor)
  bool empty() const { return text_ == nullptr; }
  // Whether two names share one string (what interning gives equal names).
  bool SharesWith(const SourceName& other) const { return text_ == other.text_; }
  // The shared string's address: equal for names that share it, and never reused while a copy
  // lives (a per-worker table keyed by it keeps a copy: route_stats.h).
  const void* id() const { return text_; }
  // Whether this is the only holder of its string (SourceNames drops such names).
  bool unique() const {
    return text_ != nullptr && text_->refs.load(std::memory_order_acquire) == 1;
  }

  // By text (another SourceName converts).
  friend bool operator==(const SourceName& a, absl::string_view b) { return a.view() == b; }
  friend std::ostream& operator<<(std::ostream& out, const SourceName& name) {
    return out << name.view();
  }

 private:
  // Followed by `size` chars, in the same allocation.
  struct Text {
    std::atomic<uint32_t> refs;
    uint32_t size;
    const char* chars() const { return reinterpret_cast<const char*>(this + 1); }
  };
  void Ref() const {
    if (text_ != nullptr) text_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  void Unref();

  Text* text_ = nullptr;
};

// A T most holders lack, held behind one pointer made only when the T is written: an absent T
// costs a null pointer, and reading one sees a shared default-constructed T, so readers need no
// test. A value: copies copy the T. Reading allocates nothing and is safe from any thread while
// no one writes; mut() is for whoever builds the configuration, before it is shared.
template <typename T>
class RarePart {
 public:
  RarePart() = default;
  RarePart(const RarePart& other)
      : part_(other.part_ == nullptr ? nullptr : std::make_unique<T>(*other.part_)) {}
  RarePart& operator=(const RarePart& other) {
    if (this != &other)
      part_ = other.part_ == nullptr ? nullptr : std::make_unique<T>(*other.part_);
    return *this;
  }
  RarePart(RarePart&&) noexcept = default;
  RarePart& operator=(RarePart&&) noexcept = default;

  const T& get() const { return part_ == nullptr ? kAbsent : *part_; }
  const T* operator->() const { return &get(); }
  // The T, made (default-constructed) on first use.
  T& mut() {
    if (part_ == nullptr) part_ = std::make_unique<T>();
    return *part_;
  }
  bool present() const { return part_ != nullptr; }

 private:
  static const T kAbsent;
  std::unique_ptr<T> part_;
};

template <typename T>
const T RarePart<T>::kAbsent{};

// One header to add. append = false replaces every existing value of the name (HeaderMap::Set);
// append = true adds another value (HeaderMap::Add).
struct HeaderValueOption {
  std::string name;  // lowercase
  std::string value;
  bool append = false;

  bool operator==(const HeaderValueOption&) const = default;
};

// Header changes at one level (route configuration, virtual host or route). Within a level,
// removals apply before additions, so a level can replace a header by naming it in both lists.
struct HeaderMutations {
  std::vector<HeaderValueOption> request_headers_to_add;
  std::vector<std::string> request_headers_to_remove;  // lowercase
  std::vector<HeaderValueOption> response_headers_to_add;
  std::vector<std::string> response_headers_to_remove;  // lowercase

  bool empty() const {
    return request_headers_to_add.empty() && request_headers_to_remove.empty() &&
           response_headers_to_add.empty() && response_headers_to_remove.empty();
  }
  bool operator==(const HeaderMutations&) const = default;
};

// A compiled RE2 pattern, shared (RouteConfig stays copyable). Compiled once, when sidecar/config
// builds the configuration; RE2 matches in linear time and is safe to use from any thread.
using Regex = std::shared_ptr<const re2::RE2>;

// Matches one request header. With several values of the name, exact/prefix/regex match when any
// value does. `invert` negates the final result (so an inverted exact match also matches an absent
// header).
struct HeaderMatcher {
  enum class Kind {
    kExact,    // a value equals `value` (case-sensitive)
    kPrefix,   // a value starts with `value` (case-sensitive)
    kPresent,  // the header is present (present = true) or absent (present = false)
    kRegex,    // a value matches `regex` as a whole
  };
  std::string name;  // lowercase; may be a pseudo-header such as ":scheme"
  Kind kind = Kind::kPresent;
  std::string value;    // kExact, kPrefix
  bool present = true;  // kPresent
  Regex regex;          // kRegex
  bool invert = false;
};

// Matches one query parameter of the request's :path. Names compare exactly (case-sensitive),
// values after percent-decoding; with the name repeated, its first value is the one compared.
struct QueryParameterMatcher {
  enum class Kind {
    kExact,    // the value equals `value`
    kRegex,    // the value matches `regex` as a whole
    kPresent,  // the parameter is present (with or without a value)
  };
  std::string name;
  Kind kind = Kind::kPresent;
  std::string value;  // kExact
  Regex regex;        // kRegex
};

struct RouteMatch {
  enum class PathKind {
    kPrefix,  // the request path starts with `path`
    kExact,   // the request path equals `path`
    kRegex,   // the request path matches `regex` as a whole
    // The request path is `path` or starts with `path` + '/' (Gateway API PathPrefix). `path` is
    // stored without a trailing '/'; empty (the value "/"): every path.
    kSegmentPrefix,
  };
  // Paths compare against the request's :path without its query string.
  PathKind path_kind = PathKind::kPrefix;
  std::string path = "/";         // kPrefix, kExact, kSegmentPrefix
  Regex regex;                    // kRegex (compiled case-insensitive when case_insensitive is set)
  bool case_insensitive = false;  // ASCII case folding for the path comparison only
  std::vector<HeaderMatcher> headers;  // all must match
  std::vector<std::string> methods;    // any of (case-sensitive); empty: every method
  std::vector<QueryParameterMatcher> query_parameters;  // all must match
};

// A copy of each request (a share of them) also goes to `cluster`; its answer is discarded
// (sidecar/router/mirror.h).
struct RequestMirrorPolicy {
  std::string cluster;
  double fraction = 1.0;  // share of requests mirrored, in [0, 1]
};

// The cluster name standing for backends the control plane could not resolve: answered with 500
// (xds/resources.proto, WeightedClusters).
inline constexpr absl::string_view kMissingBackendCluster = "meshlet:missing-backend";

struct WeightedCluster {
  std::string name;
  uint32_t weight = 0;
  // Changes for requests sent to this cluster and their responses only, applied after the
  // route's (Gateway API backendRef filters).
  HeaderMutations headers;
};

// Sticky sessions of a route (xds SessionPersistence; session.h reads and writes the tokens).
struct SessionPersistence {
  enum class Type { kCookie, kHeader };
  Type type = Type::kCookie;
  std::string name;               // the cookie's name, or the header's (lowercase)
  Duration absolute_timeout{0};   // zero: sessions never expire by age
  Duration idle_timeout{0};       // zero: nor by idleness
  bool permanent_cookie = false;  // Set-Cookie carries Max-Age (absolute_timeout is set)
  std::string cookie_path;        // resolved: never empty
  // The session key (cluster::SessionKey()) of each cluster the action names, in the order
  // ClusterAt() (session.h) counts them; 0 for kMissingBackendCluster, which no token may name.
  std::vector<uint64_t> cluster_keys;
};

// The parts of a RouteAction most routes lack (RouteAction::extras).
struct RouteActionExtras {
  // Replaces the matched prefix of the path (prefix matches), or the whole path (exact matches);
  // after a kSegmentPrefix match, segment-wise (RewritePath in route_table.h).
  std::string prefix_rewrite;
  // Replaces the whole path, keeping the query; excludes prefix_rewrite.
  std::string path_rewrite;
  // Copies of the request to other clusters, each decided per request by its fraction.
  std::vector<RequestMirrorPolicy> mirrors;
  // Replaces :authority (and Host) on the upstream request; empty: unchanged.
  std::string host_rewrite;
};

// Forward to a cluster (or split between clusters by weight).
struct RouteAction {
  // Exactly one of `cluster` and `weighted_clusters` is set.
  std::string cluster;
  std::vector<WeightedCluster> weighted_clusters;
  uint64_t total_weight = 0;  // sum of weighted_clusters weights; > 0 when they are set
  // Some weighted cluster has header changes of its own (BackendHeaders in route_table.h); false
  // spares the others the lookup.
  bool has_backend_headers = false;

  // The whole request including retries; zero: no route timeout.
  Duration timeout = std::chrono::seconds(15);
  // The route's own policy, else its virtual host's, else the defaults (resolved when compiled).
  resilience::RetryPolicyConfig retry_policy;
  // Rewrites and mirrors (RouteActionExtras), made only when the route has one.
  RarePart<RouteActionExtras> extras;
  // Null: no sticky sessions (the request costs nothing more).
  std::shared_ptr<const SessionPersistence> session;
  // Decision records: the policy objects that set `timeout` and retry_policy's per-try timeout
  // ("HTTPRoute/default/ratings", "TrafficPolicy/default/ratings", "MeshConfig/mesh"); empty:
  // unknown (static configuration, or the defaults).
  SourceName timeout_source;
  SourceName per_try_timeout_source;
};

// Answer with a redirect built from the request's URL with these parts replaced.
struct RedirectAction {
  std::string scheme;  // empty: the request's scheme
  std::string host;    // empty: the request's host
  // 0: the scheme's default port when `scheme` is set, else the request's port (if it named one).
  // A port equal to the scheme's default is left out of the Location.
  uint32_t port = 0;
  std::string path;  // empty: the request's path; without '?' the request's query is kept
  // Replaces the matched prefix of the request's path as RouteAction::prefix_rewrite does;
  // excludes `path`.
  std::string prefix_rewrite;
  uint32_t response_code = 301;
};

// Answer locally with a fixed status and body.
struct DirectResponseAction {
  uint32_t status = 200;
  std::string body;
};

struct VirtualHostConfig;
struct RouteConfig;

// The parts of a RouteEntry most routes lack (RouteEntry::extras).
struct RouteExtras {
  HeaderMutations headers;
  std::optional<resilience::FaultConfig> fault;
  bool fault_header_triggered = false;  // x-meshlet-fault-* request headers may trigger faults
  std::optional<resilience::TokenBucketConfig> rate_limit;
  // Built from rate_limit when the configuration is translated; one per route for the whole
  // process, shared by every worker (resilience/token_bucket.h). Null: no limit.
  std::shared_ptr<resilience::LocalRateLimiter> rate_limiter;
  // Cross-origin resource sharing (cors.h), run by the router; null: none.
  std::shared_ptr<const CorsPolicy> cors;
};

// A sidecar holds a RouteEntry per route of every virtual host it routes to (thousands, at mesh
// scale), most of them a match and a cluster: what most routes lack is in `extras` (and in the
// action's), made only when present.
struct RouteEntry {
  std::string name;
  RouteMatch match;
  std::variant<RouteAction, RedirectAction, DirectResponseAction> action;
  // Header mutations, fault injection, rate limit, CORS.
  RarePart<RouteExtras> extras;
  // Decision records (stream/decision_record.h): the policy object this route was made from,
  // "HTTPRoute/default/reviews" (empty: unknown), and the rule and match in it (-1: none).
  SourceName source;
  int32_t source_rule = -1;
  int32_t source_match = -1;

  // Set by RouteTable when it takes ownership (by ShareVirtualHost for a shared host); let header
  // mutation helpers reach the outer levels: the host, and the route configuration's mutations.
  const VirtualHostConfig* virtual_host = nullptr;
  const HeaderMutations* config_headers = nullptr;

  const RouteAction* route_action() const { return std::get_if<RouteAction>(&action); }
  const RedirectAction* redirect() const { return std::get_if<RedirectAction>(&action); }
  const DirectResponseAction* direct_response() const {
    return std::get_if<DirectResponseAction>(&action);
  }
};

// A sidecar holds one RouteEntry per route of each virtual host it routes to (thousands at mesh
// scale): a field most routes leave unset belongs in RouteExtras or RouteActionExtras.
static_assert(sizeof(void*) != 8 || sizeof(RouteEntry) <= 432,
              "RouteEntry grew: put fields most routes leave unset in its extras");

// The parts of a VirtualHostConfig most hosts lack (VirtualHostConfig::extras).
struct VirtualHostExtras {
  HeaderMutations headers;
  // A gateway proxy's host: the Gateway listener that took it (decision records); empty: none.
  SourceName gateway_listener;
};

struct VirtualHostConfig {
  std::string name;
  // Lowercase. "api.example.com", "api.example.com:8080", "*.example.com" (any non-empty text
  // before the suffix), or "*" (any host).
  std::vector<std::string> domains;
  std::vector<RouteEntry> routes;  // first match wins
  // Rarely set: made only when present.
  RarePart<VirtualHostExtras> extras;
  // The destination port authorization sees for requests to this host; 0: the listener's.
  uint32_t destination_port = 0;
  // HashOfHostName(name), set by RouteTable (and ShareVirtualHost) when it takes the host: the
  // route-rule series' key (route_stats.h), so a request does not hash the name. In the padding
  // after destination_port.
  uint32_t name_hash = 0;
  // Captured destinations bound to this host, as net::Address::ToString() writes them
  // ("10.96.0.5:80", "[fd00::5]:80"): connections to them use this host whatever the request's
  // host says (RouteTable::MatchDestination).
  std::vector<std::string> destinations;
  // Only on a host shared between route tables (ShareVirtualHost): the header mutations of the
  // route configuration it joins, which its routes' `config_headers` point at.
  std::shared_ptr<const HeaderMutations> config_headers;
  // Only on a ServiceRoute's host: when it was last used (ActiveStream touches it on each match
  // of this host). Null: not tracked.
  std::shared_ptr<UsageCell> usage;
};

inline uint32_t HashOfHostName(absl::string_view name) {
  const uint64_t hash = absl::HashOf(name);
  return static_cast<uint32_t>(hash ^ (hash >> 32));
}

// And one VirtualHostConfig per Service it called: its header mutations are rare too.
static_assert(sizeof(void*) != 8 || sizeof(VirtualHostConfig) <= 152,
              "VirtualHostConfig grew: put fields most hosts leave unset behind a RarePart");

struct RouteConfig {
  std::string name;
  std::vector<VirtualHostConfig> virtual_hosts;
  HeaderMutations headers;
};

}  // namespace meshlet::sidecar::route

#pragma once

// RouteTable: a RouteConfig (route_config.h) indexed for matching requests, plus the helpers the
// router needs once a route matched (weighted cluster choice, header mutations, redirects,
// rewrites).
//
// Matching a request:
//   0. On a connection captured on its way to a Service address, the virtual host bound to that
//      destination (MatchDestination), whatever the request's host says; the connection looks it
//      up once per configuration, not per request. Otherwise:
//   1. Virtual host, by the request's host (":authority", else "Host"), ignoring ASCII case:
//        a. exact domains (a hash lookup), first with the host as sent — so a domain naming a
//           port ("api:8080") matches only that port — then with the port stripped;
//        b. suffix wildcards ("*.example.com"), longest suffix first, same two host forms;
//        c. "*".
//   2. Route, in order within that virtual host: path (exact, prefix, segment-wise prefix or RE2
//      pattern, optionally ignoring case; the query string is not part of the path), then
//      methods (any of), then header matchers (all of), then query parameter matchers (all of).
//      The first route that matches wins.
// Match() allocates nothing for routes without query parameter matchers: hosts are compared in
// place with case-insensitive hashing and comparison, and paths and headers are views into the
// request's HeaderMap. The query string is split once per request, on the first route that has
// query parameter matchers (in place, up to 8 parameters); a name or value is percent-decoded
// into a string only when it holds a '%'. RE2 patterns were compiled with the configuration.
//
// Header mutations apply from the general to the specific level — route configuration, then
// virtual host, then route — so the more specific level has the last word (a route's `set`
// replaces what the virtual host added). Within a level, removals run before additions.
//
// A table holds its own virtual hosts (the RouteConfig's) and, after them, attached ones: hosts
// made by ShareVirtualHost, immutable and shared (std::shared_ptr<const VirtualHostConfig>) by
// every table built with them, so that a table rebuilt for one changed host reuses the others
// as they are (ServiceRoutes, docs/xds.md). An attached host carries the route configuration's
// header mutations it was built under; Create refuses it when they differ from the table's.
// Given the table it replaces, Create derives the new table's index from that one's (shared
// shards, sharded_view_map.h): it indexes the own hosts and the attached hosts that differ, so a
// table of thousands of attached hosts rebuilt for one costs about as much as one of a few.
//
// Ownership and threading: immutable once created; share it as std::shared_ptr<const RouteTable>
// (the configuration snapshot does). Any number of threads may match concurrently. Pointers it
// returns stay valid while the table lives. Not copyable or movable, because routes point back at
// their virtual host and route configuration.

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/random.h"
#include "common/http/header_map.h"
#include "sidecar/route/route_config.h"
#include "sidecar/route/sharded_view_map.h"

namespace meshlet::sidecar::route {

// Whether `domain` (lower-case) may be a virtual host's domain: "api.example.com",
// "api.example.com:8080", "*.example.com" or "*"; InvalidArgument saying why not.
absl::Status ValidateDomain(absl::string_view domain);

class RouteTable {
 public:
  // Indexes `config`. Fails (InvalidArgument, message led by the field path inside the route
  // configuration, e.g. "virtual_hosts[1].domains[0]: ...") when a domain is empty or malformed
  // or appears in two virtual hosts. Other fields are validated by sidecar/config.
  // Attached hosts (lower-case domains, from ShareVirtualHost) follow the own ones; their paths
  // in errors are "attached[i]". Fails also when an attached host was built under other header
  // mutations than `config.headers`.
  // `previous` (optional; any table, e.g. the one this replaces) is only read, during the call:
  // the result, and any error, is the same with or without it; with it, the work is in
  // proportion to the own hosts of both and the attached hosts one has and the other has not.
  static absl::StatusOr<std::unique_ptr<RouteTable>> Create(
      RouteConfig config, std::vector<std::shared_ptr<const VirtualHostConfig>> attached = {},
      const RouteTable* previous = nullptr);

  RouteTable(const RouteTable&) = delete;
  RouteTable& operator=(const RouteTable&) = delete;

  // The route for a request, or null (no virtual host for the host, or no route matches: 404).
  const RouteEntry* Match(const http::HeaderMap& request) const;
  // Step 1 alone. `host` as sent, possibly with a port.
  const VirtualHostConfig* MatchVirtualHost(absl::string_view host) const;
  // The host whose domains hold "*" (what answers any host no other host does), or null.
  const VirtualHostConfig* catch_all() const { return catch_all_; }
  // The virtual host bound to a captured connection's original destination (`destination` as
  // net::Address::ToString() writes it), or null when none is (step 1 then decides per request).
  const VirtualHostConfig* MatchDestination(absl::string_view destination) const;
  // Step 2 alone.
  static const RouteEntry* MatchRoute(const VirtualHostConfig& virtual_host,
                                      const http::HeaderMap& request);

  // The own virtual hosts only; virtual_hosts() has the attached ones too.
  const RouteConfig& config() const { return config_; }
  const std::string& name() const { return config_.name; }
  // Every virtual host, own ones first, then attached ones in the order given.
  const std::vector<const VirtualHostConfig*>& virtual_hosts() const { return hosts_; }
  // How many hosts Create indexed (the others' entries were taken from `previous`).
  size_t hosts_indexed() const { return hosts_indexed_; }

 private:
  // Transparent case-insensitive hashing so lookups take a view of the request's host as is.
  struct CaseInsensitiveHash {
    using is_transparent = void;
    size_t operator()(absl::string_view s) const;
  };
  struct CaseInsensitiveEq {
    using is_transparent = void;
    bool operator()(absl::string_view a, absl::string_view b) const;
  };
  // Keys view the domains of the hosts the table holds (config_, attached_), which live as long
  // as it does: indexing copies no string. Shards are shared with the tables derived from this
  // one, which hold the hosts of the entries they share.
  using DomainMap =
      ShardedViewMap<const VirtualHostConfig*, CaseInsensitiveHash, CaseInsensitiveEq>;
  using DestinationMap = ShardedViewMap<const VirtualHostConfig*, absl::Hash<absl::string_view>,
                                        std::equal_to<absl::string_view>>;

  RouteTable(RouteConfig config, std::vector<std::shared_ptr<const VirtualHostConfig>> attached)
      : config_(std::move(config)), attached_(std::move(attached)) {}
  // Indexes every host; on an error the index is partial.
  absl::Status Index();
  // Indexes from `previous`'s index: drops its own hosts and the attached hosts this table lacks,
  // then adds the own hosts and the attached hosts it lacked. False when that finds an error
  // (Index then reports it as it would have) or when `previous` was built under other header
  // mutations.
  bool IndexFrom(const RouteTable& previous);
  // The parts of indexing every path shares: the own hosts' back pointers and lower-case
  // domains, hosts_, and the attached hosts' header mutations, from attached_[first_checked].
  absl::Status PrepareHosts(size_t first_checked);
  // Adds hosts_[v]'s domains and destinations; on an error some may be added.
  absl::Status AddHost(size_t v);
  void RemoveHost(const VirtualHostConfig& vhost);
  void ClearIndex();
  // "virtual_hosts[i]" or "attached[j]", for the host at hosts_[i].
  std::string HostPath(size_t i) const;
  const VirtualHostConfig* MatchSuffix(absl::string_view host) const;

  RouteConfig config_;
  std::vector<std::shared_ptr<const VirtualHostConfig>> attached_;
  std::vector<const VirtualHostConfig*> hosts_;
  size_t hosts_indexed_ = 0;
  DomainMap exact_;
  // Suffix wildcards by their suffix ("*.example.com" under ".example.com"): a host matches when
  // its last `length` bytes are a key and it is longer than that. With, per suffix length held,
  // how many suffixes have it, longest first.
  DomainMap suffixes_;
  std::vector<std::pair<size_t, size_t>> suffix_lengths_;
  const VirtualHostConfig* catch_all_ = nullptr;
  DestinationMap destinations_;
};

// `vhost` made shareable between route tables for RouteTable::Create's `attached`: its routes
// point back at it and at `config_headers` (the header mutations of the route configuration it
// joins; null: none), which it keeps alive. Domains must already be lower-case.
std::shared_ptr<const VirtualHostConfig> ShareVirtualHost(
    VirtualHostConfig vhost, std::shared_ptr<const HeaderMutations> config_headers);

// The host of a request: ":authority", else "Host"; empty when neither is present.
absl::string_view RequestHost(const http::HeaderMap& request);
// `host` without a trailing ":port" ("[::1]:80" → "[::1]", "a:80" → "a"; "::1" is unchanged).
absl::string_view StripPort(absl::string_view host);

// One of the action's weighted clusters, chosen with probability weight / total_weight from one
// Random::Uniform(total_weight) draw (so FakeRandom::PushDouble(f) selects the cluster whose
// cumulative range holds f * total_weight). For a single-cluster action, that cluster.
const std::string& PickCluster(const RouteAction& action, Random& random);

// The header changes of the weighted cluster of `action` named `cluster` (the one picked); null
// when it has none, or the action has no such weighted cluster. Costs a test when the action has
// no weighted cluster with changes.
const HeaderMutations* BackendHeaders(const RouteAction& action, absl::string_view cluster);

// Applies the route configuration's, the virtual host's and the route's request (or response)
// header mutations to `headers`, in that order, then `backend`'s (the picked weighted cluster's,
// BackendHeaders) when not null. The request's: true when they added or set any header.
bool ApplyRequestHeaderMutations(const RouteEntry& route, http::HeaderMap& headers,
                                 const HeaderMutations* backend = nullptr);
void ApplyResponseHeaderMutations(const RouteEntry& route, http::HeaderMap& headers,
                                  const HeaderMutations* backend = nullptr);

// The Location for a redirect route: the request's URL (":scheme", host, ":path") with the
// action's parts replaced. The port follows Gateway API's RequestRedirect: the action's port;
// else, when the action sets a scheme, that scheme's default; else the port the host names (the
// action's host, then the request's). A port equal to the scheme's default (80 for http, 443
// for https) is left out. The action's prefix_rewrite replaces the part of the path `match`
// matched (as RewritePath does; ignored when `match` is null).
std::string RedirectLocation(const RedirectAction& redirect, const http::HeaderMap& request,
                             const RouteMatch* match = nullptr);

// The upstream :path for `path` (the request's :path, query included) under `route`, the query
// string kept: the whole path replaced by path_rewrite; or the matched prefix (the whole path,
// for exact matches) replaced by prefix_rewrite. After a segment-wise prefix match, the
// replacement follows Gateway API's ReplacePrefixMatch: "/foo" matched on "/foo/bar" gives
// "/bar" with "/", "/xyz/bar" with "/xyz" or "/xyz/", and "/foo" alone gives "/xyz"; never "//".
// Unchanged when the route has neither.
std::string RewritePath(const RouteEntry& route, absl::string_view path);

}  // namespace meshlet::sidecar::route

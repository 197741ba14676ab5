#pragma once

// Translation of xds resources (protobuf) into a Snapshot of plain C++ structs: the boundary where
// protobuf types stop (design.md §2).
//
// BuildSnapshot() serves both the static configuration file and xDS updates. It validates the
// whole resource set before producing anything, so an update is applied entirely or not at all:
// on error the caller keeps its current snapshot and, for xDS, NACKs with status.message().
//
// Errors are InvalidArgument. Each error names the resource and the field path inside it:
//
//   cluster "backend": connect_timeout: must be greater than 0
//   route_config "local": virtual_hosts[0].routes[2].route.weighted_clusters: weights sum to 0
//   listener "outbound": route_config_name "x" names no RouteConfiguration
//
// A resource without a usable name is named by its position ("listeners[3]: name: must not be
// empty"). Every error found is reported (one per line, the first 20 and a count of the rest), so
// a broken file can be fixed in one pass.
//
// References must resolve inside the set: a route naming a cluster the set does not hold is an
// error (the control plane sends clusters before the routes that name them), as is a listener
// naming a missing route configuration, cluster or secret.
//
// Secrets naming files (certificate_chain_file, ...) are read here, synchronously: call on the
// main thread, never on a worker. Relative paths resolve against the working directory (the
// bootstrap loader makes them relative to the bootstrap file first).

#include <cstddef>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/base/logging.h"
#include "google/protobuf/message.h"
#include "sidecar/config/held_bytes.h"
#include "sidecar/config/snapshot.h"
#include "sidecar/tracing/tracing_config.h"
#include "xds/resources.pb.h"

namespace meshlet::sidecar::config {

// The name a resource is known by (a load assignment's: its cluster's).
inline const std::string& ResourceName(const xds::Listener& m) { return m.name(); }
inline const std::string& ResourceName(const xds::RouteConfiguration& m) { return m.name(); }
inline const std::string& ResourceName(const xds::ServiceRoute& m) { return m.name(); }
inline const std::string& ResourceName(const xds::Cluster& m) { return m.name(); }
inline const std::string& ResourceName(const xds::ClusterLoadAssignment& m) {
  return m.cluster_name();
}
inline const std::string& ResourceName(const xds::Secret& m) { return m.name(); }

// What the passes over every held resource of a kind read (the xDS client's run plan, the
// translation's full pass), kept beside a resource held as its bytes so that those passes parse
// none (ADR 0086, "Amended: clusters and ServiceRoutes are held as their bytes"). Taken from the
// message when it is held; empty for the kinds whose every pass reads the message. The names a
// resource refers to are those AddReferences (references.h) collects.
template <typename Message>
struct HeldFacts {
  explicit HeldFacts(const Message&) {}
};
template <>
struct HeldFacts<xds::Cluster> {
  explicit HeldFacts(const xds::Cluster& cluster);
  bool eds = false;  // endpoints from a load assignment of its name: type EDS, or DNS (resolved)
  bool dns = false;  // type() == DNS: the sidecar resolves them (DnsClusters)
  bool tls = false;  // has_tls()
  std::vector<std::string> secrets;  // the Secrets it refers to
};
template <>
struct HeldFacts<xds::ServiceRoute> {
  explicit HeldFacts(const xds::ServiceRoute& service_route);
  std::string route_config_name;
  std::vector<std::string> clusters;  // the Clusters it refers to
};

// DnsResolution's defaults: when a DNS cluster's name is resolved again (DnsClusters).
inline constexpr Duration kDnsMinRefresh = std::chrono::seconds(5);
inline constexpr Duration kDnsMaxRefresh = std::chrono::minutes(5);
inline constexpr Duration kDnsFailureRefresh = std::chrono::seconds(2);

// One resource as a ResourceList holds it, of any kind. Either a message, or the bytes it was
// received as (the xDS client holds load assignments, clusters and ServiceRoutes so, ADR 0086
// "Amended: a load assignment is held as its bytes"): what was translated from it is what the
// snapshot keeps, and a parsed message is about six times its bytes. Readers that must not keep
// a parsed message (the translation, the xDS client, the config dump) use Parse(), or the facts
// (HeldFacts) kept with it; message() keeps what it parses for as long as the resource is held.
// Immutable but for that parse: read on the main thread only.
class HeldResource {
 public:
  virtual ~HeldResource() = default;
  virtual const std::string& name() const = 0;
  // The bytes it was received as (compressed, HeldBytes::Expand(name()) gives them); null when
  // held as a message only.
  virtual const HeldBytes* bytes() const = 0;
  // The message: the one held, or parsed from the bytes now, not kept.
  virtual std::shared_ptr<const google::protobuf::Message> ParseUntyped() const = 0;
};

template <typename Message>
class HeldMessage final : public HeldResource {
 public:
  explicit HeldMessage(Message message)
      : HeldMessage(std::make_shared<const Message>(std::move(message))) {}
  explicit HeldMessage(std::shared_ptr<const Message> message) : parsed_(std::move(message)) {}
  // Held as `bytes` (copied, compressed), which parsed as `parsed` (not kept).
  HeldMessage(const Message& parsed, absl::string_view bytes)
      : name_(ResourceName(parsed)), bytes_(bytes, name_), from_bytes_(true), facts_(parsed) {}

  const std::string& name() const override { return from_bytes_ ? name_ : ResourceName(*parsed_); }
  const HeldBytes* bytes() const override { return from_bytes_ ? &bytes_ : nullptr; }
  // What passes over every resource of the kind read, without a parse. Of a resource held as a
  // message, taken on the first call (ResourceList::Mutable changes the message before).
  const HeldFacts<Message>& facts() const {
    if (!facts_.has_value()) facts_.emplace(*parsed_);
    return *facts_;
  }
  // The message, parsed from the bytes and kept when it was not.
  const Message& message() const {
    if (parsed_ == nullptr) parsed_ = Parse();
    return *parsed_;
  }
  // The message, without keeping what is parsed for it.
  std::shared_ptr<const Message> Parse() const {
    if (parsed_ != nullptr) return parsed_;
    auto parsed = std::make_shared<Message>();
    // They parsed when received: failing now is memory gone bad, not input.
    CHECK(bytes_.ParseInto(*parsed, name_));
    return parsed;
  }
  std::shared_ptr<const google::protobuf::Message> ParseUntyped() const override { return Parse(); }
  // Whether a parsed message is kept: held as one, or one held as bytes read by message().
  bool holds_message() const { return parsed_ != nullptr; }

 private:
  std::string name_;  // with from_bytes_; before bytes_, whose dictionary it is
  HeldBytes bytes_;
  bool from_bytes_ = false;
  mutable std::optional<HeldFacts<Message>> facts_;  // set with from_bytes_
  mutable std::shared_ptr<const Message> parsed_;    // never null without from_bytes_
};

// The resources of one kind, each held immutable behind a shared pointer: copying a list, or
// building the next configuration from the resources of the last, copies pointers, not messages.
// The same pointer means the same resource, which is how BuildSnapshot knows what it translated
// before. Reads look like a vector of messages (a resource held as bytes is parsed on reading,
// see HeldResource; name(i) reads none); Mutable() gives a message of its own to change.
template <typename Message>
class ResourceList {
 public:
  using Held = HeldMessage<Message>;
  using Pointer = std::shared_ptr<const Held>;

  class const_iterator {
   public:
    using iterator_category = std::random_access_iterator_tag;
    using value_type = Message;
    using difference_type = std::ptrdiff_t;
    using pointer = const Message*;
    using reference = const Message&;

    const_iterator() = default;
    explicit const_iterator(typename std::vector<Pointer>::const_iterator it) : it_(it) {}
    const Message& operator*() const { return (*it_)->message(); }
    const Message* operator->() const { return &(*it_)->message(); }
    const_iterator& operator++() {
      ++it_;
      return *this;
    }
    const_iterator operator++(int) { return const_iterator(it_++); }
    const_iterator operator+(difference_type n) const { return const_iterator(it_ + n); }
    difference_type operator-(const const_iterator& other) const { return it_ - other.it_; }
    bool operator==(const const_iterator& other) const { return it_ == other.it_; }
    bool operator!=(const const_iterator& other) const { return it_ != other.it_; }

   private:
    typename std::vector<Pointer>::const_iterator it_;
  };

  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  const Message& operator[](size_t i) const { return items_[i]->message(); }
  const Message& back() const { return items_.back()->message(); }
  // The name of the resource at `i`, without parsing one held as bytes.
  const std::string& name(size_t i) const { return items_[i]->name(); }
  const_iterator begin() const { return const_iterator(items_.begin()); }
  const_iterator end() const { return const_iterator(items_.end()); }
  // The shared resource at `i`, for keeping it without a copy.
  const Pointer& shared(size_t i) const { return items_[i]; }
  // The message at `i`, without keeping what is parsed for one held as bytes.
  std::shared_ptr<const Message> Parse(size_t i) const { return items_[i]->Parse(); }

  void push_back(Pointer held) { items_.push_back(std::move(held)); }
  void push_back(std::shared_ptr<const Message> message) {
    items_.push_back(std::make_shared<const Held>(std::move(message)));
  }
  void push_back(Message message) {
    items_.push_back(std::make_shared<const Held>(std::move(message)));
  }
  template <typename Iterator>
  void assign(Iterator first, Iterator last) {
    items_.clear();
    for (; first != last; ++first) push_back(Message(*first));
  }
  // Positional changes, for a list kept in an order (XdsClient patches its lists per name).
  void Set(size_t i, Pointer held) { items_[i] = std::move(held); }
  void Insert(size_t i, Pointer held) {
    items_.insert(items_.begin() + static_cast<std::ptrdiff_t>(i), std::move(held));
  }
  void Erase(size_t i) { items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(i)); }
  void reserve(size_t n) { items_.reserve(n); }
  void clear() { items_.clear(); }
  void swap(ResourceList& other) { items_.swap(other.items_); }
  // Replaces the resource at `i` with a copy and returns the copy to change, before the list is
  // read again: other holders of the old one (a snapshot built from it) keep it as it was.
  Message& Mutable(size_t i) {
    auto copy = std::make_shared<Message>(items_[i]->message());
    Message& out = *copy;
    items_[i] = std::make_shared<const Held>(std::shared_ptr<const Message>(std::move(copy)));
    return out;
  }

 private:
  std::vector<Pointer> items_;
};

// One complete set of resources: the static file's, or the state of the world after an update.
struct ResourceSet {
  // The xDS version_info. Empty: BuildSnapshot derives "static-<hash of the resources>".
  std::string version;
  ResourceList<xds::Listener> listeners;
  ResourceList<xds::RouteConfiguration> routes;
  ResourceList<xds::ServiceRoute> service_routes;
  ResourceList<xds::Cluster> clusters;
  ResourceList<xds::ClusterLoadAssignment> endpoints;
  ResourceList<xds::Secret> secrets;
};

// `previous`, when given, is the snapshot the sidecar runs now: clusters (with their endpoints)
// and route tables whose resources are the very ones it was built from (the same shared
// messages, see ResourceList), and whose references resolve as before, are taken from it
// instead of being translated and validated again. The result is the same as without it.
// `locality`, when given, is where this sidecar runs (its node's Node.locality): each endpoint's
// locality level is its locality compared with it (cluster_config.h
// EndpointConfig::locality_level), and a cluster with locality_lb.node_local keeps only the
// endpoints on its node. It must be the same for every build of a process (clusters taken from
// `previous` keep their levels).
absl::StatusOr<std::shared_ptr<const Snapshot>> BuildSnapshot(
    const ResourceSet& resources, const Snapshot* previous = nullptr,
    const xds::Locality* locality = nullptr);

// How many of a snapshot's clusters and route tables BuildSnapshot took from `previous`, and how
// many clusters it looked at one by one: every cluster of the set, or, when it could take the
// others from `previous` by what changed (both lists in name order, as the xDS client gives
// them, nothing removed, secrets as before), only those added or changed and those whose load
// assignment was. The same for ServiceRoutes: every one, or only those added or changed. And
// how many ServiceRoutes it recorded as joining the route tables it built: those joining the
// tables not taken from `previous` (a reused table shares its record), and how many of their
// virtual host names it indexed to check them unique in their table: every one joining a table
// built, or only those added or changed when the table replaces one of the same route
// configuration.
struct TranslationReuse {
  size_t clusters = 0;
  size_t route_tables = 0;
  size_t clusters_examined = 0;
  size_t service_routes_examined = 0;
  size_t joined_recorded = 0;
  size_t joined_names_indexed = 0;
};
TranslationReuse TranslationReuseOf(const Snapshot& snapshot);

// When BuildSnapshot took a snapshot's clusters from `previous` by what changed: the names of the
// clusters it added or replaced (every other cluster is `previous`'s, the same shared config;
// none was removed), so that what follows the cluster set (limits, health checks) may look at
// those alone. Null when the set was built whole: compare it with `previous`'s in full. Valid
// while the snapshot lives.
const std::vector<std::string>* ChangedClusters(const Snapshot& snapshot);
// ChangedClusters(snapshot) when `previous` is the snapshot BuildSnapshot took those clusters
// from, else null: for a holder of some earlier cluster set (a worker), which may use the names
// only when what it holds is that snapshot's. `previous` is compared, never read; the caller
// keeps it alive, so no other snapshot can have taken its address.
const std::vector<std::string>* ChangedClustersSince(const Snapshot& snapshot,
                                                     const Snapshot* previous);

// The usage cell of the snapshot's ServiceRoute `name` (route/usage_cell.h), which every later
// snapshot holding that name shares; null when the snapshot has no such ServiceRoute. Valid while
// the snapshot lives; the workers write it, any thread may read it.
const route::UsageCell* ServiceRouteUsage(const Snapshot& snapshot, absl::string_view name);

// The valid RetryPolicy.retry_on values, comma-separated, as error messages list them.
absl::string_view ValidRetryOnValues();

// The bootstrap's tracing section (enabled). Errors name the field ("tracing.sampling_percent:
// must be within 0..100"), all of them, separated by "; ". An unset service_name stays empty:
// its default comes from the node, which flags may change (CompleteBootstrap, bootstrap.h).
absl::StatusOr<tracing::TracingConfig> TranslateTracing(const xds::Bootstrap::Tracing& tracing);

}  // namespace meshlet::sidecar::config

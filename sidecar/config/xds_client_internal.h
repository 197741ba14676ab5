#pragma once

// What the files of XdsClient (xds_client.h) share and nobody else uses: the positions of the
// resource types, how a resource is parsed from its Any (once: a resource received again with the
// same bytes reuses the held one), the ResourceSet list of each type, and the request sender
// of the stream's variant. The client is split by concern:
//   xds_client.cc            construction, stats, static resources, status for /config_dump
//   xds_client_stream.cc     the stream: connect, subscribe, readiness, failover, backoff; TLS
//                            and addresses of the control plane; the config dump answer
//   xds_client_responses.cc  responses, state of the world and delta, into per-type entries
//   xds_client_ack.cc        accept (ACK) or refuse (NACK) an update, and the answer
//   xds_client_plan.cc       the held resources, the run plan (retained, left out) and the
//                            assembled configuration
//   xds_client_persist.cc    the last good configuration on disk: save and restore
// Threading: the client's (its loop's thread).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "google/protobuf/any.pb.h"
#include "google/protobuf/message.h"
#include "sidecar/config/translate.h"
#include "sidecar/config/xds_client.h"
#include "xds/protocol.h"
#include "xds/resources.pb.h"

namespace meshlet::sidecar::config::xds_client_internal {

// Positions of the types in xds::kResourceTypeUrls.
inline constexpr size_t kSecrets = 0;
inline constexpr size_t kClusters = 1;
inline constexpr size_t kEndpoints = 2;
inline constexpr size_t kRoutes = 3;
inline constexpr size_t kServiceRoutes = 4;
inline constexpr size_t kListeners = 5;

// A resource of the type at `index` parsed from its Any (a HeldMessage of that type: load
// assignments held as their bytes, the others as the message), and the name it is known by.
struct ParsedResource {
  std::string name;
  std::shared_ptr<const HeldResource> held;
};

// Parses `any` as the type at `index`; counts the parse in `*parses`.
absl::StatusOr<ParsedResource> ParseResource(size_t index, const google::protobuf::Any& any,
                                             uint64_t* parses);

// resources[`position`] of a response, whose bytes hash to `content_hash` (xds::Fnv1a64): the
// held entry's name and message when `held` (an EntryMap item, or null) has the same hash, else
// `any` parsed; errors name the position.
template <typename Held>
absl::StatusOr<ParsedResource> ReuseOrParse(size_t index, const google::protobuf::Any& any,
                                            uint64_t content_hash, const Held* held, int position,
                                            uint64_t* parses) {
  if (held != nullptr && any.type_url() == xds::kResourceTypeUrls[index] &&
      held->second.version.content_hash() == content_hash) {
    return ParsedResource{.name = held->first, .held = held->second.held};
  }
  absl::StatusOr<ParsedResource> parsed = ParseResource(index, any, parses);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("resources[", position, "]: ", parsed.status().message()));
  }
  return parsed;
}

// `message` (a resource of the type at `index`) as an Any, serialized deterministically as the
// control plane serializes what it sends: the bytes it was received as, but for fields this
// release does not know, which go last.
void PackResource(size_t index, const google::protobuf::Message& message,
                  google::protobuf::Any& out);
// A held resource as an Any: the bytes it was received as when it is held so, else as above.
void PackResource(size_t index, const HeldResource& held, google::protobuf::Any& out);

// The held resource `held` of the type `Message`.
template <typename Message>
const HeldMessage<Message>& HeldAs(const HeldResource& held) {
  return static_cast<const HeldMessage<Message>&>(held);
}

// Calls `f(member, name_of)` with the ResourceSet list of the type at `index` and how its
// resources are named.
template <typename F>
void WithTypeList(size_t index, F f) {
  switch (index) {
    case kSecrets:
      return f(&ResourceSet::secrets, [](const xds::Secret& m) { return m.name(); });
    case kClusters:
      return f(&ResourceSet::clusters, [](const xds::Cluster& m) { return m.name(); });
    case kEndpoints:
      return f(&ResourceSet::endpoints,
               [](const xds::ClusterLoadAssignment& m) { return m.cluster_name(); });
    case kRoutes:
      return f(&ResourceSet::routes, [](const xds::RouteConfiguration& m) { return m.name(); });
    case kServiceRoutes:
      return f(&ResourceSet::service_routes, [](const xds::ServiceRoute& m) { return m.name(); });
    default:
      return f(&ResourceSet::listeners, [](const xds::Listener& m) { return m.name(); });
  }
}

}  // namespace meshlet::sidecar::config::xds_client_internal

namespace meshlet::sidecar::config {

// Sends, on the open stream, a request of the stream's variant set up by `fill`, which takes
// either request type.
template <typename Fill>
void XdsClient::SendRequest(Fill fill) {
  xds::WithRequest(options_.delta, [&](auto& request) {
    fill(request);
    stream_->SendProto(request);
  });
}

}  // namespace meshlet::sidecar::config

#pragma once

// The filter chain of one downstream request. The connection manager (sidecar/listener) runs a
// fixed, compiled-in list of filters over each request stream — authorization, the listener's
// rate limit, fault injection, the route's rate limit, the breaker gate, and the router last
// (docs/adr/0039-sidecar-floors-and-filter-chain.md) — and is each filter's FilterCallbacks.
//
// Decoding: the stream hands the request's headers, then its body pieces, then its trailers to
// each filter in order. A filter returns kContinue to pass the piece on, or kStopIteration to hold
// it: for headers, the stream then holds the rest of the request too (body up to
// DownstreamBufferLimit(), then it pauses reading) until the filter calls ContinueDecoding(),
// which resumes with the next filter; a body piece or trailers a filter stops are its own (it
// consumed them). A filter that answers the request calls SendLocalReply() and returns
// kStopIteration; nothing more reaches any filter then.
//
// Route: the stream matches its route once, after the listener-level filters and before the
// route-level ones (fault injection onwards), and caches it; route() returns it. Before then
// only `virtual_host` is set.
//
// Ownership and threading: the stream owns its filters (members of the stream: no allocation per
// request) and the headers and trailers it passes, which stay valid until the stream ends. All
// calls happen on the worker's loop thread. OnStreamEnd() is called once on every filter when the
// stream ends for any reason (response complete, local reply, reset); after it the filter must
// not call its callbacks. A filter may call ContinueDecoding() only after it stopped the headers,
// from its own timer or callback, never from inside a Decode* call.

#include <cstdint>
#include <memory>

#include "absl/strings/string_view.h"
#include "common/http/header_map.h"
#include "common/net/buffer.h"
#include "sidecar/route/session.h"
#include "sidecar/stream/local_reply.h"
#include "sidecar/stream/stream_info.h"

namespace meshlet::sidecar::cluster {
class Cluster;
struct UpstreamStats;
}  // namespace meshlet::sidecar::cluster

namespace meshlet::sidecar::route {
class RouteTable;
struct RouteEntry;
struct VirtualHostConfig;
}  // namespace meshlet::sidecar::route

namespace meshlet::sidecar::stream {

enum class FilterStatus { kContinue, kStopIteration };

// The route a stream runs under, resolved once. `table` keeps the route configuration (and so the
// entry, the virtual host and the cluster name) alive; `cluster` keeps the cluster alive while the
// request uses it, even if a configuration change removes it meanwhile.
struct Route {
  std::shared_ptr<const route::RouteTable> table;          // null: the listener has no route table
  const route::VirtualHostConfig* virtual_host = nullptr;  // by the request's host; null: none
  const route::RouteEntry* entry = nullptr;                // null: no route matched
  // For an entry with a route action: the (weighted) cluster it picked, and that cluster if this
  // worker has it (null: it does not) with its stats (null: none registered).
  absl::string_view cluster_name;
  std::shared_ptr<cluster::Cluster> cluster;
  const cluster::UpstreamStats* cluster_stats = nullptr;
  // For an entry whose action has sticky sessions: what the request's token says
  // (route/session.h); `cluster` is then the token's when it names one of the action's.
  route::SessionLookup session;
};

// What a filter may ask of the stream that runs it.
class FilterCallbacks {
 public:
  virtual ~FilterCallbacks() = default;

  // Resumes the chain after the filter stopped the headers (see above).
  virtual void ContinueDecoding() = 0;
  // Ends the request with `reply` (local_reply.h), or resets the stream if the response began.
  // Set the reply's response flag on stream_info() first.
  virtual void SendLocalReply(const LocalReply& reply) = 0;
  virtual const Route& route() const = 0;
  virtual StreamInfo& stream_info() = 0;
  // The request is a gRPC call (content-type application/grpc).
  virtual bool grpc() const = 0;

  // The response side, for the filter that forwards the request (the router). Headers may be
  // changed by the callee (it owns the protocol's last word on them); the last piece has
  // end_stream set, or is the trailers.
  virtual void EncodeHeaders(http::HeaderMap& headers, bool end_stream) = 0;
  virtual void EncodeData(net::Buffer& data, bool end_stream) = 0;
  virtual void EncodeTrailers(const http::HeaderMap& trailers) = 0;
  // Ends the downstream stream abnormally: the response cannot be completed.
  virtual void ResetDownstream() = 0;
  // Pauses (true) or resumes (false) the request body; counted.
  virtual void ReadDisableDownstream(bool disable) = 0;
  // Request body bytes a filter may hold while nothing takes them.
  virtual uint32_t DownstreamBufferLimit() const = 0;
  // Request body bytes the router may keep to replay on a retry
  // (HttpOptions.max_request_body_buffer_kb).
  virtual uint64_t RetryBufferLimit() const { return 64 * 1024; }
};

class Filter {
 public:
  virtual ~Filter() = default;
  virtual FilterStatus DecodeHeaders(http::HeaderMap& headers, bool end_stream) = 0;
  virtual FilterStatus DecodeData(net::Buffer& /*data*/, bool /*end_stream*/) {
    return FilterStatus::kContinue;
  }
  virtual FilterStatus DecodeTrailers(http::HeaderMap& /*trailers*/) {
    return FilterStatus::kContinue;
  }
  // The stream ended: cancel timers and outstanding work; no callback follows.
  virtual void OnStreamEnd() {}
};

}  // namespace meshlet::sidecar::stream

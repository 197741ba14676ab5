#pragma once

// The connection glue of a server that speaks HTTP/1.1 and HTTP/2 on one port: HttpServer
// (server.h), and servers that stream instead of buffering (the integration tests' upstreams).
// The caller owns the net::Connection, a ConnectionIo over it and the codec, and calls these
// from its ConnectionCallbacks::OnData. Loop thread only.

#include <memory>

#include "absl/status/status.h"
#include "common/event/loop.h"
#include "common/http/codec.h"
#include "common/net/buffer.h"
#include "common/net/connection.h"

namespace meshlet::http {

// The codec for an accepted connection, from what it has read so far: HTTP/2 when TLS
// negotiated ALPN "h2" or the bytes begin with the HTTP/2 preface, HTTP/1.1 otherwise. Null
// while the bytes are a strict prefix of the preface and more may come (`end_stream` false):
// keep them and ask again with more. `io`, `callbacks` and `loop` must outlive the codec.
std::unique_ptr<ServerConnection> NewServerCodec(event::Loop& loop,
                                                 const net::Connection& connection,
                                                 const net::Buffer& data, bool end_stream,
                                                 CodecIo& io, ServerConnectionCallbacks& callbacks);

// Hands `data` to `codec`. A protocol error closes the connection once the codec's reply is out,
// or at once when the peer floods (ResourceExhausted: the queued replies would never be read);
// the peer's end of input (`end_stream`) goes to the codec and closes the connection when no
// stream is left. Returns the protocol error, for the caller's log.
absl::Status DispatchServerInput(ServerConnection& codec, net::Connection& connection,
                                 net::Buffer& data, bool end_stream);

}  // namespace meshlet::http

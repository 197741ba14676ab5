#pragma once

// The HTTP abstraction every protocol implements: a codec turns the bytes of one network
// connection into streams (requests with their responses), and streams back into bytes. The
// HTTP/1.1 codec (h1/), the HTTP/2 codec (h2/) and everything above them (the sidecar's
// connection manager, router and upstream pools) speak only these interfaces, so h1↔h2
// translation needs no special code: a request decoded by one codec is re-encoded by another.
//
// Ownership and lifetime:
// - A codec is owned by whoever owns the network connection; it writes through CodecIo.
// - A StreamEncoder belongs to its codec and stays valid until the stream completes (both
//   directions ended) or is reset; StreamCallbacks::OnResetStream is the last call on a reset
//   stream. Users must not touch the encoder after either.
// - A StreamDecoder belongs to the user; it must outlive the stream or remove itself by resetting.
// Callbacks fire on the connection's thread, from inside Dispatch() (decoding) or from the
// codec's write path (watermarks). A callback may reset its own stream but never deletes the
// codec; deletion is deferred to the end of the loop turn.
//
// Flow control: a user that cannot keep up calls Stream::ReadDisable(true) and later
// ReadDisable(false). HTTP/1 stops reading the connection; HTTP/2 stops returning flow-control
// window to the peer for that stream only. Writes that pile up past the stream's buffer limit
// raise OnAboveWriteBufferHighWatermark on its callbacks, and the user stops feeding it.

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/http/header_map.h"

namespace meshlet::net {
class Buffer;
}

namespace meshlet::http {

using HeaderMapPtr = std::unique_ptr<HeaderMap>;

enum class Protocol { kHttp10, kHttp11, kHttp2 };
// "HTTP/1.0", "HTTP/1.1", "HTTP/2": static text, valid for the life of the program.
absl::string_view ProtocolName(Protocol protocol);

// Why a stream ended without completing. Retry decisions and access-log flags key off these.
enum class StreamResetReason {
  kLocalReset,             // this side reset it (e.g. a timeout, a client going away)
  kRemoteReset,            // the peer sent RST_STREAM (or closed mid-message)
  kRemoteRefusedStream,    // the peer refused it before processing (REFUSED_STREAM, GOAWAY)
  kConnectionFailure,      // the connection could not be established
  kConnectionTermination,  // the connection closed under the stream
  kOverflow,               // a local limit (buffer, streams) was exceeded
  kProtocolError,          // the peer broke the protocol
};
absl::string_view ResetReasonName(StreamResetReason reason);

// Events of one stream, for whoever is using it. Several may be registered.
class StreamCallbacks {
 public:
  virtual ~StreamCallbacks() = default;
  // Last event of a reset stream. `details` explains it for logs (may be empty).
  virtual void OnResetStream(StreamResetReason reason, absl::string_view details) = 0;
  // The stream's unsent bytes passed its buffer limit: stop sending until the low watermark.
  virtual void OnAboveWriteBufferHighWatermark() {}
  virtual void OnBelowWriteBufferLowWatermark() {}
};

class Stream {
 public:
  virtual ~Stream() = default;
  virtual void AddCallbacks(StreamCallbacks& callbacks) = 0;
  virtual void RemoveCallbacks(StreamCallbacks& callbacks) = 0;
  // Ends the stream abnormally in both directions (HTTP/2 RST_STREAM; HTTP/1 closes the
  // connection, since a half-sent message cannot be recovered). Callbacks get OnResetStream.
  virtual void ResetStream(StreamResetReason reason) = 0;
  // Stops (true) or resumes (false) delivery of this stream's incoming data. Counted: each true
  // needs a matching false.
  virtual void ReadDisable(bool disable) = 0;
  // Unsent bytes above which the stream reports its high watermark.
  virtual uint32_t BufferLimit() const = 0;
};

// Writes one message (request or response) onto a stream. A message is headers, then zero or
// more data frames, then optional trailers; `end_stream` marks the last piece.
class StreamEncoder {
 public:
  virtual ~StreamEncoder() = default;
  // Informational response (100 Continue). Server side only.
  virtual void Encode1xxHeaders(const HeaderMap& headers) = 0;
  // Requests carry :method, :path, :authority (and :scheme); responses carry :status. HTTP/1
  // encoders translate pseudo-headers to the request/status line and Host.
  virtual void EncodeHeaders(const HeaderMap& headers, bool end_stream) = 0;
  // Takes (drains) all of `data`; never copies payload it can relink.
  virtual void EncodeData(net::Buffer& data, bool end_stream) = 0;
  // Ends the message. HTTP/1 sends them in the last chunk when chunked, else drops them.
  virtual void EncodeTrailers(const HeaderMap& trailers) = 0;
  virtual Stream& GetStream() = 0;
};

// Receives one message. Headers arrive first and exactly once (after any 1xx).
class StreamDecoder {
 public:
  virtual ~StreamDecoder() = default;
  virtual void Decode1xxHeaders(HeaderMapPtr headers) { (void)headers; }
  virtual void DecodeHeaders(HeaderMapPtr headers, bool end_stream) = 0;
  // The decoder takes what it wants from `data` (usually all of it, by Buffer::Move); anything
  // left is dropped when the call returns.
  virtual void DecodeData(net::Buffer& data, bool end_stream) = 0;
  virtual void DecodeTrailers(HeaderMapPtr trailers) = 0;
};

// What a codec needs from the network connection under it.
class CodecIo {
 public:
  virtual ~CodecIo() = default;
  // Queues bytes to the peer; drains `data`.
  virtual void Write(net::Buffer& data) = 0;
  // Bytes accepted by Write() that the socket has not taken yet (the connection's write buffer).
  // HTTP/2 tells from it which of the replies it owes the peer are still waiting for the peer to
  // read (flood protection).
  virtual size_t UnsentBytes() const = 0;
  // Stops/resumes reading the connection (counted).
  virtual void ReadDisable(bool disable) = 0;
  // Closes the connection after writing what is queued (`flush`) or at once.
  virtual void Close(bool flush) = 0;
};

class ConnectionCallbacks {
 public:
  virtual ~ConnectionCallbacks() = default;
  // The peer will accept no new streams (HTTP/2 GOAWAY, HTTP/1 `Connection: close`).
  virtual void OnGoAway() {}
};

class ServerConnectionCallbacks : public ConnectionCallbacks {
 public:
  // A request stream began. Returns the decoder that receives the request; the response is
  // written through `response_encoder`.
  virtual StreamDecoder& NewStream(StreamEncoder& response_encoder) = 0;
  // The client passed an abuse limit and the codec takes no new streams (HTTP/2:
  // GOAWAY(ENHANCE_YOUR_CALM), h2::Http2Options::drain_on_flood), but the streams in flight may
  // finish: the owner bounds how long, and closes once they are done. Fires once, from inside
  // Dispatch after the read that found it; a client that goes on makes a later Dispatch fail.
  virtual void OnFloodDrain() {}
};

// One codec instance per network connection.
class Connection {
 public:
  virtual ~Connection() = default;
  // Feeds bytes read from the connection; takes what it parses from `data`. An error means the
  // peer broke the protocol: the codec has already queued whatever reply it owes (HTTP/1 400/431,
  // HTTP/2 GOAWAY) and streams have been reset; the caller closes after flushing.
  virtual absl::Status Dispatch(net::Buffer& data) = 0;
  // Stops accepting new streams: HTTP/2 GOAWAY; HTTP/1 `Connection: close` on the next response.
  virtual void GoAway() = 0;
  virtual Protocol protocol() const = 0;
  // Streams not yet completed or reset.
  virtual size_t ActiveStreams() const = 0;
  // Messages the codec accepted in full but has not yet written to the connection (HTTP/2: DATA
  // that flow control holds back). Closing the connection now would cut them short.
  virtual bool HasUnsentOutput() const { return false; }
  // The connection under the codec passed its write high/low watermark.
  virtual void OnUnderlyingWriteHighWatermark() = 0;
  virtual void OnUnderlyingWriteLowWatermark() = 0;
  // The peer closed its sending side (EOF). HTTP/1 ends a close-delimited response or resets a
  // message cut short; an error means the connection should close.
  virtual absl::Status OnEndOfStream() { return absl::OkStatus(); }
  // The connection is gone: open streams are reset with kConnectionTermination now, rather than
  // when the codec is destroyed.
  virtual void OnConnectionClosed() {}
};

class ServerConnection : public Connection {};

class ClientConnection : public Connection {
 public:
  // Starts a request; its response goes to `response_decoder`.
  virtual StreamEncoder& NewStream(StreamDecoder& response_decoder) = 0;
  // False once the peer said GOAWAY or the stream limit is reached.
  virtual bool CanOpenStream() const = 0;
};

}  // namespace meshlet::http

#include "common/http/server_codec.h"

#include <algorithm>

#include "absl/strings/string_view.h"
#include "common/http/h1/codec.h"
#include "common/http/h2/codec.h"

namespace meshlet::http {
namespace {

constexpr absl::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

}  // namespace

std::unique_ptr<ServerConnection> NewServerCodec(event::Loop& loop,
                                                 const net::Connection& connection,
                                                 const net::Buffer& data, bool end_stream,
                                                 CodecIo& io,
                                                 ServerConnectionCallbacks& callbacks) {
  bool h2 = connection.transport().peer().alpn == "h2";
  if (!h2) {
    const size_t n = std::min(data.length(), kHttp2Preface.size());
    char prefix[kHttp2Preface.size()];
    data.CopyOut(0, prefix, n);
    const bool preface_so_far = absl::string_view(prefix, n) == kHttp2Preface.substr(0, n);
    if (preface_so_far && n < kHttp2Preface.size() && !end_stream) return nullptr;  // wait
    h2 = preface_so_far && n == kHttp2Preface.size();
  }
  if (h2) return std::make_unique<h2::ServerCodec>(io, callbacks);
  return std::make_unique<h1::ServerCodec>(loop, io, callbacks);
}

absl::Status DispatchServerInput(ServerConnection& codec, net::Connection& connection,
                                 net::Buffer& data, bool end_stream) {
  absl::Status status = codec.Dispatch(data);
  if (!status.ok()) {
    connection.Close(absl::IsResourceExhausted(status) ? net::CloseMode::kNoFlush
                                                       : net::CloseMode::kFlush);
    return status;
  }
  if (end_stream) {
    (void)codec.OnEndOfStream();
    if (codec.ActiveStreams() == 0) connection.Close(net::CloseMode::kFlush);
  }
  return absl::OkStatus();
}

}  // namespace meshlet::http

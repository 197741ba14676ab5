// Request/response round trips through a ClientCodec and a ServerCodec wired back to back in
// memory: HPACK, framing, flow-control bookkeeping and stream lifecycle, without sockets.

#include <string>

#include "benchmark/benchmark.h"
#include "common/http/h2/codec.h"
#include "common/http/h2/test_util.h"
#include "common/net/buffer.h"

namespace meshlet::http::h2 {
namespace {

using testing::CodecPair;
using testing::ServerRequest;

// A decoder that keeps nothing, so the benchmark measures the codecs.
class NullDecoder : public StreamDecoder {
 public:
  void DecodeHeaders(HeaderMapPtr, bool end_stream) override { done |= end_stream; }
  void DecodeData(net::Buffer& data, bool end_stream) override {
    bytes += data.length();
    done |= end_stream;
  }
  void DecodeTrailers(HeaderMapPtr) override { done = true; }
  bool done = false;
  size_t bytes = 0;
};

void BM_RoundTrip(benchmark::State& state) {
  const size_t body_size = static_cast<size_t>(state.range(0));
  const std::string body(body_size, 'b');
  CodecPair p;
  p.server_callbacks.on_new_stream = [&](ServerRequest& r) {
    r.decoder.on_headers = [&r, &body](bool) {
      r.encoder->EncodeHeaders(
          HeaderMap{{":status", "200"}, {"content-type", "application/octet-stream"}},
          body.empty());
      if (!body.empty()) {
        net::Buffer b(body);
        r.encoder->EncodeData(b, true);
      }
    };
  };
  (void)p.Pump();
  const HeaderMap request{{":method", "GET"},
                          {":scheme", "http"},
                          {":authority", "backend.default.svc.cluster.local"},
                          {":path", "/api/v1/items?page=2"},
                          {"user-agent", "bench/1.0"},
                          {"accept", "*/*"},
                          {"x-request-id", "3f2a0c1e-7b9d-4e8f-a1b2-c3d4e5f60718"}};
  for (auto _ : state) {
    NullDecoder decoder;
    StreamEncoder& e = p.client->NewStream(decoder);
    e.EncodeHeaders(request, true);
    (void)p.Pump();
    if (!decoder.done || decoder.bytes != body_size) state.SkipWithError("incomplete response");
    p.server_callbacks.requests.clear();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(body_size));
}
BENCHMARK(BM_RoundTrip)->Arg(0)->Arg(1024)->Arg(64 * 1024);

// Many streams in flight at once: one batch of requests, then one batch of responses.
void BM_ConcurrentRoundTrips(benchmark::State& state) {
  const int streams = static_cast<int>(state.range(0));
  CodecPair p;
  p.server_callbacks.on_new_stream = [](ServerRequest& r) {
    r.decoder.on_headers = [&r](bool) {
      r.encoder->EncodeHeaders(HeaderMap{{":status", "204"}}, true);
    };
  };
  (void)p.Pump();
  const HeaderMap request{
      {":method", "GET"}, {":scheme", "http"}, {":authority", "svc"}, {":path", "/"}};
  std::vector<NullDecoder> decoders(streams);
  for (auto _ : state) {
    for (int i = 0; i < streams; ++i) {
      decoders[i] = NullDecoder();
      p.client->NewStream(decoders[i]).EncodeHeaders(request, true);
    }
    (void)p.Pump();
    p.server_callbacks.requests.clear();
  }
  state.SetItemsProcessed(state.iterations() * streams);
}
BENCHMARK(BM_ConcurrentRoundTrips)->Arg(100);

}  // namespace
}  // namespace meshlet::http::h2
